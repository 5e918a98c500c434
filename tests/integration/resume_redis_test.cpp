// Resumable sessions across instances on one Redis (PROTOCOL.md section 8): resume on another
// instance, after the old one was SIGKILLed, and through a drain, exactly once and in order.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <boost/json.hpp>
#include <thread>

#include "harness.hpp"
#include "resume_support.hpp"
#include "ws_client.hpp"

using namespace testing_support;
namespace json = boost::json;

namespace {

using Clock = std::chrono::steady_clock;

struct Fleet {
  std::unique_ptr<RedisProcess> redis;
  std::unique_ptr<ServerProcess> one;
  std::unique_ptr<ServerProcess> two;
};

Fleet start_fleet(const Env& extra = {}) {
  Fleet f;
  f.redis = RedisProcess::start();
  if (!f.redis) return f;
  Env env = relaxed_limits({{"REDIS_URL", f.redis->url()}, {"RESUME_SECRET", "fleet-secret"}});
  for (const auto& [k, v] : extra) env[k] = v;
  f.one = ServerProcess::start(env);
  f.two = ServerProcess::start(env);
  for (auto* s : {f.one.get(), f.two.get()}) {
    if (!s) continue;
    EXPECT_TRUE(wait_until([&] { return http_get(s->port(), "/readyz").status == 200; }));
  }
  return f;
}

bool forwarded(ServerProcess& s, double n) {
  return wait_until([&] { return scrape(s.port(), "cloudgaming_messages_forwarded_total") >= n; });
}

// Reads numbered offers in order (each seq one past `last_seq`) into `sdps`: until `count` are
// there, or (count 0) until the socket closes or stays silent for `quiet`. False on a gap, a
// repeat or a message missing before the deadline.
bool read_in_order(WsClient& c, int64_t& last_seq, std::vector<std::string>& sdps,
                   std::size_t count = 0, std::chrono::milliseconds quiet = 5000ms) {
  while (count == 0 || sdps.size() < count) {
    auto text = c.recv(count == 0 ? quiet : 3000ms);
    if (!text) return count == 0;
    const auto v = json::parse(*text);
    if (seq_of(v) != last_seq + 1) {
      ADD_FAILURE() << "expected seq " << last_seq + 1 << ", got " << *text;
      return false;
    }
    last_seq = seq_of(v);
    sdps.push_back(sdp_of(v));
  }
  return true;
}

}  // namespace

TEST(ResumeRedis, ResumesOnAnotherInstanceWithTheGapReplayedOnce) {
  Fleet f = start_fleet();
  ASSERT_TRUE(f.one && f.two);
  ResumableClient a = open_session(f.one->port(), "x");
  ASSERT_TRUE(a.ws);
  auto b = connect_to(f.two->port(), "roomId=x");
  ASSERT_TRUE(b);
  ASSERT_EQ(action_of(next(*a.ws)), "peer-joined");  // seq 1
  a.ws->send(offer("a1"));
  ASSERT_EQ(b->recv(), offer("a1"));
  b->send(offer("m1"));
  auto m1 = next(*a.ws);
  EXPECT_EQ(sdp_of(m1), "m1");
  EXPECT_EQ(seq_of(m1), 2);
  a.ws.reset();  // dropped without a close frame; the client comes back through the other one
  b->send(offer("m2"));
  b->send(offer("m3"));
  ASSERT_TRUE(forwarded(*f.two, 3));
  auto a2 = connect_to(f.two->port(), resume_query("x", a.token, 2));
  ASSERT_TRUE(a2);
  const auto resumed = next(*a2);
  ASSERT_EQ(action_of(resumed), "resumed") << json::serialize(resumed);
  EXPECT_EQ(resumed.at("payload").at("recovered").as_bool(), true);
  EXPECT_EQ(resumed.at("payload").at("received").as_int64(), 1);
  for (int i = 2; i <= 3; ++i) {
    const auto v = next(*a2);
    EXPECT_EQ(sdp_of(v), "m" + std::to_string(i)) << json::serialize(v);
    EXPECT_EQ(seq_of(v), i + 1) << json::serialize(v);
  }
  // Live traffic both ways, same identity, numbering continued; the peer never heard a
  // departure (its marker arrives alone).
  b->send(offer("m4"));
  const auto m4 = next(*a2);
  EXPECT_EQ(sdp_of(m4), "m4");
  EXPECT_EQ(seq_of(m4), 5);
  a2->send(offer("a2"));
  EXPECT_EQ(b->recv(), offer("a2"));
  EXPECT_EQ(f.redis->cli({"HGET", "room-owners:x", a.client_id}),
            f.redis->cli({"HGET", "resume:" + a.token.substr(0, 32), "owner"}));
  // The first instance let its copy go (its suspension ended) without a departure: the peer's
  // next message is the marker, and the session's next number follows m4.
  EXPECT_TRUE(
      wait_until([&] { return scrape(f.one->port(), "cloudgaming_suspended_sessions") == 0.0; }));
  a2->send(offer("marker-a"));
  EXPECT_EQ(b->recv(), offer("marker-a"));
  b->send(offer("marker-b"));
  const auto marker = next(*a2);
  EXPECT_EQ(sdp_of(marker), "marker-b");
  EXPECT_EQ(seq_of(marker), 6);
  EXPECT_EQ(f.redis->cli({"SCARD", "room:x"}), "2");
}

