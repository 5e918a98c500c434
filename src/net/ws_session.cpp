// WebSocket session: the connect checks in contract order, then relay until the peer leaves.
#include "net/ws_session.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <random>

#include "net/server.hpp"
#include "obs/metrics.hpp"
#include "signaling/resume.hpp"

namespace sigsrv {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace http = beast::http;

namespace {

const std::string kNoSession;

std::string random_client_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const uint64_t a = rng(), b = rng();
  char buf[64];
  // UUID v4 layout, as the Node server's crypto.randomUUID().
  std::snprintf(buf, sizeof(buf), "client:%08x-%04x-4%03x-%04x-%012llx",
                static_cast<unsigned>(a >> 32), static_cast<unsigned>((a >> 16) & 0xffff),
                static_cast<unsigned>(a & 0x0fff),
                static_cast<unsigned>(0x8000 | ((b >> 48) & 0x3fff)),
                static_cast<unsigned long long>(b & 0xffffffffffffULL));
  return buf;
}

// Splits a comma-separated header value and trims each token.
template <class F>
void for_each_token(std::string_view v, F f) {
  while (!v.empty()) {
    const auto comma = v.find(',');
    std::string_view t = v.substr(0, comma);
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
    if (!t.empty()) f(t);
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
}

RejectReason reason_of(const Rejection& r) {
  if (r == kBreakerOpen) return RejectReason::kBreakerOpen;
  if (r == kAtCapacity) return RejectReason::kAtCapacity;
  if (r == kMalformed) return RejectReason::kMalformed;
  if (r == kInvalidRoom) return RejectReason::kInvalidRoom;
  if (r == kWssRequired) return RejectReason::kWssRequired;
  if (r == kOriginNotAllowed) return RejectReason::kOriginNotAllowed;
  if (r == kSubprotocolRequired) return RejectReason::kSubprotocolRequired;
  return RejectReason::kDraining;
}

}  // namespace

struct WsSession::Upgrade {
  ConnectParams params;
  bool has_host = false;
  std::optional<std::string> origin;
  std::string forwarded_proto;
  bool subprotocol_offered = false;
  std::string authorization_token;
  // Waited once for a JWKS fetch (JWKS_URL); the next key lookup is final.
  bool jwks_waited = false;
  Request request;  // kept alive until async_accept completes
};

WsSession::WsSession(Server& server, Loop& loop, MaybeTlsStream stream)
    : server_(server),
      loop_(loop),
      ws_(std::move(stream)),
      bucket_(server.config().rate_limit_messages_per_10s, Clock::now()) {
  server_.websocket_count.fetch_add(1, std::memory_order_relaxed);
}

WsSession::~WsSession() {
  unregister();
  server_.websocket_count.fetch_sub(1, std::memory_order_relaxed);
}

void WsSession::start(Request request) {
  const Config& cfg = server_.config();
  upgrade_ = std::make_unique<Upgrade>();
  Upgrade& u = *upgrade_;
  u.params = parse_connect_target(request.target(), cfg.room_id_max_length);
  u.has_host = request.count(http::field::host) > 0 && !request[http::field::host].empty();
  if (auto it = request.find(http::field::origin); it != request.end())
    u.origin = std::string(it->value());
  u.forwarded_proto = std::string(request["X-Forwarded-Proto"]);
  u.authorization_token = std::string(bearer_token(request[http::field::authorization]));

  boost::system::error_code ec;
  const auto remote = ws_.next_layer().socket().remote_endpoint(ec);
  ip_ = ec ? "unknown" : remote.address().to_string();
  if (cfg.trust_proxy) {
    for_each_token(request["X-Forwarded-For"], [&, first = true](std::string_view t) mutable {
      if (first) ip_ = std::string(t);
      first = false;
    });
  }

  // Subprotocol: select SUBPROTOCOL when offered; without it, echo the first offer (as `ws` does)
  // so browsers that offer one still connect.
  std::string selected;
  for_each_token(request[http::field::sec_websocket_protocol], [&](std::string_view t) {
    if (!cfg.subprotocol.empty()) {
      if (t == cfg.subprotocol) {
        u.subprotocol_offered = true;
        selected = std::string(t);
      }
    } else if (selected.empty()) {
      selected = std::string(t);
    }
  });
  ws_.set_option(websocket::stream_base::decorator([selected](websocket::response_type& res) {
    res.set(http::field::server, "signal-server");
    if (!selected.empty()) res.set(http::field::sec_websocket_protocol, selected);
  }));
  websocket::stream_base::timeout timeouts{};
  timeouts.handshake_timeout = std::chrono::milliseconds(cfg.handshake_timeout_ms);
  timeouts.idle_timeout = websocket::stream_base::none();  // the loop's heartbeat does this job
  timeouts.keep_alive_pings = false;
  ws_.set_option(timeouts);
  ws_.read_message_max(0);  // no Beast limit: read() enforces MESSAGE_MAX_BYTES itself
  ws_.auto_fragment(false);
  ws_.control_callback([this](websocket::frame_type kind, beast::string_view) {
    if (kind == websocket::frame_type::pong) alive_ = answered_probe_ = true;
  });

  // Beast refuses an upgrade without Host (HTTP 400), but the contract answers it after the
  // upgrade with 1008 "Malformed request" (row 3), which browsers can see: give it an empty one.
  if (!u.has_host) request.set(http::field::host, "");
  u.request = std::move(request);
  // The checks and the join run before the 101 goes out, so that when the client's open event
  // fires it is already a member: nothing its peers send after that moment can miss it. A
  // refusal is still sent after the upgrade, as a close code browsers can see.
  state_ = State::kAdmitting;
  // The HTTP deadline ended with the request; this one covers admission and the upgrade (a join
  // that Redis never answers must not hold the socket).
  arm_deadline();
  admit();
}

void WsSession::arm_deadline() {
  deadline_ = std::make_unique<boost::asio::steady_timer>(loop_.ioc);
  deadline_->expires_after(std::chrono::milliseconds(server_.config().handshake_timeout_ms));
  deadline_->async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    if (ec) return;
    if (auto self = weak.lock()) {
      if (!self->accepted_) metrics().handshake_timeouts.inc();
      self->terminate();
    }
  });
}

