// Resumable sessions (PROTOCOL.md section 8) against the real binary: numbering, suspension,
// resume with replay, takeover, honest failure, refused tokens, window expiry, Redis bus.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "harness.hpp"
#include "resume_support.hpp"
#include "ws_client.hpp"

using namespace testing_support;
namespace json = boost::json;

namespace {

using Clock = std::chrono::steady_clock;

// A relayed offer with its seq, as a numbered client receives it.
void expect_offer(WsClient& c, const std::string& sdp, int64_t seq) {
  const auto v = next(c);
  ASSERT_TRUE(v.is_object()) << "no message (expected " << sdp << ")";
  EXPECT_EQ(v.at("type").as_string(), "offer") << json::serialize(v);
  EXPECT_EQ(v.at("sdp").as_string(), sdp) << json::serialize(v);
  EXPECT_EQ(seq_of(v), seq) << json::serialize(v);
}

// The stale-member probe is off: these tests hold clients that do not read, which a probe would
// rightly release (it has tests of its own).
Env resumable_env(const Env& extra = {}) {
  Env env = relaxed_limits({{"STALE_MEMBER_PROBE_MS", "0"}});
  for (const auto& [k, v] : extra) env[k] = v;
  return env;
}

}  // namespace

TEST(Resume, WelcomeCarriesTheTokenAndOnlyOptedInClientsSeeSeq) {
  auto server = ServerProcess::start(resumable_env());
  ASSERT_TRUE(server);
  auto a = connect_to(server->port(), "roomId=num&resume=1");
  ASSERT_TRUE(a);
  const auto welcome = next(*a);
  ASSERT_EQ(action_of(welcome), "welcome");
  const auto& p = welcome.at("payload");
  EXPECT_EQ(p.at("roomId").as_string(), "num");
  EXPECT_EQ(p.at("peers").as_int64(), 0);
  EXPECT_EQ(p.at("resumeWindowMs").as_int64(), 20000);
  EXPECT_EQ(p.at("sessionId").as_string().size(), 32u);
  EXPECT_FALSE(p.at("resumeToken").as_string().empty());
  auto b = connect_to(server->port(), "roomId=num");
  ASSERT_TRUE(b);
  // peer-joined is numbered too: it is the first thing the session was sent after the welcome.
  const auto joined = next(*a);
  EXPECT_EQ(action_of(joined), "peer-joined");
  EXPECT_EQ(seq_of(joined), 1);
  b->send(offer("one"));
  b->send(offer("two"));
  expect_offer(*a, "one", 2);
  expect_offer(*a, "two", 3);
  // The client that did not opt in receives exactly what it sent before this feature.
  a->send(offer("back"));
  EXPECT_EQ(b->recv(), offer("back"));
  // A schema error goes to the sender alone, numbered like the rest.
  a->send(R"({"type":"offer"})");
  const auto err = next(*a);
  EXPECT_EQ(action_of(err), "schema-error");
  EXPECT_EQ(seq_of(err), 4);
}

