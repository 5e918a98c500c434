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
#include "running_bus.hpp"

namespace sigsrv {
namespace {

using namespace std::chrono_literals;

TEST(RedisBusOrder, VerdictsComeBackInTheOrderAskedWhileScriptsAreFlushed) {
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
  const MessageLimits limits{1000000000, 1000000000};
  std::thread producer([&] {
    for (int n = 0; n < kTotal; ++n) {
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return n - static_cast<int>(order.size()) < kWindow; });
      }
      rb.bus->check_message("10.0.0.1", "order-room", limits, [&, n](MessageVerdict) {
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

}  // namespace
}  // namespace sigsrv
