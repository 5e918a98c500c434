// The client's pure core: reconnect policy, backoff, URLs, admission, resume bookkeeping and the
// reading of bad input, driven without sockets.
#include "session_core.hpp"

#include <gtest/gtest.h>

using namespace signal_client;
using namespace signal_client::detail;

namespace {

Options resumable() {
  Options o;
  o.url = "ws://h:1";
  o.room_id = "r";
  o.reconnect.initial_delay_ms = 100;
  return o;
}

std::vector<Event> events(const Actions& actions) {
  std::vector<Event> out;
  for (const auto& a : actions) {
    if (a.kind == Action::kEmit) out.push_back(a.event);
  }
  return out;
}

std::vector<std::string> writes(const Actions& actions) {
  std::vector<std::string> out;
  for (const auto& a : actions) {
    if (a.kind == Action::kWrite) out.push_back(a.text);
  }
  return out;
}

const Action* find(const Actions& actions, Action::Kind kind) {
  for (const auto& a : actions) {
    if (a.kind == kind) return &a;
  }
  return nullptr;
}

std::string offer(const std::string& sdp) {
  return R"({"type":"offer","sdp":")" + sdp + R"("})";
}

const char* kWelcome =
    R"({"type":"control","action":"welcome","payload":{"clientId":"me","roomId":"r","peers":1,)"
    R"("sessionId":"s1","resumeToken":"tok","resumeWindowMs":20000}})";

// A core admitted into a resumable session (token "tok").
SessionCore admitted(Options o = resumable()) {
  SessionCore c(o, [] { return 0.5; });
  c.connect("/");
  c.on_opened(0);
  c.on_message(kWelcome, 0);
  return c;
}

}  // namespace

TEST(ClientPolicy, RetriesExactlyTheJavaScriptClientsCodes) {
  ReconnectOptions r;
  for (int code : {1006, 1011, 1012, 1013}) EXPECT_TRUE(retries(code, r)) << code;
  for (int code : {1000, 1001, 1002, 1005, 1007, 1008, 1009, 4001}) {
    EXPECT_FALSE(retries(code, r)) << code;
  }
  r.retry_codes.push_back(4001);
  EXPECT_FALSE(retries(4001, r)) << "a takeover is never retried, whatever retry_codes says";
  r.enabled = false;
  EXPECT_FALSE(retries(1006, r));
}

TEST(ClientPolicy, BackoffIsExponentialCappedWithEqualJitter) {
  ReconnectOptions r;  // 500 ms, x2, cap 15 s
  EXPECT_EQ(backoff_delay_ms(1, 1006, r, 0.0), 250);
  EXPECT_EQ(backoff_delay_ms(1, 1006, r, 1.0), 500);
  EXPECT_EQ(backoff_delay_ms(3, 1006, r, 0.5), 1500);   // base 2000: [1000, 2000]
  EXPECT_EQ(backoff_delay_ms(20, 1006, r, 0.0), 7500);  // capped at 15000
  EXPECT_EQ(backoff_delay_ms(20, 1006, r, 1.0), 15000);
  EXPECT_EQ(backoff_delay_ms(1, 1012, r, 0.0), 1000) << "at least draining_delay_ms after 1012";
}

TEST(ClientUrl, ParsesWsAndWssWithPortsPathsAndIpv6) {
  std::string err;
  auto u = parse_url("wss://signal.example.com/sig?x=1", &err);
  ASSERT_TRUE(u) << err;
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->host, "signal.example.com");
  EXPECT_EQ(u->port, "443");
  EXPECT_EQ(u->host_header, "signal.example.com");
  EXPECT_EQ(u->target, "/sig?x=1");
  u = parse_url("ws://[::1]:3002", &err);
  ASSERT_TRUE(u) << err;
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, "3002");
  EXPECT_EQ(u->host_header, "[::1]:3002");
  EXPECT_EQ(u->target, "/");
  u = parse_url("ws://127.0.0.1:9?roomId=old", &err);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->target, "/?roomId=old");
  for (const char* bad : {"http://h", "h:1", "ws://", "ws://h:99999", "ws://h:x", "ws://u@h"}) {
    EXPECT_FALSE(parse_url(bad, &err)) << bad;
  }
}

TEST(ClientUrl, TargetCarriesRoomTokenEventsAndResume) {
  Options o;
  o.room_id = "game:42";
  o.token = "a.b+c";
  o.resume = false;
  o.events = true;
  EXPECT_EQ(build_target("/sig?x=1&roomId=old", o, nullptr),
            "/sig?x=1&roomId=game:42&token=a.b%2Bc&events=1");
  o.events = false;
  o.token.clear();
  EXPECT_EQ(build_target("/", o, nullptr), "/?roomId=game:42");
  o.resume = true;
  EXPECT_EQ(build_target("/", o, nullptr), "/?roomId=game:42&events=1&resume=1");
  ResumeFrom from{"tok", 7};
  EXPECT_EQ(build_target("/", o, &from), "/?roomId=game:42&events=1&resume=tok&lastSeq=7");
}

