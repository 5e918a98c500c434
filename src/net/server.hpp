// The server: event loops, listeners, shared state, drain; sessions reach everything through it.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "auth/jwks.hpp"
#include "auth/jwt.hpp"
#include "auth/origin.hpp"
#include "bus/bus.hpp"
#include "config/config.hpp"
#include "limits/deadline_list.hpp"
#include "net/handshake_deadlines.hpp"
#include "net/resumable_member.hpp"
#include "obs/logger.hpp"
#include "signaling/admission.hpp"
#include "signaling/ice_servers.hpp"
#include "signaling/rooms.hpp"

namespace sigsrv {

namespace asio = boost::asio;
class WsSession;
class Listener;

// One event loop and the sessions it owns; only its own thread touches `sessions`.
// Member order matters: `ioc` is released before `sessions` and `handshake_list`, because
// destroying it destroys the pending handlers, and with them sessions that unregister
// themselves from those; and after `heartbeat` and `handshakes` (and the server's other I/O
// objects on it), which must not outlive it.
struct Loop {
  // `shared`: the bus' loop (see Bus::loop_context()); else the loop gets its own.
  Loop(unsigned i, std::shared_ptr<asio::io_context> shared,
       std::chrono::milliseconds handshake_timeout)
      : index(i),
        ioc_owner(shared ? std::move(shared) : std::make_shared<asio::io_context>(1)),
        ioc(*ioc_owner),
        heartbeat(ioc),
        handshakes(ioc, handshake_list, handshake_timeout) {}
  unsigned index;
  std::vector<WsSession*> sessions;
  DeadlineList handshake_list;  // the HTTP sessions of this loop not yet upgraded or answered
  std::shared_ptr<asio::io_context> ioc_owner;  // hint 1: exactly one thread runs each loop
  asio::io_context& ioc;
  asio::steady_timer heartbeat;
  std::size_t heartbeat_cursor = 0;  // the next session the heartbeat visits
  HandshakeDeadlines handshakes;
  std::thread thread;
};

class Server final : public BusListener {
 public:
  Server(const Config& config, Logger& log, Bus& bus);
  ~Server() override;

  // Binds the main port (and HEALTH_PORT when set); an error says which address failed and why.
  std::optional<std::string> listen();
  uint16_t port() const;
  std::optional<uint16_t> health_port() const;
  // Runs every loop until the drain finishes; returns the process exit code.
  int run();
  // SIGTERM/SIGINT: readiness 503, new connections refused, every client closed.
  void begin_drain();
  // What is left of DRAIN_TIMEOUT_MS once run() returned (for the bus to flush leaves).
  std::chrono::milliseconds remaining_drain_budget() const;

  const Config& config() const { return config_; }
  Logger& log() { return log_; }
  Bus& bus() { return bus_; }
  RoomRegistry& rooms() { return rooms_; }
  const AdmissionPolicy& admission() const { return policy_; }
  // ENABLE_AUTH: the key and rules tokens are verified with (set before run()).
  void set_auth(std::shared_ptr<const JwtKey> key, JwtPolicy policy) {
    jwt_key_ = std::move(key);
    jwt_policy_ = std::move(policy);
  }
  // JWKS_URL instead of a fixed key: tokens are verified with the cached key their kid names.
  // Not owned; the JwksClient that owns it outlives run().
  void set_jwks(JwksCache* jwks, JwtPolicy policy) {
    jwks_ = jwks;
    jwt_policy_ = std::move(policy);
  }
  const JwtKey* jwt_key() const { return jwt_key_.get(); }
  JwksCache* jwks() const { return jwks_; }
  // TLS_CERT_FILE/TLS_KEY_FILE: the main port speaks TLS with this context (set before run()).
  void set_tls(std::shared_ptr<asio::ssl::context> ctx) { tls_ = std::move(ctx); }
  asio::ssl::context* tls_context() const { return tls_.get(); }
  const JwtPolicy& jwt_policy() const { return jwt_policy_; }
  bool draining() const { return draining_.load(std::memory_order_relaxed); }
  bool ready() const { return !draining() && bus_.ready(); }
  Loop& loop(unsigned i) { return *loops_[i]; }
  // Round-robin of accepted connections: the loop the next one goes to, and the move past it
  // once one was accepted there (an accept that found nothing must not skip a loop).
  Loop& next_loop();
  void loop_taken();
  // The loop that holds this instance's members of `room_id` (room_loop()): a connection naming
  // the room is moved there before its upgrade, so a room's relays never cross loops.
  Loop& home_loop(std::string_view room_id) {
    return *loops_[room_loop(room_id, static_cast<unsigned>(loops_.size()))];
  }
  // Hands `message` to `target` on the target's own loop (one post), from any thread.
  // Posts `f(peer)` to the target's loop if its InboundBudget takes `bytes` more; else drops it
  // (and, the first time, has the peer closed as overloaded).
  template <class F>
  void post_bounded(Target&& target, std::size_t bytes, F f);
  void post_to(Target&& target, const SharedText& message);
  // Same, called on loop `from_loop`: a target on that loop gets it at once, without a post.
  void send_from(unsigned from_loop, Target&& target, const SharedText& message);
  // A member (`self`, known to others as `client_id`) leaves `room` for good, on its loop
  // `from_loop`: out of the local room and the bus room, peers told (here and elsewhere).
  void depart(const std::shared_ptr<Room>& room, const Peer* self, const std::string& client_id,
              unsigned from_loop);

