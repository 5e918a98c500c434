// Local room membership: which peers of a room are connected to this instance.
#pragma once

#include <array>
#include <boost/container/small_vector.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "limits/inbound_budget.hpp"
#include "signaling/protocol.hpp"

namespace sigsrv {

// A connected member as seen by relay. deliver() must be called on the peer's own loop.
class Peer {
 public:
  virtual ~Peer() = default;
  virtual void deliver(const SharedText& message) = 0;
  // Someone found the room full: ping the client now; if it does not answer within
  // STALE_MEMBER_PROBE_MS, release it as a failed heartbeat would. On the peer's own loop.
  virtual void probe() = 0;
  // Resumable members on a bus that shares sessions (Member::numbered) are numbered by the bus:
  // a relay arrives with the numbers it was given (this member's among them, or not: then the
  // member has it numbered), a notice numbered for it, and word that its session was resumed on
  // another instance (let go, no departure). Others never get these.
  virtual void deliver_relay(const SharedText& data, const RecipientSeqs& seqs) {
    (void)seqs;
    deliver(data);
  }
  virtual void deliver_numbered(uint64_t seq, const SharedText& text) {
    (void)seq;
    deliver(text);
  }
  virtual void taken_over() {}
  // Messages posted to this peer from other loops went past its budget (see InboundBudget):
  // close it as overloaded. On the peer's own loop.
  virtual void overloaded() {}
  // A handler of this peer threw `what` (a bug, or memory exhausted): it is closed with 1011,
  // counted and logged, and its loop goes on. On the peer's own loop.
  virtual void fault(std::string_view what) = 0;

  InboundBudget inbound;  // what other loops have posted to it and its loop has not taken yet
};

struct Member {
  std::string client_id;
  std::weak_ptr<Peer> peer;   // weak: the session owns itself through its pending I/O
  const Peer* raw = nullptr;  // identity only, never dereferenced
  unsigned loop = 0;          // index of the event loop that owns the peer
  bool wants_events = false;  // opted in with events=1
  bool numbered = false;      // resumable, numbered by the bus: relay never delivers it directly
};

// A recipient picked out of a room, held strongly only while a message is handed over.
struct Target {
  std::shared_ptr<Peer> peer;
  unsigned loop = 0;
  bool wants_events = false;
  bool numbered = false;
};
using Targets = boost::container::small_vector<Target, 4>;

class Room {
 public:
  explicit Room(std::string id) : id_(std::move(id)) {}
  const std::string& id() const { return id_; }

  // Collects the live members other than `except`. The caller delivers after the lock is
  // released: delivery can end a session, which then detaches from this room.
  void collect_others(const Peer* except, Targets& out) const {
    collect_if([except](const Member& m) { return m.raw != except; }, out);
  }
  // Same, by client id: for messages another instance relays on behalf of `except_id`.
  void collect_except_id(std::string_view except_id, Targets& out) const {
    collect_if([except_id](const Member& m) { return m.client_id != except_id; }, out);
  }
  // The live member `client_id`, if connected here.
  void collect_id(std::string_view client_id, Targets& out) const {
    collect_if([client_id](const Member& m) { return m.client_id == client_id; }, out);
  }
  std::size_t size() const {
    std::lock_guard lock(mu_);
    return members_.size();
  }

 private:
  friend class RoomRegistry;
  template <class Keep>
  void collect_if(Keep keep, Targets& out) const {
    std::lock_guard lock(mu_);
    for (const auto& m : members_) {
      if (!keep(m)) continue;
      if (auto p = m.peer.lock()) {
        out.push_back(Target{std::move(p), m.loop, m.wants_events, m.numbered});
      }
    }
  }
  std::string id_;
  mutable std::mutex mu_;
  std::vector<Member> members_;
};

// The event loop, of `loops`, that holds every local member of `room_id` (the listener moves a
// connection there before its upgrade). A function of the id alone: members arriving together on
// different loops agree without shared state, and so does every process (a fixed hash, not
// std::hash). Rooms spread over the loops evenly on average, not exactly: a loop's share of
// rooms varies as a binomial draw does, so loops balance well only over many rooms.
unsigned room_loop(std::string_view room_id, unsigned loops);

// Sharded map room id -> Room; a lock per shard, none global. Lock order: shard, then room.
class RoomRegistry {
 public:
  // Adds the member, creating the room if needed; returns the room for the session to keep.
  std::shared_ptr<Room> attach(const std::string& room_id, Member member);
  // Removes the member; the room leaves the registry when its last local member does.
  void detach(const std::shared_ptr<Room>& room, std::string_view client_id);
  std::shared_ptr<Room> find(std::string_view room_id);
  std::size_t room_count() const;
  // Every (room id, client id) held here (to re-assert membership after a bus reconnect).
  std::vector<std::pair<std::string, std::string>> memberships() const;

 private:
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, std::shared_ptr<Room>> rooms;
  };
  static constexpr std::size_t kShards = 32;
  Shard& shard_for(std::string_view id);
  std::array<Shard, kShards> shards_;
};

}  // namespace sigsrv