TEST(ClientCore, AdmittedAtTheWelcomeWhichFlushesTheQueue) {
  SessionCore c(resumable(), [] { return 0.5; });
  Actions out;
  EXPECT_TRUE(c.send(offer("early"), out));
  EXPECT_TRUE(out.empty()) << "queued before connect";
  auto a = c.connect("/");
  ASSERT_NE(find(a, Action::kOpen), nullptr);
  EXPECT_EQ(find(a, Action::kOpen)->text, "/?roomId=r&events=1&resume=1");
  EXPECT_TRUE(c.on_opened(0).empty()) << "the upgrade alone is not admission";
  a = c.on_message(kWelcome, 0);
  auto ev = events(a);
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].type, EventType::welcome);
  EXPECT_EQ(ev[0].client_id, "me");
  EXPECT_EQ(ev[1].type, EventType::open);
  EXPECT_FALSE(ev[1].reconnected);
  EXPECT_EQ(writes(a), std::vector<std::string>{offer("early")});
  EXPECT_EQ(c.state(), State::open);
  EXPECT_EQ(c.resume_token(), "tok");
  EXPECT_EQ(c.sent(), 1);
}

TEST(ClientCore, ResumeAsksWithTokenAndLastSeqAndResendsAfterReceived) {
  SessionCore c = admitted();
  Actions out;
  for (int i = 1; i <= 3; ++i) c.send(offer("h" + std::to_string(i)), out);
  auto ev = events(c.on_message(R"({"type":"offer","sdp":"p1","seq":1})", 0));
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].sdp, "p1");
  EXPECT_TRUE(events(c.on_message(R"({"type":"offer","sdp":"p1","seq":1})", 0)).empty())
      << "a duplicate never reaches the app";
  auto a = c.on_closed(1006, "", false, 100);
  ev = events(a);
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].type, EventType::close);
  EXPECT_TRUE(ev[0].will_retry);
  EXPECT_EQ(ev[0].delay_ms, 75);  // 100 ms base, jitter 0.5
  EXPECT_EQ(ev[1].type, EventType::reconnecting);
  ASSERT_NE(find(a, Action::kSchedule), nullptr);
  c.send(offer("h4"), out);  // queued while away
  a = c.on_timer();
  ASSERT_NE(find(a, Action::kOpen), nullptr);
  EXPECT_EQ(find(a, Action::kOpen)->text, "/?roomId=r&events=1&resume=tok&lastSeq=1");
  c.on_opened(200);
  a = c.on_message(
      R"({"type":"control","action":"resumed","payload":{"recovered":true,"received":1}})", 200);
  EXPECT_EQ(writes(a), (std::vector<std::string>{offer("h2"), offer("h3"), offer("h4")}));
  ev = events(a);
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].type, EventType::resumed);
  EXPECT_TRUE(ev[0].recovered);
  EXPECT_EQ(ev[0].received, 1);
  EXPECT_EQ(ev[1].type, EventType::open);
  EXPECT_TRUE(ev[1].reconnected);
  EXPECT_TRUE(ev[1].resumed_session);
  EXPECT_EQ(c.client_id(), "me");
  EXPECT_EQ(c.sent(), 4);
}

TEST(ClientCore, RecoveredFalseLosesTheSessionThenTheWelcomeAdmits) {
  SessionCore c = admitted();
  Actions out;
  c.on_closed(1006, "", false, 10);
  c.on_timer();
  c.send(offer("stale"), out);
  c.on_opened(20);
  auto ev = events(
      c.on_message(R"({"type":"control","action":"resumed","payload":{"recovered":false}})", 20));
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].type, EventType::resumed);
  EXPECT_FALSE(ev[0].recovered);
  EXPECT_EQ(ev[1].type, EventType::session_lost);
  EXPECT_EQ(ev[1].reason, "not-recovered");
  EXPECT_EQ(ev[1].dropped, 1);
  auto a = c.on_message(kWelcome, 20);
  EXPECT_TRUE(writes(a).empty()) << "nothing of the old negotiation is sent";
  ev = events(a);
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[1].type, EventType::open);
  EXPECT_FALSE(ev[1].resumed_session);
}

