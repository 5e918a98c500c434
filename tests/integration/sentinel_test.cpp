// Redis Sentinel (PROTOCOL.md section 10) with real redis-server and redis-sentinel processes:
// the bus finds the master through the sentinels, follows a failover, notices a subscriber left on
// a node that is not the master, and refuses a configuration it cannot use.
#include <gtest/gtest.h>

#include <chrono>

#include "harness.hpp"
#include "ws_client.hpp"

using namespace testing_support;

namespace {

std::string offer(const std::string& sdp) {
  return R"({"type":"offer","sdp":")" + sdp + R"("})";
}

// Sends from `from` until `to` gets one of them (messages relayed while the bus was switching may
// be lost); true when one arrived before the deadline.
bool relay_resumes(WsClient& from, WsClient& to, std::chrono::steady_clock::time_point deadline) {
  for (int i = 0; std::chrono::steady_clock::now() < deadline; ++i) {
    from.send(offer("try-" + std::to_string(i)));
    if (auto got = to.recv(200ms); got && got->find("try-") != std::string::npos) return true;
  }
  return false;
}

Env sentinel_env(const std::vector<const SentinelProcess*>& sentinels, Env extra = {}) {
  std::string list;
  for (const auto* s : sentinels) list += (list.empty() ? "" : ",") + s->address();
  extra["REDIS_SENTINELS"] = list;
  if (!extra.count("REDIS_SENTINEL_MASTER")) extra["REDIS_SENTINEL_MASTER"] = "mymaster";
  return relaxed_limits(extra);
}

}  // namespace

TEST(Sentinel, FailoverAfterMasterCrashRelayResumesWithinFiveSeconds) {
  auto master = RedisProcess::start();
  ASSERT_TRUE(master);
  auto replica =
      RedisProcess::start(0, {}, {"--replicaof", "127.0.0.1", std::to_string(master->port())});
  ASSERT_TRUE(replica);
  auto s1 = SentinelProcess::start(master->port());
  auto s2 = SentinelProcess::start(master->port());
  auto s3 = SentinelProcess::start(master->port());
  ASSERT_TRUE(s1 && s2 && s3);
  // A failover needs the sentinels to know each other (hello messages) and the replica.
  ASSERT_TRUE(wait_until(
      [&] {
        for (const auto* s : {s1.get(), s2.get(), s3.get()}) {
          if (s->master_field("num-other-sentinels") != "2" || s->master_field("num-slaves") != "1")
            return false;
        }
        return replica->cli({"INFO", "replication"}).find("master_link_status:up") !=
               std::string::npos;
      },
      15000ms));

  const Env env = sentinel_env({s1.get(), s2.get(), s3.get()});
  auto a_srv = ServerProcess::start(env);
  auto b_srv = ServerProcess::start(env);
  ASSERT_TRUE(a_srv && b_srv);
  ASSERT_TRUE(wait_until([&] { return ready(*a_srv) && ready(*b_srv); }, 10000ms))
      << a_srv->output();
  auto a = join(a_srv->port(), "sf1");
  auto b = join(b_srv->port(), "sf1");
  ASSERT_TRUE(a && b);
  a->send(offer("before"));
  ASSERT_EQ(b->recv(), offer("before"));

  master->kill_now();
  // The sentinels' +switch-master: from then on they name the replica.
  ASSERT_TRUE(wait_until([&] { return s1->master_port() == replica->port(); }, 15000ms))
      << "no failover: " << s1->cli({"SENTINEL", "master", "mymaster"});
  const auto switched = std::chrono::steady_clock::now();
  const auto deadline = switched + 5s;
  EXPECT_TRUE(relay_resumes(*a, *b, deadline)) << a_srv->output();
  EXPECT_TRUE(relay_resumes(*b, *a, deadline)) << b_srv->output();
  EXPECT_TRUE(wait_until([&] { return ready(*a_srv) && ready(*b_srv); },
                         std::chrono::duration_cast<std::chrono::milliseconds>(
                             deadline - std::chrono::steady_clock::now() + 100ms)));
  EXPECT_GE(scrape(a_srv->port(), "cloudgaming_redis_master_switches_total").value_or(0), 1);
  // Membership was re-asserted on the new master.
  EXPECT_EQ(replica->cli({"SCARD", "room:sf1"}), "2");
}

