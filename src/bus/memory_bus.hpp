// In-process bus: one instance, membership and windows counted in memory.
#pragma once

#include <mutex>
#include <unordered_map>
#include <vector>

#include "bus/bus.hpp"
#include "limits/window_limiter.hpp"

namespace sigsrv {

class MemoryBus final : public Bus {
 public:
  std::string_view name() const override { return "memory"; }
  void start(BusListener&) override {}
  void stop(std::chrono::milliseconds) override {}
  bool ready() const override { return true; }
  bool breaker_open() const override { return false; }
  void join(const std::string& room_id, const std::string& client_id, unsigned capacity,
            JoinCallback done) override;
  void leave(const std::string& room_id, const std::string& client_id) override;
  // Every member is local and already served by relay: nothing crosses an instance (and a
  // message that reached nobody locally reached nobody).
  void publish(const std::string&, const std::string&, const std::string&, const SharedText&,
               bool) override {}
  void publish_presence(const std::string&, const std::string&, PresenceEvent, bool) override {}
  void publish_departure(const std::string&, const std::string&) override {}
  MessageWindows message_windows(std::string_view ip, std::string_view room_id) const override;
  MessageVerdict message_verdict(const MessageWindows& windows, MessageLimits limits) override;
  std::optional<bool> connection_allowed_now(std::string_view ip, uint32_t limit) override;
  void check_connection(std::string_view ip, uint32_t limit, AllowCallback done) override {
    done(*connection_allowed_now(ip, limit));
  }

  std::size_t members(const std::string& room_id);

 private:
  std::mutex mu_;  // joins and leaves only, never per message
  // A room's client ids in a plain vector: rooms hold a handful of members, and a hash set's
  // nodes and buckets cost about 40 bytes more per connection (idle memory budget).
  std::unordered_map<std::string, std::vector<std::string>> rooms_;
  WindowLimiter windows_;
};

}  // namespace sigsrv
