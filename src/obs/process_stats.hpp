// process_* figures read from /proc/self (Linux).
#pragma once

namespace sigsrv {

struct ProcessStats {
  double resident_bytes = 0;
  double virtual_bytes = 0;
  double cpu_seconds = 0;
  double open_fds = 0;
  double max_fds = 0;
  double start_time_seconds = 0;
};

ProcessStats read_process_stats();

}  // namespace sigsrv
