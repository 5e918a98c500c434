// Client messages waiting for the bus' window verdict (Redis bus), in arrival order: pure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sigsrv {

// FIFO: a vector and a read index rather than std::deque, whose empty state alone allocates
// ~600 bytes, paid by every connection. Compacted once half of it is consumed, so a queue that
// never fully drains still stays bounded by what it holds.
template <class T>
class Fifo {
 public:
  bool empty() const { return head_ == items_.size(); }
  std::size_t size() const { return items_.size() - head_; }
  void push(T item) { items_.push_back(std::move(item)); }
  T& back() { return items_.back(); }
  T pop() {
    T item = std::move(items_[head_++]);
    if (head_ == items_.size()) {
      items_.clear();
      head_ = 0;
    } else if (head_ >= 64 && head_ * 2 >= items_.size()) {
      items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
    return item;
  }

 private:
  std::vector<T> items_;
  std::size_t head_ = 0;
};

// Messages waiting for their verdict, one entry per verdict asked, so that verdicts (which come
// back in the order asked) meet their messages. Bounded: past kMaxMessages or kMaxBytes waiting,
// push() refuses a message and the caller drops it without asking for a verdict (no Redis round
// trip is spent on it). A message dropped so is remembered behind the last one waiting and handed
// back with it, so the caller accounts for it in arrival order. The wait is one Redis round trip,
// bounded by the bus' reply timeout, so the bound only bites on a client that floods faster than
// Redis answers.
class VerdictQueue {
 public:
  static constexpr std::size_t kMaxMessages = 1024;
  static constexpr std::size_t kMaxBytes = 1 << 20;

  struct Waiting {
    std::string text;            // the message the verdict is for (empty: not JSON)
    uint32_t dropped_after = 0;  // messages refused after it, before the next one was kept
  };

  // False (and nothing kept) when `text` is over the bounds: drop it, ask for no verdict. It is
  // then counted in dropped_after of the last message waiting (call only when !empty(); with
  // nothing waiting there is no order to keep).
  bool push(std::string_view text) {
    if (fifo_.size() >= kMaxMessages || bytes_ + text.size() > kMaxBytes) {
      if (!fifo_.empty()) ++fifo_.back().dropped_after;
      return false;
    }
    bytes_ += text.size();
    fifo_.push(Waiting{std::string(text), 0});
    return true;
  }
  // The message the next verdict is for, with the drops that followed it. Only when !empty().
  Waiting pop() {
    Waiting w = fifo_.pop();
    bytes_ -= w.text.size();
    return w;
  }
  bool empty() const { return fifo_.empty(); }
  std::size_t size() const { return fifo_.size(); }
  std::size_t bytes() const { return bytes_; }

 private:
  Fifo<Waiting> fifo_;
  std::size_t bytes_ = 0;
};

}  // namespace sigsrv