void WsSession::accept() {
  ws_.async_accept(upgrade_->request, [self = shared_from_this()](boost::system::error_code e) {
    self->on_accepted(e);
  });
}

void WsSession::on_accepted(boost::system::error_code ec) {
  upgrade_.reset();
  deadline_.reset();  // cancels the wait; an open connection carries no timer
  if (ec) {
    end();  // the upgrade failed: undo the join, if any
    return;
  }
  accepted_ = true;
  // The 101 is out; from here every write is a WebSocket frame, ended by a closing teardown.
  // Plain TCP: relayed messages become frames in the stream's write buffer (no write operation
  // per message, and what arrives while a write is in flight shares the next syscall); TLS
  // keeps Beast's writes.
  MaybeTlsStream& stream = ws_.next_layer();
  stream.enable_coalescing();
  if (stream.coalescing()) {
    for (std::size_t i = queue_head_; i < queue_.size(); ++i) stream.write_text_frame(*queue_[i]);
    queue_.clear();
    queue_head_ = 0;
    unsent_bytes_ = 0;
  }
  if (refusal_) {
    const Rejection r = *refusal_;
    refusal_.reset();
    close_with(r);
    return;
  }
  if (state_ != State::kOpen) return;
  if (queue_head_ < queue_.size()) write_next();
  read();
  if (probe_after_accept_) probe();
}

void WsSession::reject(Rejection r, RejectReason reason) {
  metrics().rejected(reason).inc();
  server_.log().debug("Connection refused",
                      {{"code", static_cast<unsigned>(r.code)}, {"reason", r.reason}, {"ip", ip_}});
  if (!refusal_) refusal_ = r;
  accept();
}

