// A TCP socket that may carry TLS, chosen per connection at run time.
//
// The server port speaks TLS when TLS_CERT_FILE is set and plain TCP otherwise, and a Redis
// connection speaks TLS for rediss:// only. Templating every session on its stream type would
// compile Beast's WebSocket and HTTP code twice (the slowest files of the build) for a choice
// that costs one predictable branch per I/O call; this type makes the choice at run time and
// satisfies Asio's AsyncReadStream/AsyncWriteStream and Beast's teardown and close points.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/teardown.hpp>
#include <memory>
#include <utility>

namespace sigsrv {

class MaybeTlsStream {
 public:
  using tcp = boost::asio::ip::tcp;
  using TlsLayer = boost::asio::ssl::stream<tcp::socket>;
  using executor_type = tcp::socket::executor_type;

  explicit MaybeTlsStream(tcp::socket socket) : plain_(std::move(socket)) {}
  MaybeTlsStream(MaybeTlsStream&&) noexcept = default;
  MaybeTlsStream& operator=(MaybeTlsStream&&) noexcept = default;
  MaybeTlsStream(const MaybeTlsStream&) = delete;
  MaybeTlsStream& operator=(const MaybeTlsStream&) = delete;
  ~MaybeTlsStream() = default;

  // Wraps the socket in TLS; the handshake is the caller's next step.
  void start_tls(boost::asio::ssl::context& ctx) {
    tls_ = std::make_unique<TlsLayer>(std::move(plain_), ctx);
  }
  bool is_tls() const { return tls_ != nullptr; }
  TlsLayer& tls() { return *tls_; }

  tcp::socket& socket() { return tls_ ? tls_->next_layer() : plain_; }
  executor_type get_executor() { return plain_.get_executor(); }

  template <class MutableBuffers, class Handler>
  void async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    if (tls_) {
      tls_->async_read_some(buffers, std::forward<Handler>(handler));
    } else {
      plain_.async_read_some(buffers, std::forward<Handler>(handler));
    }
  }

  template <class ConstBuffers, class Handler>
  void async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    if (tls_) {
      tls_->async_write_some(buffers, std::forward<Handler>(handler));
    } else {
      plain_.async_write_some(buffers, std::forward<Handler>(handler));
    }
  }

 private:
  // After start_tls() the socket lives inside tls_; plain_ is then a closed, moved-from socket
  // kept only for its executor (moving a socket keeps the executor).
  tcp::socket plain_;
  std::unique_ptr<TlsLayer> tls_;
};

// Beast's customisation points, found by argument-dependent lookup.
inline void beast_close_socket(MaybeTlsStream& s) {
  boost::system::error_code ec;
  s.socket().close(ec);
}

inline void teardown(boost::beast::role_type role, MaybeTlsStream& s,
                     boost::system::error_code& ec) {
  if (s.is_tls()) {
    boost::beast::teardown(role, s.tls(), ec);
  } else {
    boost::beast::websocket::teardown(role, s.socket(), ec);
  }
}

template <class Handler>
void async_teardown(boost::beast::role_type role, MaybeTlsStream& s, Handler&& handler) {
  if (s.is_tls()) {
    boost::beast::async_teardown(role, s.tls(), std::forward<Handler>(handler));
  } else {
    boost::beast::websocket::async_teardown(role, s.socket(), std::forward<Handler>(handler));
  }
}

}  // namespace sigsrv
