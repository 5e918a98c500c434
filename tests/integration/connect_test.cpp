// Connect checks on one instance (PROTOCOL.md section 1 rows 3-12, their order) and plain HTTP.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "admission.hpp"
#include "harness.hpp"
#include "ws_client.hpp"

using namespace testing_support;

namespace {

// Tests that open many connections must not trip the per-IP connection limit by accident.
Env relaxed(Env env = {}) {
  env.emplace("RATE_LIMIT_CONN_PER_10S", "100000");
  return env;
}

constexpr char kKey[] = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

// A hand-written upgrade request; `host_line` is the whole Host line (or empty for none).
std::string upgrade_request(const std::string& target, const std::string& host_line) {
  return "GET " + target + " HTTP/1.1\r\n" + host_line +
         "Upgrade: websocket\r\nConnection: Upgrade\r\n" + kKey +
         "Sec-WebSocket-Version: 13\r\n\r\n";
}

// Connects and expects the server to complete the upgrade and then close with code/reason.
void expect_refused(uint16_t port, const std::string& target, const ConnectOptions& options,
                    int code, const std::string& reason) {
  SCOPED_TRACE("target " + target);
  std::string err;
  auto c = WsClient::connect(port, target, options, &err);
  ASSERT_TRUE(c) << "the upgrade itself must succeed (checks run after it): " << err;
  const auto closed = c->wait_close();
  ASSERT_TRUE(closed) << "expected close " << code << " '" << reason << "', socket stayed open";
  EXPECT_EQ(closed->code, code);
  EXPECT_EQ(closed->reason, reason);
}

void expect_refused(uint16_t port, const std::string& target, int code, const std::string& reason) {
  expect_refused(port, target, ConnectOptions{}, code, reason);
}

// Connects and expects the server to admit the client: its probe is answered (see admission()),
// where a refusal would have closed the socket instead. Returns the open client.
std::unique_ptr<WsClient> expect_accepted(uint16_t port, const std::string& target,
                                          const ConnectOptions& options = {}) {
  SCOPED_TRACE("target " + target);
  std::string err;
  auto c = WsClient::connect(port, target, options, &err);
  EXPECT_TRUE(c) << err;
  if (!c) return nullptr;
  const std::string outcome = admission(*c);
  if (outcome != "admitted") {
    ADD_FAILURE() << "expected to be admitted, got " << outcome;
    return nullptr;
  }
  return c;
}

ConnectOptions with_headers(std::map<std::string, std::string> headers) {
  ConnectOptions o;
  o.headers = std::move(headers);
  return o;
}

double rejected(uint16_t port, const std::string& reason) {
  const auto v = scrape(port, "cloudgaming_connections_rejected_total{reason=\"" + reason + "\"}");
  EXPECT_TRUE(v) << "no rejected sample for reason " << reason;
  return v.value_or(-1);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// HTTP on the WebSocket port.

TEST(ConnectHttp, PlainGetWithoutUpgradeIs426) {
  auto server = ServerProcess::start();
  ASSERT_TRUE(server);
  for (const std::string target : {"/", "/?roomId=abc", "/some/path"}) {
    const HttpResult r = http_get(server->port(), target);
    EXPECT_EQ(r.status, 426u) << target;
    EXPECT_EQ(r.body, "Upgrade Required") << target;
  }
}

TEST(ConnectHttp, HealthzAndReadyzAnswerOnTheMainPort) {
  auto server = ServerProcess::start();
  ASSERT_TRUE(server);
  const HttpResult health = http_get(server->port(), "/healthz");
  EXPECT_EQ(health.status, 200u);
  EXPECT_EQ(health.body, "ok");
  const HttpResult ready = http_get(server->port(), "/readyz");
  EXPECT_EQ(ready.status, 200u);
  EXPECT_EQ(ready.body, "ready");
}

TEST(ConnectHttp, HealthPortServesProbesAndNotFoundElsewhere) {
  auto server = ServerProcess::start({{"HEALTH_PORT", "0"}});
  ASSERT_TRUE(server);
  ASSERT_TRUE(server->health_port());
  const uint16_t hp = *server->health_port();
  EXPECT_NE(hp, server->port());
  const HttpResult health = http_get(hp, "/healthz");
  EXPECT_EQ(health.status, 200u);
  EXPECT_EQ(health.body, "ok");
  const HttpResult ready = http_get(hp, "/readyz");
  EXPECT_EQ(ready.status, 200u);
  EXPECT_EQ(ready.body, "ready");
  EXPECT_EQ(http_get(hp, "/metrics").status, 200u);
  const HttpResult other = http_get(hp, "/");
  EXPECT_EQ(other.status, 404u);
  EXPECT_EQ(other.body, "not-found");
}

TEST(ConnectHttp, NoHealthPortUnlessSet) {
  auto server = ServerProcess::start();
  ASSERT_TRUE(server);
  EXPECT_FALSE(server->health_port());
}

// ---------------------------------------------------------------------------------------------
// Row 3: no Host header.

TEST(ConnectRow3, UpgradeWithoutHostIsAcceptedThenClosedMalformed) {
  auto server = ServerProcess::start(relaxed());
  ASSERT_TRUE(server);
  const RawUpgradeResult r = raw_upgrade(server->port(), upgrade_request("/?roomId=abc", ""));
  EXPECT_EQ(r.http_status, 101) << "the refusal must come after the upgrade";
  ASSERT_TRUE(r.close) << "no close frame after the 101";
  EXPECT_EQ(r.close->code, 1008);
  EXPECT_EQ(r.close->reason, "Malformed request");
}

TEST(ConnectRow3, EmptyHostHeaderIsMalformedToo) {
  auto server = ServerProcess::start(relaxed());
  ASSERT_TRUE(server);
  const RawUpgradeResult r =
      raw_upgrade(server->port(), upgrade_request("/?roomId=abc", "Host: \r\n"));
  EXPECT_EQ(r.http_status, 101);
  ASSERT_TRUE(r.close) << "no close frame after the 101";
  EXPECT_EQ(r.close->code, 1008);
  EXPECT_EQ(r.close->reason, "Malformed request");
}

TEST(ConnectRow3, SameRawRequestWithHostIsAdmitted) {
  // Control for the two tests above: the hand-written request is otherwise acceptable.
  auto server = ServerProcess::start(relaxed());
  ASSERT_TRUE(server);
  const RawUpgradeResult r = raw_upgrade(
      server->port(),
      upgrade_request("/?roomId=abc", "Host: 127.0.0.1:" + std::to_string(server->port()) + "\r\n"),
      300ms);
  EXPECT_EQ(r.http_status, 101);
  EXPECT_FALSE(r.close) << "closed with " << r.close->code << " '" << r.close->reason << "'";
}

// ---------------------------------------------------------------------------------------------
// Row 4: roomId.

TEST(ConnectRow4, MissingOrEmptyRoomIdIsInvalid) {
  auto server = ServerProcess::start(relaxed());
  ASSERT_TRUE(server);
  const uint16_t port = server->port();
  expect_refused(port, "/", 1008, "Invalid roomId");
  expect_refused(port, "/?other=1", 1008, "Invalid roomId");
  expect_refused(port, "/?roomId=", 1008, "Invalid roomId");
  expect_refused(port, "/?roomId", 1008, "Invalid roomId");
  expect_refused(port, "/?roomid=abc", 1008, "Invalid roomId");  // the name is case-sensitive
}

TEST(ConnectRow4, InvalidCharactersAreRefused) {
  auto server = ServerProcess::start(relaxed());
  ASSERT_TRUE(server);
  const uint16_t port = server->port();
  for (const std::string room : {"a%20b", "a+b", "a/b", "a*b", "a%2Fb", "room%21", "%C3%A9t%C3%A9",
                                 "a%00b", "a@b", "%3Cx%3E"}) {
    expect_refused(port, "/?roomId=" + room, 1008, "Invalid roomId");
  }
}

TEST(ConnectRow4, EveryAllowedCharacterIsAccepted) {
  auto server = ServerProcess::start(relaxed());
  ASSERT_TRUE(server);
  auto a = expect_accepted(server->port(), "/?roomId=AZaz09_-:.");
  EXPECT_TRUE(a);
  // Any path is fine; percent-encoded allowed characters decode to a valid id.
  auto b = expect_accepted(server->port(), "/any/path?roomId=r%3A1");
  EXPECT_TRUE(b);
}

TEST(ConnectRow4, LengthIsCheckedAgainstRoomIdMaxLength) {
  auto server = ServerProcess::start(relaxed({{"ROOM_ID_MAX_LENGTH", "8"}}));
  ASSERT_TRUE(server);
  const uint16_t port = server->port();
  expect_refused(port, "/?roomId=123456789", 1008, "Invalid roomId");
  expect_refused(port, "/?roomId=" + std::string(100, 'x'), 1008, "Invalid roomId");
  auto exact = expect_accepted(port, "/?roomId=12345678");
  EXPECT_TRUE(exact) << "exactly ROOM_ID_MAX_LENGTH characters must be accepted";
  auto single = expect_accepted(port, "/?roomId=1");
  EXPECT_TRUE(single);
}

TEST(ConnectRow4, LengthIsMeasuredAfterPercentDecoding) {
  auto server = ServerProcess::start(relaxed({{"ROOM_ID_MAX_LENGTH", "8"}}));
  ASSERT_TRUE(server);
  // 24 characters on the wire, 8 once decoded (as URLSearchParams reads it).
  auto ok = expect_accepted(server->port(), "/?roomId=%41%42%43%44%45%46%47%48");
  EXPECT_TRUE(ok);
  expect_refused(server->port(), "/?roomId=%41%42%43%44%45%46%47%48%49", 1008, "Invalid roomId");
}

TEST(ConnectRow4, FirstRoomIdParameterWins) {
  auto server = ServerProcess::start(relaxed());
  ASSERT_TRUE(server);
  auto ok = expect_accepted(server->port(), "/?roomId=good&roomId=bad%20one");
  EXPECT_TRUE(ok);
  expect_refused(server->port(), "/?roomId=bad%20one&roomId=good", 1008, "Invalid roomId");
}

TEST(ConnectRow4, DefaultMaxLengthIs64) {
  auto server = ServerProcess::start(relaxed());
  ASSERT_TRUE(server);
  auto exact = expect_accepted(server->port(), "/?roomId=" + std::string(64, 'r'));
  EXPECT_TRUE(exact);
  expect_refused(server->port(), "/?roomId=" + std::string(65, 'r'), 1008, "Invalid roomId");
}

// ---------------------------------------------------------------------------------------------
// Row 5: REQUIRE_WSS.

TEST(ConnectRow5, RequireWssRefusesWithoutForwardedHttps) {
  auto server = ServerProcess::start(relaxed({{"REQUIRE_WSS", "true"}}));
  ASSERT_TRUE(server);
  const uint16_t port = server->port();
  expect_refused(port, "/?roomId=wss", 1008, "WSS required");
  expect_refused(port, "/?roomId=wss", with_headers({{"X-Forwarded-Proto", "http"}}), 1008,
                 "WSS required");
  auto ok = expect_accepted(port, "/?roomId=wss", with_headers({{"X-Forwarded-Proto", "https"}}));
  EXPECT_TRUE(ok);
  EXPECT_EQ(rejected(port, "wss_required"), 2.0);
}

TEST(ConnectRow5, WithoutRequireWssPlainConnectionsAreAdmitted) {
  auto server = ServerProcess::start(relaxed({{"REQUIRE_WSS", "false"}}));
  ASSERT_TRUE(server);
  auto ok = expect_accepted(server->port(), "/?roomId=plain");
  EXPECT_TRUE(ok);
}

// ---------------------------------------------------------------------------------------------
// Row 6: ALLOWED_ORIGINS.

TEST(ConnectRow6, OriginsAreMatchedAgainstTheList) {
  auto server = ServerProcess::start(relaxed(
      {{"ROOM_CAPACITY", "100"}, {"ALLOWED_ORIGINS", "https://game.example.com, localhost"}}));
  ASSERT_TRUE(server);
  const uint16_t port = server->port();
  const std::string target = "/?roomId=origins";
  expect_refused(port, target, with_headers({{"Origin", "https://evil.example.com"}}), 1008,
                 "Origin not allowed");
  expect_refused(port, target, with_headers({{"Origin", "https://game.example.com.evil.net"}}),
                 1008, "Origin not allowed");
  expect_refused(port, target, with_headers({{"Origin", "https://example.com"}}), 1008,
                 "Origin not allowed");
  auto exact =
      expect_accepted(port, target, with_headers({{"Origin", "https://game.example.com"}}));
  EXPECT_TRUE(exact);
  // A bare host entry is read as http://localhost and matches any port of that hostname.
  auto bare = expect_accepted(port, target, with_headers({{"Origin", "http://localhost:8080"}}));
  EXPECT_TRUE(bare);
  // Native hosts send no Origin at all.
  auto none = expect_accepted(port, target);
  EXPECT_TRUE(none);
  EXPECT_EQ(rejected(port, "origin_not_allowed"), 3.0);
}

TEST(ConnectRow6, EntriesMatchByHostOrHostname) {
  auto server = ServerProcess::start(
      relaxed({{"ROOM_CAPACITY", "100"},
               {"ALLOWED_ORIGINS", "game.example.com:8443,https://app.example.net"}}));
  ASSERT_TRUE(server);
  const uint16_t port = server->port();
  const std::string target = "/?roomId=hosts";
  // Admitted clients stay connected: one leaving would send the next a peer-disconnected.
  std::vector<std::unique_ptr<WsClient>> admitted;
  for (const std::string origin : {"https://game.example.com:8443", "http://game.example.com",
                                   "http://app.example.net", "https://app.example.net:4443"}) {
    SCOPED_TRACE(origin);
    auto c = expect_accepted(port, target, with_headers({{"Origin", origin}}));
    EXPECT_TRUE(c);
    admitted.push_back(std::move(c));
  }
  for (const std::string origin :
       {"https://example.com", "https://sub.game.example.com", "null", "https://app.example.org"}) {
    SCOPED_TRACE(origin);
    expect_refused(port, target, with_headers({{"Origin", origin}}), 1008, "Origin not allowed");
  }
}

TEST(ConnectRow6, WithoutAllowedOriginsAnyOriginIsAdmitted) {
  auto server = ServerProcess::start(relaxed());
  ASSERT_TRUE(server);
  auto ok = expect_accepted(server->port(), "/?roomId=any-origin",
                            with_headers({{"Origin", "https://whoever.example.org"}}));
  EXPECT_TRUE(ok);
}

// ---------------------------------------------------------------------------------------------
// Row 7: SUBPROTOCOL.

TEST(ConnectRow7, SubprotocolMustBeOfferedAndIsSelected) {
  auto server =
      ServerProcess::start(relaxed({{"ROOM_CAPACITY", "100"}, {"SUBPROTOCOL", "signal.v1"}}));
  ASSERT_TRUE(server);
  const uint16_t port = server->port();
  const std::string target = "/?roomId=subproto";
  expect_refused(port, target, 1008, "Subprotocol required");
  ConnectOptions other;
  other.subprotocols = {"chat"};
  expect_refused(port, target, other, 1008, "Subprotocol required");

  ConnectOptions offered;
  offered.subprotocols = {"signal.v1"};
  auto a = expect_accepted(port, target, offered);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->subprotocol(), "signal.v1");

  ConnectOptions among;
  among.subprotocols = {"chat", "signal.v1"};
  auto b = expect_accepted(port, target, among);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->subprotocol(), "signal.v1");
  EXPECT_EQ(rejected(port, "subprotocol_required"), 2.0);
}

