// Crash notices (PROTOCOL.md section 8, "Instance crash"): when an instance dies without leaving,
// its members are released once its lease expires and their peers on live instances hear
// peer-disconnected exactly once. Real binaries, real redis-server, SIGKILL for the crash.
#include <gtest/gtest.h>
#include <signal.h>

#include <boost/json.hpp>
#include <cstdio>
#include <thread>

#include "admission.hpp"
#include "harness.hpp"
#include "ws_client.hpp"

using namespace testing_support;
namespace json = boost::json;

namespace {

constexpr int kLeaseTtlMs = 1500;
// The contract: released, and the peers told, within the lease TTL plus one second (2.5 s here).
// Checked at 4x that, for a loaded machine (the latency itself is printed and recorded): still
// fails when only a much later path (the heartbeat, a restart) would release the seats.
constexpr auto kContract = std::chrono::milliseconds(kLeaseTtlMs + 1000);
constexpr auto kNoticeDeadline = 4 * kContract;
const std::string kPeerDisconnected = R"({"type":"peer-disconnected"})";

Env crash_env(const RedisProcess& redis, const std::string& capacity) {
  return relaxed_limits({{"REDIS_URL", redis.url()},
                         {"INSTANCE_LEASE_TTL_MS", std::to_string(kLeaseTtlMs)},
                         {"ROOM_CAPACITY", capacity}});
}

std::string offer(const std::string& sdp) {
  return R"({"type":"offer","sdp":")" + sdp + R"("})";
}

std::string action_of(const std::optional<std::string>& msg) {
  if (!msg) return "(nothing)";
  json::error_code ec;
  const json::value v = json::parse(*msg, ec);
  if (ec || !v.is_object() || !v.as_object().contains("action")) return *msg;
  return std::string(v.at("action").as_string());
}

// Reads the next message, which must be `marker`: proves nothing else (a second notice) came
// before it. Everything published before the marker reaches a client before it.
void expect_next_is(WsClient& c, const std::string& marker, const char* who) {
  const auto got = c.recv(5000ms);
  ASSERT_TRUE(got) << who << ": no marker";
  EXPECT_EQ(*got, marker) << who << ": something came before the marker";
}

}  // namespace

TEST(CrashNotice, HostHearsOnceWhenTheBrowsersInstanceDiesAndTheSeatIsFreed) {
  auto redis = RedisProcess::start();
  ASSERT_TRUE(redis);
  auto a = start_ready(crash_env(*redis, "2"));
  auto b = start_ready(crash_env(*redis, "2"));
  ASSERT_TRUE(a && b);
  auto host = join(a->port(), "crash1");
  auto browser = join(b->port(), "crash1");
  ASSERT_TRUE(host && browser);
  browser->send(offer("hello"));
  ASSERT_EQ(host->recv(), offer("hello"));
  ASSERT_EQ(redis->cli({"SCARD", "room:crash1"}), "2");

  b->kill_now();
  const auto killed = std::chrono::steady_clock::now();
  const auto notice = host->recv(kNoticeDeadline);
  const auto latency = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - killed);
  ASSERT_TRUE(notice) << "no peer-disconnected within " << kNoticeDeadline.count() << " ms\n"
                      << a->output();
  EXPECT_EQ(*notice, kPeerDisconnected);
  std::printf("[ crash notice ] peer-disconnected %lld ms after SIGKILL (lease TTL %d ms)\n",
              static_cast<long long>(latency.count()), kLeaseTtlMs);
  RecordProperty("notice_latency_ms", static_cast<int>(latency.count()));

  // The seat is free: only the host is left in Redis, and a newcomer is admitted (capacity 2).
  EXPECT_EQ(redis->cli({"SCARD", "room:crash1"}), "1");
  EXPECT_EQ(redis->cli({"HLEN", "room-owners:crash1"}), "1");
  auto newcomer = join(a->port(), "crash1");
  ASSERT_TRUE(newcomer);
  EXPECT_EQ(admission(*newcomer), "admitted") << "the newcomer must be admitted";
  EXPECT_EQ(redis->cli({"SCARD", "room:crash1"}), "2");
  // The newcomer's first message is the host's next one: no second notice came before it.
  newcomer->send(offer("marker"));
  expect_next_is(*host, offer("marker"), "host");
  host->send(R"({"type":"answer","sdp":"back"})");
  EXPECT_EQ(newcomer->recv(), R"({"type":"answer","sdp":"back"})");

  EXPECT_EQ(scrape(a->port(), "cloudgaming_crashed_members_released_total"), 1.0);
  EXPECT_TRUE(a->wait_for_output("Instance lease expired")) << a->output();
}

