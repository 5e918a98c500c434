// The shared windows counted locally and reconciled with Redis in batches.
#include "limits/reconciled_windows.hpp"

#include <gtest/gtest.h>

namespace sigsrv {
namespace {

using namespace std::chrono_literals;

constexpr const char* kKey = "rl:msg-room:r:10";

// Hits `n` times; returns how many were within `limit`.
int hits(ReconciledWindows& w, int n, uint32_t limit, Clock::time_point now,
         bool* flush = nullptr) {
  bool ignored = false;
  int allowed = 0;
  for (int i = 0; i < n; ++i)
    allowed += w.hit(HashedKey::of(kKey), limit, now, flush ? flush : &ignored);
  return allowed;
}

TEST(ReconciledWindows, AloneItIsExactWhateverRedisHasAnsweredYet) {
  ReconciledWindows w;
  const auto t0 = Clock::now();
  EXPECT_EQ(hits(w, 6, 10, t0), 6);
  auto sent = w.take_unsent();  // in flight: still counted
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].key, kKey);
  EXPECT_EQ(sent[0].count, 6u);
  EXPECT_EQ(hits(w, 3, 10, t0), 3);
  w.confirm(kKey, 6, 6, 9000ms, t0);  // Redis: our 6, nobody else's
  EXPECT_EQ(hits(w, 3, 10, t0), 1) << "6 confirmed + 3 unsent + 1 = the limit";
  // Over-limit hits count too, as INCR counts them.
  sent = w.take_unsent();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].count, 6u);
}

TEST(ReconciledWindows, TheFleetsCountFromRedisLimitsThisProcess) {
  ReconciledWindows w;
  const auto t0 = Clock::now();
  EXPECT_EQ(hits(w, 1, 10, t0), 1);
  auto sent = w.take_unsent();
  w.confirm(kKey, 1, 8, 9000ms, t0);  // other instances counted 7 meanwhile
  EXPECT_EQ(hits(w, 5, 10, t0), 2);
}

TEST(ReconciledWindows, AnswersInOrderCountEachBatchOnce) {
  ReconciledWindows w;
  const auto t0 = Clock::now();
  hits(w, 2, 100, t0);
  w.take_unsent();  // batch 1: 2
  hits(w, 3, 100, t0);
  w.take_unsent();  // batch 2: 3
  // Batch 1 answered: Redis has 2 (batch 2 not applied yet); batch 2 still counts in flight.
  w.confirm(kKey, 2, 2, 9000ms, t0);
  EXPECT_EQ(hits(w, 100, 10, t0), 5) << "2 confirmed + 3 in flight";
}

TEST(ReconciledWindows, AFailedBatchStillCountsHere) {
  ReconciledWindows w;
  const auto t0 = Clock::now();
  hits(w, 4, 10, t0);
  auto sent = w.take_unsent();
  w.failed(kKey, sent[0].count);
  EXPECT_EQ(hits(w, 10, 10, t0), 6);
}

TEST(ReconciledWindows, TheWindowEndsWhenRedisSaidItWould) {
  ReconciledWindows w;
  const auto t0 = Clock::now();
  hits(w, 1, 5, t0);
  w.take_unsent();
  w.confirm(kKey, 1, 5, 2000ms, t0);  // full, ending in 2 s
  EXPECT_EQ(hits(w, 1, 5, t0 + 1999ms), 0);
  w.take_unsent();
  w.confirm(kKey, 1, 6, 1ms, t0 + 1999ms);
  EXPECT_EQ(hits(w, 5, 5, t0 + 2000ms), 5) << "a new window";
  EXPECT_EQ(hits(w, 1, 5, t0 + 2000ms), 0);
}

TEST(ReconciledWindows, OneFlushIsAskedForPerBatchAndEachKeyIsSentOnce) {
  ReconciledWindows w;
  const auto t0 = Clock::now();
  bool flush = false;
  hits(w, 1, 10, t0, &flush);
  EXPECT_TRUE(flush);
  flush = false;
  hits(w, 3, 10, t0, &flush);
  EXPECT_TRUE(w.hit(HashedKey::of("rl:msg-ip:1.2.3.4:10"), 10, t0, &flush));
  EXPECT_FALSE(flush) << "one flush already asked for";
  auto sent = w.take_unsent();
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].count + sent[1].count, 5u);
  EXPECT_TRUE(w.take_unsent().empty());
  hits(w, 1, 10, t0, &flush);
  EXPECT_TRUE(flush) << "the next hit after a take asks again";
}

TEST(ReconciledWindows, ExpiredKeysAreSweptOnlyOnceNothingIsPending) {
  ReconciledWindows w;
  const auto t0 = Clock::now();
  bool flush = false;
  for (int i = 0; i < 50; ++i)
    w.hit(HashedKey::of("rl:msg-room:" + std::to_string(i) + ":10"), 10, t0, &flush);
  auto sent = w.take_unsent();
  ASSERT_EQ(sent.size(), 50u);
  // Half answered; the rest still in flight when their windows end.
  for (int i = 0; i < 25; ++i) w.confirm(sent[i].key, 1, 1, 10000ms, t0);
  const auto later = t0 + 11s;
  for (int s = 0; s < 64; ++s)
    w.hit(HashedKey::of("rl:msg-ip:sweep" + std::to_string(s) + ":10"), 10, later, &flush);
  EXPECT_EQ(w.size_for_test(), 25u + 64u) << "the answered, expired keys are gone";
  for (int i = 25; i < 50; ++i) w.confirm(sent[i].key, 1, 1, 10000ms, later);
  EXPECT_EQ(w.size_for_test(), 25u + 64u) << "answers for kept keys still land";
}

}  // namespace
}  // namespace sigsrv
