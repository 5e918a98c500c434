// Redis bus with real redis-server and several real server processes (PROTOCOL.md section 4).
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>
#include <atomic>
#include <boost/json.hpp>
#include <csignal>
#include <cstdio>
#include <thread>

#include "admission.hpp"
#include "harness.hpp"
#include "ws_client.hpp"

using namespace testing_support;
namespace json = boost::json;

namespace {

Env redis_env(const RedisProcess& redis, Env extra = {}) {
  extra["REDIS_URL"] = redis.url();
  return relaxed_limits(extra);
}

std::string candidate(int i) {
  return R"({"type":"candidate","candidate":"c)" + std::to_string(i) + R"("})";
}

// Reads a PSUBSCRIBE room:* stream with redis-cli, as a Node instance would see it. The
// redis-cli process is its own child, stopped by pid.
class PatternListener {
 public:
  explicit PatternListener(const RedisProcess& redis) {
    int fds[2];
    if (pipe(fds) != 0) {
      ADD_FAILURE() << "pipe failed";
      return;
    }
    const std::string port = std::to_string(redis.port());
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], STDOUT_FILENO);
      close(fds[0]);
      close(fds[1]);
      execlp("redis-cli", "redis-cli", "-p", port.c_str(), "--raw", "PSUBSCRIBE", "room:*",
             static_cast<char*>(nullptr));
      _exit(127);
    }
    close(fds[1]);
    fd_ = fds[0];
    reader_ = std::thread([this] {
      char buf[4096];
      ssize_t n;
      while ((n = read(fd_, buf, sizeof(buf))) > 0) {
        std::lock_guard lock(mu_);
        lines_.append(buf, static_cast<std::size_t>(n));
      }
    });
    wait_until([&] { return redis.cli({"PUBSUB", "NUMPAT"}) != "0"; }, 5000ms);
  }
  ~PatternListener() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
    if (reader_.joinable()) reader_.join();  // the pipe closed with its writer
    if (fd_ >= 0) close(fd_);
  }
  std::string text() {
    std::lock_guard lock(mu_);
    return lines_;
  }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  std::thread reader_;
  std::mutex mu_;
  std::string lines_;
};

}  // namespace

TEST(RedisBus, RelaysBothWaysBetweenInstancesInOrder) {
  auto redis = RedisProcess::start();
  ASSERT_TRUE(redis);
  auto s1 = start_ready(redis_env(*redis));
  auto s2 = start_ready(redis_env(*redis));
  ASSERT_TRUE(s1 && s2);
  auto a = join(s1->port(), "x1");
  auto b = join(s2->port(), "x1");
  ASSERT_TRUE(a && b);
  a->send(R"({"type":"offer","sdp":"from-a","junk":1})");
  EXPECT_EQ(b->recv(), R"({"type":"offer","sdp":"from-a"})");
  b->send(R"({"type":"answer","sdp":"from-b"})");
  EXPECT_EQ(a->recv(), R"({"type":"answer","sdp":"from-b"})");
  std::vector<std::string> burst;
  for (int i = 0; i < 500; ++i) burst.push_back(candidate(i));
  a->send_all(burst);
  for (int i = 0; i < 500; ++i) {
    auto got = b->recv();
    ASSERT_TRUE(got) << "lost " << i;
    ASSERT_EQ(*got, burst[i]);
  }
  // No echo of a's own messages: a's next message is b's marker, published after all of a's.
  b->send(R"({"type":"offer","sdp":"marker-b"})");
  EXPECT_EQ(a->recv(), R"({"type":"offer","sdp":"marker-b"})") << "an echo of a's own message";
  a->close();
  EXPECT_EQ(b->recv(), R"({"type":"peer-disconnected"})");
  // Exactly one peer-disconnected: b's next message is the marker of a newcomer on a's instance.
  ASSERT_TRUE(wait_until([&] { return redis->cli({"SCARD", "room:x1"}) == "1"; }));
  auto c = join(s1->port(), "x1");
  ASSERT_TRUE(c);
  ASSERT_EQ(admission(*c), "admitted");
  c->send(R"({"type":"offer","sdp":"marker-c"})");
  EXPECT_EQ(b->recv(), R"({"type":"offer","sdp":"marker-c"})") << "more than one departure";
}

