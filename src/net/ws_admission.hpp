// The admission of one WebSocket connection, before its upgrade completes: the connect checks
// in contract order (JWT and JWKS waits included), the connection rate limit, then the join (with
// the stale-member probe's retries) or the resume claim. It decides once: WsSession::refuse() or
// WsSession::open(), then WsSession::accept().
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <optional>
#include <string>

#include "bus/bus.hpp"
#include "net/resumable_member.hpp"
#include "net/ws_session.hpp"
#include "obs/metrics.hpp"
#include "signaling/connect_params.hpp"

namespace sigsrv {

// Owned by its session from start() until the upgrade completes, then freed: an open connection
// carries none of this. Every continuation holds the session (its owner) and finds the
// admission through it, on the session's loop.
class WsAdmission {
 public:
  explicit WsAdmission(WsSession& session) : s_(session) {}

  // Facts of the upgrade request, filled in by WsSession::start().
  ConnectParams params;
  bool has_host = false;
  std::optional<std::string> origin;
  std::string forwarded_proto;
  bool subprotocol_offered = false;
  std::string authorization_token;
  WsSession::Request request;  // kept alive until async_accept completes

  // Runs the checks (again after a JWKS fetch it waited for).
  void admit();
  // The answer to this socket's resume claim.
  void on_resume_claimed(const std::shared_ptr<ResumableMember>& member,
                         ResumableMember::Claim claim);

 private:
  void refuse(Rejection r, RejectReason reason);
  void refuse_resume(Rejection r);
  void after_rate_check(bool allowed);
  void join_room();
  void send_join();
  void on_joined(JoinResult result);
  void resume_session();
  void claim_shared(const std::string& session_id, uint64_t last_seq);

  WsSession& s_;
  std::string client_id_;
  std::string session_id_;      // resume=1: chosen before its member exists (opened in the bus)
  bool jwks_waited_ = false;    // waited once for a JWKS fetch; the next key lookup is final
  bool not_recovered_ = false;  // a resume fell back to a fresh join: resumed:false first
  // Joining a full room: the members were probed; the join is tried again after the probe.
  unsigned join_retries_left_ = 0;
  std::unique_ptr<boost::asio::steady_timer> retry_timer_;
};

}  // namespace sigsrv
