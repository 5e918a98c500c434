// Integration-test harness: runs the real signal-server binary and talks HTTP to it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ws_client.hpp"

namespace testing_support {

using namespace std::chrono_literals;
using Env = std::map<std::string, std::string>;

// Rate limits far above what a test sends (unless the limit is the subject), plus `extra`.
Env relaxed_limits(const Env& extra = {});

// Polls `cond` until it is true or the deadline passes; returns the last result.
bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout = 5000ms);

// A signal-server process on free ports (WS_PORT=0) in its own scratch directory; killed on
// destruction if still running.
class ServerProcess {
 public:
  // Starts the binary with `env` (plus PATH, WS_PORT=0 and STALE_MEMBER_PROBE_MS=0 unless given)
  // and waits for its "Server listening" line. Fails the current test (and returns null) if it does
  // not start.
  static std::unique_ptr<ServerProcess> start(const Env& env = {},
                                              const std::vector<std::string>& args = {},
                                              const std::string& dotenv = {});
  // start() with `variable` (HEALTH_PORT, say) set to a free port, for a test about an explicit
  // port number: another process of the parallel suite can take the port between free_port()
  // and the server's bind, so a server that exits with the address in use is started again on
  // another port (up to 5 tries). `*port`: the port it was given.
  static std::unique_ptr<ServerProcess> start_on_free_port(const std::string& variable, Env env,
                                                           uint16_t* port);
  ~ServerProcess();

  uint16_t port() const { return port_; }
  std::optional<uint16_t> health_port() const { return health_port_; }
  pid_t pid() const { return pid_; }
  // SIGKILL without waiting for a drain (an instance crash).
  void kill_now();
  // Everything the process printed so far (stdout and stderr).
  std::string output() const;
  bool wait_for_output(const std::string& needle, std::chrono::milliseconds timeout = 5000ms) const;
  // Sends `sig` and waits for exit; returns the exit code, or -1 on timeout (then SIGKILLs).
  int stop(int sig, std::chrono::milliseconds timeout = 10000ms);
  bool running();

 private:
  ServerProcess() = default;
  // One start; null with `*output` (what the process printed) when it did not come up.
  static std::unique_ptr<ServerProcess> launch(const Env& env, const std::vector<std::string>& args,
                                               const std::string& dotenv, std::string* output);
  // Fails the current test if a sanitizer build of the server printed a report.
  void check_sanitizer_reports() const;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::optional<uint16_t> health_port_;
  std::string dir_;
  std::string log_path_;
};

// The non-empty lines of `text` (redis-cli's answer, a line per element; a process' output).
std::vector<std::string> lines_of(const std::string& text);

// A free TCP port on 127.0.0.1 (bound to port 0, then released).
uint16_t free_port();

// A real redis-server on a free port, without persistence; killed on destruction.
class RedisProcess {
 public:
  // Null (and a test failure) when redis-server cannot be started.
  // `password` set: requirepass (cli() then authenticates). `extra_args` go to redis-server as
  // given (e.g. --tls-port ...); cli() keeps using the plain port.
  // `port` 0: a free port, tried again with another one (up to 5 tries) when the process exits
  // at start (the port taken by another test between free_port() and the bind; then another
  // process may answer there, so the answer must come from this process id). A port given is
  // tried once (a restart on the same port).
  static std::unique_ptr<RedisProcess> start(uint16_t port = 0, const std::string& password = {},
                                             const std::vector<std::string>& extra_args = {});
  // start() with the extra arguments made again for each try: a port of their own (--tls-port,
  // --cluster-port) is then picked again with the main one.
  static std::unique_ptr<RedisProcess> start_with(
      uint16_t port, const std::string& password,
      const std::function<std::vector<std::string>()>& make_args);
  ~RedisProcess();
  uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }  // for SIGSTOP/SIGCONT (a hung Redis)
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  // Runs redis-cli against this server and returns its stdout (trailing newline trimmed).
  std::string cli(const std::vector<std::string>& args) const;
  // SIGKILL (a crash); start() again on the same port to bring it back empty.
  void kill_now();

 private:
  RedisProcess() = default;
  // One start on `port`; null with `*failure` set when this process does not answer there, and
  // `*exited_at_start` when that is because it exited (the port was taken, say).
  static std::unique_ptr<RedisProcess> launch(uint16_t port, const std::string& password,
                                              const std::vector<std::string>& extra_args,
                                              std::string* failure, bool* exited_at_start);
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::string dir_;
  std::string password_;
};

