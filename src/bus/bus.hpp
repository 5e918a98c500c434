// The seam between relay and the transport that reaches other instances.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "limits/string_hash.hpp"
#include "signaling/protocol.hpp"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace sigsrv {

struct JoinResult {
  enum class Status { kJoined, kFull, kError } status = Status::kError;
  std::size_t members = 0;  // room size after the join, this member included
  uint64_t epoch = 0;       // the bus' membership epoch when the join completed (joined_locally)
};

// Verdict of the shared 10 s windows on one message (PROTOCOL.md section 2).
enum class MessageVerdict { kAllowed, kIpLimited, kRoomLimited };

struct MessageLimits {
  uint32_t per_ip;
  uint32_t per_room;
};

// The keys of a member's per-IP and per-room message windows, as its bus names them, each with
// its hash computed once (the names are const, so the hashes stay theirs).
struct MessageWindows {
  MessageWindows(std::string ip_key, std::string room_key)
      : ip(std::move(ip_key)), room(std::move(room_key)) {}
  const std::string ip;
  const std::string room;
  HashedKey ip_key() const { return {ip, ip_hash_}; }
  HashedKey room_key() const { return {room, room_hash_}; }

 private:
  std::size_t ip_hash_ = StringViewHash{}(ip);
  std::size_t room_hash_ = StringViewHash{}(room);
};

// A resumable session (PROTOCOL.md section 8) as a bus that shares sessions knows it.
struct SessionRef {
  std::string room_id;
  std::string session_id;
  std::string client_id;
};

// The answer to a resume claim on a bus that shares sessions.
struct SessionClaim {
  enum class Result {
    kResumed,     // owned here now; `replay` holds every message after lastSeq
    kNotCovered,  // the messages after lastSeq are no longer all kept
    kUnknown,     // no such session (its window passed, or the storage lost it)
    kGone,        // its member was released (window passed, instance crashed)
    kLeft,        // it left with a close frame: the token is refused
    kError,       // the bus failed
  } result = Result::kError;
  std::string client_id;  // kResumed, kNotCovered, kGone
  uint64_t seq = 0;       // kResumed: the last number given
  uint64_t received = 0;  // kResumed: client messages accepted
  bool was_suspended = false;
  std::vector<SharedText> replay;
};

// What the bus needs from the server: local delivery of what other instances publish, and the
// local membership to re-assert after Redis lost it.
class BusListener {
 public:
  virtual ~BusListener() = default;
  // `data` goes to the local members of `room_id` except `sender_id`; resumable members named
  // in `seqs` get it with their number. `from_here`: this instance's own relay coming back,
  // already delivered to all but those numbered members. Any thread.
  virtual void deliver_remote(const std::string& room_id, std::string_view sender_id,
                              const SharedText& data, const RecipientSeqs& seqs,
                              bool from_here) = 0;
  // A notice numbered for the resumable member `client_id` of `room_id` (session_append).
  virtual void deliver_numbered(const std::string& room_id, std::string_view client_id,
                                uint64_t seq, const SharedText& text) = 0;
  // Presence from another instance: `client_id` joined `room_id`, was suspended or resumed (tell
  // local members that opted in), or a join there found the room full (kProbe: ping the local
  // members of the room now and release those that do not answer).
  virtual void presence_remote(const std::string& room_id, std::string_view client_id,
                               PresenceEvent event) = 0;
  // The bus was unavailable for a while (what was published meanwhile may not have arrived):
  // resumable sessions here should resume, so their replay fills the gap. `only_rooms`: just the
  // sessions in these rooms (a cluster slot moved); null: all.
  virtual void sessions_resync(const std::set<std::string>* only_rooms) = 0;
  // Every (room id, client id) with a member connected here. Any thread.
  virtual std::vector<std::pair<std::string, std::string>> local_members() = 0;
};

// Implementations: MemoryBus (one instance, in-process) and RedisBus (many instances).
// Callbacks may run on any thread; the caller posts back to its own loop when it needs to.
class Bus {
 public:
  using JoinCallback = std::function<void(JoinResult)>;
  using AllowCallback = std::function<void(bool allowed)>;
  virtual ~Bus() = default;

  virtual std::string_view name() const = 0;
  // A bus that does I/O gives the server its event loop, which then becomes the server's loop 0:
  // the bus and loop 0's sessions share one thread, so a message handed between them is a
  // queue push, not a wake-up of another thread (on a server pinned to one core, a context
  // switch per message each way). Shared: it lives until both the bus and the loop are gone.
  // Null: the bus needs no loop.
  virtual std::shared_ptr<boost::asio::io_context> loop_context() { return nullptr; }
  // Called once the server exists, before it runs loop 0.
  virtual void start(BusListener& listener) = 0;
  // Lets queued work (the drain's leaves) reach the other instances for up to `flush_budget`.
  virtual void stop(std::chrono::milliseconds flush_budget) = 0;
  // Readiness: the bus can take joins and relay (Redis answered PING, state re-asserted).
  virtual bool ready() const = 0;
  virtual bool breaker_open() const = 0;

