// Config: every setting of the server in one struct, loaded and validated once at start.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace sigsrv {

// METRICS_NAMES: which names the spec's metrics are served under: the spec's cloudgaming_*, the
// deployed Node server's signaling_*, or both (other metrics are always cloudgaming_*).
enum class MetricNames { kBoth, kCloudgaming, kSignaling };

enum class LogLevel : int {
  kTrace = 10,
  kDebug = 20,
  kInfo = 30,
  kWarn = 40,
  kError = 50,
  kFatal = 60,
  kSilent = 100
};

struct Config {
  // --- core ---
  std::string node_env =
      "development";  // NODE_ENV: only reported; behaviour is set by the variables below.
  std::string host = "0.0.0.0";  // HOST: address to bind (all IPv4 interfaces by default).
  uint16_t port = 3002;          // PORT if set, else WS_PORT; 0 picks a free port (tests).
  std::optional<uint16_t>
      health_port;        // HEALTH_PORT: extra listener for healthz/readyz/metrics, only when set.
  std::string redis_url;  // REDIS_URL: empty = the embedded single-instance bus.
  // rediss:// only: CA bundle that signs the Redis server's certificate (empty = system CAs),
  // and an optional client certificate + key for servers that ask for one.
  std::string redis_tls_ca_file;
  std::string redis_tls_cert_file;
  std::string redis_tls_key_file;
  // Sentinel (instead of REDIS_URL): REDIS_SENTINELS "h1:p1,h2:p2,..." (checked at load),
  // REDIS_SENTINEL_MASTER the name they monitor, REDIS_SENTINEL_PASSWORD their AUTH password, and
  // REDIS_PASSWORD the data nodes' (master and replicas: one password, as Sentinel expects).
  std::string redis_sentinels;
  // Redis Cluster (instead of REDIS_URL): REDIS_CLUSTER_NODES "h1:p1,h2:p2,..." seed nodes
  // (checked at load), REDIS_PASSWORD the nodes' password.
  std::string redis_cluster_nodes;
  std::string redis_sentinel_master;
  std::string redis_sentinel_password;
  std::string redis_password;
  // REDIS_USERNAME: the data nodes' ACL user (with REDIS_PASSWORD), Sentinel and Cluster modes
  // (with REDIS_URL the user goes in the URL).
  std::string redis_username;
  // REDIS_TLS: TLS to the sentinels and data nodes (Sentinel) or to every node (Cluster), with
  // the REDIS_TLS_* files; with REDIS_URL, rediss:// says it instead.
  bool redis_tls = false;
  std::string instance_id;  // INSTANCE_ID: originServerId on the bus; random when empty.
  unsigned threads = 0;     // THREADS: event loops; 0 = one per core.
  // INSTANCE_LEASE_TTL_MS: a crashed instance's members stop holding room slots this long after.
  unsigned instance_lease_ttl_ms = 15000;

  // --- rooms ---
  unsigned room_capacity = 2;       // ROOM_CAPACITY: members per room across all instances.
  unsigned room_ttl_seconds = 120;  // ROOM_TTL_SECONDS: Redis room set lifetime once empty.
  unsigned room_id_max_length = 64;

  // --- websocket ---
  std::size_t message_max_bytes = 262144;  // larger messages close the socket (1009).
  std::size_t backpressure_close_threshold_bytes =
      5242880;                             // unsent bytes per recipient before 1013.
  unsigned heartbeat_interval_ms = 30000;  // ping period; no pong by next tick = terminate.
  unsigned handshake_timeout_ms = 5000;    // HTTP request + upgrade must finish within this.
  std::size_t max_connections = 0;         // per instance; 0 = unlimited.

  // --- rate limits (all over 10 s) ---
  unsigned rate_limit_conn_per_10s = 20;
  unsigned rate_limit_messages_per_10s = 200;
  unsigned rate_limit_ip_msgs_per_10s = 400;
  unsigned rate_limit_room_msgs_per_10s = 800;
  // TRUST_PROXY: take the client IP from X-Forwarded-For (behind a load balancer): the entry
  // TRUSTED_PROXY_HOPS from the right, the one our outermost trusted proxy appended.
  bool trust_proxy = false;
  unsigned trusted_proxy_hops = 1;

  // --- circuit breaker (Redis bus) ---
  unsigned cb_error_threshold = 5;
  unsigned cb_open_ms = 10000;

