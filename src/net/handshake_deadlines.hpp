// One loop's handshake deadlines (HANDSHAKE_TIMEOUT_MS for connections still in their TLS
// handshake or HTTP request): the loop's DeadlineList and the one timer that expires it.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>

#include "limits/deadline_list.hpp"

namespace sigsrv {

class HandshakeDeadlines {
 public:
  // Connections cut per turn of the loop at most: a burst of expiries (thousands of requests
  // opened together and never finished) is spread over turns, so the loop's other work (a
  // legitimate client's join) waits for one batch, not for the whole burst. A cut costs
  // 30-40 us (the FIN goes out in the call): with 10,000 expiring together, 64 per turn still
  // let joins wait 50-120 ms, 16 about 30 ms, and 16 per turn keeps up with many times the
  // 2,000 cuts/s that 10,000 such connections and the default 5 s timeout make.
  static constexpr std::size_t kBatch = 16;

  // `list` must outlive the entries' owners (see Loop); this object must not outlive `ioc`.
  HandshakeDeadlines(boost::asio::io_context& ioc, DeadlineList& list,
                     std::chrono::milliseconds timeout)
      : ioc_(ioc), timer_(ioc), list_(list), timeout_(timeout) {}

  // Due HANDSHAKE_TIMEOUT_MS from now (re-arming moves the deadline).
  void arm(DeadlineList::Entry& e);
  void cancel(DeadlineList::Entry& e) { list_.cancel(e); }
  // Ends the oldest connection still in its handshake; false when there is none.
  bool evict_oldest() { return list_.pop_oldest(); }
  std::size_t size() const { return list_.size(); }

 private:
  // Waits for the earliest deadline, or sweeps again next turn when more are due already.
  void schedule(DeadlineList::Clock::time_point now);
  void sweep();

  boost::asio::io_context& ioc_;
  boost::asio::steady_timer timer_;
  DeadlineList& list_;
  std::chrono::milliseconds timeout_;
  bool timer_set_ = false;     // timer_ waits for timer_due_
  bool sweep_posted_ = false;  // a sweep runs next turn
  DeadlineList::Clock::time_point timer_due_{};
};

}  // namespace sigsrv
