// HandshakeDeadlines: one timer per loop for every connection still in its handshake.
#include "net/handshake_deadlines.hpp"

#include <boost/asio/post.hpp>

namespace sigsrv {

void HandshakeDeadlines::arm(DeadlineList::Entry& e) {
  const auto now = DeadlineList::Clock::now();
  list_.arm(e, now + timeout_);
  schedule(now);
}

void HandshakeDeadlines::schedule(DeadlineList::Clock::time_point now) {
  if (sweep_posted_) return;
  const auto due = list_.next_due();
  if (!due) return;  // a timer still set fires, finds nothing due, and stops
  if (*due <= now) {
    sweep_posted_ = true;
    boost::asio::post(ioc_, [this] { sweep(); });
    return;
  }
  if (timer_set_ && timer_due_ <= *due) return;
  timer_set_ = true;
  timer_due_ = *due;
  timer_.expires_at(*due);
  timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;  // re-armed earlier (the new wait took over), or shutting down
    timer_set_ = false;
    sweep();
  });
}

void HandshakeDeadlines::sweep() {
  sweep_posted_ = false;
  const auto now = DeadlineList::Clock::now();
  list_.expire(now, kBatch);
  schedule(now);
}

}  // namespace sigsrv