  // --- resumable sessions (resume=1, PROTOCOL.md section 8) ---
  unsigned resume_window_ms =
      20000;  // RESUME_WINDOW_MS: a suspended session's seat is held this long.
  std::size_t resume_buffer_messages =
      256;  // RESUME_BUFFER_MESSAGES: kept for a replay, per session.
  std::size_t resume_buffer_bytes = 1048576;  // RESUME_BUFFER_BYTES: same, in bytes.
  // RESUME_SECRET: the key resume tokens are signed with. Instances that share it accept each
  // other's tokens; empty = a random key per process (tokens valid on this instance only).
  std::string resume_secret;
  // STALE_MEMBER_PROBE_MS: a join that finds the room full pings its members; one that does not
  // answer within this is released as by a failed heartbeat, and the join is tried again. 0 = off.
  unsigned stale_member_probe_ms = 2000;

  // --- ICE servers for clients that opted in (PROTOCOL.md section 9) ---
  // TURN_URLS: stun:, turn: and turns: URLs, checked at load. The welcome (and resumed) of a
  // client with events=1 or resume=1 carries them as iceServers; empty = nothing new is sent.
  std::vector<std::string> turn_urls;
  // TURN_SECRET: coturn's static-auth-secret (use-auth-secret); required with a turn:/turns: URL.
  // TURN_SECRET_FILE names a file holding it instead (read at load, trailing newline dropped).
  std::string turn_secret;
  std::string turn_secret_file;
  // TURN_EXPIRY_SECONDS: credentials are valid this long after they are handed out (the name and
  // default of the deployed matchmaker). coturn checks it when a relay is allocated.
  unsigned turn_expiry_seconds = 14400;

  // --- lifecycle ---
  unsigned drain_timeout_ms = 5000;
  uint16_t shutdown_close_code = 1012;

  // --- logging ---
  LogLevel log_level = LogLevel::kInfo;
  MetricNames metrics_names = MetricNames::kBoth;
  bool pretty_logs = false;

  // --- security ---
  bool require_wss = false;
  // TLS_CERT_FILE + TLS_KEY_FILE (PEM): the server port speaks wss:// and https:// only.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::vector<std::string> allowed_origins;  // empty = all origins.
  std::string subprotocol;                   // empty = none required.
  bool enable_auth = false;
  std::string jwt_alg = "HS256";
  std::string jwt_secret;
  std::string jwt_public_key;
  std::string jwt_public_key_file;
  std::string jwks_url;  // JWKS_URL: keys by kid, when JWT_PUBLIC_KEY(_FILE) is not set.
  unsigned jwks_cache_ttl_ms = 300000;  // JWKS_CACHE_TTL: refetch period of the key set.
  std::string jwt_issuer;
  std::string jwt_audience;
  unsigned jwt_clock_skew_seconds = 30;
  std::string rooms_claim = "rooms";
};

// A TCP port written in decimal, 0-65535, nothing else (URL parsers refuse 0 themselves).
std::optional<uint16_t> parse_port(std::string_view text);

// One option: its variable, its flag, its default as text and what it means (for --help).
struct OptionInfo {
  const char* env;
  const char* flag;
  const char* default_text;
  const char* help;
};
const std::vector<OptionInfo>& option_table();

struct ConfigError {
  std::string variable;  // the variable (or flag) at fault
  std::string message;   // full sentence naming the variable and the bad value
};

// What main() should do after reading argv.
struct LoadResult {
  enum class Action { kRun, kHelp, kVersion } action = Action::kRun;
  Config config;
  // Legal but unwise values, and values past what the server uses (then clamped): logged at
  // start-up, never a reason to refuse it (the replaced server took them).
  std::vector<std::string> warnings;
};

// The settings of `c` that are legal but likely to hurt, each as one sentence naming the
// variable.
std::vector<std::string> unwise_settings(const Config& c);

using Env = std::map<std::string, std::string>;

// Parses the contents of a .env file: KEY=VALUE lines, # comments, optional quotes, `export `.
Env parse_dotenv(const std::string& text);

// Precedence: flags > real environment > .env file > defaults. Secrets are never echoed in errors.
std::variant<LoadResult, ConfigError> load_config(const Env& environment, const Env& dotenv,
                                                  const std::vector<std::string>& args);

// Reads the secrets given as files (TURN_SECRET_FILE) into their fields; an error names the
// variable. load_config() calls it once the values are valid.
std::optional<ConfigError> read_secret_files(Config& c);

std::string help_text();
bool is_secret_variable(const std::string& env_name);

}  // namespace sigsrv
