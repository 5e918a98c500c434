// Test harness: fork/exec of signal-server with captured output, and a small HTTP client.
#include "harness.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string_view>
#include <thread>

namespace testing_support {

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string make_scratch_dir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "signal-test-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

// What a sanitizer prints when it finds a fault in the server (ASan, UBSan, LSan, TSan).
constexpr const char* kSanitizerReports[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                             "WARNING: ThreadSanitizer", "runtime error:"};

// Runs `argv` in `dir` with stdout and stderr to `log_path`: execve with `envp`, or without it
// execvp (found on PATH, with this process' environment).
pid_t fork_exec(char* const* argv, char* const* envp, const std::string& dir,
                const std::string& log_path) {
  const pid_t pid = fork();
  if (pid == 0) {
    if (chdir(dir.c_str()) != 0) _exit(127);
    const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
    if (envp) {
      execve(argv[0], argv, envp);
    } else {
      execvp(argv[0], argv);
    }
    _exit(127);
  }
  return pid;
}

// Starts the binary with a clean environment (PATH, the sanitizers' options when set, and
// `env`), output to `log_path`.
pid_t spawn(const Env& env, const std::vector<std::string>& args, const std::string& dir,
            const std::string& log_path) {
  std::vector<std::string> env_strings;
  for (const char* name :
       {"PATH", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "TSAN_OPTIONS"}) {
    if (const char* v = std::getenv(name)) env_strings.push_back(std::string(name) + "=" + v);
  }
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_strings = {SIGNAL_SERVER_BIN};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  return fork_exec(argv.data(), envp.data(), dir, log_path);
}

// Starts `args` (args[0] found on PATH) in `dir`, stdout and stderr to `log_path`.
pid_t spawn_tool(std::vector<std::string> args, const std::string& dir,
                 const std::string& log_path) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  return fork_exec(argv.data(), nullptr, dir, log_path);
}

std::optional<int> wait_exit(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -1;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(5ms);
  }
}

}  // namespace

namespace {

std::string shell_quote(const std::string& a) {
  std::string quoted = "'";
  for (char c : a) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

// Runs a shell command; its stdout, trailing newlines trimmed.
std::string run_command(const std::string& cmd) {
  std::string out;
  if (FILE* f = popen(cmd.c_str(), "r")) {
    char buf[4096];
    std::size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
    pclose(f);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

std::string run_cli(uint16_t port, const std::string& password,
                    const std::vector<std::string>& args, const std::string& flags = {}) {
  // Bounded: a port held by something that accepts and never answers must not hang the test.
  std::string cmd = "timeout 10 redis-cli -p " + std::to_string(port) + " --no-auth-warning";
  if (!flags.empty()) cmd += " " + flags;
  if (!password.empty()) cmd += " -a " + shell_quote(password);
  for (const auto& a : args) cmd += " " + shell_quote(a);
  return run_command(cmd + " 2>/dev/null");
}

bool on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (!dir.empty() && access((dir + "/" + name).c_str(), X_OK) == 0) return true;
  }
  return false;
}

// free_port() lets a port go before the process started on it binds it: another process of the
// parallel suite can take it in between. Starts that picked the port try again this many times.
constexpr int kPortAttempts = 5;

// Whether `pid` has exited (and is reaped), without waiting.
bool has_exited(pid_t pid) {
  int status = 0;
  return pid > 0 && waitpid(pid, &status, WNOHANG) == pid;
}

// Whether `info` (INFO server of a redis-server or sentinel) is from process `pid`.
bool is_process(const std::string& info, pid_t pid) {
  const std::string field = "process_id:" + std::to_string(pid);
  const auto at = info.find(field);
  return at != std::string::npos &&
         (at + field.size() == info.size() ||
          !std::isdigit(static_cast<unsigned char>(info[at + field.size()])));
}

}  // namespace

Env relaxed_limits(const Env& extra) {
  Env env = {{"RATE_LIMIT_MESSAGES_PER_10S", "10000000"},
             {"RATE_LIMIT_IP_MSGS_PER_10S", "100000000"},
             {"RATE_LIMIT_ROOM_MSGS_PER_10S", "10000000"},
             {"RATE_LIMIT_CONN_PER_10S", "1000000"}};
  for (const auto& [k, v] : extra) env[k] = v;
  return env;
}

bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return cond();
    std::this_thread::sleep_for(5ms);
  }
}

