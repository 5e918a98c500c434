// OpenFdSampler: a scrape reads the sampler's count, which follows the descriptors opened.
#include "obs/process_stats.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <vector>

namespace sigsrv {
namespace {

using namespace std::chrono_literals;

// Reads until `pred` holds or 5 s pass.
template <class Pred>
bool eventually(Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

TEST(OpenFdSampler, ScrapesReadTheSamplersCountWhichFollowsTheDescriptors) {
  const double before = read_process_stats().open_fds;
  EXPECT_GT(before, 0);
  std::vector<int> fds;
  {
    const OpenFdSampler sampler(10ms);
    for (int i = 0; i < 50; ++i) {
      int p[2];
      ASSERT_EQ(::pipe(p), 0);
      fds.insert(fds.end(), {p[0], p[1]});
    }
    EXPECT_TRUE(eventually([&] { return read_process_stats().open_fds >= before + 100; }))
        << read_process_stats().open_fds;
    for (int fd : fds) ::close(fd);
    EXPECT_TRUE(eventually([&] { return read_process_stats().open_fds < before + 100; }));
  }
  // No sampler: counted on the spot again (the sampler's thread is gone too).
  EXPECT_LE(read_process_stats().open_fds, before + 1);
}

}  // namespace
}  // namespace sigsrv
