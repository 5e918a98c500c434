// One TCP connection until it upgrades: reads HTTP requests, answers probes, hands off upgrades.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <memory>
#include <optional>

#include "limits/deadline_list.hpp"
#include "net/http_routes.hpp"
#include "net/tls_stream.hpp"
#include "signaling/connect_params.hpp"

namespace sigsrv {

class Server;
struct Loop;

// HANDSHAKE_TIMEOUT_MS covers the TLS handshake, then each request with its answer: the
// session is an entry of its loop's handshake deadlines until it upgrades or closes. It lives on
// the loop that accepted the connection; an upgrade goes on, as a WsSession, on its room's loop.
class HttpSession final : public std::enable_shared_from_this<HttpSession>,
                          private DeadlineList::Entry {
 public:
  HttpSession(Server& server, Loop& loop, PortKind kind, boost::asio::ip::tcp::socket socket,
              const boost::asio::ip::address& peer);
  ~HttpSession();
  void start();

 private:
  void arm_deadline();
  void cancel_deadline();
  // The deadline passed, or MAX_CONNECTIONS made this the oldest connection to go.
  void on_deadline(Why why) override;
  void read_request();
  void on_read(boost::system::error_code ec);
  // An upgrade naming a room whose loop is another: plain TCP moves there, with the request,
  // and is upgraded on that loop. False when it stays here (TLS).
  bool move_to(Loop& home, ConnectParams& params);
  void respond(HttpAnswer answer, bool keep_alive, bool head);
  void close();

  Server& server_;
  Loop& loop_;
  PortKind kind_;
  MaybeTlsStream stream_;
  boost::asio::ip::address peer_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::empty_body>> parser_;
  boost::beast::http::response<boost::beast::http::string_body> response_;
};

}  // namespace sigsrv
