// Drop-in compatibility: settings the replaced server took start this one too.
#include <gtest/gtest.h>

#include "harness.hpp"
#include "ws_client.hpp"

using namespace testing_support;

// The replaced server's own test suite starts it with MESSAGE_MAX_BYTES=16.
TEST(Compat, TinyMessageMaxBytesStartsWarnsAndClosesLargerMessagesWith1009) {
  auto server = ServerProcess::start({{"MESSAGE_MAX_BYTES", "16"}});
  ASSERT_TRUE(server);
  EXPECT_TRUE(server->wait_for_output("MESSAGE_MAX_BYTES=16", 3000ms)) << server->output();
  std::string err;
  auto c = WsClient::connect(server->port(), "/?roomId=tiny", {}, &err);
  ASSERT_TRUE(c) << err;
  c->send(R"({"type":"candidate","candidate":"c"})");
  auto closed = c->wait_close(5000ms);
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->code, 1009);
}

// Dashboards and alerts of the deployed fleet read the Node server's signaling_* names.
TEST(Compat, MetricsServeTheDeployedNamesByDefaultAndOnRequestOnly) {
  auto both = ServerProcess::start({});
  auto only = ServerProcess::start({{"METRICS_NAMES", "signaling"}});
  ASSERT_TRUE(both && only);
  std::string err;
  auto a = WsClient::connect(both->port(), "/?roomId=m", {}, &err);
  auto b = WsClient::connect(only->port(), "/?roomId=m", {}, &err);
  ASSERT_TRUE(a && b) << err;
  EXPECT_TRUE(
      wait_until([&] { return scrape(both->port(), "signaling_active_connections") == 1.0; }));
  EXPECT_EQ(scrape(both->port(), "cloudgaming_active_connections"), 1.0);
  EXPECT_TRUE(
      wait_until([&] { return scrape(only->port(), "signaling_active_connections") == 1.0; }));
  EXPECT_FALSE(scrape(only->port(), "cloudgaming_active_connections").has_value());
  const RunResult bad = run_server_to_exit({{"METRICS_NAMES", "prometheus"}}, {}, 5000ms);
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.output.find("METRICS_NAMES"), std::string::npos) << bad.output;
}