void WsSession::admit() {
  const Config& cfg = server_.config();
  Upgrade& u = *upgrade_;
  ConnectFacts facts;
  facts.draining = server_.draining();
  facts.breaker_open = server_.bus().breaker_open();
  facts.over_max_connections =
      cfg.max_connections > 0 && server_.websocket_count.load() > cfg.max_connections;
  facts.has_host = u.has_host;
  facts.params = &u.params;
  facts.is_tls = ws_.next_layer().is_tls();
  facts.forwarded_proto = u.forwarded_proto;
  if (u.origin) facts.origin = *u.origin;
  facts.subprotocol_offered = u.subprotocol_offered;
  if (auto r = check_before_auth(server_.admission(), facts)) {
    reject(*r, reason_of(*r));
    return;
  }
  // Rows 8-10, after the cheap checks: a signature check costs tens of microseconds.
  const std::string_view token =
      !u.params.token.empty() ? std::string_view(u.params.token) : u.authorization_token;
  TokenOutcome outcome = TokenOutcome::kInvalid;
  const JwtKey* key = server_.jwt_key();
  std::shared_ptr<const JwtKey> jwks_key;  // keeps a JWKS key alive past a set swap
  if (cfg.enable_auth && !token.empty() && key == nullptr && server_.jwks() != nullptr) {
    KeyPick pick = pick_jwks_key(server_.jwks()->current().get(), jwt_kid(token));
    if (!pick.key && pick.refetch_may_help && !u.jwks_waited) {
      // Wait (within the handshake deadline) for a fetch, then run the checks again; a socket
      // the deadline closed meanwhile is dropped, never joined.
      u.jwks_waited = true;
      const JwksWait wait = server_.jwks()->await_refresh(
          std::chrono::steady_clock::now(), [self = shared_from_this()] {
            boost::asio::post(self->loop_.ioc, [self] {
              if (self->ws_.next_layer().socket().is_open()) self->admit();
            });
          });
      if (wait == JwksWait::kWaiting) return;
      pick.reason += wait == JwksWait::kRateLimited ? " (refetch rate limited)" : " (wait full)";
    }
    jwks_key = std::move(pick.key);
    key = jwks_key.get();
    if (key == nullptr) server_.log().debug("Token refused", {{"err", pick.reason}});
  }
  if (cfg.enable_auth && !token.empty() && key != nullptr) {
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    const JwtResult jr = verify_jwt(token, *key, server_.jwt_policy(), *u.params.room_id, now);
    outcome = jr.outcome;
    // The reason only (expired, bad signature, ...); the token itself is never logged.
    if (outcome != TokenOutcome::kValid) server_.log().debug("Token refused", {{"err", jr.reason}});
  }
  if (auto r = check_auth(cfg.enable_auth, !token.empty(), outcome)) {
    reject(*r, *r == kForbidden ? RejectReason::kForbidden : RejectReason::kUnauthorized);
    return;
  }
  // Row 11: counted only for connections that passed the cheap checks.
  if (auto allowed = server_.bus().connection_allowed_now(ip_, cfg.rate_limit_conn_per_10s)) {
    after_rate_check(*allowed);
    return;
  }
  server_.bus().check_connection(
      ip_, cfg.rate_limit_conn_per_10s, [self = shared_from_this()](bool ok) {
        boost::asio::post(self->loop_.ioc, [self, ok] { self->after_rate_check(ok); });
      });
}

void WsSession::after_rate_check(bool allowed) {
  if (!allowed) {
    metrics().drops(RateScope::kConnectIp).inc();
    reject(kRateLimited, RejectReason::kRateLimited);
    return;
  }
  if (upgrade_->params.resume == ConnectParams::Resume::kToken) {
    resume_session();
    return;
  }
  join_room();
}

void WsSession::join_room() {
  client_id_ = random_client_id();
  events_ = upgrade_->params.events;
  // Two more tries after a probe: the first soon after the probe's deadline, the second later,
  // for a release that reaches Redis from another instance.
  join_retries_left_ = server_.config().stale_member_probe_ms > 0 ? 2 : 0;
  send_join();
}