TEST(ClientCore, ResumeNeedingMessagesNoLongerKeptStartsAFreshSession) {
  Options o = resumable();
  o.resume_history = 1;
  SessionCore c = admitted(o);
  Actions out;
  for (int i = 1; i <= 3; ++i) c.send(offer("h" + std::to_string(i)), out);
  c.on_closed(1006, "", false, 10);
  c.on_timer();
  c.on_opened(20);
  auto a = c.on_message(
      R"({"type":"control","action":"resumed","payload":{"recovered":true,"received":0}})", 20);
  ASSERT_NE(find(a, Action::kClose), nullptr);
  EXPECT_EQ(find(a, Action::kClose)->reason, "Session lost");
  bool lost = false;
  for (const auto& e : events(a))
    lost |= e.type == EventType::session_lost && e.reason == "cannot-resend";
  EXPECT_TRUE(lost);
  ASSERT_NE(find(a, Action::kSchedule), nullptr);
  a = c.on_timer();
  EXPECT_EQ(find(a, Action::kOpen)->text, "/?roomId=r&events=1&resume=1");
}

TEST(ClientCore, RefusedTokenLosesTheSessionAndRetriesFresh) {
  SessionCore c = admitted();
  c.on_closed(1006, "", false, 10);
  c.on_timer();
  auto ev = events(c.on_closed(1008, "Invalid resume token", true, 20));
  ASSERT_GE(ev.size(), 2u);
  EXPECT_TRUE(ev[0].will_retry);
  EXPECT_EQ(ev[1].type, EventType::session_lost);
  EXPECT_EQ(ev[1].reason, "invalid-token");
  EXPECT_EQ(find(c.on_timer(), Action::kOpen)->text, "/?roomId=r&events=1&resume=1");
}

TEST(ClientCore, RefusalsCloseForGoodAndAttemptsAreBounded) {
  for (auto [code, reason] : {std::pair<int, const char*>{1008, "Unauthorized"},
                              {1000, "Room is full"},
                              {4001, "Session resumed elsewhere"},
                              {1009, ""}}) {
    SessionCore c(resumable(), [] { return 0.5; });
    c.connect("/");
    c.on_opened(0);
    auto a = c.on_closed(code, reason, true, 1);
    EXPECT_EQ(find(a, Action::kSchedule), nullptr) << code;
    auto ev = events(a);
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_FALSE(ev[0].will_retry);
    EXPECT_EQ(c.state(), State::closed);
  }
  Options o = resumable();
  o.reconnect.max_attempts = 2;
  SessionCore c(o, [] { return 0.5; });
  c.connect("/");
  std::vector<int> delays;
  for (int i = 0; i < 3; ++i) {
    auto ev = events(c.on_closed(1013, "Rate limited", true, i));
    delays.push_back(ev[0].will_retry ? ev[0].delay_ms : -1);
    c.on_timer();
  }
  EXPECT_EQ(delays, (std::vector<int>{75, 150, -1}));
  EXPECT_EQ(c.state(), State::closed);
}

TEST(ClientCore, AConnectionOpenLongEnoughResetsTheAttempts) {
  SessionCore c(resumable(), [] { return 0.5; });
  c.connect("/");
  c.on_closed(1006, "", false, 0);
  c.on_timer();
  c.on_closed(1006, "", false, 0);
  EXPECT_EQ(c.attempt(), 2);
  c.on_timer();
  c.on_opened(1000);
  c.on_message(kWelcome, 1000);
  auto ev = events(c.on_closed(1006, "", false, 1000 + 2000));
  EXPECT_EQ(c.attempt(), 1);
  EXPECT_EQ(ev[0].delay_ms, 75);
}

TEST(ClientCore, BadInputIsReportedAndChangesNothing) {
  SessionCore c = admitted();
  for (const char* bad : {"not json", "[1,2]", R"({"type":7})", R"({"type":"bogus"})",
                          R"({"type":"offer"})", R"({"type":"candidate","candidate":5})",
                          R"({"type":"control"})", "{\"type\":\"offer\",\"sdp\":\"\xff\"}"}) {
    auto ev = events(c.on_message(bad, 0));
    ASSERT_EQ(ev.size(), 1u) << bad;
    EXPECT_EQ(ev[0].type, EventType::protocol_error) << bad;
    EXPECT_FALSE(ev[0].reason.empty());
  }
  EXPECT_EQ(c.state(), State::open);
  auto ev = events(c.on_message(
      R"({"type":"candidate","candidate":"c","sdpMid":"0","sdpMLineIndex":1,"seq":1})", 0));
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].candidate, "c");
  EXPECT_EQ(ev[0].sdp_mid, "0");
  EXPECT_EQ(ev[0].sdp_mline_index, 1);
}