std::unique_ptr<ServerProcess> ServerProcess::start(const Env& env,
                                                    const std::vector<std::string>& args,
                                                    const std::string& dotenv) {
  std::string output;
  auto p = launch(env, args, dotenv, &output);
  if (!p) ADD_FAILURE() << "signal-server did not start; output:\n" << output;
  return p;
}

std::unique_ptr<ServerProcess> ServerProcess::start_on_free_port(const std::string& variable,
                                                                 Env env, uint16_t* port) {
  std::string output;
  for (int attempt = 0; attempt < kPortAttempts; ++attempt) {
    *port = free_port();
    env[variable] = std::to_string(*port);
    auto p = launch(env, {}, {}, &output);
    if (p) return p;
    if (output.find("in use") == std::string::npos) break;
  }
  ADD_FAILURE() << "signal-server did not start with a free " << variable << "; output:\n"
                << output;
  return nullptr;
}

std::unique_ptr<ServerProcess> ServerProcess::launch(const Env& env,
                                                     const std::vector<std::string>& args,
                                                     const std::string& dotenv,
                                                     std::string* output) {
  std::unique_ptr<ServerProcess> p(new ServerProcess());
  p->dir_ = make_scratch_dir();
  p->log_path_ = p->dir_ + "/output.log";
  if (!dotenv.empty()) std::ofstream(p->dir_ + "/.env") << dotenv;
  Env full = env;
  if (!full.count("WS_PORT") && !full.count("PORT")) full["WS_PORT"] = "0";
  // Test clients read (and so answer pings) only while a test waits on them: a stale-member
  // probe would rightly release the idle ones. Off unless the test is about it.
  if (!full.count("STALE_MEMBER_PROBE_MS")) full["STALE_MEMBER_PROBE_MS"] = "0";
  // The sanitizer builds run the suite with a fixed number of loops, so cross-thread paths run
  // whatever the machine's core count.
  if (const char* threads = std::getenv("SIGNAL_TEST_THREADS"); threads && !full.count("THREADS")) {
    full["THREADS"] = threads;
  }
  p->pid_ = spawn(full, args, p->dir_, p->log_path_);
  const std::regex listening(R"re("port":(\d+),"healthPort":(-?\d+))re");
  std::smatch m;
  const bool up = wait_until(
      [&] {
        const std::string out = p->output();
        return std::regex_search(out, m, listening) || !p->running();
      },
      10000ms);
  *output = p->output();
  if (!up || !std::regex_search(*output, m, listening)) return nullptr;
  p->port_ = static_cast<uint16_t>(std::stoi(m[1]));
  if (const int hp = std::stoi(m[2]); hp >= 0) p->health_port_ = static_cast<uint16_t>(hp);
  return p;
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0 && running()) {
    kill(pid_, SIGKILL);
    wait_exit(pid_, 5000ms);
  }
  check_sanitizer_reports();
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

std::string ServerProcess::output() const {
  return read_file(log_path_);
}

void ServerProcess::check_sanitizer_reports() const {
  if (log_path_.empty()) return;
  const std::string out = output();
  for (const char* marker : kSanitizerReports) {
    const auto at = out.find(marker);
    if (at == std::string::npos) continue;
    const auto from = out.rfind('\n', at);
    ADD_FAILURE() << "signal-server reported a fault (" << marker << "):\n"
                  << out.substr(from == std::string::npos ? 0 : from + 1, 8000);
    return;
  }
}

bool ServerProcess::wait_for_output(const std::string& needle,
                                    std::chrono::milliseconds timeout) const {
  return wait_until([&] { return output().find(needle) != std::string::npos; }, timeout);
}

bool ServerProcess::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

int ServerProcess::stop(int sig, std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  kill(pid_, sig);
  auto code = wait_exit(pid_, timeout);
  if (!code) {
    kill(pid_, SIGKILL);
    wait_exit(pid_, 5000ms);
    pid_ = -1;
    return -1;
  }
  pid_ = -1;
  return *code;
}

void ServerProcess::kill_now() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  wait_exit(pid_, 5000ms);
  pid_ = -1;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

