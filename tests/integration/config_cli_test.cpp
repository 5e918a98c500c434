// Configuration through the real binary: errors (exit 2), --help/--version, precedence, logs.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "admission.hpp"
#include "harness.hpp"
#include "ws_client.hpp"

using namespace testing_support;
namespace json = boost::json;

namespace {

// Bad configurations must exit at once; if one is wrongly accepted the server would run until
// this timeout (on a free port, never on a real one).
constexpr auto kExitTimeout = 5000ms;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// True when `name` appears as a whole variable name (so PORT is not found inside WS_PORT).
bool names_variable(const std::string& text, const std::string& name) {
  return std::regex_search(text, std::regex("(^|[^A-Z0-9_])" + name + "([^A-Z0-9_]|$)"));
}

// Runs a configuration that must be refused and checks exit code 2 and the variable's name.
void expect_config_error(const Env& env, const std::vector<std::string>& args,
                         const std::string& variable, const std::string& dotenv = {}) {
  SCOPED_TRACE("expecting a configuration error naming " + variable);
  Env full = env;
  if (!full.count("WS_PORT") && !full.count("PORT")) full["WS_PORT"] = "0";
  const RunResult r = run_server_to_exit(full, args, kExitTimeout, dotenv);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(names_variable(r.output, variable)) << r.output;
  EXPECT_FALSE(contains(r.output, "Server listening")) << r.output;
}

// A TCP port that was free a moment ago (for runs whose logs the harness cannot parse).
uint16_t spare_port() {
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::acceptor acceptor(
      ioc, boost::asio::ip::tcp::endpoint(boost::asio::ip::tcp::v4(), 0));
  return acceptor.local_endpoint().port();
}

// The pid of our child running signal-server (after its execve), or -1.
pid_t child_server_pid() {
  const pid_t me = getpid();
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "stat");
    std::string stat;
    std::getline(in, stat);
    // "pid (comm) state ppid ..."
    const auto open = stat.find('(');
    const auto close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    if (stat.substr(open + 1, close - open - 1) != "signal-server") continue;
    std::istringstream rest(stat.substr(close + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == me) return static_cast<pid_t>(std::stoi(name));
  }
  return -1;
}

// For logs the harness cannot read the port from (pretty or filtered): runs the server on a
// known free port, waits until /healthz answers, then stops it with SIGTERM and collects all it
// printed.
struct ObservedRun {
  bool served = false;  // /healthz answered 200 while it ran
  RunResult result;
};
ObservedRun run_until_healthy(Env env) {
  ObservedRun run;
  const uint16_t port = spare_port();
  env["PORT"] = std::to_string(port);
  auto finished =
      std::async(std::launch::async, [env] { return run_server_to_exit(env, {}, 10000ms); });
  run.served = wait_until([&] { return http_get(port, "/healthz", 500ms).status == 200; }, 5000ms);
  pid_t pid = -1;
  wait_until([&] {
    return (pid = child_server_pid()) > 0 || finished.wait_for(0ms) == std::future_status::ready;
  });
  if (pid > 0) kill(pid, SIGTERM);
  run.result = finished.get();
  return run;
}

