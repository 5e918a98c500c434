// Per-connection message bucket: `capacity` tokens refilled continuously over 10 s.
#pragma once

#include <chrono>
#include <cstdint>

namespace sigsrv {

using Clock = std::chrono::steady_clock;

class TokenBucket {
 public:
  TokenBucket(uint32_t capacity, Clock::time_point now);
  // Takes a token if one is available; false = drop the message.
  bool try_take(Clock::time_point now);
  double tokens() const { return tokens_; }

 private:
  double capacity_;
  double tokens_;
  Clock::time_point last_;
};

}  // namespace sigsrv