uint16_t free_port() {
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::acceptor a(ioc, {boost::asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

std::unique_ptr<RedisProcess> RedisProcess::start(uint16_t port, const std::string& password,
                                                  const std::vector<std::string>& extra_args) {
  return start_with(port, password, [&] { return extra_args; });
}

std::unique_ptr<RedisProcess> RedisProcess::start_with(
    uint16_t port, const std::string& password,
    const std::function<std::vector<std::string>()>& make_args) {
  std::string failure;
  bool exited = true;
  for (int attempt = 0; exited && attempt < (port != 0 ? 1 : kPortAttempts); ++attempt) {
    auto r = launch(port != 0 ? port : free_port(), password, make_args(), &failure, &exited);
    if (r) return r;
  }
  ADD_FAILURE() << failure;
  return nullptr;
}

std::unique_ptr<RedisProcess> RedisProcess::launch(uint16_t port, const std::string& password,
                                                   const std::vector<std::string>& extra_args,
                                                   std::string* failure, bool* exited_at_start) {
  std::unique_ptr<RedisProcess> r(new RedisProcess());
  r->password_ = password;
  r->port_ = port;
  r->dir_ = make_scratch_dir();
  std::vector<std::string> args = {
      "redis-server", "--port", std::to_string(r->port_), "--bind", "127.0.0.1",
      "--save",       "",       "--appendonly",           "no"};
  if (!password.empty()) args.insert(args.end(), {"--requirepass", password});
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  const pid_t pid = spawn_tool(std::move(args), r->dir_, r->dir_ + "/redis.log");
  r->pid_ = pid;
  // Ours, not a server of another test that took the port first: a PONG alone cannot tell.
  bool exited = false;
  const bool up = wait_until(
      [&] {
        exited = has_exited(r->pid_);
        return exited || is_process(r->cli({"INFO", "server"}), pid);
      },
      10000ms);
  if (exited) r->pid_ = -1;
  *exited_at_start = exited;
  if (!up || exited) {
    *failure = "redis-server did not start on port " + std::to_string(r->port_) + ": " +
               read_file(r->dir_ + "/redis.log");
    return nullptr;  // the destructor stops it if it still runs
  }
  return r;
}

RedisProcess::~RedisProcess() {
  kill_now();
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

void RedisProcess::kill_now() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  wait_exit(pid_, 5000ms);
  pid_ = -1;
}

std::string RedisProcess::cli(const std::vector<std::string>& args) const {
  return run_cli(port_, password_, args);
}

std::unique_ptr<SentinelProcess> SentinelProcess::start(
    uint16_t master_port, const std::string& name, unsigned quorum, const std::string& password,
    const std::string& master_password, const std::function<std::vector<std::string>()>& extra_conf,
    const std::string& master_host) {
  std::string failure;
  for (int attempt = 0; attempt < kPortAttempts; ++attempt) {
    std::unique_ptr<SentinelProcess> s(new SentinelProcess());
    s->password_ = password;
    s->port_ = free_port();
    s->dir_ = make_scratch_dir();
    const std::string conf = s->dir_ + "/sentinel.conf";
    {
      std::ofstream out(conf);
      out << "port " << s->port_ << "\nbind 127.0.0.1\ndir " << s->dir_ << "\n";
      // Before the monitor line: without resolve-hostnames a host name there is refused.
      if (master_host.find_first_not_of("0123456789.") != std::string::npos) {
        out << "sentinel resolve-hostnames yes\nsentinel announce-hostnames yes\n";
      }
      out << "sentinel monitor " << name << " " << master_host << " " << master_port << " "
          << quorum << "\n"
          << "sentinel down-after-milliseconds " << name << " 1000\n"
          << "sentinel failover-timeout " << name << " 5000\n";
      if (!password.empty()) out << "requirepass " << password << "\n";
      if (!master_password.empty())
        out << "sentinel auth-pass " << name << " " << master_password << "\n";
      if (extra_conf) {
        for (const auto& line : extra_conf()) out << line << "\n";
      }
    }
    const bool own_binary = on_path("redis-sentinel");
    const pid_t pid =
        spawn_tool(own_binary ? std::vector<std::string>{"redis-sentinel", conf}
                              : std::vector<std::string>{"redis-server", conf, "--sentinel"},
                   s->dir_, s->dir_ + "/sentinel.log");
    s->pid_ = pid;
    bool exited = false;
    const bool up = wait_until(
        [&] {
          exited = has_exited(s->pid_);
          return exited || (is_process(s->cli({"INFO", "server"}), pid) &&
                            s->master_port(name) == master_port);
        },
        10000ms);
    if (exited) s->pid_ = -1;
    if (up && !exited) return s;
    failure = "redis-sentinel did not start on port " + std::to_string(s->port_) + ": " +
              read_file(s->dir_ + "/sentinel.log");
    if (!exited) break;  // it runs but does not name the master: another port would not help
  }
  ADD_FAILURE() << failure;
  return nullptr;
}

bool SentinelProcess::wait_knows_replica(const RedisProcess& replica,
                                         std::chrono::milliseconds timeout) const {
  const bool known = wait_until(
      [&] {
        return master_field("num-slaves") == "1" &&
               replica.cli({"INFO", "replication"}).find("master_link_status:up") !=
                   std::string::npos;
      },
      timeout);
  if (!known)
    ADD_FAILURE() << "the sentinel does not know the replica: "
                  << cli({"SENTINEL", "replicas", "mymaster"});
  return known;
}

SentinelProcess::~SentinelProcess() {
  kill_now();
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

void SentinelProcess::kill_now() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  wait_exit(pid_, 5000ms);
  pid_ = -1;
}

std::string SentinelProcess::cli(const std::vector<std::string>& args) const {
  return run_cli(port_, password_, args);
}

uint16_t SentinelProcess::master_port(const std::string& name) const {
  const std::string out = cli({"SENTINEL", "get-master-addr-by-name", name});
  const auto nl = out.find('\n');
  if (nl == std::string::npos) return 0;
  try {
    return static_cast<uint16_t>(std::stoi(out.substr(nl + 1)));
  } catch (...) {
    return 0;
  }
}

std::string SentinelProcess::master_field(const std::string& field, const std::string& name) const {
  std::istringstream in(cli({"SENTINEL", "master", name}));
  std::string key;
  std::string value;
  while (std::getline(in, key) && std::getline(in, value)) {
    if (key == field) return value;
  }
  return {};
}

namespace {

// One line of CLUSTER NODES: `id ip:port@cport flags master ping pong epoch link slot...`.
struct ClusterNodeLine {
  std::string id;
  uint16_t port = 0;
  std::string flags;
  std::vector<std::pair<int, int>> slots;  // owned ranges; migration entries ("[...]") left out
};

std::vector<ClusterNodeLine> parse_cluster_nodes(const std::string& text) {
  std::vector<ClusterNodeLine> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::vector<std::string> f;
    std::string w;
    while (fields >> w) f.push_back(w);
    if (f.size() < 8) continue;
    ClusterNodeLine n;
    n.id = f[0];
    const auto colon = f[1].rfind(':');
    const auto at = f[1].find('@');
    if (colon == std::string::npos) continue;
    try {
      n.port = static_cast<uint16_t>(std::stoi(f[1].substr(colon + 1, at - colon - 1)));
    } catch (...) {
      continue;
    }
    n.flags = f[2];
    for (std::size_t i = 8; i < f.size(); ++i) {
      if (f[i].empty() || f[i][0] == '[') continue;
      const auto dash = f[i].find('-');
      try {
        if (dash == std::string::npos) {
          const int s = std::stoi(f[i]);
          n.slots.emplace_back(s, s);
        } else {
          n.slots.emplace_back(std::stoi(f[i].substr(0, dash)), std::stoi(f[i].substr(dash + 1)));
        }
      } catch (...) {
      }
    }
    out.push_back(std::move(n));
  }
  return out;
}

bool has_flag(const std::string& flags, const std::string& flag) {
  std::stringstream ss(flags);
  std::string f;
  while (std::getline(ss, f, ',')) {
    if (f == flag) return true;
  }
  return false;
}

}  // namespace

std::unique_ptr<RedisClusterProcess> RedisClusterProcess::start(const Options& options) {
  std::unique_ptr<RedisClusterProcess> c(new RedisClusterProcess());
  c->password_ = options.password;
  constexpr int kNodes = 6;
  std::string addresses;
  for (int i = 0; i < kNodes; ++i) {
    uint16_t tls_port = 0;
    // The bus and TLS ports are picked again with the node's own on each try.
    auto node = RedisProcess::start_with(0, options.password, [&] {
      // An explicit bus port: the default (port + 10000) may be past 65535 or taken.
      std::vector<std::string> args = {
          "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
          "--cluster-node-timeout", "1000", "--cluster-port", std::to_string(free_port()),
          "--cluster-require-full-coverage", options.require_full_coverage ? "yes" : "no",
          // A replica's first sync at once, not after the default 5 s.
          "--repl-diskless-sync-delay", "0"};
      if (!options.password.empty()) args.insert(args.end(), {"--masterauth", options.password});
      if (!options.announce_hostname.empty()) {
        args.insert(args.end(), {"--cluster-announce-hostname", options.announce_hostname,
                                 "--cluster-preferred-endpoint-type", "hostname"});
      }
      if (options.tls) {
        tls_port = free_port();
        args.insert(args.end(), {"--tls-port", std::to_string(tls_port), "--tls-cert-file",
                                 options.tls->cert_file, "--tls-key-file", options.tls->key_file,
                                 "--tls-ca-cert-file", options.tls->ca_file, "--tls-auth-clients",
                                 "no", "--tls-cluster", "yes", "--tls-replication", "yes"});
      }
      return args;
    });
    if (!node) return nullptr;
    if (options.tls) c->tls_ports_.push_back(tls_port);
    c->ports_.push_back(node->port());
    addresses += " 127.0.0.1:" + std::to_string(node->port());
    c->nodes_.push_back(std::move(node));
  }
  std::string cmd = "redis-cli --no-auth-warning";
  if (!options.password.empty()) cmd += " -a " + shell_quote(options.password);
  cmd += " --cluster create" + addresses + " --cluster-replicas 1 --cluster-yes 2>&1";
  const std::string created = run_command(cmd);
  if (created.find("[OK] All 16384 slots covered") == std::string::npos) {
    ADD_FAILURE() << "redis-cli --cluster create failed:\n" << created;
    return nullptr;
  }
  // redis-cli returns once the nodes have met; the masters still say cluster_state:fail until
  // gossip has spread the slot map, and the replicas have not synced yet.
  const bool formed = wait_until(
      [&] {
        if (!c->healthy() || c->masters().size() != 3) return false;
        for (std::size_t i = 0; i < c->size(); ++i) {
          const std::string repl = c->cli(i, {"INFO", "replication"});
          if (repl.find("role:slave") != std::string::npos &&
              repl.find("master_link_status:up") == std::string::npos)
            return false;
        }
        return true;
      },
      20000ms);
  if (!formed) {
    ADD_FAILURE() << "the cluster did not form: " << c->cli(0, {"CLUSTER", "INFO"}) << "\n"
                  << c->cli(0, {"CLUSTER", "NODES"});
    return nullptr;
  }
  return c;
}

RedisClusterProcess::~RedisClusterProcess() = default;  // each RedisProcess kills its own pid

uint16_t RedisClusterProcess::port(std::size_t node) const {
  return ports_.at(node);
}

bool RedisClusterProcess::alive(std::size_t node) const {
  return node < nodes_.size() && nodes_[node] && nodes_[node]->pid() > 0;
}

std::optional<std::size_t> RedisClusterProcess::index_of_port(uint16_t port) const {
  for (std::size_t i = 0; i < ports_.size(); ++i) {
    if (ports_[i] == port) return i;
  }
  return std::nullopt;
}

std::optional<std::size_t> RedisClusterProcess::first_live() const {
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (alive(i)) return i;
  }
  return std::nullopt;
}

std::string RedisClusterProcess::addresses(const std::vector<uint16_t>& ports,
                                           std::size_t count) const {
  std::string out;
  for (std::size_t i = 0; i < ports.size() && count > 0; ++i) {
    if (!alive(i)) continue;
    out += (out.empty() ? "" : ",") + std::string("127.0.0.1:") + std::to_string(ports[i]);
    --count;
  }
  return out;
}

std::string RedisClusterProcess::seeds(std::size_t count) const {
  return addresses(ports_, count);
}

std::string RedisClusterProcess::tls_seeds(std::size_t count) const {
  return addresses(tls_ports_, count);
}

std::string RedisClusterProcess::cli(std::size_t node, const std::vector<std::string>& args) const {
  return run_cli(ports_.at(node), password_, args);
}

std::string RedisClusterProcess::cli_cluster(const std::vector<std::string>& args) const {
  const auto live = first_live();
  if (!live) return {};
  return run_cli(ports_[*live], password_, args, "-c");
}

std::string RedisClusterProcess::owner_cli(const std::string& key,
                                           const std::vector<std::string>& args) const {
  const auto owner = master_of_slot(key_slot(key));
  if (!owner) return "(no master for slot " + std::to_string(key_slot(key)) + ")";
  return cli(*owner, args);
}

std::string RedisClusterProcess::node_id(std::size_t node) const {
  return cli(node, {"CLUSTER", "MYID"});
}

int RedisClusterProcess::slot_of(const std::string& key) const {
  const auto live = first_live();
  if (!live) return -1;
  try {
    return std::stoi(cli(*live, {"CLUSTER", "KEYSLOT", key}));
  } catch (...) {
    return -1;
  }
}

int RedisClusterProcess::key_slot(const std::string& key) {
  std::string_view hashed = key;
  if (const auto open = key.find('{'); open != std::string::npos) {
    const auto close = key.find('}', open + 1);
    if (close != std::string::npos && close > open + 1) {
      hashed = std::string_view(key).substr(open + 1, close - open - 1);
    }
  }
  uint16_t crc = 0;  // CRC16/XMODEM, as the cluster spec gives it
  for (const char ch : hashed) {
    crc ^= static_cast<uint16_t>(static_cast<unsigned char>(ch)) << 8;
    for (int i = 0; i < 8; ++i) {
      crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                           : static_cast<uint16_t>(crc << 1);
    }
  }
  return crc % kSlots;
}

std::vector<uint16_t> RedisClusterProcess::slot_owners(std::size_t node) const {
  std::vector<uint16_t> owners(kSlots, 0);
  for (const auto& n : parse_cluster_nodes(cli(node, {"CLUSTER", "NODES"}))) {
    if (!has_flag(n.flags, "master") || has_flag(n.flags, "fail")) continue;
    for (const auto& [from, to] : n.slots) {
      for (int s = std::max(from, 0); s <= to && s < kSlots; ++s) owners[s] = n.port;
    }
  }
  return owners;
}

std::optional<std::size_t> RedisClusterProcess::master_of_slot(int slot) const {
  const auto live = first_live();
  if (!live || slot < 0 || slot >= kSlots) return std::nullopt;
  const uint16_t owner = slot_owners(*live)[slot];
  if (owner == 0) return std::nullopt;
  return index_of_port(owner);
}

std::vector<std::size_t> RedisClusterProcess::masters() const {
  std::vector<std::size_t> out;
  const auto live = first_live();
  if (!live) return out;
  for (const uint16_t p : slot_owners(*live)) {
    const auto i = index_of_port(p);
    if (i && alive(*i) && std::find(out.begin(), out.end(), *i) == out.end()) out.push_back(*i);
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool RedisClusterProcess::healthy() const {
  std::optional<std::vector<uint16_t>> agreed;
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (!alive(i)) continue;
    if (cli(i, {"CLUSTER", "INFO"}).find("cluster_state:ok") == std::string::npos) return false;
    auto owners = slot_owners(i);
    if (std::find(owners.begin(), owners.end(), 0) != owners.end()) return false;
    if (agreed && *agreed != owners) return false;
    agreed = std::move(owners);
  }
  return agreed.has_value();
}

bool RedisClusterProcess::wait_healthy(std::chrono::milliseconds timeout) const {
  return wait_until([&] { return healthy(); }, timeout);
}

std::vector<std::vector<std::string>> RedisClusterProcess::rooms_per_master(
    const std::string& prefix, std::size_t per_master) const {
  const auto live = first_live();
  std::vector<std::vector<std::string>> out;
  if (!live) return out;
  const auto owners = slot_owners(*live);
  const auto ms = masters();
  out.resize(ms.size());
  for (int n = 0; n < 100000; ++n) {
    const std::string room = prefix + std::to_string(n);
    const auto owner = index_of_port(owners[key_slot("room:{" + room + "}")]);
    for (std::size_t m = 0; m < ms.size(); ++m) {
      if (owner == ms[m] && out[m].size() < per_master) out[m].push_back(room);
    }
    if (std::all_of(out.begin(), out.end(), [&](const auto& v) { return v.size() >= per_master; }))
      break;
  }
  return out;
}

std::string RedisClusterProcess::room_on(std::size_t node, const std::string& prefix) const {
  const auto live = first_live();
  if (!live) return {};
  const auto owners = slot_owners(*live);
  for (int n = 0; n < 100000; ++n) {
    const std::string room = prefix + std::to_string(n);
    if (owners[key_slot("room:{" + room + "}")] == ports_.at(node)) return room;
  }
  return {};
}

void RedisClusterProcess::kill_node(std::size_t node) {
  if (node < nodes_.size() && nodes_[node]) nodes_[node]->kill_now();
}

uint16_t RedisClusterProcess::kill_master_of_slot(int slot) {
  const auto owner = master_of_slot(slot);
  if (!owner) return 0;
  kill_node(*owner);
  return ports_[*owner];
}

uint16_t RedisClusterProcess::wait_promoted(int slot, uint16_t old_port,
                                            std::chrono::milliseconds timeout) {
  uint16_t promoted = 0;
  const bool done = wait_until(
      [&] {
        std::optional<uint16_t> agreed;
        for (std::size_t i = 0; i < nodes_.size(); ++i) {
          if (!alive(i)) continue;
          if (cli(i, {"CLUSTER", "INFO"}).find("cluster_state:ok") == std::string::npos)
            return false;
          const uint16_t owner = slot_owners(i)[slot];
          if (owner == 0 || owner == old_port || (agreed && *agreed != owner)) return false;
          agreed = owner;
        }
        if (!agreed) return false;
        const auto idx = index_of_port(*agreed);
        if (!idx || !alive(*idx) || cli(*idx, {"ROLE"}).rfind("master", 0) != 0) return false;
        promoted = *agreed;
        return true;
      },
      timeout);
  return done ? promoted : 0;
}

bool RedisClusterProcess::begin_migration(int slot, std::size_t to_node) {
  const auto from = master_of_slot(slot);
  if (!from) {
    ADD_FAILURE() << "no master owns slot " << slot;
    return false;
  }
  if (*from == to_node) {
    ADD_FAILURE() << "slot " << slot << " is already on node " << to_node;
    return false;
  }
  const std::string slot_s = std::to_string(slot);
  const std::string importing =
      cli(to_node, {"CLUSTER", "SETSLOT", slot_s, "IMPORTING", node_id(*from)});
  const std::string migrating =
      cli(*from, {"CLUSTER", "SETSLOT", slot_s, "MIGRATING", node_id(to_node)});
  if (importing != "OK" || migrating != "OK") {
    ADD_FAILURE() << "SETSLOT IMPORTING: " << importing << "; SETSLOT MIGRATING: " << migrating;
    return false;
  }
  migrations_[slot] = Migration{*from, to_node};
  return true;
}

int RedisClusterProcess::move_keys(int slot, int max_batches, int batch) {
  const auto it = migrations_.find(slot);
  if (it == migrations_.end()) {
    ADD_FAILURE() << "slot " << slot << " is not being migrated";
    return -1;
  }
  const auto [from, to] = it->second;
  int moved = 0;
  for (int b = 0; max_batches < 0 || b < max_batches; ++b) {
    const std::string listed =
        cli(from, {"CLUSTER", "GETKEYSINSLOT", std::to_string(slot), std::to_string(batch)});
    const std::vector<std::string> keys = lines_of(listed);
    if (keys.empty()) break;
    std::vector<std::string> args = {"MIGRATE", "127.0.0.1", std::to_string(ports_[to]),
                                     "",        "0",         "5000"};
    if (!password_.empty()) args.insert(args.end(), {"AUTH", password_});
    args.push_back("KEYS");
    args.insert(args.end(), keys.begin(), keys.end());
    const std::string r = cli(from, args);
    // NOKEY: every listed key expired or was deleted meanwhile.
    if (r != "OK" && r != "NOKEY") {
      ADD_FAILURE() << "MIGRATE of slot " << slot << " failed: " << r;
      return -1;
    }
    moved += static_cast<int>(keys.size());
  }
  return moved;
}

bool RedisClusterProcess::finish_migration(int slot, std::chrono::milliseconds timeout) {
  const auto it = migrations_.find(slot);
  if (it == migrations_.end()) {
    ADD_FAILURE() << "slot " << slot << " is not being migrated";
    return false;
  }
  const auto [from, to] = it->second;
  if (move_keys(slot) < 0) return false;
  const std::string slot_s = std::to_string(slot);
  const std::string to_id = node_id(to);
  // The target first (it bumps its config epoch, so its claim wins in gossip), then the source
  // (refused while it still holds a key of the slot), then the other masters.
  std::vector<std::size_t> order = {to, from};
  for (const std::size_t m : masters()) {
    if (m != to && m != from) order.push_back(m);
  }
  for (const std::size_t n : order) {
    const std::string r = cli(n, {"CLUSTER", "SETSLOT", slot_s, "NODE", to_id});
    if (r != "OK") {
      ADD_FAILURE() << "SETSLOT " << slot << " NODE on " << ports_[n] << ": " << r;
      return false;
    }
  }
  migrations_.erase(it);
  const bool agreed = wait_until(
      [&] {
        for (std::size_t i = 0; i < nodes_.size(); ++i) {
          if (alive(i) && slot_owners(i)[slot] != ports_[to]) return false;
        }
        return healthy();
      },
      timeout);
  if (!agreed) ADD_FAILURE() << "nodes do not agree slot " << slot << " is on " << ports_[to];
  return agreed;
}

bool RedisClusterProcess::migrate_slot(int slot, std::size_t to_node) {
  return begin_migration(slot, to_node) && finish_migration(slot);
}

RunResult run_server_to_exit(const Env& env, const std::vector<std::string>& args,
                             std::chrono::milliseconds timeout, const std::string& dotenv) {
  RunResult r;
  const std::string dir = make_scratch_dir();
  const std::string log = dir + "/output.log";
  if (!dotenv.empty()) std::ofstream(dir + "/.env") << dotenv;
  const pid_t pid = spawn(env, args, dir, log);
  auto code = wait_exit(pid, timeout);
  if (!code) {
    kill(pid, SIGKILL);
    wait_exit(pid, 5000ms);
  }
  r.exit_code = code.value_or(-1);
  r.output = read_file(log);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return r;
}

HttpResult http_get(uint16_t port, const std::string& target, std::chrono::milliseconds timeout) {
  namespace beast = boost::beast;
  namespace http = beast::http;
  HttpResult result;
  boost::asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.expires_after(timeout);
  const boost::asio::ip::tcp::endpoint ep(boost::asio::ip::make_address("127.0.0.1"), port);
  beast::flat_buffer buffer;
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "127.0.0.1:" + std::to_string(port));
  http::response<http::string_body> res;
  bool done = false;
  stream.async_connect(ep, [&](beast::error_code ec) {
    if (ec) return;
    http::async_write(stream, req, [&](beast::error_code ec2, std::size_t) {
      if (ec2) return;
      http::async_read(stream, buffer, res,
                       [&](beast::error_code ec3, std::size_t) { done = !ec3; });
    });
  });
  ioc.run();
  if (!done) return result;
  result.status = res.result_int();
  result.body = res.body();
  for (const auto& f : res) result.headers[std::string(f.name_string())] = std::string(f.value());
  return result;
}

std::optional<double> metric_value(const std::string& text, const std::string& sample) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(sample + " ", 0) == 0) return std::stod(line.substr(sample.size() + 1));
  }
  return std::nullopt;
}

std::optional<double> scrape(uint16_t port, const std::string& sample) {
  const HttpResult r = http_get(port, "/metrics");
  if (r.status != 200) return std::nullopt;
  return metric_value(r.body, sample);
}

bool ready(const ServerProcess& s) {
  return http_get(s.port(), "/readyz").status == 200;
}

std::unique_ptr<ServerProcess> start_ready(const Env& env) {
  auto s = ServerProcess::start(env);
  if (s) {
    EXPECT_TRUE(wait_until([&] { return ready(*s); }, 10000ms)) << s->output();
  }
  return s;
}

std::unique_ptr<WsClient> join(uint16_t port, const std::string& room,
                               const std::string& extra_query, const ConnectOptions& options) {
  std::string err;
  auto c = WsClient::connect(port, "/?roomId=" + room + extra_query, options, &err);
  EXPECT_TRUE(c) << err;
  return c;
}

}  // namespace testing_support
