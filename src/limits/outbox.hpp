// Outbound messages of one connection that its socket has not taken yet, and the backpressure
// policy on them: pure, no sockets.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "signaling/protocol.hpp"

namespace sigsrv {

// Bounded by a cap (BACKPRESSURE_CLOSE_THRESHOLD_BYTES) on unsent bytes: those queued here plus
// those the stream already holds in its write buffer. Overflow policy: the message that would
// pass the cap is refused, the outbox turns overloaded for good (every later offer is refused
// too), and its owner closes the connection with 1013 after dropping the backlog. A slow reader
// so never holds memory without bound, and nobody sending to it is ever blocked.
//
// The queue is a vector and a read index rather than std::deque, whose empty state alone costs
// hundreds of bytes on every idle connection; it empties whenever the last write completes.
class Outbox {
 public:
  enum class Offer {
    kAccepted,    // within the cap: push it (or hand it to the stream)
    kOverloaded,  // the first refusal: the owner closes the connection now
    kRefused,     // overloaded already: dropped, the close is under way
  };

  // Whether a message of `size` bytes fits beside `in_stream` unsent bytes of the stream.
  Offer offer(std::size_t size, std::size_t in_stream, std::size_t cap);
  bool overloaded() const { return overloaded_; }

  void push(SharedText message);
  // The next message to write when there is one and no write is in flight (it is then in
  // flight until end_write); null otherwise.
  const std::string* begin_write();
  void end_write();
  // Hands every queued message, in order, to `f` and empties the outbox (the stream takes over
  // the buffering). Not while a write is in flight.
  template <class F>
  void drain(F f) {
    for (std::size_t i = head_; i < queue_.size(); ++i) f(*queue_[i]);
    queue_.clear();
    head_ = 0;
    bytes_ = 0;
  }
  // Drops what was not handed to the socket yet; a write in flight finishes.
  void drop_unsent();
  std::size_t bytes() const { return bytes_; }
  std::size_t size() const { return queue_.size() - head_; }

 private:
  std::vector<SharedText> queue_;
  std::size_t head_ = 0;   // the write in flight, or the next one
  std::size_t bytes_ = 0;  // queued from head_ on
  bool writing_ = false;
  bool overloaded_ = false;
};

}  // namespace sigsrv
