// The shared 10 s windows (Redis `rl:{ns}:{id}:10`) counted in this process at once and added to
// Redis in batches: a message's verdict never waits for Redis.
//
// Each key keeps the fleet's count as Redis last reported it (`fleet`, which includes this
// process's hits it has confirmed), the hits sent to Redis and not yet answered (`in_flight`),
// and the hits not sent yet (`unsent`). A hit is within the limit while their sum is. So one
// process alone is exact, and a fleet of N processes can go over a limit only by what the others
// counted and had not yet reported back: at most one reconcile round of their hits each (see
// README "Shared limits across a fleet"), and never past N x limit.
//
// Thread-safety: hit() from any thread (the event loops); take_unsent(), confirm() and failed()
// from the thread that talks to Redis. Sharded locks, as WindowLimiter.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "limits/string_hash.hpp"
#include "limits/token_bucket.hpp"

namespace sigsrv {

class ReconciledWindows {
 public:
  static constexpr std::chrono::seconds kWindow{10};

  // Counts one hit on `key` (counted even when over the limit, as INCR does) and says whether
  // it is within `limit`. Sets `*flush_needed` when this hit is the first one unsent since the
  // last take_unsent(): the caller then arranges one.
  bool hit(HashedKey key, uint32_t limit, Clock::time_point now, bool* flush_needed);

  struct Delta {
    // The key as this object stores it: valid until confirm() or failed() for this delta, since
    // an entry with hits in flight is never swept.
    std::string_view key;
    uint64_t count;
  };
  // The hits counted since the last call, one entry per key; they are now in flight.
  std::vector<Delta> take_unsent();
  // Redis added `sent` hits to `key`, making it `total`, and the window ends in `ttl`.
  void confirm(std::string_view key, uint64_t sent, uint64_t total, std::chrono::milliseconds ttl,
               Clock::time_point now);
  // Redis did not count them (down, timed out): they still count here, so this process keeps
  // limiting its own traffic; the rest of the fleet never learns of them.
  void failed(std::string_view key, uint64_t sent);

  std::size_t size_for_test();

 private:
  struct Window {
    uint64_t fleet = 0;
    uint64_t in_flight = 0;
    uint64_t unsent = 0;
    Clock::time_point expires;
  };
  using Hash = StringViewHash;
  using Map = std::unordered_map<std::string, Window, Hash, std::equal_to<>>;
  struct Shard {
    std::mutex mu;
    Map windows;
    // Entries with unsent hits. Node pointers are stable, and the sweep never erases an entry
    // with hits unsent or in flight.
    std::vector<Map::value_type*> dirty;
    Clock::time_point next_sweep{};
  };
  static constexpr std::size_t kShards = 16;
  Shard& shard_of(HashedKey key) { return shards_[key.hash % kShards]; }
  Shard& shard_of(std::string_view key) { return shard_of(HashedKey::of(key)); }

  std::array<Shard, kShards> shards_;
  std::atomic<bool> flush_pending_{false};
};

}  // namespace sigsrv
