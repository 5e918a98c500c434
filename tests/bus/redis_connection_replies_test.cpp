// RedisConnection against a real redis-server: replies of every size, pipelined so that reads cut
// them anywhere, arrive whole and in order, whether read in place (integers, messages) or by
// hiredis (bulk strings, arrays), and replies larger than the read buffer grow it.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <functional>
#include <future>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "bus/redis_connection.hpp"
#include "bus/redis_url.hpp"
#include "harness.hpp"

namespace sigsrv {
namespace {

using namespace std::chrono_literals;

// A loop thread with one connection of `mode` on it.
struct Running {
  boost::asio::io_context ioc{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work =
      boost::asio::make_work_guard(ioc);
  Logger log{LogLevel::kError, false, "replies-test"};
  std::promise<void> up;
  std::unique_ptr<RedisConnection> conn;
  std::thread loop;

  Running(const std::string& url, RedisConnection::Mode mode, RedisConnection::Hooks hooks) {
    hooks.on_up = [this] { up.set_value(); };
    conn = std::make_unique<RedisConnection>(ioc, std::get<RedisEndpoint>(parse_redis_url(url)),
                                             nullptr, mode, "test", log, std::move(hooks));
    loop = std::thread([this] { ioc.run(); });
    boost::asio::post(ioc, [this] { conn->start(); });
  }
  bool wait_up() { return up.get_future().wait_for(5s) == std::future_status::ready; }
  ~Running() {
    boost::asio::post(ioc, [this] { conn->stop(); });
    work.reset();
    loop.join();
  }
};

std::string payload(int i) {
  // Mostly small; every 50th is 100 KiB, bigger than the 16 KiB read buffer.
  return std::string(i % 50 == 49 ? 100 * 1024 : 10 + i % 300, static_cast<char>('a' + i % 26)) +
         std::to_string(i);
}

TEST(RedisConnectionReplies, EverySizeArrivesWholeAndInOrder) {
  auto redis = testing_support::RedisProcess::start();
  ASSERT_TRUE(redis);
  Running cmd(redis->url(), RedisConnection::Mode::kCommand, {});
  ASSERT_TRUE(cmd.wait_up());

  // 3 MiB, so a GET of it has the buffer double several times.
  const std::string big(3 << 20, 'z');
  constexpr int kRounds = 2000;
  std::vector<std::string> got;  // on the loop only, until `done`
  std::promise<void> done;
  boost::asio::post(cmd.ioc, [&] {
    cmd.conn->command({"SET", "big", big}, [](const redisReply*) {});
    for (int i = 0; i < kRounds; ++i) {
      // An integer (read in place) between replies hiredis reads, all in one pipeline.
      cmd.conn->command({"INCR", "n"}, [&got](const redisReply* r) {
        got.push_back(r && r->type == REDIS_REPLY_INTEGER ? std::to_string(r->integer) : "?");
      });
      const bool large = i % 500 == 250;
      cmd.conn->command({"GET", large ? "big" : "missing"}, [&got, &big](const redisReply* r) {
        if (r && r->type == REDIS_REPLY_STRING) {
          got.push_back(reply_text(r) == big ? "big" : "wrong bytes");
        } else {
          got.push_back(r && r->type == REDIS_REPLY_NIL ? "nil" : "?");
        }
      });
      cmd.conn->command({"ECHO", payload(i)}, [&got, i](const redisReply* r) {
        got.push_back(reply_text(r) == payload(i) ? "echo" : "wrong echo " + std::to_string(i));
      });
    }
    cmd.conn->command({"PING"}, [&done](const redisReply*) { done.set_value(); });
  });
  ASSERT_EQ(done.get_future().wait_for(30s), std::future_status::ready);
  ASSERT_EQ(got.size(), 3u * kRounds);
  for (int i = 0; i < kRounds; ++i) {
    ASSERT_EQ(got[3 * i], std::to_string(i + 1)) << i;
    ASSERT_EQ(got[3 * i + 1], i % 500 == 250 ? "big" : "nil") << i;
    ASSERT_EQ(got[3 * i + 2], "echo") << i;
  }
}

TEST(RedisConnectionReplies, MessagesOfEverySizeArriveWholeAndInOrder) {
  auto redis = testing_support::RedisProcess::start();
  ASSERT_TRUE(redis);
  std::promise<void> subscribed;
  std::vector<std::string> received;  // on the subscriber's loop only, until `all`
  std::promise<void> all;
  constexpr int kMessages = 3000;
  RedisConnection::Hooks hooks;
  hooks.on_subscribed = [&subscribed](std::string_view channel) {
    if (channel == "ch") subscribed.set_value();
  };
  hooks.on_message = [&](std::string_view channel, std::string_view body) {
    received.push_back(channel == "ch" ? std::string(body) : "wrong channel");
    if (received.size() == kMessages) all.set_value();
  };
  Running sub(redis->url(), RedisConnection::Mode::kSubscriber, hooks);
  ASSERT_TRUE(sub.wait_up());
  boost::asio::post(sub.ioc, [&] { sub.conn->send({"SUBSCRIBE", "ch"}); });
  ASSERT_EQ(subscribed.get_future().wait_for(5s), std::future_status::ready);

  Running pub(redis->url(), RedisConnection::Mode::kCommand, {});
  ASSERT_TRUE(pub.wait_up());
  std::atomic<int> delivered_to{0};
  boost::asio::post(pub.ioc, [&] {
    for (int i = 0; i < kMessages; ++i) {
      pub.conn->command({"PUBLISH", "ch", payload(i)}, [&delivered_to](const redisReply* r) {
        if (r && r->type == REDIS_REPLY_INTEGER) delivered_to += static_cast<int>(r->integer);
      });
    }
  });
  ASSERT_EQ(all.get_future().wait_for(30s), std::future_status::ready);
  EXPECT_TRUE(testing_support::wait_until([&] { return delivered_to == kMessages; }, 5000ms));
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_EQ(received[i], payload(i)) << i;
  }
}

// A subscriber whose loop fell behind takes the backlog in reads larger than its 16 KiB buffer.
// One read per turn of a busy loop drained 16 KiB a turn while the instance published more, so
// Redis cut the subscriber at its pub/sub output limit. Here the loop is held while 4 MB queue
// up, then a handler that re-posts itself counts what arrives between two of its runs: the loop
// completes at most one read in between.
TEST(RedisConnectionReplies, ASubscriberBehindTakesTheBacklogInLargerReads) {
  auto redis = testing_support::RedisProcess::start();
  ASSERT_TRUE(redis);
  std::promise<void> subscribed;
  int received = 0;  // on the subscriber's loop only
  RedisConnection::Hooks hooks;
  hooks.on_subscribed = [&subscribed](std::string_view channel) {
    if (channel == "ch") subscribed.set_value();
  };
  hooks.on_message = [&received](std::string_view, std::string_view) { ++received; };
  // What the subscriber's loop uses lives longer than the loop (declared before `sub`).
  constexpr int kMessages = 10000;
  std::vector<int> per_turn;  // messages read between two runs of `tick`
  std::promise<void> all;
  int seen = 0;
  std::atomic<bool> abandoned{false};  // the test ended early: stop ticking, so the loop can end
  std::function<void()> tick;
  Running sub(redis->url(), RedisConnection::Mode::kSubscriber, hooks);
  struct Abandon {
    std::atomic<bool>& flag;
    ~Abandon() { flag = true; }
  } abandon_on_exit{abandoned};
  ASSERT_TRUE(sub.wait_up());
  boost::asio::post(sub.ioc, [&] { sub.conn->send({"SUBSCRIBE", "ch"}); });
  ASSERT_EQ(subscribed.get_future().wait_for(5s), std::future_status::ready);

  const std::string body(400, 'm');
  tick = [&] {
    per_turn.push_back(received - seen);
    seen = received;
    if (received >= kMessages) {
      all.set_value();
      return;
    }
    if (!abandoned) boost::asio::post(sub.ioc, tick);
  };
  std::promise<void> release;
  auto released = release.get_future().share();
  boost::asio::post(sub.ioc, [released] { released.wait(); });
  boost::asio::post(sub.ioc, tick);

  Running pub(redis->url(), RedisConnection::Mode::kCommand, {});
  bool published = pub.wait_up();
  std::atomic<int> delivered_to{0};
  if (published) {
    boost::asio::post(pub.ioc, [&] {
      for (int i = 0; i < kMessages; ++i) {
        pub.conn->command({"PUBLISH", "ch", body}, [&delivered_to](const redisReply* r) {
          if (r && r->type == REDIS_REPLY_INTEGER) delivered_to += static_cast<int>(r->integer);
        });
      }
    });
    // Every PUBLISH answered: all of it is queued for the held subscriber.
    published = testing_support::wait_until([&] { return delivered_to == kMessages; }, 10000ms);
  }
  release.set_value();
  ASSERT_TRUE(published);
  ASSERT_EQ(all.get_future().wait_for(30s), std::future_status::ready);
  EXPECT_EQ(received, kMessages);
  // A 16 KiB read holds 38 of these messages; the backlog must go faster than that.
  EXPECT_GT(*std::max_element(per_turn.begin(), per_turn.end()), 4 * 16384 / 430);
}

}  // namespace
}  // namespace sigsrv