// ---------------------------------------------------------------------------------------------
// Row 11: connections per IP.

TEST(ConnectRow11, FourthConnectionWithinTenSecondsIsRateLimited) {
  auto server = ServerProcess::start({{"RATE_LIMIT_CONN_PER_10S", "3"}, {"ROOM_CAPACITY", "10"}});
  ASSERT_TRUE(server);
  const uint16_t port = server->port();
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(expect_accepted(port, "/?roomId=rl"));
    ASSERT_TRUE(clients.back()) << "connection " << i + 1 << " is within the limit";
  }
  expect_refused(port, "/?roomId=rl", 1013, "Rate limited");
  // A different room does not help: the limit is per IP.
  expect_refused(port, "/?roomId=rl-other", 1013, "Rate limited");
  EXPECT_EQ(rejected(port, "rate_limited"), 2.0);
  EXPECT_EQ(scrape(port, "cloudgaming_rate_limit_drops_total{scope=\"connect_ip\"}"), 2.0);
  // The admitted ones are unaffected.
  clients[0]->send(R"({"type":"offer","sdp":"x"})");
  EXPECT_EQ(clients[1]->recv(), R"({"type":"offer","sdp":"x"})");
}

TEST(ConnectRow11, RateLimitedConnectionsDoNotTakeARoomSlot) {
  // TRUST_PROXY lets one test play several client IPs through X-Forwarded-For.
  auto server = ServerProcess::start(
      {{"RATE_LIMIT_CONN_PER_10S", "1"}, {"ROOM_CAPACITY", "2"}, {"TRUST_PROXY", "true"}});
  ASSERT_TRUE(server);
  const uint16_t port = server->port();
  const std::string target = "/?roomId=rl-slot";
  auto a = expect_accepted(port, target, with_headers({{"X-Forwarded-For", "10.0.0.1"}}));
  ASSERT_TRUE(a);
  for (int i = 0; i < 3; ++i) {
    expect_refused(port, target, with_headers({{"X-Forwarded-For", "10.0.0.1"}}), 1013,
                   "Rate limited");
  }
  // The limit is per IP, and the refused attempts left the second slot free.
  auto b = expect_accepted(port, target, with_headers({{"X-Forwarded-For", "10.0.0.2"}}));
  ASSERT_TRUE(b) << "rate-limited connections took a room slot";
  expect_refused(port, target, with_headers({{"X-Forwarded-For", "10.0.0.3"}}), 1000,
                 "Room is full");
  EXPECT_EQ(scrape(port, "cloudgaming_active_connections"), 2.0);
}

