// One short exchange with one Redis (a sentinel, or a cluster node at start-up): connect, TLS when
// asked, AUTH when a password is set, one question, close. Never retries; ends once, on the
// question's reply, a refused password, an error or the deadline.
#pragma once

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bus/redis_url.hpp"
#include "bus/resp.hpp"
#include "bus/sentinel.hpp"
#include "net/tls_stream.hpp"

namespace sigsrv {

struct RedisCredentials {
  std::string user;      // empty: AUTH with the password alone
  std::string password;  // empty: no AUTH
  // Set: TLS, and the certificate must name the host dialled.
  std::shared_ptr<boost::asio::ssl::context> tls;
};

class RedisExchange : public std::enable_shared_from_this<RedisExchange> {
 public:
  struct Outcome {
    enum class Kind {
      kReply,       // `reply` answers the question (an error reply included)
      kAuthFailed,  // WRONGPASS, NOAUTH, or AUTH refused (a server without a password)
      kFailed       // no answer: resolve, connect, TLS, closed, timeout, protocol error
    } kind = Kind::kFailed;
    const redisReply* reply = nullptr;  // kReply: valid during the callback only
    std::string detail;                 // "host:port: why" (kAuthFailed, kFailed)
  };
  using Done = std::function<void(const Outcome&)>;

  RedisExchange(boost::asio::io_context& ioc, Done done);
  // `done` runs once, on the loop, never inside this call.
  void run(const HostPort& at, const RedisCredentials& credentials,
           std::vector<std::string> question, std::chrono::milliseconds timeout);

 private:
  void connected();
  void write();
  void read();
  void on_reply(const redisReply* r);
  void finish_failed(const std::string& why);
  void finish(const Outcome& o);

  boost::asio::ip::tcp::resolver resolver_;
  MaybeTlsStream stream_;  // every handler holds this object, so the stream outlives them
  boost::asio::steady_timer timer_;
  Done done_;
  HostPort at_;
  std::shared_ptr<boost::asio::ssl::context> tls_;
  std::string out_;
  int replies_owed_ = 1;
  bool finished_ = false;
  RespReader reader_;
  std::array<char, 4096> buffer_{};
};

}  // namespace sigsrv
