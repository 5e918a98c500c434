// The shared message windows on the Redis bus: decided at once on each instance, reconciled with
// the fleet's count in Redis (README "Shared limits across a fleet"), and never a reason for a
// message between members of one instance to wait for Redis.
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <string>
#include <vector>

#include "harness.hpp"
#include "ws_client.hpp"

using namespace testing_support;
using Clock = std::chrono::steady_clock;

namespace {

std::unique_ptr<ServerProcess> start_ready(const RedisProcess& redis, Env extra = {}) {
  extra["REDIS_URL"] = redis.url();
  return testing_support::start_ready(relaxed_limits(extra));
}

// The next relayed message (server notices such as welcome and peer-joined skipped).
std::optional<std::string> next_relayed(WsClient& c, std::chrono::milliseconds timeout = 5000ms) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    auto m = c.recv(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
    if (!m) return std::nullopt;
    if (m->find(R"("type":"control")") == std::string::npos) return m;
  }
  return std::nullopt;
}

std::string candidate(const std::string& tag, int i) {
  return R"({"type":"candidate","candidate":")" + tag + std::to_string(i) + R"("})";
}

double room_drops(const ServerProcess& s) {
  return scrape(s.port(), R"(cloudgaming_rate_limit_drops_total{scope="room"})").value_or(-1);
}

double reconciled(const ServerProcess& s) {
  return scrape(s.port(), "cloudgaming_rate_limit_hits_reconciled_total").value_or(-1);
}

TEST(RedisWindows, OneInstanceIsExactAndAnotherOnlyOvershootsByWhatItHadNotReconciled) {
  auto redis = RedisProcess::start();
  ASSERT_TRUE(redis);
  const Env limit = {{"RATE_LIMIT_ROOM_MSGS_PER_10S", "100"}};
  auto s1 = start_ready(*redis, limit);
  auto s2 = start_ready(*redis, limit);
  ASSERT_TRUE(s1 && s2);

  // One instance alone: exactly the limit, whatever Redis has answered yet.
  auto a = join(s1->port(), "solo", "&events=1");
  auto b = join(s1->port(), "solo", "&events=1");
  ASSERT_TRUE(a && b);
  std::vector<std::string> burst;
  for (int i = 0; i < 150; ++i) burst.push_back(candidate("s", i));
  a->send_all(burst);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(next_relayed(*b), burst[i]) << i;
  ASSERT_TRUE(wait_until([&] { return room_drops(*s1) == 50; }, 5000ms)) << room_drops(*s1);

  // Across instances: 60 counted elsewhere (as a Node instance counts: INCR per message).
  redis->cli({"INCRBY", "rl:msg-room:fleet:10", "60"});
  auto x = join(s1->port(), "fleet", "&events=1");
  auto y = join(s2->port(), "fleet", "&events=1");
  ASSERT_TRUE(x && y);
  // Every hit so far (150 per IP, 150 per room) is in Redis before the count starts below.
  ASSERT_TRUE(wait_until([&] { return reconciled(*s1) == 300; }, 3000ms)) << reconciled(*s1);
  const double s1_reconciled = reconciled(*s1);
  x->send(candidate("x", 0));
  ASSERT_EQ(next_relayed(*y), candidate("x", 0));
  // Once s1 has added its hit (the IP's and the room's) and read the fleet's 61 back, it allows
  // 39 more and no more.
  ASSERT_TRUE(wait_until([&] { return reconciled(*s1) >= s1_reconciled + 2; }, 3000ms));
  burst.clear();
  for (int i = 1; i <= 60; ++i) burst.push_back(candidate("x", i));
  x->send_all(burst);
  for (int i = 0; i < 39; ++i) ASSERT_EQ(next_relayed(*y), burst[i]) << i;
  ASSERT_TRUE(wait_until([&] { return room_drops(*s1) == 50 + 21; }, 5000ms)) << room_drops(*s1);
  // s2 has counted nothing of this room yet: its first message goes through (the bounded
  // overshoot: one reconcile round of another instance), and once reconciled it knows the room
  // is over its limit.
  const double s2_reconciled = reconciled(*s2);
  y->send(candidate("y", 0));
  ASSERT_EQ(next_relayed(*x), candidate("y", 0));
  ASSERT_TRUE(wait_until([&] { return reconciled(*s2) >= s2_reconciled + 2; }, 3000ms));
  for (int i = 1; i <= 5; ++i) y->send(candidate("y", i));
  EXPECT_TRUE(wait_until([&] { return room_drops(*s2) == 5; }, 5000ms)) << room_drops(*s2);
  // Dropped hits count too; they reach Redis with the next reconcile.
  const std::string fleet_total = std::to_string(60 + 61 + 6);
  EXPECT_TRUE(wait_until(
      [&] {
        return redis->cli({"GET", "rl:msg-room:fleet:10"}) == fleet_total;
      },
      3000ms))
      << redis->cli({"GET", "rl:msg-room:fleet:10"});
}

}  // namespace
