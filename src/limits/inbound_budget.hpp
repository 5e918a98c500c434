// Bytes posted to a connection from other threads and not yet taken by its loop: pure, atomics.
#pragma once

#include <atomic>
#include <cstddef>

namespace sigsrv {

// A message for a connection on another loop waits in that loop's queue until the loop runs it;
// a loop that falls behind would let those wait without bound. So each post reserves its bytes
// here first, against the connection's backpressure budget (BACKPRESSURE_CLOSE_THRESHOLD_BYTES)
// together with what the connection last reported unsent. Overflow policy, as for the outbox:
// the post that would pass the budget is not made, the first such refusal has the connection
// closed with 1013 (kOverloaded), and every later post is refused (kRefused) while that close
// runs. Reservations come from any thread; set_unsent() from the connection's loop only.
class InboundBudget {
 public:
  enum class Reserve { kReserved, kOverloaded, kRefused };

  Reserve reserve(std::size_t n, std::size_t cap) {
    if (overloaded_.load(std::memory_order_relaxed)) return Reserve::kRefused;
    const std::size_t before = inbound_.fetch_add(n, std::memory_order_relaxed);
    if (before + n + unsent_.load(std::memory_order_relaxed) <= cap) return Reserve::kReserved;
    inbound_.fetch_sub(n, std::memory_order_relaxed);
    return overloaded_.exchange(true) ? Reserve::kRefused : Reserve::kOverloaded;
  }
  // The loop took a reserved message (delivered, or dropped).
  void release(std::size_t n) { inbound_.fetch_sub(n, std::memory_order_relaxed); }
  // What the connection holds unsent now (its queue and its stream's buffer).
  void set_unsent(std::size_t n) { unsent_.store(n, std::memory_order_relaxed); }
  std::size_t inbound() const { return inbound_.load(std::memory_order_relaxed); }
  // A peer that outlives its socket (a resumable member) takes posts again once a new socket
  // is attached.
  void clear_overload() { overloaded_.store(false, std::memory_order_relaxed); }

 private:
  std::atomic<std::size_t> inbound_{0};
  std::atomic<std::size_t> unsent_{0};
  std::atomic<bool> overloaded_{false};
};

}  // namespace sigsrv
