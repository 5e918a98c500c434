// Redis Cluster bus (PROTOCOL.md section 10) with a real 3-master 3-replica cluster and two real
// server processes: relay across instances for rooms on every master, capacity and windows shared
// through the cluster, a slot migrated mid-traffic, a master killed and its replica promoted, and
// the configurations the server must refuse at start.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <regex>
#include <thread>

#include "admission.hpp"
#include "harness.hpp"
#include "resume_support.hpp"
#include "ws_client.hpp"

using namespace testing_support;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr char kPeerDisconnected[] = R"({"type":"peer-disconnected"})";

Env cluster_env(const RedisClusterProcess& cluster, Env extra = {}) {
  extra["REDIS_CLUSTER_NODES"] = cluster.seeds();
  return relaxed_limits(extra);
}

std::string candidate(const std::string& tag, int i) {
  return R"({"type":"candidate","candidate":")" + tag + std::to_string(i) + R"("})";
}

std::string room_key(const std::string& room) {
  return "room:{" + room + "}";
}

double metric(const ServerProcess& s, const std::string& sample) {
  return scrape(s.port(), sample).value_or(0);
}

// Redirects followed and topology refreshes: what a server did to follow the cluster.
double cluster_follow_ups(const ServerProcess& s) {
  return metric(s, R"(cloudgaming_redis_cluster_redirects_total{kind="moved"})") +
         metric(s, R"(cloudgaming_redis_cluster_redirects_total{kind="ask"})") +
         metric(s, "cloudgaming_redis_cluster_refreshes_total");
}

std::chrono::milliseconds until(Clock::time_point deadline) {
  return std::max(0ms,
                  std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
}

// Sends from `from` until `to` gets one of them (messages relayed while the slot had no master
// may be lost); true when one arrived before the deadline.
bool relay_resumes(WsClient& from, WsClient& to, Clock::time_point deadline) {
  for (int i = 0; Clock::now() < deadline; ++i) {
    from.send(offer("try-" + std::to_string(i)));
    if (auto got = to.recv(200ms); got && got->find("try-") != std::string::npos) return true;
  }
  return false;
}

// After relay_resumes: drops what is still in flight of its tries, so the next read is live.
// The marker is sent after the tries; everything before it is a try.
bool flush_tries(WsClient& from, WsClient& to, const std::string& marker) {
  from.send(offer(marker));
  while (auto got = to.recv(3000ms)) {
    if (*got == offer(marker)) return true;
    if (got->find("try-") == std::string::npos) {
      ADD_FAILURE() << "unexpected while flushing: " << *got;
      return false;
    }
  }
  ADD_FAILURE() << "marker " << marker << " never arrived";
  return false;
}

// `n` numbered candidates each way between a (one instance) and b (the other), all arriving in
// order; false (with a test failure) at the first one lost or out of place.
bool exchange(WsClient& a, WsClient& b, const std::string& tag, int n) {
  std::vector<std::string> from_a, from_b;
  for (int i = 0; i < n; ++i) {
    from_a.push_back(candidate(tag + "-a", i));
    from_b.push_back(candidate(tag + "-b", i));
  }
  a.send_all(from_a);
  b.send_all(from_b);
  for (int i = 0; i < n; ++i) {
    auto got = b.recv();
    if (got != from_a[i]) {
      ADD_FAILURE() << tag << ": b expected " << from_a[i] << ", got " << got.value_or("nothing");
      return false;
    }
  }
  for (int i = 0; i < n; ++i) {
    auto got = a.recv();
    if (got != from_b[i]) {
      ADD_FAILURE() << tag << ": a expected " << from_b[i] << ", got " << got.value_or("nothing");
      return false;
    }
  }
  return true;
}

struct Room {
  std::string id;
  std::size_t master = 0;       // node index owning its slot when the test started
  std::unique_ptr<WsClient> a;  // on instance one
  std::unique_ptr<WsClient> b;  // on instance two
};

// `per_master` rooms on each master, a member of each on each instance.
std::vector<Room> rooms_across_masters(const RedisClusterProcess& cluster, const ServerProcess& one,
                                       const ServerProcess& two, const std::string& prefix,
                                       std::size_t per_master) {
  std::vector<Room> rooms;
  const auto masters = cluster.masters();
  const auto ids = cluster.rooms_per_master(prefix, per_master);
  EXPECT_EQ(ids.size(), 3u);
  for (std::size_t m = 0; m < ids.size(); ++m) {
    EXPECT_EQ(ids[m].size(), per_master);
    for (const auto& id : ids[m]) {
      Room r;
      r.id = id;
      r.master = masters[m];
      r.a = join(one.port(), id);
      r.b = join(two.port(), id);
      if (!r.a || !r.b) return {};
      rooms.push_back(std::move(r));
    }
  }
  return rooms;
}

}  // namespace

