// Latency histogram (1 us resolution up to 100 ms, then 1 ms up to 60 s), /proc readings, the
// clock and the open-files limit every mode uses.
#pragma once

#include <sys/resource.h>
#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace bench {

// Nanoseconds on the steady clock: send times travel in messages as this.
inline int64_t now_ns() {
  return std::chrono::steady_clock::now().time_since_epoch().count();
}

// Held and attacking connections are descriptors here as well as in the server.
inline void raise_open_files_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

class LatencyHistogram {
 public:
  static constexpr uint64_t kFineUs = 100000;   // 1 us buckets below 100 ms
  static constexpr uint64_t kCoarseMs = 60000;  // 1 ms buckets up to 60 s

  LatencyHistogram() : fine_(kFineUs, 0), coarse_(kCoarseMs, 0) {}
  void record(uint64_t us) {
    ++count_;
    max_ = std::max(max_, us);
    if (us < kFineUs) {
      ++fine_[us];
    } else {
      ++coarse_[std::min<uint64_t>(us / 1000, kCoarseMs - 1)];
    }
  }
  void merge(const LatencyHistogram& o) {
    for (std::size_t i = 0; i < fine_.size(); ++i) fine_[i] += o.fine_[i];
    for (std::size_t i = 0; i < coarse_.size(); ++i) coarse_[i] += o.coarse_[i];
    count_ += o.count_;
    max_ = std::max(max_, o.max_);
  }
  uint64_t count() const { return count_; }
  uint64_t max() const { return max_; }
  // Value (us) at quantile q in [0, 1].
  uint64_t quantile(double q) const {
    if (count_ == 0) return 0;
    const auto rank = static_cast<uint64_t>(q * static_cast<double>(count_ - 1)) + 1;
    uint64_t seen = 0;
    for (uint64_t i = 0; i < fine_.size(); ++i) {
      seen += fine_[i];
      if (seen >= rank) return i;
    }
    for (uint64_t i = 0; i < coarse_.size(); ++i) {
      seen += coarse_[i];
      if (seen >= rank) return i * 1000;
    }
    return max_;
  }

 private:
  std::vector<uint64_t> fine_;
  std::vector<uint64_t> coarse_;
  uint64_t count_ = 0;
  uint64_t max_ = 0;
};

struct ProcSample {
  double cpu_seconds = 0;
  uint64_t rss_kb = 0;
  bool ok = false;
};

inline ProcSample read_proc(int pid) {
  ProcSample s;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string content((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto close = content.rfind(')');
  if (close == std::string::npos) return s;
  std::istringstream fields(content.substr(close + 2));
  std::string f[13];
  for (auto& x : f) fields >> x;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  s.cpu_seconds = (std::stod(f[11]) + std::stod(f[12])) / ticks;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) s.rss_kb = std::stoull(line.substr(6));
  }
  s.ok = true;
  return s;
}

}  // namespace bench
