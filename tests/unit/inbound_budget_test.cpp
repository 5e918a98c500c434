// InboundBudget: reservations against the budget, the unsent bytes counted in, overload once.
#include "limits/inbound_budget.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace sigsrv {
namespace {

using Reserve = InboundBudget::Reserve;

TEST(InboundBudget, ReservesUpToTheBudgetCountingWhatIsUnsent) {
  InboundBudget b;
  EXPECT_EQ(b.reserve(60, 100), Reserve::kReserved);
  b.set_unsent(30);
  EXPECT_EQ(b.reserve(10, 100), Reserve::kReserved) << "60 + 30 + 10 is exactly the budget";
  EXPECT_EQ(b.inbound(), 70u);
  b.release(60);
  EXPECT_EQ(b.reserve(60, 100), Reserve::kReserved) << "released bytes are free again";
}

TEST(InboundBudget, FirstRefusalOverloadsAndLaterOnesAreRefused) {
  InboundBudget b;
  ASSERT_EQ(b.reserve(90, 100), Reserve::kReserved);
  EXPECT_EQ(b.reserve(11, 100), Reserve::kOverloaded);
  EXPECT_EQ(b.inbound(), 90u) << "a refused post reserves nothing";
  b.release(90);
  EXPECT_EQ(b.reserve(1, 100), Reserve::kRefused) << "overloaded for good: the close is under way";
}

TEST(InboundBudget, ClearedOverloadTakesPostsAgain) {
  InboundBudget b;
  ASSERT_EQ(b.reserve(101, 100), Reserve::kOverloaded);
  b.clear_overload();
  EXPECT_EQ(b.reserve(50, 100), Reserve::kReserved);
}

TEST(InboundBudget, ConcurrentPostersNeverPassTheBudgetAndOneSeesTheOverload) {
  InboundBudget b;
  constexpr std::size_t kCap = 10000;
  std::atomic<int> overloaded{0};
  std::atomic<std::size_t> reserved{0};
  std::vector<std::thread> posters;
  for (int t = 0; t < 4; ++t) {
    posters.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        switch (b.reserve(7, kCap)) {
          case Reserve::kReserved:
            reserved += 7;
            break;
          case Reserve::kOverloaded:
            ++overloaded;
            break;
          case Reserve::kRefused:
            break;
        }
      }
    });
  }
  for (auto& p : posters) p.join();
  EXPECT_LE(reserved.load(), kCap);
  EXPECT_EQ(reserved.load(), b.inbound());
  EXPECT_EQ(overloaded.load(), 1);
}

}  // namespace
}  // namespace sigsrv
