// Lifecycle: heartbeat, backpressure, message size, drain, HEALTH_PORT, metrics and HTTP.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <future>
#include <thread>

#include "harness.hpp"
#include "ws_client.hpp"

using namespace testing_support;

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kPeerDisconnected = R"({"type":"peer-disconnected"})";

// A valid candidate message exactly `total` bytes long.
std::string candidate_of_size(std::size_t total, char fill = 'x') {
  const std::string head = R"({"type":"candidate","candidate":")";
  const std::string tail = R"("})";
  return head + std::string(total - head.size() - tail.size(), fill) + tail;
}

std::string candidate(const std::string& text) {
  return R"({"type":"candidate","candidate":")" + text + R"("})";
}

// Waits for the process to exit on its own: signal 0 only checks that it exists.
int wait_for_exit(ServerProcess& server, std::chrono::milliseconds timeout) {
  return server.stop(0, timeout);
}

long long ms_since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

bool metric_is(uint16_t port, const std::string& sample, double expected,
               std::chrono::milliseconds timeout = 3000ms) {
  return wait_until([&] { return scrape(port, sample) == expected; }, timeout);
}

// Disconnects the clients (no close handshake to wait for), then SIGTERM: the drain is immediate.
template <class... Clients>
int stop_after_disconnect(ServerProcess& server, Clients&... clients) {
  (clients.reset(), ...);
  return server.stop(SIGTERM);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Heartbeat

TEST(LifecycleHeartbeat, ClientThatNeverAnswersPingsIsTerminated) {
  auto server = ServerProcess::start(relaxed_limits({{"HEARTBEAT_INTERVAL_MS", "200"}}));
  ASSERT_TRUE(server);
  auto a = join(server->port(), "hb");
  auto silent = join(server->port(), "hb");
  ASSERT_TRUE(a && silent);
  // From here on `silent` is not read from, so it answers no ping; `a` reads while it waits.
  const auto start = Clock::now();
  // Nominal: within two intervals (400 ms); the deadline allows a loaded machine.
  EXPECT_EQ(a->recv(5000ms), kPeerDisconnected) << "after " << ms_since(start) << " ms\n"
                                                << server->output();
  EXPECT_EQ(scrape(server->port(), "cloudgaming_heartbeat_terminations_total"), 1.0);
  // The server cut the socket without a close frame.
  auto closed = silent->wait_close(2000ms);
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->code, 1006) << closed->reason;
  // `a` answered every ping and is still a working member, told of the departure once: its next
  // message is a newcomer's.
  auto c = join(server->port(), "hb");
  ASSERT_TRUE(c);
  c->send(R"({"type":"offer","sdp":"after"})");
  EXPECT_EQ(a->recv(), R"({"type":"offer","sdp":"after"})");
  EXPECT_EQ(scrape(server->port(), "cloudgaming_heartbeat_terminations_total"), 1.0);
  EXPECT_EQ(stop_after_disconnect(*server, a, silent, c), 0);
}

TEST(LifecycleHeartbeat, EverySessionOfALoopIsPingedThoughTheRoundIsSliced) {
  // One loop with more sessions than one heartbeat slice pings at a time (128): the later slices
  // are walked too, and rounds go on while sessions leave between slices.
  auto server =
      ServerProcess::start(relaxed_limits({{"HEARTBEAT_INTERVAL_MS", "300"}, {"THREADS", "1"}}));
  ASSERT_TRUE(server);
  constexpr int kSilent = 300;
  std::vector<std::unique_ptr<WsClient>> silent;
  for (int i = 0; i < kSilent; ++i) {
    silent.push_back(join(server->port(), "slice-" + std::to_string(i)));
    ASSERT_TRUE(silent.back());
  }
  auto k = join(server->port(), "slice-reader");
  ASSERT_TRUE(k);
  // Every silent session is cut, whichever slice it sits in, while the reading one (moved about
  // as the others leave) answers a ping each round and is never cut.
  const auto deadline = Clock::now() + 20s;
  while (scrape(server->port(), "cloudgaming_heartbeat_terminations_total") != double{kSilent} &&
         Clock::now() < deadline) {
    ASSERT_TRUE(k->wait_pings(1)) << "the reading session was cut";
  }
  EXPECT_EQ(scrape(server->port(), "cloudgaming_heartbeat_terminations_total"), double{kSilent});
  ASSERT_TRUE(k->wait_pings(3));
  EXPECT_EQ(scrape(server->port(), "cloudgaming_heartbeat_terminations_total"), double{kSilent});
  EXPECT_EQ(scrape(server->port(), "cloudgaming_active_connections"), 1.0);
  silent.clear();
  EXPECT_EQ(stop_after_disconnect(*server, k), 0);
}

