// signal-bench against the real server for a few seconds: it runs, and nothing is lost.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <boost/json.hpp>
#include <cstdio>

#include "harness.hpp"

using namespace testing_support;
namespace json = boost::json;

namespace {

struct BenchRun {
  int exit_code = -1;
  json::object result;
  std::string output;
};

BenchRun run_bench(const std::string& args) {
  BenchRun r;
  const std::string cmd =
      std::string("timeout 60 ") + SIGNAL_BENCH_BIN + " " + args + " 2>/dev/null";
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return r;
  char buf[4096];
  while (fgets(buf, sizeof(buf), f) != nullptr) r.output += buf;
  const int status = pclose(f);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  // The last stdout line is the JSON summary.
  std::string last = r.output;
  while (!last.empty() && last.back() == '\n') last.pop_back();
  last = last.substr(last.rfind('\n') == std::string::npos ? 0 : last.rfind('\n') + 1);
  json::error_code ec;
  auto v = json::parse(last, ec);
  if (!ec && v.is_object()) r.result = v.as_object();
  return r;
}

}  // namespace

TEST(BenchSmoke, RelayLosesNothingAndReportsLatency) {
  auto server = ServerProcess::start(relaxed_limits());
  ASSERT_TRUE(server);
  const std::string url = "ws://127.0.0.1:" + std::to_string(server->port());
  const BenchRun r = run_bench(
      "relay --url " + url + " --rooms 20 --size 300 --rate 2000 --duration 2 --warmup 0.5 --pid " +
      std::to_string(server->pid()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.result.at("lost").as_int64(), 0);
  EXPECT_EQ(r.result.at("reordered").as_int64(), 0);
  EXPECT_EQ(r.result.at("duplicated").as_int64(), 0);
  EXPECT_GT(r.result.at("received_measured").as_int64(), 2000);
  EXPECT_GT(r.result.at("latency_us").at("p50").as_int64(), 0);
  EXPECT_GT(r.result.at("server").as_array().at(0).at("rss_kb").as_int64(), 0);
}

TEST(BenchSmoke, ConnectCompletesEveryPair) {
  auto server = ServerProcess::start(relaxed_limits());
  ASSERT_TRUE(server);
  const std::string url = "ws://127.0.0.1:" + std::to_string(server->port());
  const BenchRun r = run_bench("connect --url " + url + " --conns 200 --concurrency 20");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.result.at("joined_conns").as_int64(), 200);
  EXPECT_EQ(r.result.at("failed_pairs").as_int64(), 0);
}

TEST(BenchSmoke, DetectsLossWhenTheServerDropsMessages) {
  // A per-room limit far below the offered rate makes the server drop: the bench must say so.
  Env env = relaxed_limits();
  env["RATE_LIMIT_ROOM_MSGS_PER_10S"] = "50";
  auto server = ServerProcess::start(env);
  ASSERT_TRUE(server);
  const std::string url = "ws://127.0.0.1:" + std::to_string(server->port());
  const BenchRun r =
      run_bench("relay --url " + url + " --rooms 2 --rate 400 --duration 1 --warmup 0.2");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_GT(r.result.at("lost").as_int64(), 0) << r.output;
}
