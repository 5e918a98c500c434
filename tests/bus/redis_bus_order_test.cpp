// RedisBus against a real redis-server: answers come back in the order asked, even while Redis
// loses its scripts (SCRIPT FLUSH) and the bus retries them by body.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/post.hpp>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <variant>
#include <vector>

#include "harness.hpp"
#include "obs/metrics.hpp"
#include "running_bus.hpp"

namespace sigsrv {
namespace {

using namespace std::chrono_literals;

TEST(RedisBusOrder, AnswersComeBackInTheOrderAskedWhileScriptsAreFlushed) {
  auto redis = testing_support::RedisProcess::start();
  ASSERT_TRUE(redis);
  RunningBus rb(redis->url());
  ASSERT_TRUE(testing_support::wait_until([&] { return rb.bus->ready(); }, 5000ms));

  // A stream of checks kept in flight (up to kWindow unanswered) while SCRIPT FLUSH lands again
  // and again: the checks behind each flush fail with NOSCRIPT and are retried by body; those
  // sent after a retry reloaded the script pass at once. Every answer must still arrive in the
  // order asked.
  constexpr int kTotal = 20000;
  constexpr int kWindow = 2000;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int> order;
  std::atomic<int> answered{0};
  std::thread producer([&] {
    for (int n = 0; n < kTotal; ++n) {
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return n - static_cast<int>(order.size()) < kWindow; });
      }
      rb.bus->check_connection("10.0.0.1", 1000000000, [&, n](bool) {
        std::lock_guard lock(mu);
        order.push_back(n);
        answered = static_cast<int>(order.size());
        cv.notify_all();
      });
    }
  });
  for (int flush = 1; flush <= 8; ++flush) {
    testing_support::wait_until([&] { return answered >= flush * kTotal / 10; }, 10000ms);
    redis->cli({"SCRIPT", "FLUSH"});
  }
  producer.join();
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, 30s, [&] { return order.size() == kTotal; }))
      << order.size() << " of " << kTotal << " answered";
  int out_of_order = 0;
  for (std::size_t i = 0; i < order.size(); ++i) out_of_order += order[i] != static_cast<int>(i);
  EXPECT_EQ(out_of_order, 0) << "answers out of the order asked";
}

// Message verdicts are decided here at once and reconciled with the fleet's count in Redis: what
// another instance (here redis-cli, as a Node instance would: INCR per message) counted limits
// this one once a reconcile has brought it back, and this one's hits reach Redis.
TEST(RedisBusWindows, HitsReachRedisAndTheFleetsCountComesBack) {
  auto redis = testing_support::RedisProcess::start();
  ASSERT_TRUE(redis);
  RunningBus rb(redis->url());
  ASSERT_TRUE(testing_support::wait_until([&] { return rb.bus->ready(); }, 5000ms));
  const std::string key = "rl:msg-room:fleet-room:10";
  redis->cli({"INCRBY", key, "90"});
  const MessageLimits limits{1000000, 100};
  const auto reconciled = [] { return metrics().window_hits_reconciled.value(); };
  const auto before = reconciled();
  const MessageWindows windows = rb.bus->message_windows("10.0.0.9", "fleet-room");
  // Not known here yet: allowed, and sent to Redis within a reconcile period.
  EXPECT_EQ(rb.bus->message_verdict(windows, limits), MessageVerdict::kAllowed);
  ASSERT_TRUE(testing_support::wait_until([&] { return reconciled() >= before + 2; }, 3000ms))
      << "the IP's and the room's hit";
  EXPECT_EQ(redis->cli({"GET", key}), "91");
  const auto ttl = std::stoi(redis->cli({"TTL", key}));
  EXPECT_GT(ttl, 0) << "a window the Node-style INCRBY left without a TTL gets one";
  EXPECT_LE(ttl, 10);
  int allowed = 0;
  for (int i = 0; i < 20; ++i) {
    allowed += rb.bus->message_verdict(windows, limits) == MessageVerdict::kAllowed;
  }
  EXPECT_EQ(allowed, 9) << "91 known + 9 = the limit";
  ASSERT_TRUE(testing_support::wait_until([&] { return reconciled() >= before + 42; }, 3000ms));
  EXPECT_EQ(redis->cli({"GET", key}), "111") << "refused hits count too, as INCR counts them";
  EXPECT_EQ(redis->cli({"GET", "rl:msg-ip:10.0.0.9:10"}), "21");
}

}  // namespace
}  // namespace sigsrv
