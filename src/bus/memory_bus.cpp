// Membership with the same capacity rule as the Redis join script.
#include "bus/memory_bus.hpp"

#include <algorithm>

namespace sigsrv {

void MemoryBus::join(const std::string& room_id, const std::string& client_id, unsigned capacity,
                     JoinCallback done) {
  JoinResult r;
  {
    std::lock_guard lock(mu_);
    auto& members = rooms_[room_id];
    const bool present = std::find(members.begin(), members.end(), client_id) != members.end();
    if (!present && members.size() >= capacity) {
      r.status = JoinResult::Status::kFull;
      r.members = members.size();
    } else {
      if (!present) members.push_back(client_id);
      r.status = JoinResult::Status::kJoined;
      r.members = members.size();
    }
    if (members.empty()) rooms_.erase(room_id);
  }
  done(r);
}

void MemoryBus::leave(const std::string& room_id, const std::string& client_id) {
  std::lock_guard lock(mu_);
  auto it = rooms_.find(room_id);
  if (it == rooms_.end()) return;
  std::erase(it->second, client_id);
  if (it->second.empty()) rooms_.erase(it);
}

std::size_t MemoryBus::members(const std::string& room_id) {
  std::lock_guard lock(mu_);
  auto it = rooms_.find(room_id);
  return it == rooms_.end() ? 0 : it->second.size();
}

}  // namespace sigsrv

namespace sigsrv {

MessageWindows MemoryBus::message_windows(std::string_view ip, std::string_view room_id) const {
  return {WindowLimiter::key("msg-ip", ip), WindowLimiter::key("msg-room", room_id)};
}

MessageVerdict MemoryBus::message_verdict(const MessageWindows& windows, MessageLimits limits) {
  const auto now = Clock::now();
  if (!windows_.hit(windows.ip_key(), limits.per_ip, now)) return MessageVerdict::kIpLimited;
  if (!windows_.hit(windows.room_key(), limits.per_room, now)) return MessageVerdict::kRoomLimited;
  return MessageVerdict::kAllowed;
}

std::optional<bool> MemoryBus::connection_allowed_now(std::string_view ip, uint32_t limit) {
  return windows_.hit("conn", ip, limit, Clock::now());
}

}  // namespace sigsrv
