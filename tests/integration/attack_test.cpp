// Admission under attack, scaled down for CI: connections that never finish their HTTP request
// and upgraded clients that never read must not keep legitimate clients out; the handshake
// timeout cuts the first, backpressure the second, and MAX_CONNECTIONS bounds both.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "admission.hpp"
#include "harness.hpp"
#include "ws_client.hpp"

using namespace testing_support;

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kPeerDisconnected = R"({"type":"peer-disconnected"})";

// Every connection of these tests is a descriptor here; the default soft limit (1024) is close.
void raise_open_files_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// A TCP connection that sends the start of an upgrade request and never finishes it.
class HalfOpen {
 public:
  static std::unique_ptr<HalfOpen> open(uint16_t port, const std::string& room) {
    std::unique_ptr<HalfOpen> h(new HalfOpen());
    h->fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (h->fd_ < 0) return nullptr;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(h->fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return nullptr;
    // No blank line after the headers: the request never ends.
    const std::string partial = "GET /?roomId=" + room +
                                " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                                "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    if (::send(h->fd_, partial.data(), partial.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(partial.size())) {
      return nullptr;
    }
    return h;
  }
  ~HalfOpen() {
    if (fd_ >= 0) ::close(fd_);
  }
  // True once the server has ended the connection (EOF or reset), waiting up to `timeout`.
  bool wait_closed(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!closed_) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left < 0) return false;
      pollfd p{fd_, POLLIN, 0};
      const int r = ::poll(&p, 1, static_cast<int>(left));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      char buf[512];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0 && !(n < 0 && errno == EINTR)) closed_ = true;
    }
    return true;
  }
  bool closed_now() { return wait_closed(0ms); }

 private:
  HalfOpen() = default;
  int fd_ = -1;
  bool closed_ = false;
};

std::vector<std::unique_ptr<HalfOpen>> open_half(uint16_t port, int n, const std::string& tag) {
  std::vector<std::unique_ptr<HalfOpen>> out;
  for (int i = 0; i < n; ++i) {
    auto h = HalfOpen::open(port, tag + std::to_string(i));
    EXPECT_TRUE(h) << "half-open connection " << i << " failed";
    if (!h) break;
    out.push_back(std::move(h));
  }
  return out;
}

// Waits until the metric's sample satisfies `pred` (each scrape is a connection of its own).
bool wait_metric(uint16_t port, const std::string& sample, const std::function<bool(double)>& pred,
                 std::chrono::milliseconds timeout) {
  return wait_until(
      [&] {
        const auto v = scrape(port, sample);
        return v && pred(*v);
      },
      timeout);
}

std::string candidate_of_size(std::size_t total) {
  const std::string head = R"({"type":"candidate","candidate":")";
  const std::string tail = R"("})";
  return head + std::string(total - head.size() - tail.size(), 'x') + tail;
}

// A pair joins a fresh room and relays one message each way; "" when it did, else what failed.
std::string join_and_relay(uint16_t port, const std::string& room) {
  std::string err;
  auto a = WsClient::connect(port, "/?roomId=" + room, {}, &err);
  if (!a) return "a: " + err;
  auto b = WsClient::connect(port, "/?roomId=" + room, {}, &err);
  if (!b) return "b: " + err;
  const std::string offer = R"({"type":"offer","sdp":")" + room + R"("})";
  const std::string answer = R"({"type":"answer","sdp":")" + room + R"("})";
  a->send(offer);
  if (b->recv(5000ms) != offer) return "b did not get the offer";
  b->send(answer);
  if (a->recv(5000ms) != answer) return "a did not get the answer";
  a->close();
  b->close();
  return {};
}

}  // namespace

