// Room registry: attach/detach keep the local_rooms gauge equal to the rooms held.
#include "signaling/rooms.hpp"

#include <algorithm>
#include <functional>

#include "obs/metrics.hpp"

namespace sigsrv {

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