TEST(LifecycleHeartbeat, ClientThatKeepsReadingStaysConnectedAcrossIntervals) {
  auto server = ServerProcess::start(relaxed_limits({{"HEARTBEAT_INTERVAL_MS", "200"}}));
  ASSERT_TRUE(server);
  auto k = join(server->port(), "alive");
  ASSERT_TRUE(k);
  // Reading (and so answering pings) across six heartbeat intervals: a reading client is never
  // terminated. Counted in pings, not in time.
  const auto start = Clock::now();
  ASSERT_TRUE(k->wait_pings(6)) << "closed after " << ms_since(start) << " ms";
  EXPECT_EQ(scrape(server->port(), "cloudgaming_heartbeat_terminations_total"), 0.0);
  EXPECT_EQ(scrape(server->port(), "cloudgaming_active_connections"), 1.0);
  auto peer = join(server->port(), "alive");
  ASSERT_TRUE(peer);
  // Still a member, and nothing reached it meanwhile: its first message is the peer's.
  peer->send(R"({"type":"offer","sdp":"still-here"})");
  EXPECT_EQ(k->recv(), R"({"type":"offer","sdp":"still-here"})");
  EXPECT_EQ(stop_after_disconnect(*server, k, peer), 0);
}

// ---------------------------------------------------------------------------------------------
// Backpressure

TEST(LifecycleBackpressure, SlowReaderIsClosedWith1013AndTheSenderIsNeverBlocked) {
  auto server =
      ServerProcess::start(relaxed_limits({{"BACKPRESSURE_CLOSE_THRESHOLD_BYTES", "65536"}}));
  ASSERT_TRUE(server);
  auto a = join(server->port(), "bp");
  ConnectOptions slow;
  slow.receive_buffer_bytes = 4096;
  auto b = join(server->port(), "bp", {}, slow);
  ASSERT_TRUE(a && b);
  // B stops reading now. A writes 400 x 50 KB (20 MB): far more than the socket buffers between
  // the server and B can hold, so B's unsent data must pass the threshold.
  const std::vector<std::string> burst(400, candidate_of_size(50000));
  const auto start = Clock::now();
  auto sending = std::async(std::launch::async, [&] { a->send_all(burst); });
  if (sending.wait_for(20s) != std::future_status::ready) {
    ADD_FAILURE() << "A's writes were blocked by the slow reader";
    server->stop(SIGKILL);  // fails A's blocked write so the sending thread returns
    sending.wait();
    return;
  }
  const auto send_ms = ms_since(start);
  EXPECT_TRUE(metric_is(server->port(), "cloudgaming_backpressure_closes_total", 1.0))
      << "sent in " << send_ms << " ms; backpressure_closes="
      << scrape(server->port(), "cloudgaming_backpressure_closes_total").value_or(-1);
  // Every one of A's messages was read (A itself was not throttled or closed); those after B's
  // close reached nobody, so they are not counted as forwarded.
  EXPECT_TRUE(metric_is(server->port(), "cloudgaming_messages_received_total", 400.0));
  EXPECT_LT(scrape(server->port(), "cloudgaming_messages_forwarded_total").value_or(400), 400.0);
  // B reads again: it drains what the kernel held, then the close frame. Observed: the close
  // frame arrives (1013), since B starts reading well within HANDSHAKE_TIMEOUT_MS (5 s) of the
  // close; later than that the server would cut the connection (1006) instead.
  auto closed = b->wait_close(10000ms);
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->code, 1013);
  EXPECT_EQ(closed->reason, "Server overloaded");
  EXPECT_EQ(a->recv(), kPeerDisconnected);
  EXPECT_EQ(scrape(server->port(), "cloudgaming_backpressure_closes_total"), 1.0);
  // A still relays to a new member, both ways; B's departure came once (A's next message after
  // it is C's answer).
  auto c = join(server->port(), "bp");
  ASSERT_TRUE(c);
  a->send(R"({"type":"offer","sdp":"to-c"})");
  EXPECT_EQ(c->recv(), R"({"type":"offer","sdp":"to-c"})");
  c->send(R"({"type":"answer","sdp":"to-a"})");
  EXPECT_EQ(a->recv(), R"({"type":"answer","sdp":"to-a"})");
  EXPECT_EQ(stop_after_disconnect(*server, a, b, c), 0);
}

