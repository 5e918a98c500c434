// Config loading: one table of options, each parsed and range-checked with an error naming it.
#include "config/config.hpp"
#include "config/text.hpp"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "auth/jwks.hpp"
#include "bus/redis_url.hpp"
#include "bus/sentinel.hpp"
#include "signaling/ice_servers.hpp"
#include "version.hpp"

namespace sigsrv {
namespace {

// Sets a field from a variable's value; an error (returned) stops start-up, a warning (appended
// to the list) is logged once the server starts.
using Warnings = std::vector<std::string>;
using Apply = std::function<std::optional<std::string>(Config&, const std::string&, Warnings&)>;
using PlainApply = std::optional<std::string> (*)(Config&, const std::string&);

// An applier that never warns.
Apply plain(PlainApply f) {
  return [f](Config& c, const std::string& v, Warnings&) { return f(c, v); };
}

struct Option {
  OptionInfo info;
  Apply apply;
};

std::optional<uint64_t> to_uint(const std::string& v) {
  uint64_t out = 0;
  const char* end = v.data() + v.size();
  auto [p, ec] = std::from_chars(v.data(), end, out);
  if (ec != std::errc() || p != end || v.empty()) return std::nullopt;
  return out;
}

// Numeric option of at least `lo`. Past `hi` (the largest value the server can use) it is
// `hi`, with a warning: the replaced server took any positive integer, and a value it took must
// not stop this one from starting.
template <class T>
Apply number(T Config::*field, uint64_t lo, uint64_t hi) {
  return [field, lo, hi](Config& c, const std::string& v,
                         Warnings& warnings) -> std::optional<std::string> {
    const bool digits = !v.empty() && std::all_of(v.begin(), v.end(), [](unsigned char ch) {
      return ch >= '0' && ch <= '9';
    });
    if (!digits) return "must be a whole number";
    auto n = to_uint(v);  // null: more than 64 bits of digits
    if (n && *n < lo) return "must be at least " + std::to_string(lo);
    if (!n || *n > hi) {
      warnings.push_back(v + " is more than this server uses; " + std::to_string(hi) + " applies");
      n = hi;
    }
    c.*field = static_cast<T>(*n);
    return std::nullopt;
  };
}

// PORT and WS_PORT (a plain port) or HEALTH_PORT (an optional one).
template <class T>
Apply port_into(T Config::*field) {
  return [field](Config& c, const std::string& v, Warnings&) -> std::optional<std::string> {
    auto n = parse_port(v);
    if (!n) return "must be a port number from 0 to 65535";
    c.*field = *n;
    return std::nullopt;
  };
}

Apply boolean(bool Config::*field) {
  return [field](Config& c, const std::string& v, Warnings&) -> std::optional<std::string> {
    std::string l = v;
    std::transform(l.begin(), l.end(), l.begin(),
                   [](unsigned char ch) { return std::tolower(ch); });
    if (l == "true" || l == "1" || l == "yes" || l == "on") {
      c.*field = true;
    } else if (l == "false" || l == "0" || l == "no" || l == "off") {
      c.*field = false;
    } else {
      return "must be true or false";
    }
    return std::nullopt;
  };
}

Apply text(std::string Config::*field) {
  return [field](Config& c, const std::string& v, Warnings&) -> std::optional<std::string> {
    c.*field = v;
    return std::nullopt;
  };
}

// An option that takes one of a few names, each standing for a value of `field`.
template <class T>
Apply choice(T Config::*field, std::vector<std::pair<std::string, T>> names) {
  std::string error = "must be one of ";
  for (std::size_t i = 0; i < names.size(); ++i) error += (i ? ", " : "") + names[i].first;
  return [field, names = std::move(names), error](Config& c, const std::string& v,
                                                  Warnings&) -> std::optional<std::string> {
    for (const auto& [name, value] : names) {
      if (v == name) {
        c.*field = value;
        return std::nullopt;
      }
    }
    return error;
  };
}

std::optional<std::string> apply_origins(Config& c, const std::string& v) {
  c.allowed_origins.clear();
  std::stringstream ss(v);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item = trim(item);
    if (!item.empty()) c.allowed_origins.push_back(item);
  }
  return std::nullopt;
}

std::optional<std::string> apply_close_code(Config& c, const std::string& v) {
  auto n = to_uint(v);
  // 1004-1006 and 1015 are reserved and may not be sent in a close frame (RFC 6455 7.4.1).
  if (!n || *n < 1000 || *n > 4999 || (*n >= 1004 && *n <= 1006) || *n == 1015) {
    return "must be a sendable WebSocket close code (1000-4999, not 1004-1006 or 1015)";
  }
  c.shutdown_close_code = static_cast<uint16_t>(*n);
  return std::nullopt;
}

std::optional<std::string> apply_redis_url(Config& c, const std::string& v) {
  if (!v.empty() && v.rfind("redis://", 0) != 0 && v.rfind("rediss://", 0) != 0) {
    return "must look like redis://[user:password@]host:port[/db] or rediss://...";
  }
  c.redis_url = v;
  return std::nullopt;
}

std::optional<std::string> apply_sentinels(Config& c, const std::string& v) {
  auto parsed = parse_host_list(v);
  if (auto* why = std::get_if<std::string>(&parsed)) return *why;
  c.redis_sentinels = v;
  return std::nullopt;
}

std::optional<std::string> apply_cluster_nodes(Config& c, const std::string& v) {
  auto parsed = parse_host_list(v);
  if (auto* why = std::get_if<std::string>(&parsed)) return *why;
  c.redis_cluster_nodes = v;
  return std::nullopt;
}

std::optional<std::string> apply_sentinel_master(Config& c, const std::string& v) {
  if (auto why = check_master_name(v); !why.empty()) return why;
  c.redis_sentinel_master = v;
  return std::nullopt;
}

std::optional<std::string> apply_turn_urls(Config& c, const std::string& v) {
  auto parsed = parse_ice_urls(v);
  if (auto* why = std::get_if<std::string>(&parsed)) return *why;
  c.turn_urls.clear();
  for (auto& u : std::get<std::vector<IceUrl>>(parsed)) c.turn_urls.push_back(std::move(u.text));
  return std::nullopt;
}

constexpr uint64_t kMaxU32 = 0xffffffffULL;

// Order matters: WS_PORT before PORT so that PORT, when set, wins.
const std::vector<Option>& options() {
  static const std::vector<Option> kOptions = {
      {{"NODE_ENV", "--node-env", "development", "Environment name (reported in logs)."},
       text(&Config::node_env)},
      {{"HOST", "--host", "0.0.0.0", "Address to listen on."}, text(&Config::host)},
      {{"WS_PORT", "--ws-port", "3002", "WebSocket/HTTP port when PORT is not set."},
       port_into(&Config::port)},
      {{"PORT", "--port", "-",
        "WebSocket/HTTP port (set by hosting platforms); wins over WS_PORT."},
       port_into(&Config::port)},
      {{"HEALTH_PORT", "--health-port", "-",
        "Extra port serving /healthz, /readyz and /metrics; only when set."},
       port_into(&Config::health_port)},
      {{"REDIS_URL", "--redis-url", "-",
        "redis://[user:password@]host:port[/db]; unset = embedded single-instance bus."},
       plain(apply_redis_url)},
      {{"REDIS_TLS_CA_FILE", "--redis-tls-ca-file", "system CAs",
        "rediss:// or REDIS_TLS: PEM CA bundle that signs the Redis servers' certificates."},
       text(&Config::redis_tls_ca_file)},
      {{"REDIS_TLS_CERT_FILE", "--redis-tls-cert-file", "-",
        "rediss:// or REDIS_TLS: client certificate (PEM), for servers that require one."},
       text(&Config::redis_tls_cert_file)},
      {{"REDIS_TLS_KEY_FILE", "--redis-tls-key-file", "-",
        "rediss:// or REDIS_TLS: the client certificate's private key (PEM)."},
       text(&Config::redis_tls_key_file)},
      {{"REDIS_SENTINELS", "--redis-sentinels", "-",
        "Comma-separated host:port of Redis Sentinels; with REDIS_SENTINEL_MASTER the bus finds "
        "the master through them and follows failovers (instead of REDIS_URL)."},
       plain(apply_sentinels)},
      {{"REDIS_CLUSTER_NODES", "--redis-cluster-nodes", "-",
        "Comma-separated host:port of some Redis Cluster nodes; the bus runs on the cluster "
        "(sharded pub/sub, keys tagged by room) instead of REDIS_URL. Node instances cannot join "
        "such a fleet."},
       plain(apply_cluster_nodes)},
      {{"REDIS_SENTINEL_MASTER", "--redis-sentinel-master", "-",
        "REDIS_SENTINELS: the master name the sentinels monitor."},
       plain(apply_sentinel_master)},
      {{"REDIS_SENTINEL_PASSWORD", "--redis-sentinel-password", "-",
        "REDIS_SENTINELS: password the sentinels require (AUTH)."},
       text(&Config::redis_sentinel_password)},
      {{"REDIS_PASSWORD", "--redis-password", "-",
        "REDIS_SENTINELS or REDIS_CLUSTER_NODES: password of the data nodes "
        "(requirepass/masterauth)."},
       text(&Config::redis_password)},
      {{"REDIS_USERNAME", "--redis-username", "-",
        "REDIS_SENTINELS or REDIS_CLUSTER_NODES: ACL user of the data nodes (AUTH user "
        "password, with REDIS_PASSWORD)."},
       text(&Config::redis_username)},
      {{"REDIS_TLS", "--redis-tls", "false",
        "REDIS_SENTINELS or REDIS_CLUSTER_NODES: connect over TLS (to the sentinels and every "
        "data node), verified with the REDIS_TLS_* files."},
       boolean(&Config::redis_tls)},
      {{"INSTANCE_ID", "--instance-id", "random", "This instance's id on the bus and in logs."},
       text(&Config::instance_id)},
      {{"INSTANCE_LEASE_TTL_MS", "--instance-lease-ttl-ms", "15000",
        "Redis bus: how long after an instance dies its members stop holding room slots."},
       number(&Config::instance_lease_ttl_ms, 1000, 3600000)},
      {{"RESUME_WINDOW_MS", "--resume-window-ms", "20000",
        "resume=1 sessions: how long a dropped session's seat and messages are held."},
       number(&Config::resume_window_ms, 1, 3600000)},
      {{"RESUME_BUFFER_MESSAGES", "--resume-buffer-messages", "256",
        "resume=1 sessions: messages kept per session for a replay."},
       number(&Config::resume_buffer_messages, 1, 1000000)},
      {{"RESUME_BUFFER_BYTES", "--resume-buffer-bytes", "1048576",
        "resume=1 sessions: bytes kept per session for a replay."},
       number(&Config::resume_buffer_bytes, 1, 1073741824)},
      {{"STALE_MEMBER_PROBE_MS", "--stale-member-probe-ms", "2000",
        "A join that finds the room full pings its members; silent ones are released after "
        "this (0 = off)."},
       number(&Config::stale_member_probe_ms, 0, 3600000)},
      {{"RESUME_SECRET", "--resume-secret", "random",
        "Key resume tokens are signed with; share it across instances."},
       text(&Config::resume_secret)},
      {{"TURN_URLS", "--turn-urls", "-",
        "Comma-separated stun:, turn: and turns: URLs handed to clients with events=1 or resume=1 "
        "as iceServers (turn: and turns: with credentials from TURN_SECRET)."},
       plain(apply_turn_urls)},
      {{"TURN_SECRET", "--turn-secret", "-",
        "coturn's static-auth-secret: signs the TURN credentials (use-auth-secret)."},
       text(&Config::turn_secret)},
      {{"TURN_SECRET_FILE", "--turn-secret-file", "-",
        "File holding TURN_SECRET (instead of the variable)."},
       text(&Config::turn_secret_file)},
      {{"TURN_EXPIRY_SECONDS", "--turn-expiry-seconds", "14400",
        "TURN credentials are valid this long after they are handed out."},
       number(&Config::turn_expiry_seconds, 1, kMaxU32)},
      {{"THREADS", "--threads", "cores", "Event-loop threads; 0 = one per core."},
       number(&Config::threads, 0, 1024)},
      {{"ROOM_CAPACITY", "--room-capacity", "2", "Max clients per room (all instances)."},
       number(&Config::room_capacity, 1, 1000000)},
      {{"ROOM_TTL_SECONDS", "--room-ttl-seconds", "120",
        "Room expiration after its last member leaves (Redis)."},
       number(&Config::room_ttl_seconds, 1, kMaxU32)},
      {{"ROOM_ID_MAX_LENGTH", "--room-id-max-length", "64", "Maximum room id length."},
       number(&Config::room_id_max_length, 1, 4096)},
      {{"MESSAGE_MAX_BYTES", "--message-max-bytes", "262144",
        "Max message size; a larger one closes the socket with 1009."},
       number(&Config::message_max_bytes, 1, 64ULL << 20)},
      {{"BACKPRESSURE_CLOSE_THRESHOLD_BYTES", "--backpressure-close-threshold-bytes", "5242880",
        "Unsent bytes a recipient may accumulate before it is closed with 1013."},
       number(&Config::backpressure_close_threshold_bytes, 1, 1ULL << 32)},
      {{"HEARTBEAT_INTERVAL_MS", "--heartbeat-interval-ms", "30000",
        "Ping interval; a client silent for a whole interval is terminated."},
       number(&Config::heartbeat_interval_ms, 1, 3600000)},
      {{"HANDSHAKE_TIMEOUT_MS", "--handshake-timeout-ms", "5000",
        "Time allowed for the HTTP request and WebSocket upgrade."},
       number(&Config::handshake_timeout_ms, 1, 600000)},
      {{"MAX_CONNECTIONS", "--max-connections", "0",
        "WebSocket connections per instance; beyond it 1013. 0 = unlimited."},
       number(&Config::max_connections, 0, 100000000)},
      {{"RATE_LIMIT_CONN_PER_10S", "--rate-limit-conn-per-10s", "20",
        "Max new connections per IP per 10 s."},
       number(&Config::rate_limit_conn_per_10s, 1, kMaxU32)},
      {{"RATE_LIMIT_MESSAGES_PER_10S", "--rate-limit-messages-per-10s", "200",
        "Max messages per client per 10 s (token bucket)."},
       number(&Config::rate_limit_messages_per_10s, 1, kMaxU32)},
      {{"RATE_LIMIT_IP_MSGS_PER_10S", "--rate-limit-ip-msgs-per-10s", "400",
        "Max messages per IP per 10 s."},
       number(&Config::rate_limit_ip_msgs_per_10s, 1, kMaxU32)},
      {{"RATE_LIMIT_ROOM_MSGS_PER_10S", "--rate-limit-room-msgs-per-10s", "800",
        "Max messages per room per 10 s."},
       number(&Config::rate_limit_room_msgs_per_10s, 1, kMaxU32)},
      {{"TRUST_PROXY", "--trust-proxy", "false",
        "Take the client IP from X-Forwarded-For (behind a load balancer): the entry the "
        "trusted proxy appended."},
       boolean(&Config::trust_proxy)},
      {{"TRUSTED_PROXY_HOPS", "--trusted-proxy-hops", "1",
        "TRUST_PROXY: trusted proxies in front of the server; the client IP is that many "
        "X-Forwarded-For entries from the right."},
       number(&Config::trusted_proxy_hops, 1, 64)},
      {{"CB_ERROR_THRESHOLD", "--cb-error-threshold", "5",
        "Consecutive Redis failures that open the circuit breaker."},
       number(&Config::cb_error_threshold, 1, kMaxU32)},
      {{"CB_OPEN_MS", "--cb-open-ms", "10000", "How long the circuit breaker stays open."},
       number(&Config::cb_open_ms, 1, kMaxU32)},
      {{"DRAIN_TIMEOUT_MS", "--drain-timeout-ms", "5000",
        "On SIGTERM/SIGINT, exit within this time."},
       number(&Config::drain_timeout_ms, 0, 3600000)},
      {{"SHUTDOWN_CLOSE_CODE", "--shutdown-close-code", "1012",
        "Close code sent to clients when draining."},
       plain(apply_close_code)},
      {{"LOG_LEVEL", "--log-level", "info", "trace, debug, info, warn, error, fatal or silent."},
       choice(&Config::log_level, {{"trace", LogLevel::kTrace},
                                   {"debug", LogLevel::kDebug},
                                   {"info", LogLevel::kInfo},
                                   {"warn", LogLevel::kWarn},
                                   {"error", LogLevel::kError},
                                   {"fatal", LogLevel::kFatal},
                                   {"silent", LogLevel::kSilent}})},
      {{"METRICS_NAMES", "--metrics-names", "both",
        "Names of the spec's metrics on /metrics: cloudgaming (cloudgaming_*), signaling (the "
        "deployed Node server's signaling_*) or both."},
       choice(&Config::metrics_names, {{"both", MetricNames::kBoth},
                                       {"cloudgaming", MetricNames::kCloudgaming},
                                       {"signaling", MetricNames::kSignaling}})},
      {{"PRETTY_LOGS", "--pretty-logs", "false", "One readable line per event instead of JSON."},
       boolean(&Config::pretty_logs)},
      {{"REQUIRE_WSS", "--require-wss", "false",
        "Refuse connections not made over TLS (X-Forwarded-Proto: https or TLS)."},
       boolean(&Config::require_wss)},
      {{"TLS_CERT_FILE", "--tls-cert-file", "-",
        "PEM certificate chain; with TLS_KEY_FILE the port serves wss:// and https:// only."},
       text(&Config::tls_cert_file)},
      {{"TLS_KEY_FILE", "--tls-key-file", "-", "PEM private key of TLS_CERT_FILE."},
       text(&Config::tls_key_file)},
      {{"ALLOWED_ORIGINS", "--allowed-origins", "(all)", "Comma-separated allowed origins."},
       plain(apply_origins)},
      {{"SUBPROTOCOL", "--subprotocol", "-", "WebSocket subprotocol clients must offer."},
       text(&Config::subprotocol)},
      {{"ENABLE_AUTH", "--enable-auth", "false", "Require a JWT (query token or Bearer header)."},
       boolean(&Config::enable_auth)},
      {{"JWT_ALG", "--jwt-alg", "HS256",
        "HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384 or PS256."},
       text(&Config::jwt_alg)},
      {{"JWT_SECRET", "--jwt-secret", "-", "Shared secret for HS* tokens."},
       text(&Config::jwt_secret)},
      {{"JWT_PUBLIC_KEY", "--jwt-public-key", "-", "PEM public key for RS*/ES*/PS* tokens."},
       text(&Config::jwt_public_key)},
      {{"JWT_PUBLIC_KEY_FILE", "--jwt-public-key-file", "-", "File holding the PEM public key."},
       text(&Config::jwt_public_key_file)},
      {{"JWKS_URL", "--jwks-url", "-", "JWKS endpoint for RS*/ES*/PS* keys (no PEM set)."},
       text(&Config::jwks_url)},
      {{"JWKS_CACHE_TTL", "--jwks-cache-ttl", "300000", "Refetch JWKS keys after this (ms)."},
       number(&Config::jwks_cache_ttl_ms, 1000, kMaxU32)},
      {{"JWT_ISSUER", "--jwt-issuer", "-", "Required iss claim."}, text(&Config::jwt_issuer)},
      {{"JWT_AUDIENCE", "--jwt-audience", "-", "Required aud claim."}, text(&Config::jwt_audience)},
      {{"JWT_CLOCK_SKEW_SECONDS", "--jwt-clock-skew-seconds", "30", "Tolerance on exp and nbf."},
       number(&Config::jwt_clock_skew_seconds, 0, 86400)},
      {{"ROOMS_CLAIM", "--rooms-claim", "rooms", "Claim listing the rooms a token may join."},
       text(&Config::rooms_claim)},
  };
  return kOptions;
}

const std::set<std::string> kSecretVariables = {
    "JWT_SECRET",  "REDIS_URL",      "JWT_PUBLIC_KEY",         "RESUME_SECRET",
    "TURN_SECRET", "REDIS_PASSWORD", "REDIS_SENTINEL_PASSWORD"};
// Lists whose errors quote the item at fault themselves rather than the whole value: one item may
// carry a password (user:pass@), and those errors never quote it.
const std::set<std::string> kQuotesItsItem = {"TURN_URLS"};

bool has_turn_url(const Config& c) {
  return std::any_of(c.turn_urls.begin(), c.turn_urls.end(),
                     [](const std::string& u) { return u.rfind("turn", 0) == 0; });
}

// Redis modes: one at a time (REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES), the master
// name with the sentinel list, passwords only where they are used.
std::optional<ConfigError> validate_sentinel(const Config& c) {
  const bool sentinels = !c.redis_sentinels.empty();
  const bool cluster = !c.redis_cluster_nodes.empty();
  if (cluster && (sentinels || !c.redis_url.empty())) {
    return ConfigError{"REDIS_CLUSTER_NODES",
                       std::string("REDIS_CLUSTER_NODES: set together with ") +
                           (sentinels ? "REDIS_SENTINELS" : "REDIS_URL") +
                           "; set one of them (REDIS_URL for one Redis, REDIS_SENTINELS for a "
                           "Sentinel-managed master, REDIS_CLUSTER_NODES for Redis Cluster)"};
  }
  if (sentinels && !c.redis_url.empty()) {
    return ConfigError{
        "REDIS_SENTINELS",
        "REDIS_SENTINELS: set together with REDIS_URL; set one of them (REDIS_URL for "
        "one Redis, REDIS_SENTINELS with REDIS_SENTINEL_MASTER for a Sentinel-managed "
        "master)"};
  }
  if (sentinels && c.redis_sentinel_master.empty()) {
    return ConfigError{"REDIS_SENTINEL_MASTER",
                       "REDIS_SENTINEL_MASTER: required with REDIS_SENTINELS (the name in the "
                       "sentinels' `sentinel monitor` line)"};
  }
  if (cluster || sentinels) {
    // An ACL user is nothing without its password: AUTH would go out as the default user.
    if (!c.redis_username.empty() && c.redis_password.empty()) {
      return ConfigError{"REDIS_PASSWORD",
                         "REDIS_PASSWORD: required with REDIS_USERNAME (the ACL user's password)"};
    }
  }
  if (cluster) {
    if (!c.redis_sentinel_master.empty() || !c.redis_sentinel_password.empty()) {
      const char* var =
          c.redis_sentinel_master.empty() ? "REDIS_SENTINEL_PASSWORD" : "REDIS_SENTINEL_MASTER";
      return ConfigError{var, std::string(var) + ": set, but REDIS_SENTINELS is not"};
    }
    return std::nullopt;
  }
  if (!sentinels) {
    for (const auto& [var, value] :
         {std::pair{"REDIS_SENTINEL_MASTER", &c.redis_sentinel_master},
          std::pair{"REDIS_SENTINEL_PASSWORD", &c.redis_sentinel_password},
          std::pair{"REDIS_PASSWORD", &c.redis_password},
          std::pair{"REDIS_USERNAME", &c.redis_username}}) {
      if (!value->empty()) {
        const std::string_view v(var);
        const bool credential = v == "REDIS_PASSWORD" || v == "REDIS_USERNAME";
        return ConfigError{var, std::string(var) + ": set, but REDIS_SENTINELS is not" +
                                    (credential ? " nor REDIS_CLUSTER_NODES (with REDIS_URL the "
                                                  "credentials go in the URL)"
                                                : "")};
      }
    }
    if (c.redis_tls) {
      return ConfigError{"REDIS_TLS",
                         c.redis_url.empty()
                             ? "REDIS_TLS: set, but neither REDIS_SENTINELS nor "
                               "REDIS_CLUSTER_NODES is"
                             : "REDIS_TLS: not used with REDIS_URL; write rediss:// in REDIS_URL "
                               "for TLS to one Redis"};
    }
  }
  return std::nullopt;
}

std::optional<ConfigError> validate(const Config& c) {
  if (auto err = validate_sentinel(c)) return err;
  if (!c.redis_url.empty()) {
    auto parsed = parse_redis_url(c.redis_url);
    if (auto* err = std::get_if<std::string>(&parsed)) {
      return ConfigError{"REDIS_URL", "REDIS_URL: " + *err};
    }
  }
  const bool rediss =
      !c.redis_url.empty() && std::get<RedisEndpoint>(parse_redis_url(c.redis_url)).tls;
  if (!rediss && !c.redis_tls) {
    // Without TLS these files would be ignored and Redis traffic would go out in clear.
    const bool nodes = !c.redis_sentinels.empty() || !c.redis_cluster_nodes.empty();
    for (const auto& [var, value] : {std::pair{"REDIS_TLS_CA_FILE", &c.redis_tls_ca_file},
                                     std::pair{"REDIS_TLS_CERT_FILE", &c.redis_tls_cert_file},
                                     std::pair{"REDIS_TLS_KEY_FILE", &c.redis_tls_key_file}}) {
      if (!value->empty()) {
        return ConfigError{var,
                           std::string(var) + (nodes ? ": set, but REDIS_TLS is not true"
                                                     : ": set, but REDIS_URL is not rediss://")};
      }
    }
  }
  if (c.redis_tls_cert_file.empty() != c.redis_tls_key_file.empty()) {
    const char* missing =
        c.redis_tls_cert_file.empty() ? "REDIS_TLS_CERT_FILE" : "REDIS_TLS_KEY_FILE";
    return ConfigError{
        missing, std::string(missing) + ": REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together"};
  }
  if (c.tls_cert_file.empty() != c.tls_key_file.empty()) {
    const char* missing = c.tls_cert_file.empty() ? "TLS_CERT_FILE" : "TLS_KEY_FILE";
    return ConfigError{missing,
                       std::string(missing) + ": TLS_CERT_FILE and TLS_KEY_FILE go together"};
  }
  static const std::set<std::string> kAlgs = {"HS256", "HS384", "HS512", "RS256", "RS384",
                                              "RS512", "ES256", "ES384", "PS256"};
  if (!kAlgs.count(c.jwt_alg)) {
    return ConfigError{"JWT_ALG", "JWT_ALG: unsupported algorithm '" + c.jwt_alg +
                                      "' (use HS256, HS384, HS512, RS256, RS384, RS512, ES256, "
                                      "ES384 or PS256)"};
  }
  if (c.enable_auth) {
    const bool hs = c.jwt_alg.rfind("HS", 0) == 0;
    if (hs && c.jwt_secret.empty()) {
      return ConfigError{"JWT_SECRET",
                         "JWT_SECRET: required when ENABLE_AUTH=true and JWT_ALG=" + c.jwt_alg};
    }
    if (!hs && c.jwt_public_key.empty() && c.jwt_public_key_file.empty() && c.jwks_url.empty()) {
      return ConfigError{"JWT_PUBLIC_KEY",
                         "JWT_PUBLIC_KEY, JWT_PUBLIC_KEY_FILE or JWKS_URL: one is required when "
                         "ENABLE_AUTH=true and JWT_ALG=" +
                             c.jwt_alg};
    }
  }
  if (!c.jwks_url.empty()) {
    if (auto err = parse_jwks_url(c.jwks_url); auto* msg = std::get_if<std::string>(&err)) {
      return ConfigError{"JWKS_URL", "JWKS_URL: " + *msg};
    }
  }
  if (!c.turn_secret.empty() && !c.turn_secret_file.empty()) {
    return ConfigError{"TURN_SECRET_FILE",
                       "TURN_SECRET_FILE: set together with TURN_SECRET; set one of them"};
  }
  if (has_turn_url(c) && c.turn_secret.empty() && c.turn_secret_file.empty()) {
    return ConfigError{"TURN_SECRET",
                       "TURN_SECRET: required (or TURN_SECRET_FILE) when TURN_URLS has a turn: or "
                       "turns: URL"};
  }
  if (c.health_port && *c.health_port != 0 && *c.health_port == c.port) {
    return ConfigError{"HEALTH_PORT", "HEALTH_PORT: must differ from the main port (" +
                                          std::to_string(c.port) + ")"};
  }
  return std::nullopt;
}

const Option* find_flag(const std::string& flag) {
  for (const auto& o : options()) {
    if (flag == o.info.flag) return &o;
  }
  return nullptr;
}

}  // namespace

