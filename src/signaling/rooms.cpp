// Room registry: attach/detach keep the local_rooms gauge equal to the rooms held.
#include "signaling/rooms.hpp"

#include <algorithm>
#include <cstdint>
#include <functional>

#include "obs/metrics.hpp"

namespace sigsrv {

unsigned room_loop(std::string_view room_id, unsigned loops) {
  if (loops <= 1) return 0;
  // FNV-1a, then Murmur3's finalizer: FNV's low bits depend only on the low bits of each byte,
  // so ids differing in one letter ('a' and 'e') would share a loop whenever `loops` is a power
  // of two; the finalizer mixes every bit into the ones the modulo keeps.
  uint64_t h = 14695981039346656037ULL;
  for (const char c : room_id) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return static_cast<unsigned>(h % loops);
}

RoomRegistry::Shard& RoomRegistry::shard_for(std::string_view id) {
  return shards_[std::hash<std::string_view>{}(id) % kShards];
}

std::shared_ptr<Room> RoomRegistry::attach(const std::string& room_id, Member member) {
  Shard& shard = shard_for(room_id);
  std::lock_guard lock(shard.mu);
  auto& slot = shard.rooms[room_id];
  if (!slot) {
    slot = std::make_shared<Room>(room_id);
    metrics().local_rooms.inc();
  }
  std::lock_guard room_lock(slot->mu_);
  slot->members_.push_back(std::move(member));
  return slot;
}

void RoomRegistry::detach(const std::shared_ptr<Room>& room, std::string_view client_id) {
  Shard& shard = shard_for(room->id());
  std::lock_guard lock(shard.mu);
  bool now_empty = false;
  {
    std::lock_guard room_lock(room->mu_);
    auto& m = room->members_;
    m.erase(std::remove_if(m.begin(), m.end(),
                           [&](const Member& x) { return x.client_id == client_id; }),
            m.end());
    now_empty = m.empty();
  }
  if (now_empty) {
    auto it = shard.rooms.find(room->id());
    if (it != shard.rooms.end() && it->second == room) {
      shard.rooms.erase(it);
      metrics().local_rooms.dec();
    }
  }
}

std::size_t RoomRegistry::room_count() const {
  std::size_t n = 0;
  for (const auto& s : shards_) {
    std::lock_guard lock(s.mu);
    n += s.rooms.size();
  }
  return n;
}

std::shared_ptr<Room> RoomRegistry::find(std::string_view room_id) {
  Shard& shard = shard_for(room_id);
  std::lock_guard lock(shard.mu);
  auto it = shard.rooms.find(std::string(room_id));
  return it == shard.rooms.end() ? nullptr : it->second;
}

std::vector<std::pair<std::string, std::string>> RoomRegistry::memberships() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& s : shards_) {
    std::lock_guard lock(s.mu);
    for (const auto& [id, room] : s.rooms) {
      std::lock_guard room_lock(room->mu_);
      for (const auto& m : room->members_) out.emplace_back(id, m.client_id);
    }
  }
  return out;
}

}  // namespace sigsrv
