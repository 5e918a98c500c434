// Outbox: order, the byte cap counting the stream's own buffer, overload for good, drops.
#include "limits/outbox.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace sigsrv {
namespace {

SharedText text(const std::string& s) {
  return std::make_shared<const std::string>(s);
}

TEST(Outbox, WritesOneAtATimeInOrder) {
  Outbox box;
  box.push(text("a"));
  box.push(text("bb"));
  EXPECT_EQ(box.bytes(), 3u);
  const std::string* first = box.begin_write();
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(*first, "a");
  EXPECT_EQ(box.begin_write(), nullptr) << "one write in flight at a time";
  box.end_write();
  EXPECT_EQ(box.bytes(), 2u);
  const std::string* second = box.begin_write();
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(*second, "bb");
  box.end_write();
  EXPECT_EQ(box.begin_write(), nullptr);
  EXPECT_EQ(box.size(), 0u);
  EXPECT_EQ(box.bytes(), 0u);
}

TEST(Outbox, CapCountsTheStreamsBufferAndOverloadIsForGood) {
  Outbox box;
  EXPECT_EQ(box.offer(40, 50, 100), Outbox::Offer::kAccepted);
  box.push(text(std::string(40, 'x')));
  EXPECT_EQ(box.offer(10, 50, 100), Outbox::Offer::kAccepted) << "exactly at the cap fits";
  EXPECT_EQ(box.offer(11, 50, 100), Outbox::Offer::kOverloaded) << "40 + 50 + 11 > 100";
  EXPECT_TRUE(box.overloaded());
  EXPECT_EQ(box.offer(1, 0, 100), Outbox::Offer::kRefused) << "the first refusal closes it";
}

TEST(Outbox, DropUnsentKeepsTheWriteInFlight) {
  Outbox box;
  for (const char* s : {"one", "two", "three"}) box.push(text(s));
  ASSERT_NE(box.begin_write(), nullptr);
  box.drop_unsent();
  EXPECT_EQ(box.size(), 1u);
  EXPECT_EQ(box.bytes(), 3u);
  box.end_write();
  EXPECT_EQ(box.size(), 0u);
  EXPECT_EQ(box.bytes(), 0u);
  box.push(text("four"));
  box.drop_unsent();
  EXPECT_EQ(box.size(), 0u) << "nothing in flight: everything goes";
  EXPECT_EQ(box.bytes(), 0u);
}

TEST(Outbox, DrainHandsEverythingOverInOrder) {
  Outbox box;
  for (const char* s : {"a", "b", "c"}) box.push(text(s));
  std::vector<std::string> got;
  box.drain([&](const std::string& m) { got.push_back(m); });
  EXPECT_EQ(got, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(box.size(), 0u);
  EXPECT_EQ(box.bytes(), 0u);
}

}  // namespace
}  // namespace sigsrv
