// Regressions found in review: re-entrant backpressure close, and last messages in Redis mode.
#include <gtest/gtest.h>

#include "harness.hpp"
#include "ws_client.hpp"

using namespace testing_support;

namespace {

std::string control(const std::string& action, std::size_t payload) {
  return R"({"type":"control","action":")" + action + R"(","payload":")" +
         std::string(payload, 'x') + R"("})";
}

}  // namespace

// Two stalled readers on one loop, both just under the backpressure cap: one of them sends, its
// message tips the other over, whose departure notice tips the sender over. The server must
// neither crash nor reorder: every recipient gets the message, then the departures.
TEST(Regression, BackpressureCloseInsideARelayDoesNotReenterTheSender) {
  const std::string big = control("big", 4'000'000);
  const std::string small = control("small", 1000);
  const std::string m = R"({"type":"control","action":"from-s"})";
  constexpr int kSmalls = 5;
  // Unsent bytes are counted as framed for the socket (a 10-byte header on the big message, 4
  // on each small one): the big one and the smalls fit, one more message does not.
  const std::size_t cap = (big.size() + 10) + kSmalls * (small.size() + 4) + 10;
  auto server = ServerProcess::start(
      relaxed_limits({{"THREADS", "1"},
                      {"ROOM_CAPACITY", "4"},
                      {"MESSAGE_MAX_BYTES", "8000000"},
                      {"BACKPRESSURE_CLOSE_THRESHOLD_BYTES", std::to_string(cap)}}));
  ASSERT_TRUE(server);
  ConnectOptions stalled;
  stalled.receive_buffer_bytes = 4096;
  auto s = WsClient::connect(server->port(), "/?roomId=re", stalled);
  auto r = WsClient::connect(server->port(), "/?roomId=re", stalled);
  auto t = WsClient::connect(server->port(), "/?roomId=re");
  auto o = WsClient::connect(server->port(), "/?roomId=re");
  ASSERT_TRUE(s && r && t && o);
  t->send(big);
  // Once the observer has the big message, S's and R's copies are stuck in flight.
  ASSERT_EQ(o->recv(10000ms), big);
  for (int i = 0; i < kSmalls; ++i) {
    t->send(small);
    ASSERT_EQ(o->recv(), small);
  }
  s->send(m);
  EXPECT_EQ(o->recv(), m);
  EXPECT_EQ(t->recv(), m);
  // R went over the cap; S too, from R's departure notice. Both are gone, the server is not.
  EXPECT_EQ(o->recv(), R"({"type":"peer-disconnected"})");
  EXPECT_EQ(http_get(server->port(), "/healthz").status, 200u);
  EXPECT_TRUE(wait_until(
      [&] { return scrape(server->port(), "cloudgaming_backpressure_closes_total") >= 1.0; }));
  EXPECT_TRUE(server->running());
}

// A message sent right before the close must still reach the peer on the Redis bus, where it
// waits for the shared rate-limit verdict; the departure follows it.
TEST(Regression, LastMessageBeforeCloseIsRelayedOnTheRedisBus) {
  auto redis = RedisProcess::start();
  ASSERT_TRUE(redis);
  auto server = ServerProcess::start(relaxed_limits({{"REDIS_URL", redis->url()}}));
  ASSERT_TRUE(server);
  ASSERT_TRUE(wait_until([&] { return http_get(server->port(), "/readyz").status == 200; }));
  for (int i = 0; i < 10; ++i) {
    const std::string room = "last-" + std::to_string(i);
    auto a = WsClient::connect(server->port(), "/?roomId=" + room);
    auto b = WsClient::connect(server->port(), "/?roomId=" + room);
    ASSERT_TRUE(a && b);
    a->send(R"({"type":"offer","sdp":"last words"})");
    a->close();
    EXPECT_EQ(b->recv(), R"({"type":"offer","sdp":"last words"})") << room;
    EXPECT_EQ(b->recv(), R"({"type":"peer-disconnected"})") << room;
  }
}

// Found by fuzzing: an absolute-form target with an empty query and fragment crashed Boost.URL's
// parameter iteration. The request line is the client's to choose.
TEST(Regression, OddRequestTargetsAreRefusedNotFatal) {
  auto server = ServerProcess::start();
  ASSERT_TRUE(server);
  for (const std::string target : {"o:?#", "/?#", "ws://h/?roomId=%", "*"}) {
    const RawUpgradeResult r = raw_upgrade(
        server->port(), "GET " + target +
                            " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                            "Sec-WebSocket-Version: 13\r\n\r\n");
    if (r.http_status == 101) {
      ASSERT_TRUE(r.close) << target;
      EXPECT_EQ(r.close->code, 1008) << target;
      EXPECT_EQ(r.close->reason, "Invalid roomId") << target;
    }
    EXPECT_EQ(http_get(server->port(), "/healthz").status, 200u) << "after " << target;
  }
  EXPECT_TRUE(server->running());
}
