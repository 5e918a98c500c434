// Client messages waiting for the bus' window verdict (Redis bus), in arrival order: pure.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace sigsrv {

// FIFO of message texts: a vector and a read index rather than std::deque, whose empty state
// alone allocates ~600 bytes, paid by every connection. Compacted once half of it is consumed,
// so a queue that never fully drains still stays bounded by what it holds.
class TextFifo {
 public:
  bool empty() const { return head_ == items_.size(); }
  std::size_t size() const { return items_.size() - head_; }
  void push(std::string_view text) { items_.emplace_back(text); }
  std::string pop() {
    std::string text = std::move(items_[head_++]);
    if (head_ == items_.size()) {
      items_.clear();
      head_ = 0;
    } else if (head_ >= 64 && head_ * 2 >= items_.size()) {
      items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
    return text;
  }

 private:
  std::vector<std::string> items_;
  std::size_t head_ = 0;
};

// One entry per verdict asked, so that verdicts (which come back in the order asked) meet their
// messages. Bounded: past kMaxMessages or kMaxBytes waiting, a message is not kept; an empty
// placeholder takes its place so the next verdict still meets the right message. pop() returns
// an empty text for it (and for a message that was itself empty, which is dropped alike: it is
// not JSON). The wait is one Redis round trip, bounded by the bus' reply timeout, so the bound
// only bites on a client that floods faster than Redis answers.
class VerdictQueue {
 public:
  static constexpr std::size_t kMaxMessages = 1024;
  static constexpr std::size_t kMaxBytes = 1 << 20;

  // False when `text` is over the bounds: a placeholder waits for its verdict instead.
  bool push(std::string_view text) {
    if (fifo_.size() >= kMaxMessages || bytes_ + text.size() > kMaxBytes) {
      fifo_.push({});
      return false;
    }
    bytes_ += text.size();
    fifo_.push(text);
    return true;
  }
  // The message the next verdict is for; empty: nothing to relay. Call only when !empty().
  std::string pop() {
    std::string text = fifo_.pop();
    bytes_ -= text.size();
    return text;
  }
  bool empty() const { return fifo_.empty(); }
  std::size_t size() const { return fifo_.size(); }
  std::size_t bytes() const { return bytes_; }

 private:
  TextFifo fifo_;
  std::size_t bytes_ = 0;
};

}  // namespace sigsrv
