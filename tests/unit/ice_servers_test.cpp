// Tests the ICE server URLs, the coturn use-auth-secret credential and the iceServers payloads
// (PROTOCOL.md section 9).
#include "signaling/ice_servers.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <string>
#include <variant>
#include <vector>

#include "signaling/protocol.hpp"
#include "signaling/resume.hpp"

namespace sigsrv {
namespace {

std::string Why(std::string_view url) {
  auto r = parse_ice_url(url);
  if (const auto* why = std::get_if<std::string>(&r)) return *why;
  return {};
}

IceUrl::Scheme SchemeOf(std::string_view url) {
  auto r = parse_ice_url(url);
  EXPECT_TRUE(std::holds_alternative<IceUrl>(r)) << url << ": " << Why(url);
  return std::holds_alternative<IceUrl>(r) ? std::get<IceUrl>(r).scheme : IceUrl::Scheme::kStun;
}

TEST(IceUrlTest, TakesStunTurnAndTurnsUrls) {
  EXPECT_EQ(SchemeOf("stun:stun.example.com"), IceUrl::Scheme::kStun);
  EXPECT_EQ(SchemeOf("stun:stun.example.com:3478"), IceUrl::Scheme::kStun);
  EXPECT_EQ(SchemeOf("turn:turn.example.com:3478"), IceUrl::Scheme::kTurn);
  EXPECT_EQ(SchemeOf("turn:203.0.113.7:3478?transport=udp"), IceUrl::Scheme::kTurn);
  EXPECT_EQ(SchemeOf("turn:turn.example.com?transport=tcp"), IceUrl::Scheme::kTurn);
  EXPECT_EQ(SchemeOf("turns:turn.example.com:443?transport=tcp"), IceUrl::Scheme::kTurns);
  EXPECT_EQ(SchemeOf("turn:[2001:db8::7]:3478"), IceUrl::Scheme::kTurn);
  EXPECT_EQ(SchemeOf("  turn:127.0.0.1:3478  "), IceUrl::Scheme::kTurn);
  EXPECT_EQ(std::get<IceUrl>(parse_ice_url(" turn:t:1 ")).text, "turn:t:1");  // trimmed
}

TEST(IceUrlTest, RefusesWhatBrowsersWouldNotTakeOrWhatHidesASecret) {
  EXPECT_NE(Why("http://turn.example.com"), "");
  EXPECT_NE(Why("stuns:stun.example.com"), "");  // browsers take no stuns:
  EXPECT_NE(Why("TURN:turn.example.com"), "");
  EXPECT_NE(Why("turn.example.com:3478"), "");
  EXPECT_NE(Why("turn://turn.example.com:3478"), "");
  EXPECT_NE(Why("turn:"), "");
  EXPECT_NE(Why("turn::3478"), "");
  EXPECT_NE(Why("turn:host:0"), "");
  EXPECT_NE(Why("turn:host:65536"), "");
  EXPECT_NE(Why("turn:host:"), "");
  EXPECT_NE(Why("turn:host:34x"), "");
  EXPECT_NE(Why("turn:ho st"), "");
  EXPECT_NE(Why("turn:[2001:db8::7"), "");
  EXPECT_NE(Why("turn:[]:3478"), "");
  EXPECT_NE(Why("turn:host?transport=sctp"), "");
  EXPECT_NE(Why("turn:host?foo=bar"), "");
  EXPECT_NE(Why("stun:host?transport=udp"), "");
  // Credentials in the URL are refused, and never repeated in the message.
  const std::string why = Why("turn:alice:hunter2@turn.example.com");
  EXPECT_NE(why, "");
  EXPECT_EQ(why.find("hunter2"), std::string::npos) << why;
  // The message names the URL otherwise, so the operator finds it in a list.
  EXPECT_NE(Why("turn:host:99999").find("turn:host:99999"), std::string::npos);
}

TEST(IceUrlTest, ListSplitsOnCommasAndSkipsBlanks) {
  auto r = parse_ice_urls(" stun:s:3478 , turn:t:3478,,turns:t:443?transport=tcp ,");
  ASSERT_TRUE(std::holds_alternative<std::vector<IceUrl>>(r));
  const auto& urls = std::get<std::vector<IceUrl>>(r);
  ASSERT_EQ(urls.size(), 3u);
  EXPECT_EQ(urls[0].text, "stun:s:3478");
  EXPECT_EQ(urls[1].text, "turn:t:3478");
  EXPECT_EQ(urls[2].scheme, IceUrl::Scheme::kTurns);
  EXPECT_TRUE(std::get<std::vector<IceUrl>>(parse_ice_urls("")).empty());
  auto bad = parse_ice_urls("stun:s:3478,ftp:x");
  ASSERT_TRUE(std::holds_alternative<std::string>(bad));
  EXPECT_NE(std::get<std::string>(bad).find("ftp:x"), std::string::npos);
}

// Expected values computed independently of this code, with OpenSSL's command line:
//   printf %s "$USERNAME" | openssl dgst -sha1 -hmac "$SECRET" -binary | base64
TEST(TurnCredentialTest, KnownAnswers) {
  const TurnCredential c = turn_credential(
      "coturn-shared-secret", "client:6f1c2d3e-0a1b-4c2d-8e3f-0123456789ab", 1700014400);
  EXPECT_EQ(c.username, "1700014400:client:6f1c2d3e-0a1b-4c2d-8e3f-0123456789ab");
  EXPECT_EQ(c.credential, "p4/yUfc7CauXGopYuCyHgBpt2TU=");
  EXPECT_EQ(turn_credential("s", "c", 1).credential, "jmK2KzNWpE8E/6IHZN2L8FntoxI=");
  // Another secret, another credential (what coturn refuses when it holds only the first).
  EXPECT_EQ(
      turn_credential("other-secret", "client:6f1c2d3e-0a1b-4c2d-8e3f-0123456789ab", 1700014400)
          .credential,
      "ZjcH5apGroxj9R+i96RBdQy2yJc=");
}

TEST(IceServersTest, EmptyWithoutUrls) {
  const IceServers none;
  EXPECT_TRUE(none.empty());
  EXPECT_FALSE(none.issues_credentials());
  EXPECT_EQ(none.json("c", 0), "[]");
}

TEST(IceServersTest, StunAsTheyAreTurnWithACredentialThatExpires) {
  const auto urls = std::get<std::vector<IceUrl>>(
      parse_ice_urls("stun:s.example.com:3478,turn:t.example.com:3478?transport=udp,"
                     "turns:t.example.com:443?transport=tcp"));
  const IceServers ice(urls, "coturn-shared-secret", 14400);
  EXPECT_TRUE(ice.issues_credentials());
  const auto v =
      boost::json::parse(ice.json("client:6f1c2d3e-0a1b-4c2d-8e3f-0123456789ab", 1700000000));
  ASSERT_TRUE(v.is_array());
  const auto& a = v.as_array();
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(boost::json::serialize(a[0]), R"({"urls":["stun:s.example.com:3478"]})");
  EXPECT_EQ(a[1].at("urls").as_array().size(), 2u);
  EXPECT_EQ(a[1].at("urls").at(0).as_string(), "turn:t.example.com:3478?transport=udp");
  EXPECT_EQ(a[1].at("urls").at(1).as_string(), "turns:t.example.com:443?transport=tcp");
  // now + TURN_EXPIRY_SECONDS, then the client id: the same credential as the known answer.
  EXPECT_EQ(a[1].at("username").as_string(),
            "1700014400:client:6f1c2d3e-0a1b-4c2d-8e3f-0123456789ab");
  EXPECT_EQ(a[1].at("credential").as_string(), "p4/yUfc7CauXGopYuCyHgBpt2TU=");
}

TEST(IceServersTest, StunOnlyMintsNothing) {
  const auto urls = std::get<std::vector<IceUrl>>(parse_ice_urls("stun:a:3478,stun:b:3478"));
  const IceServers ice(urls, "", 14400);
  EXPECT_FALSE(ice.empty());
  EXPECT_FALSE(ice.issues_credentials());
  EXPECT_EQ(ice.json("c", 0), R"([{"urls":["stun:a:3478","stun:b:3478"]}])");
}

TEST(IceServersTest, TurnOnly) {
  const auto urls = std::get<std::vector<IceUrl>>(parse_ice_urls("turn:t:3478"));
  const auto v = boost::json::parse(IceServers(urls, "s", 1).json("c", 0));
  ASSERT_EQ(v.as_array().size(), 1u);
  EXPECT_EQ(v.at(0).at("username").as_string(), "1:c");
  EXPECT_EQ(v.at(0).at("credential").as_string(), "jmK2KzNWpE8E/6IHZN2L8FntoxI=");
}

TEST(IceServersTest, WelcomeAndResumedCarryThemOnlyWhenGiven) {
  const std::string ice = R"([{"urls":["stun:s:1"]}])";
  EXPECT_EQ(
      welcome_message("c:1", "r", 0),
      R"({"type":"control","action":"welcome","payload":{"clientId":"c:1","roomId":"r","peers":0}})");
  EXPECT_EQ(
      welcome_message("c:1", "r", 0, ice),
      R"({"type":"control","action":"welcome","payload":{"clientId":"c:1","roomId":"r","peers":0,"iceServers":[{"urls":["stun:s:1"]}]}})");
  EXPECT_EQ(
      resumed_message(true, 5, ice),
      R"({"type":"control","action":"resumed","payload":{"recovered":true,"received":5,"iceServers":[{"urls":["stun:s:1"]}]}})");
  EXPECT_EQ(
      resumed_message(false, 0, ice),
      R"({"type":"control","action":"resumed","payload":{"recovered":false,"iceServers":[{"urls":["stun:s:1"]}]}})");
  const auto w = boost::json::parse(resumable_welcome_message("c:1", "r", 1, "s", "t", 20000, ice));
  EXPECT_EQ(w.at("payload").at("resumeToken").as_string(), "t");
  EXPECT_EQ(w.at("payload").at("iceServers").at(0).at("urls").at(0).as_string(), "stun:s:1");
  EXPECT_EQ(with_ice_servers("{}", ice), R"({"iceServers":[{"urls":["stun:s:1"]}]})");
  EXPECT_EQ(with_ice_servers(R"({"a":1})", ""), R"({"a":1})");
}

}  // namespace
}  // namespace sigsrv
