// A WebSocket client on a plain POSIX socket, for frames no WebSocket library will send: every
// byte of the upgrade and of each frame is built here, frames can be unmasked, carry reserved bits
// or opcodes, or be written one byte per send(). Frames read back are reported exactly as they
// came off the wire.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace testing_support {

class RawWs {
 public:
  using Clock = std::chrono::steady_clock;

  struct Frame {
    bool fin = false;
    uint8_t rsv = 0;  // the three reserved bits, RSV1 as 4
    uint8_t opcode = 0;
    std::string payload;
    // Close frames: the status code (0 when the body is empty) and the reason.
    int close_code() const {
      if (payload.size() < 2) return 0;
      return (static_cast<unsigned char>(payload[0]) << 8) | static_cast<unsigned char>(payload[1]);
    }
  };

  // Opcodes.
  static constexpr uint8_t kCont = 0x0, kText = 0x1, kBinary = 0x2, kClose = 0x8, kPing = 0x9,
                           kPong = 0xA;
  static constexpr uint8_t kFin = 0x80;

  // Connects to 127.0.0.1:port and completes the upgrade for `target`; null when it fails.
  static std::unique_ptr<RawWs> connect(
      uint16_t port, const std::string& target,
      std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    std::unique_ptr<RawWs> c(new RawWs());
    c->fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd_ < 0) return nullptr;
    const int one = 1;
    ::setsockopt(c->fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(c->fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return nullptr;
    const std::string request = "GET " + target +
                                " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                                "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                "Sec-WebSocket-Version: 13\r\n\r\n";
    if (!c->send_all(request)) return nullptr;
    const auto deadline = Clock::now() + timeout;
    std::size_t head_end;
    while ((head_end = c->in_.find("\r\n\r\n")) == std::string::npos) {
      if (!c->read_more(deadline)) return nullptr;
    }
    if (c->in_.rfind("HTTP/1.1 101", 0) != 0) return nullptr;
    c->in_.erase(0, head_end + 4);  // what follows the head is already frames
    return c;
  }

  ~RawWs() { close_socket(); }
  RawWs(const RawWs&) = delete;
  RawWs& operator=(const RawWs&) = delete;

  // One frame's bytes: `first` is FIN | RSV bits | opcode as it goes on the wire; the payload is
  // masked with a fixed key unless `masked` is false.
  static std::string frame(uint8_t first, const std::string& payload, bool masked = true) {
    std::string f(1, static_cast<char>(first));
    const uint8_t mask_bit = masked ? 0x80 : 0x00;
    const std::size_t n = payload.size();
    if (n < 126) {
      f += static_cast<char>(mask_bit | n);
    } else if (n <= 0xFFFF) {
      f += static_cast<char>(mask_bit | 126);
      f += static_cast<char>(n >> 8);
      f += static_cast<char>(n & 0xFF);
    } else {
      f += static_cast<char>(mask_bit | 127);
      for (int shift = 56; shift >= 0; shift -= 8) f += static_cast<char>((n >> shift) & 0xFF);
    }
    if (!masked) return f + payload;
    const char key[4] = {0x37, static_cast<char>(0xfa), 0x21, 0x3d};
    f.append(key, 4);
    for (std::size_t i = 0; i < n; ++i) f += static_cast<char>(payload[i] ^ key[i % 4]);
    return f;
  }
  // A close frame's body: the code (big-endian) and the reason.
  static std::string close_body(int code, const std::string& reason = {}) {
    std::string b;
    b += static_cast<char>((code >> 8) & 0xFF);
    b += static_cast<char>(code & 0xFF);
    return b + reason;
  }

  // Writes `bytes` (whatever the kernel takes per call). False when the connection is gone.
  bool send_all(const std::string& bytes) {
    std::size_t off = 0;
    while (off < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }
  // Writes `bytes` one byte per send() call (with TCP_NODELAY, mostly one segment each).
  bool send_bytewise(const std::string& bytes) {
    for (char c : bytes) {
      if (!send_all(std::string(1, c))) return false;
    }
    return true;
  }
  bool send_frame(uint8_t first, const std::string& payload, bool masked = true) {
    return send_all(frame(first, payload, masked));
  }

  // The next frame, or nullopt on EOF, error or deadline (eof() tells which).
  std::optional<Frame> next(std::chrono::milliseconds timeout = std::chrono::seconds(3)) {
    const auto deadline = Clock::now() + timeout;
    while (true) {
      if (auto f = parse()) return f;
      if (!read_more(deadline)) return std::nullopt;
    }
  }
  // Skips other frames up to a close frame; nullopt when none arrives before EOF or the deadline.
  std::optional<Frame> next_close(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    const auto deadline = Clock::now() + timeout;
    while (auto f = next(std::chrono::duration_cast<std::chrono::milliseconds>(
               std::max(deadline - Clock::now(), Clock::duration::zero())))) {
      if (f->opcode == kClose) return f;
    }
    return std::nullopt;
  }
  // Reads (discarding) until the server ends the TCP connection; false at the deadline.
  bool wait_eof(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    const auto deadline = Clock::now() + timeout;
    while (!eof_) {
      in_.clear();
      if (!read_more(deadline) && !eof_) return false;
    }
    return true;
  }
  bool eof() const { return eof_; }
  void close_socket() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  RawWs() = default;

  // One whole frame off the front of in_, if there is one.
  std::optional<Frame> parse() {
    if (in_.size() < 2) return std::nullopt;
    const auto b = [&](std::size_t i) { return static_cast<unsigned char>(in_[i]); };
    uint64_t len = b(1) & 0x7f;
    std::size_t pos = 2;
    if (len == 126) {
      if (in_.size() < 4) return std::nullopt;
      len = (b(2) << 8) | b(3);
      pos = 4;
    } else if (len == 127) {
      if (in_.size() < 10) return std::nullopt;
      len = 0;
      for (std::size_t i = 2; i < 10; ++i) len = (len << 8) | b(i);
      pos = 10;
    }
    const bool masked = (b(1) & 0x80) != 0;  // a server must not mask; reported as-is otherwise
    const std::size_t key_pos = pos;
    if (masked) pos += 4;
    if (in_.size() < pos + len) return std::nullopt;
    Frame f;
    f.fin = (b(0) & 0x80) != 0;
    f.rsv = (b(0) >> 4) & 0x7;
    f.opcode = b(0) & 0x0f;
    f.payload = in_.substr(pos, len);
    if (masked) {
      for (std::size_t i = 0; i < len; ++i) f.payload[i] ^= in_[key_pos + i % 4];
    }
    in_.erase(0, pos + len);
    return f;
  }

  // Appends what the socket has within the deadline; false on EOF, error or timeout.
  bool read_more(Clock::time_point deadline) {
    if (fd_ < 0 || eof_) return false;
    while (true) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      const int r = ::poll(&p, 1, static_cast<int>(left));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        eof_ = true;  // orderly shutdown or reset: either way the server ended the connection
        return false;
      }
      in_.append(buf, static_cast<std::size_t>(n));
      return true;
    }
  }

  int fd_ = -1;
  std::string in_;
  bool eof_ = false;
};

}  // namespace testing_support
