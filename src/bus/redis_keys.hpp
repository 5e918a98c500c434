// The Redis bus's key and channel names (PROTOCOL.md sections 4 and 10), in one place.
#pragma once

#include <string>
#include <string_view>

#include "bus/cluster.hpp"

namespace sigsrv {

// On one Redis (or Sentinel) the names are the Node server's: room:R, room-owners:R, ... On Redis
// Cluster every key and channel of a room carries the room as its hash tag (room:{R}, ...), so the
// room's scripts and its sharded channels live in one slot; the instance registry and leases share
// the tag {fleet}; and a window carries one of kWindowBuckets tags chosen by its id, so that the
// windows one reconcile sends (one script call per slot) go out in a few calls, not one per
// room.
class RedisKeys {
 public:
  explicit RedisKeys(bool cluster) : cluster_(cluster) {}
  bool cluster() const { return cluster_; }

  // Relay channel and member SET.
  std::string room(std::string_view r) const { return named("room:", r); }
  std::string owners(std::string_view r) const { return named("room-owners:", r); }
  std::string presence(std::string_view r) const { return named("presence:", r); }
  std::string room_sessions(std::string_view r) const { return named("room-resumable:", r); }
  // How a session is named inside Redis: in the room's SET of sessions, and in its keys
  // (resume:SID, resume-log:SID, resume-left:SID). On a cluster it carries the room's tag.
  std::string stored_sid(std::string_view r, std::string_view sid) const {
    if (!cluster_) return std::string(sid);
    std::string out;
    out.reserve(r.size() + sid.size() + 3);
    return out.append("{").append(r).append("}:").append(sid);
  }
  std::string session(std::string_view r, std::string_view sid) const {
    return "resume:" + stored_sid(r, sid);
  }
  std::string session_log(std::string_view r, std::string_view sid) const {
    return "resume-log:" + stored_sid(r, sid);
  }
  std::string session_left(std::string_view r, std::string_view sid) const {
    return "resume-left:" + stored_sid(r, sid);
  }
  static constexpr unsigned kWindowBuckets = 16;
  // rl:NS:ID:10 (cluster: rl:{wB}:NS:ID:10, B the id's bucket).
  std::string window(std::string_view ns, std::string_view id) const {
    std::string out("rl:");
    if (cluster_) {
      out.append("{w").append(std::to_string(key_slot(id) % kWindowBuckets)).append("}:");
    }
    return out.append(ns).append(":").append(id).append(":10");
  }
  // Instance leases (prefix + id) and their registry ZSET (see redis_scripts::kLease).
  std::string lease_prefix() const {
    return cluster_ ? "signal:{fleet}:instance:" : "signal:instance:";
  }
  std::string registry() const {
    return cluster_ ? "signal:{fleet}:instances" : "signal:instances";
  }
  // "room:abc", "presence:{abc}" -> "abc".
  static std::string room_of_channel(std::string_view channel) {
    const auto colon = channel.find(':');
    if (colon == std::string_view::npos) return {};
    channel.remove_prefix(colon + 1);
    if (channel.size() >= 2 && channel.front() == '{' && channel.back() == '}') {
      channel = channel.substr(1, channel.size() - 2);
    }
    return std::string(channel);
  }

 private:
  std::string named(std::string_view prefix, std::string_view r) const {
    std::string out;
    out.reserve(prefix.size() + r.size() + 2);
    out.append(prefix);
    if (cluster_) return out.append("{").append(r).append("}");
    return out.append(r);
  }
  bool cluster_;
};

}  // namespace sigsrv
