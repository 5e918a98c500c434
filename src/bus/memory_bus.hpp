// In-process bus: one instance, membership counted in memory, nothing to publish to.
#pragma once

#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "bus/bus.hpp"

namespace sigsrv {

class MemoryBus final : public Bus {
 public:
  std::string_view name() const override { return "memory"; }
  bool ready() const override { return true; }
  bool breaker_open() const override { return false; }
  void join(const std::string& room_id, const std::string& client_id, unsigned capacity,
            JoinCallback done) override;
  void leave(const std::string& room_id, const std::string& client_id) override;
  // Every member is local and already served by relay: nothing crosses an instance.
  void publish(const std::string&, const std::string&, const SharedText&) override {}
  void publish_departure(const std::string&, const std::string&) override {}

  std::size_t members(const std::string& room_id);

 private:
  std::mutex mu_;  // joins and leaves only, never per message
  std::unordered_map<std::string, std::unordered_set<std::string>> rooms_;
};

}  // namespace sigsrv