TEST(RedisCluster, RoomsOnEveryMasterRelayBothWaysInOrderAcrossInstances) {
  auto cluster = RedisClusterProcess::start();
  ASSERT_TRUE(cluster);
  auto one = start_ready(cluster_env(*cluster));
  auto two = start_ready(cluster_env(*cluster));
  ASSERT_TRUE(one && two);
  auto rooms = rooms_across_masters(*cluster, *one, *two, "every", 2);
  ASSERT_EQ(rooms.size(), 6u);

  // Every room's burst is written before any is read: the rooms' traffic interleaves on the
  // servers' connections to the three masters.
  constexpr int kMessages = 200;
  std::vector<std::vector<std::string>> from_a(rooms.size()), from_b(rooms.size());
  for (std::size_t r = 0; r < rooms.size(); ++r) {
    for (int i = 0; i < kMessages; ++i) {
      from_a[r].push_back(candidate(rooms[r].id + "-a", i));
      from_b[r].push_back(candidate(rooms[r].id + "-b", i));
    }
    rooms[r].a->send_all(from_a[r]);
    rooms[r].b->send_all(from_b[r]);
  }
  for (std::size_t r = 0; r < rooms.size(); ++r) {
    SCOPED_TRACE("room " + rooms[r].id + " on node " + std::to_string(rooms[r].master));
    for (int i = 0; i < kMessages; ++i) {
      auto got = rooms[r].b->recv();
      ASSERT_TRUE(got) << "a->b lost from " << i;
      ASSERT_EQ(*got, from_a[r][i]);
    }
    for (int i = 0; i < kMessages; ++i) {
      auto got = rooms[r].a->recv();
      ASSERT_TRUE(got) << "b->a lost from " << i;
      ASSERT_EQ(*got, from_b[r][i]);
    }
  }
  // Nothing more (no echo, no duplicate): each side's next message is the other's marker.
  for (auto& room : rooms) {
    room.a->send(offer("marker-a"));
    EXPECT_EQ(room.b->recv(), offer("marker-a")) << room.id;
    room.b->send(offer("marker-b"));
    EXPECT_EQ(room.a->recv(), offer("marker-b")) << room.id;
  }

  // The keys are where the contract puts them: the room as hash tag, held by its slot's master.
  for (const auto& room : rooms) {
    const std::string key = room_key(room.id);
    EXPECT_EQ(cluster->slot_of(key), RedisClusterProcess::key_slot(room.id)) << key;
    EXPECT_EQ(cluster->cli(room.master, {"SCARD", key}), "2") << key;
    EXPECT_EQ(cluster->cli_cluster({"SCARD", key}), "2") << key;
    EXPECT_EQ(cluster->cli_cluster({"EXISTS", "room:" + room.id}), "0")
        << "an untagged key for " << room.id;
  }
  // The instance registry (a literal {fleet} hash tag: every lease and the ZSET in one slot).
  EXPECT_EQ(cluster->cli_cluster({"ZCARD", "signal:{fleet}:instances"}), "2");

  // A departure reaches the other instance once.
  rooms[0].a->close();
  EXPECT_EQ(rooms[0].b->recv(), kPeerDisconnected);
  EXPECT_TRUE(wait_until(
      [&] {
        return cluster->cli_cluster({"SCARD", room_key(rooms[0].id)}) == "1";
      },
      5000ms));
  rooms[1].a->send(offer("after-departure"));
  EXPECT_EQ(rooms[1].b->recv(), offer("after-departure"));
  EXPECT_TRUE(one->running() && two->running());
}

