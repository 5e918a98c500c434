// Windowed counters with lazy expiry; expired keys are swept at most once per window per shard.
#include "limits/window_limiter.hpp"

#include <functional>

namespace sigsrv {

bool WindowLimiter::hit(std::string_view ns, std::string_view id, uint32_t limit,
                        Clock::time_point now) {
  std::string key;
  key.reserve(ns.size() + id.size() + 1);
  key.append(ns).append(":").append(id);
  Shard& shard = shards_[std::hash<std::string>{}(key) % kShards];
  std::lock_guard lock(shard.mu);
  if (now >= shard.next_sweep) {
    std::erase_if(shard.windows, [now](const auto& kv) { return kv.second.expires <= now; });
    shard.next_sweep = now + kWindow;
  }
  auto [it, inserted] = shard.windows.try_emplace(std::move(key), Window{0, now + kWindow});
  if (!inserted && it->second.expires <= now) it->second = Window{0, now + kWindow};
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