// ---------------------------------------------------------------------------------------------
// MESSAGE_MAX_BYTES

namespace {

// A minimal WebSocket client on a plain socket that reports the close frame exactly as it came
// off the wire, whatever happens to the TCP connection afterwards (a Beast client reports 1006
// when its own close reply cannot be delivered, even after it received a close frame).
class WireClient {
 public:
  static std::unique_ptr<WireClient> connect(uint16_t port, const std::string& target) {
    std::unique_ptr<WireClient> c(new WireClient());
    c->fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (c->fd_ < 0 || ::connect(c->fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      return nullptr;
    }
    const std::string request = "GET " + target +
                                " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                                "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                "Sec-WebSocket-Version: 13\r\n\r\n";
    if (!c->write_all(request)) return nullptr;
    const auto deadline = Clock::now() + 5s;
    std::size_t head_end;
    while ((head_end = c->in_.find("\r\n\r\n")) == std::string::npos) {
      if (!c->read_more(deadline)) return nullptr;
    }
    if (c->in_.rfind("HTTP/1.1 101", 0) != 0) return nullptr;
    c->in_.erase(0, head_end + 4);
    return c;
  }
  ~WireClient() {
    if (fd_ >= 0) ::close(fd_);
  }

  // One masked text frame.
  bool send_text(const std::string& text) {
    std::string frame = "\x81";
    if (text.size() < 126) {
      frame += static_cast<char>(0x80 | text.size());
    } else {
      frame += static_cast<char>(0x80 | 126);
      frame += static_cast<char>((text.size() >> 8) & 0xff);
      frame += static_cast<char>(text.size() & 0xff);
    }
    const char key[4] = {0x11, 0x22, 0x33, 0x44};
    frame.append(key, 4);
    for (std::size_t i = 0; i < text.size(); ++i) frame += static_cast<char>(text[i] ^ key[i % 4]);
    return write_all(frame);
  }

  // Skips data frames until a close frame; nullopt when the connection ends or time runs out
  // without one.
  std::optional<CloseInfo> read_close(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (true) {
      if (in_.size() >= 2) {
        const auto b = [&](std::size_t i) { return static_cast<unsigned char>(in_[i]); };
        std::size_t len = b(1) & 0x7f, pos = 2;
        if (len == 126 && in_.size() >= 4) {
          len = (b(2) << 8) | b(3);
          pos = 4;
        } else if (len == 127 && in_.size() >= 10) {
          len = 0;
          for (int i = 2; i < 10; ++i) len = (len << 8) | b(i);
          pos = 10;
        }
        if (len < 126 || pos > 2) {
          if (b(1) & 0x80) pos += 4;  // servers do not mask, but tolerate it
          if (in_.size() >= pos + len) {
            if ((b(0) & 0x0f) == 0x8) {
              CloseInfo info;
              if (len >= 2) {
                info.code = (b(pos) << 8) | b(pos + 1);
                info.reason = in_.substr(pos + 2, len - 2);
              }
              return info;
            }
            in_.erase(0, pos + len);
            continue;
          }
        }
      }
      if (!read_more(deadline)) return std::nullopt;
    }
  }

 private:
  WireClient() = default;

  bool write_all(const std::string& data) {
    std::size_t sent = 0;
    while (sent < data.size()) {
      const ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<std::size_t>(n);
    }
    return true;
  }

  bool read_more(Clock::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return false;
    in_.append(buf, static_cast<std::size_t>(n));
    return true;
  }

  int fd_ = -1;
  std::string in_;
};

}  // namespace

TEST(LifecycleMessageSize, OversizedMessageClosesTheSenderWith1009AndIsNotRelayed) {
  auto server = ServerProcess::start(relaxed_limits({{"MESSAGE_MAX_BYTES", "1024"}}));
  ASSERT_TRUE(server);
  auto sender = WireClient::connect(server->port(), "/?roomId=max");
  auto b = join(server->port(), "max");
  ASSERT_TRUE(sender && b);
  const std::string small = candidate_of_size(900, 's');
  ASSERT_EQ(small.size(), 900u);
  ASSERT_TRUE(sender->send_text(small));
  EXPECT_EQ(b->recv(), small);
  const std::string big = candidate_of_size(2000, 'b');
  ASSERT_EQ(big.size(), 2000u);
  ASSERT_TRUE(sender->send_text(big));
  auto closed = sender->read_close(3000ms);
  ASSERT_TRUE(closed) << "no close frame reached the sender";
  EXPECT_EQ(closed->code, 1009) << closed->reason;
  // The next thing B hears is the sender's departure, not the big message (the sender's
  // messages all come before its departure).
  EXPECT_EQ(b->recv(), kPeerDisconnected);
  EXPECT_EQ(scrape(server->port(), "cloudgaming_messages_forwarded_total"), 1.0);
  EXPECT_EQ(scrape(server->port(), "cloudgaming_oversize_closes_total"), 1.0);
  // Nor after it: B's next message is a newcomer's marker.
  auto c = join(server->port(), "max");
  ASSERT_TRUE(c);
  c->send(R"({"type":"offer","sdp":"marker"})");
  EXPECT_EQ(b->recv(), R"({"type":"offer","sdp":"marker"})");
  EXPECT_EQ(stop_after_disconnect(*server, b, c), 0);
}

// A WebSocket library client that takes a moment to answer the close must still see a clean
// 1009 closing handshake, as with the Node server (whose `ws` waits up to 30 s for the reply).
TEST(LifecycleMessageSize, SenderThatAnswersTheCloseLateStillSeesACleanClose1009) {
  auto server = ServerProcess::start(relaxed_limits({{"MESSAGE_MAX_BYTES", "1024"}}));
  ASSERT_TRUE(server);
  auto a = join(server->port(), "max-late");
  auto b = join(server->port(), "max-late");
  ASSERT_TRUE(a && b);
  a->send(candidate_of_size(2000));
  // The client is busy for a moment before it reads again (time passing is the point here).
  std::this_thread::sleep_for(100ms);
  auto closed = a->wait_close();
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->code, 1009) << closed->reason;
  EXPECT_EQ(b->recv(), kPeerDisconnected);
  EXPECT_EQ(stop_after_disconnect(*server, b), 0);
}