TEST(ConnectRow11, BehindAProxyTheAddressItAppendedIsTheClientNotWhatTheClientWrote) {
  // One trusted proxy appends the address it saw; whatever the client put before it is its own.
  auto server = ServerProcess::start(
      {{"RATE_LIMIT_CONN_PER_10S", "1"}, {"ROOM_CAPACITY", "10"}, {"TRUST_PROXY", "true"}});
  ASSERT_TRUE(server);
  const uint16_t port = server->port();
  const std::string target = "/?roomId=xff";
  auto a = expect_accepted(port, target, with_headers({{"X-Forwarded-For", "1.1.1.1, 10.0.0.9"}}));
  ASSERT_TRUE(a);
  // A fresh first entry does not buy a fresh identity.
  expect_refused(port, target, with_headers({{"X-Forwarded-For", "2.2.2.2, 10.0.0.9"}}), 1013,
                 "Rate limited");
  expect_refused(port, target, with_headers({{"X-Forwarded-For", "10.0.0.9"}}), 1013,
                 "Rate limited");
  auto b = expect_accepted(port, target, with_headers({{"X-Forwarded-For", "1.1.1.1, 10.0.0.8"}}));
  ASSERT_TRUE(b) << "another client behind the proxy is another address";
}

TEST(ConnectRow11, TrustedProxyHopsCountsEntriesFromTheRight) {
  // Two trusted proxies: the client is the second entry from the right.
  auto server = ServerProcess::start({{"RATE_LIMIT_CONN_PER_10S", "1"},
                                      {"ROOM_CAPACITY", "10"},
                                      {"TRUST_PROXY", "true"},
                                      {"TRUSTED_PROXY_HOPS", "2"}});
  ASSERT_TRUE(server);
  const uint16_t port = server->port();
  const std::string target = "/?roomId=xff2";
  auto a = expect_accepted(port, target,
                           with_headers({{"X-Forwarded-For", "6.6.6.6, 10.0.0.7, 172.16.0.1"}}));
  ASSERT_TRUE(a);
  expect_refused(port, target, with_headers({{"X-Forwarded-For", "7.7.7.7, 10.0.0.7, 172.16.0.2"}}),
                 1013, "Rate limited");
}