// Fills `room` with clients until one is refused; returns how many were admitted (or -1).
int admitted_before_full(uint16_t port, const std::string& room, int limit = 10) {
  std::vector<std::unique_ptr<WsClient>> members;
  for (int i = 0; i <= limit; ++i) {
    auto c = join(port, room);
    if (!c) return -1;
    const std::string outcome = admission(*c);
    if (outcome != "admitted") {
      EXPECT_EQ(outcome, "close 1000 'Room is full'");
      return outcome == "close 1000 'Room is full'" ? i : -1;
    }
    members.push_back(std::move(c));
  }
  return -1;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Invalid values: exit code 2 and a message naming the variable.

TEST(ConfigCliErrors, NonNumericWsPort) {
  expect_config_error({{"WS_PORT", "abc"}}, {}, "WS_PORT");
}

TEST(ConfigCliErrors, PortOutOfRange) {
  expect_config_error({{"PORT", "70000"}}, {}, "PORT");
}

TEST(ConfigCliErrors, UnknownLogLevel) {
  expect_config_error({{"LOG_LEVEL", "loud"}}, {}, "LOG_LEVEL");
}

TEST(ConfigCliErrors, NegativeHeartbeatInterval) {
  expect_config_error({{"HEARTBEAT_INTERVAL_MS", "-5"}}, {}, "HEARTBEAT_INTERVAL_MS");
}

TEST(ConfigCliErrors, NonBooleanPrettyLogs) {
  expect_config_error({{"PRETTY_LOGS", "maybe"}}, {}, "PRETTY_LOGS");
}

TEST(ConfigCliErrors, UnknownJwtAlg) {
  expect_config_error({{"JWT_ALG", "XX256"}}, {}, "JWT_ALG");
}

TEST(ConfigCliErrors, ReservedShutdownCloseCode) {
  expect_config_error({{"SHUTDOWN_CLOSE_CODE", "1005"}}, {}, "SHUTDOWN_CLOSE_CODE");
}

TEST(ConfigCliErrors, UnknownFlag) {
  expect_config_error({}, {"--nope"}, "--nope");
}

TEST(ConfigCliErrors, RedisUrlWithBadScheme) {
  expect_config_error({{"REDIS_URL", "http://x"}}, {}, "REDIS_URL");
}

TEST(ConfigCliErrors, FlagWithoutValue) {
  expect_config_error({}, {"--room-capacity"}, "ROOM_CAPACITY");
}

TEST(ConfigCliErrors, BadFlagValueNamesTheVariable) {
  expect_config_error({}, {"--room-capacity", "many"}, "ROOM_CAPACITY");
}

TEST(ConfigCliErrors, BadValueInDotEnv) {
  expect_config_error({}, {}, "LOG_LEVEL", "LOG_LEVEL=loud\n");
}

TEST(ConfigCliErrors, ZeroRoomCapacity) {
  expect_config_error({{"ROOM_CAPACITY", "0"}}, {}, "ROOM_CAPACITY");
}

TEST(ConfigCliErrors, TurnSettings) {
  expect_config_error({{"TURN_URLS", "http://turn.example.com"}}, {}, "TURN_URLS");
  expect_config_error({{"TURN_URLS", "turn:turn.example.com:3478"}}, {}, "TURN_SECRET");
  expect_config_error({{"TURN_EXPIRY_SECONDS", "0"}}, {}, "TURN_EXPIRY_SECONDS");
  expect_config_error({{"TURN_EXPIRY_SECONDS", "-60"}}, {}, "TURN_EXPIRY_SECONDS");
  expect_config_error(
      {{"TURN_URLS", "turn:turn.example.com"}, {"TURN_SECRET_FILE", "/nonexistent/turn"}}, {},
      "TURN_SECRET_FILE");
}

// ---------------------------------------------------------------------------------------------
// Secrets never appear in the output.

TEST(ConfigCliSecrets, TurnSecretIsNeverPrintedOnError) {
  const std::string secret = "turn-s3cret-DO-NOT-PRINT";
  for (const Env& env : std::vector<Env>{
           {{"TURN_SECRET", secret}, {"TURN_SECRET_FILE", "/dev/null"}},
           {{"TURN_SECRET", secret}, {"LOG_LEVEL", "loud"}},
           {{"TURN_URLS", "turn:user:" + secret + "@turn.example.com"}, {"TURN_SECRET", "x"}}}) {
    Env full = env;
    full["WS_PORT"] = "0";
    const RunResult r = run_server_to_exit(full, {}, kExitTimeout);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_FALSE(r.output.empty()) << "an error must say something";
    EXPECT_FALSE(contains(r.output, secret)) << r.output;
  }
}

TEST(ConfigCliSecrets, JwtSecretIsNeverPrintedOnError) {
  const std::string secret = "jwt-s3cret-DO-NOT-PRINT";
  const std::vector<std::pair<Env, std::vector<std::string>>> cases = {
      {{{"ENABLE_AUTH", "true"}, {"JWT_SECRET", secret}, {"JWT_ALG", "RS256"}}, {}},
      {{{"JWT_ALG", "XX256"}, {"JWT_SECRET", secret}}, {}},
      {{{"JWT_SECRET", secret}, {"LOG_LEVEL", "loud"}}, {}},
      {{}, {"--jwt-secret", secret, "--nope"}},
      {{}, {"--jwt-secret=" + secret, "--enable-auth", "true", "--jwt-alg", "ES256"}},
  };
  for (const auto& [env, args] : cases) {
    Env full = env;
    full["WS_PORT"] = "0";
    const RunResult r = run_server_to_exit(full, args, kExitTimeout);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_FALSE(r.output.empty()) << "an error must say something";
    EXPECT_FALSE(contains(r.output, secret)) << r.output;
  }
}

TEST(ConfigCliSecrets, JwtSecretIsNeverPrintedWhileRunning) {
  const std::string secret = "jwt-s3cret-running";
  auto server = ServerProcess::start({{"JWT_SECRET", secret}, {"LOG_LEVEL", "trace"}});
  ASSERT_TRUE(server);
  auto c = join(server->port(), "secret-room");
  ASSERT_TRUE(c);
  c->close();
  EXPECT_TRUE(server->wait_for_output("Client left room"));
  EXPECT_FALSE(contains(server->output(), secret)) << server->output();
}

TEST(ConfigCliSecrets, TokensAndAuthorizationHeadersAreNeverLogged) {
  auto server = ServerProcess::start({{"LOG_LEVEL", "trace"}});
  ASSERT_TRUE(server);
  ConnectOptions bearer;
  bearer.headers = {{"Authorization", "Bearer header-token-abc123"}};
  // One admitted, one refused (invalid room), both carrying tokens.
  auto a = WsClient::connect(server->port(), "/?roomId=tok&token=query-token-xyz789", bearer);
  ASSERT_TRUE(a);
  auto b = WsClient::connect(server->port(), "/?roomId=&token=query-token-xyz789", bearer);
  ASSERT_TRUE(b);
  ASSERT_TRUE(b->wait_close());
  a->close();
  EXPECT_TRUE(server->wait_for_output("Client left room"));
  const std::string out = server->output();
  EXPECT_FALSE(contains(out, "query-token-xyz789")) << out;
  EXPECT_FALSE(contains(out, "header-token-abc123")) << out;
}

TEST(ConfigCliSecrets, RedisPasswordIsNeverPrintedOnError) {
  const RunResult r = run_server_to_exit(
      {{"WS_PORT", "0"}, {"REDIS_URL", "http://user:hunter2-pw@x"}}, {}, kExitTimeout);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(names_variable(r.output, "REDIS_URL")) << r.output;
  EXPECT_FALSE(contains(r.output, "hunter2-pw")) << r.output;
}

TEST(ConfigCliSecrets, RedisPasswordIsNeverPrintedWhileRunning) {
  // Nothing listens on the Redis port: the server logs about it, and must redact the password.
  auto server = ServerProcess::start(
      {{"REDIS_URL", "redis://user:hunter2-pw@127.0.0.1:" + std::to_string(spare_port()) + "/0"},
       {"LOG_LEVEL", "trace"},
       {"DRAIN_TIMEOUT_MS", "1000"}});
  ASSERT_TRUE(server);
  // Give the failing Redis connection a chance to be logged (not required by the contract).
  server->wait_for_output("\"level\":40", 3000ms);
  EXPECT_FALSE(contains(server->output(), "hunter2-pw")) << server->output();
}

// ---------------------------------------------------------------------------------------------
// --help and --version.

TEST(ConfigCliHelp, HelpExitsZeroAndListsEveryVariable) {
  const RunResult r = run_server_to_exit({}, {"--help"}, kExitTimeout);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const char* name :
       {"WS_PORT", "PORT", "HEALTH_PORT", "REDIS_URL", "ROOM_CAPACITY", "ROOM_TTL_SECONDS",
        "ROOM_ID_MAX_LENGTH", "MESSAGE_MAX_BYTES", "BACKPRESSURE_CLOSE_THRESHOLD_BYTES",
        "HEARTBEAT_INTERVAL_MS", "RATE_LIMIT_CONN_PER_10S", "RATE_LIMIT_MESSAGES_PER_10S",
        "RATE_LIMIT_IP_MSGS_PER_10S", "RATE_LIMIT_ROOM_MSGS_PER_10S", "CB_ERROR_THRESHOLD",
        "CB_OPEN_MS", "DRAIN_TIMEOUT_MS", "SHUTDOWN_CLOSE_CODE", "LOG_LEVEL", "PRETTY_LOGS",
        "REQUIRE_WSS", "ALLOWED_ORIGINS", "SUBPROTOCOL", "ENABLE_AUTH", "JWT_ALG", "JWT_SECRET",
        "JWKS_URL", "ROOMS_CLAIM", "NODE_ENV",
        // The C++ server's additions.
        "HOST", "INSTANCE_ID", "THREADS", "HANDSHAKE_TIMEOUT_MS", "MAX_CONNECTIONS", "TRUST_PROXY",
        "JWT_PUBLIC_KEY", "JWT_PUBLIC_KEY_FILE", "JWKS_CACHE_TTL", "JWT_ISSUER", "JWT_AUDIENCE",
        "JWT_CLOCK_SKEW_SECONDS"}) {
    EXPECT_TRUE(names_variable(r.output, name)) << name << " missing from --help";
  }
  EXPECT_FALSE(contains(r.output, "Server listening")) << "--help must not start the server";
}