TEST(CrashNotice, PeersOnTwoLiveInstancesEachHearOnce) {
  auto redis = RedisProcess::start();
  ASSERT_TRUE(redis);
  auto a = start_ready(crash_env(*redis, "4"));
  auto b = start_ready(crash_env(*redis, "4"));
  auto c = start_ready(crash_env(*redis, "4"));
  ASSERT_TRUE(a && b && c);
  // One peer that asked for events, one that did not: both must hear of the crash.
  auto on_a = join(a->port(), "crash3", "&events=1");
  ASSERT_TRUE(on_a);
  ASSERT_EQ(action_of(on_a->recv()), "welcome");
  auto on_b = join(b->port(), "crash3");
  ASSERT_TRUE(on_b);
  ASSERT_EQ(action_of(on_a->recv()), "peer-joined");
  auto doomed = join(c->port(), "crash3");
  ASSERT_TRUE(doomed);
  ASSERT_EQ(action_of(on_a->recv()), "peer-joined");
  doomed->send(offer("alive"));
  ASSERT_EQ(on_a->recv(), offer("alive"));
  ASSERT_EQ(on_b->recv(), offer("alive"));
  ASSERT_EQ(redis->cli({"SCARD", "room:crash3"}), "3");

  c->kill_now();
  const auto killed = std::chrono::steady_clock::now();
  const auto notice_a = on_a->recv(kNoticeDeadline);
  const auto notice_b = on_b->recv(kNoticeDeadline);
  const auto latency = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - killed);
  EXPECT_EQ(notice_a, kPeerDisconnected) << a->output();
  EXPECT_EQ(notice_b, kPeerDisconnected) << b->output();
  EXPECT_LE(latency, kNoticeDeadline);
  std::printf("[ crash notice ] both peers told %lld ms after SIGKILL (lease TTL %d ms)\n",
              static_cast<long long>(latency.count()), kLeaseTtlMs);
  EXPECT_EQ(redis->cli({"SCARD", "room:crash3"}), "2");

  // Markers both ways, through Redis: nothing (a second notice) came before them.
  on_a->send(offer("from-a"));
  expect_next_is(*on_b, offer("from-a"), "peer on B");
  on_b->send(offer("from-b"));
  expect_next_is(*on_a, offer("from-b"), "peer on A");

  // Exactly one instance released the member and announced it.
  const double released =
      scrape(a->port(), "cloudgaming_crashed_members_released_total").value_or(-1) +
      scrape(b->port(), "cloudgaming_crashed_members_released_total").value_or(-1);
  EXPECT_EQ(released, 1.0);
}

TEST(CrashNotice, LiveInstancesKeepTheirMembersWhileOthersAreReaped) {
  auto redis = RedisProcess::start();
  ASSERT_TRUE(redis);
  const std::string b_id = "live-b";
  Env b_env = crash_env(*redis, "2");
  b_env["INSTANCE_ID"] = b_id;
  auto a = start_ready(crash_env(*redis, "2"));
  auto b = start_ready(b_env);
  auto c = start_ready(crash_env(*redis, "2"));
  ASSERT_TRUE(a && b && c);
  auto on_a = join(a->port(), "live");
  auto on_b = join(b->port(), "live");
  auto elsewhere = join(c->port(), "other");
  ASSERT_TRUE(on_a && on_b && elsewhere);
  ASSERT_EQ(redis->cli({"SCARD", "room:live"}), "2");
  EXPECT_EQ(redis->cli({"ZCARD", "signal:instances"}), "3");

  // C's death makes A and B run the release over their rooms: it must leave their own alone.
  c->kill_now();
  // Both live instances finished their release over their rooms (each logs it once done), and
  // the room still holds both members.
  ASSERT_TRUE(a->wait_for_output("Instance lease expired", 10000ms)) << a->output();
  ASSERT_TRUE(b->wait_for_output("Instance lease expired", 10000ms)) << b->output();
  ASSERT_EQ(redis->cli({"SCARD", "room:live"}), "2");
  EXPECT_EQ(redis->cli({"HLEN", "room-owners:live"}), "2");
  EXPECT_EQ(scrape(a->port(), "cloudgaming_crashed_members_released_total"), 0.0);
  EXPECT_EQ(scrape(b->port(), "cloudgaming_crashed_members_released_total"), 0.0);
  // Relay still works both ways, and it is the first thing either has heard.
  on_a->send(offer("still-here"));
  expect_next_is(*on_b, offer("still-here"), "peer on B");
  on_b->send(offer("me-too"));
  expect_next_is(*on_a, offer("me-too"), "peer on A");

  // A clean exit leaves the registry, so nobody takes it for a crash; the drain's own notice is
  // the peer's only one. (The peer on B answers the drain's close, so the drain ends at once and
  // leaves the bus its budget to flush.)
  std::thread closer([&] {
    const auto closed = on_b->wait_close();
    EXPECT_TRUE(closed && closed->code == 1012);
  });
  EXPECT_EQ(b->stop(SIGTERM), 0);
  closer.join();
  EXPECT_EQ(on_a->recv(), kPeerDisconnected);
  // A is alive; C crashed (its entry stays, expired, until it is forgotten); B left, and left
  // nothing behind for a sweep to find or a release to announce a second time.
  EXPECT_EQ(redis->cli({"ZCARD", "signal:instances"}), "2");
  EXPECT_EQ(redis->cli({"EXISTS", "signal:instance:" + b_id}), "0");
  EXPECT_EQ(redis->cli({"SCARD", "room:live"}), "1");
  EXPECT_EQ(redis->cli({"HLEN", "room-owners:live"}), "1");
}