// ---------------------------------------------------------------------------------------------
// Row 12: ROOM_CAPACITY.

TEST(ConnectRow12, ThirdClientFindsTheRoomFullWithDefaultCapacity) {
  auto server = ServerProcess::start(relaxed());
  ASSERT_TRUE(server);
  const uint16_t port = server->port();
  auto a = expect_accepted(port, "/?roomId=full");
  auto b = expect_accepted(port, "/?roomId=full");
  ASSERT_TRUE(a && b);
  expect_refused(port, "/?roomId=full", 1000, "Room is full");
  // Other rooms are not affected.
  auto other = expect_accepted(port, "/?roomId=not-full");
  EXPECT_TRUE(other);
  EXPECT_EQ(rejected(port, "room_full"), 1.0);
}

TEST(ConnectRow12, CapacityTwoRefusesTheThird) {
  auto server = ServerProcess::start(relaxed({{"ROOM_CAPACITY", "2"}}));
  ASSERT_TRUE(server);
  const uint16_t port = server->port();
  auto a = expect_accepted(port, "/?roomId=cap2");
  auto b = expect_accepted(port, "/?roomId=cap2");
  ASSERT_TRUE(a && b);
  expect_refused(port, "/?roomId=cap2", 1000, "Room is full");
}

TEST(ConnectRow12, CapacityThreeAdmitsTheThirdAndRefusesTheFourth) {
  auto server = ServerProcess::start(relaxed({{"ROOM_CAPACITY", "3"}}));
  ASSERT_TRUE(server);
  const uint16_t port = server->port();
  auto a = expect_accepted(port, "/?roomId=cap3");
  auto b = expect_accepted(port, "/?roomId=cap3");
  auto c = expect_accepted(port, "/?roomId=cap3");
  ASSERT_TRUE(a && b && c);
  expect_refused(port, "/?roomId=cap3", 1000, "Room is full");
  // The third is a real member: it hears the others.
  a->send(R"({"type":"offer","sdp":"to-all"})");
  EXPECT_EQ(b->recv(), R"({"type":"offer","sdp":"to-all"})");
  EXPECT_EQ(c->recv(), R"({"type":"offer","sdp":"to-all"})");
}