// ---------------------------------------------------------------------------------------------
// Drain

namespace {

// Two reading clients in a room; `sig` must close both with `code` "Server draining" and the
// process must exit 0. Both answer the close, so the drain ends as soon as they have: nominal well
// within DRAIN_TIMEOUT_MS (3000).
void expect_drain(int sig, const Env& extra, int code) {
  Env env = relaxed_limits({{"DRAIN_TIMEOUT_MS", "3000"}});
  for (const auto& [k, v] : extra) env[k] = v;
  auto server = ServerProcess::start(env);
  ASSERT_TRUE(server);
  auto a = join(server->port(), "drain");
  auto b = join(server->port(), "drain");
  ASSERT_TRUE(a && b);
  const auto start = Clock::now();
  ASSERT_EQ(kill(server->pid(), sig), 0);
  for (auto* c : {a.get(), b.get()}) {
    auto closed = c->wait_close(4000ms);
    ASSERT_TRUE(closed) << server->output();
    EXPECT_EQ(closed->code, code);
    EXPECT_EQ(closed->reason, "Server draining");
  }
  // 4x DRAIN_TIMEOUT_MS, for a loaded machine: a drain that never ends still fails.
  EXPECT_EQ(wait_for_exit(*server, 12000ms), 0) << server->output();
  EXPECT_LT(ms_since(start), 4 * 3000);
}

}  // namespace