// A real Redis Sentinel (`redis-sentinel`, or `redis-server --sentinel`) on a free port, with its
// config file in its own scratch directory, monitoring 127.0.0.1:`master_port` as `name`
// (down-after-milliseconds 1000, failover-timeout 5000: a failover within a few seconds). Killed by
// pid on destruction.
class SentinelProcess {
 public:
  // Null (and a test failure) when it does not start and name the master within 10 s. Its port
  // is tried again (up to 5 tries) when the process exits at start (the port taken meanwhile).
  // `password`: requirepass for the sentinel itself; `master_password`: auth-pass to the data
  // nodes; `extra_conf`: more lines of its config file, made again for each try (so a tls-port
  // in them is picked again with the main one). `master_host`: how the master is named in the
  // monitor line; a host name turns on resolve-hostnames and announce-hostnames, so the sentinel
  // names the nodes by host name too.
  static std::unique_ptr<SentinelProcess> start(
      uint16_t master_port, const std::string& name = "mymaster", unsigned quorum = 2,
      const std::string& password = {}, const std::string& master_password = {},
      const std::function<std::vector<std::string>()>& extra_conf = {},
      const std::string& master_host = "127.0.0.1");
  ~SentinelProcess();
  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string cli(const std::vector<std::string>& args) const;
  // The port of the master it names now (0 when none).
  uint16_t master_port(const std::string& name = "mymaster") const;
  // A field of `SENTINEL master NAME` (num-slaves, num-other-sentinels, flags, ...).
  std::string master_field(const std::string& field, const std::string& name = "mymaster") const;
  // Waits until it lists `replica` (its only one) for "mymaster" and the replica's link to the
  // master is up: from then on it can fail over. False (with the sentinel's view) at timeout.
  bool wait_knows_replica(const RedisProcess& replica,
                          std::chrono::milliseconds timeout = 15000ms) const;
  void kill_now();

 private:
  SentinelProcess() = default;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::string dir_;
  std::string password_;
};

// A real Redis Cluster of 6 redis-server processes (3 masters, 3 replicas, created with
// `redis-cli --cluster create --cluster-replicas 1`), each on a free port with its own scratch
// directory (so its nodes.conf) and an explicit cluster bus port; cluster-node-timeout 1000, so a
// killed master's replica is promoted within a few seconds. Every process stopped by pid on
// destruction. Nodes are named by index (0..5); masters at start are the first three.
class RedisClusterProcess {
 public:
  struct Options {
    std::string password;               // requirepass and masterauth on every node
    bool require_full_coverage = true;  // cluster-require-full-coverage (Redis default yes)
    // Set: every node also serves TLS on a port of its own (tls-cluster and tls-replication too,
    // so nodes answer CLUSTER SLOTS over TLS with their TLS ports); cli() stays on plain ports.
    struct Tls {
      std::string cert_file, key_file, ca_file;
    };
    std::optional<Tls> tls;
    // Set: every node announces this name (cluster-announce-hostname) and names itself by it in
    // CLUSTER SLOTS and in MOVED/ASK (cluster-preferred-endpoint-type hostname), as managed
    // clusters do; the nodes still meet each other by address.
    std::string announce_hostname;
  };
  static constexpr int kSlots = 16384;
  // Null (and a test failure) when the cluster does not form (cluster_state:ok on every node, one
  // slot map, every replica's link up) within 20 s.
  static std::unique_ptr<RedisClusterProcess> start(const Options& options);
  static std::unique_ptr<RedisClusterProcess> start() { return start(Options{}); }
  ~RedisClusterProcess();

  std::size_t size() const { return nodes_.size(); }
  uint16_t port(std::size_t node) const;
  bool alive(std::size_t node) const;
  std::optional<std::size_t> index_of_port(uint16_t port) const;
  // "127.0.0.1:p1,127.0.0.1:p2,...": the first `count` live nodes (REDIS_CLUSTER_NODES).
  std::string seeds(std::size_t count = 2) const;
  // The same with the nodes' TLS ports (Options::tls).
  std::string tls_seeds(std::size_t count = 2) const;
  // redis-cli against one node (no redirection followed); stdout, errors included ("MOVED ...").
  std::string cli(std::size_t node, const std::vector<std::string>& args) const;
  // redis-cli -c (follows MOVED/ASK) starting at a live node.
  std::string cli_cluster(const std::vector<std::string>& args) const;
  // redis-cli against the master that owns `key`'s slot now, without redirection: what the
  // owner itself holds.
  std::string owner_cli(const std::string& key, const std::vector<std::string>& args) const;
  std::string node_id(std::size_t node) const;  // CLUSTER MYID