TEST(ConnectRow12, RefusedConnectionsDoNotOccupyARoomSlot) {
  auto server = ServerProcess::start(relaxed({{"ROOM_CAPACITY", "2"},
                                              {"ALLOWED_ORIGINS", "https://ok.example"},
                                              {"REQUIRE_WSS", "false"}}));
  ASSERT_TRUE(server);
  const uint16_t port = server->port();
  const std::string target = "/?roomId=slots";
  auto a = expect_accepted(port, target);
  ASSERT_TRUE(a);
  // Refusals by earlier rows, then a room-full refusal: none may keep a slot.
  for (int i = 0; i < 3; ++i) {
    expect_refused(port, target, with_headers({{"Origin", "https://bad.example"}}), 1008,
                   "Origin not allowed");
  }
  auto b = expect_accepted(port, target);
  ASSERT_TRUE(b) << "refused connections took a slot";
  for (int i = 0; i < 3; ++i) expect_refused(port, target, 1000, "Room is full");
  b->close();
  EXPECT_EQ(a->recv(), R"({"type":"peer-disconnected"})");
  auto c = expect_accepted(port, target);
  ASSERT_TRUE(c) << "a room-full refusal kept a slot, or the leaver's slot was not freed";
  c->send(R"({"type":"answer","sdp":"y"})");
  EXPECT_EQ(a->recv(), R"({"type":"answer","sdp":"y"})");
  // Refused clients must never be announced as leaving: a's next message is c's marker.
  c->send(R"({"type":"offer","sdp":"marker"})");
  EXPECT_EQ(a->recv(), R"({"type":"offer","sdp":"marker"})");
  EXPECT_EQ(scrape(port, "cloudgaming_active_connections"), 2.0);
}