TEST(ResumeRedis, ResumesAfterItsInstanceWasKilled) {
  Fleet f = start_fleet();
  ASSERT_TRUE(f.one && f.two);
  ResumableClient a = open_session(f.one->port(), "k");
  ASSERT_TRUE(a.ws);
  auto b = connect_to(f.two->port(), "roomId=k");
  ASSERT_TRUE(b);
  ASSERT_EQ(action_of(next(*a.ws)), "peer-joined");  // seq 1
  for (int i = 1; i <= 3; ++i) a.ws->send(offer("a" + std::to_string(i)));
  for (int i = 1; i <= 3; ++i) ASSERT_EQ(b->recv(), offer("a" + std::to_string(i)));
  f.one->kill_now();
  // Nobody holds the session now; what the peer sends meanwhile is numbered and kept in Redis.
  for (int i = 1; i <= 5; ++i) b->send(offer("b" + std::to_string(i)));
  ASSERT_TRUE(forwarded(*f.two, 5));
  auto a2 = connect_to(f.two->port(), resume_query("k", a.token, 1));
  ASSERT_TRUE(a2);
  const auto resumed = next(*a2);
  ASSERT_EQ(action_of(resumed), "resumed") << json::serialize(resumed);
  EXPECT_EQ(resumed.at("payload").at("recovered").as_bool(), true);
  EXPECT_EQ(resumed.at("payload").at("received").as_int64(), 3) << "a1-a3 are not sent again";
  for (int i = 1; i <= 5; ++i) {
    const auto v = next(*a2);
    EXPECT_EQ(sdp_of(v), "b" + std::to_string(i)) << json::serialize(v);
    EXPECT_EQ(seq_of(v), i + 1) << json::serialize(v);
  }
  a2->send(offer("a4"));
  EXPECT_EQ(b->recv(), offer("a4")) << "the peer heard no departure before it";
  // Now owned by the live instance: the crash reaper leaves it in the room past the lease TTL.
  EXPECT_EQ(f.redis->cli({"SISMEMBER", "room:k", a.client_id}), "1");
}

// A crashed instance's session is released with its seat, but nothing ends it: its id stays in
// room-resumable:{room}, a set without a TTL, until a relay in the room prunes it. The last member
// to leave takes the set with it, so a room that empties after a crash leaves nothing behind.
TEST(ResumeRedis, EmptiedRoomKeepsNoSessionIdsOfACrashedInstance) {
  Fleet f = start_fleet({{"INSTANCE_LEASE_TTL_MS", "1500"}});
  ASSERT_TRUE(f.one && f.two);
  auto host = connect_to(f.one->port(), "roomId=gone");
  ASSERT_TRUE(host);
  ResumableClient browser = open_session(f.two->port(), "gone");
  ASSERT_TRUE(browser.ws);
  browser.ws->send(offer("before"));
  ASSERT_EQ(host->recv(), offer("before"));
  ASSERT_EQ(f.redis->cli({"SCARD", "room-resumable:gone"}), "1");
  f.two->kill_now();
  // Lease TTL plus a second is the contract; four times that on a loaded machine.
  ASSERT_EQ(host->recv(10000ms), R"({"type":"peer-disconnected"})") << f.one->output();
  EXPECT_EQ(f.redis->cli({"SCARD", "room:gone"}), "1");
  EXPECT_EQ(f.redis->cli({"SCARD", "room-resumable:gone"}), "1") << "no relay has pruned it";
  host->close();
  EXPECT_TRUE(wait_until([&] {
    return f.redis->cli({"EXISTS", "room-resumable:gone"}) == "0";
  })) << f.redis->cli({"SMEMBERS", "room-resumable:gone"});
  EXPECT_EQ(f.redis->cli({"EXISTS", "room:gone"}), "0");
}

