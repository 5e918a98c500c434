// Test harness: fork/exec of signal-server with captured output, and a small HTTP client.
#include "harness.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
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

  const pid_t pid = fork();
  if (pid == 0) {
    if (chdir(dir.c_str()) != 0) _exit(127);
    const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  return pid;
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

std::string run_cli(uint16_t port, const std::string& password,
                    const std::vector<std::string>& args) {
  std::string cmd = "redis-cli -p " + std::to_string(port) + " --no-auth-warning";
  if (!password.empty()) cmd += " -a '" + password + "'";
  for (const auto& a : args) {
    std::string quoted = "'";
    for (char c : a) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    cmd += " " + quoted + "'";
  }
  cmd += " 2>/dev/null";
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

bool on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (!dir.empty() && access((dir + "/" + name).c_str(), X_OK) == 0) return true;
  }
  return false;
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
  const std::string out = p->output();
  if (!up || !std::regex_search(out, m, listening)) {
    ADD_FAILURE() << "signal-server did not start; output:\n" << out;
    return nullptr;
  }
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

uint16_t free_port() {
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::acceptor a(ioc, {boost::asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

std::unique_ptr<RedisProcess> RedisProcess::start(uint16_t port, const std::string& password,
                                                  const std::vector<std::string>& extra_args) {
  std::unique_ptr<RedisProcess> r(new RedisProcess());
  r->password_ = password;
  r->port_ = port != 0 ? port : free_port();
  r->dir_ = make_scratch_dir();
  const pid_t pid = fork();
  if (pid == 0) {
    if (chdir(r->dir_.c_str()) != 0) _exit(127);
    const int fd = open((r->dir_ + "/redis.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
    std::vector<std::string> args = {
        "redis-server", "--port", std::to_string(r->port_), "--bind", "127.0.0.1",
        "--save",       "",       "--appendonly",           "no"};
    if (!password.empty()) args.insert(args.end(), {"--requirepass", password});
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execvp("redis-server", argv.data());
    _exit(127);
  }
  r->pid_ = pid;
  const bool up = wait_until([&] { return r->cli({"PING"}) == "PONG"; }, 10000ms);
  if (!up) {
    ADD_FAILURE() << "redis-server did not start on port " << r->port_ << ": "
                  << read_file(r->dir_ + "/redis.log");
    return nullptr;
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

std::unique_ptr<SentinelProcess> SentinelProcess::start(uint16_t master_port,
                                                        const std::string& name, unsigned quorum,
                                                        const std::string& password,
                                                        const std::string& master_password) {
  std::unique_ptr<SentinelProcess> s(new SentinelProcess());
  s->password_ = password;
  s->port_ = free_port();
  s->dir_ = make_scratch_dir();
  const std::string conf = s->dir_ + "/sentinel.conf";
  {
    std::ofstream out(conf);
    out << "port " << s->port_ << "\nbind 127.0.0.1\ndir " << s->dir_ << "\n"
        << "sentinel monitor " << name << " 127.0.0.1 " << master_port << " " << quorum << "\n"
        << "sentinel down-after-milliseconds " << name << " 1000\n"
        << "sentinel failover-timeout " << name << " 5000\n";
    if (!password.empty()) out << "requirepass " << password << "\n";
    if (!master_password.empty())
      out << "sentinel auth-pass " << name << " " << master_password << "\n";
  }
  const bool own_binary = on_path("redis-sentinel");
  const pid_t pid = fork();
  if (pid == 0) {
    if (chdir(s->dir_.c_str()) != 0) _exit(127);
    const int fd = open((s->dir_ + "/sentinel.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
    std::vector<std::string> args =
        own_binary ? std::vector<std::string>{"redis-sentinel", conf}
                   : std::vector<std::string>{"redis-server", conf, "--sentinel"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  s->pid_ = pid;
  if (!wait_until([&] { return s->master_port(name) == master_port; }, 10000ms)) {
    ADD_FAILURE() << "redis-sentinel did not start on port " << s->port_ << ": "
                  << read_file(s->dir_ + "/sentinel.log");
    return nullptr;
  }
  return s;
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

}  // namespace testing_support
