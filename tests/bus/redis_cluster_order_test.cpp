// RedisCluster against small real Redis Clusters (masters only, met by hand): commands of
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

// Masters only, each a redis-server with cluster support, the slots split evenly between them,
// met with each other (CLUSTER MEET) and all saying cluster_state:ok.
struct SmallCluster {
  std::vector<std::unique_ptr<RedisProcess>> nodes;
  bool start(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      nodes.push_back(RedisProcess::start(0, {}, {"--cluster-enabled", "yes"}));
      if (!nodes.back()) return false;
      const int first = static_cast<int>(i * kClusterSlots / n);
      const int last = static_cast<int>((i + 1) * kClusterSlots / n) - 1;
      if (nodes.back()->cli(
              {"CLUSTER", "ADDSLOTSRANGE", std::to_string(first), std::to_string(last)}) != "OK")
        return false;
    }
    for (std::size_t i = 1; i < n; ++i) {
      nodes[0]->cli({"CLUSTER", "MEET", "127.0.0.1", std::to_string(nodes[i]->port())});
    }
    return wait_until(
        [&] {
          for (const auto& node : nodes) {
            if (node->cli({"CLUSTER", "INFO"}).find("cluster_state:ok") == std::string::npos ||
                node->cli({"CLUSTER", "INFO"}).find("cluster_known_nodes:" + std::to_string(n)) ==
                    std::string::npos)
              return false;
          }
          return true;
        },
        10000ms);
  }
  std::string id(std::size_t i) const { return nodes.at(i)->cli({"CLUSTER", "MYID"}); }
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

// Commands of one slot (the hash tag, as a room's relays are) asked through a RedisCluster, with
// what each got back.
struct Asker {
  explicit Asker(Running& running) : r(running) {}
  Running& r;
  const std::string attempts = "{room}:attempts";
  const std::string ran = "{room}:ran";
  const uint16_t slot = key_slot(attempts);
  std::mutex m;
  std::vector<std::string> answered;
  std::vector<std::string> refused;

  // Asks for `names` in one loop turn (one pipeline), each refused its first `tries` attempts.
  void ask(std::vector<std::pair<std::string, std::string>> names) {
    boost::asio::post(r.ioc, [this, names = std::move(names)] {
      for (const auto& [name, tries] : names) {
        const std::array<std::string_view, 7> args{"EVAL", kScript, "2",  attempts,
                                                   ran,    name,    tries};
        r.cluster->command(args, slot, [this, who = name](const redisReply* reply) {
          std::lock_guard lock(m);
          (is_error(reply) ? refused : answered).push_back(who);
        });
      }
    });
  }
  bool wait_answers(std::size_t n) {
    return wait_until(
        [&] {
          std::lock_guard lock(m);
          return answered.size() + refused.size() == n;
        },
        5000ms);
  }
};

TEST(RedisClusterOrder, CommandsRefusedWithTryAgainRunInTheOrderAsked) {
  SmallCluster cluster;
  ASSERT_TRUE(cluster.start(1));
  RedisProcess& node = *cluster.nodes[0];
  Running r(node.port());
  ASSERT_TRUE(r.wait_up());
  Asker a(r);

  // c1 is refused twice, c2 and c3 once each. All three go out in one pipeline and are refused,
  // then held. Sent again in one pipeline, c1 would be refused once more while the node ran c2
  // and c3: relayed out of order. Sent one at a time, each once the one before is answered, they
  // run as asked.
  a.ask({{"c1", "2"}, {"c2", "1"}, {"c3", "1"}});
  ASSERT_TRUE(a.wait_answers(3));
  EXPECT_TRUE(a.refused.empty());
  EXPECT_EQ(a.answered, (std::vector<std::string>{"c1", "c2", "c3"}));
  EXPECT_EQ(node.cli({"LRANGE", a.ran, "0", "-1"}), "c1\nc2\nc3");
  // Each was tried as often as refused, plus once.
  EXPECT_EQ(node.cli({"HMGET", a.attempts, "c1", "c2", "c3"}), "3\n2\n2");

  // Later commands of the slot run, in order.
  a.ask({{"c4", "0"}, {"c5", "0"}});
  ASSERT_TRUE(a.wait_answers(5));
  EXPECT_EQ(node.cli({"LRANGE", a.ran, "0", "-1"}), "c1\nc2\nc3\nc4\nc5");
}

// A slot migrating between the two nodes, its keys all moved: the old owner answers ASK, and the
// new one, after ASKING, runs the commands or refuses them (the script's TRYAGAIN stands for keys
// still split). Followed in one pipeline, the first could be refused while the node ran the next.
TEST(RedisClusterOrder, CommandsRedirectedWithAskRunInTheOrderAsked) {
  SmallCluster cluster;
  ASSERT_TRUE(cluster.start(2));
  Running r(cluster.nodes[0]->port());
  ASSERT_TRUE(r.wait_up());
  Asker a(r);
  const std::size_t owner = a.slot < kClusterSlots / 2 ? 0 : 1;
  RedisProcess& from = *cluster.nodes[owner];
  RedisProcess& to = *cluster.nodes[1 - owner];
  const std::string slot = std::to_string(a.slot);
  ASSERT_EQ(from.cli({"HSET", a.attempts, "c0", "0"}), "1");
  ASSERT_EQ(from.cli({"RPUSH", a.ran, "c0"}), "1");
  ASSERT_EQ(to.cli({"CLUSTER", "SETSLOT", slot, "IMPORTING", cluster.id(owner)}), "OK");
  ASSERT_EQ(from.cli({"CLUSTER", "SETSLOT", slot, "MIGRATING", cluster.id(1 - owner)}), "OK");
  ASSERT_EQ(from.cli({"MIGRATE", "127.0.0.1", std::to_string(to.port()), "", "0", "5000", "KEYS",
                      a.attempts, a.ran}),
            "OK");

  a.ask({{"c1", "2"}, {"c2", "0"}, {"c3", "0"}});
  ASSERT_TRUE(a.wait_answers(3));
  EXPECT_TRUE(a.refused.empty());
  EXPECT_EQ(a.answered, (std::vector<std::string>{"c1", "c2", "c3"}));
  // The migration ends, so that the new owner answers reads without ASKING.
  for (RedisProcess* node : {&to, &from}) {
    EXPECT_EQ(node->cli({"CLUSTER", "SETSLOT", slot, "NODE", cluster.id(1 - owner)}), "OK");
  }
  EXPECT_EQ(to.cli({"LRANGE", a.ran, "0", "-1"}), "c0\nc1\nc2\nc3");
  EXPECT_EQ(to.cli({"HMGET", a.attempts, "c1", "c2", "c3"}), "3\n1\n1");
}

}  // namespace
}  // namespace sigsrv
