// Relay on one instance: validation, stripping, schema-error, order, peer-disconnected, presence.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "harness.hpp"
#include "ws_client.hpp"

using namespace testing_support;
namespace json = boost::json;

TEST(Relay, ValidMessagesReachThePeerStrippedAndNotTheSender) {
  auto server = ServerProcess::start(relaxed_limits());
  ASSERT_TRUE(server);
  auto a = join(server->port(), "r1");
  auto b = join(server->port(), "r1");
  ASSERT_TRUE(a && b);
  a->send(R"({"type":"offer","sdp":"v=0","extra":1})");
  EXPECT_EQ(b->recv(), R"({"type":"offer","sdp":"v=0"})");
  b->send(R"({"type":"answer","sdp":"v=1"})");
  EXPECT_EQ(a->recv(), R"({"type":"answer","sdp":"v=1"})");
  a->send(R"({"sdpMLineIndex":0,"type":"candidate","candidate":"c1","sdpMid":"0","x":true})");
  EXPECT_EQ(b->recv(), R"({"type":"candidate","candidate":"c1","sdpMid":"0","sdpMLineIndex":0})");
  a->send(R"({"type":"control","action":"mute","payload":{"on":true}})");
  EXPECT_EQ(b->recv(), R"({"type":"control","action":"mute","payload":{"on":true}})");
  // The sender must not receive its own messages: the first thing a reads is b's marker, sent
  // after b had all four.
  b->send(R"({"type":"offer","sdp":"marker"})");
  EXPECT_EQ(a->recv(), R"({"type":"offer","sdp":"marker"})")
      << "the sender must not receive its own messages";
}

TEST(Relay, SchemaErrorGoesToTheSenderAloneAndNotJsonIsDroppedSilently) {
  auto server = ServerProcess::start(relaxed_limits());
  ASSERT_TRUE(server);
  auto a = join(server->port(), "r2");
  auto b = join(server->port(), "r2");
  ASSERT_TRUE(a && b);
  a->send(R"({"type":"offer"})");
  EXPECT_EQ(a->recv(), R"({"type":"control","action":"schema-error"})");
  a->send("not json");
  a->send("[1,2]");
  // The connection is still usable after rejected input, and neither was relayed: b's next
  // message is a's valid one, sent after them.
  a->send(R"({"type":"offer","sdp":"x"})");
  EXPECT_EQ(b->recv(), R"({"type":"offer","sdp":"x"})");
  // Nor answered: a's next message is b's marker, sent after b had "x".
  b->send(R"({"type":"offer","sdp":"marker"})");
  EXPECT_EQ(a->recv(), R"({"type":"offer","sdp":"marker"})");
  EXPECT_EQ(scrape(server->port(), "cloudgaming_schema_rejects_total"), 1.0);
  EXPECT_EQ(scrape(server->port(), "cloudgaming_messages_forwarded_total"), 2.0);
}

TEST(Relay, BurstRightAfterOpenArrivesInOrderInFreshRooms) {
  auto server = ServerProcess::start(relaxed_limits());
  ASSERT_TRUE(server);
  for (int room = 0; room < 100; ++room) {
    const std::string id = "burst-" + std::to_string(room);
    auto b = join(server->port(), id);
    auto a = join(server->port(), id);
    ASSERT_TRUE(a && b);
    // Sent the moment the socket opened, while the server may still be admitting `a`.
    std::vector<std::string> burst = {R"({"type":"offer","sdp":"o"})"};
    for (int i = 0; i < 3; ++i) {
      burst.push_back(R"({"type":"candidate","candidate":"c)" + std::to_string(i) + R"("})");
    }
    a->send_all(burst);
    for (const auto& expected : burst) {
      auto got = b->recv();
      ASSERT_TRUE(got) << "room " << id << " lost a message";
      EXPECT_EQ(*got, expected) << "room " << id;
    }
  }
}

TEST(Relay, ManyMessagesKeepTheirOrder) {
  auto server = ServerProcess::start(relaxed_limits(), {"--threads", "2"});
  ASSERT_TRUE(server);
  auto a = join(server->port(), "order");
  auto b = join(server->port(), "order");
  ASSERT_TRUE(a && b);
  std::vector<std::string> burst;
  for (int i = 0; i < 2000; ++i) {
    burst.push_back(R"({"type":"candidate","candidate":"n)" + std::to_string(i) + R"("})");
  }
  a->send_all(burst);
  for (int i = 0; i < 2000; ++i) {
    auto got = b->recv();
    ASSERT_TRUE(got) << "lost message " << i;
    ASSERT_EQ(*got, burst[i]) << http_get(server->port(), "/metrics").body;
  }
}

TEST(Relay, PeerDisconnectedReachesTheOthersWhenAMemberLeaves) {
  auto server = ServerProcess::start(relaxed_limits());
  ASSERT_TRUE(server);
  auto a = join(server->port(), "bye");
  auto b = join(server->port(), "bye");
  ASSERT_TRUE(a && b);
  a->close();
  EXPECT_EQ(b->recv(), R"({"type":"peer-disconnected"})");
  // The slot is free again.
  auto c = join(server->port(), "bye");
  ASSERT_TRUE(c);
  c->send(R"({"type":"offer","sdp":"again"})");
  EXPECT_EQ(b->recv(), R"({"type":"offer","sdp":"again"})");
}

TEST(Relay, PresenceEventsOnlyForClientsThatOptedIn) {
  auto server = ServerProcess::start(relaxed_limits());
  ASSERT_TRUE(server);
  auto plain = join(server->port(), "presence");
  ASSERT_TRUE(plain);
  auto opted = join(server->port(), "presence", "&events=1");
  ASSERT_TRUE(opted);
  auto welcome = opted->recv();
  ASSERT_TRUE(welcome);
  const json::object w = json::parse(*welcome).as_object();
  EXPECT_EQ(w.at("type"), "control");
  EXPECT_EQ(w.at("action"), "welcome");
  EXPECT_EQ(w.at("payload").at("roomId"), "presence");
  EXPECT_EQ(w.at("payload").at("peers"), 1);
  const std::string my_id(w.at("payload").at("clientId").as_string());
  EXPECT_EQ(my_id.rfind("client:", 0), 0u);
  // No welcome without events=1, and no peer-joined to a client that did not opt in: plain's
  // first message is opted's marker, sent after both would have been queued.
  opted->send(R"({"type":"offer","sdp":"marker"})");
  EXPECT_EQ(plain->recv(), R"({"type":"offer","sdp":"marker"})")
      << "a welcome or peer-joined reached a client without events=1";
  plain->close();
  EXPECT_EQ(opted->recv(), R"({"type":"peer-disconnected"})");
  auto third = join(server->port(), "presence");
  ASSERT_TRUE(third);
  auto joined = opted->recv();
  ASSERT_TRUE(joined);
  const json::object j = json::parse(*joined).as_object();
  EXPECT_EQ(j.at("action"), "peer-joined");
  EXPECT_TRUE(j.at("payload").at("clientId").is_string());
}