TEST(Resume, SilentDropTakeoverReplaysTheGapExactlyOnceInUnderASecond) {
  auto server = ServerProcess::start(resumable_env());
  ASSERT_TRUE(server);
  ResumableClient a = open_session(server->port(), "blip");
  ASSERT_TRUE(a.ws);
  auto b = connect_to(server->port(), "roomId=blip");
  ASSERT_TRUE(b);
  ASSERT_EQ(action_of(next(*a.ws)), "peer-joined");  // seq 1
  b->send(offer("m1"));
  expect_offer(*a.ws, "m1", 2);
  a.ws->send(offer("from-a-1"));
  ASSERT_EQ(b->recv(), offer("from-a-1"));
  // From here `a` is silent (its Wi-Fi dropped): the server still believes its socket is open.
  b->send(offer("m2"));
  b->send(offer("m3"));
  ASSERT_TRUE(wait_until(
      [&] { return scrape(server->port(), "cloudgaming_messages_forwarded_total") == 4.0; }));
  const auto start = Clock::now();
  auto a2 = connect_to(server->port(), resume_query("blip", a.token, 2));
  ASSERT_TRUE(a2);
  const auto resumed = next(*a2);
  ASSERT_EQ(action_of(resumed), "resumed") << json::serialize(resumed);
  EXPECT_EQ(resumed.at("payload").at("recovered").as_bool(), true);
  EXPECT_EQ(resumed.at("payload").at("received").as_int64(), 1);
  expect_offer(*a2, "m2", 3);
  expect_offer(*a2, "m3", 4);
  // The acceptance: resumed, the gap replayed, within 1 s (it takes milliseconds). Bounded at 4x
  // for a loaded machine; a resume that waits for a timeout (the heartbeat, the window) still
  // fails.
  const auto elapsed = Clock::now() - start;
  EXPECT_LT(elapsed, 4000ms);
  // The old socket is told why it was closed.
  auto closed = a.ws->wait_close(3000ms);
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->code, 4001);
  EXPECT_EQ(closed->reason, "Session resumed elsewhere");
  // Live traffic continues the numbering, both ways, with the same identity: the peer never
  // heard a departure (the marker arrives first and alone).
  b->send(offer("m4"));
  expect_offer(*a2, "m4", 5);
  a2->send(offer("from-a-2"));
  EXPECT_EQ(b->recv(), offer("from-a-2"));
  // Once the old session has ended (two connections left), a departure it caused would reach
  // the peer before this marker; and the next number proves nothing was replayed twice.
  ASSERT_TRUE(
      wait_until([&] { return scrape(server->port(), "cloudgaming_active_connections") == 2.0; }));
  a2->send(offer("marker-a"));
  EXPECT_EQ(b->recv(), offer("marker-a"));
  b->send(offer("marker-b"));
  expect_offer(*a2, "marker-b", 6);
  EXPECT_EQ(scrape(server->port(), "cloudgaming_resumes_total{result=\"recovered\"}"), 1.0);
  EXPECT_EQ(scrape(server->port(), "cloudgaming_replayed_messages_total"), 2.0);
}

TEST(Resume, DroppedSocketIsSuspendedSeatHeldAndPeersToldBothWays) {
  auto server = ServerProcess::start(resumable_env());
  ASSERT_TRUE(server);
  ResumableClient a = open_session(server->port(), "susp");
  ASSERT_TRUE(a.ws);
  auto b = connect_to(server->port(), "roomId=susp&events=1");
  ASSERT_TRUE(b);
  ASSERT_EQ(action_of(next(*b)), "welcome");
  ASSERT_EQ(action_of(next(*a.ws)), "peer-joined");
  a.ws->send(offer("a1"));
  a.ws->send(offer("a2"));
  ASSERT_EQ(b->recv(), offer("a1"));
  ASSERT_EQ(b->recv(), offer("a2"));
  a.ws.reset();  // TCP gone without a close frame
  const auto suspended = next(*b);
  EXPECT_EQ(action_of(suspended), "peer-suspended") << json::serialize(suspended);
  EXPECT_EQ(suspended.at("payload").at("clientId").as_string(), a.client_id);
  EXPECT_TRUE(
      wait_until([&] { return scrape(server->port(), "cloudgaming_suspended_sessions") == 1.0; }));
  // The seat is held: a stranger finds the room full.
  auto c = connect_to(server->port(), "roomId=susp");
  ASSERT_TRUE(c);
  auto refused = c->wait_close(3000ms);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->reason, "Room is full");
  b->send(offer("while-away"));
  auto a2 = connect_to(server->port(), resume_query("susp", a.token, 1));
  ASSERT_TRUE(a2);
  const auto resumed = next(*a2);
  ASSERT_EQ(action_of(resumed), "resumed");
  EXPECT_EQ(resumed.at("payload").at("received").as_int64(), 2);
  expect_offer(*a2, "while-away", 2);
  const auto back = next(*b);
  EXPECT_EQ(action_of(back), "peer-resumed");
  EXPECT_EQ(back.at("payload").at("clientId").as_string(), a.client_id);
  EXPECT_EQ(scrape(server->port(), "cloudgaming_suspended_sessions"), 0.0);
  EXPECT_EQ(scrape(server->port(), "cloudgaming_sessions_suspended_total"), 1.0);
}

