// Local counts of the shared windows; see the header for the guarantee.
#include "limits/reconciled_windows.hpp"

#include <algorithm>

namespace sigsrv {

bool ReconciledWindows::hit(HashedKey key, uint32_t limit, Clock::time_point now,
                            bool* flush_needed) {
  Shard& shard = shard_of(key);
  std::lock_guard lock(shard.mu);
  if (now >= shard.next_sweep) {
    std::erase_if(shard.windows, [now](const auto& kv) {
      const Window& w = kv.second;
      return w.expires <= now && w.unsent == 0 && w.in_flight == 0;
    });
    shard.next_sweep = now + kWindow;
  }
  auto it = shard.windows.find(key);
  if (it == shard.windows.end()) {
    it = shard.windows.emplace(std::string(key.text), Window{0, 0, 0, now + kWindow}).first;
  }
  Window& w = it->second;
  if (now >= w.expires) {
    // Redis's window ended too (its TTL came with the last answer): a new one starts.
    w.fleet = 0;
    w.expires = now + kWindow;
  }
  if (w.unsent++ == 0) {
    shard.dirty.push_back(&*it);
    if (!flush_pending_.exchange(true, std::memory_order_acq_rel)) *flush_needed = true;
  }
  return w.fleet + w.in_flight + w.unsent <= limit;
}

std::vector<ReconciledWindows::Delta> ReconciledWindows::take_unsent() {
  // Cleared first: a hit racing with this call either is taken below or asks for another flush.
  flush_pending_.store(false, std::memory_order_release);
  std::vector<Delta> out;
  for (Shard& shard : shards_) {
    std::lock_guard lock(shard.mu);
    for (auto* entry : shard.dirty) {
      Window& w = entry->second;
      out.push_back(Delta{entry->first, w.unsent});
      w.in_flight += w.unsent;
      w.unsent = 0;
    }
    shard.dirty.clear();
  }
  return out;
}

void ReconciledWindows::confirm(std::string_view key, uint64_t sent, uint64_t total,
                                std::chrono::milliseconds ttl, Clock::time_point now) {
  Shard& shard = shard_of(key);
  std::lock_guard lock(shard.mu);
  auto it = shard.windows.find(key);
  if (it == shard.windows.end()) return;
  Window& w = it->second;
  w.in_flight -= std::min(sent, w.in_flight);
  // Redis answers in order, so `total` includes every earlier batch of ours and none still in
  // flight.
  w.fleet = total;
  w.expires = now + ttl;
}

void ReconciledWindows::failed(std::string_view key, uint64_t sent) {
  Shard& shard = shard_of(key);
  std::lock_guard lock(shard.mu);
  auto it = shard.windows.find(key);
  if (it == shard.windows.end()) return;
  Window& w = it->second;
  const uint64_t n = std::min(sent, w.in_flight);
  w.in_flight -= n;
  w.fleet += n;
}

std::size_t ReconciledWindows::size_for_test() {
  std::size_t n = 0;
  for (auto& s : shards_) {
    std::lock_guard lock(s.mu);
    n += s.windows.size();
  }
  return n;
}

}  // namespace sigsrv
