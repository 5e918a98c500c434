// Tests the local room registry: attach/detach, the local_rooms gauge and recipient collection.
#include "signaling/rooms.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "obs/metrics.hpp"

namespace sigsrv {
namespace {

class FakePeer : public Peer {
 public:
  void deliver(const SharedText& message) override { received.push_back(*message); }
  void probe() override { ++probes; }
  void fault(std::string_view) override {}
  std::vector<std::string> received;
  int probes = 0;
};

Member MemberFor(const std::string& id, const std::shared_ptr<FakePeer>& peer, unsigned loop = 0,
                 bool wants_events = false) {
  return Member{id, peer, peer.get(), loop, wants_events, false};
}

class RoomsTest : public ::testing::Test {
 protected:
  // local_rooms is a process-wide gauge: compare against its value when the test started.
  int64_t LocalRoomsDelta() const { return metrics().local_rooms.value() - baseline_; }

  int64_t baseline_ = metrics().local_rooms.value();
  RoomRegistry registry_;
};

TEST_F(RoomsTest, AttachCreatesRoomAndDetachRemovesIt) {
  auto a = std::make_shared<FakePeer>();
  auto room = registry_.attach("room-1", MemberFor("a", a));
  ASSERT_NE(room, nullptr);
  EXPECT_EQ(room->id(), "room-1");
  EXPECT_EQ(room->size(), 1u);
  EXPECT_EQ(registry_.room_count(), 1u);
  EXPECT_EQ(registry_.memberships(),
            (std::vector<std::pair<std::string, std::string>>{{"room-1", "a"}}));
  EXPECT_EQ(registry_.find("room-1"), room);
  registry_.detach(room, "a");
  EXPECT_EQ(room->size(), 0u);
  EXPECT_EQ(registry_.room_count(), 0u);
  EXPECT_TRUE(registry_.memberships().empty());
  EXPECT_EQ(registry_.find("room-1"), nullptr);
}

TEST_F(RoomsTest, MembersShareOneRoom) {
  auto a = std::make_shared<FakePeer>();
  auto b = std::make_shared<FakePeer>();
  auto ra = registry_.attach("r", MemberFor("a", a));
  auto rb = registry_.attach("r", MemberFor("b", b));
  EXPECT_EQ(ra, rb);
  EXPECT_EQ(ra->size(), 2u);
  EXPECT_EQ(registry_.room_count(), 1u);
  registry_.detach(ra, "a");
  EXPECT_EQ(registry_.room_count(), 1u);  // b is still there
  EXPECT_EQ(rb->size(), 1u);
  registry_.detach(rb, "b");
  EXPECT_EQ(registry_.room_count(), 0u);
}

TEST_F(RoomsTest, LocalRoomsGaugeGoesUpAndBackDown) {
  auto a = std::make_shared<FakePeer>();
  auto b = std::make_shared<FakePeer>();
  auto c = std::make_shared<FakePeer>();
  auto r1 = registry_.attach("r1", MemberFor("a", a));
  EXPECT_EQ(LocalRoomsDelta(), 1);
  auto r1b = registry_.attach("r1", MemberFor("b", b));
  EXPECT_EQ(LocalRoomsDelta(), 1);  // same room
  auto r2 = registry_.attach("r2", MemberFor("c", c));
  EXPECT_EQ(LocalRoomsDelta(), 2);
  registry_.detach(r1, "a");
  EXPECT_EQ(LocalRoomsDelta(), 2);
  registry_.detach(r1b, "b");
  EXPECT_EQ(LocalRoomsDelta(), 1);
  registry_.detach(r2, "c");
  EXPECT_EQ(LocalRoomsDelta(), 0);
  // Detaching again (a session ending twice) must not push the gauge below its start.
  registry_.detach(r2, "c");
  EXPECT_EQ(LocalRoomsDelta(), 0);
}

TEST_F(RoomsTest, StaleRoomDetachDoesNotRemoveItsSuccessor) {
  auto a = std::make_shared<FakePeer>();
  auto b = std::make_shared<FakePeer>();
  auto old_room = registry_.attach("r", MemberFor("a", a));
  registry_.detach(old_room, "a");
  auto new_room = registry_.attach("r", MemberFor("b", b));
  ASSERT_NE(old_room, new_room);
  EXPECT_EQ(LocalRoomsDelta(), 1);
  registry_.detach(old_room, "a");  // late detach through the old handle
  EXPECT_EQ(registry_.room_count(), 1u);
  EXPECT_EQ(LocalRoomsDelta(), 1);
  EXPECT_EQ(new_room->size(), 1u);
  registry_.detach(new_room, "b");
  EXPECT_EQ(LocalRoomsDelta(), 0);
}

TEST_F(RoomsTest, DetachUnknownClientChangesNothing) {
  auto a = std::make_shared<FakePeer>();
  auto room = registry_.attach("r", MemberFor("a", a));
  registry_.detach(room, "nobody");
  EXPECT_EQ(room->size(), 1u);
  EXPECT_EQ(registry_.room_count(), 1u);
  registry_.detach(room, "a");
}

TEST_F(RoomsTest, CollectOthersExcludesSelf) {
  auto a = std::make_shared<FakePeer>();
  auto b = std::make_shared<FakePeer>();
  auto c = std::make_shared<FakePeer>();
  auto room = registry_.attach("r", MemberFor("a", a, 0, false));
  registry_.attach("r", MemberFor("b", b, 1, true));
  registry_.attach("r", MemberFor("c", c, 2, false));
  Targets out;
  room->collect_others(a.get(), out);
  ASSERT_EQ(out.size(), 2u);
  std::sort(out.begin(), out.end(),
            [](const Target& x, const Target& y) { return x.loop < y.loop; });
  EXPECT_EQ(out[0].peer.get(), b.get());
  EXPECT_EQ(out[0].loop, 1u);
  EXPECT_TRUE(out[0].wants_events);
  EXPECT_EQ(out[1].peer.get(), c.get());
  EXPECT_EQ(out[1].loop, 2u);
  EXPECT_FALSE(out[1].wants_events);
  // Delivery goes through the collected targets.
  for (auto& t : out) t.peer->deliver(peer_disconnected_message());
  EXPECT_TRUE(a->received.empty());
  EXPECT_EQ(b->received, std::vector<std::string>{R"({"type":"peer-disconnected"})"});
  EXPECT_EQ(c->received.size(), 1u);
  for (const char* id : {"a", "b", "c"}) registry_.detach(room, id);
}

TEST_F(RoomsTest, CollectOthersSkipsExpiredPeers) {
  auto a = std::make_shared<FakePeer>();
  auto b = std::make_shared<FakePeer>();
  auto room = registry_.attach("r", MemberFor("a", a));
  registry_.attach("r", MemberFor("b", b));
  b.reset();  // the session is gone but has not detached yet
  Targets out;
  room->collect_others(a.get(), out);
  EXPECT_TRUE(out.empty());
  // Everyone but a stranger: only the live member.
  FakePeer stranger;
  room->collect_others(&stranger, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].peer.get(), a.get());
  registry_.detach(room, "a");
  registry_.detach(room, "b");
  EXPECT_EQ(registry_.room_count(), 0u);
}

TEST_F(RoomsTest, CollectOthersAppendsToTargets) {
  auto a = std::make_shared<FakePeer>();
  auto b = std::make_shared<FakePeer>();
  auto room = registry_.attach("r", MemberFor("a", a));
  registry_.attach("r", MemberFor("b", b));
  Targets out;
  out.push_back(Target{a, 9, false});
  room->collect_others(a.get(), out);
  EXPECT_EQ(out.size(), 2u);
  registry_.detach(room, "a");
  registry_.detach(room, "b");
}

TEST_F(RoomsTest, ManyRoomsAcrossShards) {
  std::vector<std::shared_ptr<FakePeer>> peers;
  std::vector<std::shared_ptr<Room>> rooms;
  for (int i = 0; i < 100; ++i) {
    peers.push_back(std::make_shared<FakePeer>());
    rooms.push_back(registry_.attach("room-" + std::to_string(i), MemberFor("c", peers.back())));
  }
  EXPECT_EQ(registry_.room_count(), 100u);
  EXPECT_EQ(registry_.memberships().size(), 100u);
  EXPECT_EQ(LocalRoomsDelta(), 100);
  for (auto& r : rooms) registry_.detach(r, "c");
  EXPECT_EQ(registry_.room_count(), 0u);
  EXPECT_EQ(LocalRoomsDelta(), 0);
}

TEST(RoomLoop, IsAFunctionOfTheIdAlone) {
  for (unsigned loops : {1u, 2u, 3u, 4u, 16u}) {
    for (int i = 0; i < 100; ++i) {
      const std::string id = "room-" + std::to_string(i);
      const unsigned loop = room_loop(id, loops);
      EXPECT_LT(loop, loops);
      EXPECT_EQ(room_loop(id, loops), loop);
    }
  }
  EXPECT_EQ(room_loop("lobby", 0), 0u);
  // Fixed values: the hash is ours (FNV-1a + Murmur3's finalizer), the same in every process
  // and on every platform, unlike std::hash.
  EXPECT_EQ(room_loop("lobby", 4), 3u);
  EXPECT_EQ(room_loop("e", 4), 0u);
  EXPECT_EQ(room_loop("lobby", 7), 5u);
  EXPECT_EQ(room_loop("room-1", 7), 0u);
}

TEST(RoomLoop, SpreadsRoomsOverEveryLoop) {
  std::vector<int> per_loop(4);
  for (int i = 0; i < 4000; ++i) ++per_loop[room_loop("room-" + std::to_string(i), 4)];
  for (int n : per_loop) {
    EXPECT_GT(n, 900);
    EXPECT_LT(n, 1100);
  }
  // Ids one letter apart: FNV-1a alone would keep 'a', 'e', 'i'... on one loop of four.
  std::vector<int> letters(4);
  for (char c = 'a'; c <= 'z'; ++c) ++letters[room_loop(std::string("room-") + c, 4)];
  for (int n : letters) EXPECT_GE(n, 3);
}

}  // namespace
}  // namespace sigsrv
