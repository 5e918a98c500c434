// Accepts TCP connections and hands each to an event loop, round-robin (an upgrade naming a
// room then moves to that room's loop: HttpSession).
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <optional>
#include <string>

#include "net/http_routes.hpp"

namespace sigsrv {

class Server;
struct Loop;

class Listener {
 public:
  Listener(Server& server, PortKind kind);
  // Binds and listens; returns an error naming the address on failure.
  std::optional<std::string> open(const std::string& host, uint16_t port);
  void start();
  void close();
  uint16_t port() const { return port_; }

 private:
  // Waits for the listening socket to be readable, then accept_ready().
  void wait();
  // Takes the connections already waiting in the backlog, without blocking, up to a batch; then
  // waits, or posts the next batch.
  void accept_ready();
  void retry(boost::system::error_code ec);  // after a failed accept (EMFILE): 50 ms
  // `peer`: the client's address, as accept() returned it (asking the socket again costs a
  // getpeername per connection).
  void hand_off(Loop& target, boost::asio::ip::tcp::socket socket,
                const boost::asio::ip::address& peer);
  Server& server_;
  PortKind kind_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer retry_timer_;  // backs off when accept fails (EMFILE)
  uint16_t port_ = 0;
};

}  // namespace sigsrv
