// Deadlines of connections still in their HTTP phase, in deadline order: pure (the caller passes
// the time), one list per event loop, driven by one timer (net/handshake_deadlines.hpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>

namespace sigsrv {

// Why a list and not an Asio timer per connection: connections opened together (a flood of
// requests that are never finished) expire together, and a loop runs every expired timer's
// handler in the same turn. 10,000 of them held a legitimate client's join behind 10,000 closes
// for a few hundred milliseconds. The list lets its owner expire a bounded batch per turn, and
// gives the oldest entry at once, for eviction (MAX_CONNECTIONS). An entry costs three pointers
// and a time point, where a timer costs an object plus a pending wait operation.
class DeadlineList {
 public:
  using Clock = std::chrono::steady_clock;

  // Embedded in what the deadline is for; unlinks itself when destroyed.
  class Entry {
   public:
    Entry() = default;
    Entry(const Entry&) = delete;
    Entry& operator=(const Entry&) = delete;
    bool armed() const { return list_ != nullptr; }

   protected:
    ~Entry();
    enum class Why { kExpired, kEvicted };
    // The deadline passed (expire()) or the entry was evicted (pop_oldest()); it is unlinked
    // already and may be destroyed or armed again from here.
    virtual void on_deadline(Why why) = 0;

   private:
    friend class DeadlineList;
    DeadlineList* list_ = nullptr;
    Entry* prev_ = nullptr;
    Entry* next_ = nullptr;
    Clock::time_point due_{};
  };

  DeadlineList() = default;
  DeadlineList(const DeadlineList&) = delete;
  DeadlineList& operator=(const DeadlineList&) = delete;
  ~DeadlineList();

  // Links `e` (moving it if armed) due at `due`. O(1) when `due` is the latest, as it is when
  // every deadline is now + one timeout.
  void arm(Entry& e, Clock::time_point due);
  void cancel(Entry& e);
  bool empty() const { return head_ == nullptr; }
  std::size_t size() const { return size_; }
  // The earliest deadline, if any.
  std::optional<Clock::time_point> next_due() const;
  // Unlinks up to `max` entries due at or before `now`, earliest first, and calls
  // on_deadline(kExpired) on each; returns how many.
  std::size_t expire(Clock::time_point now, std::size_t max);
  // Unlinks the entry with the earliest deadline (the oldest, with one timeout) and calls its
  // on_deadline(kEvicted); false when the list is empty.
  bool pop_oldest();

 private:
  void unlink(Entry& e);
  Entry* head_ = nullptr;
  Entry* tail_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace sigsrv