std::vector<std::string> unwise_settings(const Config& c) {
  std::vector<std::string> out;
  const auto n = [](auto v) { return std::to_string(v); };
  if (c.message_max_bytes < 256) {
    out.push_back("MESSAGE_MAX_BYTES=" + n(c.message_max_bytes) +
                  ": smaller than most signaling messages (an ICE candidate is about 200 bytes, an "
                  "SDP several KB); each larger one closes its sender with 1009");
  }
  if (c.backpressure_close_threshold_bytes < c.message_max_bytes) {
    out.push_back("BACKPRESSURE_CLOSE_THRESHOLD_BYTES=" + n(c.backpressure_close_threshold_bytes) +
                  ": below MESSAGE_MAX_BYTES=" + n(c.message_max_bytes) +
                  "; one large message can close its recipient with 1013");
  }
  if (c.heartbeat_interval_ms < 1000) {
    out.push_back("HEARTBEAT_INTERVAL_MS=" + n(c.heartbeat_interval_ms) +
                  ": a client that does not answer a ping within that time is terminated; busy "
                  "or mobile clients need seconds");
  }
  if (c.handshake_timeout_ms < 500) {
    out.push_back("HANDSHAKE_TIMEOUT_MS=" + n(c.handshake_timeout_ms) +
                  ": clients on slow links cannot complete the HTTP request and upgrade in time");
  }
  if ((!c.turn_secret.empty() || !c.turn_secret_file.empty()) && !has_turn_url(c)) {
    out.push_back((c.turn_secret_file.empty() ? std::string("TURN_SECRET=(hidden)")
                                              : "TURN_SECRET_FILE=" + c.turn_secret_file) +
                  ": TURN_URLS has no turn: or turns: URL, so no TURN credentials are handed out");
  }
  // The joiner's two retries come after the probe's deadline + 150 ms and + 500 ms.
  if (c.stale_member_probe_ms > 0 && c.stale_member_probe_ms + 500 >= c.handshake_timeout_ms) {
    out.push_back("STALE_MEMBER_PROBE_MS=" + n(c.stale_member_probe_ms) +
                  ": a join into a full room waits for the probe longer than "
                  "HANDSHAKE_TIMEOUT_MS=" +
                  n(c.handshake_timeout_ms) +
                  " allows, so it times out instead of taking a dead member's seat");
  }
  return out;
}

