// The verdict queue: order and bounds (a refused message takes no place and asks no verdict).
#include "signaling/verdict_queue.hpp"

#include <gtest/gtest.h>

namespace sigsrv {
namespace {

TEST(VerdictQueue, MessagesComeOutInArrivalOrderWithTheirBytesAccounted) {
  VerdictQueue q;
  EXPECT_TRUE(q.push("one"));
  EXPECT_TRUE(q.push("three"));
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(q.bytes(), 8u);
  EXPECT_EQ(q.pop().text, "one");
  EXPECT_EQ(q.pop().text, "three");
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.bytes(), 0u);
}

TEST(VerdictQueue, PastTheCountAMessageIsRefusedAndRidesBehindTheLastOneWaiting) {
  VerdictQueue q;
  for (std::size_t i = 0; i < VerdictQueue::kMaxMessages; ++i) {
    ASSERT_TRUE(q.push("m" + std::to_string(i)));
  }
  EXPECT_FALSE(q.push("over"));
  EXPECT_FALSE(q.push("over again"));
  EXPECT_EQ(q.size(), VerdictQueue::kMaxMessages) << "one entry per verdict asked";
  for (std::size_t i = 0; i + 1 < VerdictQueue::kMaxMessages; ++i) {
    const auto w = q.pop();
    ASSERT_EQ(w.text, "m" + std::to_string(i));
    ASSERT_EQ(w.dropped_after, 0u);
  }
  const auto last = q.pop();
  EXPECT_EQ(last.dropped_after, 2u) << "the refused ones are accounted for after the last kept";
  EXPECT_TRUE(q.empty());
  EXPECT_TRUE(q.push("after")) << "room again once drained";
  EXPECT_EQ(q.pop().text, "after");
}

TEST(VerdictQueue, PastTheBytesTheMessageIsRefusedButLaterSmallOnesFit) {
  VerdictQueue q;
  const std::string big(VerdictQueue::kMaxBytes - 10, 'x');
  EXPECT_TRUE(q.push(big));
  EXPECT_FALSE(q.push(std::string(11, 'y')));
  EXPECT_TRUE(q.push(std::string(10, 'z')));
  EXPECT_EQ(q.bytes(), VerdictQueue::kMaxBytes);
  EXPECT_EQ(q.size(), 2u);
  const auto first = q.pop();
  EXPECT_EQ(first.text, big);
  EXPECT_EQ(first.dropped_after, 1u);
  EXPECT_EQ(q.pop().text, std::string(10, 'z'));
  EXPECT_EQ(q.bytes(), 0u);
}

TEST(Fifo, KeepsOrderAcrossCompactionsWhenItNeverFullyDrains) {
  Fifo<std::string> f;
  int next_in = 0, next_out = 0;
  for (int round = 0; round < 5000; ++round) {
    f.push(std::to_string(next_in++));
    f.push(std::to_string(next_in++));
    ASSERT_EQ(f.pop(), std::to_string(next_out++));
  }
  EXPECT_EQ(f.size(), 5000u);
  while (!f.empty()) ASSERT_EQ(f.pop(), std::to_string(next_out++));
  EXPECT_EQ(next_out, next_in);
}

}  // namespace
}  // namespace sigsrv
