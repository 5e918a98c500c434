// WebSocket session, relay: rate and window checks, validation, fan-out, departure.
#include "net/ws_session.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include "net/server.hpp"
#include "net/ws_upgrade.hpp"
#include "obs/metrics.hpp"
#include "signaling/resume.hpp"

namespace sigsrv {

namespace {

const std::string kNoSession;

}  // namespace

void WsSession::handle_message(std::string_view text) {
  const Config& cfg = server_.config();
  Metrics& m = metrics();
  m.messages_received.inc();
  if (resumable_) {
    // Taken over by a resume elsewhere: what this socket still reads is not the session's.
    if (resumable_->generation.load(std::memory_order_relaxed) != generation_) return;
    // Every message read counts, relayed or not: the client re-sends from this count.
    resumable_->received.fetch_add(1, std::memory_order_relaxed);
  }
  if (!bucket_.try_take(Clock::now())) {
    m.drops(RateScope::kConnection).inc();
    count_unrelayed();
    return;
  }
  const MessageLimits limits{cfg.rate_limit_ip_msgs_per_10s, cfg.rate_limit_room_msgs_per_10s};
  // A bus either always decides at once or never does, so messages cannot overtake those still
  // waiting in awaiting_.
  if (auto verdict = server_.bus().message_verdict_now(ip_, room_->id(), limits)) {
    process(text, *verdict);
    return;
  }
  server_.bus().check_message(
      ip_, room_->id(), limits, [self = shared_from_this()](MessageVerdict v) {
        boost::asio::post(self->loop_.ioc, [self, v] { self->on_verdict(v); });
      });
  // Verdicts come back in the order asked, so messages keep their order while they wait (see
  // VerdictQueue for its bounds); one over them is dropped and counted as a connection drop.
  if (!awaiting_.push(text)) m.drops(RateScope::kConnection).inc();
}

void WsSession::on_verdict(MessageVerdict verdict) {
  if (awaiting_.empty()) return;
  const std::string text = awaiting_.pop();
  // Still relayed after the socket ended: the client sent it before it left. A dropped one is
  // counted here, in order with the relays before it.
  if (joined_) {
    if (text.empty()) {
      count_unrelayed();
    } else {
      process(text, verdict);
    }
  }
  if (awaiting_.empty() && leave_pending_) leave_room();
}

void WsSession::process(std::string_view text, MessageVerdict verdict) {
  Metrics& m = metrics();
  if (verdict == MessageVerdict::kIpLimited) {
    m.drops(RateScope::kIp).inc();
    count_unrelayed();
    return;
  }
  if (verdict == MessageVerdict::kRoomLimited) {
    m.drops(RateScope::kRoom).inc();
    count_unrelayed();
    return;
  }
  ParsedMessage parsed = parse_client_message(text);
  switch (parsed.kind) {
    case ParsedMessage::Kind::kNotJson:
      m.messages_invalid_json.inc();
      count_unrelayed();
      return;
    case ParsedMessage::Kind::kSchemaError:
      m.schema_rejects.inc();
      count_unrelayed();
      notify_self(schema_error_message());
      return;
    case ParsedMessage::Kind::kValid:
      relay(std::make_shared<const std::string>(std::move(parsed.text)));
      return;
  }
}

void WsSession::relay(const SharedText& message) {
  const auto start = Clock::now();
  Targets targets;
  room_->collect_others(self_peer(), targets);
  for (auto& t : targets) {
    // Numbered members get it from the bus, with their number.
    if (!t.numbered) send_to(std::move(t), message);
  }
  server_.bus().publish(room_->id(), client_id_, resumable_ ? session_id_ : kNoSession, message);
  metrics().messages_forwarded.inc();
  metrics().fanout_duration.observe(std::chrono::duration<double>(Clock::now() - start).count());
}

void WsSession::send_to(Target&& target, const SharedText& message) {
  server_.send_from(loop_.index, std::move(target), message);
}

void WsSession::count_unrelayed() {
  // With shared sessions `received` lives in the bus, where relays count themselves; a message
  // that is not relayed is counted there too, in order with them.
  if (resumable_ && server_.bus().shares_sessions()) {
    server_.bus().session_count(SessionRef{room_->id(), session_id_, client_id_});
  }
}

const Peer* WsSession::self_peer() const {
  if (resumable_) return resumable_.get();
  return this;
}

void WsSession::notify_self(const SharedText& message) {
  if (!resumable_) {
    deliver(message);
    return;
  }
  if (&resumable_->home() == &loop_) {
    resumable_->deliver(message);
    return;
  }
  boost::asio::post(resumable_->home().ioc,
                    [member = resumable_, message] { member->deliver(message); });
}

void WsSession::depart() {
  // Messages still waiting for their verdict go first; the departure follows them.
  if (awaiting_.empty()) {
    leave_room();
  } else {
    leave_pending_ = true;
  }
}

void WsSession::leave_room() {
  if (!joined_) return;
  joined_ = false;
  if (resumable_) {
    // The member decides, on its own loop: suspend (seat held) or leave (close frame).
    if (&resumable_->home() == &loop_) {
      resumable_->socket_ended(generation_, client_closed_);
    } else {
      boost::asio::post(resumable_->home().ioc,
                        [member = resumable_, gen = generation_, closed = client_closed_] {
                          member->socket_ended(gen, closed);
                        });
    }
    room_.reset();
    return;
  }
  server_.depart(room_, this, client_id_, loop_.index);
  room_.reset();
}

}  // namespace sigsrv