TEST(RedisCluster, CapacityAndLimitsHoldAcrossInstances) {
  auto cluster = RedisClusterProcess::start();
  ASSERT_TRUE(cluster);
  constexpr int kRoomLimit = 50;
  const Env env = cluster_env(
      *cluster,
      {{"ROOM_CAPACITY", "2"}, {"RATE_LIMIT_ROOM_MSGS_PER_10S", std::to_string(kRoomLimit)}});
  auto one = start_ready(env);
  auto two = start_ready(env);
  ASSERT_TRUE(one && two);
  const auto masters = cluster->masters();
  ASSERT_EQ(masters.size(), 3u);

  // Capacity: a full room refuses a third joiner on either instance.
  const std::string full = cluster->room_on(masters[1], "full");
  auto a = join(one->port(), full);
  auto b = join(two->port(), full);
  ASSERT_TRUE(a && b);
  ASSERT_EQ(admission(*a), "admitted");
  ASSERT_EQ(admission(*b), "admitted");
  for (const auto* s : {one.get(), two.get()}) {
    auto third = join(s->port(), full);
    ASSERT_TRUE(third);
    EXPECT_EQ(admission(*third), "close 1000 'Room is full'") << "third joiner on " << s->port();
  }
  EXPECT_EQ(cluster->cli(masters[1], {"SCARD", room_key(full)}), "2");
  // The seat a leaver frees is free on the other instance too.
  a->close();
  EXPECT_EQ(b->recv(), kPeerDisconnected);
  ASSERT_TRUE(wait_until(
      [&] {
        return cluster->cli_cluster({"SCARD", room_key(full)}) == "1";
      },
      5000ms));
  auto c = join(two->port(), full);
  ASSERT_TRUE(c);
  EXPECT_EQ(admission(*c), "admitted");
  EXPECT_EQ(cluster->cli_cluster({"SCARD", room_key(full)}), "2");

  // The room's message window, shared by both instances through the cluster (the same steps as
  // RedisWindows on one Redis: each instance decides at once and reconciles with the cluster).
  const std::string win = cluster->room_on(masters[2], "win");
  // Windows carry one of 16 bucket tags, chosen by the id's slot (README "Redis Cluster").
  auto window_name = [](const std::string& ns, const std::string& id) {
    return "rl:{w" + std::to_string(RedisClusterProcess::key_slot(id) % 16) + "}:" + ns + ":" + id +
           ":10";
  };
  const std::string window_key = window_name("msg-room", win);
  auto x = join(one->port(), win, "&events=1");
  auto y = join(two->port(), win, "&events=1");
  ASSERT_TRUE(x && y);
  auto next_relayed = [](WsClient& ws) -> std::optional<std::string> {
    while (auto m = ws.recv(5000ms)) {
      if (m->find(R"("type":"control")") == std::string::npos) return m;
    }
    return std::nullopt;
  };
  std::vector<std::string> burst;
  for (int i = 0; i < 30; ++i) burst.push_back(candidate("x", i));
  x->send_all(burst);
  for (int i = 0; i < 30; ++i) ASSERT_EQ(next_relayed(*y), burst[i]) << i;
  // All 30 hits are in the cluster, under the window's tagged key on the master owning it.
  ASSERT_TRUE(wait_until(
      [&] {
        return cluster->cli_cluster({"GET", window_key}) == "30";
      },
      5000ms))
      << cluster->cli_cluster({"GET", window_key});
  EXPECT_EQ(cluster->owner_cli(window_key, {"GET", window_key}), "30");
  EXPECT_EQ(cluster->cli_cluster({"EXISTS", window_name("msg-ip", "127.0.0.1")}), "1");
  // The other instance's first message goes through (it had counted nothing of this room); once
  // it has added its hit and read the cluster's 31 back, it allows 19 more and no more.
  const double reconciled_before = metric(*two, "cloudgaming_rate_limit_hits_reconciled_total");
  y->send(candidate("y", 0));
  ASSERT_EQ(next_relayed(*x), candidate("y", 0));
  ASSERT_TRUE(wait_until(
      [&] {
        return metric(*two, "cloudgaming_rate_limit_hits_reconciled_total") >=
               reconciled_before + 2;
      },
      3000ms));
  ASSERT_EQ(cluster->cli_cluster({"GET", window_key}), "31");
  burst.clear();
  for (int i = 1; i <= 30; ++i) burst.push_back(candidate("y", i));
  y->send_all(burst);
  for (int i = 0; i < kRoomLimit - 31; ++i) ASSERT_EQ(next_relayed(*x), burst[i]) << i;
  EXPECT_TRUE(wait_until(
      [&] {
        return metric(*two, R"(cloudgaming_rate_limit_drops_total{scope="room"})") ==
               30 - (kRoomLimit - 31);
      },
      5000ms))
      << metric(*two, R"(cloudgaming_rate_limit_drops_total{scope="room"})");
  // The dropped hits count too.
  EXPECT_TRUE(wait_until(
      [&] {
        return cluster->cli_cluster({"GET", window_key}) == "61";
      },
      3000ms))
      << cluster->cli_cluster({"GET", window_key});
  EXPECT_TRUE(one->running() && two->running());
}

namespace {

// One side of a resumable pair that streams numbered offers and reads the other's, resuming
// (with lastSeq, re-sending what the server did not accept) whenever its socket is closed.
struct StreamPeer {
  std::string name;
  std::string room;
  uint16_t port = 0;
  ResumableClient session;
  int64_t last_seq = 0;
  std::vector<std::string> sent;  // sdps, in sending order
  std::vector<std::string> got;   // the other's sdps, in arrival order
  int resumes = 0;
  bool failed = false;

  void send_next() {
    sent.push_back(name + std::to_string(sent.size()));
    if (session.ws && session.ws->is_open()) session.ws->send(offer(sent.back()));
  }

  // Reads what arrives within `wait`; resumes when the socket is closed.
  void pump(std::chrono::milliseconds wait) {
    if (failed) return;
    while (true) {
      auto text = session.ws->recv(wait);
      if (!text) break;
      wait = 0ms;
      const auto v = json::parse(*text);
      if (seq_of(v) != last_seq + 1) {
        ADD_FAILURE() << name << ": expected seq " << last_seq + 1 << ", got " << *text;
        failed = true;
        return;
      }
      last_seq = seq_of(v);
      if (v.at("type").as_string() == "offer") got.push_back(sdp_of(v));
    }
    if (!session.ws->is_open()) resume();
  }

  void resume() {
    const auto closed = session.ws->wait_close(100ms);
    ++resumes;
    std::printf("%s resumes after close %d '%s' at seq %lld\n", name.c_str(),
                closed ? closed->code : 0, closed ? closed->reason.c_str() : "",
                static_cast<long long>(last_seq));
    session.ws = connect_to(port, resume_query(room, session.token, last_seq));
    if (!session.ws) {
      failed = true;
      return;
    }
    const auto resumed = next(*session.ws);
    if (action_of(resumed) != "resumed" || !resumed.at("payload").at("recovered").as_bool()) {
      ADD_FAILURE() << name << ": " << json::serialize(resumed);
      failed = true;
      return;
    }
    const auto received = resumed.at("payload").at("received").as_int64();
    for (auto i = static_cast<std::size_t>(received); i < sent.size(); ++i) {
      session.ws->send(offer(sent[i]));
    }
  }
};

}  // namespace

