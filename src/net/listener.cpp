// Listener: one acceptor (on loop 0); each socket is created on the loop that will own it.
#include "net/listener.hpp"

#include <boost/asio/post.hpp>

#include "net/http_session.hpp"
#include "net/server.hpp"
#include "obs/metrics.hpp"

namespace sigsrv {

using tcp = boost::asio::ip::tcp;

Listener::Listener(Server& server, PortKind kind)
    : server_(server),
      kind_(kind),
      acceptor_(server.loop(0).ioc),
      retry_timer_(server.loop(0).ioc) {}

std::optional<std::string> Listener::open(const std::string& host, uint16_t port) {
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(host, ec);
  if (ec) return "HOST='" + host + "': not an IP address";
  const tcp::endpoint ep(address, port);
  const std::string where = host + ":" + std::to_string(port);
  if (acceptor_.open(ep.protocol(), ec); ec)
    return "cannot open socket for " + where + ": " + ec.message();
  acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (acceptor_.bind(ep, ec); ec) {
    std::string hint;
    if (ec == boost::asio::error::address_in_use) {
      hint = " (EADDRINUSE: another process holds the port; stop it or set PORT/WS_PORT)";
    }
    return "cannot listen on " + where + ": " + ec.message() + hint;
  }
  if (acceptor_.listen(tcp::socket::max_listen_connections, ec); ec) {
    return "cannot listen on " + where + ": " + ec.message();
  }
  // accept_ready() takes what the backlog holds without blocking.
  if (acceptor_.non_blocking(true, ec); ec) {
    return "cannot listen on " + where + ": " + ec.message();
  }
  port_ = acceptor_.local_endpoint().port();
  return std::nullopt;
}

void Listener::start() {
  accept();
}

void Listener::close() {
  boost::system::error_code ec;
  acceptor_.close(ec);
  retry_timer_.cancel();
}

void Listener::accept() {
  Loop& target = server_.next_loop();
  acceptor_.async_accept(target.ioc, peer_,
                         [this, &target](boost::system::error_code ec, tcp::socket socket) {
                           if (ec == boost::asio::error::operation_aborted) return;
                           if (ec) {
                             // Out of descriptors or a transient kernel error: wait a little
                             // instead of spinning.
                             server_.log().warn("Accept failed", {{"err", ec.message()}});
                             retry_timer_.expires_after(std::chrono::milliseconds(50));
                             retry_timer_.async_wait([this](boost::system::error_code e) {
                               if (!e) accept();
                             });
                             return;
                           }
                           hand_off(target, std::move(socket), peer_.address());
                           accept_ready();
                           accept();
                         });
}

void Listener::accept_ready() {
  // One accept per completion would take one connection per turn of loop 0, behind every
  // handler queued in that turn: under load (thousands of connections sending, or holding
  // half-finished requests) the backlog then fills, and new clients' SYNs are dropped and
  // retried after 1 s, 3 s... Taking what is ready, up to a batch per turn, keeps the backlog
  // short. An error (none ready, EMFILE) ends the batch; the async accept reports a real one.
  constexpr int kAcceptBatch = 64;
  for (int i = 0; i < kAcceptBatch; ++i) {
    Loop& target = server_.next_loop();
    tcp::socket socket(target.ioc);
    tcp::endpoint peer;
    boost::system::error_code ec;
    acceptor_.accept(socket, peer, ec);
    if (ec) return;
    hand_off(target, std::move(socket), peer.address());
  }
}

void Listener::hand_off(Loop& target, tcp::socket socket, const boost::asio::ip::address& peer) {
  server_.loop_taken();  // the next connection goes to the next loop
  metrics().connections_accepted.inc();
  boost::asio::post(target.ioc, [&server = server_, &target, kind = kind_, s = std::move(socket),
                                 peer]() mutable {
    std::make_shared<HttpSession>(server, target, kind, std::move(s), peer)->start();
  });
}

}  // namespace sigsrv