  // A member held by another instance (or by none) leaves: every peer, here and elsewhere, gets
  // peer-disconnected (a resume that could not recover). `free_seat`: also free its seat in the
  // bus (false when the bus freed it already).
  void release_member(const std::string& room_id, const std::string& client_id, bool free_seat);

  // Resumable sessions (resume=1) of this instance, and the key their tokens are signed with.
  ResumeRegistry& resumables() { return resumables_; }
  // The drain left a resumable session suspended for a resume on another instance.
  void hand_over_session() { bus_.keep_lease_on_stop(); }
  const std::string& resume_key() const { return resume_key_; }
  // TURN_URLS (PROTOCOL.md section 9): the iceServers JSON for a welcome or resumed sent to
  // `client_id` now, a fresh TURN credential included (counted); empty when TURN_URLS is unset.
  std::string ice_servers_for(std::string_view client_id) const;

  // BusListener: what other instances publish, and our membership to re-assert.
  void deliver_remote(const std::string& room_id, std::string_view sender_id,
                      const SharedText& data, const RecipientSeqs& seqs, bool from_here) override;
  void deliver_numbered(const std::string& room_id, std::string_view client_id, uint64_t seq,
                        const SharedText& text) override;
  void presence_remote(const std::string& room_id, std::string_view client_id,
                       PresenceEvent event) override;
  // Pings every local member of `room_id` now; those that do not answer within
  // STALE_MEMBER_PROBE_MS are released as if their heartbeat had failed.
  void probe_room(const std::string& room_id);
  std::vector<std::pair<std::string, std::string>> local_members() override;
  void sessions_resync(const std::set<std::string>* only_rooms) override;

  // WebSocket sessions alive (from the upgrade request to the end): counted against
  // MAX_CONNECTIONS, and the drain waits for zero.
  std::atomic<std::size_t> websocket_count{0};
  // Connections in their HTTP phase (HttpSession alive): also bounded by MAX_CONNECTIONS.
  std::atomic<std::size_t> http_count{0};

 private:
  // Exit status when a handler outside any session threw (EX_SOFTWARE).
  static constexpr int kExitLoopFailure = 70;
  // Runs a loop until it stops. A session's handlers catch what they throw (the session is
  // closed with 1011); anything else ends the process: fail_loop().
  void run_loop(Loop& l);
  [[noreturn]] void fail_loop(Loop& l, std::string_view what);
  // The heartbeat walks each loop's sessions in kHeartbeatSteps steps per HEARTBEAT_INTERVAL_MS,
  // at most kHeartbeatSlice sessions per handler: pinging 15,000 sessions in one handler held the
  // loop's relays for up to a second every interval on a loaded machine, and took 12 MiB at once
  // for the writes in flight.
  static constexpr std::size_t kHeartbeatSteps = 32;
  static constexpr std::size_t kHeartbeatSlice = 128;
  void schedule_heartbeat(Loop& loop);
  std::chrono::milliseconds heartbeat_step() const;
  // Ticks the next `left` sessions from the loop's cursor, kHeartbeatSlice per handler.
  void heartbeat_slice(Loop& loop, std::size_t left);
  // Runs `f` on its own loop for the numbered (resumable, bus-numbered) member `client_id`.
  template <class F>
  void post_to_numbered(const std::string& room_id, std::string_view client_id, F f);
  void watch_drain(std::chrono::steady_clock::time_point deadline);
  void stop_all();

  const Config& config_;
  Logger& log_;
  Bus& bus_;
  RoomRegistry rooms_;
  std::string resume_key_;  // RESUME_SECRET, or random bytes for this process alone
  const IceServers ice_servers_;
  OriginMatcher origins_;
  AdmissionPolicy policy_;
  std::shared_ptr<const JwtKey> jwt_key_;
  JwksCache* jwks_ = nullptr;
  JwtPolicy jwt_policy_;
  std::shared_ptr<asio::ssl::context> tls_;
  std::vector<std::unique_ptr<Loop>> loops_;
  // After loops_, so it goes first: its members' timers belong to the loops' io_contexts.
  ResumeRegistry resumables_;
  std::atomic<unsigned> next_loop_{0};
  std::unique_ptr<Listener> main_listener_;
  std::unique_ptr<Listener> health_listener_;
  std::optional<asio::signal_set> signals_;
  std::optional<asio::steady_timer> drain_timer_;
  std::atomic<bool> draining_{false};
  std::chrono::steady_clock::time_point drain_deadline_{};  // set by begin_drain (loop 0)
};

}  // namespace sigsrv
