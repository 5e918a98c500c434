// HTTP handling before an upgrade: probes, metrics, 426, and the handoff to WsSession.
#include "net/http_session.hpp"

#include <unistd.h>

#include <utility>

#include <boost/asio/post.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include "net/loop_owned.hpp"
#include "net/server.hpp"
#include "net/ws_session.hpp"
#include "obs/metrics.hpp"

namespace sigsrv {

namespace http = boost::beast::http;
namespace {
// Node's default maximum header size; larger requests get 431.
constexpr std::uint32_t kHeaderLimit = 16 * 1024;
// The read buffer's cap: enough for the parser to see a header pass kHeaderLimit (431), never
// more, however much a client sends at once. A request that is never finished holds at most this.
constexpr std::size_t kReadBufferLimit = kHeaderLimit + 1024;
}  // namespace

HttpSession::HttpSession(Server& server, Loop& loop, PortKind kind,
                         boost::asio::ip::tcp::socket socket, const boost::asio::ip::address& peer)
    : server_(server),
      loop_(loop),
      kind_(kind),
      stream_(std::move(socket)),
      peer_(peer),
      buffer_(kReadBufferLimit) {
  server_.http_count.fetch_add(1, std::memory_order_relaxed);
  metrics().pending_handshakes.inc();
}

HttpSession::~HttpSession() {
  server_.http_count.fetch_sub(1, std::memory_order_relaxed);
  metrics().pending_handshakes.dec();
}

void HttpSession::start() {
  // MAX_CONNECTIONS bounds these as it bounds WebSocket connections. Past it, the connection
  // that has waited longest for its request (nearest its deadline) makes room: a client that
  // sends its request at once is never the oldest, one that never finishes it always becomes
  // so. (Per loop: each evicts its own oldest; connections are spread over loops evenly.)
  const std::size_t cap = server_.config().max_connections;
  if (cap > 0 && server_.http_count.load(std::memory_order_relaxed) > cap) {
    loop_.handshakes.evict_oldest();
  }
  // TCP_NODELAY comes from the listening socket (Listener::open): Linux copies it to every
  // accepted socket, which saves a system call per connection.
  // The health port stays plain HTTP (probes inside the cluster); the main port speaks TLS only
  // when TLS_CERT_FILE is set.
  boost::asio::ssl::context* tls = kind_ == PortKind::kMain ? server_.tls_context() : nullptr;
  if (tls == nullptr) {
    read_request();
    return;
  }
  stream_.start_tls(*tls);
  arm_deadline();
  stream_.tls().async_handshake(boost::asio::ssl::stream_base::server,
                                [self = shared_from_this()](boost::system::error_code e) {
                                  if (e) {
                                    // Scanners and plain-HTTP clients end here; not worth a log.
                                    metrics().tls_handshake_failures.inc();
                                    self->close();
                                    return;
                                  }
                                  self->read_request();
                                });
}

void HttpSession::arm_deadline() {
  loop_.handshakes.arm(*this);
}

void HttpSession::cancel_deadline() {
  loop_.handshakes.cancel(*this);
}

void HttpSession::on_deadline(Why why) {
  if (why == Why::kExpired)
    metrics().handshake_timeouts.inc();
  else
    metrics().handshake_evictions.inc();
  // The pending operation ends with an error and releases the session.
  close();
}

void HttpSession::read_request() {
  arm_deadline();
  parser_.emplace();
  parser_->header_limit(kHeaderLimit);
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                     self->on_read(ec);
                   });
}