// 300 requests that never end and 10 upgraded members that never read, each with a partner
// sending to it, are in place; legitimate pairs join and relay all the same. Then the handshake
// timeout cuts every half-open connection and backpressure closes every stuck reader.
TEST(AttackAdmission, LegitimateClientsJoinWhileHalfOpenAndStuckConnectionsHold) {
  raise_open_files_limit();
  constexpr int kHalfOpen = 300;
  constexpr int kStuck = 10;
  constexpr int kLegitPairs = 20;
  auto server =
      ServerProcess::start(relaxed_limits({{"HANDSHAKE_TIMEOUT_MS", "4000"},
                                           {"BACKPRESSURE_CLOSE_THRESHOLD_BYTES", "65536"},
                                           {"ROOM_CAPACITY", "2"}}));
  ASSERT_TRUE(server);
  const uint16_t port = server->port();

  auto half = open_half(port, kHalfOpen, "half-");
  ASSERT_EQ(half.size(), static_cast<std::size_t>(kHalfOpen));
  // The server holds them all (the scrape itself is one more connection in its HTTP phase).
  EXPECT_TRUE(wait_metric(
      port, "cloudgaming_pending_handshakes", [](double v) { return v >= kHalfOpen; }, 10000ms))
      << scrape(port, "cloudgaming_pending_handshakes").value_or(-1);

  // Stuck members: a small receive window and no reads after the upgrade.
  std::vector<std::unique_ptr<WsClient>> stuck, partners;
  ConnectOptions slow;
  slow.receive_buffer_bytes = 4096;
  for (int i = 0; i < kStuck; ++i) {
    std::string err;
    auto s = WsClient::connect(port, "/?roomId=stuck-" + std::to_string(i), slow, &err);
    ASSERT_TRUE(s) << err;
    auto p = WsClient::connect(port, "/?roomId=stuck-" + std::to_string(i), {}, &err);
    ASSERT_TRUE(p) << err;
    stuck.push_back(std::move(s));
    partners.push_back(std::move(p));
  }

  // Each partner sends 1 MB at a time until it hears its stuck peer left: the kernel's socket
  // buffers take the first megabytes, then the server's queue passes the 64 KB threshold and
  // the stuck member is closed for backpressure (its peer is told at once).
  const std::vector<std::string> chunk(20, candidate_of_size(50000));
  std::vector<bool> heard(kStuck, false);
  int rounds = 0;
  for (; rounds < 40 && std::count(heard.begin(), heard.end(), false) > 0; ++rounds) {
    for (int i = 0; i < kStuck; ++i) {
      if (!heard[i]) partners[i]->send_all(chunk);
    }
    if (rounds == 0) {
      // Legitimate pairs, with the stuck members' queues filling.
      const auto legit_start = Clock::now();
      for (int i = 0; i < kLegitPairs; ++i) {
        EXPECT_EQ(join_and_relay(port, "legit-" + std::to_string(i)), "") << "pair " << i;
      }
      const auto legit_ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - legit_start).count();
      std::printf("[          ] %d legitimate pairs joined and relayed in %lld ms under attack\n",
                  kLegitPairs, static_cast<long long>(legit_ms));
    }
    for (int i = 0; i < kStuck; ++i) {
      if (!heard[i] && partners[i]->recv(rounds == 0 ? 200ms : 20ms) == kPeerDisconnected) {
        heard[i] = true;
      }
    }
  }
  std::printf("[          ] stuck readers closed after %d MB sent to each\n", rounds);
  EXPECT_EQ(std::count(heard.begin(), heard.end(), false), 0);
  EXPECT_TRUE(wait_metric(
      port, "cloudgaming_backpressure_closes_total", [](double v) { return v >= kStuck; }, 10000ms))
      << scrape(port, "cloudgaming_backpressure_closes_total").value_or(-1);
  // Every half-open connection is cut by the handshake timeout (4 s after it was accepted).
  for (std::size_t i = 0; i < half.size(); ++i) {
    EXPECT_TRUE(half[i]->wait_closed(15000ms)) << "half-open connection " << i << " still open";
  }
  EXPECT_TRUE(wait_metric(
      port, "cloudgaming_handshake_timeouts_total", [](double v) { return v >= kHalfOpen; },
      5000ms));
  EXPECT_TRUE(wait_metric(
      port, "cloudgaming_pending_handshakes", [](double v) { return v <= 1; }, 5000ms));
  // And the server still admits.
  stuck.clear();
  partners.clear();
  EXPECT_EQ(join_and_relay(port, "after"), "");
  EXPECT_EQ(server->stop(SIGTERM), 0);
}

