// Test WebSocket client: one io_context per client, run only while a call waits (run_for),
// so a client that is not being read from really stops reading its socket.
#include "ws_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>

namespace testing_support {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

struct WsClient::Impl {
  boost::asio::io_context ioc;
  websocket::stream<tcp::socket> ws{ioc};
  beast::flat_buffer buffer;
  std::deque<std::string> inbox;
  bool reading = false;
  bool open = true;
  long pings = 0;  // pings read (Beast answers each one while reading)
  std::optional<CloseInfo> closed;
  std::string subprotocol;

  void arm_read() {
    if (reading || !open) return;
    reading = true;
    ws.async_read(buffer, [this](beast::error_code ec, std::size_t) {
      reading = false;
      if (ec) {
        open = false;
        CloseInfo info;
        // A close frame may have arrived even when the TCP side then failed: report its code.
        if (ec == websocket::error::closed || ws.reason().code != websocket::close_code::none) {
          info.code = ws.reason().code;
          info.reason = std::string(ws.reason().reason.c_str());
        } else {
          info.code = 1006;
          info.reason = ec.message();
        }
        closed = info;
        return;
      }
      inbox.push_back(beast::buffers_to_string(buffer.data()));
      buffer.consume(buffer.size());
      arm_read();
    });
  }

  // Runs the loop until `cond` or the deadline.
  template <class Cond>
  bool run_until(Cond cond, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!cond()) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) return false;
      if (ioc.stopped()) ioc.restart();
      ioc.run_one_for(deadline - now);
    }
    return true;
  }
};

WsClient::WsClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

WsClient::~WsClient() {
  beast::error_code ec;
  beast::get_lowest_layer(impl_->ws).close(ec);
}

std::unique_ptr<WsClient> WsClient::connect(uint16_t port, const std::string& target,
                                            const ConnectOptions& options, std::string* error) {
  auto impl = std::make_unique<Impl>();
  auto& sock = beast::get_lowest_layer(impl->ws);
  beast::error_code ec;
  sock.open(tcp::v4(), ec);
  if (options.receive_buffer_bytes > 0) {
    sock.set_option(boost::asio::socket_base::receive_buffer_size(options.receive_buffer_bytes),
                    ec);
  }
  bool connected = false, done = false;
  std::string failure;
  sock.async_connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port),
                     [&](beast::error_code e) {
                       if (e) {
                         failure = "connect: " + e.message();
                         done = true;
                         return;
                       }
                       connected = true;
                     });
  impl->run_until([&] { return connected || done; }, 5000ms);
  sock.set_option(tcp::no_delay(true), ec);
  if (!connected) {
    if (error) *error = failure.empty() ? "connect timeout" : failure;
    return nullptr;
  }
  std::string offered;
  for (const auto& p : options.subprotocols) offered += (offered.empty() ? "" : ", ") + p;
  impl->ws.set_option(
      websocket::stream_base::decorator([options, offered](websocket::request_type& req) {
        for (const auto& [k, v] : options.headers) req.set(k, v);
        if (!offered.empty()) req.set(http::field::sec_websocket_protocol, offered);
      }));
  websocket::response_type res;
  impl->ws.async_handshake(res, "127.0.0.1:" + std::to_string(port), target,
                           [&](beast::error_code e) {
                             done = true;
                             if (e) failure = "handshake: " + e.message();
                           });
  done = false;
  impl->run_until([&] { return done; }, 5000ms);
  if (!done || !failure.empty()) {
    if (error) *error = failure.empty() ? "handshake timeout" : failure;
    return nullptr;
  }
  impl->subprotocol = std::string(res[http::field::sec_websocket_protocol]);
  impl->ws.control_callback([raw = impl.get()](websocket::frame_type kind, beast::string_view) {
    if (kind == websocket::frame_type::ping) ++raw->pings;
  });
  return std::unique_ptr<WsClient>(new WsClient(std::move(impl)));
}

void WsClient::send(const std::string& text) {
  send_all({text});
}

void WsClient::send_all(const std::vector<std::string>& texts) {
  for (const auto& t : texts) {
    beast::error_code ec;
    impl_->ws.text(true);
    impl_->ws.write(boost::asio::buffer(t), ec);
    if (ec) return;
  }
}

std::optional<std::string> WsClient::recv(std::chrono::milliseconds timeout) {
  impl_->arm_read();
  impl_->run_until([&] { return !impl_->inbox.empty() || !impl_->open; }, timeout);
  if (impl_->inbox.empty()) return std::nullopt;
  std::string m = std::move(impl_->inbox.front());
  impl_->inbox.pop_front();
  return m;
}

bool WsClient::wait_pings(int count, std::chrono::milliseconds timeout) {
  const long target = impl_->pings + count;
  impl_->arm_read();
  impl_->run_until([&] { return impl_->pings >= target || !impl_->open; }, timeout);
  return impl_->pings >= target && impl_->open;
}

std::optional<CloseInfo> WsClient::wait_close(std::chrono::milliseconds timeout) {
  impl_->arm_read();
  impl_->run_until([&] { return impl_->closed.has_value(); }, timeout);
  return impl_->closed;
}

void WsClient::close() {
  if (!impl_->open) return;
  bool done = false;
  impl_->ws.async_close(websocket::close_code::normal, [&](beast::error_code) { done = true; });
  impl_->run_until([&] { return done; }, 3000ms);
  impl_->open = false;
}

bool WsClient::is_open() const {
  return impl_->open;
}
const std::string& WsClient::subprotocol() const {
  return impl_->subprotocol;
}

RawUpgradeResult raw_upgrade(uint16_t port, const std::string& request,
                             std::chrono::milliseconds timeout) {
  RawUpgradeResult result;
  boost::asio::io_context ioc;
  tcp::socket sock(ioc);
  beast::error_code ec;
  sock.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port), ec);
  if (ec) return result;
  boost::asio::write(sock, boost::asio::buffer(request), ec);
  std::string data;
  std::array<char, 4096> chunk{};
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // Read until the response head and a whole close frame (server frames are unmasked).
  auto parse = [&]() -> bool {
    const auto head_end = data.find("\r\n\r\n");
    if (head_end == std::string::npos) return false;
    if (result.http_status == 0 && data.size() >= 12)
      result.http_status = std::stoi(data.substr(9, 3));
    const std::string frame = data.substr(head_end + 4);
    if (frame.size() < 2) return result.http_status != 101;
    const auto opcode = static_cast<unsigned char>(frame[0]) & 0x0f;
    const std::size_t len = static_cast<unsigned char>(frame[1]) & 0x7f;
    if (frame.size() < 2 + len) return false;
    if (opcode == 0x8) {
      CloseInfo info;
      if (len >= 2) {
        info.code =
            (static_cast<unsigned char>(frame[2]) << 8) | static_cast<unsigned char>(frame[3]);
        info.reason = frame.substr(4, len - 2);
      }
      result.close = info;
    }
    return true;
  };
  sock.non_blocking(true);
  while (!parse() && std::chrono::steady_clock::now() < deadline) {
    const std::size_t n = sock.read_some(boost::asio::buffer(chunk), ec);
    if (ec == boost::asio::error::would_block) {
      ::usleep(2000);
      continue;
    }
    if (ec) break;
    data.append(chunk.data(), n);
  }
  return result;
}

}  // namespace testing_support