void HttpSession::on_read(boost::system::error_code ec) {
  if (ec == http::error::header_limit) {
    respond({431, "Request Header Fields Too Large"}, false, false);
    return;
  }
  if (ec) {
    close();
    return;
  }
  auto& req = parser_->get();
  if (kind_ == PortKind::kMain && boost::beast::websocket::is_upgrade(req)) {
    // The WebSocket session keeps a deadline of its own for admission and the upgrade.
    cancel_deadline();
    ConnectParams params = parse_connect_target(req.target(), server_.config().room_id_max_length);
    // Every member of a room on one loop: relays between them never cross threads. Without a
    // valid room id the connection is refused, here.
    if (params.room_id) {
      Loop& home = server_.home_loop(*params.room_id);
      if (&home != &loop_ && move_to(home, params)) return;
    }
    make_loop_owned<WsSession>(loop_.ioc, server_, loop_, std::move(stream_))
        ->start(parser_->release(), std::move(params), peer_);
    return;
  }
  HttpAnswer answer = route_http(req.target(), kind_, server_.ready(), [this] {
    metrics().ready.set(server_.ready() ? 1 : 0);
    return metrics().render(server_.config().metrics_names);
  });
  respond(std::move(answer), req.keep_alive(), req.method() == http::verb::head);
}

namespace {

// A connection on its way to another loop, counted as in its HTTP phase (MAX_CONNECTIONS, the
// pending handshakes gauge) until the WebSocket session there counts it: it is never in neither.
class InTransit {
 public:
  explicit InTransit(Server& server) : server_(&server) {
    server.http_count.fetch_add(1, std::memory_order_relaxed);
    metrics().pending_handshakes.inc();
  }
  InTransit(InTransit&& other) noexcept : server_(std::exchange(other.server_, nullptr)) {}
  InTransit& operator=(InTransit&&) = delete;
  ~InTransit() {
    if (server_ == nullptr) return;
    server_->http_count.fetch_sub(1, std::memory_order_relaxed);
    metrics().pending_handshakes.dec();
  }

 private:
  Server* server_;
};

}  // namespace

bool HttpSession::move_to(Loop& home, ConnectParams& params) {
  // TLS stays on the loop that accepted it: its state (the SSL object, its BIO pair, bytes read
  // ahead) belongs to the stream, and Asio can neither release nor rebind it.
  if (stream_.is_tls()) return false;
  boost::asio::ip::tcp::socket& from = stream_.socket();
  boost::system::error_code ec;
  const auto protocol = from.local_endpoint(ec).protocol();
  if (ec) return false;  // not connected any more: the upgrade fails here as it would there
  // Nothing is pending on the socket (the request's read completed): release() takes it out of
  // this loop's epoll, assign() puts it into the home loop's, from this thread, as the listener
  // does for every socket it accepts. Bytes the client sent past the request (before the 101,
  // which RFC 6455 forbids) are dropped as they are when it stays.
  const auto fd = from.release(ec);
  if (ec) return false;
  boost::asio::ip::tcp::socket to(home.ioc);
  if (to.assign(protocol, fd, ec); ec) {
    ::close(fd);
    server_.log().warn("Connection lost moving to its room's loop", {{"err", ec.message()}});
    return true;
  }
  boost::asio::post(
      home.ioc, [&server = server_, &home, socket = std::move(to), request = parser_->release(),
                 params = std::move(params), peer = peer_, transit = InTransit(server_)]() mutable {
        make_loop_owned<WsSession>(home.ioc, server, home, MaybeTlsStream(std::move(socket)))
            ->start(std::move(request), std::move(params), peer);
      });
  return true;
}

void HttpSession::respond(HttpAnswer answer, bool keep_alive, bool head) {
  response_ = {};
  response_.result(answer.status);
  response_.version(11);
  response_.set(http::field::content_type, answer.content_type);
  response_.keep_alive(keep_alive);
  if (answer.status == 426) response_.set(http::field::upgrade, "websocket");
  response_.body() = std::move(answer.body);
  response_.prepare_payload();
  if (head) response_.body().clear();
  // The request's deadline still runs: a client that never reads its answer is cut all the same.
  http::async_write(
      stream_, response_,
      [self = shared_from_this(), keep_alive](boost::system::error_code ec, std::size_t) {
        if (ec || !keep_alive || self->server_.draining()) {
          self->close();
          return;
        }
        self->read_request();
      });
}

void HttpSession::close() {
  boost::system::error_code ec;
  cancel_deadline();
  stream_.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ec);
  stream_.socket().close(ec);
}

}  // namespace sigsrv
