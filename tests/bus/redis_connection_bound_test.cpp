// RedisConnection against a server that stops reading: unsent commands stay bounded by bytes.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <future>
#include <string>
#include <thread>

#include "bus/redis_connection.hpp"
#include "harness.hpp"

namespace sigsrv {
namespace {

using namespace std::chrono_literals;

// Answers the handshake's PING, then never reads again (until stopped).
class StalledRedis {
 public:
  StalledRedis() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    ::listen(listen_fd_, 1);
    thread_ = std::thread([this] {
      conn_fd_ = ::accept(listen_fd_, nullptr, nullptr);
      std::string in;
      char buf[256];
      while (in.find("PING\r\n") == std::string::npos) {
        const ssize_t n = ::recv(conn_fd_, buf, sizeof(buf), 0);
        if (n <= 0) return;
        in.append(buf, static_cast<std::size_t>(n));
      }
      ::send(conn_fd_, "+PONG\r\n", 7, 0);
    });
  }
  ~StalledRedis() {
    ::shutdown(listen_fd_, SHUT_RDWR);
    thread_.join();
    if (conn_fd_ >= 0) ::close(conn_fd_);
    ::close(listen_fd_);
  }
  uint16_t port() const { return port_; }

 private:
  int listen_fd_ = -1;
  int conn_fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
};

TEST(RedisConnectionBound, ARedisThatStopsReadingHoldsAtMostTheUnsentByteCap) {
  StalledRedis redis;
  boost::asio::io_context ioc(1);
  auto work = boost::asio::make_work_guard(ioc);
  Logger log(LogLevel::kError, false, "bound-test");
  RedisEndpoint endpoint;
  endpoint.host = "127.0.0.1";
  endpoint.port = redis.port();
  std::promise<void> up;
  RedisTiming timing;
  timing.command_timeout = 60s;  // the test decides when the stall ends, not the reply timeout
  timing.ping_interval = 60s;
  RedisConnection conn(ioc, endpoint, nullptr, RedisConnection::Mode::kCommand, "command", log,
                       {[&up] { up.set_value(); }, {}, {}, {}, {}, {}}, timing);
  std::thread loop([&] { ioc.run(); });
  boost::asio::post(ioc, [&] { conn.start(); });
  ASSERT_EQ(up.get_future().wait_for(5s), std::future_status::ready);

  // 200 commands of 1 MiB each, far more than the socket buffers take.
  const std::string big(1 << 20, 'x');
  std::atomic<int> failed{0};
  std::promise<std::size_t> held;
  boost::asio::post(ioc, [&] {
    for (int i = 0; i < 200; ++i) {
      conn.command({"SET", "k", big}, [&failed](const redisReply* r) {
        if (r == nullptr) ++failed;
      });
    }
    held.set_value(conn.unsent_bytes());
  });
  const std::size_t unsent = held.get_future().get();
  EXPECT_LE(unsent, RedisConnection::kMaxUnsentBytes + big.size() + 64);
  EXPECT_TRUE(testing_support::wait_until([&] { return failed.load() >= 100; }, 5000ms))
      << "commands past the cap fail at once; failed=" << failed.load();
  boost::asio::post(ioc, [&] { conn.stop(); });
  work.reset();
  loop.join();
}

}  // namespace
}  // namespace sigsrv