// Where two streams part: the index, the sizes, and the entries there.
std::string first_difference(const std::vector<std::string>& got,
                             const std::vector<std::string>& sent) {
  std::size_t i = 0;
  while (i < got.size() && i < sent.size() && got[i] == sent[i]) ++i;
  return "sizes " + std::to_string(got.size()) + "/" + std::to_string(sent.size()) + ", first " +
         "difference at " + std::to_string(i) + ": got '" + (i < got.size() ? got[i] : "-") +
         "', sent '" + (i < sent.size() ? sent[i] : "-") + "'";
}

TEST(RedisCluster, SlotMigrationMidTrafficLosesNothingForResumableSessions) {
  auto cluster = RedisClusterProcess::start();
  ASSERT_TRUE(cluster);
  const Env env = cluster_env(*cluster, {{"RESUME_SECRET", "cluster-secret"},
                                         {"RESUME_BUFFER_MESSAGES", "100000"},
                                         {"RESUME_BUFFER_BYTES", "67108864"}});
  auto one = start_ready(env);
  auto two = start_ready(env);
  ASSERT_TRUE(one && two);
  const auto masters = cluster->masters();
  ASSERT_EQ(masters.size(), 3u);
  const std::string room = cluster->room_on(masters[0], "mig");
  const int slot = RedisClusterProcess::key_slot(room_key(room));
  const std::size_t from = masters[0];
  const std::size_t to = masters[1];

  StreamPeer a;
  a.name = "a";
  a.room = room;
  a.port = one->port();
  StreamPeer b;
  b.name = "b";
  b.room = room;
  b.port = two->port();
  a.session = open_session(one->port(), room);
  ASSERT_TRUE(a.session.ws);
  b.session = open_session(two->port(), room);
  ASSERT_TRUE(b.session.ws);
  ASSERT_EQ(action_of(next(*a.session.ws)), "peer-joined");
  a.last_seq = 1;
  const double follow_ups_one = cluster_follow_ups(*one);
  const double follow_ups_two = cluster_follow_ups(*two);

  // The migration runs beside the stream, each step once more messages have arrived, so traffic
  // flows while the slot is MIGRATING/IMPORTING, between key moves, and after the switch.
  std::atomic<int> delivered{0};
  std::atomic<bool> migrated{false};
  std::atomic<bool> migration_ok{false};
  auto after_more = [&](int n) {
    const int target = delivered + n;
    return wait_until([&] { return delivered >= target; }, 10000ms);
  };
  std::thread migration([&] {
    bool ok = after_more(20) && cluster->begin_migration(slot, to) && after_more(20);
    // Then the keys and the switch back to back, as `redis-cli --cluster reshard` does. (Traffic
    // in between is not waited for: once the keys have moved, a relay script runs on the importing
    // node after ASK and publishes there, where no instance listens until the switch; see the
    // README's Redis Cluster section.)
    ok = ok && cluster->finish_migration(slot);
    migration_ok = ok;
    migrated = true;
  });

  const auto deadline = Clock::now() + 30s;
  int after_migration = 0;
  while (Clock::now() < deadline && after_migration < 100 && !a.failed && !b.failed) {
    a.send_next();
    b.send_next();
    a.pump(1ms);
    b.pump(1ms);
    delivered = static_cast<int>(a.got.size() + b.got.size());
    if (migrated) ++after_migration;
  }
  // The rest of the stream, and the replays of any resume, arrive.
  wait_until(
      [&] {
        a.pump(10ms);
        b.pump(10ms);
        return a.failed || b.failed ||
               (a.got.size() >= b.sent.size() && b.got.size() >= a.sent.size());
      },
      until(deadline + 10s));
  migration.join();
  ASSERT_TRUE(migration_ok) << cluster->cli(from, {"CLUSTER", "NODES"});
  std::printf("sent %zu + %zu, resumes %d + %d\n", a.sent.size(), b.sent.size(), a.resumes,
              b.resumes);
  EXPECT_FALSE(a.failed || b.failed);
  EXPECT_EQ(b.got, a.sent) << "a->b: every message exactly once, in order; "
                           << first_difference(b.got, a.sent);
  EXPECT_EQ(a.got, b.sent) << "b->a: every message exactly once, in order; "
                           << first_difference(a.got, b.sent);
  if (::testing::Test::HasFailure()) {
    std::printf("%s\n----\n%s\n", one->output().c_str(), two->output().c_str());
  }

  // The room's keys moved with the slot; the servers followed (a redirect or a refresh each).
  EXPECT_EQ(cluster->master_of_slot(slot), to);
  EXPECT_EQ(cluster->cli(to, {"SCARD", room_key(room)}), "2");
  EXPECT_EQ(cluster->cli(from, {"SCARD", room_key(room)}).rfind("MOVED ", 0), 0u);
  EXPECT_GT(cluster_follow_ups(*one), follow_ups_one) << one->output();
  EXPECT_GT(cluster_follow_ups(*two), follow_ups_two) << two->output();
  // Live after the move, both ways.
  const std::size_t a_sent = a.sent.size(), b_sent = b.sent.size();
  a.send_next();
  b.send_next();
  EXPECT_TRUE(wait_until(
      [&] {
        a.pump(10ms);
        b.pump(10ms);
        return a.got.size() > b_sent && b.got.size() > a_sent;
      },
      5000ms));
  EXPECT_EQ(b.got, a.sent);
  EXPECT_EQ(a.got, b.sent);
  EXPECT_TRUE(one->running() && two->running());
}

