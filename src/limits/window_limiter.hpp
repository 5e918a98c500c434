// Fixed 10 s windows per key, the in-process twin of Redis `INCR rl:{ns}:{id}:10` + `EXPIRE 10`.
#pragma once

#include <array>
#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "limits/string_hash.hpp"
#include "limits/token_bucket.hpp"

namespace sigsrv {

class WindowLimiter {
 public:
  static constexpr std::chrono::seconds kWindow{10};

  // Counts one hit for key (the window opens at its first hit and lasts kWindow) and
  // says whether the count is still within limit. Hits over the limit still count, as INCR does.
  bool hit(std::string_view ns, std::string_view id, uint32_t limit, Clock::time_point now);
  // The same, on a key built once by key(ns, id) and hashed once.
  bool hit(HashedKey key, uint32_t limit, Clock::time_point now);
  static std::string key(std::string_view ns, std::string_view id);

  std::size_t size_for_test();

 private:
  struct Window {
    uint64_t count;
    Clock::time_point expires;
  };
  using Hash = StringViewHash;
  // Sharded so that event loops hitting different keys do not contend on one lock.
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, Window, Hash, std::equal_to<>> windows;
    Clock::time_point next_sweep{};
  };
  static constexpr std::size_t kShards = 16;
  std::array<Shard, kShards> shards_;
};

}  // namespace sigsrv
