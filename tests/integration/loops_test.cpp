// Connections are spread over the loops round-robin, also when they arrive one at a time.
#include <gtest/gtest.h>
#include <unistd.h>

#include <climits>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "admission.hpp"
#include "harness.hpp"
#include "ws_client.hpp"

using namespace testing_support;

namespace {

// Per epoll instance of `pid` (one per loop's io_context), the sockets registered with it.
std::vector<std::size_t> sockets_per_epoll(pid_t pid) {
  const std::string proc = "/proc/" + std::to_string(pid);
  std::set<int> sockets;
  std::vector<int> epolls;
  for (const auto& entry : std::filesystem::directory_iterator(proc + "/fd")) {
    char target[PATH_MAX];
    const ssize_t n = readlink(entry.path().c_str(), target, sizeof(target) - 1);
    if (n <= 0) continue;
    const std::string link(target, static_cast<std::size_t>(n));
    const int fd = std::stoi(entry.path().filename().string());
    if (link.rfind("socket:", 0) == 0) sockets.insert(fd);
    if (link == "anon_inode:[eventpoll]") epolls.push_back(fd);
  }
  std::vector<std::size_t> out;
  for (int e : epolls) {
    std::ifstream info(proc + "/fdinfo/" + std::to_string(e));
    std::string line;
    std::size_t count = 0;
    while (std::getline(info, line)) {
      std::istringstream words(line);
      std::string key;
      int fd = -1;
      if (words >> key >> fd && key == "tfd:" && sockets.count(fd)) ++count;
    }
    out.push_back(count);
  }
  return out;
}

TEST(Loops, ConnectionsArrivingOneAtATimeAreSpreadOverEveryLoop) {
  auto server = ServerProcess::start(relaxed_limits({{"THREADS", "4"}}));
  ASSERT_TRUE(server);
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int i = 0; i < 40; ++i) {
    std::string err;
    auto c = WsClient::connect(server->port(), "/?roomId=spread" + std::to_string(i), {}, &err);
    ASSERT_TRUE(c) << err;
    ASSERT_EQ(admission(*c), "admitted");  // the next one arrives once this one is in
    clients.push_back(std::move(c));
  }
  auto per_loop = sockets_per_epoll(server->pid());
  // Four loops, and loop 0 also holds the listener's socket.
  ASSERT_EQ(per_loop.size(), 4u);
  std::sort(per_loop.begin(), per_loop.end());
  EXPECT_GE(per_loop.front(), 9u) << "a loop left nearly idle";
  EXPECT_LE(per_loop.back(), 11u) << "a loop took more than its turn";
}

}  // namespace
