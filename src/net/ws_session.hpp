// One WebSocket connection, socket side: upgrade, read loop, bounded writes, heartbeat, probe,
// close. The connect checks and the join before the upgrade are WsAdmission's; what the session
// is as a room member (limits, verdicts, fan-out, departure) is MemberRelay's.
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

#include "limits/outbox.hpp"
#include "net/member_relay.hpp"
#include "net/tls_stream.hpp"
#include "signaling/admission.hpp"
#include "signaling/connect_params.hpp"
#include "signaling/rooms.hpp"

namespace sigsrv {

class Server;
class WsAdmission;
struct Loop;

class WsSession final : public Peer,
                        public TeardownObserver,
                        public std::enable_shared_from_this<WsSession> {
 public:
  using Request = boost::beast::http::request<boost::beast::http::empty_body>;

  WsSession(Server& server, Loop& loop, MaybeTlsStream stream);
  ~WsSession() override;

  // Reads the upgrade request's facts, then hands over to the admission. `params`: the request
  // target's, already read (HttpSession needed the room id to pick the loop). `peer`: the
  // client's address as the listener accepted it.
  void start(Request request, ConnectParams params, const boost::asio::ip::address& peer);
  // Queues a message for this peer; on this session's loop only.
  void deliver(const SharedText& message) override;
  // Called by the loop's heartbeat walk; acts once `due_after` has passed since the last ping:
  // cut if that ping found no pong, else ping again.
  void heartbeat_tick(std::chrono::steady_clock::time_point now,
                      std::chrono::steady_clock::duration due_after);
  // Pings now; no pong within STALE_MEMBER_PROBE_MS ends the socket as a failed heartbeat.
  void probe() override;
  // Graceful close with a code and reason (drain, backpressure, refused connect).
  void close_with(Rejection r);
  // Other loops' posts to it went past its backpressure budget.
  void overloaded() override;
  void fault(std::string_view what) override;

  // For the session's collaborators, on its loop.
  Server& server() const { return server_; }
  Loop& loop() const { return loop_; }
  const std::string& ip() const { return ip_; }
  bool is_tls() { return ws_.next_layer().is_tls(); }
  // False once the socket was closed (handshake deadline): an admission still under way stops.
  bool socket_open() { return ws_.next_layer().socket().is_open(); }
  MemberRelay& member() { return member_; }
  // Null once the upgrade has completed: the admission is over.
  WsAdmission* admission() const { return admission_.get(); }
  // The admission's two outcomes, each followed by accept(). Refused: the close code goes out
  // right after the upgrade (the first refusal wins). Admitted: registered with the loop and
  // open for deliveries (queued until the upgrade is out), with member() filled in.
  void refuse(Rejection r);
  void open();
  // Completes the upgrade; then a refusal is sent, or reading starts.
  void accept();

  std::size_t loop_slot = 0;  // index in Loop::sessions, maintained by the loop's owner

 private:
  // One byte, packed with the flags below: every byte of an idle connection counts.
  enum class State : uint8_t { kUpgrading, kAdmitting, kOpen, kClosing, kEnded };

  void on_accepted(boost::system::error_code ec);
  // Over BACKPRESSURE_CLOSE_THRESHOLD_BYTES (`unsent`): counted, logged and closed with 1013, once.
  void overload(std::size_t unsent);
  // Beast sent its close frame on its own (the client's close answered, or a protocol error).
  void on_teardown() override;
  // Reads on (while open): straight into Beast when it holds received bytes (or a message is
  // unfinished, or the stream is TLS), else receive(), or await_data() when the socket is
  // unlikely to hold bytes yet.
  void read_next(bool bytes_likely = true);
  void read();
  void on_read(boost::system::error_code ec);
  // Plain TCP, between messages, with nothing buffered in Beast: reads what the socket has into
  // Beast's read buffer and starts a Beast read only if bytes came; else await_data() waits for
  // the socket to become readable without any read pending, so an idle connection holds neither
  // Beast's read operation nor a read buffer. A pong the heartbeat waits for is taken here
  // (take_pong()).
  void receive();
  void await_data();
  // Consumes a whole client pong at the start of Beast's read buffer, if there is one.
  bool take_pong();
  void arm_deadline();
  void write_next();
  void terminate();
  void unregister();
  void end();

  Server& server_;
  Loop& loop_;
  // Without permessage-deflate support (DESIGN.md: off), which would keep its state in every
  // stream.
  boost::beast::websocket::stream<MaybeTlsStream, false> ws_;
  boost::beast::flat_buffer read_buffer_;
  std::unique_ptr<WsAdmission> admission_;  // from start() until the upgrade completes
  std::string ip_;
  MemberRelay member_;
  Outbox outbox_;  // bounded by BACKPRESSURE_CLOSE_THRESHOLD_BYTES; see Outbox for the policy

  std::chrono::steady_clock::time_point last_heartbeat_ = std::chrono::steady_clock::now();
  bool alive_ = true;                // a pong arrived since the last heartbeat tick
  bool answered_probe_ = true;       // a pong arrived since the last probe began
  bool probe_after_accept_ = false;  // probed while its upgrade was still being written
  bool ping_in_flight_ = false;      // Beast allows one outstanding ping
  bool registered_ = false;          // in loop_.sessions
  bool accepted_ = false;            // the 101 went out; writes and reads may start
  bool overload_reported_ = false;   // closed as overloaded (outbox or inbound budget)
  State state_ = State::kUpgrading;
  // Close code to send once the upgrade completes; code 0: none (an optional would cost 8 bytes).
  Rejection refusal_{0, {}};
  // HANDSHAKE_TIMEOUT_MS for admission + upgrade, then again for a closing handshake; absent
  // while the session is open, so an idle connection carries no timer.
  std::unique_ptr<boost::asio::steady_timer> deadline_;
  // A probe in progress; absent otherwise, so an idle connection carries no timer.
  std::unique_ptr<boost::asio::steady_timer> probe_timer_;
};

}  // namespace sigsrv