void WsSession::send_join() {
  server_.bus().join(*upgrade_->params.room_id, client_id_, server_.config().room_capacity,
                     [self = shared_from_this()](JoinResult r) {
                       boost::asio::dispatch(self->loop_.ioc, [self, r] { self->on_joined(r); });
                     });
}

void WsSession::refuse_resume(Rejection r) {
  metrics().resumes(ResumeResult::kRefused).inc();
  reject(r, RejectReason::kInvalidResume);
}

void WsSession::resume_session() {
  const ConnectParams& p = upgrade_->params;
  const auto last_seq = parse_last_seq(p.last_seq);
  if (!last_seq) {
    refuse_resume(kInvalidLastSeq);
    return;
  }
  const auto session_id = verify_resume_token(server_.resume_key(), p.resume_token, *p.room_id);
  if (!session_id) {
    refuse_resume(kInvalidResumeToken);
    return;
  }
  if (server_.bus().shares_sessions()) {
    claim_shared(*session_id, *last_seq);
    return;
  }
  auto [found, member] = server_.resumables().find(*session_id);
  if (found == ResumeRegistry::Found::kLeft) {
    refuse_resume(kInvalidResumeToken);
    return;
  }
  if (found == ResumeRegistry::Found::kUnknown) {
    // A genuine token whose session is not here: its window passed, or it lived on an instance
    // that is gone. Honest answer: recovered:false, then a fresh join.
    ResumableMember::Claim none;
    none.result = ResumableMember::Claim::Result::kNotRecovered;
    on_resume_claimed(nullptr, std::move(none));
    return;
  }
  // The claim runs on the member's loop; its answer comes back here before anything the member
  // forwards after it (posts from one thread run in order).
  if (&member->home() == &loop_) {
    on_resume_claimed(member, member->claim(weak_from_this(), loop_.index, *last_seq));
    return;
  }
  boost::asio::post(member->home().ioc, [self = shared_from_this(), member, last = *last_seq] {
    auto claim = member->claim(self, self->loop_.index, last);
    boost::asio::post(self->loop_.ioc, [self, member, claim = std::move(claim)]() mutable {
      self->on_resume_claimed(member, std::move(claim));
    });
  });
}

void WsSession::claim_shared(const std::string& session_id, uint64_t last_seq) {
  const std::string room_id = *upgrade_->params.room_id;
  server_.bus().session_claim(
      room_id, session_id, last_seq,
      [self = shared_from_this(), room_id, session_id](SessionClaim c) {
        // On the bus' loop, in order with its deliveries: the member is in the room before the
        // next message numbered for it is handed out, and adopt() runs on the member's loop
        // before that message does.
        using Result = SessionClaim::Result;
        Server& server = self->server_;
        if (c.result != Result::kResumed) {
          if (c.result == Result::kNotCovered || c.result == Result::kGone ||
              c.result == Result::kUnknown) {
            // The session is over: whoever holds it lets go, the member leaves, and this socket
            // joins afresh. Unknown to Redis (it lost its data) but held here: same.
            auto [found, old] = server.resumables().find(session_id);
            const bool held_here = found == ResumeRegistry::Found::kLive;
            if (held_here) {
              if (c.client_id.empty()) c.client_id = old->client_id();
              boost::asio::post(old->home().ioc, [old] { old->taken_over(); });
            }
            if (!c.client_id.empty()) {
              server.bus().publish_presence(room_id, c.client_id, PresenceEvent::kTakeover);
              // kNotCovered: the claim freed the seat itself. Held here but unknown to the bus
              // (it lost its data): the seat it holds again since is freed now. kGone: its
              // departure was announced when it was released.
              if (c.result == Result::kNotCovered || (held_here && c.result == Result::kUnknown)) {
                server.release_member(room_id, c.client_id, c.result != Result::kNotCovered);
              }
            }
          }
          boost::asio::post(self->loop_.ioc, [self, c = std::move(c)]() mutable {
            self->on_shared_claim(nullptr, 0, nullptr, std::move(c));
          });
          return;
        }
        server.bus().publish_presence(room_id, c.client_id, PresenceEvent::kTakeover);
        auto [found, member] = server.resumables().find(session_id);
        if (found != ResumeRegistry::Found::kLive) {
          member = std::make_shared<ResumableMember>(server, self->loop_, session_id, c.client_id);
          server.resumables().add(member);
        }
        boost::asio::post(member->home().ioc, [self, member, room_id, c = std::move(c)]() mutable {
          if (member->has_left()) {
            // It left here (its window ran out) while the claim was on its way: the seat is
            // gone, so the claim is void.
            SessionClaim gone;
            gone.result = SessionClaim::Result::kGone;
            boost::asio::post(self->loop_.ioc, [self, gone = std::move(gone)]() mutable {
              self->on_shared_claim(nullptr, 0, nullptr, std::move(gone));
            });
            return;
          }
          std::shared_ptr<Room> room = member->room();
          if (!room) {
            room = self->server_.rooms().attach(room_id, Member{c.client_id, member, member.get(),
                                                                member->home().index, true, true});
          }
          const uint64_t generation =
              member->adopt(room, self, self->loop_.index, c.seq, c.was_suspended);
          boost::asio::post(self->loop_.ioc, [self, member, generation, room = std::move(room),
                                              c = std::move(c)]() mutable {
            self->on_shared_claim(member, generation, std::move(room), std::move(c));
          });
        });
      });
}