TEST(ConfigCliHelp, HelpWinsOverBadValues) {
  // --help is answered before the configuration is validated.
  const RunResult r = run_server_to_exit({{"WS_PORT", "abc"}}, {"--help"}, kExitTimeout);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(names_variable(r.output, "WS_PORT"));
}

TEST(ConfigCliHelp, VersionExitsZero) {
  const RunResult r = run_server_to_exit({}, {"--version"}, kExitTimeout);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex(R"(\d+\.\d+\.\d+)"))) << r.output;
  EXPECT_FALSE(contains(r.output, "Server listening"));
  EXPECT_LE(lines_of(r.output).size(), 2u) << r.output;
}

// ---------------------------------------------------------------------------------------------
// Precedence: flags > environment > .env > defaults.

TEST(ConfigCliPrecedence, DotEnvIsHonoured) {
  auto server = ServerProcess::start({{"RATE_LIMIT_CONN_PER_10S", "1000"}}, {},
                                     "# capacity for tests\nROOM_CAPACITY=1\n");
  ASSERT_TRUE(server);
  auto a = join(server->port(), "dotenv");
  ASSERT_TRUE(a);
  EXPECT_EQ(admission(*a), "admitted");
  auto b = join(server->port(), "dotenv");
  ASSERT_TRUE(b);
  const auto closed = b->wait_close();
  ASSERT_TRUE(closed) << "ROOM_CAPACITY=1 from .env was not applied";
  EXPECT_EQ(closed->code, 1000);
  EXPECT_EQ(closed->reason, "Room is full");
}