// ---------------------------------------------------------------------------------------------
// Order between rows: the first failing row decides.

TEST(ConnectOrder, EarlierRowsWin) {
  auto server = ServerProcess::start(relaxed({{"ROOM_CAPACITY", "1"},
                                              {"REQUIRE_WSS", "true"},
                                              {"ALLOWED_ORIGINS", "https://ok.example"},
                                              {"SUBPROTOCOL", "signal.v1"}}));
  ASSERT_TRUE(server);
  const uint16_t port = server->port();
  // Fill the room so row 12 would fail too.
  ConnectOptions good;
  good.headers = {{"X-Forwarded-Proto", "https"}, {"Origin", "https://ok.example"}};
  good.subprotocols = {"signal.v1"};
  auto member = expect_accepted(port, "/?roomId=order", good);
  ASSERT_TRUE(member);

  ConnectOptions all_bad;
  all_bad.headers = {{"Origin", "https://bad.example"}};
  // Row 3 before row 4 (and everything else).
  const RawUpgradeResult raw =
      raw_upgrade(port, upgrade_request("/?roomId=bad%20id", "Origin: https://bad.example\r\n"));
  ASSERT_TRUE(raw.close);
  EXPECT_EQ(raw.close->code, 1008);
  EXPECT_EQ(raw.close->reason, "Malformed request");
  // Row 4 before rows 5, 6, 7.
  expect_refused(port, "/?roomId=bad%20id", all_bad, 1008, "Invalid roomId");
  // Row 5 before rows 6, 7, 12.
  expect_refused(port, "/?roomId=order", all_bad, 1008, "WSS required");
  // Row 6 before rows 7, 12.
  ConnectOptions wss_only = all_bad;
  wss_only.headers["X-Forwarded-Proto"] = "https";
  expect_refused(port, "/?roomId=order", wss_only, 1008, "Origin not allowed");
  // Row 7 before row 12.
  ConnectOptions good_origin = wss_only;
  good_origin.headers["Origin"] = "https://ok.example";
  expect_refused(port, "/?roomId=order", good_origin, 1008, "Subprotocol required");
  // Only row 12 left.
  expect_refused(port, "/?roomId=order", good, 1000, "Room is full");
}

