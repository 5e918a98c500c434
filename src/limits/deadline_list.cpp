// DeadlineList: an intrusive doubly linked list kept in deadline order.
#include "limits/deadline_list.hpp"

namespace sigsrv {

DeadlineList::Entry::~Entry() {
  if (list_ != nullptr) list_->unlink(*this);
}

DeadlineList::~DeadlineList() {
  // Entries that outlive the list must not reach back into it.
  for (Entry* e = head_; e != nullptr;) {
    Entry* next = e->next_;
    e->list_ = nullptr;
    e->prev_ = e->next_ = nullptr;
    e = next;
  }
}

void DeadlineList::arm(Entry& e, Clock::time_point due) {
  if (e.list_ != nullptr) e.list_->unlink(e);
  e.list_ = this;
  e.due_ = due;
  // From the back: with one timeout for all, the new deadline is the latest.
  Entry* after = tail_;
  while (after != nullptr && after->due_ > due) after = after->prev_;
  e.prev_ = after;
  e.next_ = after != nullptr ? after->next_ : head_;
  if (e.next_ != nullptr) {
    e.next_->prev_ = &e;
  } else {
    tail_ = &e;
  }
  if (after != nullptr) {
    after->next_ = &e;
  } else {
    head_ = &e;
  }
  ++size_;
}

void DeadlineList::cancel(Entry& e) {
  if (e.list_ == this) unlink(e);
}

void DeadlineList::unlink(Entry& e) {
  if (e.prev_ != nullptr) {
    e.prev_->next_ = e.next_;
  } else {
    head_ = e.next_;
  }
  if (e.next_ != nullptr) {
    e.next_->prev_ = e.prev_;
  } else {
    tail_ = e.prev_;
  }
  e.prev_ = e.next_ = nullptr;
  e.list_ = nullptr;
  --size_;
}

std::optional<DeadlineList::Clock::time_point> DeadlineList::next_due() const {
  if (head_ == nullptr) return std::nullopt;
  return head_->due_;
}

std::size_t DeadlineList::expire(Clock::time_point now, std::size_t max) {
  std::size_t n = 0;
  while (n < max && head_ != nullptr && head_->due_ <= now) {
    Entry& e = *head_;
    unlink(e);
    ++n;
    e.on_deadline(Entry::Why::kExpired);  // last: it may destroy or re-arm the entry
  }
  return n;
}

bool DeadlineList::pop_oldest() {
  if (head_ == nullptr) return false;
  Entry& e = *head_;
  unlink(e);
  e.on_deadline(Entry::Why::kEvicted);
  return true;
}

}  // namespace sigsrv