// Managed clusters name their nodes (cluster-preferred-endpoint-type hostname): CLUSTER SLOTS and
// MOVED carry the announced name, not an address, and that name is what the servers dial.
TEST(RedisCluster, NodesAnnouncedByHostnameAreDialledByName) {
  RedisClusterProcess::Options options;
  options.announce_hostname = "localhost";
  auto cluster = RedisClusterProcess::start(options);
  ASSERT_TRUE(cluster);
  // The cluster names its nodes by hostname (the seeds below stay addresses).
  const std::string slots = cluster->cli(0, {"CLUSTER", "SLOTS"});
  ASSERT_NE(slots.find("localhost"), std::string::npos) << slots;
  auto one = start_ready(cluster_env(*cluster));
  auto two = start_ready(cluster_env(*cluster));
  ASSERT_TRUE(one && two);
  auto rooms = rooms_across_masters(*cluster, *one, *two, "named", 1);
  ASSERT_EQ(rooms.size(), 3u);
  for (auto& room : rooms) {
    SCOPED_TRACE("room " + room.id + " on node " + std::to_string(room.master));
    ASSERT_TRUE(exchange(*room.a, *room.b, room.id, 20));
  }

  // A slot moved: the old owner's MOVED names the new one by hostname, and the servers follow.
  const double follow_ups_one = cluster_follow_ups(*one);
  const double follow_ups_two = cluster_follow_ups(*two);
  const int slot = RedisClusterProcess::key_slot(room_key(rooms[0].id));
  const std::size_t to = rooms[1].master;
  ASSERT_TRUE(cluster->migrate_slot(slot, to));
  const std::string moved = cluster->cli(rooms[0].master, {"SCARD", room_key(rooms[0].id)});
  EXPECT_EQ(moved,
            "MOVED " + std::to_string(slot) + " localhost:" + std::to_string(cluster->port(to)));
  ASSERT_TRUE(relay_resumes(*rooms[0].a, *rooms[0].b, Clock::now() + 10s));
  ASSERT_TRUE(flush_tries(*rooms[0].a, *rooms[0].b, "moved-marker"));
  EXPECT_TRUE(exchange(*rooms[0].a, *rooms[0].b, "after-move", 20));
  EXPECT_TRUE(wait_until([&] { return cluster_follow_ups(*one) > follow_ups_one; }, 5000ms));
  EXPECT_TRUE(wait_until([&] { return cluster_follow_ups(*two) > follow_ups_two; }, 5000ms));
  EXPECT_EQ(cluster->cli(to, {"SCARD", room_key(rooms[0].id)}), "2");

  // The name is dialled as announced: one that does not resolve leaves a new instance unready,
  // and its log says which name failed to resolve.
  const std::string unknown = "signal-node.invalid";
  for (std::size_t i = 0; i < cluster->size(); ++i) {
    ASSERT_EQ(cluster->cli(i, {"CONFIG", "SET", "cluster-announce-hostname", unknown}), "OK");
  }
  ASSERT_TRUE(wait_until(
      [&] {
        const std::string now = cluster->cli(0, {"CLUSTER", "SLOTS"});
        return now.find(unknown) != std::string::npos && now.find("localhost") == std::string::npos;
      },
      10000ms))
      << cluster->cli(0, {"CLUSTER", "SLOTS"});
  auto three = ServerProcess::start(cluster_env(*cluster));
  ASSERT_TRUE(three);
  EXPECT_TRUE(wait_until(
      [&] { return three->output().find("resolve " + unknown) != std::string::npos; }, 10000ms))
      << three->output();
  EXPECT_FALSE(ready(*three)) << three->output();
  EXPECT_TRUE(three->running() && one->running() && two->running());
}

