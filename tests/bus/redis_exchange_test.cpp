// RedisExchange (one question to one Redis: the sentinels' questions, the cluster start-up check)
// against a real redis-server and against sockets that never answer: each way it can end is
// reported once, with its kind, and no password reaches the detail. (TLS: tls_test.cpp.)
#include "bus/redis_exchange.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

#include "harness.hpp"

namespace sigsrv {
namespace {

using namespace std::chrono_literals;
using Kind = RedisExchange::Outcome::Kind;

struct Result {
  int calls = 0;
  Kind kind = Kind::kFailed;
  bool error_reply = false;
  std::string text;  // the reply's text (kReply), or the detail
  std::chrono::milliseconds took{};
};

Result ask(uint16_t port, const RedisCredentials& how, std::vector<std::string> question,
           std::chrono::milliseconds timeout = 2000ms) {
  boost::asio::io_context ioc;
  Result r;
  const auto start = std::chrono::steady_clock::now();
  auto ex = std::make_shared<RedisExchange>(ioc, [&](const RedisExchange::Outcome& o) {
    ++r.calls;
    r.kind = o.kind;
    r.took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    if (o.kind == Kind::kReply) {
      r.error_reply = o.reply->type == REDIS_REPLY_ERROR;
      r.text = std::string(reply_text(o.reply));
    } else {
      r.text = o.detail;
    }
  });
  ex->run(HostPort{"127.0.0.1", port}, how, std::move(question), timeout);
  ex.reset();
  ioc.run();  // returns once the exchange has ended and released everything it held
  return r;
}

TEST(RedisExchange, AnswersWithNoPasswordAPasswordOrAnAclUser) {
  auto open = testing_support::RedisProcess::start();
  auto locked = testing_support::RedisProcess::start(0, "pw-5");
  ASSERT_TRUE(open && locked);
  ASSERT_EQ(locked->cli({"ACL", "SETUSER", "relay", "on", ">user-pw-5", "+@all"}), "OK");
  for (const auto& [port, how] :
       {std::pair{open->port(), RedisCredentials{}},
        std::pair{locked->port(), RedisCredentials{{}, "pw-5", {}}},
        std::pair{locked->port(), RedisCredentials{"relay", "user-pw-5", {}}}}) {
    const Result r = ask(port, how, {"PING"});
    EXPECT_EQ(r.calls, 1);
    EXPECT_EQ(r.kind, Kind::kReply) << r.text;
    EXPECT_EQ(r.text, "PONG");
  }
  // An error reply is the answer, not a failure: the caller reads it (a node without cluster
  // support answers CLUSTER SLOTS so).
  const Result not_cluster = ask(open->port(), {}, {"CLUSTER", "SLOTS"});
  EXPECT_EQ(not_cluster.kind, Kind::kReply);
  EXPECT_TRUE(not_cluster.error_reply);
  EXPECT_NE(not_cluster.text.find("cluster support disabled"), std::string::npos)
      << not_cluster.text;
}

TEST(RedisExchange, RefusedMissingOrUnexpectedPasswordIsAuthFailed) {
  auto open = testing_support::RedisProcess::start();
  auto locked = testing_support::RedisProcess::start(0, "pw-6");
  ASSERT_TRUE(open && locked);
  const Result wrong = ask(locked->port(), {{}, "not-it-6", {}}, {"PING"});
  EXPECT_EQ(wrong.kind, Kind::kAuthFailed);
  EXPECT_NE(wrong.text.find("WRONGPASS"), std::string::npos) << wrong.text;
  EXPECT_EQ(wrong.text.find("not-it-6"), std::string::npos);
  const Result wrong_user = ask(locked->port(), {"nobody", "pw-6", {}}, {"PING"});
  EXPECT_EQ(wrong_user.kind, Kind::kAuthFailed);
  const Result missing = ask(locked->port(), {}, {"PING"});
  EXPECT_EQ(missing.kind, Kind::kAuthFailed);
  EXPECT_NE(missing.text.find("NOAUTH"), std::string::npos) << missing.text;
  // A password to a server that has none (a sentinel without requirepass): refused, so the
  // caller can name the variable that should not be set.
  const Result unexpected = ask(open->port(), {{}, "pw-6", {}}, {"PING"});
  EXPECT_EQ(unexpected.kind, Kind::kAuthFailed) << unexpected.text;
  for (const auto* r : {&wrong, &wrong_user, &missing, &unexpected}) EXPECT_EQ(r->calls, 1);
}

TEST(RedisExchange, NoServerOrASilentOneFailsWithinTheDeadline) {
  // Nothing listens: refused at once.
  const uint16_t closed = testing_support::free_port();
  const Result refused = ask(closed, {}, {"PING"});
  EXPECT_EQ(refused.calls, 1);
  EXPECT_EQ(refused.kind, Kind::kFailed);
  EXPECT_NE(refused.text.find("connect"), std::string::npos) << refused.text;

  // A socket that accepts (the kernel's backlog) and never answers: ends at the deadline.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  const Result silent = ask(ntohs(addr.sin_port), {}, {"PING"}, 300ms);
  ::close(fd);
  EXPECT_EQ(silent.calls, 1);
  EXPECT_EQ(silent.kind, Kind::kFailed);
  EXPECT_NE(silent.text.find("no answer in time"), std::string::npos) << silent.text;
  EXPECT_GE(silent.took, 300ms);
  EXPECT_LT(silent.took, 2000ms);
}

}  // namespace
}  // namespace sigsrv