std::optional<ConfigError> read_secret_files(Config& c) {
  if (c.turn_secret_file.empty()) return std::nullopt;
  std::ifstream in(c.turn_secret_file, std::ios::binary);
  std::stringstream ss;
  if (in) ss << in.rdbuf();
  if (!in || in.bad()) {
    return ConfigError{"TURN_SECRET_FILE",
                       "TURN_SECRET_FILE: cannot read '" + c.turn_secret_file + "'"};
  }
  std::string secret = ss.str();
  // Files written by `echo` or an editor end with a newline that is not part of the secret.
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.empty()) {
    return ConfigError{"TURN_SECRET_FILE", "TURN_SECRET_FILE: '" + c.turn_secret_file +
                                               "' holds no secret (the file is empty)"};
  }
  c.turn_secret = std::move(secret);
  return std::nullopt;
}

std::optional<uint16_t> parse_port(std::string_view text) {
  unsigned value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end || value > 65535) return std::nullopt;
  return static_cast<uint16_t>(value);
}

const std::vector<OptionInfo>& option_table() {
  static const std::vector<OptionInfo> kTable = [] {
    std::vector<OptionInfo> t;
    for (const auto& o : options()) t.push_back(o.info);
    return t;
  }();
  return kTable;
}

bool is_secret_variable(const std::string& env_name) {
  return kSecretVariables.count(env_name) > 0;
}

