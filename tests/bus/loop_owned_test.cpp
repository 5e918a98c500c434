// make_loop_owned: the last release runs the destructor on the owner loop's thread.
#include "net/loop_owned.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <future>
#include <thread>

namespace sigsrv {
namespace {

struct Recorder {
  explicit Recorder(std::promise<std::thread::id>* died) : died_(died) {}
  ~Recorder() { died_->set_value(std::this_thread::get_id()); }
  std::promise<std::thread::id>* died_;
};

TEST(LoopOwned, LastReleaseOnAnotherThreadDestroysOnTheOwnerLoop) {
  boost::asio::io_context ioc(1);
  auto work = boost::asio::make_work_guard(ioc);
  std::promise<std::thread::id> loop_id;
  std::thread loop([&] {
    loop_id.set_value(std::this_thread::get_id());
    ioc.run();
  });
  const std::thread::id owner = loop_id.get_future().get();

  std::promise<std::thread::id> died;
  auto object = make_loop_owned<Recorder>(ioc, &died);
  object.reset();  // the last reference, dropped here (not the loop's thread)
  auto when = died.get_future();
  ASSERT_EQ(when.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_EQ(when.get(), owner);
  EXPECT_NE(owner, std::this_thread::get_id());

  // Released on the loop itself: destroyed at once, before the releasing handler returns.
  std::promise<std::thread::id> died_inline;
  auto local = make_loop_owned<Recorder>(ioc, &died_inline);
  std::promise<bool> gone_before_return;
  boost::asio::post(ioc, [&local, &died_inline, &gone_before_return] {
    local.reset();
    gone_before_return.set_value(died_inline.get_future().wait_for(std::chrono::seconds(0)) ==
                                 std::future_status::ready);
  });
  EXPECT_TRUE(gone_before_return.get_future().get());
  work.reset();
  loop.join();
}

}  // namespace
}  // namespace sigsrv
