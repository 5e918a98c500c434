// Shared ownership of an object that belongs to one event loop: however the references travel
// (targets collected on another loop, the bus' loop, a registry), the last release runs the
// destructor on the owner loop's thread. Each loop's io_context runs without locking
// (concurrency hint 1), so a socket or timer torn down from another thread would race the loop.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <memory>
#include <utility>

namespace sigsrv {

template <class T, class... Args>
std::shared_ptr<T> make_loop_owned(boost::asio::io_context& ioc, Args&&... args) {
  return std::shared_ptr<T>(new T(std::forward<Args>(args)...), [&ioc](T* p) {
    if (ioc.get_executor().running_in_this_thread()) {
      delete p;
      return;
    }
    // Never run if the loop has stopped for good (the process is exiting): then it is not freed.
    boost::asio::post(ioc, [p] { delete p; });
  });
}

}  // namespace sigsrv