TEST(ConfigCliPrecedence, DotEnvQuotesExportAndComments) {
  auto server = ServerProcess::start({{"RATE_LIMIT_CONN_PER_10S", "1000"}}, {},
                                     "export ROOM_CAPACITY='3' # three\n"
                                     "ROOM_ID_MAX_LENGTH=\"5\"\n");
  ASSERT_TRUE(server);
  EXPECT_EQ(admitted_before_full(server->port(), "q"), 3);
  auto c = WsClient::connect(server->port(), "/?roomId=123456");
  ASSERT_TRUE(c);
  const auto closed = c->wait_close();
  ASSERT_TRUE(closed) << "ROOM_ID_MAX_LENGTH=\"5\" from .env was not applied";
  EXPECT_EQ(closed->reason, "Invalid roomId");
}

TEST(ConfigCliPrecedence, EnvironmentOverridesDotEnv) {
  auto server = ServerProcess::start({{"RATE_LIMIT_CONN_PER_10S", "1000"}, {"ROOM_CAPACITY", "2"}},
                                     {}, "ROOM_CAPACITY=1\n");
  ASSERT_TRUE(server);
  EXPECT_EQ(admitted_before_full(server->port(), "env-wins"), 2);
}

TEST(ConfigCliPrecedence, FlagOverridesEnvironmentAndDotEnv) {
  auto server = ServerProcess::start({{"RATE_LIMIT_CONN_PER_10S", "1000"}, {"ROOM_CAPACITY", "2"}},
                                     {"--room-capacity", "3"}, "ROOM_CAPACITY=1\n");
  ASSERT_TRUE(server);
  EXPECT_EQ(admitted_before_full(server->port(), "flag-wins"), 3);
}

TEST(ConfigCliPrecedence, FlagWithEqualsSign) {
  auto server = ServerProcess::start({{"RATE_LIMIT_CONN_PER_10S", "1000"}}, {"--room-capacity=4"});
  ASSERT_TRUE(server);
  EXPECT_EQ(admitted_before_full(server->port(), "flag-eq"), 4);
}

TEST(ConfigCliPrecedence, PortWinsOverWsPort) {
  // We run as whoever runs the tests; port 1 may well be bindable, so a server that let WS_PORT
  // win would really listen there.
  auto server = ServerProcess::start({{"PORT", "0"}, {"WS_PORT", "1"}});
  ASSERT_TRUE(server);
  EXPECT_NE(server->port(), 1);
  EXPECT_NE(server->port(), 0);
  EXPECT_EQ(http_get(server->port(), "/healthz").status, 200u);
}

TEST(ConfigCliPrecedence, EmptyPortMeansUnset) {
  // Platforms sometimes export PORT=""; then WS_PORT applies.
  auto server = ServerProcess::start({{"PORT", ""}, {"WS_PORT", "0"}});
  ASSERT_TRUE(server);
  EXPECT_NE(server->port(), 3002);
  EXPECT_EQ(http_get(server->port(), "/healthz").status, 200u);
}

// ---------------------------------------------------------------------------------------------
// Logs.

