// Where connections live: accepted round-robin over the loops (also when they arrive one at a
// time); an upgrade naming a room then moves to that room's loop, so both members of a room share
// one.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "admission.hpp"
#include "harness.hpp"
#include "loop_census.hpp"
#include "ws_client.hpp"

using namespace testing_support;

namespace {

// A keep-alive HTTP connection that asked for /healthz, got its answer and stays open: a
// connection that names no room, so it stays on the loop that accepted it.
class HttpKeepAlive {
 public:
  static std::unique_ptr<HttpKeepAlive> open(uint16_t port) {
    std::unique_ptr<HttpKeepAlive> h(new HttpKeepAlive());
    h->fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (h->fd_ < 0) return nullptr;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(h->fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return nullptr;
    const std::string request = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    if (::send(h->fd_, request.data(), request.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request.size())) {
      return nullptr;
    }
    // The answer's head: the server has accepted the connection and holds it on a loop.
    std::string in;
    while (in.find("\r\n\r\n") == std::string::npos) {
      pollfd p{h->fd_, POLLIN, 0};
      if (::poll(&p, 1, 5000) <= 0) return nullptr;
      char buf[512];
      const ssize_t n = ::recv(h->fd_, buf, sizeof buf, 0);
      if (n <= 0) return nullptr;
      in.append(buf, static_cast<std::size_t>(n));
    }
    if (in.rfind("HTTP/1.1 200", 0) != 0) return nullptr;
    return h;
  }
  ~HttpKeepAlive() {
    if (fd_ >= 0) ::close(fd_);
  }
  HttpKeepAlive(const HttpKeepAlive&) = delete;
  HttpKeepAlive& operator=(const HttpKeepAlive&) = delete;

 private:
  HttpKeepAlive() = default;
  int fd_ = -1;
};

TEST(Loops, ConnectionsArrivingOneAtATimeAreSpreadOverEveryLoop) {
  // Connections that name no room (here: HTTP keep-alive) stay where the listener put them.
  auto server =
      ServerProcess::start(relaxed_limits({{"THREADS", "4"}, {"HANDSHAKE_TIMEOUT_MS", "60000"}}));
  ASSERT_TRUE(server);
  std::vector<std::unique_ptr<HttpKeepAlive>> clients;
  for (int i = 0; i < 40; ++i) {
    auto c = HttpKeepAlive::open(server->port());  // the next one arrives once this one is in
    ASSERT_TRUE(c) << "connection " << i;
    clients.push_back(std::move(c));
  }
  auto per_loop = sockets_per_loop(server->pid());
  // Four loops, and loop 0 also holds the listener's socket.
  ASSERT_EQ(per_loop.size(), 4u);
  std::sort(per_loop.begin(), per_loop.end());
  EXPECT_GE(per_loop.front(), 9u) << "a loop left nearly idle";
  EXPECT_LE(per_loop.back(), 11u) << "a loop took more than its turn";
}

TEST(Loops, BothMembersOfEveryRoomShareALoopAndRoomsSpreadOverEveryLoop) {
  auto server = ServerProcess::start(relaxed_limits({{"THREADS", "4"}}));
  ASSERT_TRUE(server);
  // Members arrive one at a time, so the listener's round-robin alone would put every room's
  // second member on the loop after its first's.
  constexpr int kRooms = 24;
  std::vector<std::unique_ptr<WsClient>> clients;
  std::map<int, int> rooms_per_loop;
  for (int loop : census(server->pid()).loops) rooms_per_loop[loop] = 0;
  ASSERT_EQ(rooms_per_loop.size(), 4u);
  for (int i = 0; i < kRooms; ++i) {
    const std::string room = "pair" + std::to_string(i);
    const auto before = census(server->pid()).socket_loop;
    for (int m = 0; m < 2; ++m) {
      std::string err;
      auto c = WsClient::connect(server->port(), "/?roomId=" + room, {}, &err);
      ASSERT_TRUE(c) << err;
      ASSERT_EQ(admission(*c), "admitted") << room;
      clients.push_back(std::move(c));
    }
    std::set<int> loops;
    int added = 0;
    for (const auto& [fd, loop] : census(server->pid()).socket_loop) {
      if (before.count(fd)) continue;
      ++added;
      loops.insert(loop);
    }
    ASSERT_EQ(added, 2) << room << ": the census should see its two members' sockets";
    EXPECT_EQ(loops.size(), 1u) << room << ": its members sit on different loops";
    ++rooms_per_loop[*loops.begin()];
  }
  for (const auto& [loop, rooms] : rooms_per_loop) {
    EXPECT_GE(rooms, 1) << "a loop got no room (epoll fd " << loop << ")";
  }
  // And they still talk to each other, on their loop.
  clients[0]->send(R"({"type":"offer","sdp":"v=0"})");
  const auto got = clients[1]->recv();
  ASSERT_TRUE(got);
  EXPECT_NE(got->find("offer"), std::string::npos) << *got;
}

}  // namespace