// Mid-migration, a relay script can find one of the session keys it reads by name on the other
// node ("non local key"); it is retried until the migration moves the rest. Each try must start
// clean: one that had counted the sender's message or numbered it for the peer before failing
// would count it twice, or leave the peer a gap in its numbering, on every retry.
TEST(RedisCluster, RelayRetriedMidMigrationCountsAndNumbersOnce) {
  auto cluster = RedisClusterProcess::start();
  ASSERT_TRUE(cluster);
  const Env env = cluster_env(*cluster, {{"RESUME_SECRET", "cluster-secret"}});
  auto one = start_ready(env);
  auto two = start_ready(env);
  ASSERT_TRUE(one && two);
  const auto masters = cluster->masters();
  ASSERT_EQ(masters.size(), 3u);
  const std::size_t from = masters[0];
  const std::size_t to = masters[1];
  const std::string room = cluster->room_on(from, "split");
  const int slot = RedisClusterProcess::key_slot(room_key(room));
  ResumableClient a = open_session(one->port(), room);
  ASSERT_TRUE(a.ws);
  ResumableClient b = open_session(two->port(), room);
  ASSERT_TRUE(b.ws);
  ASSERT_EQ(action_of(next(*a.ws)), "peer-joined");  // seq 1
  a.ws->send(offer("before"));
  const auto before = next(*b.ws);
  ASSERT_EQ(sdp_of(before), "before");
  const int64_t b_seq = seq_of(before);

  // b's session log alone moves to the importing node: a relay from a runs on the old owner,
  // which holds every key it declares, and meets b's log there no more.
  std::string b_sid;
  const std::string sessions = "room-resumable:{" + room + "}";
  for (const std::string& sid : lines_of(cluster->cli(from, {"SMEMBERS", sessions}))) {
    if (cluster->cli(from, {"HGET", "resume:" + sid, "client"}) == b.client_id) b_sid = sid;
  }
  ASSERT_FALSE(b_sid.empty()) << cluster->cli(from, {"SMEMBERS", sessions});
  ASSERT_TRUE(cluster->begin_migration(slot, to));
  ASSERT_EQ(cluster->cli(from, {"MIGRATE", "127.0.0.1", std::to_string(cluster->port(to)), "", "0",
                                "5000", "KEYS", "resume-log:" + b_sid}),
            "OK");
  const auto failed_scripts = [&] {
    const std::string stats = cluster->cli(from, {"INFO", "commandstats"});
    std::smatch m;
    static const std::regex re("cmdstat_evalsha:.*failed_calls=([0-9]+)");
    return std::regex_search(stats, m, re) ? std::stoll(m[1]) : 0LL;
  };
  const long long failed_before = failed_scripts();
  a.ws->send(offer("during"));
  // Refused and retried a few times (every 10 ms) while the slot stays split...
  ASSERT_TRUE(wait_until([&] { return failed_scripts() >= failed_before + 3; }, 5000ms))
      << cluster->cli(from, {"INFO", "commandstats"});
  // ...then the rest moves and the slot switches: the retry runs on the new owner.
  ASSERT_TRUE(cluster->finish_migration(slot));
  // b hears it numbered once: live, or replayed if the moved slot asked it to resume (1013).
  auto during = next(*b.ws, 10000ms);
  if (during.is_null()) {
    b.ws = connect_to(two->port(), resume_query(room, b.token, b_seq));
    ASSERT_TRUE(b.ws);
    ASSERT_EQ(action_of(next(*b.ws)), "resumed");
    during = next(*b.ws);
  }
  EXPECT_EQ(sdp_of(during), "during") << json::serialize(during);
  EXPECT_EQ(seq_of(during), b_seq + 1) << "numbered once for b: " << json::serialize(during);
  // a's two messages counted once each.
  std::string a_sid;
  for (const std::string& sid : lines_of(cluster->cli(to, {"SMEMBERS", sessions}))) {
    if (sid != b_sid) a_sid = sid;
  }
  EXPECT_EQ(cluster->cli(to, {"HGET", "resume:" + a_sid, "received"}), "2");
  EXPECT_TRUE(one->running() && two->running());
}

// Instance crash on a cluster: the leases and their registry live in the {fleet} slot, the rooms
// elsewhere, so the reap script takes the expired instances from the sweep instead of reading
// leases (it may not touch another slot). The peers hear of it once, and the seats are freed.
TEST(RedisCluster, CrashedInstancesMembersAreReleasedOnEveryMaster) {
  auto cluster = RedisClusterProcess::start();
  ASSERT_TRUE(cluster);
  const Env env = cluster_env(*cluster, {{"INSTANCE_LEASE_TTL_MS", "1500"}});
  auto one = start_ready(env);
  auto two = start_ready(env);
  ASSERT_TRUE(one && two);
  // One room per master: a host here, a browser on the instance that dies.
  std::vector<std::string> rooms;
  for (const std::size_t m : cluster->masters()) rooms.push_back(cluster->room_on(m, "crash"));
  std::vector<std::unique_ptr<WsClient>> hosts;
  std::vector<std::unique_ptr<WsClient>> browsers;
  for (const auto& room : rooms) {
    hosts.push_back(join(one->port(), room));
    browsers.push_back(join(two->port(), room));
    ASSERT_TRUE(hosts.back() && browsers.back());
    browsers.back()->send(candidate(room, 0));
    ASSERT_EQ(hosts.back()->recv(), candidate(room, 0));
    ASSERT_EQ(cluster->owner_cli(room_key(room), {"SCARD", room_key(room)}), "2");
  }
  two->kill_now();
  // Lease TTL plus a second is the contract; four times that on a loaded machine.
  for (std::size_t i = 0; i < rooms.size(); ++i) {
    const auto notice = hosts[i]->recv(10000ms);
    ASSERT_TRUE(notice) << rooms[i] << ": no peer-disconnected\n" << one->output();
    EXPECT_EQ(*notice, kPeerDisconnected) << rooms[i];
    EXPECT_EQ(cluster->owner_cli(room_key(rooms[i]), {"SCARD", room_key(rooms[i])}), "1");
    // The seat is free, and nothing else came for the host before the newcomer's message.
    auto newcomer = join(one->port(), rooms[i]);
    ASSERT_TRUE(newcomer);
    newcomer->send(candidate("newcomer", static_cast<int>(i)));
    EXPECT_EQ(hosts[i]->recv(), candidate("newcomer", static_cast<int>(i))) << rooms[i];
  }
  EXPECT_EQ(metric(*one, "cloudgaming_crashed_members_released_total"), 3.0);
  EXPECT_TRUE(one->wait_for_output("Instance lease expired")) << one->output();
}