void WsSession::on_shared_claim(const std::shared_ptr<ResumableMember>& member, uint64_t generation,
                                std::shared_ptr<Room> room, SessionClaim c) {
  using Result = SessionClaim::Result;
  ResumableMember::Claim claim;
  switch (c.result) {
    case Result::kResumed:
      claim.result = ResumableMember::Claim::Result::kResumed;
      claim.replay = std::move(c.replay);
      claim.received = c.received;
      claim.generation = generation;
      claim.room = std::move(room);
      break;
    case Result::kLeft:
      claim.result = ResumableMember::Claim::Result::kGone;
      break;
    case Result::kError:
      reject(kInternalError, RejectReason::kInternalError);
      return;
    default:
      claim.result = ResumableMember::Claim::Result::kNotRecovered;
      break;
  }
  on_resume_claimed(member, std::move(claim));
}

void WsSession::on_resume_claimed(const std::shared_ptr<ResumableMember>& member,
                                  ResumableMember::Claim claim) {
  using Result = ResumableMember::Claim::Result;
  if (claim.result == Result::kGone) {
    refuse_resume(kInvalidResumeToken);
    return;
  }
  if (claim.result == Result::kNotRecovered) {
    metrics().resumes(ResumeResult::kNotRecovered).inc();
    not_recovered_ = true;
    join_room();
    return;
  }
  // Attached: from here this socket's end is the member's business (suspend or leave).
  resumable_ = member;
  session_id_ = member->session_id();
  generation_ = claim.generation;
  client_id_ = member->client_id();
  events_ = true;
  room_ = std::move(claim.room);
  joined_ = true;
  if (server_.draining()) {
    reject(draining_rejection(server_.config().shutdown_close_code), RejectReason::kDraining);
    return;
  }
  loop_slot = loop_.sessions.size();
  loop_.sessions.push_back(this);
  registered_ = true;
  state_ = State::kOpen;
  Metrics& m = metrics();
  m.active_connections.inc();
  m.resumes(ResumeResult::kRecovered).inc();
  m.replayed_messages.inc(claim.replay.size());
  server_.log().info("Client resumed", {{"clientId", client_id_},
                                        {"roomId", room_->id()},
                                        {"replayed", claim.replay.size()},
                                        {"received", claim.received}});
  deliver(std::make_shared<const std::string>(resumed_message(true, claim.received)));
  for (const auto& text : claim.replay) deliver(text);
  accept();
}

