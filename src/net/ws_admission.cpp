// WebSocket session, admission: the connect checks in contract order, the join, the probe retry.
#include "net/ws_session.hpp"

#include <random>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include "net/server.hpp"
#include "net/ws_upgrade.hpp"
#include "obs/metrics.hpp"
#include "signaling/resume.hpp"

namespace sigsrv {

namespace {

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

}  // namespace sigsrv