Env parse_dotenv(const std::string& text) {
  Env out;
  std::stringstream ss(text);
  std::string line;
  while (std::getline(ss, line)) {
    std::string l(trim(line));
    if (l.empty() || l[0] == '#') continue;
    if (l.rfind("export ", 0) == 0) l = trim(std::string_view(l).substr(7));
    const auto eq = l.find('=');
    if (eq == std::string::npos) continue;
    std::string key(trim(std::string_view(l).substr(0, eq)));
    const std::string rest(trim(std::string_view(l).substr(eq + 1)));
    std::string value;
    const char quote = rest.empty() ? '\0' : rest.front();
    const auto close = (quote == '"' || quote == '\'') ? rest.find(quote, 1) : std::string::npos;
    if (close != std::string::npos) {
      // Quoted: everything up to the closing quote; anything after it (a comment) is ignored.
      value = rest.substr(1, close - 1);
      if (quote == '"') {
        // As dotenv: \n in double quotes is a newline (PEM keys on one line).
        for (std::size_t i = 0; (i = value.find("\\n", i)) != std::string::npos; ++i) {
          value.replace(i, 2, "\n");
        }
      }
    } else {
      // Unquoted: the value ends at an inline comment (a '#' at the start or after a space).
      value = (!rest.empty() && rest[0] == '#') ? std::string() : rest;
      if (const auto hash = value.find(" #"); hash != std::string::npos)
        value = value.substr(0, hash);
      value = trim(value);
    }
    if (!key.empty()) out[key] = value;
  }
  return out;
}

