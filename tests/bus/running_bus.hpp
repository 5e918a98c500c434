// A RedisBus on a loop thread of its own, for tests of the bus without the server binary.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "bus/redis_bus.hpp"
#include "bus/redis_url.hpp"

namespace sigsrv {

// Holds no members unless told: local_members() is what the test puts in `members`.
struct TestListener final : BusListener {
  void deliver_remote(const std::string&, std::string_view, const SharedText&, const RecipientSeqs&,
                      bool) override {}
  void deliver_numbered(const std::string&, std::string_view, uint64_t,
                        const SharedText&) override {}
  void presence_remote(const std::string&, std::string_view, PresenceEvent) override {}
  void sessions_resync(const std::set<std::string>*) override {}
  std::vector<std::pair<std::string, std::string>> local_members() override { return members; }
  std::vector<std::pair<std::string, std::string>> members;
};

// A bus on its own loop thread.
struct RunningBus {
  Config config;
  Logger log{LogLevel::kError, false, "bus-test"};
  TestListener listener;
  std::unique_ptr<RedisBus> bus;
  std::thread thread;

  explicit RunningBus(const std::string& url) {
    config.redis_url = url;
    config.instance_id = "bus-test";
    const auto endpoint = std::get<RedisEndpoint>(parse_redis_url(url));
    bus = std::make_unique<RedisBus>(config, endpoint, nullptr, log);
    bus->start(listener);
    auto ioc = bus->loop_context();
    auto guard =
        std::make_shared<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>(
            ioc->get_executor());
    work = guard;
    thread = std::thread([ioc] { ioc->run(); });
  }
  ~RunningBus() {
    work.reset();
    bus->loop_context()->stop();
    thread.join();
    bus.reset();
  }
  std::shared_ptr<void> work;
};

}  // namespace sigsrv
