// Tests the in-process bus: capacity-checked joins, leaves and rejoins.
#include "bus/memory_bus.hpp"

#include <gtest/gtest.h>

#include <string>

namespace sigsrv {
namespace {

// Joins synchronously and returns the result (the memory bus answers before join returns).
JoinResult Join(MemoryBus& bus, const std::string& room, const std::string& client,
                unsigned capacity) {
  bool called = false;
  JoinResult out;
  bus.join(room, client, capacity, [&](JoinResult r) {
    called = true;
    out = r;
  });
  EXPECT_TRUE(called) << "join callback not run";
  return out;
}

TEST(MemoryBusTest, Identity) {
  MemoryBus bus;
  EXPECT_EQ(bus.name(), "memory");
  EXPECT_TRUE(bus.ready());
  EXPECT_FALSE(bus.breaker_open());
}

TEST(MemoryBusTest, ExactlyCapacityJoinsSucceed) {
  MemoryBus bus;
  const JoinResult a = Join(bus, "r", "a", 2);
  EXPECT_EQ(a.status, JoinResult::Status::kJoined);
  EXPECT_EQ(a.members, 1u);
  const JoinResult b = Join(bus, "r", "b", 2);
  EXPECT_EQ(b.status, JoinResult::Status::kJoined);
  EXPECT_EQ(b.members, 2u);
  const JoinResult c = Join(bus, "r", "c", 2);
  EXPECT_EQ(c.status, JoinResult::Status::kFull);
  EXPECT_EQ(c.members, 2u);
  EXPECT_EQ(bus.members("r"), 2u);
}

TEST(MemoryBusTest, LargerCapacity) {
  MemoryBus bus;
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(Join(bus, "r", "c" + std::to_string(i), 5).status, JoinResult::Status::kJoined);
  }
  EXPECT_EQ(Join(bus, "r", "c5", 5).status, JoinResult::Status::kFull);
  EXPECT_EQ(bus.members("r"), 5u);
}

TEST(MemoryBusTest, LeaveFreesASlot) {
  MemoryBus bus;
  Join(bus, "r", "a", 2);
  Join(bus, "r", "b", 2);
  ASSERT_EQ(Join(bus, "r", "c", 2).status, JoinResult::Status::kFull);
  bus.leave("r", "a");
  EXPECT_EQ(bus.members("r"), 1u);
  const JoinResult c = Join(bus, "r", "c", 2);
  EXPECT_EQ(c.status, JoinResult::Status::kJoined);
  EXPECT_EQ(c.members, 2u);
}

TEST(MemoryBusTest, RejoinIsNotCountedTwice) {
  MemoryBus bus;
  Join(bus, "r", "a", 2);
  Join(bus, "r", "b", 2);
  // A full room still admits a member that is already in it, without growing.
  const JoinResult again = Join(bus, "r", "a", 2);
  EXPECT_EQ(again.status, JoinResult::Status::kJoined);
  EXPECT_EQ(again.members, 2u);
  EXPECT_EQ(bus.members("r"), 2u);
  bus.leave("r", "a");
  EXPECT_EQ(bus.members("r"), 1u);
}

TEST(MemoryBusTest, RoomsAreIndependent) {
  MemoryBus bus;
  Join(bus, "r1", "a", 1);
  EXPECT_EQ(Join(bus, "r1", "b", 1).status, JoinResult::Status::kFull);
  EXPECT_EQ(Join(bus, "r2", "b", 1).status, JoinResult::Status::kJoined);
  EXPECT_EQ(bus.members("r1"), 1u);
  EXPECT_EQ(bus.members("r2"), 1u);
}

TEST(MemoryBusTest, LeaveOfUnknownMemberOrRoomIsHarmless) {
  MemoryBus bus;
  bus.leave("nowhere", "a");
  Join(bus, "r", "a", 2);
  bus.leave("r", "stranger");
  EXPECT_EQ(bus.members("r"), 1u);
  bus.leave("r", "a");
  bus.leave("r", "a");
  EXPECT_EQ(bus.members("r"), 0u);
  EXPECT_EQ(bus.members("never"), 0u);
}

TEST(MemoryBusTest, EmptiedRoomStartsAfresh) {
  MemoryBus bus;
  Join(bus, "r", "a", 1);
  bus.leave("r", "a");
  const JoinResult b = Join(bus, "r", "b", 1);
  EXPECT_EQ(b.status, JoinResult::Status::kJoined);
  EXPECT_EQ(b.members, 1u);
}

TEST(MemoryBusTest, PublishIsANoOp) {
  MemoryBus bus;
  Join(bus, "r", "a", 2);
  bus.publish("r", "a", "", peer_disconnected_message(), true);
  bus.publish_departure("r", "a");
  EXPECT_EQ(bus.members("r"), 1u);
}

// A member's windows are named once; the names are the in-process twins of Redis' rl:NS:ID:10,
// and every member of an IP (or a room) shares its window.
TEST(MemoryBusTest, MessageWindowsAreSharedPerIpAndPerRoom) {
  MemoryBus bus;
  const MessageWindows a = bus.message_windows("10.0.0.1", "r1");
  EXPECT_EQ(a.ip, "msg-ip:10.0.0.1");
  EXPECT_EQ(a.room, "msg-room:r1");
  const MessageWindows same_ip = bus.message_windows("10.0.0.1", "r2");
  const MessageWindows same_room = bus.message_windows("10.0.0.2", "r1");
  const MessageLimits limits{3, 2};
  EXPECT_EQ(bus.message_verdict(a, limits), MessageVerdict::kAllowed);
  EXPECT_EQ(bus.message_verdict(same_room, limits), MessageVerdict::kAllowed);
  // The room's 2 are spent (by two IPs); its third message is refused per room.
  EXPECT_EQ(bus.message_verdict(a, limits), MessageVerdict::kRoomLimited);
  // 10.0.0.1 has sent 2 (one refused, which still counts); its third, in another room, passes and
  // its fourth is refused per IP, before the room is looked at.
  EXPECT_EQ(bus.message_verdict(same_ip, limits), MessageVerdict::kAllowed);
  EXPECT_EQ(bus.message_verdict(same_ip, limits), MessageVerdict::kIpLimited);
  EXPECT_EQ(bus.message_verdict(bus.message_windows("10.0.0.3", "r2"), limits),
            MessageVerdict::kAllowed)
      << "r2 counted only the message 10.0.0.1 was allowed to send there";
  EXPECT_EQ(bus.message_verdict(bus.message_windows("10.0.0.3", "r2"), limits),
            MessageVerdict::kRoomLimited);
}

}  // namespace
}  // namespace sigsrv