// A crashed instance's session is released with its seat, but nothing ends it: its id stays in
// room-resumable:{room} until a relay in the room finds its member gone, and on a cluster for as
// long as the room lives once its keys have expired (mid-migration a missing hash may only be
// elsewhere, so the relay script leaves such ids). The last member to leave takes the set.
TEST(RedisCluster, EmptiedRoomKeepsNoSessionIdsOfACrashedInstance) {
  auto cluster = RedisClusterProcess::start();
  ASSERT_TRUE(cluster);
  const Env env = cluster_env(
      *cluster, {{"INSTANCE_LEASE_TTL_MS", "1500"}, {"RESUME_SECRET", "cluster-secret"}});
  auto one = start_ready(env);
  auto two = start_ready(env);
  ASSERT_TRUE(one && two);
  const std::string room = cluster->room_on(cluster->masters().at(0), "gone");
  const std::string sessions = "room-resumable:{" + room + "}";
  auto host = join(one->port(), room);
  ASSERT_TRUE(host);
  ResumableClient browser = open_session(two->port(), room);
  ASSERT_TRUE(browser.ws);
  browser.ws->send(candidate(room, 0));
  ASSERT_EQ(host->recv(), candidate(room, 0));
  ASSERT_EQ(cluster->owner_cli(sessions, {"SCARD", sessions}), "1");
  two->kill_now();
  ASSERT_EQ(host->recv(10000ms), kPeerDisconnected) << one->output();
  EXPECT_EQ(cluster->owner_cli(room_key(room), {"SCARD", room_key(room)}), "1");
  EXPECT_EQ(cluster->owner_cli(sessions, {"SCARD", sessions}), "1") << "no relay has pruned it";
  host->close();
  EXPECT_TRUE(wait_until(
      [&] {
        return cluster->owner_cli(sessions, {"EXISTS", sessions}) == "0";
      },
      5000ms))
      << cluster->owner_cli(sessions, {"SMEMBERS", sessions});
  EXPECT_EQ(cluster->owner_cli(room_key(room), {"SCARD", room_key(room)}), "0");
}

TEST(RedisCluster, MasterKilledReplicaPromotedRelayResumesWithinFiveSeconds) {
  // Full coverage off: while the killed master's slots have no master, the other masters keep
  // answering (with the default, every node refuses every command until the promotion).
  RedisClusterProcess::Options options;
  options.require_full_coverage = false;
  auto cluster = RedisClusterProcess::start(options);
  ASSERT_TRUE(cluster);
  auto one = start_ready(cluster_env(*cluster));
  auto two = start_ready(cluster_env(*cluster));
  ASSERT_TRUE(one && two);
  auto rooms = rooms_across_masters(*cluster, *one, *two, "kill", 1);
  ASSERT_EQ(rooms.size(), 3u);
  // The busy room is on the first seed node (the servers must find the cluster without it).
  Room& busy = rooms[0];
  const int slot = RedisClusterProcess::key_slot(room_key(busy.id));
  for (auto& room : rooms) ASSERT_TRUE(exchange(*room.a, *room.b, "before", 50)) << room.id;
  // The replica has everything the master acknowledged.
  ASSERT_TRUE(wait_until([&] { return cluster->cli(busy.master, {"WAIT", "1", "100"}) == "1"; }));
  const double refreshes_one = metric(*one, "cloudgaming_redis_cluster_refreshes_total");
  const double refreshes_two = metric(*two, "cloudgaming_redis_cluster_refreshes_total");
  const double resubscribes_one = metric(*one, "cloudgaming_redis_cluster_resubscribes_total");
  const double resubscribes_two = metric(*two, "cloudgaming_redis_cluster_resubscribes_total");

  const auto killed_at = Clock::now();
  const uint16_t killed = cluster->kill_master_of_slot(slot);
  ASSERT_EQ(killed, cluster->port(busy.master));
  // Rooms on the other masters never stop relaying: the very messages sent arrive.
  for (std::size_t r = 1; r < rooms.size(); ++r) {
    EXPECT_TRUE(exchange(*rooms[r].a, *rooms[r].b, "outage", 5)) << rooms[r].id;
  }
  const uint16_t promoted = cluster->wait_promoted(slot, killed, 15000ms);
  ASSERT_NE(promoted, 0) << cluster->cli(rooms[1].master, {"CLUSTER", "NODES"});
  const auto promoted_at = Clock::now();
  std::printf(
      "replica on %u promoted %lld ms after the kill of %u\n", promoted,
      static_cast<long long>(
          std::chrono::duration_cast<std::chrono::milliseconds>(promoted_at - killed_at).count()),
      killed);

  const auto deadline = promoted_at + 5s;
  EXPECT_TRUE(relay_resumes(*busy.a, *busy.b, deadline)) << one->output();
  EXPECT_TRUE(relay_resumes(*busy.b, *busy.a, deadline)) << two->output();
  EXPECT_TRUE(wait_until([&] { return ready(*one) && ready(*two); }, until(deadline) + 100ms))
      << "/readyz " << http_get(one->port(), "/readyz").status << " and "
      << http_get(two->port(), "/readyz").status;
  std::printf("relay and readiness back %lld ms after the promotion\n",
              static_cast<long long>(
                  std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - promoted_at)
                      .count()));
  // From then on nothing is lost in any room, the busy one included.
  ASSERT_TRUE(flush_tries(*busy.a, *busy.b, "flush-a"));
  ASSERT_TRUE(flush_tries(*busy.b, *busy.a, "flush-b"));
  for (auto& room : rooms) EXPECT_TRUE(exchange(*room.a, *room.b, "after", 50)) << room.id;
  // The membership is on the promoted master, and the servers refreshed their slot maps.
  const auto new_master = cluster->index_of_port(promoted);
  ASSERT_TRUE(new_master);
  EXPECT_EQ(cluster->cli(*new_master, {"SCARD", room_key(busy.id)}), "2");
  EXPECT_GT(metric(*one, "cloudgaming_redis_cluster_refreshes_total"), refreshes_one);
  EXPECT_GT(metric(*two, "cloudgaming_redis_cluster_refreshes_total"), refreshes_two);
  // Each server subscribed the busy room's two channels (relay and presence, one slot) on the
  // promoted master once, in one SSUBSCRIBE: not once more by the slot map's own move.
  EXPECT_EQ(metric(*one, "cloudgaming_redis_cluster_resubscribes_total"), resubscribes_one + 2);
  EXPECT_EQ(metric(*two, "cloudgaming_redis_cluster_resubscribes_total"), resubscribes_two + 2);
  const std::string stats = cluster->cli(*new_master, {"INFO", "commandstats"});
  std::smatch calls;
  static const std::regex ssubscribe("cmdstat_ssubscribe:calls=([0-9]+)");
  ASSERT_TRUE(std::regex_search(stats, calls, ssubscribe)) << stats;
  EXPECT_EQ(calls[1], "2") << stats;
  EXPECT_TRUE(one->running()) << one->output();
  EXPECT_TRUE(two->running()) << two->output();
}

