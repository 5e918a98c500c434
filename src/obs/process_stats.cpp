// Reads /proc/self/stat, /proc/self/fd and /proc/stat's btime for the process_* gauges.
#include "obs/process_stats.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace sigsrv {
namespace {

double boot_time_seconds() {
  std::ifstream in("/proc/stat");
  std::string key;
  double value = 0;
  while (in >> key) {
    if (key == "btime") {
      in >> value;
      return value;
    }
    in.ignore(1 << 20, '\n');
  }
  return 0;
}

double count_open_fds() {
  double n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    n += 1;
  }
  return n;
}

// The running sampler's last count; negative while none runs.
std::atomic<double> g_sampled_fds{-1};

}  // namespace

OpenFdSampler::OpenFdSampler(std::chrono::milliseconds period) {
  g_sampled_fds.store(count_open_fds());
  thread_ = std::thread([this, period] {
    std::unique_lock lock(mu_);
    while (!wake_.wait_for(lock, period, [this] { return stop_; })) {
      lock.unlock();
      g_sampled_fds.store(count_open_fds());
      lock.lock();
    }
  });
}

OpenFdSampler::~OpenFdSampler() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
  g_sampled_fds.store(-1);
}

ProcessStats read_process_stats() {
  ProcessStats s;
  std::ifstream in("/proc/self/stat");
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the parenthesised command name, which may itself contain spaces.
  const auto close = content.rfind(')');
  if (close != std::string::npos) {
    std::istringstream fields(content.substr(close + 2));
    std::string f[23];
    for (auto& x : f) fields >> x;
    // Relative to field 3 (state): utime=14, stime=15, starttime=22, vsize=23, rss=24.
    const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
    try {
      s.cpu_seconds = (std::stod(f[11]) + std::stod(f[12])) / ticks;
      s.start_time_seconds = boot_time_seconds() + std::stod(f[19]) / ticks;
      s.virtual_bytes = std::stod(f[20]);
      s.resident_bytes = std::stod(f[21]) * page;
    } catch (const std::exception&) {
      // A malformed /proc line leaves the figures at zero rather than failing the scrape.
    }
  }
  const double sampled = g_sampled_fds.load();
  s.open_fds = sampled >= 0 ? sampled : count_open_fds();
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) s.max_fds = static_cast<double>(rl.rlim_cur);
  return s;
}

}  // namespace sigsrv