TEST(ConfigCliLogs, StartUpLogIsJsonLinesAndNamesTheEmbeddedBus) {
  auto server = ServerProcess::start({{"INSTANCE_ID", "it-instance-7"}});
  ASSERT_TRUE(server);
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  const auto lines = lines_of(server->output());
  ASSERT_GE(lines.size(), 2u) << server->output();
  bool embedded = false, listening = false;
  for (const auto& line : lines) {
    SCOPED_TRACE(line);
    // Test builds announce their fault injection (a warning no deployed binary prints).
    if (line.find("Built with fault injection") != std::string::npos) continue;
    boost::system::error_code ec;
    const json::value v = json::parse(line, ec);
    ASSERT_FALSE(ec) << "not JSON";
    ASSERT_TRUE(v.is_object());
    const json::object& o = v.as_object();
    ASSERT_TRUE(o.contains("level") && o.at("level").is_int64());
    EXPECT_EQ(o.at("level").as_int64(), 30);
    ASSERT_TRUE(o.contains("time") && o.at("time").is_int64());
    EXPECT_LT(std::abs(o.at("time").as_int64() - now_ms), 60000);
    ASSERT_TRUE(o.contains("msg") && o.at("msg").is_string());
    ASSERT_TRUE(o.contains("instanceId") && o.at("instanceId").is_string());
    EXPECT_EQ(o.at("instanceId").as_string(), "it-instance-7");
    const std::string msg(o.at("msg").as_string());
    if (contains(msg, "embedded")) embedded = true;
    if (msg == "Server listening") {
      listening = true;
      EXPECT_EQ(o.at("port").as_int64(), server->port());
    }
  }
  EXPECT_TRUE(embedded) << "the start-up log must say the embedded bus is in use";
  EXPECT_TRUE(listening);
}

TEST(ConfigCliLogs, RandomInstanceIdIsTheSameOnEveryLine) {
  auto server = ServerProcess::start();
  ASSERT_TRUE(server);
  std::string id;
  for (const auto& line : lines_of(server->output())) {
    const json::object o = json::parse(line).as_object();
    const std::string this_id(o.at("instanceId").as_string());
    EXPECT_FALSE(this_id.empty());
    if (id.empty()) id = this_id;
    EXPECT_EQ(this_id, id);
  }
  EXPECT_FALSE(id.empty());
}

TEST(ConfigCliLogs, PrettyLogsAreReadableLinesNotJson) {
  const ObservedRun run = run_until_healthy({{"PRETTY_LOGS", "true"}});
  EXPECT_TRUE(run.served) << run.result.output;
  EXPECT_EQ(run.result.exit_code, 0) << run.result.output;
  const auto lines = lines_of(run.result.output);
  ASSERT_FALSE(lines.empty());
  for (const auto& line : lines) {
    boost::system::error_code ec;
    json::parse(line, ec);
    EXPECT_TRUE(ec) << "a JSON line in pretty mode: " << line;
    EXPECT_NE(line.front(), '{') << line;
  }
  EXPECT_TRUE(contains(run.result.output, "Server listening")) << run.result.output;
  EXPECT_TRUE(contains(run.result.output, "INFO")) << run.result.output;
}

TEST(ConfigCliLogs, LogLevelWarnHidesInfoLines) {
  const ObservedRun run = run_until_healthy({{"LOG_LEVEL", "warn"}});
  EXPECT_TRUE(run.served) << "the server did not run; output:\n" << run.result.output;
  EXPECT_EQ(run.result.exit_code, 0) << run.result.output;
  EXPECT_FALSE(contains(run.result.output, "Server listening")) << run.result.output;
  EXPECT_FALSE(contains(run.result.output, "\"level\":30")) << run.result.output;
  EXPECT_FALSE(contains(run.result.output, "\"level\":20")) << run.result.output;
}

TEST(ConfigCliLogs, LogLevelDebugShowsDebugLines) {
  // Counterpart of the test above: a refusal is logged at debug, hidden at the default level.
  auto server = ServerProcess::start({{"LOG_LEVEL", "debug"}});
  ASSERT_TRUE(server);
  auto c = WsClient::connect(server->port(), "/?roomId=");
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->wait_close());
  EXPECT_TRUE(server->wait_for_output("\"level\":20")) << server->output();

  auto quiet = ServerProcess::start();
  ASSERT_TRUE(quiet);
  auto d = WsClient::connect(quiet->port(), "/?roomId=");
  ASSERT_TRUE(d);
  ASSERT_TRUE(d->wait_close());
  EXPECT_FALSE(quiet->wait_for_output("\"level\":20", 200ms)) << quiet->output();
}