  // Atomic capacity-checked join across all instances.
  virtual void join(const std::string& room_id, const std::string& client_id, unsigned capacity,
                    JoinCallback done) = 0;
  // The member a join admitted is now attached here (in local_members()). A bus that re-asserts
  // local membership after losing its state (Redis restarted) and did so between the join and
  // this call re-asserts this member too: it was not local yet when the others were.
  virtual void joined_locally(const std::string& room_id, const std::string& client_id,
                              uint64_t join_epoch) {
    (void)room_id;
    (void)client_id;
    (void)join_epoch;
  }
  virtual void leave(const std::string& room_id, const std::string& client_id) = 0;
  // Frees a member's seat for an instance that does not hold it (leave() also drops the holder's
  // listening on the room).
  virtual void release_seat(const std::string& room_id, const std::string& client_id) {
    leave(room_id, client_id);
  }
  // Relay `data` to members of the room on other instances (local members are served directly,
  // except resumable ones on a bus that shares sessions: it numbers the message for them).
  // `sender_session`: the sender's resumable session id, empty when it has none.
  // `count_forwarded`: the message reached nobody locally, so it counts as forwarded only once
  // the bus has it (Redis accepted the publish); a failed publish is not a forwarded message.
  virtual void publish(const std::string& room_id, const std::string& sender_id,
                       const std::string& sender_session, const SharedText& data,
                       bool count_forwarded) = 0;
  // Tell other instances that `client_id` joined, was suspended or resumed (for their members
  // that asked for presence), or (kProbe) that they should probe their members of the room.
  // `resumable`: the member joining is (kJoined only).
  virtual void publish_presence(const std::string& room_id, const std::string& client_id,
                                PresenceEvent event, bool resumable = false) = 0;
  // Tell other instances' members that `client_id` left.
  virtual void publish_departure(const std::string& room_id, const std::string& client_id) = 0;

  // Shared windows. A message's verdict is decided at once, from this process's count (the
  // Redis bus reconciles it with the fleet's in the background): relay never waits for I/O.
  // A connection's verdict is decided at once by a bus that can (the in-process one); one that
  // cannot (Redis, where admission waits for the join script anyway) returns nullopt and is asked
  // again through the callback form.
  // A member's windows are named once (message_windows, when its first message arrives) and the
  // names reused for every message after: naming builds two keys, and on a Redis Cluster hashes
  // both ids for their bucket tag (together ~5% of a cluster relay's instructions).
  virtual MessageWindows message_windows(std::string_view ip, std::string_view room_id) const = 0;
  virtual MessageVerdict message_verdict(const MessageWindows& windows, MessageLimits limits) = 0;
  virtual std::optional<bool> connection_allowed_now(std::string_view ip, uint32_t limit) = 0;
  virtual void check_connection(std::string_view ip, uint32_t limit, AllowCallback done) = 0;

  // ---- Resumable sessions (PROTOCOL.md section 8) ----
  // True: the bus numbers what resumable sessions are sent, in storage every instance reads
  // (Redis), so a session resumes on any instance; the calls below do that work. False
  // (in-process): each instance numbers and keeps its sessions' messages itself, and the calls
  // below are never made.
  virtual bool shares_sessions() const { return false; }
  // A resumable member joined (after join()): its session starts, owned here.
  // (Callbacks by value: implementations keep them; these defaults only call them.)
  // NOLINTNEXTLINE(performance-unnecessary-value-param)
  virtual void session_open(const SessionRef&, std::function<void(bool ok)> done) {
    std::move(done)(false);
  }
  // Numbers a notice for the session; it comes back through BusListener::deliver_numbered.
  virtual void session_append(const SessionRef&, const SharedText&) {}
  // A client message read and not relayed: counted in `received` (relays count themselves).
  virtual void session_count(const SessionRef&) {}
  // The session's socket was lost: it is kept for RESUME_WINDOW_MS.
  virtual void session_suspended(const SessionRef&) {}
  // The session is over (after leave()); `tombstone`: it left with a close frame.
  virtual void session_end(const SessionRef&, bool /*tombstone*/) {}
  // Listens on the room, then claims the session for this instance.
  virtual void session_claim(const std::string& room_id, const std::string& session_id,
                             uint64_t last_seq,
                             std::function<void(SessionClaim)> done) {  // NOLINT(performance-*)
    (void)room_id, (void)session_id, (void)last_seq;
    std::move(done)(SessionClaim{});
  }
  // Drops one reference to the room's subscription without leaving it (a member moved away).
  virtual void release_room(const std::string&) {}
  // The drain handed sessions over: stop() leaves this instance's lease to lapse instead of
  // deleting it, so that sessions nobody resumes are released as a crashed instance's are.
  virtual void keep_lease_on_stop() {}
};

}  // namespace sigsrv