TEST(LifecycleDrain, SigtermClosesEveryClientWith1012AndExitsZero) {
  expect_drain(SIGTERM, {}, 1012);
}

TEST(LifecycleDrain, SigintBehavesLikeSigterm) {
  expect_drain(SIGINT, {}, 1012);
}

TEST(LifecycleDrain, ShutdownCloseCodeChangesTheCode) {
  expect_drain(SIGTERM, {{"SHUTDOWN_CLOSE_CODE", "4000"}}, 4000);
}

TEST(LifecycleDrain, ReadinessIs503WhileDrainingAndTheDrainIsBoundedByItsTimeout) {
  // The close handshake's own timeout (HANDSHAKE_TIMEOUT_MS) far above the drain's, so that only
  // DRAIN_TIMEOUT_MS can end the drain within the bound below.
  auto server = ServerProcess::start(
      relaxed_limits({{"DRAIN_TIMEOUT_MS", "3000"}, {"HANDSHAKE_TIMEOUT_MS", "60000"}}));
  ASSERT_TRUE(server);
  auto a = join(server->port(), "ready");
  // Never answers the close frame (it only reads at the end): it holds the drain.
  auto idle = WireClient::connect(server->port(), "/?roomId=ready");
  ASSERT_TRUE(a && idle);
  const HttpResult before = http_get(server->port(), "/readyz");
  EXPECT_EQ(before.status, 200u);
  EXPECT_EQ(before.body, "ready");
  const auto start = Clock::now();
  ASSERT_EQ(kill(server->pid(), SIGTERM), 0);
  // A 503 answer comes from the running process, so from within the drain (`idle` holds it open
  // until DRAIN_TIMEOUT_MS); that is what is checked, not how fast the poll saw it.
  HttpResult during;
  EXPECT_TRUE(wait_until(
      [&] {
        during = http_get(server->port(), "/readyz", 500ms);
        return during.status == 503;
      },
      3000ms))
      << "last /readyz: " << during.status << " " << during.body;
  EXPECT_EQ(during.body, "not-ready");
  EXPECT_EQ(scrape(server->port(), "cloudgaming_draining"), 1.0);
  auto closed = a->wait_close(4000ms);
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->code, 1012);
  // `idle` never answers the close, so the drain ends at DRAIN_TIMEOUT_MS, still with exit 0.
  // Nominal 3 s; bounded at 4x that for a loaded machine, still far below the 60 s after which
  // the close handshake's timeout would have ended it instead.
  EXPECT_EQ(wait_for_exit(*server, 12000ms), 0) << server->output();
  EXPECT_LT(ms_since(start), 4 * 3000);
  // The close frame was sent to `idle` too, before the process went away.
  auto idle_closed = idle->read_close(2000ms);
  ASSERT_TRUE(idle_closed);
  EXPECT_EQ(idle_closed->code, 1012);
  EXPECT_EQ(idle_closed->reason, "Server draining");
}