TEST(ResumeRedis, DrainHandsSessionsOverWithNothingLostDuplicatedOrReordered) {
  Fleet f = start_fleet();
  ASSERT_TRUE(f.one && f.two);
  ResumableClient a = open_session(f.one->port(), "drain");
  ASSERT_TRUE(a.ws);
  auto b = connect_to(f.two->port(), "roomId=drain");
  ASSERT_TRUE(b);
  ASSERT_EQ(action_of(next(*a.ws)), "peer-joined");  // seq 1
  int64_t last_seq = 1;
  int next_b = 1;
  std::vector<std::string> got;
  // The peer keeps sending while the first instance drains.
  for (; next_b <= 20; ++next_b) b->send(offer("b" + std::to_string(next_b)));
  ASSERT_TRUE(read_in_order(*a.ws, last_seq, got, 10));
  std::thread stopper([&] { EXPECT_EQ(f.one->stop(SIGTERM), 0); });
  for (; next_b <= 40; ++next_b) b->send(offer("b" + std::to_string(next_b)));
  // The client reads until its socket closes (1012), keeping everything numbered.
  ASSERT_TRUE(read_in_order(*a.ws, last_seq, got, 0, 5000ms));
  stopper.join();
  ASSERT_TRUE(forwarded(*f.two, 40));
  auto a2 = connect_to(f.two->port(), resume_query("drain", a.token, last_seq));
  ASSERT_TRUE(a2);
  const auto resumed = next(*a2);
  ASSERT_EQ(action_of(resumed), "resumed") << json::serialize(resumed);
  EXPECT_EQ(resumed.at("payload").at("recovered").as_bool(), true);
  ASSERT_TRUE(read_in_order(*a2, last_seq, got, 40));
  for (int i = 0; i < 40; ++i)
    EXPECT_EQ(got[static_cast<std::size_t>(i)], "b" + std::to_string(i + 1));
  // Nothing twice: the peer's next message takes the next number.
  b->send(offer("end"));
  std::vector<std::string> tail;
  ASSERT_TRUE(read_in_order(*a2, last_seq, tail, 1));
  EXPECT_EQ(tail.front(), "end");
  a2->send(offer("after"));
  EXPECT_EQ(b->recv(), offer("after"));
}

TEST(ResumeRedis, OverflowOnAnotherInstanceAnswersRecoveredFalseAndReleasesTheSeat) {
  Fleet f = start_fleet({{"RESUME_BUFFER_MESSAGES", "2"}});
  ASSERT_TRUE(f.one && f.two);
  ResumableClient a = open_session(f.one->port(), "ovf");
  ASSERT_TRUE(a.ws);
  auto b = connect_to(f.two->port(), "roomId=ovf&events=1");
  ASSERT_TRUE(b);
  ASSERT_EQ(action_of(next(*b)), "welcome");
  a.ws.reset();
  ASSERT_EQ(action_of(next(*b)), "peer-suspended");
  for (int i = 0; i < 5; ++i) b->send(offer("x" + std::to_string(i)));
  ASSERT_TRUE(forwarded(*f.two, 5));
  auto a2 = connect_to(f.two->port(), resume_query("ovf", a.token, 0));
  ASSERT_TRUE(a2);
  const auto resumed = next(*a2);
  ASSERT_EQ(action_of(resumed), "resumed")
      << f.two->output() << f.one->output() << a2->wait_close(100ms).value_or(CloseInfo{}).reason
      << " members: " << f.redis->cli({"SMEMBERS", "room:ovf"}) << " A=" << a.client_id;
  EXPECT_EQ(resumed.at("payload").at("recovered").as_bool(), false);
  const auto welcome = next(*a2);
  ASSERT_EQ(action_of(welcome), "welcome");
  EXPECT_EQ(welcome.at("payload").at("peers").as_int64(), 1) << "the old seat was released";
  EXPECT_EQ(b->recv(), R"({"type":"peer-disconnected"})");
  const auto joined = b->recv();
  EXPECT_TRUE(joined && joined->find("peer-joined") != std::string::npos) << joined.value_or("-");
  EXPECT_EQ(f.redis->cli({"SCARD", "room:ovf"}), "2");
  EXPECT_TRUE(
      wait_until([&] { return scrape(f.one->port(), "cloudgaming_suspended_sessions") == 0.0; }));
}