TEST(RedisBus, ConcurrentJoinsAcrossThreeInstancesNeverExceedCapacity) {
  auto redis = RedisProcess::start();
  ASSERT_TRUE(redis);
  std::vector<std::unique_ptr<ServerProcess>> servers;
  for (int i = 0; i < 3; ++i) {
    servers.push_back(start_ready(redis_env(*redis, {{"ROOM_CAPACITY", "2"}})));
    ASSERT_TRUE(servers.back());
  }
  std::vector<std::unique_ptr<WsClient>> clients(20);
  std::vector<std::thread> threads;
  for (int i = 0; i < 20; ++i) {
    threads.emplace_back(
        [&, i] { clients[i] = WsClient::connect(servers[i % 3]->port(), "/?roomId=contended"); });
  }
  for (auto& t : threads) t.join();
  int admitted = 0, full = 0;
  for (auto& c : clients) {
    ASSERT_TRUE(c);
    const std::string outcome = admission(*c);
    if (outcome == "admitted") {
      ++admitted;
    } else if (outcome == "close 1000 'Room is full'") {
      ++full;
    } else {
      ADD_FAILURE() << outcome;
    }
  }
  EXPECT_EQ(admitted, 2);
  EXPECT_EQ(full, 18);
  EXPECT_EQ(redis->cli({"SCARD", "room:contended"}), "2");
}

TEST(RedisBus, SpeaksTheSeedWireFormat) {
  auto redis = RedisProcess::start();
  ASSERT_TRUE(redis);
  auto s1 = start_ready(redis_env(*redis));
  ASSERT_TRUE(s1);
  PatternListener listener(*redis);
  auto a = join(s1->port(), "wire");
  ASSERT_TRUE(a);
  const std::string members = redis->cli({"SMEMBERS", "room:wire"});
  ASSERT_EQ(members.rfind("client:", 0), 0u) << members;
  // A foreign (Node) instance publishes for its member "client:node-1": ours delivers `data`.
  redis->cli(
      {"PUBLISH", "room:wire",
       R"({"senderId":"client:node-1","data":{"type":"offer","sdp":"node"},"originServerId":"node-a"})"});
  EXPECT_EQ(a->recv(), R"({"type":"offer","sdp":"node"})");
  redis->cli({"PUBLISH", "room:wire",
              R"({"senderId":"client:node-1","data":{"type":"peer-disconnected"}})"});
  EXPECT_EQ(a->recv(), R"({"type":"peer-disconnected"})");
  // Ours, as a PSUBSCRIBE listener (a Node instance) reads it.
  a->send(R"({"type":"candidate","candidate":"ours","sdpMid":"0"})");
  ASSERT_TRUE(
      wait_until([&] { return listener.text().find("ours") != std::string::npos; }, 5000ms));
  const std::string text = listener.text();
  // --raw prints each reply element on its own line: the payload is the line after the channel.
  const auto start = text.rfind("{\"senderId\"", text.find("\"ours\""));
  ASSERT_NE(start, std::string::npos) << text;
  const std::string payload = text.substr(start, text.find('\n', start) - start);
  json::error_code ec;
  auto v = json::parse(payload, ec);
  ASSERT_FALSE(ec) << payload;
  EXPECT_EQ(v.at("senderId"), json::value(members));
  EXPECT_EQ(json::serialize(v.at("data")),
            R"({"type":"candidate","candidate":"ours","sdpMid":"0"})");
  EXPECT_TRUE(v.at("originServerId").is_string());
}

TEST(RedisBus, MembershipLeavesRedisOnCloseAndDrain) {
  auto redis = RedisProcess::start();
  ASSERT_TRUE(redis);
  auto s1 =
      start_ready(redis_env(*redis, {{"ROOM_TTL_SECONDS", "60"}, {"DRAIN_TIMEOUT_MS", "1000"}}));
  ASSERT_TRUE(s1);
  auto a = join(s1->port(), "m1");
  auto b = join(s1->port(), "m1");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(redis->cli({"SCARD", "room:m1"}), "2");
  a->close();
  EXPECT_TRUE(wait_until([&] { return redis->cli({"SCARD", "room:m1"}) == "1"; }));
  // b does not answer the close while the process drains: its seat is freed all the same.
  EXPECT_EQ(s1->stop(SIGTERM), 0);
  EXPECT_EQ(b->wait_close()->code, 1012);
  // The emptied room holds nobody; no TTL-less leftovers either.
  EXPECT_EQ(redis->cli({"SCARD", "room:m1"}), "0");
  const std::string ttl = redis->cli({"TTL", "room:m1"});
  EXPECT_TRUE(ttl == "-2" || (std::stoi(ttl) > 0 && std::stoi(ttl) <= 60)) << ttl;
}