TEST(RedisCluster, PasswordReachesEveryNodeAndNeverTheLogs) {
  RedisClusterProcess::Options options;
  options.password = "cluster-pw-7";
  auto cluster = RedisClusterProcess::start(options);
  ASSERT_TRUE(cluster);
  const Env env = cluster_env(*cluster, {{"REDIS_PASSWORD", options.password}});
  auto one = start_ready(env);
  auto two = start_ready(env);
  ASSERT_TRUE(one && two);
  auto rooms = rooms_across_masters(*cluster, *one, *two, "pw", 1);
  ASSERT_EQ(rooms.size(), 3u);
  for (auto& room : rooms) EXPECT_TRUE(exchange(*room.a, *room.b, "pw", 10)) << room.id;
  EXPECT_EQ(one->output().find(options.password), std::string::npos);
  EXPECT_EQ(two->output().find(options.password), std::string::npos);
}

namespace {

bool names_variable(const std::string& text, const std::string& name) {
  return std::regex_search(text, std::regex("(^|[^A-Z0-9_])" + name + "([^A-Z0-9_]|$)"));
}

// A refusal at start: exit code 2, the variable named, never listening.
RunResult expect_refused(const Env& env, const std::string& variable) {
  Env full = env;
  full["WS_PORT"] = "0";
  const RunResult r = run_server_to_exit(full, {}, 5000ms);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(names_variable(r.output, variable)) << r.output;
  EXPECT_EQ(r.output.find("Server listening"), std::string::npos) << r.output;
  return r;
}

}  // namespace

TEST(RedisClusterConfig, ClusterNodesWithRedisUrlOrSentinelsStopStartUp) {
  {
    SCOPED_TRACE("with REDIS_URL");
    const RunResult r = expect_refused({{"REDIS_CLUSTER_NODES", "127.0.0.1:7000,127.0.0.1:7001"},
                                        {"REDIS_URL", "redis://:url-secret@127.0.0.1:6379"}},
                                       "REDIS_CLUSTER_NODES");
    EXPECT_EQ(r.output.find("url-secret"), std::string::npos) << r.output;
  }
  {
    SCOPED_TRACE("with REDIS_SENTINELS");
    expect_refused({{"REDIS_CLUSTER_NODES", "127.0.0.1:7000"},
                    {"REDIS_SENTINELS", "127.0.0.1:26379"},
                    {"REDIS_SENTINEL_MASTER", "mymaster"}},
                   "REDIS_CLUSTER_NODES");
  }
}

TEST(RedisClusterConfig, MalformedNodeListStopsStartUp) {
  for (const std::string list :
       {"127.0.0.1", "127.0.0.1:0", ":80", "127.0.0.1:7000,", ",127.0.0.1:7000",
        "127.0.0.1:7000,,127.0.0.1:7001", "127.0.0.1:x", "127.0.0.1:65536"}) {
    SCOPED_TRACE("REDIS_CLUSTER_NODES=" + list);
    expect_refused({{"REDIS_CLUSTER_NODES", list}}, "REDIS_CLUSTER_NODES");
  }
}

TEST(RedisClusterConfig, NodesThatAreNotAClusterStopStartUp) {
  auto plain = RedisProcess::start();
  ASSERT_TRUE(plain);
  expect_refused({{"REDIS_CLUSTER_NODES", "127.0.0.1:" + std::to_string(plain->port())}},
                 "REDIS_CLUSTER_NODES");
}
