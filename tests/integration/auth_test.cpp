// ENABLE_AUTH end to end: connect rows 8-10 with real HS256 tokens, and secrets kept out of logs.
#include <gtest/gtest.h>
#include <openssl/hmac.h>

#include <boost/json.hpp>
#include <chrono>

#include "../support/test_jwk.hpp"
#include "admission.hpp"
#include "harness.hpp"
#include "ws_client.hpp"

using namespace testing_support;
namespace json = boost::json;

namespace {

constexpr const char* kSecret = "integration-secret-5f1c";

using test_jwk::b64url;

std::string hs256(const json::object& claims, const std::string& secret = kSecret) {
  const std::string input =
      b64url(R"({"alg":"HS256","typ":"JWT"})") + "." + b64url(json::serialize(claims));
  unsigned char mac[32];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
  return input + "." + b64url(std::string_view(reinterpret_cast<char*>(mac), len));
}

int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Env auth_env(Env extra = {}) {
  extra["ENABLE_AUTH"] = "true";
  extra["JWT_SECRET"] = kSecret;
  extra["LOG_LEVEL"] = "debug";
  return relaxed_limits(extra);
}

std::optional<CloseInfo> outcome(uint16_t port, const std::string& target,
                                 const ConnectOptions& options = {}) {
  std::string err;
  auto c = WsClient::connect(port, target, options, &err);
  EXPECT_TRUE(c) << err;
  if (!c) return CloseInfo{-1, err};
  return refusal(*c);  // nullopt: admitted (its probe was answered)
}

}  // namespace

TEST(Auth, RowsEightToTenWithRealTokens) {
  auto server = ServerProcess::start(auth_env());
  ASSERT_TRUE(server);
  const uint16_t port = server->port();
  const int64_t now = now_s();
  const std::string good = hs256({{"rooms", json::array{"a1"}}, {"exp", now + 60}});
  // One signature character changed, whatever it was (overwriting the end with fixed characters
  // leaves the token intact when it already ended with them).
  std::string tampered = good;
  char& sig = tampered[tampered.size() - 10];
  sig = sig == 'A' ? 'B' : 'A';

  auto missing = outcome(port, "/?roomId=a1");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->code, 1008);
  EXPECT_EQ(missing->reason, "Unauthorized");

  for (const std::string& bad :
       {std::string("not-a-token"), hs256({{"exp", now + 60}}, "another-secret"),
        hs256({{"exp", now - 3600}}), tampered}) {
    auto r = outcome(port, "/?roomId=a1&token=" + bad);
    ASSERT_TRUE(r) << bad;
    EXPECT_EQ(r->code, 1008) << bad;
    EXPECT_EQ(r->reason, "Unauthorized") << bad;
  }

  auto forbidden = outcome(port, "/?roomId=other&token=" + good);
  ASSERT_TRUE(forbidden);
  EXPECT_EQ(forbidden->code, 1008);
  EXPECT_EQ(forbidden->reason, "Forbidden");

  // Admitted by query token and by Authorization header; they relay to each other.
  std::string err;
  auto a = WsClient::connect(port, "/?roomId=a1&token=" + good, {}, &err);
  ConnectOptions bearer;
  bearer.headers["Authorization"] = "Bearer " + good;
  auto b = WsClient::connect(port, "/?roomId=a1", bearer, &err);
  ASSERT_TRUE(a && b) << err;
  a->send(R"({"type":"offer","sdp":"authed"})");
  EXPECT_EQ(b->recv(), R"({"type":"offer","sdp":"authed"})");

  EXPECT_EQ(scrape(port, R"(cloudgaming_connections_rejected_total{reason="unauthorized"})"), 5.0);
  EXPECT_EQ(scrape(port, R"(cloudgaming_connections_rejected_total{reason="forbidden"})"), 1.0);

  // Neither the secret nor any token reaches the logs, even at debug level.
  a->close();
  b->close();
  EXPECT_EQ(server->stop(SIGTERM), 0);
  const std::string out = server->output();
  EXPECT_NE(out.find("Token refused"), std::string::npos) << "debug logs were on";
  EXPECT_EQ(out.find(kSecret), std::string::npos);
  EXPECT_EQ(out.find(good.substr(good.rfind('.') + 1)), std::string::npos);
  EXPECT_EQ(out.find(good.substr(0, good.find('.'))), std::string::npos);
}

TEST(Auth, CheaperRowsComeFirst) {
  auto server = ServerProcess::start(auth_env({{"ALLOWED_ORIGINS", "https://game.example"}}));
  ASSERT_TRUE(server);
  ConnectOptions foreign;
  foreign.headers["Origin"] = "https://evil.example";
  auto r = outcome(server->port(), "/?roomId=a1", foreign);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->reason, "Origin not allowed");
  auto bad_room = outcome(server->port(), "/?roomId=bad%20room");
  ASSERT_TRUE(bad_room);
  EXPECT_EQ(bad_room->reason, "Invalid roomId");
}

TEST(Auth, UnusableKeysStopStartUp) {
  auto r = run_server_to_exit({{"WS_PORT", "0"},
                               {"ENABLE_AUTH", "true"},
                               {"JWT_ALG", "RS256"},
                               {"JWT_PUBLIC_KEY", "-----BEGIN PUBLIC KEY-----\nnope\n"}},
                              {});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("JWT_PUBLIC_KEY"), std::string::npos) << r.output;
  r = run_server_to_exit({{"WS_PORT", "0"},
                          {"ENABLE_AUTH", "true"},
                          {"JWT_ALG", "RS256"},
                          {"JWKS_URL", "ftp://127.0.0.1/jwks.json"}},
                         {});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("JWKS_URL"), std::string::npos) << r.output;
  r = run_server_to_exit({{"WS_PORT", "0"}, {"ENABLE_AUTH", "true"}}, {});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("JWT_SECRET"), std::string::npos) << r.output;
}
