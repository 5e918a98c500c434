// The verdict queue: order, bounds, and placeholders that keep verdicts meeting their messages.
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
  EXPECT_EQ(q.pop(), "one");
  EXPECT_EQ(q.pop(), "three");
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.bytes(), 0u);
}

TEST(VerdictQueue, PastTheCountAPlaceholderKeepsTheNextVerdictAligned) {
  VerdictQueue q;
  for (std::size_t i = 0; i < VerdictQueue::kMaxMessages; ++i) {
    ASSERT_TRUE(q.push("m" + std::to_string(i)));
  }
  EXPECT_FALSE(q.push("over"));
  EXPECT_EQ(q.size(), VerdictQueue::kMaxMessages + 1) << "one entry per verdict asked";
  for (std::size_t i = 0; i < VerdictQueue::kMaxMessages; ++i) {
    ASSERT_EQ(q.pop(), "m" + std::to_string(i));
  }
  EXPECT_EQ(q.pop(), "") << "the dropped message's verdict meets its placeholder";
  EXPECT_TRUE(q.empty());
  EXPECT_TRUE(q.push("after")) << "room again once drained";
  EXPECT_EQ(q.pop(), "after");
}

TEST(VerdictQueue, PastTheBytesTheMessageIsDroppedButLaterSmallOnesFit) {
  VerdictQueue q;
  const std::string big(VerdictQueue::kMaxBytes - 10, 'x');
  EXPECT_TRUE(q.push(big));
  EXPECT_FALSE(q.push(std::string(11, 'y')));
  EXPECT_TRUE(q.push(std::string(10, 'z')));
  EXPECT_EQ(q.bytes(), VerdictQueue::kMaxBytes);
  EXPECT_EQ(q.pop(), big);
  EXPECT_EQ(q.pop(), "");
  EXPECT_EQ(q.pop(), std::string(10, 'z'));
  EXPECT_EQ(q.bytes(), 0u);
}

TEST(TextFifo, KeepsOrderAcrossCompactionsWhenItNeverFullyDrains) {
  TextFifo f;
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
