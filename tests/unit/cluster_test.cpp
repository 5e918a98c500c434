// Redis Cluster, the pure part: key slots (against values Redis itself gives), the key names of
// each mode, CLUSTER SLOTS and MOVED/ASK parsing.
#include "bus/cluster.hpp"

#include <gtest/gtest.h>

#include <set>

#include "bus/redis_keys.hpp"

using namespace sigsrv;

namespace {

ReplyPtr parse_resp(const std::string& wire) {
  RespReader reader;
  EXPECT_TRUE(reader.feed(wire.data(), wire.size()));
  bool error = false;
  ReplyPtr r = reader.next(&error);
  EXPECT_FALSE(error);
  return r;
}

std::string bulk(std::string_view s) {
  return "$" + std::to_string(s.size()) + "\r\n" + std::string(s) + "\r\n";
}

}  // namespace

// Values from `redis-cli CLUSTER KEYSLOT` on Redis 7.0 (and the cluster spec's CRC16 test vector).
TEST(ClusterSlots, KeySlotMatchesRedis) {
  EXPECT_EQ(key_slot("123456789"), 0x31C3 & 16383);
  EXPECT_EQ(key_slot("foo"), 12182);
  EXPECT_EQ(key_slot("bar"), 5061);
  EXPECT_EQ(key_slot(""), 0);
  // The hash tag: only what is between the first '{' and the next '}' counts, unless empty.
  EXPECT_EQ(key_slot("{user1000}.following"), key_slot("user1000"));
  EXPECT_EQ(key_slot("foo{}{bar}"), key_slot("foo{}{bar}"));
  EXPECT_NE(key_slot("foo{}{bar}"), key_slot("bar"));
  EXPECT_EQ(key_slot("foo{{bar}}zap"), key_slot("{bar"));
  EXPECT_EQ(key_slot("foo{bar}{zap}"), key_slot("bar"));
}

TEST(ClusterKeys, OneRedisKeepsTheNodeServersNames) {
  const RedisKeys k(false);
  EXPECT_EQ(k.room("r1"), "room:r1");
  EXPECT_EQ(k.owners("r1"), "room-owners:r1");
  EXPECT_EQ(k.presence("r1"), "presence:r1");
  EXPECT_EQ(k.room_sessions("r1"), "room-resumable:r1");
  EXPECT_EQ(k.session("r1", "s1"), "resume:s1");
  EXPECT_EQ(k.session_log("r1", "s1"), "resume-log:s1");
  EXPECT_EQ(k.session_left("r1", "s1"), "resume-left:s1");
  EXPECT_EQ(k.stored_sid("r1", "s1"), "s1");
  EXPECT_EQ(k.window("msg-ip", "10.0.0.1"), "rl:msg-ip:10.0.0.1:10");
  EXPECT_EQ(k.lease_prefix(), "signal:instance:");
  EXPECT_EQ(k.registry(), "signal:instances");
  EXPECT_EQ(RedisKeys::room_of_channel("room:r1"), "r1");
  EXPECT_EQ(RedisKeys::room_of_channel("presence:a:b"), "a:b");
}

TEST(ClusterKeys, EveryKeyOfARoomSharesItsSlot) {
  const RedisKeys k(true);
  for (const std::string room : {"r1", "game-42", "a:b.c_d", "x"}) {
    const uint16_t slot = key_slot(k.room(room));
    EXPECT_EQ(k.room(room), "room:{" + room + "}");
    EXPECT_EQ(RedisKeys::room_of_channel(k.room(room)), room);
    EXPECT_EQ(RedisKeys::room_of_channel(k.presence(room)), room);
    for (const std::string& key :
         {k.owners(room), k.presence(room), k.room_sessions(room), k.session(room, "sid-1"),
          k.session_log(room, "sid-1"), k.session_left(room, "sid-1")}) {
      EXPECT_EQ(key_slot(key), slot) << key;
    }
    // The scripts build session keys from the stored id: they must land in the room's slot too.
    EXPECT_EQ(key_slot("resume:" + k.stored_sid(room, "sid-2")), slot);
    EXPECT_EQ(key_slot("resume-log:" + k.stored_sid(room, "sid-2")), slot);
  }
  EXPECT_EQ(key_slot(k.lease_prefix() + "instance-a"), key_slot(k.registry()));
}

