// process_* figures read from /proc/self (Linux).
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace sigsrv {

struct ProcessStats {
  double resident_bytes = 0;
  double virtual_bytes = 0;
  double cpu_seconds = 0;
  double open_fds = 0;
  double max_fds = 0;
  double start_time_seconds = 0;
};

// The open_fds figure comes from an OpenFdSampler when one runs (at most its period old), else
// from a walk of /proc/self/fd right now.
ProcessStats read_process_stats();

// Counting open descriptors walks /proc/self/fd, which costs in proportion to the connections
// open (milliseconds at tens of thousands). /metrics is served on a session loop, so the walk
// runs on a thread of its own every `period` instead, and a scrape reads its last count. At most
// one sampler at a time.
class OpenFdSampler {
 public:
  explicit OpenFdSampler(std::chrono::milliseconds period);
  ~OpenFdSampler();
  OpenFdSampler(const OpenFdSampler&) = delete;
  OpenFdSampler& operator=(const OpenFdSampler&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace sigsrv
