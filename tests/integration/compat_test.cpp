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
