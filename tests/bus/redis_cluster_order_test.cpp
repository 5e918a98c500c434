// RedisCluster against a real one-node Redis Cluster (every slot on one redis-server): commands of
// a slot refused with TRYAGAIN (a script whose keys a migration has split) are retried in the
// order asked, and none is run before an older one, even when the node accepts a later command
// while it still refuses an earlier one.
#include <gtest/gtest.h>

#include <array>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bus/cluster.hpp"
#include "bus/redis_cluster.hpp"
#include "harness.hpp"
#include "obs/logger.hpp"

namespace sigsrv {
namespace {

using namespace std::chrono_literals;
using testing_support::RedisProcess;
using testing_support::wait_until;

// Refuses command ARGV[1] with TRYAGAIN for its first ARGV[2] attempts (counted in KEYS[1]), then
// appends ARGV[1] to the list KEYS[2]: the order in which the node ran them.
constexpr char kScript[] = R"lua(
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
if n <= tonumber(ARGV[2]) then
  return redis.error_reply('TRYAGAIN Multiple keys request during rehashing of slot')
end
return redis.call('RPUSH', KEYS[2], ARGV[1])
)lua";

struct OneNodeCluster {
  std::unique_ptr<RedisProcess> redis;
  bool start() {
    redis = RedisProcess::start(0, {}, {"--cluster-enabled", "yes"});
    if (!redis) return false;
    if (redis->cli({"CLUSTER", "ADDSLOTSRANGE", "0", "16383"}) != "OK") return false;
    return wait_until(
        [&] {
          return redis->cli({"CLUSTER", "INFO"}).find("cluster_state:ok") != std::string::npos;
        },
        10000ms);
  }
};

// A loop thread running a RedisCluster on `port`, up once its commands are.
struct Running {
  boost::asio::io_context ioc{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work =
      boost::asio::make_work_guard(ioc);
  Logger log{LogLevel::kError, false, "cluster-order-test"};
  std::promise<void> up;
  std::unique_ptr<RedisCluster> cluster;
  std::thread loop;

  explicit Running(uint16_t port) {
    RedisCluster::Hooks hooks;
    hooks.on_commands_up = [this] { up.set_value(); };
    hooks.on_commands_down = [] {};
    hooks.on_subscribers_up = [] {};
    hooks.on_subscribers_down = [] {};
    hooks.on_message = [](std::string_view, std::string_view) {};
    hooks.on_subscribed = [](std::string_view) {};
    hooks.on_moved = [](const std::vector<std::string>&) {};
    cluster = std::make_unique<RedisCluster>(ioc, std::vector<HostPort>{{"127.0.0.1", port}},
                                             RedisEndpoint{}, nullptr, log, std::move(hooks));
    loop = std::thread([this] { ioc.run(); });
    boost::asio::post(ioc, [this] { cluster->start(); });
  }
  bool wait_up() { return up.get_future().wait_for(10s) == std::future_status::ready; }
  ~Running() {
    boost::asio::post(ioc, [this] { cluster->stop(); });
    work.reset();
    loop.join();
  }
};

TEST(RedisClusterOrder, CommandsRefusedWithTryAgainRunInTheOrderAsked) {
  OneNodeCluster node;
  ASSERT_TRUE(node.start());
  Running r(node.redis->port());
  ASSERT_TRUE(r.wait_up());

  // One slot (the hash tag), as a room's relays are. c1 is refused twice; c2 and c3 once each.
  // All three go out in one pipeline and are refused, then held. Sent again in one pipeline, c1
  // would be refused once more while the node ran c2 and c3: relayed out of order. Sent one at a
  // time, each once the one before is answered, they run as asked.
  const std::string attempts = "{room}:attempts";
  const std::string ran = "{room}:ran";
  const uint16_t slot = key_slot(attempts);
  std::mutex m;
  std::vector<std::string> answered;
  std::vector<std::string> refused;
  // Asks for `names` in one loop turn (one pipeline), each refused its first `tries` attempts.
  auto ask = [&](std::vector<std::pair<std::string, std::string>> names) {
    boost::asio::post(r.ioc, [&, names = std::move(names)] {
      for (const auto& [name, tries] : names) {
        const std::array<std::string_view, 7> args{"EVAL", kScript, "2",  attempts,
                                                   ran,    name,    tries};
        r.cluster->command(args, slot, [&, who = name](const redisReply* reply) {
          std::lock_guard lock(m);
          (is_error(reply) ? refused : answered).push_back(who);
        });
      }
    });
  };
  auto done = [&](std::size_t n) {
    return wait_until(
        [&] {
          std::lock_guard lock(m);
          return answered.size() + refused.size() == n;
        },
        5000ms);
  };
  ask({{"c1", "2"}, {"c2", "1"}, {"c3", "1"}});
  ASSERT_TRUE(done(3));
  EXPECT_TRUE(refused.empty());
  EXPECT_EQ(answered, (std::vector<std::string>{"c1", "c2", "c3"}));
  EXPECT_EQ(node.redis->cli({"LRANGE", ran, "0", "-1"}), "c1\nc2\nc3");
  // Each was tried as often as refused, plus once.
  EXPECT_EQ(node.redis->cli({"HMGET", attempts, "c1", "c2", "c3"}), "3\n2\n2");

  // The slot is back to pipelining: later commands of it run at once, in order.
  ask({{"c4", "0"}, {"c5", "0"}});
  ASSERT_TRUE(done(5));
  EXPECT_EQ(node.redis->cli({"LRANGE", ran, "0", "-1"}), "c1\nc2\nc3\nc4\nc5");
}

}  // namespace
}  // namespace sigsrv