TEST(Resume, OverflowAnswersRecoveredFalseThenAFreshJoin) {
  auto server = ServerProcess::start(resumable_env({{"RESUME_BUFFER_MESSAGES", "3"}}));
  ASSERT_TRUE(server);
  ResumableClient a = open_session(server->port(), "ovf");
  ASSERT_TRUE(a.ws);
  auto b = connect_to(server->port(), "roomId=ovf&events=1");
  ASSERT_TRUE(b);
  ASSERT_EQ(action_of(next(*b)), "welcome");
  ASSERT_EQ(action_of(next(*a.ws)), "peer-joined");  // seq 1
  a.ws.reset();
  ASSERT_EQ(action_of(next(*b)), "peer-suspended");
  for (int i = 0; i < 5; ++i) b->send(offer("lost-" + std::to_string(i)));
  // Relayed (and so numbered into the suspended session's log) before the resume comes.
  ASSERT_TRUE(wait_until(
      [&] { return scrape(server->port(), "cloudgaming_messages_forwarded_total") == 5.0; }));
  auto a2 = connect_to(server->port(), resume_query("ovf", a.token, 1));
  ASSERT_TRUE(a2);
  const auto resumed = next(*a2);
  ASSERT_EQ(action_of(resumed), "resumed");
  EXPECT_EQ(resumed.at("payload").at("recovered").as_bool(), false);
  const auto welcome = next(*a2);
  ASSERT_EQ(action_of(welcome), "welcome") << "never a partial replay";
  EXPECT_NE(welcome.at("payload").at("resumeToken").as_string(), a.token);
  EXPECT_NE(welcome.at("payload").at("clientId").as_string(), a.client_id);
  EXPECT_EQ(welcome.at("payload").at("peers").as_int64(), 1);
  // The peer learns the old member is gone and a new one came: it must renegotiate too.
  EXPECT_EQ(b->recv(), R"({"type":"peer-disconnected"})");
  EXPECT_EQ(action_of(next(*b)), "peer-joined");
  b->send(offer("fresh"));
  expect_offer(*a2, "fresh", 1);
  EXPECT_EQ(scrape(server->port(), "cloudgaming_resumes_total{result=\"not_recovered\"}"), 1.0);
}

TEST(Resume, WindowExpiryReleasesTheSeatWithPeerDisconnected) {
  auto server = ServerProcess::start(resumable_env({{"RESUME_WINDOW_MS", "400"}}));
  ASSERT_TRUE(server);
  ResumableClient a = open_session(server->port(), "exp");
  ASSERT_TRUE(a.ws);
  auto b = connect_to(server->port(), "roomId=exp");
  ASSERT_TRUE(b);
  a.ws.reset();
  const auto start = Clock::now();
  // A peer without events hears nothing until the window passes, then the usual departure.
  EXPECT_EQ(b->recv(3000ms), R"({"type":"peer-disconnected"})");
  EXPECT_GE(Clock::now() - start, 300ms);
  EXPECT_EQ(scrape(server->port(), "cloudgaming_resume_windows_expired_total"), 1.0);
  // The seat is free again, and the expired token is answered honestly.
  auto a2 = connect_to(server->port(), resume_query("exp", a.token, 0));
  ASSERT_TRUE(a2);
  const auto resumed = next(*a2);
  ASSERT_EQ(action_of(resumed), "resumed");
  EXPECT_EQ(resumed.at("payload").at("recovered").as_bool(), false);
  EXPECT_EQ(action_of(next(*a2)), "welcome");
}