std::variant<LoadResult, ConfigError> load_config(const Env& environment, const Env& dotenv,
                                                  const std::vector<std::string>& args) {
  LoadResult result;
  // Merge sources; later ones win.
  Env values = dotenv;
  for (const auto& [k, v] : environment) values[k] = v;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      result.action = LoadResult::Action::kHelp;
      return result;
    }
    if (a == "--version" || a == "-v") {
      result.action = LoadResult::Action::kVersion;
      return result;
    }
    std::string flag = a;
    std::optional<std::string> value;
    if (const auto eq = a.find('='); eq != std::string::npos) {
      flag = a.substr(0, eq);
      value = a.substr(eq + 1);
    }
    const Option* o = find_flag(flag);
    if (o == nullptr) {
      return ConfigError{flag, "unknown option '" + flag + "' (see --help)"};
    }
    if (!value) {
      if (i + 1 >= args.size()) {
        return ConfigError{o->info.env,
                           std::string(o->info.flag) + " (" + o->info.env + "): needs a value"};
      }
      value = args[++i];
    }
    values[o->info.env] = *value;
  }

  for (const auto& o : options()) {
    auto it = values.find(o.info.env);
    if (it == values.end()) continue;
    const std::string v(trim(it->second));
    // An empty value means "not set" (platforms sometimes export PORT=""); for text options the
    // default is what empty would mean anyway.
    if (v.empty()) continue;
    Warnings warnings;
    if (auto err = o.apply(result.config, v, warnings)) {
      const std::string shown = kQuotesItsItem.count(o.info.env) ? ""
                                : is_secret_variable(o.info.env) ? "=(hidden)"
                                                                 : "='" + v + "'";
      return ConfigError{o.info.env, std::string(o.info.env) + shown + ": " + *err};
    }
    for (auto& w : warnings) result.warnings.push_back(std::string(o.info.env) + "=" + w);
  }
  if (auto err = validate(result.config)) return *err;
  if (auto err = read_secret_files(result.config)) return *err;
  for (auto& w : unwise_settings(result.config)) result.warnings.push_back(std::move(w));
  return result;
}

std::string help_text() {
  std::ostringstream out;
  out << "signal-server " << version() << ": WebRTC signaling relay over WebSocket\n\n"
      << "Usage: signal-server [--option value | --option=value ...]\n\n"
      << "Each option can also be set by its environment variable or in a .env file in the\n"
      << "working directory. Precedence: flags, then the environment, then .env, then "
         "defaults.\n\n";
  for (const auto& o : options()) {
    out << "  " << o.info.flag << " VALUE\n      " << o.info.env << " (default "
        << o.info.default_text << "): " << o.info.help << "\n";
  }
  out << "  --help       show this text\n  --version    print the version\n";
  return out.str();
}

}  // namespace sigsrv