TEST(ConnectOrder, InvalidRoomIdWinsOverRateLimit) {
  auto server = ServerProcess::start({{"RATE_LIMIT_CONN_PER_10S", "1"}});
  ASSERT_TRUE(server);
  auto a = expect_accepted(server->port(), "/?roomId=first");
  ASSERT_TRUE(a);
  expect_refused(server->port(), "/?roomId=second", 1013, "Rate limited");
  expect_refused(server->port(), "/?roomId=", 1008, "Invalid roomId");
}

TEST(ConnectOrder, RateLimitWinsOverRoomFull) {
  auto server = ServerProcess::start({{"RATE_LIMIT_CONN_PER_10S", "1"}, {"ROOM_CAPACITY", "1"}});
  ASSERT_TRUE(server);
  auto a = expect_accepted(server->port(), "/?roomId=both");
  ASSERT_TRUE(a);
  expect_refused(server->port(), "/?roomId=both", 1013, "Rate limited");
}

// ---------------------------------------------------------------------------------------------
// MAX_CONNECTIONS.

TEST(ConnectMaxConnections, ThirdConnectionIsRefusedAtCapacity) {
  auto server = ServerProcess::start(relaxed({{"MAX_CONNECTIONS", "2"}, {"ROOM_CAPACITY", "100"}}));
  ASSERT_TRUE(server);
  const uint16_t port = server->port();
  auto a = expect_accepted(port, "/?roomId=m1");
  auto b = expect_accepted(port, "/?roomId=m2");
  ASSERT_TRUE(a && b);
  expect_refused(port, "/?roomId=m3", 1013, "Server at capacity");
  // Still at capacity after the refused socket went away: refusals do not leak slots either way.
  expect_refused(port, "/?roomId=m1", 1013, "Server at capacity");
  EXPECT_EQ(rejected(port, "at_capacity"), 2.0);
  // Plain HTTP is not a WebSocket connection and is still served.
  EXPECT_EQ(http_get(port, "/healthz").status, 200u);
  // When one leaves, a new connection gets in again.
  a->close();
  std::unique_ptr<WsClient> c;
  EXPECT_TRUE(wait_until([&] {
    c = WsClient::connect(port, "/?roomId=m1");
    return c && admission(*c) == "admitted";
  }));
}