void WsSession::on_joined(JoinResult result) {
  const std::string room_id = *upgrade_->params.room_id;
  if (result.status == JoinResult::Status::kFull && join_retries_left_ > 0) {
    // A member whose connection died silently holds its seat until two heartbeats pass; ask
    // every instance holding this room's members to ping them now (PROTOCOL.md section 8).
    const bool first = join_retries_left_-- == 2;
    if (first) {
      metrics().stale_member_probes.inc();
      server_.probe_room(room_id);
      server_.bus().publish_presence(room_id, client_id_, PresenceEvent::kProbe);
    }
    probe_timer_ = std::make_unique<boost::asio::steady_timer>(loop_.ioc);
    probe_timer_->expires_after(
        std::chrono::milliseconds(server_.config().stale_member_probe_ms) +
        (first ? std::chrono::milliseconds(150) : std::chrono::milliseconds(500)));
    // The wait owns the session (nothing else does before the upgrade); the handshake deadline
    // still bounds it.
    probe_timer_->async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec && self->ws_.next_layer().socket().is_open()) self->send_join();
    });
    return;
  }
  probe_timer_.reset();
  if (result.status == JoinResult::Status::kFull) {
    reject(kRoomFull, RejectReason::kRoomFull);
    return;
  }
  if (result.status == JoinResult::Status::kError) {
    reject(kInternalError, RejectReason::kInternalError);
    return;
  }
  if (server_.draining()) {
    // The drain started while the join was in flight: undo it and refuse like row 1.
    server_.bus().leave(room_id, client_id_);
    reject(draining_rejection(server_.config().shutdown_close_code), RejectReason::kDraining);
    return;
  }
  const bool resumable = upgrade_->params.resume != ConnectParams::Resume::kNone;
  const bool shared = server_.bus().shares_sessions();
  if (resumable && shared && session_id_.empty()) {
    // The session starts in the bus before anyone can hear of the member, so that everything
    // relayed to it from then on is numbered for it.
    session_id_ = random_session_id();
    server_.bus().session_open(
        SessionRef{room_id, session_id_, client_id_}, [self = shared_from_this(), result](bool ok) {
          boost::asio::post(self->loop_.ioc, [self, result, ok] {
            if (ok) {
              self->on_joined(result);
              return;
            }
            self->server_.bus().leave(*self->upgrade_->params.room_id, self->client_id_);
            self->reject(kInternalError, RejectReason::kInternalError);
          });
        });
    return;
  }
  joined_ = true;
  std::string welcome;
  if (resumable) {
    // The member, not this socket, is in the room: it outlives the socket for a resume.
    if (session_id_.empty()) session_id_ = random_session_id();
    resumable_ = std::make_shared<ResumableMember>(server_, loop_, session_id_, client_id_);
    room_ = server_.rooms().attach(
        room_id, Member{client_id_, resumable_, resumable_.get(), loop_.index, true, shared});
    resumable_->start(room_, weak_from_this(), loop_.index);
    generation_ = 1;
    server_.resumables().add(resumable_);
    welcome = resumable_welcome_message(
        client_id_, room_id, result.members - 1, resumable_->session_id(),
        mint_resume_token(server_.resume_key(), room_id, resumable_->session_id()),
        server_.config().resume_window_ms);
  } else {
    room_ = server_.rooms().attach(
        room_id, Member{client_id_, weak_from_this(), this, loop_.index, events_, false});
    if (events_) welcome = welcome_message(client_id_, room_id, result.members - 1);
  }
  loop_slot = loop_.sessions.size();
  loop_.sessions.push_back(this);
  registered_ = true;
  state_ = State::kOpen;
  metrics().active_connections.inc();
  server_.log().info(
      "Client joined room",
      {{"clientId", client_id_}, {"roomId", room_id}, {"localCount", room_->size()}});

  Targets others;
  room_->collect_others(self_peer(), others);
  if (not_recovered_) {
    deliver(std::make_shared<const std::string>(resumed_message(false, 0)));
  }
  if (!welcome.empty()) deliver(std::make_shared<const std::string>(std::move(welcome)));
  server_.bus().publish_presence(room_id, client_id_, PresenceEvent::kJoined,
                                 resumable_ != nullptr);
  SharedText joined_note;
  for (auto& t : others) {
    if (!t.wants_events) continue;
    if (!joined_note)
      joined_note = std::make_shared<const std::string>(peer_joined_message(client_id_));
    send_to(std::move(t), joined_note);
  }
  // Reading starts only after the upgrade: whatever the client sends from its open event on is
  // relayed in order, never dropped because its join was in flight.
  accept();
}

