// One WebSocket peer: admission, read loop, bounded write queue, heartbeat, close.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bus/bus.hpp"
#include "limits/token_bucket.hpp"
#include "net/resumable_member.hpp"
#include "net/tls_stream.hpp"
#include "obs/metrics.hpp"
#include "signaling/admission.hpp"
#include "signaling/rooms.hpp"
#include "signaling/verdict_queue.hpp"

namespace sigsrv {

class Server;
struct Loop;

class WsSession final : public Peer, public std::enable_shared_from_this<WsSession> {
 public:
  using Request = boost::beast::http::request<boost::beast::http::empty_body>;

  WsSession(Server& server, Loop& loop, MaybeTlsStream stream);
  ~WsSession() override;

  // Completes the upgrade for `request`, then runs the connect checks.
  void start(Request request);
  // Queues a message for this peer; on this session's loop only.
  void deliver(const SharedText& message) override;
  // Called by the loop every HEARTBEAT_INTERVAL_MS.
  void heartbeat_tick();
  // Pings now; no pong within STALE_MEMBER_PROBE_MS ends the socket as a failed heartbeat.
  void probe() override;
  // Graceful close with a code and reason (drain, backpressure, refused connect).
  void close_with(Rejection r);
  // The answer to this socket's resume claim, on this session's loop.
  void on_resume_claimed(const std::shared_ptr<ResumableMember>& member,
                         ResumableMember::Claim claim);

  std::size_t loop_slot = 0;  // index in Loop::sessions, maintained by the loop's owner

 private:
  enum class State { kUpgrading, kAdmitting, kOpen, kClosing, kEnded };
  struct Upgrade;  // request facts kept from the upgrade until admission is decided

  void accept();
  void on_accepted(boost::system::error_code ec);
  void admit();
  void after_rate_check(bool allowed);
  void join_room();
  void send_join();
  void resume_session();
  void claim_shared(const std::string& session_id, uint64_t last_seq);
  void count_unrelayed();
  void refuse_resume(Rejection r);
  void on_joined(JoinResult result);
  void reject(Rejection r, RejectReason reason);
  void read();
  void on_read(boost::system::error_code ec);
  void handle_message(std::string_view text);
  void on_verdict(MessageVerdict verdict);
  void process(std::string_view text, MessageVerdict verdict);
  void relay(const SharedText& message);
  void send_to(Target&& target, const SharedText& message);
  // This member as the room knows it: the session itself, or its ResumableMember.
  const Peer* self_peer() const;
  // A notice to this client: numbered through the member when the session is resumable.
  void notify_self(const SharedText& message);
  void arm_deadline();
  void depart();
  void write_next();
  void terminate();
  void unregister();
  void end();
  void leave_room();

  Server& server_;
  Loop& loop_;
  boost::beast::websocket::stream<MaybeTlsStream> ws_;
  boost::beast::flat_buffer read_buffer_;
  std::unique_ptr<Upgrade> upgrade_;
  State state_ = State::kUpgrading;

  std::string client_id_;
  std::string ip_;
  std::shared_ptr<Room> room_;
  TokenBucket bucket_;
  VerdictQueue awaiting_;       // messages waiting for the bus' window verdict (Redis bus)
  bool leave_pending_ = false;  // ended while verdicts were pending: leave after the last one

  // Outbound queue, bounded by BACKPRESSURE_CLOSE_THRESHOLD_BYTES of unsent data: a recipient
  // that lets it grow past the cap is closed with 1013 and its queue dropped, so a slow reader
  // never holds memory without bound nor slows the sender (who is never blocked).
  std::vector<SharedText> queue_;
  std::size_t queue_head_ = 0;
  std::size_t unsent_bytes_ = 0;
  bool writing_ = false;

  bool alive_ = true;                 // a pong arrived since the last heartbeat tick
  bool answered_probe_ = true;        // a pong arrived since the last probe began
  bool probe_after_accept_ = false;   // probed while its upgrade was still being written
  bool ping_in_flight_ = false;       // Beast allows one outstanding ping
  bool events_ = false;               // events=1: welcome and peer-joined
  bool registered_ = false;           // in loop_.sessions
  bool joined_ = false;               // member of the bus room and the local registry
  bool accepted_ = false;             // the 101 went out; writes and reads may start
  std::optional<Rejection> refusal_;  // close code to send once the upgrade completes
  bool overloaded_ = false;           // over the backpressure cap; the close is posted
  // HANDSHAKE_TIMEOUT_MS for admission + upgrade, then again for a closing handshake; absent
  // while the session is open, so an idle connection carries no timer.
  std::unique_ptr<boost::asio::steady_timer> deadline_;

  // resume=1: the member this socket is attached to, as its `generation_`-th socket. A socket
  // whose generation is no longer the member's has been taken over (4001) and stops relaying.
  std::shared_ptr<ResumableMember> resumable_;
  uint64_t generation_ = 0;
  std::string session_id_;      // the resumable session's id (set before the member exists)
  bool client_closed_ = false;  // the client sent a close frame: it left (no suspension)
  bool not_recovered_ = false;  // a resume fell back to a fresh join: resumed:false first

  // Joining a full room: the members were probed; the join is tried again after the probe.
  unsigned join_retries_left_ = 0;
  // A probe in progress (as a member) or a join waiting for one (as a joiner); absent otherwise,
  // so an idle connection carries no timer.
  std::unique_ptr<boost::asio::steady_timer> probe_timer_;
};

}  // namespace sigsrv