// Nodes known by host name, as Kubernetes charts set them up (replica-announce-ip with the pod's
// name; sentinels with resolve-hostnames and announce-hostnames): the sentinel names the master
// by host name, in its answers and in +switch-master, and the servers dial the name.
TEST(Sentinel, NodesNamedByHostNameFailOverByName) {
  // Both loopback addresses where the machine has IPv6: "localhost" may resolve to either.
  const std::vector<std::string> named = {"--bind", "127.0.0.1", "-::1", "--replica-announce-ip",
                                          "localhost"};
  auto master = RedisProcess::start(0, {}, named);
  ASSERT_TRUE(master);
  std::vector<std::string> replica_args = named;
  replica_args.insert(replica_args.end(),
                      {"--replicaof", "localhost", std::to_string(master->port())});
  auto replica = RedisProcess::start(0, {}, replica_args);
  ASSERT_TRUE(replica);
  auto sentinel = SentinelProcess::start(master->port(), "mymaster", 1, {}, {}, {}, "localhost");
  ASSERT_TRUE(sentinel);
  ASSERT_TRUE(sentinel->wait_knows_replica(*replica));
  const std::string named_master =
      sentinel->cli({"SENTINEL", "get-master-addr-by-name", "mymaster"});
  ASSERT_NE(named_master.find("localhost"), std::string::npos) << named_master;

  const Env env = sentinel_env({sentinel.get()});
  auto a_srv = ServerProcess::start(env);
  auto b_srv = ServerProcess::start(env);
  ASSERT_TRUE(a_srv && b_srv);
  ASSERT_TRUE(wait_until([&] { return ready(*a_srv) && ready(*b_srv); }, 10000ms))
      << a_srv->output();
  auto a = join(a_srv->port(), "named");
  auto b = join(b_srv->port(), "named");
  ASSERT_TRUE(a && b);
  a->send(offer("before"));
  ASSERT_EQ(b->recv(), offer("before"));

  master->kill_now();
  ASSERT_TRUE(wait_until([&] { return sentinel->master_port() == replica->port(); }, 15000ms))
      << "no failover: " << sentinel->cli({"SENTINEL", "master", "mymaster"});
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  EXPECT_TRUE(relay_resumes(*a, *b, deadline)) << a_srv->output();
  EXPECT_TRUE(relay_resumes(*b, *a, deadline)) << b_srv->output();
  // +switch-master named the replica by host name, and that is where both servers went.
  const std::string followed = R"("address":"localhost:)" + std::to_string(replica->port()) + "\"";
  EXPECT_TRUE(a_srv->wait_for_output(followed)) << a_srv->output();
  EXPECT_TRUE(b_srv->wait_for_output(followed)) << b_srv->output();
  EXPECT_EQ(replica->cli({"SCARD", "room:named"}), "2");
}

TEST(Sentinel, SubscriberLeftOnAnotherNodeIsNoticedByTheDeliveryProbe) {
  // Two unrelated nodes. The sentinel names A, then (without a failover, so without
  // +switch-master) B. The command connection, cut, reconnects to B; the subscriber stays on A
  // and would hear nothing published on B: the probe notices and moves it.
  auto node_a = RedisProcess::start();
  auto node_b = RedisProcess::start();
  ASSERT_TRUE(node_a && node_b);
  auto sentinel = SentinelProcess::start(node_a->port(), "mymaster", 1);
  ASSERT_TRUE(sentinel);
  auto srv = ServerProcess::start(sentinel_env({sentinel.get()}, {{"INSTANCE_ID", "probe-1"}}));
  ASSERT_TRUE(srv);
  ASSERT_TRUE(wait_until([&] { return ready(*srv); }, 10000ms)) << srv->output();
  ASSERT_EQ(node_a->cli({"PUBSUB", "NUMSUB", "signal:probe:probe-1"}), "signal:probe:probe-1\n1");

  ASSERT_EQ(sentinel->cli({"SENTINEL", "REMOVE", "mymaster"}), "OK");
  ASSERT_EQ(sentinel->cli({"SENTINEL", "MONITOR", "mymaster", "127.0.0.1",
                           std::to_string(node_b->port()), "1"}),
            "OK");
  ASSERT_EQ(sentinel->master_port(), node_b->port());
  node_a->cli({"CLIENT", "KILL", "TYPE", "normal"});

  EXPECT_TRUE(wait_until(
      [&] {
        return scrape(srv->port(), "cloudgaming_redis_delivery_probe_failures_total").value_or(0) >=
               1;
      },
      8000ms))
      << srv->output();
  EXPECT_TRUE(wait_until(
      [&] {
        return node_b->cli({"PUBSUB", "NUMSUB", "signal:probe:probe-1"}) ==
                   "signal:probe:probe-1\n1" &&
               ready(*srv);
      },
      8000ms))
      << srv->output();
  EXPECT_EQ(node_a->cli({"PUBSUB", "NUMSUB", "signal:probe:probe-1"}), "signal:probe:probe-1\n0");
  EXPECT_TRUE(srv->output().find("Redis delivery probe failed") != std::string::npos);
}