void WsSession::read() {
  // Read in pieces up to MESSAGE_MAX_BYTES + 1, so an oversize message is caught with at most
  // that much buffered, and refused with a proper closing handshake (Beast's own size limit
  // would cut the TCP connection right after its close frame). A piece is at least 512 bytes and
  // as large as what is already read, so the buffer doubles with a large message, and an idle
  // connection waits on 512 bytes instead of Beast's default 1,536.
  constexpr std::size_t kMinReadPiece = 512;
  const std::size_t remaining = server_.config().message_max_bytes + 1 - read_buffer_.size();
  const std::size_t limit = std::min(remaining, std::max(kMinReadPiece, read_buffer_.size()));
  ws_.async_read_some(read_buffer_, limit,
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                        self->on_read(ec);
                      });
}

void WsSession::on_read(boost::system::error_code ec) {
  if (ec) {
    // Beast reports the client's close frame as `closed` (and has answered it).
    if (ec == websocket::error::closed) client_closed_ = true;
    end();
    return;
  }
  if (read_buffer_.size() > server_.config().message_max_bytes) {
    metrics().oversize_closes.inc();
    read_buffer_.clear();
    close_with(kMessageTooBig);
    return;
  }
  if (!ws_.is_message_done()) {
    read();
    return;
  }
  if (state_ == State::kOpen) {
    const auto data = read_buffer_.cdata();
    handle_message(std::string_view(static_cast<const char*>(data.data()), data.size()));
  }
  read_buffer_.clear();
  // A large message (an SDP offer or answer, a few KB) grew the buffer; give the memory back
  // rather than keep it on a connection that will mostly idle. Candidates fit and reuse it.
  if (read_buffer_.capacity() > 1024) read_buffer_.shrink_to_fit();
  read();
}

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

void WsSession::deliver(const SharedText& message) {
  if (state_ != State::kOpen || overloaded_) return;
  MaybeTlsStream& stream = ws_.next_layer();
  // Unsent: queued here, or in the stream's write buffer but not yet on the socket.
  const std::size_t unsent = unsent_bytes_ + stream.buffered() + message->size();
  if (unsent > server_.config().backpressure_close_threshold_bytes) {
    overloaded_ = true;
    metrics().backpressure_closes.inc();
    server_.log().warn("Closing slow client", {{"clientId", client_id_},
                                               {"roomId", room_ ? room_->id() : std::string()},
                                               {"unsentBytes", unsent}});
    // Not closed right here: deliver() runs inside someone else's relay, departure or drain
    // walk, and a close would re-enter it. The close is a handler of its own.
    boost::asio::post(loop_.ioc, [self = shared_from_this()] { self->close_with(kOverloaded); });
    return;
  }
  metrics().messages_delivered.inc();
  if (accepted_ && stream.coalescing()) {
    stream.write_text_frame(*message);
    return;
  }
  unsent_bytes_ += message->size();
  queue_.push_back(message);
  if (!writing_ && accepted_) write_next();
}

void WsSession::write_next() {
  writing_ = true;
  const SharedText& msg = queue_[queue_head_];
  ws_.text(true);
  ws_.async_write(boost::asio::buffer(*msg),
                  [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                    auto& q = self->queue_;
                    self->unsent_bytes_ -= q[self->queue_head_]->size();
                    q[self->queue_head_].reset();
                    ++self->queue_head_;
                    if (self->queue_head_ == q.size()) {
                      q.clear();
                      self->queue_head_ = 0;
                    }
                    self->writing_ = false;
                    // A failed write ends the session through the read side.
                    if (!ec && self->queue_head_ < q.size() && self->state_ == State::kOpen) {
                      self->write_next();
                    }
                  });
}