TEST(LifecycleDrain, NewConnectionDuringDrainIsRefusedWith1012) {
  // Long drain and close timeouts: the non-reading client keeps the server draining until it
  // reads, whatever the speed of the machine.
  auto server = ServerProcess::start(
      relaxed_limits({{"DRAIN_TIMEOUT_MS", "30000"}, {"HANDSHAKE_TIMEOUT_MS", "30000"}}));
  ASSERT_TRUE(server);
  auto idle = join(server->port(), "late");
  ASSERT_TRUE(idle);
  ASSERT_EQ(kill(server->pid(), SIGTERM), 0);
  ASSERT_TRUE(wait_until([&] { return http_get(server->port(), "/readyz").status == 503; }))
      << server->output();
  auto late = join(server->port(), "late");
  ASSERT_TRUE(late);
  auto refused = late->wait_close();
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->code, 1012);
  EXPECT_EQ(refused->reason, "Server draining");
  EXPECT_EQ(scrape(server->port(), "cloudgaming_connections_rejected_total{reason=\"draining\"}"),
            1.0);
  EXPECT_TRUE(server->running()) << "still draining while `idle` holds on";
  // Let it finish: `idle` reads its close frame and answers it, and the drain completes at once.
  auto closed = idle->wait_close();
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->code, 1012);
  // Nominal: at once. The bound only has to tell that from the end of DRAIN_TIMEOUT_MS (30 s),
  // with room for a loaded machine.
  const auto start = Clock::now();
  EXPECT_EQ(wait_for_exit(*server, 10000ms), 0) << server->output();
  EXPECT_LT(ms_since(start), 10000);
}

// ---------------------------------------------------------------------------------------------
// HEALTH_PORT

TEST(LifecycleHealthPort, ProbesAndMetricsOnTheHealthPortAndTheMainPort) {
  uint16_t health = 0;
  auto server = ServerProcess::start_on_free_port("HEALTH_PORT", relaxed_limits(), &health);
  ASSERT_TRUE(server);
  ASSERT_EQ(server->health_port(), health);
  ASSERT_NE(server->port(), health);
  for (const uint16_t port : {health, server->port()}) {
    SCOPED_TRACE("port " + std::to_string(port));
    const HttpResult healthz = http_get(port, "/healthz");
    EXPECT_EQ(healthz.status, 200u);
    EXPECT_EQ(healthz.body, "ok");
    const HttpResult readyz = http_get(port, "/readyz");
    EXPECT_EQ(readyz.status, 200u);
    EXPECT_EQ(readyz.body, "ready");
    const HttpResult metrics = http_get(port, "/metrics");
    EXPECT_EQ(metrics.status, 200u);
    EXPECT_TRUE(metric_value(metrics.body, "cloudgaming_active_connections").has_value())
        << metrics.body;
  }
  for (const std::string path : {"/", "/other", "/healthz/x"}) {
    const HttpResult r = http_get(health, path);
    EXPECT_EQ(r.status, 404u) << path;
    EXPECT_EQ(r.body, "not-found") << path;
  }
  EXPECT_EQ(http_get(server->port(), "/other").status, 426u);
  // The health port serves no WebSocket; the main port still does.
  std::string err;
  EXPECT_FALSE(WsClient::connect(health, "/?roomId=h", {}, &err));
  auto a = join(server->port(), "h");
  auto b = join(server->port(), "h");
  ASSERT_TRUE(a && b);
  a->send(R"({"type":"offer","sdp":"main"})");
  EXPECT_EQ(b->recv(), R"({"type":"offer","sdp":"main"})");
  EXPECT_EQ(scrape(health, "cloudgaming_active_connections"), 2.0);
  EXPECT_EQ(stop_after_disconnect(*server, a, b), 0);
}

TEST(LifecycleHealthPort, TakenHealthPortStopsStartUpNamingIt) {
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::acceptor taken(ioc, {boost::asio::ip::tcp::v4(), 0});
  const std::string port = std::to_string(taken.local_endpoint().port());
  const RunResult r = run_server_to_exit({{"WS_PORT", "0"}, {"HEALTH_PORT", port}}, {}, 5000ms);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("HEALTH_PORT: cannot listen on 0.0.0.0:" + port), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("stop it or set HEALTH_PORT)"), std::string::npos) << r.output;
}

// ---------------------------------------------------------------------------------------------
// Metrics

