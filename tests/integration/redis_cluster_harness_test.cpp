// The Redis Cluster harness itself, with redis-cli only (no signal-server): the cluster forms, a
// slot migrates with its keys, a killed master's replica takes over. When a RedisCluster test
// fails, this one says whether the harness or the server is at fault.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "harness.hpp"

using namespace testing_support;
using Clock = std::chrono::steady_clock;

namespace {

long ms_since(Clock::time_point t) {
  return static_cast<long>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count());
}

}  // namespace

TEST(RedisClusterHarness, FormsMigratesASlotAndPromotesAReplica) {
  const auto t0 = Clock::now();
  auto cluster = RedisClusterProcess::start();
  ASSERT_TRUE(cluster);
  std::printf("cluster formed in %ld ms\n", ms_since(t0));
  ASSERT_EQ(cluster->masters().size(), 3u);
  ASSERT_TRUE(cluster->healthy());

  // The local slot function agrees with the cluster's, hash tags included.
  for (const std::string key : {"room:{abc}", "room-owners:{abc}", "abc", "rl:msg-ip:{1.2.3.4}:10",
                                "signal:{fleet}:instances", "plain-key", "{}x", "a{}b{c}"}) {
    EXPECT_EQ(RedisClusterProcess::key_slot(key), cluster->slot_of(key)) << key;
  }
  EXPECT_EQ(RedisClusterProcess::key_slot("room:{abc}"),
            RedisClusterProcess::key_slot("resume:{abc}:sid"));

  // Rooms on every master.
  const auto rooms = cluster->rooms_per_master("h", 2);
  ASSERT_EQ(rooms.size(), 3u);
  const auto masters = cluster->masters();
  for (std::size_t m = 0; m < rooms.size(); ++m) {
    ASSERT_EQ(rooms[m].size(), 2u);
    for (const auto& r : rooms[m]) {
      EXPECT_EQ(cluster->master_of_slot(cluster->slot_of("room:{" + r + "}")), masters[m]) << r;
    }
  }

  // A key written through redirection lands on its slot's master.
  const std::string room = rooms[0][0];
  const std::string key = "room:{" + room + "}";
  const int slot = RedisClusterProcess::key_slot(key);
  ASSERT_EQ(cluster->cli_cluster({"SADD", key, "m1", "m2"}), "2");
  ASSERT_EQ(cluster->cli_cluster({"SET", "resume:{" + room + "}:s1", "x"}), "OK");
  const std::size_t from = *cluster->master_of_slot(slot);
  EXPECT_EQ(cluster->cli(from, {"SCARD", key}), "2");
  const std::size_t to = masters[1] == from ? masters[2] : masters[1];

  // Migration in steps: while the slot is migrating, a new key is answered with ASK.
  const auto t1 = Clock::now();
  ASSERT_TRUE(cluster->begin_migration(slot, to));
  EXPECT_EQ(cluster->cli(from, {"SET", "room-owners:{" + room + "}", "v"}).rfind("ASK ", 0), 0u);
  EXPECT_EQ(cluster->move_keys(slot, 1, 1), 1);
  EXPECT_EQ(cluster->cli(from, {"CLUSTER", "COUNTKEYSINSLOT", std::to_string(slot)}), "1");
  EXPECT_EQ(cluster->move_keys(slot), 1);
  EXPECT_EQ(cluster->cli(from, {"CLUSTER", "GETKEYSINSLOT", std::to_string(slot), "10"}), "");
  EXPECT_EQ(cluster->cli(to, {"CLUSTER", "COUNTKEYSINSLOT", std::to_string(slot)}), "2");
  ASSERT_TRUE(cluster->finish_migration(slot));
  std::printf("slot %d migrated in %ld ms\n", slot, ms_since(t1));
  EXPECT_EQ(cluster->master_of_slot(slot), to);
  EXPECT_EQ(cluster->slot_of(key), slot);
  EXPECT_EQ(cluster->cli(from, {"SCARD", key}),
            "MOVED " + std::to_string(slot) + " 127.0.0.1:" + std::to_string(cluster->port(to)));
  EXPECT_EQ(cluster->cli(to, {"SCARD", key}), "2");
  EXPECT_EQ(cluster->owner_cli(key, {"SCARD", key}), "2");

  // The new owner is killed: its replica takes the slot, with the data.
  ASSERT_TRUE(wait_until([&] { return cluster->cli(to, {"WAIT", "1", "100"}) == "1"; }, 5000ms));
  const auto t2 = Clock::now();
  const uint16_t killed = cluster->kill_master_of_slot(slot);
  ASSERT_EQ(killed, cluster->port(to));
  const uint16_t promoted = cluster->wait_promoted(slot, killed, 15000ms);
  ASSERT_NE(promoted, 0) << cluster->cli(from, {"CLUSTER", "NODES"});
  std::printf("replica on %u promoted %ld ms after the kill of %u\n", promoted, ms_since(t2),
              killed);
  EXPECT_TRUE(cluster->healthy());
  EXPECT_EQ(cluster->masters().size(), 3u);
  EXPECT_EQ(cluster->cli_cluster({"SCARD", key}), "2");
  EXPECT_FALSE(cluster->alive(*cluster->index_of_port(killed)));
  const std::string seeds = cluster->seeds(6);
  EXPECT_EQ(std::count(seeds.begin(), seeds.end(), ','), 4) << "the killed node is no seed";
}