TEST(Resume, BadTokensAndLastSeqAreRefusedWithoutDisturbingAnyone) {
  auto server = ServerProcess::start(resumable_env());
  ASSERT_TRUE(server);
  ResumableClient a = open_session(server->port(), "tok");
  ASSERT_TRUE(a.ws);
  auto b = connect_to(server->port(), "roomId=tok");
  ASSERT_TRUE(b);
  ASSERT_EQ(action_of(next(*a.ws)), "peer-joined");  // seq 1
  std::string forged = a.token;
  forged.back() = forged.back() == '0' ? '1' : '0';
  const std::vector<std::pair<std::string, std::string>> cases = {
      {resume_query("tok", forged, 0), "Invalid resume token"},
      {resume_query("tok", "not-a-token", 0), "Invalid resume token"},
      {resume_query("other-room", a.token, 0), "Invalid resume token"},
      {"roomId=tok&resume=" + a.token + "&lastSeq=-1", "Invalid lastSeq"},
      {"roomId=tok&resume=" + a.token + "&lastSeq=abc", "Invalid lastSeq"},
  };
  for (const auto& [query, reason] : cases) {
    auto c = connect_to(server->port(), query);
    ASSERT_TRUE(c);
    auto closed = c->wait_close(3000ms);
    ASSERT_TRUE(closed) << query;
    EXPECT_EQ(closed->code, 1008) << query;
    EXPECT_EQ(closed->reason, reason) << query;
  }
  // Nobody noticed: the session and its peer still relay, numbering unbroken.
  b->send(offer("still"));
  expect_offer(*a.ws, "still", 2);
  a.ws->send(offer("here"));
  EXPECT_EQ(b->recv(), offer("here"));
  EXPECT_EQ(scrape(server->port(), "cloudgaming_resumes_total{result=\"refused\"}"), 5.0);
  // A session that left with a close frame is over: its token is refused, not resumed.
  a.ws->close();
  EXPECT_EQ(b->recv(), R"({"type":"peer-disconnected"})");
  auto late = connect_to(server->port(), resume_query("tok", a.token, 1));
  ASSERT_TRUE(late);
  auto closed = late->wait_close(3000ms);
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->code, 1008);
  EXPECT_EQ(closed->reason, "Invalid resume token");
}

TEST(Resume, SharedSecretTokenFromAnotherProcessIsGenuineButNotHere) {
  // RESUME_SECRET shared: a second instance accepts the token as genuine; it holds nothing of
  // the session, so the answer is recovered:false, not 1008.
  auto first = ServerProcess::start(resumable_env({{"RESUME_SECRET", "fleet-secret"}}));
  auto second = ServerProcess::start(resumable_env({{"RESUME_SECRET", "fleet-secret"}}));
  ASSERT_TRUE(first && second);
  ResumableClient a = open_session(first->port(), "fleet");
  ASSERT_TRUE(a.ws);
  auto a2 = connect_to(second->port(), resume_query("fleet", a.token, 0));
  ASSERT_TRUE(a2);
  const auto resumed = next(*a2);
  ASSERT_EQ(action_of(resumed), "resumed");
  EXPECT_EQ(resumed.at("payload").at("recovered").as_bool(), false);
  EXPECT_EQ(action_of(next(*a2)), "welcome");
  // Without the shared secret the same token is a forgery there.
  auto other = ServerProcess::start(resumable_env());
  ASSERT_TRUE(other);
  auto c = connect_to(other->port(), resume_query("fleet", a.token, 0));
  ASSERT_TRUE(c);
  auto closed = c->wait_close(3000ms);
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->reason, "Invalid resume token");
}

TEST(Resume, RedisBusResumesOnTheSameInstanceWithTheSeatHeldInRedis) {
  auto redis = RedisProcess::start();
  ASSERT_TRUE(redis);
  auto server = ServerProcess::start(resumable_env({{"REDIS_URL", redis->url()}}));
  ASSERT_TRUE(server);
  ASSERT_TRUE(wait_until([&] { return http_get(server->port(), "/readyz").status == 200; }));
  ResumableClient a = open_session(server->port(), "rb");
  ASSERT_TRUE(a.ws);
  auto b = connect_to(server->port(), "roomId=rb");
  ASSERT_TRUE(b);
  ASSERT_EQ(action_of(next(*a.ws)), "peer-joined");  // seq 1
  a.ws.reset();
  ASSERT_TRUE(
      wait_until([&] { return scrape(server->port(), "cloudgaming_suspended_sessions") == 1.0; }));
  EXPECT_EQ(redis->cli({"SCARD", "room:rb"}), "2") << "the suspended member keeps its seat";
  b->send(offer("r1"));
  b->send(offer("r2"));
  auto a2 = connect_to(server->port(), resume_query("rb", a.token, 1));
  ASSERT_TRUE(a2);
  const auto resumed = next(*a2);
  ASSERT_EQ(action_of(resumed), "resumed");
  EXPECT_EQ(resumed.at("payload").at("recovered").as_bool(), true);
  expect_offer(*a2, "r1", 2);
  expect_offer(*a2, "r2", 3);
  a2->send(offer("back"));
  EXPECT_EQ(b->recv(), offer("back"));
  a2->close();
  EXPECT_EQ(b->recv(), R"({"type":"peer-disconnected"})");
  EXPECT_TRUE(wait_until([&] { return redis->cli({"SCARD", "room:rb"}) == "1"; }));
}