  // The slot of `key` as the cluster computes it (CLUSTER KEYSLOT).
  int slot_of(const std::string& key) const;
  // The same, computed here (CRC16/XMODEM of the hash tag, mod 16384).
  static int key_slot(const std::string& key);
  // The master owning `slot` as the first live node sees it; nullopt when none (or it is failed).
  std::optional<std::size_t> master_of_slot(int slot) const;
  // Indexes of the live masters that own slots, as the first live node sees it.
  std::vector<std::size_t> masters() const;
  // Every live node says cluster_state:ok and all live nodes agree on one slot map that covers
  // every slot with a non-failed master.
  bool healthy() const;
  bool wait_healthy(std::chrono::milliseconds timeout = 10000ms) const;

  // Room ids ("prefix0", "prefix7", ...) whose `room:{R}` slots land on each master: for each
  // live master (in masters() order) `per_master` rooms, grouped by master.
  std::vector<std::vector<std::string>> rooms_per_master(const std::string& prefix,
                                                         std::size_t per_master) const;
  // The first room "prefixN" whose slot the master `node` owns.
  std::string room_on(std::size_t node, const std::string& prefix) const;

  // SIGKILL of the master owning `slot`; returns its port (0 when there is none).
  uint16_t kill_master_of_slot(int slot);
  void kill_node(std::size_t node);
  // Waits until every live node names one master for `slot` other than `old_port`, which says
  // ROLE master, and every live node says cluster_state:ok; that master's port, or 0 at timeout.
  uint16_t wait_promoted(int slot, uint16_t old_port, std::chrono::milliseconds timeout);

  // Slot migration as documented (cluster spec, "Live reconfiguration"), in steps so a test can
  // send traffic in between: begin (IMPORTING on the target, MIGRATING on the source), move keys
  // (GETKEYSINSLOT + MIGRATE ... KEYS, at most `max_batches` batches of `batch` keys; returns how
  // many keys moved, -1 on an error), finish (every remaining key moved, then SETSLOT NODE on the
  // target, the source and the other masters, and all live nodes agree). Failures are test
  // failures and return false.
  bool begin_migration(int slot, std::size_t to_node);
  int move_keys(int slot, int max_batches = -1, int batch = 100);
  bool finish_migration(int slot, std::chrono::milliseconds timeout = 10000ms);
  bool migrate_slot(int slot, std::size_t to_node);

 private:
  RedisClusterProcess() = default;
  std::optional<std::size_t> first_live() const;
  // "127.0.0.1:p,..." of the first `count` live nodes, from `ports` (ports_ or tls_ports_).
  std::string addresses(const std::vector<uint16_t>& ports, std::size_t count) const;
  // Owner port per slot as `node` sees it (0: none or a failed master).
  std::vector<uint16_t> slot_owners(std::size_t node) const;
  std::vector<std::unique_ptr<RedisProcess>> nodes_;
  std::vector<uint16_t> ports_;      // kept after a node is killed
  std::vector<uint16_t> tls_ports_;  // Options::tls only
  std::string password_;
  struct Migration {
    std::size_t from;
    std::size_t to;
  };
  std::map<int, Migration> migrations_;
};

// Runs the binary to completion (config errors, --help); returns exit code and output.
struct RunResult {
  int exit_code = -1;
  std::string output;
};
RunResult run_server_to_exit(const Env& env, const std::vector<std::string>& args,
                             std::chrono::milliseconds timeout = 10000ms,
                             const std::string& dotenv = {});

struct HttpResult {
  unsigned status = 0;
  std::string body;
  std::map<std::string, std::string> headers;
};
// One HTTP/1.1 GET over a fresh connection; status 0 when it could not connect or timed out.
HttpResult http_get(uint16_t port, const std::string& target,
                    std::chrono::milliseconds timeout = 5000ms);

// A metric's value from a /metrics text (the first sample whose name+labels match exactly).
std::optional<double> metric_value(const std::string& metrics_text, const std::string& sample);
std::optional<double> scrape(uint16_t port, const std::string& sample);

// /readyz answers 200.
bool ready(const ServerProcess& s);
// ServerProcess::start, and a test failure (with its output) unless it is ready within 10 s.
std::unique_ptr<ServerProcess> start_ready(const Env& env);
// A client in `room` ("/?roomId=" + room + extra_query, "&events=1" say), or null and a test
// failure naming why. The server sends its 101 after the join ran, so the seat is taken (in
// Redis too) once this returns.
std::unique_ptr<WsClient> join(uint16_t port, const std::string& room,
                               const std::string& extra_query = {},
                               const ConnectOptions& options = {});

}  // namespace testing_support