// MAX_CONNECTIONS bounds the connections still in their HTTP request as it bounds WebSocket
// connections: past it the oldest such request is closed to make room, so a flood of them
// never keeps a client that sends its request out; WebSocket connections past it are refused
// with 1013, and a client gets in again once a slot is free.
TEST(AttackAdmission, MaxConnectionsBoundsHalfOpenRequestsAndRefusesExtraWebSockets) {
  raise_open_files_limit();
  constexpr int kCap = 20;
  // A handshake timeout far longer than the test: only eviction closes half-open connections.
  auto server = ServerProcess::start(relaxed_limits({{"MAX_CONNECTIONS", std::to_string(kCap)},
                                                     {"HANDSHAKE_TIMEOUT_MS", "60000"},
                                                     {"THREADS", "1"}}));
  ASSERT_TRUE(server);
  const uint16_t port = server->port();

  // 5 x the cap: the 80 oldest are closed as the newer ones arrive.
  auto half = open_half(port, 5 * kCap, "flood-");
  ASSERT_EQ(half.size(), static_cast<std::size_t>(5 * kCap));
  for (int i = 0; i < 4 * kCap; ++i) {
    EXPECT_TRUE(half[i]->wait_closed(10000ms)) << "half-open connection " << i << " still open";
  }
  EXPECT_TRUE(wait_metric(
      port, "cloudgaming_handshake_evictions_total", [](double v) { return v >= 4 * kCap; },
      5000ms));
  EXPECT_LE(scrape(port, "cloudgaming_pending_handshakes").value_or(1e9), kCap);
  EXPECT_EQ(scrape(port, "cloudgaming_handshake_timeouts_total"), 0.0);

  // With the half-open ones at the cap, clients that send their request still get in: up to
  // the cap of WebSocket connections, each evicting the oldest half-open request.
  std::vector<std::unique_ptr<WsClient>> members;
  for (int i = 0; i < kCap; ++i) {
    std::string err;
    auto c = WsClient::connect(port, "/?roomId=cap-" + std::to_string(i), {}, &err);
    ASSERT_TRUE(c) << err;
    ASSERT_EQ(admission(*c), "admitted") << "member " << i;
    members.push_back(std::move(c));
  }
  // One more WebSocket connection is refused, with the documented code.
  {
    std::string err;
    auto extra = WsClient::connect(port, "/?roomId=cap-extra", {}, &err);
    ASSERT_TRUE(extra) << err;
    EXPECT_EQ(admission(*extra), "close 1013 'Server at capacity'");
  }
  // A slot frees: a client gets in again.
  members.front()->close();
  members.erase(members.begin());
  std::unique_ptr<WsClient> next;
  EXPECT_TRUE(wait_until(
      [&] {
        next = WsClient::connect(port, "/?roomId=cap-next");
        return next && admission(*next) == "admitted";
      },
      10000ms));
  members.clear();
  next.reset();
  EXPECT_EQ(server->stop(SIGTERM), 0);
}

// A request that grows past the 16 KB header cap without ever ending is answered 431 and
// closed: a half-open request holds at most that much of the server's memory.
TEST(AttackAdmission, EndlessHeaderIsRefusedAt16KB) {
  auto server = ServerProcess::start(relaxed_limits());
  ASSERT_TRUE(server);
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(server->port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string head = "GET /?roomId=big HTTP/1.1\r\nHost: x\r\nX-Pad: ";
  const std::string pad(64 * 1024, 'p');  // one header line, never ended
  ::send(fd, head.data(), head.size(), MSG_NOSIGNAL);
  ::send(fd, pad.data(), pad.size(), MSG_NOSIGNAL);
  std::string answer;
  const auto deadline = Clock::now() + 5s;
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[1024];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    answer.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  EXPECT_EQ(answer.rfind("HTTP/1.1 431", 0), 0u) << answer.substr(0, 80);
}

// The bench's attack mode runs end to end (small, so that CI can afford it; its latency budget
// is loose here: this box is shared).
TEST(AttackAdmission, BenchAttackModeReportsJoinsAndServerMemory) {
  raise_open_files_limit();
  auto server = ServerProcess::start(relaxed_limits(
      {{"HANDSHAKE_TIMEOUT_MS", "1000"}, {"BACKPRESSURE_CLOSE_THRESHOLD_BYTES", "65536"}}));
  ASSERT_TRUE(server);
  const std::string cmd =
      std::string("timeout 60 ") + SIGNAL_BENCH_BIN +
      " attack --url ws://127.0.0.1:" + std::to_string(server->port()) +
      " --half-open 200 --stuck 20 --stuck-msg-bytes 16384 --stuck-rate 4 --duration 2"
      " --legit-rate 20 --max-p99-ms 5000 --ramp-timeout 20 --pid " +
      std::to_string(server->pid()) + " 2>/dev/null";
  FILE* f = popen(cmd.c_str(), "r");
  ASSERT_NE(f, nullptr);
  std::string out;
  char buf[4096];
  while (fgets(buf, sizeof(buf), f) != nullptr) out += buf;
  const int status = pclose(f);
  ASSERT_TRUE(WIFEXITED(status)) << out;
  EXPECT_EQ(WEXITSTATUS(status), 0) << out;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  const std::string last =
      out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
  boost::json::error_code ec;
  const auto v = boost::json::parse(last, ec);
  ASSERT_FALSE(ec) << out;
  const auto& r = v.as_object();
  EXPECT_EQ(r.at("mode").as_string(), "attack");
  EXPECT_GT(r.at("legit").at("joined_pairs").as_int64(), 0);
  EXPECT_EQ(r.at("legit").at("failed_pairs").as_int64(), 0);
  EXPECT_GT(r.at("legit").at("join_us").at("p50").as_int64(), 0);
  EXPECT_GT(r.at("server").at("rss_kb_peak").as_int64(), 0);
  EXPECT_GT(r.at("server").at("rss_bytes_per_half_open").to_number<double>(), 0);
  // The 1 s handshake timeout cut the half-open connections, which the bench re-opened.
  EXPECT_GT(r.at("metrics").at("handshake_timeouts").to_number<double>(), 0);
  EXPECT_GT(r.at("attack").at("half_open_cut").as_int64(), 0);
  EXPECT_EQ(server->stop(SIGTERM), 0);
}
