// Token bucket with continuous refill; the clock is passed in so tests control time.
#include "limits/token_bucket.hpp"

#include <algorithm>

namespace sigsrv {

namespace {
constexpr double kRefillWindowSeconds = 10.0;
}

TokenBucket::TokenBucket(uint32_t capacity, Clock::time_point now)
    : capacity_(capacity), tokens_(capacity), last_(now) {}

bool TokenBucket::try_take(Clock::time_point now) {
  if (now > last_) {
    const double elapsed = std::chrono::duration<double>(now - last_).count();
    tokens_ = std::min(capacity_, tokens_ + elapsed * capacity_ / kRefillWindowSeconds);
    last_ = now;
  }
  if (tokens_ < 1.0) return false;
  tokens_ -= 1.0;
  return true;
}

}  // namespace sigsrv
