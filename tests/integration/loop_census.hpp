// Which event loop of a server process holds each of its sockets, read from outside through /proc.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <climits>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace testing_support {

// Which loop holds each socket of `pid`, read from outside: every loop's io_context has an epoll
// instance of its own, and /proc/PID/fdinfo of an epoll descriptor lists the descriptors
// registered with it. A loop is named by its epoll's descriptor.
struct Census {
  std::set<int> loops;
  std::map<int, int> socket_loop;  // socket descriptor -> loop
};

inline Census census(pid_t pid) {
  const std::string proc = "/proc/" + std::to_string(pid);
  std::set<int> sockets;
  Census out;
  for (const auto& entry : std::filesystem::directory_iterator(proc + "/fd")) {
    char target[PATH_MAX];
    const ssize_t n = readlink(entry.path().c_str(), target, sizeof(target) - 1);
    if (n <= 0) continue;
    const std::string link(target, static_cast<std::size_t>(n));
    const int fd = std::stoi(entry.path().filename().string());
    if (link.rfind("socket:", 0) == 0) sockets.insert(fd);
    if (link == "anon_inode:[eventpoll]") out.loops.insert(fd);
  }
  for (int e : out.loops) {
    std::ifstream info(proc + "/fdinfo/" + std::to_string(e));
    std::string line;
    while (std::getline(info, line)) {
      std::istringstream words(line);
      std::string key;
      int fd = -1;
      if (words >> key >> fd && key == "tfd:" && sockets.count(fd)) out.socket_loop[fd] = e;
    }
  }
  return out;
}

// Per loop of `pid`, the sockets registered with it.
inline std::vector<std::size_t> sockets_per_loop(pid_t pid) {
  const Census c = census(pid);
  std::map<int, std::size_t> per_loop;
  for (int loop : c.loops) per_loop[loop] = 0;
  for (const auto& [fd, loop] : c.socket_loop) ++per_loop[loop];
  std::vector<std::size_t> out;
  for (const auto& [loop, count] : per_loop) out.push_back(count);
  return out;
}

// The loop of the one socket in `after` that `before` did not have; -1 unless there is exactly one.
inline int new_socket_loop(const Census& before, const Census& after) {
  int loop = -1, added = 0;
  for (const auto& [fd, l] : after.socket_loop) {
    if (before.socket_loop.count(fd)) continue;
    ++added;
    loop = l;
  }
  return added == 1 ? loop : -1;
}

}  // namespace testing_support