TEST(RedisBus, SurvivesRedisRestartAndRestoresState) {
  auto redis = RedisProcess::start();
  ASSERT_TRUE(redis);
  const uint16_t redis_port = redis->port();
  auto s1 = start_ready(redis_env(*redis));
  auto s2 = start_ready(redis_env(*redis));
  ASSERT_TRUE(s1 && s2);
  auto a = join(s1->port(), "outage");
  auto a2 = join(s1->port(), "local");
  auto b2 = join(s1->port(), "local");
  auto b = join(s2->port(), "outage");
  ASSERT_TRUE(a && b && a2 && b2);

  redis->kill_now();
  EXPECT_TRUE(wait_until([&] { return !ready(*s1); }, 8000ms)) << "readiness must drop";
  // Same-instance members keep talking while Redis is away.
  a2->send(R"({"type":"offer","sdp":"during-outage"})");
  EXPECT_EQ(b2->recv(), R"({"type":"offer","sdp":"during-outage"})");

  redis = RedisProcess::start(redis_port);
  ASSERT_TRUE(redis);
  const auto back = std::chrono::steady_clock::now();
  // Cross-instance relay resumes once the bus has reconnected (backoff at most 1 s) and
  // resubscribed: nominal within 2 s of Redis answering. Sent again until one arrives (a message
  // published while the subscriber is still away is lost by design).
  bool delivered = false;
  while (!delivered && std::chrono::steady_clock::now() - back < 20s) {
    a->send(R"({"type":"offer","sdp":"after"})");
    auto got = b->recv(100ms);
    delivered = got && *got == R"({"type":"offer","sdp":"after"})";
  }
  EXPECT_TRUE(delivered);
  // 5x the nominal 2 s, for a loaded machine: still fails when relay only comes back by some much
  // later path (a breaker's reset, a periodic reconnect) or never.
  EXPECT_LT(std::chrono::steady_clock::now() - back, 10s);
  EXPECT_TRUE(wait_until([&] { return ready(*s1) && ready(*s2); }, 5000ms));
  // Membership re-asserted in the empty Redis.
  EXPECT_EQ(redis->cli({"SCARD", "room:outage"}), "2");
  EXPECT_EQ(redis->cli({"SCARD", "room:local"}), "2");
  EXPECT_TRUE(s1->running() && s2->running());
}

TEST(RedisBus, CrashedInstanceReleasesItsSeatsWithinTheLease) {
  auto redis = RedisProcess::start();
  ASSERT_TRUE(redis);
  const Env env = redis_env(*redis, {{"INSTANCE_LEASE_TTL_MS", "2000"}, {"ROOM_CAPACITY", "2"}});
  auto s1 = start_ready(env);
  auto s2 = start_ready(env);
  ASSERT_TRUE(s1 && s2);
  auto a = join(s1->port(), "crash");
  auto b = join(s1->port(), "crash");
  ASSERT_TRUE(a && b);
  s1->kill_now();
  const auto killed = std::chrono::steady_clock::now();
  // The fact the release waits for: the crashed instance's lease key expires (only the live
  // instance's remains). Until then a join is refused as full; from then on it releases the
  // crashed instance's seats and is admitted.
  EXPECT_TRUE(wait_until(
      [&] {
        return redis->cli({"EVAL", "return #redis.call('KEYS', ARGV[1])", "0",
                           "signal:instance:*"}) == "1";
      },
      20000ms));
  auto c = join(s2->port(), "crash");
  ASSERT_TRUE(c);
  const std::string outcome = admission(*c);
  const bool admitted = outcome == "admitted";
  EXPECT_TRUE(admitted) << outcome;
  // Released within INSTANCE_LEASE_TTL_MS + 1 s (PROTOCOL.md section 8): nominal 3 s here. The
  // bound is over 3x that, for a loaded machine; it still fails for seats that are never released
  // or only released by some much later path.
  EXPECT_LT(std::chrono::steady_clock::now() - killed, 10s) << "within the 2 s lease + 1 s";
}

