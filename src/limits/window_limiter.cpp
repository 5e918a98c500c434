// Windowed counters with lazy expiry; expired keys are swept at most once per window per shard.
#include "limits/window_limiter.hpp"

#include <functional>

namespace sigsrv {

bool WindowLimiter::hit(std::string_view ns, std::string_view id, uint32_t limit,
                        Clock::time_point now) {
  // Built in a buffer of this thread: a hit on a known key allocates nothing.
  thread_local std::string key;
  key.assign(ns).append(":").append(id);
  return hit(HashedKey::of(key), limit, now);
}

std::string WindowLimiter::key(std::string_view ns, std::string_view id) {
  std::string key;
  key.reserve(ns.size() + 1 + id.size());
  return key.append(ns).append(":").append(id);
}

bool WindowLimiter::hit(HashedKey key, uint32_t limit, Clock::time_point now) {
  Shard& shard = shards_[key.hash % kShards];
  std::lock_guard lock(shard.mu);
  if (now >= shard.next_sweep) {
    std::erase_if(shard.windows, [now](const auto& kv) { return kv.second.expires <= now; });
    shard.next_sweep = now + kWindow;
  }
  auto it = shard.windows.find(key);
  if (it == shard.windows.end()) {
    it = shard.windows.emplace(key.text, Window{0, now + kWindow}).first;
  } else if (it->second.expires <= now) {
    it->second = Window{0, now + kWindow};
  }
  ++it->second.count;
  return it->second.count <= limit;
}

std::size_t WindowLimiter::size_for_test() {
  std::size_t n = 0;
  for (auto& s : shards_) {
    std::lock_guard lock(s.mu);
    n += s.windows.size();
  }
  return n;
}

}  // namespace sigsrv