TEST(Sentinel, NodeThatIsNotTheMasterIsNotUsed) {
  // The sentinel names a replica (its answer can be stale during a failover): ROLE says slave, so
  // the bus stays not ready until that node is a master.
  auto master = RedisProcess::start();
  ASSERT_TRUE(master);
  auto replica =
      RedisProcess::start(0, {}, {"--replicaof", "127.0.0.1", std::to_string(master->port())});
  ASSERT_TRUE(replica);
  auto sentinel = SentinelProcess::start(replica->port(), "mymaster", 1);
  ASSERT_TRUE(sentinel);
  auto srv = ServerProcess::start(sentinel_env({sentinel.get()}));
  ASSERT_TRUE(srv);
  ASSERT_TRUE(srv->wait_for_output("is not a master (ROLE)", 5000ms)) << srv->output();
  EXPECT_EQ(http_get(srv->port(), "/readyz").status, 503u);
  ASSERT_EQ(replica->cli({"REPLICAOF", "NO", "ONE"}), "OK");
  EXPECT_TRUE(wait_until([&] { return ready(*srv); }, 5000ms)) << srv->output();
}

TEST(Sentinel, UnknownMasterNameStopsStartUpNamingTheVariable) {
  auto master = RedisProcess::start();
  ASSERT_TRUE(master);
  auto sentinel = SentinelProcess::start(master->port(), "mymaster", 1);
  ASSERT_TRUE(sentinel);
  const RunResult r = run_server_to_exit(
      sentinel_env({sentinel.get()}, {{"WS_PORT", "0"}, {"REDIS_SENTINEL_MASTER", "nosuch"}}), {});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("REDIS_SENTINEL_MASTER"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("nosuch"), std::string::npos) << r.output;
}

TEST(Sentinel, SentinelsAndRedisUrlTogetherStopStartUp) {
  const RunResult r = run_server_to_exit({{"WS_PORT", "0"},
                                          {"REDIS_URL", "redis://:secret@127.0.0.1:6379"},
                                          {"REDIS_SENTINELS", "127.0.0.1:26379"},
                                          {"REDIS_SENTINEL_MASTER", "mymaster"}},
                                         {});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("REDIS_SENTINELS"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("REDIS_URL"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("secret"), std::string::npos) << r.output;
}

TEST(Sentinel, PasswordsReachSentinelsAndDataNodes) {
  auto master = RedisProcess::start(0, "data-pw");
  ASSERT_TRUE(master);
  auto sentinel = SentinelProcess::start(master->port(), "mymaster", 1, "sentinel-pw", "data-pw");
  ASSERT_TRUE(sentinel);
  auto srv = ServerProcess::start(
      sentinel_env({sentinel.get()},
                   {{"REDIS_SENTINEL_PASSWORD", "sentinel-pw"}, {"REDIS_PASSWORD", "data-pw"}}));
  ASSERT_TRUE(srv);
  EXPECT_TRUE(wait_until([&] { return ready(*srv); }, 10000ms)) << srv->output();
  EXPECT_EQ(srv->output().find("data-pw"), std::string::npos);
  EXPECT_EQ(srv->output().find("sentinel-pw"), std::string::npos);

  const RunResult wrong = run_server_to_exit(
      sentinel_env(
          {sentinel.get()},
          {{"WS_PORT", "0"}, {"REDIS_SENTINEL_PASSWORD", "nope"}, {"REDIS_PASSWORD", "x"}}),
      {});
  EXPECT_EQ(wrong.exit_code, 2) << wrong.output;
  EXPECT_NE(wrong.output.find("REDIS_SENTINEL_PASSWORD"), std::string::npos) << wrong.output;
  EXPECT_EQ(wrong.output.find("nope"), std::string::npos) << wrong.output;
}
