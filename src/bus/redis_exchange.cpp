#include "bus/redis_exchange.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>

namespace sigsrv {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

RedisExchange::RedisExchange(asio::io_context& ioc, Done done)
    : resolver_(ioc), stream_(tcp::socket(ioc)), timer_(ioc), done_(std::move(done)) {}

void RedisExchange::run(const HostPort& at, const RedisCredentials& credentials,
                        std::vector<std::string> question, std::chrono::milliseconds timeout) {
  at_ = at;
  tls_ = credentials.tls;
  if (!credentials.password.empty()) {
    append_command(out_, auth_command(credentials.user, credentials.password));
    replies_owed_ = 2;
  }
  std::vector<std::string_view> args(question.begin(), question.end());
  append_command(out_, args);
  timer_.expires_after(timeout);
  timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (!ec) self->finish_failed("no answer in time");
  });
  resolver_.async_resolve(at.host, std::to_string(at.port),
                          [self = shared_from_this()](boost::system::error_code ec,
                                                      const tcp::resolver::results_type& results) {
                            if (self->finished_) return;
                            if (ec) {
                              self->finish_failed("resolve: " + ec.message());
                              return;
                            }
                            asio::async_connect(
                                self->stream_.socket(), results,
                                [self](boost::system::error_code e, const tcp::endpoint&) {
                                  if (self->finished_) return;
                                  if (e) {
                                    self->finish_failed("connect: " + e.message());
                                    return;
                                  }
                                  self->connected();
                                });
                          });
}

void RedisExchange::connected() {
  if (!tls_) {
    write();
    return;
  }
  stream_.start_client_tls(*tls_, at_.host);
  stream_.tls().async_handshake(
      asio::ssl::stream_base::client, [self = shared_from_this()](boost::system::error_code ec) {
        if (self->finished_) return;
        if (ec) {
          self->finish_failed("TLS handshake: " + ec.message() + redis_tls_hint(self->at_.host));
          return;
        }
        self->write();
      });
}

void RedisExchange::write() {
  asio::async_write(stream_, asio::buffer(out_),
                    [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                      if (self->finished_) return;
                      if (ec) {
                        self->finish_failed("write: " + ec.message());
                        return;
                      }
                      self->read();
                    });
}

void RedisExchange::read() {
  stream_.async_read_some(asio::buffer(buffer_), [self = shared_from_this()](
                                                     boost::system::error_code ec, std::size_t n) {
    if (self->finished_) return;
    if (ec) {
      self->finish_failed(ec == asio::error::eof ? std::string("closed by the server")
                                                 : "read: " + ec.message());
      return;
    }
    if (!self->reader_.feed(self->buffer_.data(), n)) {
      self->finish_failed("protocol error");
      return;
    }
    while (!self->finished_) {
      bool error = false;
      ReplyPtr r = self->reader_.next(&error);
      if (error) {
        self->finish_failed("protocol error");
        return;
      }
      if (!r) break;
      self->on_reply(r.get());
    }
    if (!self->finished_) self->read();
  });
}

void RedisExchange::on_reply(const redisReply* r) {
  const bool auth_reply = replies_owed_ == 2;
  --replies_owed_;
  const std::string_view text = r->type == REDIS_REPLY_ERROR ? reply_text(r) : "";
  // WRONGPASS, NOAUTH, or AUTH sent to a server that has no password ("ERR AUTH ...").
  if ((auth_reply && r->type == REDIS_REPLY_ERROR) || text.starts_with("NOAUTH") ||
      text.starts_with("WRONGPASS")) {
    Outcome o;
    o.kind = Outcome::Kind::kAuthFailed;
    o.detail = to_string(at_) + ": " + std::string(text);
    finish(o);
    return;
  }
  if (auth_reply) return;
  Outcome o;
  o.kind = Outcome::Kind::kReply;
  o.reply = r;
  finish(o);
}

void RedisExchange::finish_failed(const std::string& why) {
  Outcome o;
  o.detail = to_string(at_) + ": " + why;
  finish(o);
}

void RedisExchange::finish(const Outcome& o) {
  if (finished_) return;
  finished_ = true;
  boost::system::error_code ignored;
  timer_.cancel();
  resolver_.cancel();
  stream_.socket().close(ignored);
  done_(o);
}

}  // namespace sigsrv
