// DeadlineList: deadline order, bounded expiry, cancel, eviction of the oldest, lifetimes.
#include "limits/deadline_list.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace sigsrv {
namespace {

using Clock = DeadlineList::Clock;
using std::chrono::milliseconds;

struct Item : DeadlineList::Entry {
  explicit Item(std::string n, std::vector<std::string>* log = nullptr)
      : name(std::move(n)), log(log) {}
  ~Item() = default;
  void on_deadline(Why why) override {
    if (log) log->push_back(name + (why == Why::kExpired ? " expired" : " evicted"));
  }
  std::string name;
  std::vector<std::string>* log;
};

const Clock::time_point t0{};

TEST(DeadlineList, ExpiresWhatIsDueInDeadlineOrderAtMostABatch) {
  std::vector<std::string> log;
  DeadlineList list;
  Item a("a", &log), b("b", &log), c("c", &log), d("d", &log);
  list.arm(a, t0 + milliseconds(10));
  list.arm(b, t0 + milliseconds(20));
  list.arm(c, t0 + milliseconds(30));
  list.arm(d, t0 + milliseconds(40));
  EXPECT_EQ(list.size(), 4u);
  EXPECT_EQ(list.next_due(), t0 + milliseconds(10));
  EXPECT_EQ(list.expire(t0 + milliseconds(5), 10), 0u) << "nothing due yet";
  // Three are due; a batch of two takes the earliest two, the next call the third.
  EXPECT_EQ(list.expire(t0 + milliseconds(30), 2), 2u);
  EXPECT_EQ(log, (std::vector<std::string>{"a expired", "b expired"}));
  EXPECT_FALSE(a.armed());
  EXPECT_TRUE(c.armed());
  EXPECT_EQ(list.expire(t0 + milliseconds(30), 2), 1u);
  EXPECT_EQ(log.back(), "c expired");
  EXPECT_EQ(list.size(), 1u);
  EXPECT_EQ(list.next_due(), t0 + milliseconds(40));
}

TEST(DeadlineList, AnEarlierDeadlineIsPlacedInOrderAndReArmingMovesAnEntry) {
  std::vector<std::string> log;
  DeadlineList list;
  Item a("a", &log), b("b", &log), c("c", &log);
  list.arm(a, t0 + milliseconds(10));
  list.arm(b, t0 + milliseconds(30));
  list.arm(c, t0 + milliseconds(20));  // between a and b
  list.arm(a, t0 + milliseconds(40));  // moves behind b
  EXPECT_EQ(list.size(), 3u);
  list.expire(t0 + milliseconds(100), 10);
  EXPECT_EQ(log, (std::vector<std::string>{"c expired", "b expired", "a expired"}));
  EXPECT_TRUE(list.empty());
  EXPECT_EQ(list.next_due(), std::nullopt);
}

TEST(DeadlineList, CancelledAndDestroyedEntriesNeverExpire) {
  std::vector<std::string> log;
  DeadlineList list;
  Item a("a", &log), c("c", &log);
  list.arm(a, t0 + milliseconds(10));
  {
    Item b("b", &log);
    list.arm(b, t0 + milliseconds(20));
  }  // unlinked by its destructor
  list.arm(c, t0 + milliseconds(30));
  list.cancel(a);
  list.cancel(a);  // twice is harmless
  EXPECT_EQ(list.size(), 1u);
  list.expire(t0 + milliseconds(100), 10);
  EXPECT_EQ(log, (std::vector<std::string>{"c expired"}));
}

TEST(DeadlineList, PopOldestEvictsTheEarliestDeadline) {
  std::vector<std::string> log;
  DeadlineList list;
  Item a("a", &log), b("b", &log);
  EXPECT_FALSE(list.pop_oldest());
  list.arm(a, t0 + milliseconds(10));
  list.arm(b, t0 + milliseconds(20));
  EXPECT_TRUE(list.pop_oldest());
  EXPECT_EQ(log, (std::vector<std::string>{"a evicted"}));
  EXPECT_EQ(list.size(), 1u);
  EXPECT_EQ(list.next_due(), t0 + milliseconds(20));
}

// The owner of an entry may go away from its on_deadline(), or arm it again.
struct SelfDestroying : DeadlineList::Entry {
  explicit SelfDestroying(std::unique_ptr<SelfDestroying>* owner) : owner(owner) {}
  void on_deadline(Why) override { owner->reset(); }
  std::unique_ptr<SelfDestroying>* owner;
};
struct Rearming : DeadlineList::Entry {
  explicit Rearming(DeadlineList& l) : list(l) {}
  void on_deadline(Why) override {
    if (++fired == 1) list.arm(*this, t0 + milliseconds(50));
  }
  DeadlineList& list;
  int fired = 0;
};

TEST(DeadlineList, OnDeadlineMayDestroyOrReArmTheEntry) {
  DeadlineList list;
  std::unique_ptr<SelfDestroying> gone;
  gone = std::make_unique<SelfDestroying>(&gone);
  Rearming again(list);
  list.arm(*gone, t0 + milliseconds(10));
  list.arm(again, t0 + milliseconds(20));
  EXPECT_EQ(list.expire(t0 + milliseconds(20), 10), 2u);
  EXPECT_EQ(gone, nullptr);
  EXPECT_TRUE(again.armed());
  EXPECT_EQ(list.expire(t0 + milliseconds(49), 10), 0u);
  EXPECT_EQ(list.expire(t0 + milliseconds(50), 10), 1u);
  EXPECT_EQ(again.fired, 2);
}

TEST(DeadlineList, EntriesMayOutliveTheList) {
  Item a("a");
  {
    DeadlineList list;
    list.arm(a, t0 + milliseconds(10));
  }
  EXPECT_FALSE(a.armed());
}  // a's destructor must not touch the list

}  // namespace
}  // namespace sigsrv
