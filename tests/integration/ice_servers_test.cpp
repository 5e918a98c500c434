// ICE servers (PROTOCOL.md section 9) through the real binary: who gets them, in which message,
// and credentials any holder of TURN_SECRET (coturn) recomputes. coturn itself is in
// tests/e2e/turn.e2e.mjs.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>

#include "harness.hpp"
#include "resume_support.hpp"
#include "ws_client.hpp"

using namespace testing_support;
namespace json = boost::json;

namespace {

const std::string kSecret = "ice-test-secret-never-logged";
const std::string kUrls =
    "stun:stun.example.com:3478,turn:turn.example.com:3478?transport=udp,"
    "turns:turn.example.com:443?transport=tcp";

// base64(HMAC-SHA1(secret, username)) with OpenSSL directly, not through the server's code: what
// coturn computes for use-auth-secret.
std::string expected_credential(const std::string& secret, const std::string& username) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  HMAC(EVP_sha1(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(username.data()), username.size(), mac, &len);
  unsigned char out[64];
  const int n = EVP_EncodeBlock(out, mac, static_cast<int>(len));
  return std::string(reinterpret_cast<char*>(out), static_cast<std::size_t>(n));
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Checks `ice` (a payload's iceServers) for `client_id`: the STUN URL as it is, the TURN URLs
// with a credential for this client that expires `expiry_seconds` from now.
void expect_ice_servers(const json::value& ice, const std::string& client_id,
                        int64_t expiry_seconds, const std::string& secret = kSecret) {
  ASSERT_TRUE(ice.is_array()) << json::serialize(ice);
  ASSERT_EQ(ice.as_array().size(), 2u) << json::serialize(ice);
  EXPECT_EQ(json::serialize(ice.at(0)), R"({"urls":["stun:stun.example.com:3478"]})");
  const auto& turn = ice.at(1);
  EXPECT_EQ(
      json::serialize(turn.at("urls")),
      R"(["turn:turn.example.com:3478?transport=udp","turns:turn.example.com:443?transport=tcp"])");
  const std::string username(turn.at("username").as_string());
  const auto colon = username.find(':');
  ASSERT_NE(colon, std::string::npos) << username;
  EXPECT_EQ(username.substr(colon + 1), client_id);
  const int64_t expiry = std::stoll(username.substr(0, colon));
  EXPECT_NEAR(static_cast<double>(expiry), static_cast<double>(unix_now() + expiry_seconds), 30.0);
  EXPECT_EQ(std::string(turn.at("credential").as_string()), expected_credential(secret, username));
}

Env ice_env(const Env& extra = {}) {
  Env env = relaxed_limits({{"TURN_URLS", kUrls}, {"TURN_SECRET", kSecret}});
  for (const auto& [k, v] : extra) env[k] = v;
  return env;
}

}  // namespace

TEST(IceServers, OptedInClientsGetThemWithACredentialOfTheirOwnOthersNothingNew) {
  auto server =
      ServerProcess::start(ice_env({{"TURN_EXPIRY_SECONDS", "600"}, {"LOG_LEVEL", "trace"}}));
  ASSERT_TRUE(server);
  // A client that did not opt in: its first message is its peer's offer, nothing before it.
  auto plain = connect_to(server->port(), "roomId=ice-plain");
  ASSERT_TRUE(plain);
  auto a = connect_to(server->port(), "roomId=ice-plain&events=1");
  ASSERT_TRUE(a);
  const auto welcome = next(*a);
  ASSERT_EQ(action_of(welcome), "welcome") << json::serialize(welcome);
  const std::string a_id(welcome.at("payload").at("clientId").as_string());
  expect_ice_servers(welcome.at("payload").at("iceServers"), a_id, 600);
  a->send(offer("to-plain"));
  EXPECT_EQ(plain->recv(), offer("to-plain"));

  // resume=1 too, each member its own username.
  ResumableClient r = open_session(server->port(), "ice-resumable");
  ASSERT_TRUE(r.ws);
  auto b = connect_to(server->port(), "roomId=ice-resumable&events=1");
  ASSERT_TRUE(b);
  const auto b_welcome = next(*b);
  const std::string b_id(b_welcome.at("payload").at("clientId").as_string());
  EXPECT_NE(b_id, r.client_id);
  expect_ice_servers(b_welcome.at("payload").at("iceServers"), b_id, 600);
  EXPECT_EQ(scrape(server->port(), "cloudgaming_turn_credentials_issued_total"), 3.0);
  // The secret never reaches the log, whatever the level.
  EXPECT_EQ(server->output().find(kSecret), std::string::npos) << server->output();
}

TEST(IceServers, TheResumableWelcomeAndBothResumedRepliesCarryFreshOnes) {
  const Env env = ice_env({{"RESUME_SECRET", "shared-resume-secret"}, {"LOG_LEVEL", "trace"}});
  auto server = ServerProcess::start(env);
  ASSERT_TRUE(server);
  auto s = connect_to(server->port(), "roomId=ice-resume&resume=1");
  ASSERT_TRUE(s);
  const auto welcome = next(*s);
  ASSERT_EQ(action_of(welcome), "welcome");
  const std::string id(welcome.at("payload").at("clientId").as_string());
  const std::string token(welcome.at("payload").at("resumeToken").as_string());
  expect_ice_servers(welcome.at("payload").at("iceServers"), id, 14400);  // the default expiry

  // recovered:true (this socket takes the session over): fresh credentials, same client id.
  auto again = connect_to(server->port(), resume_query("ice-resume", token, 0));
  ASSERT_TRUE(again);
  const auto resumed = next(*again);
  ASSERT_EQ(action_of(resumed), "resumed") << json::serialize(resumed);
  EXPECT_TRUE(resumed.at("payload").at("recovered").as_bool());
  expect_ice_servers(resumed.at("payload").at("iceServers"), id, 14400);

  // recovered:false (another instance, sharing RESUME_SECRET, never held the session on the
  // embedded bus): resumed and the fresh welcome both carry those of the new client id.
  auto other = ServerProcess::start(env);
  ASSERT_TRUE(other);
  auto lost = connect_to(other->port(), resume_query("ice-resume", token, 0));
  ASSERT_TRUE(lost);
  const auto not_recovered = next(*lost);
  ASSERT_EQ(action_of(not_recovered), "resumed") << json::serialize(not_recovered);
  EXPECT_FALSE(not_recovered.at("payload").at("recovered").as_bool());
  const auto fresh = next(*lost);
  ASSERT_EQ(action_of(fresh), "welcome") << json::serialize(fresh);
  const std::string new_id(fresh.at("payload").at("clientId").as_string());
  EXPECT_NE(new_id, id);
  expect_ice_servers(not_recovered.at("payload").at("iceServers"), new_id, 14400);
  EXPECT_EQ(not_recovered.at("payload").at("iceServers"), fresh.at("payload").at("iceServers"));
  EXPECT_EQ(scrape(other->port(), "cloudgaming_turn_credentials_issued_total"), 1.0);
  EXPECT_EQ(server->output().find(kSecret), std::string::npos) << server->output();
}

TEST(IceServers, SecretFromAFileStunOnlyAndNoneAtAll) {
  const std::string path = ::testing::TempDir() + "ice-servers-turn-secret";
  {
    std::ofstream out(path);
    out << "file-secret\n";
  }
  auto from_file = ServerProcess::start(relaxed_limits(
      {{"TURN_URLS", kUrls}, {"TURN_SECRET_FILE", path}, {"TURN_EXPIRY_SECONDS", "60"}}));
  ASSERT_TRUE(from_file);
  auto a = connect_to(from_file->port(), "roomId=ice-file&events=1");
  ASSERT_TRUE(a);
  const auto welcome = next(*a);
  expect_ice_servers(welcome.at("payload").at("iceServers"),
                     std::string(welcome.at("payload").at("clientId").as_string()), 60,
                     "file-secret");
  std::remove(path.c_str());

  auto stun_only = ServerProcess::start(relaxed_limits({{"TURN_URLS", "stun:stun.example.com"}}));
  ASSERT_TRUE(stun_only);
  auto b = connect_to(stun_only->port(), "roomId=ice-stun&events=1");
  ASSERT_TRUE(b);
  EXPECT_EQ(json::serialize(next(*b).at("payload").at("iceServers")),
            R"([{"urls":["stun:stun.example.com"]}])");
  EXPECT_EQ(scrape(stun_only->port(), "cloudgaming_turn_credentials_issued_total"), 0.0);

  auto none = ServerProcess::start(relaxed_limits());
  ASSERT_TRUE(none);
  auto c = connect_to(none->port(), "roomId=ice-none&events=1");
  ASSERT_TRUE(c);
  EXPECT_FALSE(next(*c).at("payload").as_object().contains("iceServers"));
}