TEST(CrashNotice, AJoinThatTakesADeadMembersSeatTellsThePeersButNotTheNewcomer) {
  auto redis = RedisProcess::start();
  ASSERT_TRUE(redis);
  auto a = start_ready(crash_env(*redis, "3"));
  auto b = start_ready(crash_env(*redis, "3"));
  ASSERT_TRUE(a && b);
  // A member whose instance is gone and was never in the registry (so no sweep will find it,
  // only a join into the full room).
  redis->cli({"SADD", "room:ghost", "client:ghost"});
  redis->cli({"HSET", "room-owners:ghost", "client:ghost", "server:gone"});
  auto host = join(a->port(), "ghost");
  auto remote = join(b->port(), "ghost");
  ASSERT_TRUE(host && remote);
  ASSERT_EQ(redis->cli({"SCARD", "room:ghost"}), "3");

  auto newcomer = join(a->port(), "ghost");
  ASSERT_TRUE(newcomer);
  EXPECT_EQ(admission(*newcomer), "admitted") << "the dead member's seat goes to the newcomer";
  EXPECT_EQ(redis->cli({"SISMEMBER", "room:ghost", "client:ghost"}), "0");
  EXPECT_EQ(host->recv(), kPeerDisconnected);
  EXPECT_EQ(remote->recv(), kPeerDisconnected);
  // Once each, and never to the newcomer, which had not met the dead member.
  host->send(offer("marker"));
  expect_next_is(*newcomer, offer("marker"), "newcomer");
  expect_next_is(*remote, offer("marker"), "peer on B");
  newcomer->send(offer("hi"));
  expect_next_is(*host, offer("hi"), "host");
  EXPECT_EQ(scrape(a->port(), "cloudgaming_crashed_members_released_total"), 1.0);
}

TEST(CrashNotice, AnInstanceThatStalledPastItsLeaseTakesItsMembersBack) {
  auto redis = RedisProcess::start();
  ASSERT_TRUE(redis);
  auto a = start_ready(crash_env(*redis, "2"));
  auto b = start_ready(crash_env(*redis, "2"));
  ASSERT_TRUE(a && b);
  auto host = join(a->port(), "stall");
  auto browser = join(b->port(), "stall");
  ASSERT_TRUE(host && browser);
  browser->send(offer("before"));
  ASSERT_EQ(host->recv(), offer("before"));

  // Frozen past its lease (but not past the 3 s reply timeout, so its connections stay up): to
  // the others it is dead, and they release its member.
  ASSERT_EQ(kill(b->pid(), SIGSTOP), 0);
  const auto notice = host->recv(kNoticeDeadline);
  ASSERT_EQ(kill(b->pid(), SIGCONT), 0);
  EXPECT_EQ(notice, kPeerDisconnected);
  // Back, it finds its lease had expired and puts its member back in the room.
  EXPECT_TRUE(b->wait_for_output("Instance lease had expired")) << b->output();
  EXPECT_TRUE(wait_until([&] { return redis->cli({"SCARD", "room:stall"}) == "2"; }));
  browser->send(offer("after"));
  expect_next_is(*host, offer("after"), "host");
}