TEST(ResumeRedis, SubscriberReconnectAsksSessionsToResumeAndTheReplayFillsTheGap) {
  Fleet f = start_fleet();
  ASSERT_TRUE(f.one && f.two);
  ResumableClient a = open_session(f.one->port(), "gap");
  ASSERT_TRUE(a.ws);
  auto b = connect_to(f.two->port(), "roomId=gap");
  ASSERT_TRUE(b);
  ASSERT_EQ(action_of(next(*a.ws)), "peer-joined");  // seq 1
  int64_t last_seq = 1;
  // Every subscriber connection drops; what the peer sends meanwhile reaches no instance live.
  f.redis->cli({"CLIENT", "KILL", "TYPE", "pubsub"});
  for (int i = 1; i <= 20; ++i) b->send(offer("g" + std::to_string(i)));
  std::vector<std::string> got;
  ASSERT_TRUE(read_in_order(*a.ws, last_seq, got, 0, 5000ms));
  auto closed = a.ws->wait_close(100ms);
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->code, 1013);
  EXPECT_EQ(closed->reason, "Session resync");
  EXPECT_GE(scrape(f.one->port(), "cloudgaming_bus_gaps_total"), 1.0);
  const auto missed = static_cast<double>(20 - got.size());
  ASSERT_TRUE(forwarded(*f.two, 20));
  auto a2 = connect_to(f.one->port(), resume_query("gap", a.token, last_seq));
  ASSERT_TRUE(a2);
  const auto resumed = next(*a2);
  ASSERT_EQ(action_of(resumed), "resumed") << json::serialize(resumed);
  EXPECT_EQ(resumed.at("payload").at("recovered").as_bool(), true);
  ASSERT_TRUE(read_in_order(*a2, last_seq, got, 20));
  EXPECT_EQ(scrape(f.one->port(), "cloudgaming_bus_messages_recovered_total"), missed);
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(got[static_cast<std::size_t>(i)], "g" + std::to_string(i + 1));
  b->send(offer("end"));
  std::vector<std::string> tail;
  ASSERT_TRUE(read_in_order(*a2, last_seq, tail, 1));
  EXPECT_EQ(tail.front(), "end") << "nothing twice";
}

TEST(ResumeRedis, RedisRestartedEmptyAnswersRecoveredFalseNeverAPartialReplay) {
  Fleet f = start_fleet();
  ASSERT_TRUE(f.one && f.two);
  ResumableClient a = open_session(f.one->port(), "rst");
  ASSERT_TRUE(a.ws);
  auto b = connect_to(f.two->port(), "roomId=rst");
  ASSERT_TRUE(b);
  ASSERT_EQ(action_of(next(*a.ws)), "peer-joined");
  for (int i = 1; i <= 10; ++i) b->send(offer("r" + std::to_string(i)));
  const uint16_t port = f.redis->port();
  f.redis->kill_now();
  f.redis = RedisProcess::start(port);
  ASSERT_TRUE(f.redis);
  int64_t last_seq = 1;
  std::vector<std::string> before;
  ASSERT_TRUE(read_in_order(*a.ws, last_seq, before, 0, 8000ms));
  auto closed = a.ws->wait_close(100ms);
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->code, 1013);
  for (auto* s : {f.one.get(), f.two.get()}) {
    ASSERT_TRUE(wait_until([&] { return http_get(s->port(), "/readyz").status == 200; }, 8000ms));
  }
  auto a2 = connect_to(f.one->port(), resume_query("rst", a.token, last_seq));
  ASSERT_TRUE(a2);
  const auto resumed = next(*a2);
  ASSERT_EQ(action_of(resumed), "resumed") << json::serialize(resumed);
  EXPECT_EQ(resumed.at("payload").at("recovered").as_bool(), false) << "Redis lost the session";
  const auto welcome = next(*a2);
  ASSERT_EQ(action_of(welcome), "welcome");
  EXPECT_EQ(welcome.at("payload").at("peers").as_int64(), 1) << "the old member let its seat go";
  a2->send(offer("fresh"));
  EXPECT_EQ(b->recv(5000ms), R"({"type":"peer-disconnected"})");
  EXPECT_EQ(b->recv(), offer("fresh"));
}

