// Tests configuration loading: defaults, sources and precedence, validation errors, .env parsing.
#include "config/config.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <variant>
#include <vector>

namespace sigsrv {
namespace {

using Args = std::vector<std::string>;

// Loads and expects success; returns the config.
Config Load(const Env& env, const Env& dotenv = {}, const Args& args = {}) {
  auto r = load_config(env, dotenv, args);
  if (const auto* err = std::get_if<ConfigError>(&r)) {
    ADD_FAILURE() << "unexpected ConfigError: " << err->message;
    return Config{};
  }
  const auto& lr = std::get<LoadResult>(r);
  EXPECT_EQ(lr.action, LoadResult::Action::kRun);
  return lr.config;
}

// Loads and expects a ConfigError; returns it.
ConfigError LoadError(const Env& env, const Env& dotenv = {}, const Args& args = {}) {
  auto r = load_config(env, dotenv, args);
  if (const auto* err = std::get_if<ConfigError>(&r)) return *err;
  ADD_FAILURE() << "expected a ConfigError";
  return ConfigError{};
}

// --- defaults ---

TEST(ConfigTest, DefaultsMatchTheSpec) {
  const Config c = Load({});
  EXPECT_EQ(c.node_env, "development");
  EXPECT_EQ(c.port, 3002);                  // WS_PORT
  EXPECT_EQ(c.room_capacity, 2u);           // ROOM_CAPACITY
  EXPECT_EQ(c.room_ttl_seconds, 120u);      // ROOM_TTL_SECONDS
  EXPECT_EQ(c.room_id_max_length, 64u);     // ROOM_ID_MAX_LENGTH
  EXPECT_EQ(c.message_max_bytes, 262144u);  // MESSAGE_MAX_BYTES
  EXPECT_EQ(c.backpressure_close_threshold_bytes, 5242880u);
  EXPECT_EQ(c.heartbeat_interval_ms, 30000u);  // HEARTBEAT_INTERVAL_MS
  EXPECT_EQ(c.rate_limit_conn_per_10s, 20u);
  EXPECT_EQ(c.rate_limit_messages_per_10s, 200u);
  EXPECT_EQ(c.rate_limit_ip_msgs_per_10s, 400u);
  EXPECT_EQ(c.rate_limit_room_msgs_per_10s, 800u);
  EXPECT_EQ(c.cb_error_threshold, 5u);
  EXPECT_EQ(c.cb_open_ms, 10000u);
  EXPECT_FALSE(c.require_wss);
  EXPECT_TRUE(c.allowed_origins.empty());  // all origins
  EXPECT_EQ(c.subprotocol, "");
  EXPECT_FALSE(c.enable_auth);
  EXPECT_EQ(c.jwt_alg, "HS256");
  EXPECT_EQ(c.rooms_claim, "rooms");
  EXPECT_EQ(c.log_level, LogLevel::kInfo);
  EXPECT_FALSE(c.pretty_logs);
  // PROTOCOL.md: drain code and timeout; HEALTH_PORT only serves when set explicitly.
  EXPECT_EQ(c.shutdown_close_code, 1012);
  EXPECT_EQ(c.drain_timeout_ms, 5000u);
  EXPECT_FALSE(c.health_port.has_value());
}

TEST(ConfigTest, OptionTableDefaultsAgreeWithConfigDefaults) {
  std::set<std::string> envs;
  for (const auto& o : option_table()) {
    EXPECT_TRUE(envs.insert(o.env).second) << "duplicate " << o.env;
    EXPECT_EQ(std::string(o.flag).rfind("--", 0), 0u) << o.flag;
  }
  // Every documented variable of the spec is an option.
  for (const char* v : {"NODE_ENV",
                        "WS_PORT",
                        "PORT",
                        "HEALTH_PORT",
                        "REDIS_URL",
                        "ROOM_CAPACITY",
                        "ROOM_TTL_SECONDS",
                        "ROOM_ID_MAX_LENGTH",
                        "MESSAGE_MAX_BYTES",
                        "BACKPRESSURE_CLOSE_THRESHOLD_BYTES",
                        "HEARTBEAT_INTERVAL_MS",
                        "RATE_LIMIT_CONN_PER_10S",
                        "RATE_LIMIT_MESSAGES_PER_10S",
                        "RATE_LIMIT_IP_MSGS_PER_10S",
                        "RATE_LIMIT_ROOM_MSGS_PER_10S",
                        "CB_ERROR_THRESHOLD",
                        "CB_OPEN_MS",
                        "LOG_LEVEL",
                        "PRETTY_LOGS",
                        "REQUIRE_WSS",
                        "ALLOWED_ORIGINS",
                        "SUBPROTOCOL",
                        "ENABLE_AUTH",
                        "JWT_ALG",
                        "JWT_SECRET",
                        "JWKS_URL",
                        "JWT_ISSUER",
                        "JWT_AUDIENCE",
                        "ROOMS_CLAIM",
                        "SHUTDOWN_CLOSE_CODE",
                        "DRAIN_TIMEOUT_MS"}) {
    EXPECT_EQ(envs.count(v), 1u) << v;
  }
  // Loading every numeric default as text gives back the compiled-in default.
  Env env;
  for (const auto& o : option_table()) {
    const std::string d = o.default_text;
    if (!d.empty() && std::isdigit(static_cast<unsigned char>(d[0]))) env[o.env] = d;
  }
  env.erase("PORT");
  const Config from_text = Load(env);
  const Config defaults = Load({});
  EXPECT_EQ(from_text.port, defaults.port);
  EXPECT_EQ(from_text.message_max_bytes, defaults.message_max_bytes);
  EXPECT_EQ(from_text.jwks_cache_ttl_ms, defaults.jwks_cache_ttl_ms);
  EXPECT_EQ(from_text.shutdown_close_code, defaults.shutdown_close_code);
  EXPECT_EQ(from_text.max_connections, defaults.max_connections);
}

// --- sources and precedence ---

TEST(ConfigTest, EnvironmentValues) {
  const Config c = Load({{"WS_PORT", "3003"},
                         {"ROOM_CAPACITY", "4"},
                         {"REQUIRE_WSS", "true"},
                         {"ALLOWED_ORIGINS", "https://a.com, https://b.com ,,"},
                         {"SUBPROTOCOL", "cg.v1"},
                         {"LOG_LEVEL", "warn"},
                         {"PRETTY_LOGS", "1"},
                         {"REDIS_URL", "redis://default:pw@redis.internal:6379"},
                         {"NODE_ENV", "production"},
                         {"SHUTDOWN_CLOSE_CODE", "4000"},
                         {"HEALTH_PORT", "8080"},
                         {"PATH", "/usr/bin"}});
  EXPECT_EQ(c.port, 3003);
  EXPECT_EQ(c.room_capacity, 4u);
  EXPECT_TRUE(c.require_wss);
  EXPECT_EQ(c.allowed_origins, (std::vector<std::string>{"https://a.com", "https://b.com"}));
  EXPECT_EQ(c.subprotocol, "cg.v1");
  EXPECT_EQ(c.log_level, LogLevel::kWarn);
  EXPECT_TRUE(c.pretty_logs);
  EXPECT_EQ(c.redis_url, "redis://default:pw@redis.internal:6379");
  EXPECT_EQ(c.node_env, "production");
  EXPECT_EQ(c.shutdown_close_code, 4000);
  EXPECT_EQ(c.health_port, 8080);
}

TEST(ConfigTest, DotenvValues) {
  const Config c = Load({}, {{"WS_PORT", "3004"}, {"RATE_LIMIT_CONN_PER_10S", "10"}});
  EXPECT_EQ(c.port, 3004);
  EXPECT_EQ(c.rate_limit_conn_per_10s, 10u);
}

TEST(ConfigTest, FlagWithSeparateValue) {
  EXPECT_EQ(Load({}, {}, {"--ws-port", "3003"}).port, 3003);
}

TEST(ConfigTest, FlagWithEqualsValue) {
  EXPECT_EQ(Load({}, {}, {"--ws-port=3003"}).port, 3003);
  // Only the first '=' splits: the value may contain more.
  EXPECT_EQ(Load({}, {}, {"--allowed-origins=https://a.com/?x=1"}).allowed_origins,
            (std::vector<std::string>{"https://a.com/?x=1"}));
}

TEST(ConfigTest, ManyFlags) {
  const Config c = Load(
      {}, {},
      {"--room-capacity", "3", "--log-level=debug", "--require-wss", "yes", "--subprotocol=sp"});
  EXPECT_EQ(c.room_capacity, 3u);
  EXPECT_EQ(c.log_level, LogLevel::kDebug);
  EXPECT_TRUE(c.require_wss);
  EXPECT_EQ(c.subprotocol, "sp");
}

TEST(ConfigTest, PrecedenceFlagsOverEnvOverDotenv) {
  const Env dotenv = {{"WS_PORT", "5000"}, {"ROOM_CAPACITY", "5"}, {"CB_OPEN_MS", "5555"}};
  const Env env = {{"WS_PORT", "4000"}, {"ROOM_CAPACITY", "4"}};
  const Config c = Load(env, dotenv, {"--ws-port", "3000"});
  EXPECT_EQ(c.port, 3000);         // flag
  EXPECT_EQ(c.room_capacity, 4u);  // env over .env
  EXPECT_EQ(c.cb_open_ms, 5555u);  // .env over default
  EXPECT_EQ(Load(env, dotenv).port, 4000);
  EXPECT_EQ(Load({}, dotenv).port, 5000);
}

TEST(ConfigTest, LastFlagWins) {
  EXPECT_EQ(Load({}, {}, {"--ws-port", "3000", "--ws-port=3001"}).port, 3001);
}

TEST(ConfigTest, PortWinsOverWsPort) {
  EXPECT_EQ(Load({{"PORT", "8000"}, {"WS_PORT", "3003"}}).port, 8000);
  EXPECT_EQ(Load({{"PORT", "8000"}}).port, 8000);
  EXPECT_EQ(Load({{"WS_PORT", "3003"}}, {}, {"--port", "8001"}).port, 8001);
}

// Platforms sometimes export PORT=""; an empty value means "not set".
TEST(ConfigTest, EmptyPortIsIgnored) {
  EXPECT_EQ(Load({{"PORT", ""}, {"WS_PORT", "3003"}}).port, 3003);
  EXPECT_EQ(Load({{"PORT", ""}}).port, 3002);
  EXPECT_FALSE(Load({{"HEALTH_PORT", ""}}).health_port.has_value());
}

TEST(ConfigTest, EmptyNumericValueMeansUnset) {
  EXPECT_EQ(Load({{"WS_PORT", ""}}).port, 3002);
  EXPECT_EQ(Load({{"ROOM_CAPACITY", "  "}}).room_capacity, 2u);
  EXPECT_FALSE(Load({{"REQUIRE_WSS", ""}}).require_wss);
}

TEST(ConfigTest, ValuesAreTrimmed) {
  EXPECT_EQ(Load({{"WS_PORT", " 3003 "}}).port, 3003);
  EXPECT_EQ(Load({{"LOG_LEVEL", " error\t"}}).log_level, LogLevel::kError);
}

TEST(ConfigTest, PortZeroIsAllowed) {
  EXPECT_EQ(Load({{"WS_PORT", "0"}}).port, 0);
}

TEST(ConfigTest, BooleanSpellings) {
  for (const char* t : {"true", "TRUE", "True", "1", "yes", "on", "ON"}) {
    EXPECT_TRUE(Load({{"REQUIRE_WSS", t}}).require_wss) << t;
  }
  for (const char* f : {"false", "FALSE", "0", "no", "off"}) {
    EXPECT_FALSE(
        Load({{"REQUIRE_WSS", "true"}}, {}, {std::string("--require-wss=") + f}).require_wss)
        << f;
  }
}

TEST(ConfigTest, EveryLogLevel) {
  const std::pair<const char*, LogLevel> levels[] = {
      {"trace", LogLevel::kTrace},  {"debug", LogLevel::kDebug}, {"info", LogLevel::kInfo},
      {"warn", LogLevel::kWarn},    {"error", LogLevel::kError}, {"fatal", LogLevel::kFatal},
      {"silent", LogLevel::kSilent}};
  for (const auto& [name, level] : levels) {
    EXPECT_EQ(Load({{"LOG_LEVEL", name}}).log_level, level) << name;
  }
}

TEST(ConfigTest, AuthConfigurations) {
  const Config hs = Load({{"ENABLE_AUTH", "true"}, {"JWT_SECRET", "k"}});
  EXPECT_TRUE(hs.enable_auth);
  EXPECT_EQ(hs.jwt_secret, "k");
  const Config rs =
      Load({{"ENABLE_AUTH", "true"}, {"JWT_ALG", "RS256"}, {"JWKS_URL", "https://x/jwks.json"}});
  EXPECT_EQ(rs.jwt_alg, "RS256");
  EXPECT_EQ(rs.jwks_url, "https://x/jwks.json");
  // Auth disabled: no key needed.
  EXPECT_FALSE(Load({{"JWT_ALG", "RS256"}}).enable_auth);
}

TEST(ConfigTest, TlsConfigurations) {
  const Config server = Load({{"TLS_CERT_FILE", "/c.pem"}, {"TLS_KEY_FILE", "/k.pem"}});
  EXPECT_EQ(server.tls_cert_file, "/c.pem");
  EXPECT_EQ(server.tls_key_file, "/k.pem");
  const Config redis = Load({{"REDIS_URL", "rediss://r:6380"},
                             {"REDIS_TLS_CA_FILE", "/ca.pem"},
                             {"REDIS_TLS_CERT_FILE", "/cc.pem"},
                             {"REDIS_TLS_KEY_FILE", "/ck.pem"}});
  EXPECT_EQ(redis.redis_tls_ca_file, "/ca.pem");
  EXPECT_EQ(redis.redis_tls_cert_file, "/cc.pem");
  EXPECT_EQ(redis.redis_tls_key_file, "/ck.pem");
  // rediss:// alone uses the system CAs.
  EXPECT_TRUE(Load({{"REDIS_URL", "rediss://r:6380"}}).redis_tls_ca_file.empty());
}

TEST(ConfigTest, TlsSettingsThatCannotWorkNameTheVariable) {
  EXPECT_EQ(LoadError({{"TLS_CERT_FILE", "/c.pem"}}).variable, "TLS_KEY_FILE");
  EXPECT_EQ(LoadError({{"TLS_KEY_FILE", "/k.pem"}}).variable, "TLS_CERT_FILE");
  // Without rediss:// the Redis TLS files would be ignored and traffic sent in clear.
  EXPECT_EQ(LoadError({{"REDIS_URL", "redis://r:6379"}, {"REDIS_TLS_CA_FILE", "/ca.pem"}}).variable,
            "REDIS_TLS_CA_FILE");
  EXPECT_EQ(LoadError({{"REDIS_TLS_CERT_FILE", "/c.pem"}}).variable, "REDIS_TLS_CERT_FILE");
  EXPECT_EQ(
      LoadError({{"REDIS_URL", "rediss://r:6380"}, {"REDIS_TLS_CERT_FILE", "/c.pem"}}).variable,
      "REDIS_TLS_KEY_FILE");
}

TEST(ConfigTest, TlsAndAclUserForSentinelAndClusterNodes) {
  const Config cluster = Load({{"REDIS_CLUSTER_NODES", "n1:6380"},
                               {"REDIS_TLS", "true"},
                               {"REDIS_TLS_CA_FILE", "/ca.pem"},
                               {"REDIS_USERNAME", "relay"},
                               {"REDIS_PASSWORD", "pw"}});
  EXPECT_TRUE(cluster.redis_tls);
  EXPECT_EQ(cluster.redis_tls_ca_file, "/ca.pem");
  EXPECT_EQ(cluster.redis_username, "relay");
  const Config sentinel = Load({{"REDIS_SENTINELS", "s1:26380"},
                                {"REDIS_SENTINEL_MASTER", "m"},
                                {"REDIS_TLS", "1"},
                                {"REDIS_USERNAME", "relay"},
                                {"REDIS_PASSWORD", "pw"}});
  EXPECT_TRUE(sentinel.redis_tls);
  EXPECT_FALSE(Load({{"REDIS_CLUSTER_NODES", "n1:6379"}}).redis_tls);
}

TEST(ConfigTest, TlsAndAclUserWhereTheyCannotWorkNameTheVariable) {
  // One Redis says TLS with rediss:// and its user in the URL.
  const auto with_url = LoadError({{"REDIS_URL", "redis://r:6379"}, {"REDIS_TLS", "true"}});
  EXPECT_EQ(with_url.variable, "REDIS_TLS");
  EXPECT_NE(with_url.message.find("rediss://"), std::string::npos) << with_url.message;
  EXPECT_EQ(LoadError({{"REDIS_TLS", "true"}}).variable, "REDIS_TLS");
  EXPECT_EQ(LoadError({{"REDIS_URL", "redis://r:6379"}, {"REDIS_USERNAME", "u"}}).variable,
            "REDIS_USERNAME");
  // A user without its password would AUTH as nobody.
  EXPECT_EQ(LoadError({{"REDIS_CLUSTER_NODES", "n1:6379"}, {"REDIS_USERNAME", "u"}}).variable,
            "REDIS_PASSWORD");
  // TLS files without REDIS_TLS would be ignored, and the traffic sent in clear.
  const auto files =
      LoadError({{"REDIS_CLUSTER_NODES", "n1:6379"}, {"REDIS_TLS_CA_FILE", "/ca.pem"}});
  EXPECT_EQ(files.variable, "REDIS_TLS_CA_FILE");
  EXPECT_NE(files.message.find("REDIS_TLS is not true"), std::string::npos) << files.message;
  EXPECT_EQ(LoadError({{"REDIS_CLUSTER_NODES", "n1:6379"}, {"REDIS_TLS", "maybe"}}).variable,
            "REDIS_TLS");
}

TEST(ConfigTest, SentinelSettings) {
  const Config c = Load({{"REDIS_SENTINELS", "s1:26379, s2:26379"},
                         {"REDIS_SENTINEL_MASTER", "mymaster"},
                         {"REDIS_SENTINEL_PASSWORD", "sp"},
                         {"REDIS_PASSWORD", "dp"}});
  EXPECT_EQ(c.redis_sentinels, "s1:26379, s2:26379");
  EXPECT_EQ(c.redis_sentinel_master, "mymaster");
  EXPECT_EQ(c.redis_sentinel_password, "sp");
  EXPECT_EQ(c.redis_password, "dp");
  EXPECT_TRUE(c.redis_url.empty());
  EXPECT_TRUE(is_secret_variable("REDIS_PASSWORD"));
  EXPECT_TRUE(is_secret_variable("REDIS_SENTINEL_PASSWORD"));
}

TEST(ConfigTest, SentinelSettingsThatCannotWorkNameTheVariable) {
  const ConfigError both = LoadError({{"REDIS_URL", "redis://:pw@r:6379"},
                                      {"REDIS_SENTINELS", "s1:26379"},
                                      {"REDIS_SENTINEL_MASTER", "m"}});
  EXPECT_EQ(both.variable, "REDIS_SENTINELS");
  EXPECT_NE(both.message.find("REDIS_URL"), std::string::npos);
  EXPECT_EQ(both.message.find("pw"), std::string::npos);
  EXPECT_EQ(LoadError({{"REDIS_SENTINELS", "s1:26379"}}).variable, "REDIS_SENTINEL_MASTER");
  EXPECT_EQ(LoadError({{"REDIS_SENTINEL_MASTER", "m"}}).variable, "REDIS_SENTINEL_MASTER");
  EXPECT_EQ(LoadError({{"REDIS_URL", "redis://r:6379"}, {"REDIS_PASSWORD", "x"}}).variable,
            "REDIS_PASSWORD");
  EXPECT_EQ(LoadError({{"REDIS_SENTINEL_PASSWORD", "x"}}).variable, "REDIS_SENTINEL_PASSWORD");
  const ConfigError list =
      LoadError({{"REDIS_SENTINELS", "s1:26379,s2"}, {"REDIS_SENTINEL_MASTER", "m"}});
  EXPECT_EQ(list.variable, "REDIS_SENTINELS");
  EXPECT_NE(list.message.find("'s2': expected host:port"), std::string::npos) << list.message;
  EXPECT_EQ(
      LoadError({{"REDIS_SENTINELS", "s1:26379"}, {"REDIS_SENTINEL_MASTER", "my master"}}).variable,
      "REDIS_SENTINEL_MASTER");
  // Passwords are never echoed.
  const ConfigError pw = LoadError({{"REDIS_PASSWORD", "hunter2"}});
  EXPECT_EQ(pw.message.find("hunter2"), std::string::npos);
}

// --- errors: each names its variable ---

struct BadValue {
  Env env;
  std::string variable;
};

TEST(ConfigTest, InvalidValuesNameTheVariable) {
  const BadValue cases[] = {
      {{{"WS_PORT", "abc"}}, "WS_PORT"},
      {{{"WS_PORT", "70000"}}, "WS_PORT"},
      {{{"WS_PORT", "65536"}}, "WS_PORT"},
      {{{"WS_PORT", "-1"}}, "WS_PORT"},
      {{{"WS_PORT", "30 02"}}, "WS_PORT"},
      {{{"WS_PORT", "3002x"}}, "WS_PORT"},
      {{{"PORT", "http"}}, "PORT"},
      {{{"PORT", "70000"}}, "PORT"},
      {{{"HEALTH_PORT", "99999"}}, "HEALTH_PORT"},
      {{{"HEALTH_PORT", "3002"}}, "HEALTH_PORT"},  // same as the main port
      {{{"ROOM_CAPACITY", "0"}}, "ROOM_CAPACITY"},
      {{{"ROOM_CAPACITY", "two"}}, "ROOM_CAPACITY"},
      {{{"ROOM_CAPACITY", "2.5"}}, "ROOM_CAPACITY"},
      {{{"ROOM_CAPACITY", "1e3"}}, "ROOM_CAPACITY"},
      {{{"ROOM_CAPACITY", "+3"}}, "ROOM_CAPACITY"},
      {{{"MESSAGE_MAX_BYTES", "0"}}, "MESSAGE_MAX_BYTES"},
      {{{"HEARTBEAT_INTERVAL_MS", "-5"}}, "HEARTBEAT_INTERVAL_MS"},
      {{{"RATE_LIMIT_CONN_PER_10S", "0"}}, "RATE_LIMIT_CONN_PER_10S"},
      {{{"LOG_LEVEL", "verbose"}}, "LOG_LEVEL"},
      {{{"PRETTY_LOGS", "maybe"}}, "PRETTY_LOGS"},
      {{{"REQUIRE_WSS", "yep"}}, "REQUIRE_WSS"},
      {{{"ENABLE_AUTH", "2"}}, "ENABLE_AUTH"},
      {{{"JWT_ALG", "none"}}, "JWT_ALG"},
      {{{"JWT_ALG", "HS999"}}, "JWT_ALG"},
      {{{"SHUTDOWN_CLOSE_CODE", "1005"}}, "SHUTDOWN_CLOSE_CODE"},
      {{{"SHUTDOWN_CLOSE_CODE", "1004"}}, "SHUTDOWN_CLOSE_CODE"},
      {{{"SHUTDOWN_CLOSE_CODE", "1006"}}, "SHUTDOWN_CLOSE_CODE"},
      {{{"SHUTDOWN_CLOSE_CODE", "1015"}}, "SHUTDOWN_CLOSE_CODE"},
      {{{"SHUTDOWN_CLOSE_CODE", "999"}}, "SHUTDOWN_CLOSE_CODE"},
      {{{"SHUTDOWN_CLOSE_CODE", "5000"}}, "SHUTDOWN_CLOSE_CODE"},
      {{{"ENABLE_AUTH", "true"}}, "JWT_SECRET"},
      {{{"ENABLE_AUTH", "true"}, {"JWT_ALG", "HS512"}}, "JWT_SECRET"},
      {{{"ENABLE_AUTH", "true"}, {"JWT_ALG", "RS256"}}, "JWT_PUBLIC_KEY"},
      {{{"REDIS_URL", "http://127.0.0.1:6379"}}, "REDIS_URL"},
      {{{"REDIS_URL", "127.0.0.1:6379"}}, "REDIS_URL"},
      {{{"JWKS_URL", "ftp://idp.example/jwks.json"}}, "JWKS_URL"},
      {{{"JWKS_URL", "idp.example/jwks.json"}}, "JWKS_URL"},
      {{{"JWKS_URL", "https:///jwks.json"}}, "JWKS_URL"},
      {{{"JWKS_CACHE_TTL", "10"}}, "JWKS_CACHE_TTL"},
  };
  for (const auto& c : cases) {
    const std::string shown = c.env.begin()->first + "=" + c.env.begin()->second;
    const ConfigError e = LoadError(c.env);
    EXPECT_EQ(e.variable, c.variable) << shown;
    EXPECT_NE(e.message.find(c.variable), std::string::npos) << shown << " -> " << e.message;
  }
}

// Loads and expects success; returns the warnings.
std::vector<std::string> Warnings(const Env& env) {
  auto r = load_config(env, {}, {});
  EXPECT_TRUE(std::holds_alternative<LoadResult>(r)) << std::get<ConfigError>(r).message;
  if (!std::holds_alternative<LoadResult>(r)) return {};
  return std::get<LoadResult>(r).warnings;
}

bool names(const std::vector<std::string>& warnings, const std::string& variable) {
  for (const auto& w : warnings) {
    if (w.rfind(variable + "=", 0) == 0) return true;
  }
  return false;
}

TEST(ConfigTest, EveryPositiveIntegerTheReplacedServerTookIsTaken) {
  // The replaced server's rule for its numeric variables: any positive integer.
  const char* const node_numbers[] = {"ROOM_CAPACITY",
                                      "ROOM_TTL_SECONDS",
                                      "ROOM_ID_MAX_LENGTH",
                                      "MESSAGE_MAX_BYTES",
                                      "BACKPRESSURE_CLOSE_THRESHOLD_BYTES",
                                      "HEARTBEAT_INTERVAL_MS",
                                      "RATE_LIMIT_CONN_PER_10S",
                                      "RATE_LIMIT_MESSAGES_PER_10S",
                                      "RATE_LIMIT_IP_MSGS_PER_10S",
                                      "RATE_LIMIT_ROOM_MSGS_PER_10S",
                                      "CB_ERROR_THRESHOLD",
                                      "CB_OPEN_MS",
                                      "DRAIN_TIMEOUT_MS"};
  for (const char* v : node_numbers) {
    for (const char* value : {"1", "16", "99999999999", "99999999999999999999999"}) {
      auto r = load_config({{v, value}}, {}, {});
      EXPECT_TRUE(std::holds_alternative<LoadResult>(r))
          << v << "=" << value << ": " << std::get<ConfigError>(r).message;
    }
  }
  EXPECT_EQ(Load({{"MESSAGE_MAX_BYTES", "16"}}).message_max_bytes, 16u);
  EXPECT_EQ(Load({{"HEARTBEAT_INTERVAL_MS", "5"}}).heartbeat_interval_ms, 5u);
  // Past what the server uses: the most it uses, and a warning naming the variable.
  EXPECT_EQ(Load({{"MESSAGE_MAX_BYTES", "99999999999999999999999"}}).message_max_bytes, 64u << 20);
  EXPECT_EQ(Load({{"ROOM_ID_MAX_LENGTH", "100000"}}).room_id_max_length, 4096u);
  EXPECT_TRUE(names(Warnings({{"ROOM_ID_MAX_LENGTH", "100000"}}), "ROOM_ID_MAX_LENGTH"));
  EXPECT_TRUE(names(Warnings({{"RATE_LIMIT_IP_MSGS_PER_10S", "99999999999"}}),
                    "RATE_LIMIT_IP_MSGS_PER_10S"));
}

TEST(ConfigTest, LegalButUnwiseValuesWarnAndDefaultsDoNot) {
  EXPECT_TRUE(Warnings({}).empty());
  EXPECT_TRUE(names(Warnings({{"MESSAGE_MAX_BYTES", "16"}}), "MESSAGE_MAX_BYTES"));
  EXPECT_TRUE(names(Warnings({{"HEARTBEAT_INTERVAL_MS", "5"}}), "HEARTBEAT_INTERVAL_MS"));
  EXPECT_TRUE(names(Warnings({{"HANDSHAKE_TIMEOUT_MS", "50"}}), "HANDSHAKE_TIMEOUT_MS"));
  EXPECT_TRUE(names(Warnings({{"BACKPRESSURE_CLOSE_THRESHOLD_BYTES", "1000"}}),
                    "BACKPRESSURE_CLOSE_THRESHOLD_BYTES"));
  // The probe's wait does not fit in the handshake deadline.
  EXPECT_TRUE(names(Warnings({{"STALE_MEMBER_PROBE_MS", "4800"}}), "STALE_MEMBER_PROBE_MS"));
  EXPECT_FALSE(names(Warnings({{"STALE_MEMBER_PROBE_MS", "0"}}), "STALE_MEMBER_PROBE_MS"));
  EXPECT_FALSE(names(Warnings({{"STALE_MEMBER_PROBE_MS", "4000"}}), "STALE_MEMBER_PROBE_MS"));
}

TEST(ConfigTest, ErrorShowsNonSecretValue) {
  const ConfigError e = LoadError({{"LOG_LEVEL", "verbose"}});
  EXPECT_NE(e.message.find("verbose"), std::string::npos) << e.message;
  const ConfigError p = LoadError({{"WS_PORT", "70000"}});
  EXPECT_NE(p.message.find("70000"), std::string::npos) << p.message;
}

TEST(ConfigTest, ValidCloseCodes) {
  for (const char* code :
       {"1000", "1001", "1003", "1007", "1011", "1012", "1014", "3000", "4999"}) {
    EXPECT_EQ(std::to_string(Load({{"SHUTDOWN_CLOSE_CODE", code}}).shutdown_close_code), code);
  }
}

TEST(ConfigTest, SecretsAreNotEchoedInErrors) {
  const std::string secret = "hunter2-s3cr3t";
  const std::vector<ConfigError> errors = {
      LoadError({{"REDIS_URL", "http://user:" + secret + "@h:6379"}}),
      LoadError({{"REDIS_URL", secret}}),
      LoadError({{"JWT_SECRET", secret}, {"ENABLE_AUTH", "true"}, {"JWT_ALG", "RS256"}}),
      LoadError({{"JWT_SECRET", secret}, {"LOG_LEVEL", "loud"}}),
      LoadError({}, {}, {"--redis-url=ftp://" + secret}),
      LoadError({}, {}, {"--redis-url", "ftp://" + secret}),
      LoadError({}, {{"REDIS_URL", "x" + secret}}),
  };
  for (const auto& e : errors) {
    EXPECT_EQ(e.message.find(secret), std::string::npos) << e.message;
    EXPECT_EQ(e.message.find("hunter2"), std::string::npos) << e.message;
  }
  EXPECT_EQ(errors[0].variable, "REDIS_URL");
  EXPECT_TRUE(is_secret_variable("JWT_SECRET"));
  EXPECT_TRUE(is_secret_variable("REDIS_URL"));
  EXPECT_FALSE(is_secret_variable("WS_PORT"));
}

// --- ICE servers (PROTOCOL.md section 9) ---

TEST(ConfigTest, TurnDefaultsAndValues) {
  const Config d = Load({});
  EXPECT_TRUE(d.turn_urls.empty());
  EXPECT_EQ(d.turn_secret, "");
  EXPECT_EQ(d.turn_expiry_seconds, 14400u);  // the deployed matchmaker's default
  const Config c = Load({{"TURN_URLS", "stun:s:3478, turn:t:3478?transport=udp,turns:t:443"},
                         {"TURN_SECRET", "k"},
                         {"TURN_EXPIRY_SECONDS", "600"}});
  EXPECT_EQ(c.turn_urls,
            (std::vector<std::string>{"stun:s:3478", "turn:t:3478?transport=udp", "turns:t:443"}));
  EXPECT_EQ(c.turn_secret, "k");
  EXPECT_EQ(c.turn_expiry_seconds, 600u);
  // STUN alone needs no secret.
  EXPECT_EQ(Load({{"TURN_URLS", "stun:s:3478"}}).turn_urls.size(), 1u);
}

TEST(ConfigTest, BadTurnSettingsNameTheVariable) {
  EXPECT_EQ(LoadError({{"TURN_URLS", "http://t:3478"}}).variable, "TURN_URLS");
  EXPECT_EQ(LoadError({{"TURN_URLS", "stun:s:3478,turn:t:3478"}}).variable, "TURN_SECRET");
  EXPECT_EQ(LoadError({{"TURN_URLS", "turns:t:443"}}).variable, "TURN_SECRET");
  for (const char* expiry : {"0", "-1", "abc", "1.5"}) {
    EXPECT_EQ(LoadError({{"TURN_EXPIRY_SECONDS", expiry}}).variable, "TURN_EXPIRY_SECONDS")
        << expiry;
  }
  EXPECT_EQ(LoadError({{"TURN_SECRET", "a"}, {"TURN_SECRET_FILE", "/dev/null"}}).variable,
            "TURN_SECRET_FILE");
  const ConfigError missing =
      LoadError({{"TURN_URLS", "turn:t:3478"}, {"TURN_SECRET_FILE", "/nonexistent/turn-secret"}});
  EXPECT_EQ(missing.variable, "TURN_SECRET_FILE");
  EXPECT_NE(missing.message.find("/nonexistent/turn-secret"), std::string::npos);
  EXPECT_EQ(LoadError({{"TURN_URLS", "turn:t:3478"}, {"TURN_SECRET_FILE", "/dev/null"}}).variable,
            "TURN_SECRET_FILE");  // empty
}

TEST(ConfigTest, TurnSecretFromAFileWithoutItsNewline) {
  const std::string path = ::testing::TempDir() + "turn-secret-test";
  {
    std::ofstream out(path, std::ios::binary);
    out << "s3cr3t from a file\r\n";
  }
  const Config c = Load({{"TURN_URLS", "turn:t:3478"}, {"TURN_SECRET_FILE", path}});
  EXPECT_EQ(c.turn_secret, "s3cr3t from a file");
  std::remove(path.c_str());
}

TEST(ConfigTest, TurnSecretWithoutTurnUrlsWarns) {
  EXPECT_TRUE(names(Warnings({{"TURN_SECRET", "k"}}), "TURN_SECRET"));
  EXPECT_TRUE(names(Warnings({{"TURN_SECRET", "k"}, {"TURN_URLS", "stun:s:3478"}}), "TURN_SECRET"));
  EXPECT_TRUE(Warnings({{"TURN_SECRET", "k"}, {"TURN_URLS", "turn:t:3478"}}).empty());
}

TEST(ConfigTest, TurnSecretIsNeverEchoed) {
  EXPECT_TRUE(is_secret_variable("TURN_SECRET"));
  const ConfigError e =
      LoadError({{"TURN_SECRET", "hunter2-turn"}, {"TURN_SECRET_FILE", "/dev/null"}});
  EXPECT_EQ(e.message.find("hunter2"), std::string::npos) << e.message;
  const ConfigError u = LoadError({{"TURN_URLS", "turn:user:hunter2-turn@t:3478"}});
  EXPECT_EQ(u.variable, "TURN_URLS");
  EXPECT_EQ(u.message.find("hunter2"), std::string::npos) << u.message;
}

TEST(ConfigTest, UnknownFlag) {
  const ConfigError e = LoadError({}, {}, {"--no-such-option", "1"});
  EXPECT_EQ(e.variable, "--no-such-option");
  EXPECT_NE(e.message.find("--no-such-option"), std::string::npos);
  EXPECT_EQ(LoadError({}, {}, {"--bogus=3"}).variable, "--bogus");
  // Not a flag at all: reported by what precedes '=' (the value is not echoed).
  EXPECT_EQ(LoadError({}, {}, {"WS_PORT=3003"}).variable, "WS_PORT");
  EXPECT_EQ(LoadError({}, {}, {"3003"}).variable, "3003");
}

TEST(ConfigTest, FlagWithoutValue) {
  const ConfigError e = LoadError({}, {}, {"--ws-port"});
  EXPECT_EQ(e.variable, "WS_PORT");
  EXPECT_NE(e.message.find("--ws-port"), std::string::npos) << e.message;
  EXPECT_EQ(LoadError({}, {}, {"--room-capacity", "3", "--log-level"}).variable, "LOG_LEVEL");
}

TEST(ConfigTest, InvalidFlagValueNamesTheVariable) {
  const ConfigError e = LoadError({}, {}, {"--ws-port=http"});
  EXPECT_EQ(e.variable, "WS_PORT");
  EXPECT_NE(e.message.find("WS_PORT"), std::string::npos);
}

TEST(ConfigTest, DotenvErrorsNameTheVariable) {
  EXPECT_EQ(LoadError({}, {{"ROOM_CAPACITY", "lots"}}).variable, "ROOM_CAPACITY");
}

TEST(ConfigTest, ValidEnvOverridesInvalidDotenv) {
  EXPECT_EQ(Load({{"ROOM_CAPACITY", "3"}}, {{"ROOM_CAPACITY", "lots"}}).room_capacity, 3u);
}

// --- actions ---

TEST(ConfigTest, HelpAndVersionActions) {
  for (const char* a : {"--help", "-h"}) {
    auto r = load_config({}, {}, {a});
    ASSERT_TRUE(std::holds_alternative<LoadResult>(r)) << a;
    EXPECT_EQ(std::get<LoadResult>(r).action, LoadResult::Action::kHelp) << a;
  }
  for (const char* a : {"--version", "-v"}) {
    auto r = load_config({}, {}, {a});
    ASSERT_TRUE(std::holds_alternative<LoadResult>(r)) << a;
    EXPECT_EQ(std::get<LoadResult>(r).action, LoadResult::Action::kVersion) << a;
  }
}

TEST(ConfigTest, HelpWorksEvenWithABrokenEnvironment) {
  auto r = load_config({{"WS_PORT", "abc"}}, {}, {"--ws-port", "1", "--help"});
  ASSERT_TRUE(std::holds_alternative<LoadResult>(r));
  EXPECT_EQ(std::get<LoadResult>(r).action, LoadResult::Action::kHelp);
}

TEST(ConfigTest, HelpTextMentionsEveryOption) {
  const std::string help = help_text();
  ASSERT_FALSE(option_table().empty());
  for (const auto& o : option_table()) {
    EXPECT_NE(help.find(o.env), std::string::npos) << o.env;
    EXPECT_NE(help.find(o.flag), std::string::npos) << o.flag;
    EXPECT_NE(help.find(o.help), std::string::npos) << o.env;
  }
  EXPECT_NE(help.find("--help"), std::string::npos);
  EXPECT_NE(help.find("--version"), std::string::npos);
}

TEST(ConfigTest, EveryFlagIsAccepted) {
  // Each option's flag reaches its variable: an invalid value is reported under the option's env
  // name (text options accept anything, so they load, unless they need a partner such as
  // TLS_KEY_FILE for TLS_CERT_FILE: then the error names the partner and mentions this one).
  for (const auto& o : option_table()) {
    auto r = load_config({}, {}, {std::string(o.flag) + "=@@"});
    if (const auto* e = std::get_if<ConfigError>(&r)) {
      EXPECT_NE(e->message.find(o.env), std::string::npos) << o.flag << ": " << e->message;
    }
  }
}

// --- .env parsing ---

TEST(DotenvTest, BasicPairs) {
  EXPECT_EQ(parse_dotenv("A=1\nB=two\n"), (Env{{"A", "1"}, {"B", "two"}}));
}

TEST(DotenvTest, CommentsAndBlankLines) {
  EXPECT_EQ(parse_dotenv("# comment\n\n   # indented comment\nA=1\n\n#B=2\n"), (Env{{"A", "1"}}));
}

TEST(DotenvTest, Quotes) {
  const Env e = parse_dotenv(
      "D=\"double quoted\"\nS='single quoted'\nE=\"\"\nH=\"has # hash\"\nM=\"mixed'\nI='a \"b\" "
      "c'\n");
  EXPECT_EQ(e.at("D"), "double quoted");
  EXPECT_EQ(e.at("S"), "single quoted");
  EXPECT_EQ(e.at("E"), "");
  EXPECT_EQ(e.at("H"), "has # hash");
  EXPECT_EQ(e.at("M"), "\"mixed'");  // unbalanced quotes are kept
  EXPECT_EQ(e.at("I"), "a \"b\" c");
}

TEST(DotenvTest, ExportPrefix) {
  EXPECT_EQ(parse_dotenv("export A=1\nexport   B=\"x\"\n"), (Env{{"A", "1"}, {"B", "x"}}));
}

TEST(DotenvTest, InlineComments) {
  const Env e = parse_dotenv("A=value # comment\nB=a#b\nC=a b  #  c # d\n");
  EXPECT_EQ(e.at("A"), "value");
  EXPECT_EQ(e.at("B"), "a#b");  // '#' not preceded by a space is part of the value
  EXPECT_EQ(e.at("C"), "a b");
}

// `A=   # note` is an empty value with a comment, as in dotenv (`HEALTH_PORT= # optional`).
TEST(DotenvTest, EmptyValueWithInlineComment) {
  const Env e = parse_dotenv("A=   # only a comment\nB= # x\n");
  EXPECT_EQ(e.at("A"), "");
  EXPECT_EQ(e.at("B"), "");
}

TEST(DotenvTest, WhitespaceAndSpecialValues) {
  const Env e = parse_dotenv(
      "  A = spaced  \r\nURL=redis://u:p@h:6379/0?x=1\nEMPTY=\nNOEQUALS\n=novalue\nA2=1\nA2=2\n");
  EXPECT_EQ(e.at("A"), "spaced");
  EXPECT_EQ(e.at("URL"), "redis://u:p@h:6379/0?x=1");
  EXPECT_EQ(e.at("EMPTY"), "");
  EXPECT_EQ(e.count("NOEQUALS"), 0u);
  EXPECT_EQ(e.count(""), 0u);
  EXPECT_EQ(e.at("A2"), "2");  // the later line wins
}

TEST(DotenvTest, FeedsLoadConfig) {
  const Env dotenv = parse_dotenv("# dev\nexport WS_PORT=3010 # local\nREQUIRE_WSS='true'\n");
  const Config c = Load({}, dotenv);
  EXPECT_EQ(c.port, 3010);
  EXPECT_TRUE(c.require_wss);
}

// `A="v" # c` gives `v`, as the Node server's dotenv does (ALLOWED_ORIGINS="https://a.com" # prod).
TEST(DotenvTest, QuotedValueWithInlineComment) {
  const Env e = parse_dotenv("A=\"quoted # not a comment\" # comment\nB='v' # c\n");
  EXPECT_EQ(e.at("A"), "quoted # not a comment");
  EXPECT_EQ(e.at("B"), "v");
}

// dotenv expands \n inside double quotes (a PEM key such as JWT_PUBLIC_KEY on one line);
// single-quoted and unquoted values keep it literally.
TEST(DotenvTest, DoubleQuotedNewlineEscapes) {
  const Env e = parse_dotenv("D=\"a\\nb\"\nS='a\\nb'\nU=a\\nb\n");
  EXPECT_EQ(e.at("D"), "a\nb");
  EXPECT_EQ(e.at("S"), "a\\nb");
  EXPECT_EQ(e.at("U"), "a\\nb");
}

}  // namespace
}  // namespace sigsrv
