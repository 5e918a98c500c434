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
  // Signaling is small messages answered at once: no Nagle delay. Set here once, since Linux
  // copies the listening socket's TCP_NODELAY to each socket accept() returns.
  if (acceptor_.set_option(tcp::no_delay(true), ec); ec) {
    return "cannot set TCP_NODELAY on " + where + ": " + ec.message();
  }
  if (acceptor_.bind(ep, ec); ec) {
    std::string hint;
    if (ec == boost::asio::error::address_in_use) {
      hint = kind_ == PortKind::kHealth
                 ? " (EADDRINUSE: another process holds the port; stop it or set HEALTH_PORT)"
                 : " (EADDRINUSE: another process holds the port; stop it or set PORT/WS_PORT)";
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
  // Connections may have queued since open(): their readiness edge is gone, so take them first.
  accept_ready();
}

void Listener::close() {
  boost::system::error_code ec;
  acceptor_.close(ec);
  retry_timer_.cancel();
}

void Listener::wait() {
  // A wait, not an async accept: accept_ready() has just taken everything, so Asio's speculative
  // accept would only fail with EAGAIN, a system call per wake-up. The wait cannot miss a
  // connection: it is registered before this loop polls again, and edge-triggered epoll reports
  // any connection that arrives after that last EAGAIN.
  acceptor_.async_wait(tcp::acceptor::wait_read, [this](boost::system::error_code ec) {
    if (ec == boost::asio::error::operation_aborted) return;
    if (ec) {
      retry(ec);
      return;
    }
    accept_ready();
  });
}

void Listener::retry(boost::system::error_code ec) {
  // Out of descriptors or a transient kernel error: wait a little instead of spinning.
  server_.log().warn("Accept failed", {{"err", ec.message()}});
  retry_timer_.expires_after(std::chrono::milliseconds(50));
  retry_timer_.async_wait([this](boost::system::error_code e) {
    if (!e) accept_ready();
  });
}

void Listener::accept_ready() {
  // One accept per wake-up would take one connection per turn of loop 0, behind every handler
  // queued in that turn: under load (thousands of connections sending, or holding half-finished
  // requests) the backlog then fills, and new clients' SYNs are dropped and retried after 1 s,
  // 3 s... Taking what is ready, up to a batch per turn, keeps the backlog short.
  if (!acceptor_.is_open()) return;  // closed while a batch was posted
  constexpr int kAcceptBatch = 64;
  for (int i = 0; i < kAcceptBatch; ++i) {
    Loop& target = server_.next_loop();
    tcp::socket socket(target.ioc);
    tcp::endpoint peer;
    boost::system::error_code ec;
    acceptor_.accept(socket, peer, ec);
    if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) {
      wait();
      return;
    }
    if (ec) {
      retry(ec);
      return;
    }
    hand_off(target, std::move(socket), peer.address());
  }
  // A full batch: more may be waiting, with no new edge to say so. The next batch comes after the
  // handlers this turn has queued.
  boost::asio::post(acceptor_.get_executor(), [this] { accept_ready(); });
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
