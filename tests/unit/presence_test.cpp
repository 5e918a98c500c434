// Presence notices between instances (presence:{roomId}): format and parsing.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "signaling/protocol.hpp"

using namespace sigsrv;

TEST(PresenceTest, MessageRoundTrips) {
  const std::string m = presence_message("client:a\"b", "server:1");
  const boost::json::value v = boost::json::parse(m);
  EXPECT_EQ(v.at("clientId"), "client:a\"b");
  EXPECT_EQ(v.at("originServerId"), "server:1");
  const auto p = parse_presence(m);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->client_id, "client:a\"b");
  EXPECT_EQ(p->origin_server_id, "server:1");
}

TEST(PresenceTest, OriginIsOptionalClientIdIsNot) {
  const auto p = parse_presence(R"({"clientId":"c"})");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->client_id, "c");
  EXPECT_EQ(p->origin_server_id, "");
  EXPECT_FALSE(parse_presence(R"({"originServerId":"s"})"));
  EXPECT_FALSE(parse_presence(R"({"clientId":7})"));
  EXPECT_FALSE(parse_presence("[]"));
  EXPECT_FALSE(parse_presence("not json"));
}

TEST(PresenceTest, EventsRoundTripAndAJoinCarriesNoEventField) {
  EXPECT_EQ(presence_message("c", "s").find("event"), std::string::npos)
      << "a join reads the same to instances that predate events";
  for (auto e : {PresenceEvent::kJoined, PresenceEvent::kSuspended, PresenceEvent::kResumed,
                 PresenceEvent::kProbe}) {
    const auto p = parse_presence(presence_message("client:a", "server:1", e));
    ASSERT_TRUE(p);
    EXPECT_EQ(p->event, e);
    EXPECT_EQ(p->client_id, "client:a");
  }
  EXPECT_FALSE(parse_presence(R"({"clientId":"c","event":"teleported"})"))
      << "an event this version does not know is ignored, not read as a join";
  EXPECT_FALSE(parse_presence(R"({"clientId":"c","event":1})"));
}

TEST(PresenceTest, JoinedNoticeToClientsNamesThePeer) {
  const boost::json::value v = boost::json::parse(peer_joined_message("client:x"));
  EXPECT_EQ(v.at("type"), "control");
  EXPECT_EQ(v.at("action"), "peer-joined");
  EXPECT_EQ(v.at("payload").at("clientId"), "client:x");
}
