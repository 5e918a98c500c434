// A WebSocket session as a room member: rate and window checks, validation, fan-out, departure.
#include "net/member_relay.hpp"

#include <boost/asio/post.hpp>
#ifdef SIGNAL_FAULT_INJECTION
#include <stdexcept>
#endif

#include "net/server.hpp"
#include "net/ws_session.hpp"
#include "obs/metrics.hpp"

namespace sigsrv {

namespace {

const std::string kNoSession;

}  // namespace

MemberRelay::MemberRelay(const Config& config)
    : bucket_(config.rate_limit_messages_per_10s, Clock::now()) {}

const Peer* MemberRelay::self_peer(const WsSession& s) const {
  if (resumable) return resumable.get();
  return &s;
}

void MemberRelay::on_message(WsSession& s, std::string_view text) {
#ifdef SIGNAL_FAULT_INJECTION
  // Test builds only (CMake SIGNAL_FAULT_INJECTION): a throw inside this session's handler, and
  // one in a handler of its loop that belongs to no session.
  if (text.find("fault-inject:session") != std::string_view::npos) {
    throw std::runtime_error("injected session fault");
  }
  if (text.find("fault-inject:loop") != std::string_view::npos) {
    boost::asio::post(s.loop().ioc, [] { throw std::runtime_error("injected loop fault"); });
  }
#endif
  Server& server = s.server();
  const Config& cfg = server.config();
  Metrics& m = metrics();
  m.messages_received.inc();
  if (resumable) {
    // Taken over by a resume elsewhere: what this socket still reads is not the session's.
    if (resumable->generation.load(std::memory_order_relaxed) != generation) return;
    // Every message read counts, relayed or not: the client re-sends from this count.
    resumable->received.fetch_add(1, std::memory_order_relaxed);
  }
  if (!bucket_.try_take(Clock::now())) {
    m.drops(RateScope::kConnection).inc();
    count_unrelayed(s);
    return;
  }
  if (!windows_) {
    windows_ =
        std::make_unique<const MessageWindows>(server.bus().message_windows(s.ip(), room->id()));
  }
  const MessageLimits limits{cfg.rate_limit_ip_msgs_per_10s, cfg.rate_limit_room_msgs_per_10s};
  process(s, text, server.bus().message_verdict(*windows_, limits));
}

void MemberRelay::process(WsSession& s, std::string_view text, MessageVerdict verdict) {
  Metrics& m = metrics();
  if (verdict == MessageVerdict::kIpLimited) {
    m.drops(RateScope::kIp).inc();
    count_unrelayed(s);
    return;
  }
  if (verdict == MessageVerdict::kRoomLimited) {
    m.drops(RateScope::kRoom).inc();
    count_unrelayed(s);
    return;
  }
  ParsedMessage parsed = parse_client_message(text);
  switch (parsed.kind) {
    case ParsedMessage::Kind::kNotJson:
      m.messages_invalid_json.inc();
      count_unrelayed(s);
      return;
    case ParsedMessage::Kind::kSchemaError:
      m.schema_rejects.inc();
      count_unrelayed(s);
      notify_self(s, schema_error_message());
      return;
    case ParsedMessage::Kind::kValid:
      relay(s, std::make_shared<const std::string>(std::move(parsed.text)));
      return;
  }
}

void MemberRelay::relay(WsSession& s, const SharedText& message) {
  const auto start = Clock::now();
  Server& server = s.server();
  Targets targets;
  room->collect_others(self_peer(s), targets);
  bool delivered = false;
  for (auto& t : targets) {
    // Numbered members get it from the bus, with their number.
    if (t.numbered) continue;
    server.send_from(s.loop().index, std::move(t), message);
    delivered = true;
  }
  // Forwarded once: now when a member here got it, else when the bus has it.
  if (delivered) metrics().messages_forwarded.inc();
  server.bus().publish(room->id(), client_id, resumable ? resumable->session_id() : kNoSession,
                       message, !delivered);
  metrics().fanout_duration.observe(std::chrono::duration<double>(Clock::now() - start).count());
}

void MemberRelay::count_unrelayed(WsSession& s) {
  // With shared sessions `received` lives in the bus, where relays count themselves; a message
  // that is not relayed is counted there too, in order with them.
  if (resumable && s.server().bus().shares_sessions()) {
    s.server().bus().session_count(SessionRef{room->id(), resumable->session_id(), client_id});
  }
}

void MemberRelay::notify_self(WsSession& s, const SharedText& message) {
  if (!resumable) {
    s.deliver(message);
    return;
  }
  if (&resumable->home() == &s.loop()) {
    resumable->deliver(message);
    return;
  }
  boost::asio::post(resumable->home().ioc,
                    [member = resumable, message] { member->deliver(message); });
}

void MemberRelay::depart(WsSession& s) {
  if (!joined) return;
  joined = false;
  if (resumable) {
    // The member decides, on its own loop: suspend (seat held) or leave (close frame).
    if (&resumable->home() == &s.loop()) {
      resumable->socket_ended(generation, client_closed);
    } else {
      boost::asio::post(resumable->home().ioc,
                        [member = resumable, gen = generation, closed = client_closed] {
                          member->socket_ended(gen, closed);
                        });
    }
    room.reset();
    return;
  }
  s.server().depart(room, &s, client_id, s.loop().index);
  room.reset();
}

}  // namespace sigsrv