// ---------------------------------------------------------------------------------------------
// Refusals are counted by reason.

TEST(ConnectMetrics, RejectedConnectionsAreCountedByReason) {
  auto server = ServerProcess::start(relaxed({{"ROOM_CAPACITY", "1"},
                                              {"ALLOWED_ORIGINS", "https://ok.example"},
                                              {"SUBPROTOCOL", "signal.v1"}}));
  ASSERT_TRUE(server);
  const uint16_t port = server->port();
  for (const char* reason :
       {"malformed", "invalid_room", "origin_not_allowed", "subprotocol_required", "room_full",
        "rate_limited", "at_capacity", "wss_required", "draining"}) {
    EXPECT_EQ(rejected(port, reason), 0.0) << reason;
  }
  ConnectOptions good;
  good.subprotocols = {"signal.v1"};
  auto member = expect_accepted(port, "/?roomId=counted", good);
  ASSERT_TRUE(member);

  raw_upgrade(port, upgrade_request("/?roomId=counted", ""));
  expect_refused(port, "/?roomId=", good, 1008, "Invalid roomId");
  expect_refused(port, "/?roomId=a%20b", good, 1008, "Invalid roomId");
  ConnectOptions bad_origin = good;
  bad_origin.headers = {{"Origin", "https://bad.example"}};
  expect_refused(port, "/?roomId=counted", bad_origin, 1008, "Origin not allowed");
  expect_refused(port, "/?roomId=counted", 1008, "Subprotocol required");
  expect_refused(port, "/?roomId=counted", good, 1000, "Room is full");
  expect_refused(port, "/?roomId=counted", good, 1000, "Room is full");

  EXPECT_EQ(rejected(port, "malformed"), 1.0);
  EXPECT_EQ(rejected(port, "invalid_room"), 2.0);
  EXPECT_EQ(rejected(port, "origin_not_allowed"), 1.0);
  EXPECT_EQ(rejected(port, "subprotocol_required"), 1.0);
  EXPECT_EQ(rejected(port, "room_full"), 2.0);
  EXPECT_EQ(rejected(port, "rate_limited"), 0.0);
  EXPECT_EQ(rejected(port, "wss_required"), 0.0);
  EXPECT_EQ(scrape(port, "cloudgaming_active_connections"), 1.0);
}
