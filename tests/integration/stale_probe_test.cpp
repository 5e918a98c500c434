// STALE_MEMBER_PROBE_MS: a join that finds the room full pings its members; a silent one is
// released and the join proceeds, a live one is never evicted (one instance and across two).
#include <gtest/gtest.h>

#include <atomic>
#include <optional>
#include <thread>

#include "harness.hpp"
#include "ws_client.hpp"

using namespace testing_support;

namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kPeerDisconnected = R"({"type":"peer-disconnected"})";

std::string offer(const std::string& sdp) {
  return R"({"type":"offer","sdp":")" + sdp + R"("})";
}

// The heartbeat is far away (60 s): only the probe can free the seat within these tests.
Env probe_env(const Env& extra = {}) {
  Env env = relaxed_limits({{"HEARTBEAT_INTERVAL_MS", "60000"}, {"STALE_MEMBER_PROBE_MS", "300"}});
  for (const auto& [k, v] : extra) env[k] = v;
  return env;
}

}  // namespace

TEST(StaleProbe, SilentMemberIsReleasedAndTheFreshJoinIsAdmitted) {
  auto server = ServerProcess::start(probe_env());
  ASSERT_TRUE(server);
  auto host = join(server->port(), "stale");
  auto ghost = join(server->port(), "stale");  // never read again: it answers no ping
  ASSERT_TRUE(host && ghost);
  const auto start = Clock::now();
  // The host reads (and so answers the probe's ping) while the newcomer joins.
  std::optional<std::string> heard;
  std::thread reader([&] { heard = host->recv(4000ms); });
  auto fresh = join(server->port(), "stale");
  reader.join();
  ASSERT_TRUE(fresh) << server->output();
  // Admitted: the host heard the ghost leave, then gets the newcomer's message.
  EXPECT_EQ(heard, kPeerDisconnected);
  fresh->send(offer("new"));
  EXPECT_EQ(host->recv(3000ms), offer("new"));
  // Nominal: the probe's 300 ms plus the 150 ms retry. 10x that for a loaded machine, still far
  // below the 60 s heartbeat that would otherwise free the seat.
  EXPECT_LT(Clock::now() - start, 5000ms);
  EXPECT_EQ(scrape(server->port(), "cloudgaming_stale_member_probes_total"), 1.0);
  EXPECT_EQ(scrape(server->port(), "cloudgaming_stale_members_released_total"), 1.0);
}

TEST(StaleProbe, LiveMemberAnswersAndIsNeverEvicted) {
  auto server = ServerProcess::start(probe_env());
  ASSERT_TRUE(server);
  auto a = join(server->port(), "live");
  auto b = join(server->port(), "live");
  ASSERT_TRUE(a && b);
  // Both members keep reading (and so answer pings) until the third has its answer.
  std::atomic<bool> answered{false};
  std::vector<std::string> heard_a, heard_b;
  auto keep_reading = [&answered](WsClient& c, std::vector<std::string>& heard) {
    while (!answered) {
      if (auto m = c.recv(20ms)) heard.push_back(*m);
    }
  };
  std::thread reader_a([&] { keep_reading(*a, heard_a); });
  std::thread reader_b([&] { keep_reading(*b, heard_b); });
  auto c = join(server->port(), "live");
  std::optional<CloseInfo> closed;
  if (c) closed = c->wait_close(3000ms);
  answered = true;
  reader_a.join();
  reader_b.join();
  ASSERT_TRUE(c);
  EXPECT_TRUE(heard_a.empty() && heard_b.empty()) << "neither heard a departure";
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->code, 1000);
  EXPECT_EQ(closed->reason, "Room is full");
  EXPECT_EQ(scrape(server->port(), "cloudgaming_stale_members_released_total"), 0.0);
  a->send(offer("still"));
  EXPECT_EQ(b->recv(), offer("still"));
}

TEST(StaleProbe, ZeroTurnsTheProbeOff) {
  auto server = ServerProcess::start(probe_env({{"STALE_MEMBER_PROBE_MS", "0"}}));
  ASSERT_TRUE(server);
  auto a = join(server->port(), "off");
  auto ghost = join(server->port(), "off");
  ASSERT_TRUE(a && ghost);
  auto c = join(server->port(), "off");
  ASSERT_TRUE(c);
  auto closed = c->wait_close(3000ms);
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->reason, "Room is full");
  EXPECT_EQ(scrape(server->port(), "cloudgaming_stale_member_probes_total"), 0.0);
}

TEST(StaleProbe, MemberOnAnotherInstanceIsProbedThroughRedis) {
  auto redis = RedisProcess::start();
  ASSERT_TRUE(redis);
  auto one = ServerProcess::start(probe_env({{"REDIS_URL", redis->url()}}));
  auto two = ServerProcess::start(probe_env({{"REDIS_URL", redis->url()}}));
  ASSERT_TRUE(one && two);
  for (auto* s : {one.get(), two.get()}) {
    ASSERT_TRUE(wait_until([&] { return http_get(s->port(), "/readyz").status == 200; }));
  }
  auto host = join(one->port(), "far");
  auto ghost = join(two->port(), "far");  // silent, on the other instance
  ASSERT_TRUE(host && ghost);
  const auto start = Clock::now();
  std::optional<std::string> heard;
  std::thread reader([&] { heard = host->recv(4000ms); });
  auto fresh = join(one->port(), "far");
  reader.join();
  ASSERT_TRUE(fresh);
  EXPECT_EQ(heard, kPeerDisconnected);
  fresh->send(offer("in"));
  EXPECT_EQ(host->recv(3000ms), offer("in"));
  // Nominal under 1 s (probe, release through Redis, retry); bounded as above.
  EXPECT_LT(Clock::now() - start, 5000ms);
  EXPECT_EQ(scrape(two->port(), "cloudgaming_stale_members_released_total"), 1.0);
}
