// signal-server entry point: configuration, then the server; failures map to exit codes
// (2 = bad configuration, 1 = cannot listen, 0 = drained after SIGTERM/SIGINT).
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

#include "auth/jwks_client.hpp"
#include "auth/jwt.hpp"
#include "bus/memory_bus.hpp"
#include "bus/redis_bus.hpp"
#include "bus/redis_cluster.hpp"
#include "bus/sentinel_client.hpp"
#include "config/config.hpp"
#include "net/loop_owned.hpp"
#include "net/server.hpp"
#include "net/tls_context.hpp"
#include "obs/logger.hpp"
#include "obs/metrics.hpp"
#include "obs/process_stats.hpp"
#include "version.hpp"

extern char** environ;

namespace {

sigsrv::Env read_environment() {
  sigsrv::Env env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv(*e);
    const auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

sigsrv::Env read_dotenv() {
  std::ifstream in(".env");
  if (!in) return {};
  std::stringstream ss;
  ss << in.rdbuf();
  return sigsrv::parse_dotenv(ss.str());
}

std::string random_instance_id() {
  std::random_device rd;
  std::mt19937_64 rng(rd());
  char buf[32];
  std::snprintf(buf, sizeof(buf), "server:%016llx", static_cast<unsigned long long>(rng()));
  return buf;
}

// The verification key for ENABLE_AUTH (null when JWKS_URL provides the keys), or an error
// naming the variable at fault.
std::variant<std::shared_ptr<const sigsrv::JwtKey>, std::string> load_jwt_key(
    const sigsrv::Config& c) {
  std::shared_ptr<const sigsrv::JwtKey> key;
  std::string source;
  if (c.jwt_alg.rfind("HS", 0) == 0) {
    key = sigsrv::JwtKey::from_secret(c.jwt_secret);
    source = "JWT_SECRET";
  } else {
    std::string pem = c.jwt_public_key;
    source = "JWT_PUBLIC_KEY";
    if (pem.empty() && !c.jwt_public_key_file.empty()) {
      source = "JWT_PUBLIC_KEY_FILE";
      std::ifstream in(c.jwt_public_key_file);
      if (!in) return "JWT_PUBLIC_KEY_FILE: cannot read '" + c.jwt_public_key_file + "'";
      std::stringstream ss;
      ss << in.rdbuf();
      pem = ss.str();
    }
    // No PEM: the keys come from JWKS_URL (config validation made sure it is set), fetched
    // after start-up; no key here.
    if (pem.empty()) return std::shared_ptr<const sigsrv::JwtKey>();
    // A PEM in an environment variable often arrives with literal "\n" for its newlines.
    for (std::size_t i = 0; (i = pem.find("\\n", i)) != std::string::npos;) pem.replace(i, 2, "\n");
    auto parsed = sigsrv::JwtKey::from_pem(pem);
    if (auto* err = std::get_if<std::string>(&parsed)) return source + ": " + *err;
    key = std::get<std::shared_ptr<const sigsrv::JwtKey>>(parsed);
  }
  if (!sigsrv::jwt_key_fits(c.jwt_alg, *key)) {
    return source + ": the key does not fit JWT_ALG=" + c.jwt_alg;
  }
  return key;
}

int config_error(const std::string& message) {
  std::cerr << "signal-server: configuration error: " << message << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  const std::vector<std::string> args(argv + 1, argv + argc);
  auto loaded = sigsrv::load_config(read_environment(), read_dotenv(), args);
  if (auto* err = std::get_if<sigsrv::ConfigError>(&loaded)) return config_error(err->message);
  auto& result = std::get<sigsrv::LoadResult>(loaded);
  if (result.action == sigsrv::LoadResult::Action::kHelp) {
    std::cout << sigsrv::help_text();
    return 0;
  }
  if (result.action == sigsrv::LoadResult::Action::kVersion) {
    std::cout << "signal-server " << sigsrv::version() << "\n";
    return 0;
  }
  sigsrv::Config config = std::move(result.config);
  if (config.instance_id.empty()) config.instance_id = random_instance_id();
  std::shared_ptr<const sigsrv::JwtKey> jwt_key;
  if (config.enable_auth) {
    auto key = load_jwt_key(config);
    if (auto* err = std::get_if<std::string>(&key)) return config_error(*err);
    jwt_key = std::get<std::shared_ptr<const sigsrv::JwtKey>>(key);
  }

  // TLS files are read now, so that a bad certificate stops start-up (exit 2) naming the variable
  // instead of failing every client later.
  std::shared_ptr<boost::asio::ssl::context> server_tls;
  if (!config.tls_cert_file.empty()) {
    auto ctx = sigsrv::make_server_tls_context(config);
    if (auto* err = std::get_if<std::string>(&ctx)) return config_error(*err);
    server_tls = std::get<0>(ctx);
  }
  std::optional<sigsrv::RedisEndpoint> redis_endpoint;
  if (!config.redis_url.empty()) {
    redis_endpoint = std::get<sigsrv::RedisEndpoint>(sigsrv::parse_redis_url(config.redis_url));
  } else if (!config.redis_sentinels.empty() || !config.redis_cluster_nodes.empty()) {
    // The data nodes' addresses come from the sentinels or the cluster itself; their credentials
    // from REDIS_USERNAME and REDIS_PASSWORD, TLS from REDIS_TLS.
    redis_endpoint.emplace();
    redis_endpoint->user = config.redis_username;
    redis_endpoint->password = config.redis_password;
    redis_endpoint->tls = config.redis_tls;
  }
  std::shared_ptr<boost::asio::ssl::context> redis_tls;
  if (redis_endpoint && redis_endpoint->tls) {
    auto ctx = sigsrv::make_redis_tls_context(config);
    if (auto* err = std::get_if<std::string>(&ctx)) return config_error(*err);
    redis_tls = std::get<0>(ctx);
  }

  std::optional<sigsrv::SentinelSettings> sentinel;
  if (!config.redis_sentinels.empty()) {
    sentinel = sigsrv::SentinelSettings{
        std::get<std::vector<sigsrv::HostPort>>(sigsrv::parse_host_list(config.redis_sentinels)),
        config.redis_sentinel_master, config.redis_sentinel_password, redis_tls};
  }
  std::vector<sigsrv::HostPort> cluster;
  if (!config.redis_cluster_nodes.empty()) {
    cluster = std::get<std::vector<sigsrv::HostPort>>(
        sigsrv::parse_host_list(config.redis_cluster_nodes));
  }

  sigsrv::Logger log(config.log_level, config.pretty_logs, config.instance_id);
  // /metrics reads the descriptor count this keeps, instead of walking /proc/self/fd on a loop.
  const sigsrv::OpenFdSampler fd_sampler(std::chrono::seconds(1));
  for (const auto& w : result.warnings) log.warn("Configuration taken, but check it", {{"why", w}});
#ifdef SIGNAL_FAULT_INJECTION
  log.warn("Built with fault injection (SIGNAL_FAULT_INJECTION): a test build, never deploy it");
#endif
  if (sentinel) {
    // A master name the sentinels do not know, or a password they refuse, is a configuration
    // error: stop now, naming the variable. Sentinels that do not answer are not (they may be
    // starting too): the bus keeps asking, and readiness says 503 meanwhile.
    const auto answer = sigsrv::ask_sentinels_once(*sentinel, log, std::chrono::milliseconds(1000));
    using Kind = sigsrv::SentinelAnswer::Kind;
    if (answer.kind == Kind::kUnknownMaster) {
      return config_error("REDIS_SENTINEL_MASTER: the sentinels (" + config.redis_sentinels +
                          ") know no master named '" + config.redis_sentinel_master + "'");
    }
    if (answer.kind == Kind::kAuthFailed) {
      return config_error("REDIS_SENTINEL_PASSWORD: the sentinels refused it (" + answer.detail +
                          ")");
    }
    if (answer.kind == Kind::kUnreachable) {
      log.warn("No sentinel answered yet; not ready until one names the master",
               {{"sentinels", config.redis_sentinels}, {"err", answer.detail}});
    }
  }
  if (!cluster.empty()) {
    // Nodes that answer without cluster support, or refuse the password, are a configuration
    // error; nodes that do not answer yet are not.
    const auto probe = sigsrv::probe_cluster_once(cluster, *redis_endpoint, redis_tls,
                                                  std::chrono::milliseconds(1000));
    using Kind = sigsrv::ClusterProbe::Kind;
    if (probe.kind == Kind::kNotCluster) {
      return config_error("REDIS_CLUSTER_NODES: " + probe.node +
                          " answers, but is not a Redis Cluster node (" + probe.detail + ")");
    }
    if (probe.kind == Kind::kAuthFailed) {
      return config_error("REDIS_PASSWORD: " + probe.node + " refused it (" + probe.detail + ")");
    }
    if (probe.kind == Kind::kUnreachable) {
      log.warn("No Redis Cluster node answered yet; not ready until one does",
               {{"nodes", config.redis_cluster_nodes}, {"err", probe.detail}});
    }
  }
  std::unique_ptr<sigsrv::Bus> bus;
  if (!redis_endpoint) {
    bus = std::make_unique<sigsrv::MemoryBus>();
  } else {
    bus = std::make_unique<sigsrv::RedisBus>(config, *redis_endpoint, redis_tls, log, sentinel,
                                             cluster);
  }
  sigsrv::Server server(config, log, *bus);
  const sigsrv::JwtPolicy jwt_policy{config.jwt_alg, config.jwt_issuer, config.jwt_audience,
                                     config.rooms_claim,
                                     std::chrono::seconds(config.jwt_clock_skew_seconds)};
  // Declared after the server so that it goes first: its waiting sessions refer to the server.
  std::unique_ptr<sigsrv::JwksClient> jwks;
  if (jwt_key) {
    server.set_auth(jwt_key, jwt_policy);
  } else if (config.enable_auth) {
    jwks = std::make_unique<sigsrv::JwksClient>(config, log);
    server.set_jwks(&jwks->cache(), jwt_policy);
  }
  server.set_tls(server_tls);
  if (auto err = server.listen()) {
    log.fatal("Cannot start", {{"err", *err}});
    std::cerr << "signal-server: " << *err << "\n";
    return 1;
  }
  if (!cluster.empty()) {
    log.info(
        "Using Redis Cluster bus (sharded pub/sub); not ready until every slot's master "
        "answers",
        {{"bus", "redis-cluster"}, {"nodes", config.redis_cluster_nodes}});
  } else if (sentinel) {
    log.info("Using Redis bus through Sentinel; not ready until the master answers",
             {{"bus", "redis"},
              {"sentinels", config.redis_sentinels},
              {"sentinelMaster", config.redis_sentinel_master}});
  } else if (config.redis_url.empty()) {
    log.info("Using embedded in-process bus: single instance (set REDIS_URL to scale out)",
             {{"bus", "memory"}});
  } else {
    log.info("Using Redis bus; not ready until Redis answers",
             {{"bus", "redis"}, {"redisUrl", sigsrv::redact_url(config.redis_url)}});
  }
  if (!config.turn_urls.empty()) {
    // The URLs only: TURN_SECRET never reaches a log line.
    std::string urls;
    for (const auto& u : config.turn_urls) urls += (urls.empty() ? "" : ",") + u;
    log.info("Handing ICE servers to clients that opt in (events=1, resume=1)",
             {{"turnUrls", urls},
              {"turnCredentials", !config.turn_secret.empty()},
              {"turnExpirySeconds", config.turn_expiry_seconds}});
  }
  bus->start(server);
  // Not waited for: /healthz and /readyz answer meanwhile, and a token that arrives before the
  // first key set waits for it within HANDSHAKE_TIMEOUT_MS.
  if (jwks) jwks->start();
  const auto health = server.health_port();
  log.info("Server listening",
           {{"port", static_cast<unsigned>(server.port())},
            {"healthPort", health ? static_cast<int>(*health) : -1},
            {"host", config.host},
            {"tls", server_tls != nullptr},
            {"threads", config.threads > 0 ? config.threads
                                           : std::max(1u, std::thread::hardware_concurrency())},
            {"nodeEnv", config.node_env},
            {"version", sigsrv::version()}});
  const int code = server.run();
  // Every loop thread has ended: from here sessions released anywhere are freed at once.
  sigsrv::mark_loops_finished();
  jwks.reset();
  // The drain's leaves and departures reach Redis within what is left of DRAIN_TIMEOUT_MS; the
  // bus then goes first. Handlers still queued on its loop (which is also the server's loop 0)
  // go with that loop, inside the server's destruction, so whatever they hold of a session is
  // released while the server that owns the session is alive.
  bus->stop(server.remaining_drain_budget());
  bus.reset();
  log.info("Server stopped", {{"exitCode", code}});
  return code;
}
