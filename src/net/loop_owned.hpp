// Shared ownership of an object that belongs to one event loop: however the references travel
// (targets collected on another loop, the bus' loop, a registry), the last release runs the
// destructor on the owner loop's thread. Each loop's io_context runs without locking
// (concurrency hint 1), so a socket or timer torn down from another thread would race the loop.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <memory>
#include <utility>

namespace sigsrv {

// Set once every loop has stopped for good and its thread has ended (main.cpp, when the process
// exits): nothing runs concurrently any more, so a release on any thread frees at once. Before
// that, a release posted to a loop that never runs again would never be freed.
inline std::atomic<bool> g_loops_finished{false};
inline bool loops_finished() {
  return g_loops_finished.load(std::memory_order_acquire);
}
inline void mark_loops_finished() {
  g_loops_finished.store(true, std::memory_order_release);
}

template <class T, class... Args>
std::shared_ptr<T> make_loop_owned(boost::asio::io_context& ioc, Args&&... args) {
  return std::shared_ptr<T>(new T(std::forward<Args>(args)...), [&ioc](T* p) {
    // The flag first: once the loops are finished, `ioc` may be gone.
    if (loops_finished() || ioc.get_executor().running_in_this_thread()) {
      delete p;
      return;
    }
    boost::asio::post(ioc, [p] { delete p; });
  });
}

}  // namespace sigsrv
