// Metrics that count only what happened: a relay Redis refused is not a forwarded message.
#include <gtest/gtest.h>

#include "harness.hpp"
#include "ws_client.hpp"

using namespace testing_support;

namespace {

std::string candidate(int i) {
  return R"({"type":"candidate","candidate":"c)" + std::to_string(i) + R"("})";
}

double metric(uint16_t port, const std::string& sample) {
  return scrape(port, sample).value_or(-1);
}

const std::string kForwarded = "cloudgaming_messages_forwarded_total";
const std::string kPublishErrors = R"(cloudgaming_redis_errors_total{op="publish"})";

}  // namespace

TEST(MetricsTruth, ARelayRedisRefusedIsNotForwardedUnlessAMemberHereGotIt) {
  auto redis = RedisProcess::start();
  ASSERT_TRUE(redis);
  auto server = ServerProcess::start(relaxed_limits({{"REDIS_URL", redis->url()}}));
  ASSERT_TRUE(server);
  ASSERT_TRUE(wait_until([&] { return http_get(server->port(), "/readyz").status == 200; }));
  std::string err;
  auto alone = WsClient::connect(server->port(), "/?roomId=alone&events=1", {}, &err);
  ASSERT_TRUE(alone) << err;
  ASSERT_TRUE(alone->recv().has_value()) << "welcome";
  auto a = WsClient::connect(server->port(), "/?roomId=pair", {}, &err);
  auto b = WsClient::connect(server->port(), "/?roomId=pair", {}, &err);
  ASSERT_TRUE(a && b) << err;

  // Redis refuses PUBLISH from now on (the window scripts still run).
  ASSERT_EQ(redis->cli({"ACL", "SETUSER", "default", "-publish"}), "OK");
  for (int i = 0; i < 3; ++i) alone->send(candidate(i));
  ASSERT_TRUE(wait_until([&] { return metric(server->port(), kPublishErrors) >= 3; }));
  EXPECT_EQ(metric(server->port(), kForwarded), 0.0) << "nobody got them";
  // A member here got it: forwarded, whatever Redis said.
  a->send(candidate(7));
  EXPECT_EQ(b->recv(), candidate(7));
  ASSERT_TRUE(wait_until([&] { return metric(server->port(), kPublishErrors) >= 4; }));
  EXPECT_EQ(metric(server->port(), kForwarded), 1.0);

  // Redis takes it again: a message that reached nobody here counts once Redis has it.
  ASSERT_EQ(redis->cli({"ACL", "SETUSER", "default", "+publish"}), "OK");
  alone->send(candidate(8));
  EXPECT_TRUE(wait_until([&] { return metric(server->port(), kForwarded) == 2.0; }));
  EXPECT_EQ(metric(server->port(), kPublishErrors), 4.0);
}
