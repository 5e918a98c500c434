// WebSocket admission: the connect checks in contract order, the join, the probe retry.
#include "net/ws_admission.hpp"

#include <random>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include "net/loop_owned.hpp"
#include "net/server.hpp"
#include "signaling/protocol.hpp"
#include "signaling/resume.hpp"

namespace sigsrv {

namespace {

std::string random_client_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const uint64_t a = rng(), b = rng();
  return client_id_from(a, b);
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

void WsAdmission::refuse(Rejection r, RejectReason reason) {
  metrics().rejected(reason).inc();
  s_.server().log().debug(
      "Connection refused",
      {{"code", static_cast<unsigned>(r.code)}, {"reason", r.reason}, {"ip", s_.ip()}});
  s_.refuse(r);
}

void WsAdmission::admit() {
  Server& server = s_.server();
  const Config& cfg = server.config();
  ConnectFacts facts;
  facts.draining = server.draining();
  facts.breaker_open = server.bus().breaker_open();
  facts.over_max_connections =
      cfg.max_connections > 0 && server.websocket_count.load() > cfg.max_connections;
  facts.has_host = has_host;
  facts.params = &params;
  facts.is_tls = s_.is_tls();
  facts.forwarded_proto = forwarded_proto;
  if (origin) facts.origin = *origin;
  facts.subprotocol_offered = subprotocol_offered;
  if (auto r = check_before_auth(server.admission(), facts)) {
    refuse(*r, reason_of(*r));
    return;
  }
  // Rows 8-10, after the cheap checks: a signature check costs tens of microseconds.
  const std::string_view token =
      !params.token.empty() ? std::string_view(params.token) : authorization_token;
  TokenOutcome outcome = TokenOutcome::kInvalid;
  const JwtKey* key = server.jwt_key();
  std::shared_ptr<const JwtKey> jwks_key;  // keeps a JWKS key alive past a set swap
  if (cfg.enable_auth && !token.empty() && key == nullptr && server.jwks() != nullptr) {
    KeyPick pick = pick_jwks_key(server.jwks()->current().get(), jwt_kid(token));
    if (!pick.key && pick.refetch_may_help && !jwks_waited_) {
      // Wait (within the handshake deadline) for a fetch, then run the checks again; a socket
      // the deadline closed meanwhile is dropped, never joined.
      jwks_waited_ = true;
      const JwksWait wait = server.jwks()->await_refresh(
          std::chrono::steady_clock::now(), [self = s_.shared_from_this()] {
            boost::asio::post(self->loop().ioc, [self] {
              if (WsAdmission* a = self->admission(); a && self->socket_open()) a->admit();
            });
          });
      if (wait == JwksWait::kWaiting) return;
      pick.reason += wait == JwksWait::kRateLimited ? " (refetch rate limited)" : " (wait full)";
    }
    jwks_key = std::move(pick.key);
    key = jwks_key.get();
    if (key == nullptr) server.log().debug("Token refused", {{"err", pick.reason}});
  }
  if (cfg.enable_auth && !token.empty() && key != nullptr) {
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    const JwtResult jr = verify_jwt(token, *key, server.jwt_policy(), *params.room_id, now);
    outcome = jr.outcome;
    // The reason only (expired, bad signature, ...); the token itself is never logged.
    if (outcome != TokenOutcome::kValid) server.log().debug("Token refused", {{"err", jr.reason}});
  }
  if (auto r = check_auth(cfg.enable_auth, !token.empty(), outcome)) {
    refuse(*r, *r == kForbidden ? RejectReason::kForbidden : RejectReason::kUnauthorized);
    return;
  }
  // Row 11: counted only for connections that passed the cheap checks.
  if (auto allowed = server.bus().connection_allowed_now(s_.ip(), cfg.rate_limit_conn_per_10s)) {
    after_rate_check(*allowed);
    return;
  }
  server.bus().check_connection(s_.ip(), cfg.rate_limit_conn_per_10s,
                                [self = s_.shared_from_this()](bool ok) {
                                  boost::asio::post(self->loop().ioc, [self, ok] {
                                    if (WsAdmission* a = self->admission()) a->after_rate_check(ok);
                                  });
                                });
}

void WsAdmission::after_rate_check(bool allowed) {
  if (!allowed) {
    metrics().drops(RateScope::kConnectIp).inc();
    refuse(kRateLimited, RejectReason::kRateLimited);
    return;
  }
  if (params.resume == ConnectParams::Resume::kToken) {
    resume_session();
    return;
  }
  join_room();
}

void WsAdmission::join_room() {
  client_id_ = random_client_id();
  // Two more tries after a probe: the first soon after the probe's deadline, the second later,
  // for a release that reaches Redis from another instance.
  join_retries_left_ = s_.server().config().stale_member_probe_ms > 0 ? 2 : 0;
  send_join();
}

void WsAdmission::send_join() {
  Server& server = s_.server();
  server.bus().join(*params.room_id, client_id_, server.config().room_capacity,
                    [self = s_.shared_from_this()](JoinResult r) {
                      boost::asio::dispatch(self->loop().ioc, [self, r] {
                        if (WsAdmission* a = self->admission()) a->on_joined(r);
                      });
                    });
}

void WsAdmission::on_joined(JoinResult result) {
  Server& server = s_.server();
  Loop& loop = s_.loop();
  const std::string room_id = *params.room_id;
  if (result.status == JoinResult::Status::kFull && join_retries_left_ > 0) {
    // A member whose connection died silently holds its seat until two heartbeats pass; ask
    // every instance holding this room's members to ping them now (PROTOCOL.md section 8).
    const bool first = join_retries_left_-- == 2;
    if (first) {
      metrics().stale_member_probes.inc();
      server.probe_room(room_id);
      server.bus().publish_presence(room_id, client_id_, PresenceEvent::kProbe);
    }
    retry_timer_ = std::make_unique<boost::asio::steady_timer>(loop.ioc);
    retry_timer_->expires_after(
        std::chrono::milliseconds(server.config().stale_member_probe_ms) +
        (first ? std::chrono::milliseconds(150) : std::chrono::milliseconds(500)));
    // The wait owns the session (nothing else does before the upgrade); the handshake deadline
    // still bounds it.
    retry_timer_->async_wait([self = s_.shared_from_this()](boost::system::error_code ec) {
      if (ec || !self->socket_open()) return;
      if (WsAdmission* a = self->admission()) a->send_join();
    });
    return;
  }
  retry_timer_.reset();
  if (result.status == JoinResult::Status::kFull) {
    refuse(kRoomFull, RejectReason::kRoomFull);
    return;
  }
  if (result.status == JoinResult::Status::kError) {
    refuse(kInternalError, RejectReason::kInternalError);
    return;
  }
  if (server.draining()) {
    // The drain started while the join was in flight: undo it and refuse like row 1.
    server.bus().leave(room_id, client_id_);
    refuse(draining_rejection(server.config().shutdown_close_code), RejectReason::kDraining);
    return;
  }
  const bool resumable = params.resume != ConnectParams::Resume::kNone;
  const bool shared = server.bus().shares_sessions();
  if (resumable && shared && session_id_.empty()) {
    // The session starts in the bus before anyone can hear of the member, so that everything
    // relayed to it from then on is numbered for it.
    session_id_ = random_session_id();
    server.bus().session_open(SessionRef{room_id, session_id_, client_id_},
                              [self = s_.shared_from_this(), result](bool ok) {
                                boost::asio::post(self->loop().ioc, [self, result, ok] {
                                  WsAdmission* a = self->admission();
                                  if (!a) return;
                                  if (ok) {
                                    a->on_joined(result);
                                    return;
                                  }
                                  self->server().bus().leave(*a->params.room_id, a->client_id_);
                                  a->refuse(kInternalError, RejectReason::kInternalError);
                                });
                              });
    return;
  }
  MemberRelay& m = s_.member();
  m.client_id = client_id_;
  m.joined = true;
  // Clients that opted in get ICE servers with a credential of their own (PROTOCOL.md section
  // 9); a resume that fell back to this join hands the same ones in its resumed reply.
  const std::string ice =
      resumable || params.events ? server.ice_servers_for(client_id_) : std::string();
  std::string welcome;
  if (resumable) {
    // The member, not this socket, is in the room: it outlives the socket for a resume.
    if (session_id_.empty()) session_id_ = random_session_id();
    m.resumable = make_loop_owned<ResumableMember>(loop.ioc, server, loop, session_id_, client_id_);
    m.room = server.rooms().attach(
        room_id, Member{client_id_, m.resumable, m.resumable.get(), loop.index, true, shared});
    m.resumable->start(m.room, s_.weak_from_this(), loop.index);
    m.generation = 1;
    server.resumables().add(m.resumable);
    welcome =
        resumable_welcome_message(client_id_, room_id, result.members - 1, session_id_,
                                  mint_resume_token(server.resume_key(), room_id, session_id_),
                                  server.config().resume_window_ms, ice);
  } else {
    m.room = server.rooms().attach(
        room_id, Member{client_id_, s_.weak_from_this(), &s_, loop.index, params.events, false});
    if (params.events) welcome = welcome_message(client_id_, room_id, result.members - 1, ice);
  }
  s_.open();
  server.bus().joined_locally(room_id, client_id_, result.epoch);
  server.log().info(
      "Client joined room",
      {{"clientId", client_id_}, {"roomId", room_id}, {"localCount", m.room->size()}});

  Targets others;
  m.room->collect_others(m.self_peer(s_), others);
  if (not_recovered_) {
    s_.deliver(std::make_shared<const std::string>(resumed_message(false, 0, ice)));
  }
  if (!welcome.empty()) s_.deliver(std::make_shared<const std::string>(std::move(welcome)));
  server.bus().publish_presence(room_id, client_id_, PresenceEvent::kJoined,
                                m.resumable != nullptr);
  SharedText joined_note;
  for (auto& t : others) {
    if (!t.wants_events) continue;
    if (!joined_note)
      joined_note = std::make_shared<const std::string>(peer_joined_message(client_id_));
    server.send_from(loop.index, std::move(t), joined_note);
  }
  // Reading starts only after the upgrade: whatever the client sends from its open event on is
  // relayed in order, never dropped because its join was in flight.
  s_.accept();
}

}  // namespace sigsrv
