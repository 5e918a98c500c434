// The log written by its own thread still shows a process's last lines: a fatal start-up error
// before the exit, and the drain's lines through "Server stopped" after SIGTERM.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "harness.hpp"
#include "ws_client.hpp"

using namespace testing_support;
namespace json = boost::json;

namespace {

std::vector<json::object> json_lines(const std::string& text) {
  std::vector<json::object> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line.front() != '{') continue;
    boost::system::error_code ec;
    const json::value v = json::parse(line, ec);
    EXPECT_FALSE(ec) << "a broken line: " << line;
    if (!ec && v.is_object()) out.push_back(v.as_object());
  }
  return out;
}

TEST(LogExit, CannotStartIsWrittenBeforeTheExit) {
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::acceptor taken(ioc, {boost::asio::ip::make_address("127.0.0.1"), 0});
  const std::string port = std::to_string(taken.local_endpoint().port());
  const RunResult r = run_server_to_exit({{"WS_PORT", port}, {"HOST", "127.0.0.1"}}, {}, 5000ms);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  const auto fatal = r.output.find("\"msg\":\"Cannot start\"");
  ASSERT_NE(fatal, std::string::npos) << r.output;
  EXPECT_NE(r.output.rfind("{\"level\":60", fatal), std::string::npos) << r.output;
  // The fatal line is out before main goes on to print the error on stderr.
  const auto stderr_line = r.output.find("signal-server: ");
  ASSERT_NE(stderr_line, std::string::npos) << r.output;
  EXPECT_LT(fatal, stderr_line) << r.output;
}

TEST(LogExit, DrainLinesAndServerStoppedAreWritten) {
  // The client does not answer the close: the drain ends at its timeout.
  auto server = ServerProcess::start({{"DRAIN_TIMEOUT_MS", "500"}});
  ASSERT_TRUE(server);
  EXPECT_EQ(scrape(server->port(), "cloudgaming_log_lines_dropped_total"), 0.0);
  auto a = WsClient::connect(server->port(), "/?roomId=log-exit");
  ASSERT_TRUE(a);
  EXPECT_TRUE(server->wait_for_output("Client joined room")) << server->output();
  EXPECT_EQ(server->stop(SIGTERM), 0);
  const auto lines = json_lines(server->output());
  std::vector<std::string> msgs;
  for (const auto& o : lines) msgs.emplace_back(o.at("msg").as_string());
  ASSERT_FALSE(msgs.empty());
  auto at = [&](const std::string& m) {
    return std::find(msgs.begin(), msgs.end(), m) - msgs.begin();
  };
  const auto n = static_cast<std::ptrdiff_t>(msgs.size());
  const auto shutdown = at("Shutdown signal received, draining");
  const auto drain_end = std::min(at("Drain complete"),
                                  at("Drain timeout reached, exiting with connections still open"));
  EXPECT_LT(shutdown, at("Client left room"));
  EXPECT_LT(at("Client left room"), n);
  EXPECT_LT(shutdown, drain_end);
  EXPECT_EQ(drain_end, n - 2) << server->output();
  EXPECT_EQ(msgs.back(), "Server stopped") << server->output();
  EXPECT_EQ(lines.back().at("exitCode"), 0);
}

}  // namespace