namespace {

// A resume while the peer keeps sending: the claim's reply and the room's traffic travel on two
// Redis connections, so messages numbered just after the claim can be read before its reply.
// Every one of them still arrives once and in order, on the same instance and on another one.

// One drop and resume of a session while its peer streams; the claim lands mid-stream, so part
// of the stream is replayed and the rest arrives live.
void drop_and_resume_mid_stream(Fleet& f, const std::string& room, bool on_another_instance) {
  ResumableClient a = open_session(f.one->port(), room);
  ASSERT_TRUE(a.ws);
  auto b = connect_to(f.two->port(), "roomId=" + room);
  ASSERT_TRUE(b);
  ASSERT_EQ(action_of(next(*a.ws)), "peer-joined");  // seq 1
  a.ws.reset();
  ASSERT_TRUE(
      wait_until([&] { return scrape(f.one->port(), "cloudgaming_suspended_sessions") == 1.0; }));
  // The peer sends until the resume has been answered, paced (one message per 200 us, a busy
  // signaling burst) so the reader's queue never fills.
  constexpr int kCap = 10000;
  std::atomic<bool> stop{false};
  std::atomic<int> sent{0};
  std::thread sender([&] {
    while (!stop && sent < kCap) {
      b->send(offer("s" + std::to_string(sent++)));
      std::this_thread::sleep_for(200us);
    }
  });
  const double before = scrape(f.two->port(), "cloudgaming_messages_forwarded_total").value_or(0);
  EXPECT_TRUE(forwarded(*f.two, before + 20));
  auto& target = on_another_instance ? *f.two : *f.one;
  auto a2 = connect_to(target.port(), resume_query(room, a.token, 1));
  boost::json::value resumed;
  if (a2) resumed = next(*a2);
  const int sent_at_resume = sent;
  stop = true;
  sender.join();
  EXPECT_LT(sent_at_resume, kCap) << "the stream was still flowing when the resume was answered";
  ASSERT_TRUE(a2);
  ASSERT_EQ(action_of(resumed), "resumed") << json::serialize(resumed);
  EXPECT_EQ(resumed.at("payload").at("recovered").as_bool(), true);
  int64_t last_seq = 1;
  std::vector<std::string> sdps;
  ASSERT_TRUE(read_in_order(*a2, last_seq, sdps, static_cast<std::size_t>(sent.load())))
      << sdps.size() << " of " << sent << " read";
  for (int i = 0; i < sent; ++i) ASSERT_EQ(sdps[i], "s" + std::to_string(i));
  a2->close();
  b->close();
}

void resume_while_the_peer_sends(bool on_another_instance) {
  Fleet f =
      start_fleet({{"RESUME_BUFFER_MESSAGES", "100000"}, {"RESUME_BUFFER_BYTES", "67108864"}});
  ASSERT_TRUE(f.one && f.two);
  // The race is narrow: several rounds give it several chances.
  for (int round = 0; round < 8 && !testing::Test::HasFailure(); ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    drop_and_resume_mid_stream(f, "busy-" + std::to_string(round), on_another_instance);
  }
  auto& target = on_another_instance ? *f.two : *f.one;
  EXPECT_EQ(scrape(target.port(), "cloudgaming_resume_resyncs_total"), 0.0)
      << "no gap to resync: nothing was lost in flight";
}

}  // namespace

TEST(ResumeRedis, ResumeOnTheSameInstanceWhileThePeerSendsLosesNothing) {
  resume_while_the_peer_sends(false);
}

TEST(ResumeRedis, ResumeOnAnotherInstanceWhileThePeerSendsLosesNothing) {
  resume_while_the_peer_sends(true);
}
