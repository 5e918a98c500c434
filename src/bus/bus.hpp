// The seam between relay and the transport that reaches other instances.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "signaling/protocol.hpp"

namespace sigsrv {

struct JoinResult {
  enum class Status { kJoined, kFull, kError } status = Status::kError;
  std::size_t members = 0;  // room size after the join, this member included
};

// Implementations: MemoryBus (one instance, in-process) and the Redis bus (many instances).
// Callbacks may run on any thread; the caller posts back to its own loop when it needs to.
class Bus {
 public:
  using JoinCallback = std::function<void(JoinResult)>;
  virtual ~Bus() = default;

  virtual std::string_view name() const = 0;
  // Readiness: the bus can take joins and relay (Redis answered PING).
  virtual bool ready() const = 0;
  virtual bool breaker_open() const = 0;

  // Atomic capacity-checked join across all instances.
  virtual void join(const std::string& room_id, const std::string& client_id, unsigned capacity,
                    JoinCallback done) = 0;
  virtual void leave(const std::string& room_id, const std::string& client_id) = 0;
  // Relay `data` to members of the room on other instances (local members are served directly).
  virtual void publish(const std::string& room_id, const std::string& sender_id,
                       const SharedText& data) = 0;
  // Tell other instances' members that `client_id` left.
  virtual void publish_departure(const std::string& room_id, const std::string& client_id) = 0;
};

}  // namespace sigsrv