TEST(RedisBus, NotReadyUntilRedisAppears) {
  const uint16_t port = free_port();
  auto s1 = ServerProcess::start({{"REDIS_URL", "redis://127.0.0.1:" + std::to_string(port)}});
  ASSERT_TRUE(s1);
  const HttpResult r = http_get(s1->port(), "/readyz");
  EXPECT_EQ(r.status, 503u);
  EXPECT_EQ(r.body, "not-ready");
  EXPECT_EQ(http_get(s1->port(), "/healthz").status, 200u);
  // Joins fail cleanly meanwhile.
  auto c = join(s1->port(), "early");
  ASSERT_TRUE(c);
  auto closed = c->wait_close();
  ASSERT_TRUE(closed);
  EXPECT_TRUE(closed->code == 1011 || closed->code == 1013) << closed->code;
  auto redis = RedisProcess::start(port);
  ASSERT_TRUE(redis);
  EXPECT_TRUE(wait_until([&] { return ready(*s1); }, 10000ms));
  EXPECT_TRUE(s1->running());
}

TEST(RedisBus, ConnectionRateLimitIsSharedAcrossInstances) {
  auto redis = RedisProcess::start();
  ASSERT_TRUE(redis);
  const Env env = redis_env(*redis, {{"RATE_LIMIT_CONN_PER_10S", "4"}, {"ROOM_CAPACITY", "100"}});
  auto s1 = start_ready(env);
  auto s2 = start_ready(env);
  ASSERT_TRUE(s1 && s2);
  std::vector<std::unique_ptr<WsClient>> ok;
  for (int i = 0; i < 4; ++i) {
    ok.push_back(join((i % 2 ? s2 : s1)->port(), "shared-limit"));
    ASSERT_TRUE(ok.back());
    EXPECT_EQ(admission(*ok.back()), "admitted") << "connection " << i;
  }
  auto fifth = join(s2->port(), "shared-limit");
  ASSERT_TRUE(fifth);
  auto closed = fifth->wait_close();
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->code, 1013);
  EXPECT_EQ(closed->reason, "Rate limited");
}

TEST(RedisBus, MetricsReportRedisAndCrossInstanceLatency) {
  auto redis = RedisProcess::start();
  ASSERT_TRUE(redis);
  auto s1 = start_ready(redis_env(*redis));
  auto s2 = start_ready(redis_env(*redis));
  ASSERT_TRUE(s1 && s2);
  auto a = join(s1->port(), "lat");
  auto b = join(s2->port(), "lat");
  ASSERT_TRUE(a && b);
  a->send(candidate(1));
  ASSERT_TRUE(b->recv());
  EXPECT_EQ(scrape(s1->port(), "cloudgaming_redis_up"), 1.0);
  EXPECT_EQ(scrape(s1->port(), "cloudgaming_circuit_breaker_open"), 0.0);
  EXPECT_GE(scrape(s2->port(), "cloudgaming_cross_instance_relay_seconds_count").value_or(0), 1.0);
  EXPECT_GE(scrape(s1->port(), R"(cloudgaming_redis_operation_duration_seconds_count{op="join"})")
                .value_or(0),
            1.0);
  EXPECT_GE(
      scrape(s1->port(), R"(cloudgaming_redis_operation_duration_seconds_count{op="publish"})")
          .value_or(0),
      1.0);
}

TEST(RedisBus, BreakerOpensWhenRedisKeepsFailing) {
  auto redis = RedisProcess::start();
  ASSERT_TRUE(redis);
  auto s1 = start_ready(redis_env(*redis, {{"CB_ERROR_THRESHOLD", "3"}, {"CB_OPEN_MS", "60000"}}));
  ASSERT_TRUE(s1);
  redis->kill_now();
  // Joins fail with 1011 until the breaker opens; then new connections get 1013.
  bool saw_breaker = false;
  for (int i = 0; i < 20 && !saw_breaker; ++i) {
    auto c = join(s1->port(), "cb");
    ASSERT_TRUE(c);
    auto closed = c->wait_close();
    ASSERT_TRUE(closed);
    if (closed->code == 1013 && closed->reason == "Service unavailable") {
      saw_breaker = true;
    } else {
      EXPECT_EQ(closed->code, 1011);
    }
  }
  EXPECT_TRUE(saw_breaker);
  EXPECT_EQ(scrape(s1->port(), "cloudgaming_circuit_breaker_open"), 1.0);
}

