// Network fixtures of the client tests: a TCP proxy that can stop forwarding, and a WebSocket
// server that sends whatever the test scripts (bad input included). Each runs its own thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace client_tests {

// 127.0.0.1:port() -> 127.0.0.1:upstream.
class CutProxy {
 public:
  explicit CutProxy(uint16_t upstream);
  ~CutProxy();
  uint16_t port() const;
  // Every open connection stops forwarding, both ways, its sockets left open (a silent network
  // drop: nobody sees an end). New connections forward as usual.
  void black_hole();
  // Every open connection is torn down at once, both sides (no close frame, an end of stream).
  void cut();
  // New connections are accepted and closed at once (true) or forwarded (false).
  void refuse(bool on);
  // New connections go to this port.
  void retarget(uint16_t upstream);
  int accepted() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// A WebSocket server on 127.0.0.1 that, to each connection, sends `frames` (text) in order and
// then reads until the client closes.
class ScriptedServer {
 public:
  explicit ScriptedServer(std::vector<std::string> frames);
  ~ScriptedServer();
  uint16_t port() const;
  int accepted() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace client_tests