TEST(LifecycleMetrics, ConnectionRoomAndForwardGaugesFollowTheClients) {
  auto server = ServerProcess::start(relaxed_limits());
  ASSERT_TRUE(server);
  const uint16_t port = server->port();
  EXPECT_EQ(scrape(port, "cloudgaming_active_connections"), 0.0);
  EXPECT_EQ(scrape(port, "cloudgaming_local_rooms"), 0.0);
  EXPECT_EQ(scrape(port, "cloudgaming_messages_forwarded_total"), 0.0);
  auto a = join(port, "m");
  auto b = join(port, "m");
  ASSERT_TRUE(a && b);
  EXPECT_TRUE(metric_is(port, "cloudgaming_active_connections", 2.0));
  EXPECT_TRUE(metric_is(port, "cloudgaming_local_rooms", 1.0));
  a->send(R"({"type":"offer","sdp":"1"})");
  a->send(R"({"type":"offer"})");  // schema error: not forwarded
  EXPECT_EQ(a->recv(), R"({"type":"control","action":"schema-error"})");
  a->send("not json");  // dropped: not forwarded
  b->send(R"({"type":"answer","sdp":"2"})");
  a->send(candidate("3"));
  EXPECT_EQ(b->recv(), R"({"type":"offer","sdp":"1"})");
  EXPECT_EQ(b->recv(), candidate("3"));
  EXPECT_EQ(a->recv(), R"({"type":"answer","sdp":"2"})");
  EXPECT_TRUE(metric_is(port, "cloudgaming_messages_forwarded_total", 3.0));
  EXPECT_EQ(scrape(port, "cloudgaming_schema_rejects_total"), 1.0);
  a->close();
  EXPECT_EQ(b->recv(), kPeerDisconnected);
  EXPECT_TRUE(metric_is(port, "cloudgaming_active_connections", 1.0));
  EXPECT_EQ(scrape(port, "cloudgaming_local_rooms"), 1.0);
  b->close();
  EXPECT_TRUE(metric_is(port, "cloudgaming_active_connections", 0.0));
  EXPECT_TRUE(metric_is(port, "cloudgaming_local_rooms", 0.0));
  EXPECT_EQ(scrape(port, "cloudgaming_messages_forwarded_total"), 3.0);
  EXPECT_EQ(server->stop(SIGTERM), 0);
}

TEST(LifecycleMetrics, ConnectionRateLimitRelaysExactlyTheBucket) {
  auto server = ServerProcess::start(relaxed_limits({{"RATE_LIMIT_MESSAGES_PER_10S", "5"}}));
  ASSERT_TRUE(server);
  auto a = join(server->port(), "rl");
  auto b = join(server->port(), "rl");
  ASSERT_TRUE(a && b);
  std::vector<std::string> burst;
  for (int i = 0; i < 10; ++i) burst.push_back(candidate("c" + std::to_string(i)));
  a->send_all(burst);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(b->recv(), burst[i]) << i;
  EXPECT_TRUE(
      metric_is(server->port(), "cloudgaming_rate_limit_drops_total{scope=\"connection\"}", 5.0))
      << http_get(server->port(), "/metrics").body;
  EXPECT_EQ(scrape(server->port(), "cloudgaming_rate_limit_drops_total{scope=\"room\"}"), 0.0);
  EXPECT_EQ(scrape(server->port(), "cloudgaming_messages_forwarded_total"), 5.0);
  // The limit is per connection: B still has its own tokens.
  b->send(R"({"type":"answer","sdp":"b"})");
  EXPECT_EQ(a->recv(), R"({"type":"answer","sdp":"b"})");
  // No more than 5 of the 10 were relayed: A's departure, which follows all its messages, is
  // the next thing B hears.
  a->close();
  EXPECT_EQ(b->recv(), kPeerDisconnected) << "more than 5 of 10 messages were relayed";
  EXPECT_EQ(stop_after_disconnect(*server, a, b), 0);
}

