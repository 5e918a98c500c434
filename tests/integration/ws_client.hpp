// A real WebSocket client for the integration tests (Beast), driven with deadlines.
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace testing_support {

using namespace std::chrono_literals;

struct CloseInfo {
  int code = 0;  // 1006 when the connection dropped without a close frame
  std::string reason;
};

struct ConnectOptions {
  std::map<std::string, std::string> headers;  // extra upgrade request headers (Origin, ...)
  std::vector<std::string> subprotocols;       // offered in Sec-WebSocket-Protocol
  int receive_buffer_bytes = 0;                // SO_RCVBUF before connect (slow-reader tests)
};

class WsClient {
 public:
  // Connects to ws://127.0.0.1:port + target; null (with *error set) if the upgrade fails.
  static std::unique_ptr<WsClient> connect(uint16_t port, const std::string& target,
                                           const ConnectOptions& options = {},
                                           std::string* error = nullptr);
  ~WsClient();

  void send(const std::string& text);
  // Several messages written back to back (one write per message, no reads in between).
  void send_all(const std::vector<std::string>& texts);
  // The next message, or nullopt on timeout or close.
  std::optional<std::string> recv(std::chrono::milliseconds timeout = 3000ms);
  // Reads (keeping messages for recv) until `count` more pings have arrived, each answered as it
  // is read; false when the connection ends or the deadline passes first.
  bool wait_pings(int count, std::chrono::milliseconds timeout = 10000ms);
  // Reads (discarding messages) until the server closes; nullopt if still open at the deadline.
  std::optional<CloseInfo> wait_close(std::chrono::milliseconds timeout = 5000ms);
  // Closes from the client side with 1000 and waits for the handshake to finish.
  void close();
  bool is_open() const;
  const std::string& subprotocol() const;

 private:
  struct Impl;
  explicit WsClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Sends a hand-written upgrade request over raw TCP and returns the close frame that follows the
// 101 (for requests a WebSocket library will not produce, such as one without a Host header).
struct RawUpgradeResult {
  int http_status = 0;
  std::optional<CloseInfo> close;
};
RawUpgradeResult raw_upgrade(uint16_t port, const std::string& request,
                             std::chrono::milliseconds timeout = 5000ms);

}  // namespace testing_support
