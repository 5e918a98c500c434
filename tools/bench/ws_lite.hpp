// A minimal WebSocket client for load generation: just enough RFC 6455 (masked text frames out,
// unmasked frames in, pings answered) to drive thousands of connections per core.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bench {

struct Url {
  std::string host;
  uint16_t port = 0;
  std::string target;  // path + query
};
// ws://host:port/path?query; nullopt when it is not one.
std::optional<Url> parse_ws_url(const std::string& url);

// Where the bench's connections go: the server's address, the Host header, and the request
// target up to where the room id is appended.
struct Target {
  boost::asio::ip::tcp::endpoint endpoint;
  std::string host_header;
  std::string target_prefix;  // path?query up to where roomId is appended
};
// Parses and resolves a ws:// URL; nullopt with *error set when it is not one or does not resolve.
std::optional<Target> resolve_target(const std::string& url, std::string* error);
// "127.0.0.2-127.0.0.9" (or one address) as a list of addresses; empty for "".
std::vector<std::string> expand_ips(const std::string& range);
// `s` with quotes and backslashes escaped and control characters dropped, for a JSON string.
std::string json_escape(const std::string& s);

// Appends one masked text frame carrying `payload`.
void append_text_frame(std::string& out, std::string_view payload, uint32_t mask_key);

class WsLite {
 public:
  struct Handler {
    virtual ~Handler() = default;
    virtual void on_open(WsLite& c) = 0;
    virtual void on_message(WsLite& c, std::string_view text) = 0;
    // code is the close frame's code, or 1006 when the connection dropped without one.
    virtual void on_closed(WsLite& c, int code, std::string_view reason) = 0;
  };

  WsLite(boost::asio::io_context& ioc, Handler& handler);
  // Connects (optionally from `source_ip`) and upgrades `target` on host:port.
  void start(const boost::asio::ip::tcp::endpoint& server, const std::string& host_header,
             const std::string& target, const std::string& source_ip = {});
  // Queues a text message; consecutive sends go out in one write.
  void send(std::string_view text);
  void close();
  bool open() const { return state_ == State::kOpen; }
  std::size_t unsent_bytes() const { return out_.size() + writing_.size(); }
  // The connection's own (client) port; 0 when it has none.
  unsigned short local_port() const {
    boost::system::error_code ec;
    const auto ep = socket_.local_endpoint(ec);
    return ec ? 0 : ep.port();
  }
  uint64_t user = 0;  // owner's tag (room index, role)

 private:
  enum class State { kConnecting, kUpgrading, kOpen, kClosed };
  void read();
  void flush();
  void on_bytes();
  void fail(int code, std::string_view reason);

  boost::asio::ip::tcp::socket socket_;
  Handler& handler_;
  State state_ = State::kConnecting;
  std::string out_;
  std::string writing_;
  bool write_in_flight_ = false;
  std::vector<char> in_;
  std::size_t in_len_ = 0;
  std::string fragments_;
  uint32_t mask_key_;
};

}  // namespace bench