TEST(LifecycleMetrics, RoomRateLimitIsSharedByTheMembers) {
  auto server = ServerProcess::start(relaxed_limits({{"RATE_LIMIT_ROOM_MSGS_PER_10S", "4"}}));
  ASSERT_TRUE(server);
  auto a = join(server->port(), "rr");
  auto b = join(server->port(), "rr");
  ASSERT_TRUE(a && b);
  // Three each: no connection is over 4, but the room is at the 5th and 6th message.
  a->send_all({candidate("a0"), candidate("a1"), candidate("a2")});
  for (const char* m : {"a0", "a1", "a2"}) EXPECT_EQ(b->recv(), candidate(m));
  b->send_all({candidate("b0"), candidate("b1"), candidate("b2")});
  EXPECT_EQ(a->recv(), candidate("b0"));
  // The room allows nothing more for 10 s, so B's departure (which follows all B's messages) is
  // the marker: it is the next thing A hears.
  b->close();
  EXPECT_EQ(a->recv(), kPeerDisconnected) << "the room limit let more than 4 messages through";
  EXPECT_TRUE(metric_is(server->port(), "cloudgaming_rate_limit_drops_total{scope=\"room\"}", 2.0))
      << http_get(server->port(), "/metrics").body;
  EXPECT_EQ(scrape(server->port(), "cloudgaming_rate_limit_drops_total{scope=\"connection\"}"),
            0.0);
  EXPECT_EQ(scrape(server->port(), "cloudgaming_messages_forwarded_total"), 4.0);
  EXPECT_EQ(stop_after_disconnect(*server, a, b), 0);
}

TEST(LifecycleMetrics, ProcessGauges) {
  auto server = ServerProcess::start();
  ASSERT_TRUE(server);
  const HttpResult r = http_get(server->port(), "/metrics");
  ASSERT_EQ(r.status, 200u);
  EXPECT_GT(metric_value(r.body, "process_resident_memory_bytes").value_or(0), 0) << r.body;
  EXPECT_GT(metric_value(r.body, "process_open_fds").value_or(0), 0) << r.body;
  EXPECT_GT(metric_value(r.body, "process_start_time_seconds").value_or(0), 0) << r.body;
  EXPECT_TRUE(metric_value(r.body, "process_cpu_seconds_total").has_value()) << r.body;
  EXPECT_EQ(server->stop(SIGTERM), 0);
}

// ---------------------------------------------------------------------------------------------
// Plain HTTP on the main port

TEST(LifecycleHttp, PlainGetIs426) {
  auto server = ServerProcess::start();
  ASSERT_TRUE(server);
  const HttpResult r = http_get(server->port(), "/");
  EXPECT_EQ(r.status, 426u);
  EXPECT_EQ(r.body, "Upgrade Required");
  ASSERT_TRUE(r.headers.count("Upgrade"));
  EXPECT_EQ(r.headers.at("Upgrade"), "websocket");
  EXPECT_EQ(server->stop(SIGTERM), 0);
}

TEST(LifecycleHttp, KeepAliveClientMakesTwoRequestsOnOneConnection) {
  namespace beast = boost::beast;
  namespace http = beast::http;
  auto server = ServerProcess::start();
  ASSERT_TRUE(server);
  boost::asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.expires_after(5s);
  beast::error_code ec;
  stream.connect(
      boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), server->port()),
      ec);
  ASSERT_FALSE(ec) << ec.message();
  beast::flat_buffer buffer;
  const std::vector<std::pair<std::string, std::string>> exchanges = {{"/healthz", "ok"},
                                                                      {"/readyz", "ready"}};
  for (const auto& [target, body] : exchanges) {
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, "127.0.0.1");
    req.keep_alive(true);
    http::write(stream, req, ec);
    ASSERT_FALSE(ec) << target << ": " << ec.message();
    http::response<http::string_body> res;
    http::read(stream, buffer, res, ec);
    ASSERT_FALSE(ec) << target << ": " << ec.message();
    EXPECT_EQ(res.result_int(), 200u) << target;
    EXPECT_EQ(res.body(), body) << target;
    EXPECT_TRUE(res.keep_alive()) << target;
  }
  EXPECT_EQ(server->stop(SIGTERM), 0);
}
