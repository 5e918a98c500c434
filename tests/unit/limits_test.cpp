// Tests the per-connection token bucket and the 10 s window limiter with a fake clock.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "limits/token_bucket.hpp"
#include "limits/window_limiter.hpp"

namespace sigsrv {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::seconds;

// A fixed, arbitrary start; time only moves when a test adds to it.
const Clock::time_point kT0 = Clock::time_point{} + hours(1000);

// Takes tokens at `now` until one is refused; returns how many were taken.
int Drain(TokenBucket& b, Clock::time_point now, int cap = 100000) {
  int n = 0;
  while (n < cap && b.try_take(now)) ++n;
  return n;
}

TEST(TokenBucketTest, StartsFull) {
  TokenBucket b(200, kT0);
  EXPECT_DOUBLE_EQ(b.tokens(), 200.0);
  EXPECT_EQ(Drain(b, kT0), 200);
}

TEST(TokenBucketTest, EmptyBucketRefuses) {
  TokenBucket b(3, kT0);
  EXPECT_TRUE(b.try_take(kT0));
  EXPECT_TRUE(b.try_take(kT0));
  EXPECT_TRUE(b.try_take(kT0));
  EXPECT_FALSE(b.try_take(kT0));
  EXPECT_FALSE(b.try_take(kT0));
  EXPECT_DOUBLE_EQ(b.tokens(), 0.0);
}

TEST(TokenBucketTest, RefillsContinuouslyOverTenSeconds) {
  // 200 tokens over 10 s = 20 tokens per second.
  TokenBucket b(200, kT0);
  ASSERT_EQ(Drain(b, kT0), 200);
  EXPECT_EQ(Drain(b, kT0 + seconds(1)), 20);
  EXPECT_EQ(Drain(b, kT0 + milliseconds(1500)), 10);
  EXPECT_EQ(Drain(b, kT0 + milliseconds(1750)), 5);
  // 49 ms later: less than one token (0.98).
  EXPECT_FALSE(b.try_take(kT0 + milliseconds(1799)));
  EXPECT_TRUE(b.try_take(kT0 + milliseconds(1850)));
}

TEST(TokenBucketTest, RefusedAttemptsDoNotLoseAccruedTime) {
  TokenBucket b(200, kT0);
  ASSERT_EQ(Drain(b, kT0), 200);
  // Each attempt 25 ms apart accrues half a token; every second attempt succeeds.
  int taken = 0;
  for (int i = 1; i <= 40; ++i) taken += b.try_take(kT0 + milliseconds(25 * i)) ? 1 : 0;
  EXPECT_EQ(taken, 20);
}

TEST(TokenBucketTest, FullRefillAfterTenSeconds) {
  TokenBucket b(200, kT0);
  ASSERT_EQ(Drain(b, kT0), 200);
  EXPECT_EQ(Drain(b, kT0 + seconds(10)), 200);
}

TEST(TokenBucketTest, NeverAboveCapacity) {
  TokenBucket b(200, kT0);
  EXPECT_TRUE(b.try_take(kT0 + hours(5)));
  EXPECT_DOUBLE_EQ(b.tokens(), 199.0);
  EXPECT_EQ(Drain(b, kT0 + hours(10)), 200);
}

TEST(TokenBucketTest, PartialRefillIsCappedAtCapacity) {
  TokenBucket b(10, kT0);
  ASSERT_EQ(Drain(b, kT0, 5), 5);
  // 5 left; 10 s would add 10 more, but the bucket holds only 10.
  EXPECT_EQ(Drain(b, kT0 + seconds(10)), 10);
}

TEST(TokenBucketTest, ClockGoingBackwardsAddsNothing) {
  TokenBucket b(2, kT0 + seconds(10));
  ASSERT_EQ(Drain(b, kT0 + seconds(10)), 2);
  EXPECT_FALSE(b.try_take(kT0));
  EXPECT_DOUBLE_EQ(b.tokens(), 0.0);
  // Time measured from the last real instant, not from the backwards one.
  EXPECT_TRUE(b.try_take(kT0 + seconds(15)));
}

TEST(WindowLimiterTest, AllowsExactlyLimitWithinTheWindow) {
  WindowLimiter w;
  EXPECT_TRUE(w.hit("conn", "1.2.3.4", 3, kT0));
  EXPECT_TRUE(w.hit("conn", "1.2.3.4", 3, kT0 + seconds(1)));
  EXPECT_TRUE(w.hit("conn", "1.2.3.4", 3, kT0 + milliseconds(9999)));
  EXPECT_FALSE(w.hit("conn", "1.2.3.4", 3, kT0 + milliseconds(9999)));
}

TEST(WindowLimiterTest, SpecDefaultLimit) {
  WindowLimiter w;
  int allowed = 0;
  for (int i = 0; i < 25; ++i) allowed += w.hit("conn", "ip", 20, kT0 + milliseconds(i)) ? 1 : 0;
  EXPECT_EQ(allowed, 20);
}

TEST(WindowLimiterTest, ResetsWhenTheWindowEnds) {
  WindowLimiter w;
  EXPECT_TRUE(w.hit("conn", "ip", 1, kT0));
  EXPECT_FALSE(w.hit("conn", "ip", 1, kT0 + seconds(5)));
  // The window opened at the first hit and lasts exactly 10 s (EXPIRE 10).
  EXPECT_FALSE(w.hit("conn", "ip", 1, kT0 + milliseconds(9999)));
  EXPECT_TRUE(w.hit("conn", "ip", 1, kT0 + seconds(10)));
  EXPECT_FALSE(w.hit("conn", "ip", 1, kT0 + seconds(11)));
  EXPECT_TRUE(w.hit("conn", "ip", 1, kT0 + seconds(20)));
}

TEST(WindowLimiterTest, WindowDoesNotSlideWithHits) {
  // Hits inside the window do not extend it (EXPIRE is set on the first hit only).
  WindowLimiter w;
  for (int i = 0; i < 10; ++i) w.hit("msg-ip", "ip", 2, kT0 + seconds(i));
  EXPECT_TRUE(w.hit("msg-ip", "ip", 2, kT0 + seconds(10)));
}

TEST(WindowLimiterTest, HitsOverTheLimitStillCount) {
  WindowLimiter w;
  EXPECT_TRUE(w.hit("msg-room", "r", 2, kT0));
  EXPECT_TRUE(w.hit("msg-room", "r", 2, kT0));
  EXPECT_FALSE(w.hit("msg-room", "r", 2, kT0));
  // Raising the limit to 3 later in the window: the count is already 3, the 4th hit is over.
  EXPECT_FALSE(w.hit("msg-room", "r", 3, kT0 + seconds(1)));
}

TEST(WindowLimiterTest, KeysAreIndependent) {
  WindowLimiter w;
  EXPECT_TRUE(w.hit("conn", "1.1.1.1", 1, kT0));
  EXPECT_FALSE(w.hit("conn", "1.1.1.1", 1, kT0));
  EXPECT_TRUE(w.hit("conn", "2.2.2.2", 1, kT0));
  EXPECT_FALSE(w.hit("conn", "2.2.2.2", 1, kT0));
}

TEST(WindowLimiterTest, NamespacesAreIndependent) {
  WindowLimiter w;
  EXPECT_TRUE(w.hit("conn", "1.1.1.1", 1, kT0));
  EXPECT_TRUE(w.hit("msg-ip", "1.1.1.1", 1, kT0));
  EXPECT_TRUE(w.hit("msg-room", "1.1.1.1", 1, kT0));
  EXPECT_FALSE(w.hit("conn", "1.1.1.1", 1, kT0));
  EXPECT_FALSE(w.hit("msg-ip", "1.1.1.1", 1, kT0));
  EXPECT_FALSE(w.hit("msg-room", "1.1.1.1", 1, kT0));
}

TEST(WindowLimiterTest, CountsOneEntryPerKey) {
  WindowLimiter w;
  EXPECT_EQ(w.size_for_test(), 0u);
  w.hit("conn", "a", 5, kT0);
  w.hit("conn", "a", 5, kT0);
  w.hit("conn", "b", 5, kT0);
  w.hit("msg-ip", "a", 5, kT0);
  EXPECT_EQ(w.size_for_test(), 3u);
}

TEST(WindowLimiterTest, SweepsExpiredKeys) {
  WindowLimiter w;
  for (int i = 0; i < 200; ++i) w.hit("conn", "old-" + std::to_string(i), 5, kT0);
  EXPECT_EQ(w.size_for_test(), 200u);
  // Still within the window: nothing may be swept.
  for (int i = 0; i < 10; ++i) w.hit("conn", "mid-" + std::to_string(i), 5, kT0 + seconds(9));
  EXPECT_EQ(w.size_for_test(), 210u);
  // Once the old windows have ended, hits spread over every shard sweep them away; the "mid"
  // windows (until kT0 + 19 s) are still live and stay.
  for (int i = 0; i < 1000; ++i) w.hit("conn", "new-" + std::to_string(i), 5, kT0 + seconds(10));
  EXPECT_EQ(w.size_for_test(), 1010u);
}

TEST(WindowLimiterTest, MemoryStaysBoundedUnderKeyChurn) {
  WindowLimiter w;
  for (int window = 0; window < 50; ++window) {
    for (int i = 0; i < 100; ++i) {
      w.hit("conn", std::to_string(window) + "-" + std::to_string(i), 5,
            kT0 + seconds(10 * window));
    }
  }
  // Only the live window's keys (plus, at most, an unswept previous window) remain.
  EXPECT_LE(w.size_for_test(), 200u);
}

}  // namespace
}  // namespace sigsrv