void WsSession::close_with(Rejection r) {
  if (state_ == State::kClosing || state_ == State::kEnded) return;
  if (!accepted_) {
    if (!refusal_) refusal_ = r;  // sent as soon as the upgrade completes; the first one wins
    return;
  }
  state_ = State::kClosing;
  // Drop what was not yet handed to the socket; the write in flight (queue head) finishes first.
  if (queue_.size() > queue_head_ + (writing_ ? 1 : 0)) {
    for (std::size_t i = queue_head_ + (writing_ ? 1 : 0); i < queue_.size(); ++i) {
      unsent_bytes_ -= queue_[i]->size();
    }
    queue_.resize(queue_head_ + (writing_ ? 1 : 0));
  }
  // A reader too slow for its backlog gets the close frame without the backlog before it.
  if (r == kOverloaded) ws_.next_layer().discard_pending();
  // The member is out as soon as the server decides to close it: its peers hear at once, and
  // its seat is free, without waiting for a client that may never answer the close.
  depart();
  // Without a read pending, Beast's close reads up to the peer's close frame itself; either way
  // the session ends here or in on_read, whichever comes first (end() runs once).
  ws_.async_close(websocket::close_reason(static_cast<websocket::close_code>(r.code), r.reason),
                  [self = shared_from_this()](boost::system::error_code) { self->end(); });
  // A peer that never reads cannot take the close frame: give it the handshake timeout, then cut.
  arm_deadline();
}

void WsSession::heartbeat_tick() {
  if (state_ != State::kOpen || !accepted_) return;
  if (!alive_) {
    metrics().heartbeat_terminations.inc();
    server_.log().info("Terminating unresponsive client", {{"clientId", client_id_}});
    terminate();
    return;
  }
  alive_ = false;
  if (ping_in_flight_) return;
  ping_in_flight_ = true;
  ws_.async_ping({}, [self = shared_from_this()](boost::system::error_code) {
    self->ping_in_flight_ = false;
  });
}

void WsSession::probe() {
  if (state_ != State::kOpen || probe_timer_) return;
  if (!accepted_) {
    // Joined, its 101 still being written: the ping follows the upgrade.
    probe_after_accept_ = true;
    return;
  }
  answered_probe_ = false;
  if (!ping_in_flight_) {
    ping_in_flight_ = true;
    ws_.async_ping({}, [self = shared_from_this()](boost::system::error_code) {
      self->ping_in_flight_ = false;
    });
  }
  probe_timer_ = std::make_unique<boost::asio::steady_timer>(loop_.ioc);
  probe_timer_->expires_after(std::chrono::milliseconds(server_.config().stale_member_probe_ms));
  probe_timer_->async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    if (ec) return;
    auto self = weak.lock();
    if (!self) return;
    self->probe_timer_.reset();
    if (self->answered_probe_ || self->state_ != State::kOpen) return;
    metrics().stale_members_released.inc();
    self->server_.log().info("Releasing member that did not answer a probe",
                             {{"clientId", self->client_id_}});
    self->terminate();
  });
}

void WsSession::terminate() {
  boost::system::error_code ec;
  ws_.next_layer().socket().close(ec);
}

void WsSession::unregister() {
  if (!registered_) return;
  // Swap-remove from the loop's list; the moved session learns its new slot.
  auto& list = loop_.sessions;
  list[loop_slot] = list.back();
  list[loop_slot]->loop_slot = loop_slot;
  list.pop_back();
  registered_ = false;
  metrics().active_connections.dec();
}

void WsSession::end() {
  if (state_ == State::kEnded) return;
  state_ = State::kEnded;
  if (deadline_) deadline_->cancel();
  unregister();
  depart();
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