// Windows go to Redis one script call per slot: on a cluster they share kWindowBuckets tags, so a
// reconcile of many rooms' windows needs at most that many calls, not one per room.
TEST(ClusterKeys, WindowsShareAFewSlots) {
  const RedisKeys k(true);
  EXPECT_EQ(
      k.window("msg-room", "r1"),
      "rl:{w" + std::to_string(key_slot("r1") % RedisKeys::kWindowBuckets) + "}:msg-room:r1:10");
  std::set<uint16_t> slots;
  for (int i = 0; i < 5000; ++i) {
    const std::string id = "room-" + std::to_string(i);
    const std::string key = k.window("msg-room", id);
    EXPECT_EQ(key, k.window("msg-room", id));  // always the same key for an id
    slots.insert(key_slot(key));
    slots.insert(key_slot(k.window("msg-ip", "10.0." + std::to_string(i % 256) + ".1")));
  }
  EXPECT_EQ(slots.size(), RedisKeys::kWindowBuckets);
}

TEST(ClusterSlotsReply, ParsesRangesAndTheirMasters) {
  // Two ranges; the second's master has no host ("" as Redis 7 sends for an unknown endpoint):
  // the node that answered.
  const std::string wire =
      "*2\r\n"
      "*4\r\n:0\r\n:5460\r\n*3\r\n" +
      bulk("10.0.0.1") + ":7000\r\n" + bulk("id1") + "*3\r\n" + bulk("10.0.0.4") + ":7003\r\n" +
      bulk("id4") + "*3\r\n:5461\r\n:16383\r\n*3\r\n" + bulk("") + ":7001\r\n" + bulk("id2");
  auto r = parse_resp(wire);
  auto parsed = parse_cluster_slots(r.get(), "10.0.0.9");
  ASSERT_TRUE(std::holds_alternative<std::vector<SlotRange>>(parsed))
      << std::get<std::string>(parsed);
  EXPECT_EQ(
      std::get<std::vector<SlotRange>>(parsed),
      (std::vector<SlotRange>{{0, 5460, {"10.0.0.1", 7000}}, {5461, 16383, {"10.0.0.9", 7001}}}));
}

TEST(ClusterSlotsReply, ANodeWithoutClusterSupportOrAMalformedReplyIsAnError) {
  auto disabled = parse_resp("-ERR This instance has cluster support disabled\r\n");
  auto e = parse_cluster_slots(disabled.get(), "h");
  ASSERT_TRUE(std::holds_alternative<std::string>(e));
  EXPECT_NE(std::get<std::string>(e).find("cluster support disabled"), std::string::npos);
  auto beyond = parse_resp("*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n" + bulk("h") + ":1\r\n");
  EXPECT_TRUE(std::holds_alternative<std::string>(parse_cluster_slots(beyond.get(), "h")));
  auto reversed = parse_resp("*1\r\n*3\r\n:10\r\n:9\r\n*2\r\n" + bulk("h") + ":1\r\n");
  EXPECT_TRUE(std::holds_alternative<std::string>(parse_cluster_slots(reversed.get(), "h")));
  auto no_port = parse_resp("*1\r\n*3\r\n:0\r\n:9\r\n*2\r\n" + bulk("h") + ":0\r\n");
  EXPECT_TRUE(std::holds_alternative<std::string>(parse_cluster_slots(no_port.get(), "h")));
  EXPECT_TRUE(std::holds_alternative<std::string>(parse_cluster_slots(nullptr, "h")));
}

TEST(ClusterRedirect, ParsesMovedAndAsk) {
  auto moved = parse_redirect("MOVED 3999 127.0.0.1:6381", "x");
  ASSERT_TRUE(moved);
  EXPECT_EQ(moved->kind, Redirect::Kind::kMoved);
  EXPECT_EQ(moved->slot, 3999);
  EXPECT_EQ(moved->to, (HostPort{"127.0.0.1", 6381}));
  auto ask = parse_redirect("ASK 16383 :7002", "10.0.0.5");
  ASSERT_TRUE(ask);
  EXPECT_EQ(ask->kind, Redirect::Kind::kAsk);
  EXPECT_EQ(ask->slot, 16383);
  EXPECT_EQ(ask->to, (HostPort{"10.0.0.5", 7002}));
  auto v6 = parse_redirect("MOVED 1 ::1:7000", "x");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->to, (HostPort{"::1", 7000}));
  for (const char* other : {"ERR unknown", "MOVED", "MOVED 16384 h:1", "MOVED 1 h:0", "MOVED x h:1",
                            "ASK 1 nohostport", "TRYAGAIN Multiple keys"}) {
    EXPECT_FALSE(parse_redirect(other, "x")) << other;
  }
}
