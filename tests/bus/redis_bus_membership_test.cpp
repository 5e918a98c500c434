// RedisBus against a real redis-server: a member joined in Redis but not yet attached locally
// when Redis restarts empty is still re-asserted.
#include <gtest/gtest.h>

#include <future>

#include "harness.hpp"
#include "running_bus.hpp"

namespace sigsrv {
namespace {

using namespace std::chrono_literals;

JoinResult join(RedisBus& bus, const std::string& room, const std::string& client) {
  std::promise<JoinResult> done;
  bus.join(room, client, 2, [&done](JoinResult r) { done.set_value(r); });
  auto f = done.get_future();
  EXPECT_EQ(f.wait_for(5s), std::future_status::ready);
  return f.get();
}

TEST(RedisBusMembership, AJoinAttachedAfterARestartsResyncIsReasserted) {
  auto redis = testing_support::RedisProcess::start();
  ASSERT_TRUE(redis);
  const uint16_t port = redis->port();
  RunningBus rb(redis->url());
  ASSERT_TRUE(testing_support::wait_until([&] { return rb.bus->ready(); }, 5000ms));

  // Joined in Redis; the session has not attached it locally yet (local_members() is empty).
  const JoinResult r = join(*rb.bus, "late", "client:late");
  ASSERT_EQ(r.status, JoinResult::Status::kJoined);
  ASSERT_EQ(redis->cli({"SISMEMBER", "room:late", "client:late"}), "1");

  // Redis restarts empty and the bus re-asserts what is local: not this member.
  redis->kill_now();
  ASSERT_TRUE(testing_support::wait_until([&] { return !rb.bus->ready(); }, 5000ms));
  redis = testing_support::RedisProcess::start(port);
  ASSERT_TRUE(redis);
  ASSERT_TRUE(testing_support::wait_until([&] { return rb.bus->ready(); }, 10000ms));
  EXPECT_EQ(redis->cli({"SISMEMBER", "room:late", "client:late"}), "0");

  // Attached now: the join predates the re-assertion, so the member is re-asserted too.
  rb.bus->joined_locally("late", "client:late", r.epoch);
  EXPECT_TRUE(testing_support::wait_until(
      [&] {
        return redis->cli({"SISMEMBER", "room:late", "client:late"}) == "1";
      },
      5000ms));
  EXPECT_EQ(redis->cli({"HGET", "room-owners:late", "client:late"}), "bus-test");

  // A join after the re-assertion needs nothing more.
  const JoinResult fresh = join(*rb.bus, "fresh", "client:fresh");
  ASSERT_EQ(fresh.status, JoinResult::Status::kJoined);
  EXPECT_NE(fresh.epoch, r.epoch);
}

}  // namespace
}  // namespace sigsrv

namespace sigsrv {
namespace {

TEST(RedisBusMembership, LeavesWaitingForRedisAreBounded) {
  auto redis = testing_support::RedisProcess::start();
  ASSERT_TRUE(redis);
  RunningBus rb(redis->url());
  ASSERT_TRUE(testing_support::wait_until([&] { return rb.bus->ready(); }, 5000ms));
  redis->kill_now();
  ASSERT_TRUE(testing_support::wait_until([&] { return !rb.bus->ready(); }, 5000ms));
  const uint64_t before = metrics().redis_leaves_abandoned.value();
  // Leaves Redis cannot take are kept for a retry, up to the bound; the rest are counted.
  constexpr std::size_t kOver = 50;
  for (std::size_t i = 0; i < RedisBus::kMaxFailedLeaves + kOver; ++i) {
    rb.bus->leave("gone", "client:" + std::to_string(i));
  }
  EXPECT_TRUE(testing_support::wait_until(
      [&] { return metrics().redis_leaves_abandoned.value() - before == kOver; }, 30000ms))
      << metrics().redis_leaves_abandoned.value() - before;
}

}  // namespace
}  // namespace sigsrv