TEST(RedisBus, PresenceCrossesInstancesOnlyForClientsThatOptedIn) {
  auto redis = RedisProcess::start();
  ASSERT_TRUE(redis);
  auto s1 = start_ready(redis_env(*redis, {{"ROOM_CAPACITY", "3"}}));
  auto s2 = start_ready(redis_env(*redis, {{"ROOM_CAPACITY", "3"}}));
  ASSERT_TRUE(s1 && s2);
  PatternListener node_view(*redis);
  std::string err;
  auto opted = WsClient::connect(s1->port(), "/?roomId=pres&events=1", {}, &err);
  ASSERT_TRUE(opted) << err;
  auto welcome = opted->recv();
  ASSERT_TRUE(welcome);
  EXPECT_EQ(json::parse(*welcome).at("payload").at("peers"), 0);
  auto plain = join(s1->port(), "pres");
  ASSERT_TRUE(plain);
  ASSERT_TRUE(opted->recv()) << "local peer-joined";
  auto remote = join(s2->port(), "pres");
  ASSERT_TRUE(remote);
  auto joined = opted->recv();
  ASSERT_TRUE(joined) << "peer-joined from the other instance";
  const json::value j = json::parse(*joined);
  EXPECT_EQ(j.at("action"), "peer-joined");
  const std::string remote_id(j.at("payload").at("clientId").as_string());
  EXPECT_EQ(redis->cli({"SISMEMBER", "room:pres", remote_id}), "1") << remote_id;
  // No presence for a client that did not opt in: plain's first message is the newcomer's
  // marker, published by its instance after the newcomer's peer-joined.
  remote->send(R"({"type":"offer","sdp":"marker"})");
  EXPECT_EQ(plain->recv(), R"({"type":"offer","sdp":"marker"})")
      << "presence reached a client that did not opt in";
  // Presence never goes out on room:{id}, which Node instances relay to every client.
  EXPECT_EQ(node_view.text().find("peer-joined"), std::string::npos) << node_view.text();
  // A welcome on the second instance counts members on both.
  auto late = WsClient::connect(s2->port(), "/?roomId=pres&events=1", {}, &err);
  ASSERT_TRUE(late) << err;
  auto closed = late->wait_close();
  ASSERT_TRUE(closed) << "room of 3 is full";
  EXPECT_EQ(closed->reason, "Room is full");
}

TEST(RedisBus, AuthenticatesSelectsItsDatabaseAndKeepsThePasswordOutOfLogs) {
  const std::string password = "redis-pw-7f3a";
  auto redis = RedisProcess::start(0, password);
  ASSERT_TRUE(redis);
  const std::string base = "redis://:" + password + "@127.0.0.1:" + std::to_string(redis->port());
  auto s1 = start_ready(relaxed_limits({{"REDIS_URL", base + "/3"}}));
  ASSERT_TRUE(s1);
  auto a = join(s1->port(), "authed");
  ASSERT_TRUE(a);
  // The room lives in database 3, not 0.
  EXPECT_EQ(redis->cli({"-n", "3", "SCARD", "room:authed"}), "1");
  EXPECT_EQ(redis->cli({"SCARD", "room:authed"}), "0");
  // A wrong password: the server runs, is not ready, and says why without echoing either secret.
  auto s2 = ServerProcess::start(relaxed_limits(
      {{"REDIS_URL", "redis://:wrong-pw-1@127.0.0.1:" + std::to_string(redis->port())}}));
  ASSERT_TRUE(s2);
  EXPECT_TRUE(s2->wait_for_output("Redis connection failed"));
  EXPECT_EQ(http_get(s2->port(), "/readyz").status, 503u);
  for (const auto* s : {s1.get(), s2.get()}) {
    EXPECT_EQ(s->output().find(password), std::string::npos);
    EXPECT_EQ(s->output().find("wrong-pw-1"), std::string::npos);
  }
}

TEST(RedisBus, ScriptsReloadAfterScriptFlush) {
  auto redis = RedisProcess::start();
  ASSERT_TRUE(redis);
  auto s1 = start_ready(redis_env(*redis));
  ASSERT_TRUE(s1);
  EXPECT_EQ(redis->cli({"SCRIPT", "FLUSH"}), "OK");
  // EVALSHA now answers NOSCRIPT: the join falls back to EVAL and succeeds.
  auto a = join(s1->port(), "flushed");
  ASSERT_TRUE(a);
  EXPECT_EQ(admission(*a), "admitted");
  EXPECT_EQ(redis->cli({"SCARD", "room:flushed"}), "1");
}
