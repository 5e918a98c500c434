// A resumable member (resume=1): the room's member is this object, not a socket, so its seat,
// its numbered log and its identity outlive a dropped socket; one socket at a time is attached.
#pragma once

#include <atomic>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "bus/bus.hpp"
#include "signaling/admission.hpp"
#include "signaling/resume.hpp"
#include "signaling/rooms.hpp"

namespace sigsrv {

class Server;
class WsSession;
struct Loop;

// Lives on its home loop (the loop of the socket that opened or resumed the session here): every
// method but the atomics runs there, and the room delivers to it there. A socket resumed on
// another loop gets the numbered messages by one post each, from this one thread, so their
// order holds.
//
// Who numbers: on the in-process bus, this object (SessionLog). On a bus that shares sessions
// (Redis), the bus: relays arrive numbered, notices are sent to the bus to be numbered and come
// back in order with the relays, and the log lives there, so any instance can resume it.
class ResumableMember final : public Peer, public std::enable_shared_from_this<ResumableMember> {
 public:
  ResumableMember(Server& server, Loop& home, std::string session_id, std::string client_id);

  // Numbers and keeps `message` (or has the bus number it), then hands it to the socket.
  void deliver(const SharedText& message) override;
  // Probes the attached socket; a suspended member holds its seat by right and is not probed.
  void probe() override;
  // Shared sessions: a relay with the numbers the bus gave it; a notice numbered by the bus; the
  // session resumed on another instance.
  void deliver_relay(const SharedText& data, const RecipientSeqs& seqs) override;
  void deliver_numbered(uint64_t seq, const SharedText& text) override;
  void taken_over() override;
  // Posts to the member went past its budget: its socket is the slow one.
  void overloaded() override;
  // Its socket is closed with 1011; the session can be resumed, as after any other close.
  void fault(std::string_view what) override;

  // The opening socket joined `room`: attaches it as generation 1.
  void start(std::shared_ptr<Room> room, std::weak_ptr<WsSession> socket, unsigned socket_loop);
  // Shared sessions: the bus granted `socket` this session (a resume on this instance), whose
  // last number is `last_seq`; a socket already attached here is closed with 4001. Returns the
  // new socket's generation.
  uint64_t adopt(std::shared_ptr<Room> room, std::weak_ptr<WsSession> socket, unsigned socket_loop,
                 uint64_t last_seq, bool was_suspended);

  // The socket of `generation` ended; `client_closed`: with the client's close frame (it left).
  void socket_ended(uint64_t generation, bool client_closed);

  struct Claim {
    // kGone: the token is refused (the session left); kError: the bus failed (1011).
    enum class Result { kResumed, kNotRecovered, kGone, kError } result = Result::kGone;
    std::vector<SharedText> replay;  // kResumed: every message after lastSeq, in order
    uint64_t received = 0;           // kResumed: client messages accepted in this session
    uint64_t generation = 0;         // kResumed: the new socket's
    std::shared_ptr<Room> room;      // kResumed: the room the member is in
    bool after_gap = false;          // kResumed: the bus had lost messages for it (resync)
  };
  // In-process bus: a resume with `last_seq` from `socket`. kResumed: `socket` is attached and
  // any previous one
  // is closed with 4001. kNotRecovered: the messages after `last_seq` are not all kept, and the
  // member has left (its seat is free for the fresh join that follows). kGone: it had left.
  Claim claim(std::weak_ptr<WsSession> socket, unsigned socket_loop, uint64_t last_seq);

  // The bus lost messages for a while: an attached socket is closed (1013) so that the client
  // resumes and the replay fills the gap.
  void resync();
  // True once after the socket was closed for a resync: the resume that follows recovers what
  // the bus lost.
  bool take_resynced() { return std::exchange(resynced_, false); }
  // Leaves for good now (drain); a no-op once left.
  void leave();

  Loop& home() const { return home_; }
  bool has_left() const { return life_.state() == MemberLifecycle::State::kLeft; }
  SessionRef ref() const;
  const std::string& session_id() const { return session_id_; }
  const std::string& client_id() const { return client_id_; }
  const std::shared_ptr<Room>& room() const { return room_; }

  // Written by the attached socket on its own loop, read by claim() on the home loop.
  std::atomic<uint64_t> received{0};
  // The attached socket's generation; a socket that no longer matches has been taken over.
  std::atomic<uint64_t> generation{0};

 private:
  void depart(bool tombstone);
  void notify_peers(const SharedText& note);
  void arm_window();
  // Runs `f` with the attached socket on the socket's loop (at once when that is this one).
  template <class F>
  void on_socket(F f);
  void forward(const SharedText& numbered);
  // Tells the peers (with events, here and on other instances) it was suspended or resumed.
  void announce(PresenceEvent event);
  void close_socket(Rejection r);
  void end_suspension();

  Server& server_;
  Loop& home_;
  const std::string session_id_;
  const std::string client_id_;
  std::shared_ptr<Room> room_;
  const bool shared_;      // the bus numbers and keeps this session (Redis)
  SessionLog log_;         // in-process bus only
  uint64_t last_seq_ = 0;  // shared: the last number forwarded (later ones must follow it)
  bool resynced_ = false;  // see take_resynced()
  MemberLifecycle life_;
  std::weak_ptr<WsSession> socket_;
  unsigned socket_loop_ = 0;
  boost::asio::steady_timer window_;
};

// Every live resumable session of this instance by session id, and the ids of sessions that
// left with a close frame, so that their token is refused (1008) rather than read as a
// window that passed. Touched on joins, resumes and departures only, never per message.
class ResumeRegistry {
 public:
  enum class Found { kLive, kLeft, kUnknown };
  void add(const std::shared_ptr<ResumableMember>& member);
  std::pair<Found, std::shared_ptr<ResumableMember>> find(const std::string& session_id);
  // `tombstone`: the session left (close frame); its token is refused for `keep` from now.
  void remove(const std::string& session_id, bool tombstone, std::chrono::milliseconds keep);
  std::vector<std::shared_ptr<ResumableMember>> live();

 private:
  using Clock = std::chrono::steady_clock;
  // Overflow policy: tombstones past kMaxTombstones drop the oldest (its token then reads as an
  // expired session: recovered:false and a fresh join, never someone else's seat).
  static constexpr std::size_t kMaxTombstones = 100000;
  void prune(Clock::time_point now);

  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<ResumableMember>> live_;
  std::unordered_map<std::string, Clock::time_point> left_;
  std::deque<std::pair<Clock::time_point, std::string>> left_order_;
};

}  // namespace sigsrv
