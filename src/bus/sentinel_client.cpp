// Redis Sentinel client: one short exchange per question (connect, AUTH, SENTINEL
// get-master-addr-by-name, close), and a subscriber connection for +switch-master.
#include "bus/sentinel_client.hpp"

#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

namespace sigsrv {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// One question to one sentinel. Ends (once) on the answer, an error or the deadline.
class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  struct Outcome {
    enum class Kind { kAddress, kUnknownMaster, kAuthFailed, kFailed } kind = Kind::kFailed;
    HostPort address;
    std::string detail;
  };
  using Done = std::function<void(const Outcome&)>;

  Exchange(asio::io_context& ioc, Done done)
      : resolver_(ioc), socket_(ioc), timer_(ioc), done_(std::move(done)) {}

  void run(const HostPort& sentinel, const std::string& password, const std::string& master,
           std::chrono::milliseconds timeout) {
    if (!password.empty()) append_command(out_, {"AUTH", password});
    append_command(out_, {"SENTINEL", "get-master-addr-by-name", master});
    replies_owed_ = password.empty() ? 1 : 2;
    where_ = to_string(sentinel);
    timer_.expires_after(timeout);
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec) self->finish_failed("no answer in time");
    });
    resolver_.async_resolve(
        sentinel.host, std::to_string(sentinel.port),
        [self = shared_from_this()](boost::system::error_code ec,
                                    const tcp::resolver::results_type& results) {
          if (self->finished_) return;
          if (ec) {
            self->finish_failed("resolve: " + ec.message());
            return;
          }
          asio::async_connect(self->socket_, results,
                              [self](boost::system::error_code e, const tcp::endpoint&) {
                                if (self->finished_) return;
                                if (e) {
                                  self->finish_failed("connect: " + e.message());
                                  return;
                                }
                                self->write();
                              });
        });
  }

 private:
  void write() {
    asio::async_write(socket_, asio::buffer(out_),
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                        if (self->finished_) return;
                        if (ec) {
                          self->finish_failed("write: " + ec.message());
                          return;
                        }
                        self->read();
                      });
  }

  void read() {
    socket_.async_read_some(
        asio::buffer(buffer_),
        [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
          if (self->finished_) return;
          if (ec) {
            self->finish_failed(ec == asio::error::eof ? std::string("closed by the sentinel")
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

  void on_reply(const redisReply* r) {
    const bool auth_reply = replies_owed_ == 2;
    --replies_owed_;
    const std::string_view text = r->type == REDIS_REPLY_ERROR ? reply_text(r) : "";
    // WRONGPASS, NOAUTH, or AUTH sent to a sentinel that has no password ("ERR AUTH ...").
    const bool auth_refused = (auth_reply && r->type == REDIS_REPLY_ERROR) ||
                              text.rfind("NOAUTH", 0) == 0 || text.rfind("WRONGPASS", 0) == 0;
    if (auth_refused) {
      Outcome o;
      o.kind = Outcome::Kind::kAuthFailed;
      o.detail = where_ + ": " + std::string(text);
      finish(o);
      return;
    }
    if (auth_reply) return;
    const MasterAddr m = parse_master_addr(r);
    Outcome o;
    switch (m.kind) {
      case MasterAddr::Kind::kAddress:
        o.kind = Outcome::Kind::kAddress;
        o.address = m.address;
        break;
      case MasterAddr::Kind::kUnknownMaster:
        o.kind = Outcome::Kind::kUnknownMaster;
        o.detail = where_ + ": no such master";
        break;
      case MasterAddr::Kind::kError:
        o.detail = where_ + ": " + m.detail;
        break;
    }
    finish(o);
  }

  void finish_failed(const std::string& why) {
    Outcome o;
    o.detail = where_ + ": " + why;
    finish(o);
  }

  void finish(const Outcome& o) {
    if (finished_) return;
    finished_ = true;
    boost::system::error_code ignored;
    timer_.cancel();
    resolver_.cancel();
    socket_.close(ignored);
    done_(o);
  }

  tcp::resolver resolver_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  Done done_;
  std::string out_;
  std::string where_;
  int replies_owed_ = 1;
  bool finished_ = false;
  RespReader reader_;
  std::array<char, 4096> buffer_{};
};

}  // namespace

struct SentinelClient::Query {
  Locate done;
  std::size_t first = 0;
  std::size_t tried = 0;
  bool unknown = false;
  bool auth_failed = false;
  std::string detail;
};

SentinelClient::SentinelClient(asio::io_context& ioc, SentinelSettings settings, Logger& log,
                               std::chrono::milliseconds per_sentinel_timeout)
    : ioc_(ioc),
      settings_(std::move(settings)),
      log_(log),
      timeout_(per_sentinel_timeout),
      alive_(std::make_shared<bool>(true)) {}

SentinelClient::~SentinelClient() {
  stop();
}

void SentinelClient::stop() {
  *alive_ = false;
  if (watch_) watch_->stop();
}

void SentinelClient::locate(Locate done) {
  auto q = std::make_shared<Query>();
  q->done = std::move(done);
  q->first = preferred_;
  // Never inside the caller: the first exchange's outcome arrives from the loop anyway.
  ask(q);
}

void SentinelClient::ask(const std::shared_ptr<Query>& q) {
  const std::size_t n = settings_.sentinels.size();
  if (q->tried == n) {
    SentinelAnswer a;
    a.kind = q->unknown       ? SentinelAnswer::Kind::kUnknownMaster
             : q->auth_failed ? SentinelAnswer::Kind::kAuthFailed
                              : SentinelAnswer::Kind::kUnreachable;
    a.detail = q->detail;
    asio::post(ioc_, [alive = alive_, q, a] {
      if (*alive) q->done(a);
    });
    return;
  }
  const std::size_t index = (q->first + q->tried) % n;
  ++q->tried;
  auto ex = std::make_shared<Exchange>(
      ioc_, [this, alive = alive_, q, index](const Exchange::Outcome& o) {
        if (!*alive) return;
        switch (o.kind) {
          case Exchange::Outcome::Kind::kAddress: {
            preferred_ = index;
            SentinelAnswer a;
            a.kind = SentinelAnswer::Kind::kAddress;
            a.address = o.address;
            q->done(a);
            return;
          }
          case Exchange::Outcome::Kind::kUnknownMaster:
            q->unknown = true;
            break;
          case Exchange::Outcome::Kind::kAuthFailed:
            q->auth_failed = true;
            break;
          case Exchange::Outcome::Kind::kFailed:
            break;
        }
        q->detail = o.detail;
        ask(q);
      });
  ex->run(settings_.sentinels[index], settings_.password, settings_.master, timeout_);
}

void SentinelClient::watch(std::function<void(const HostPort&)> on_switch,
                           std::function<void()> on_up) {
  RedisEndpoint ep;
  ep.password = settings_.password;
  RedisConnection::Hooks hooks;
  hooks.on_up = [this, on_up = std::move(on_up)] {
    watch_->send({"SUBSCRIBE", "+switch-master"});
    if (on_up) on_up();
  };
  hooks.on_message = [this, on_switch = std::move(on_switch)](std::string_view channel,
                                                              std::string_view payload) {
    if (channel != "+switch-master") return;
    if (auto to = parse_switch_master(payload, settings_.master)) on_switch(*to);
  };
  watch_ = std::make_unique<RedisConnection>(ioc_, ep, nullptr, RedisConnection::Mode::kSubscriber,
                                             "sentinel-watch", log_, std::move(hooks));
  // Each attempt goes to the next sentinel: one that is down does not hold the watch.
  watch_->set_locator(
      [this](const RedisConnection::Located& done) {
        const auto& s = settings_.sentinels[watch_next_++ % settings_.sentinels.size()];
        done(s, {});
      },
      false);
  watch_->start();
}

SentinelAnswer ask_sentinels_once(const SentinelSettings& settings, Logger& log,
                                  std::chrono::milliseconds per_sentinel_timeout) {
  asio::io_context ioc(1);
  SentinelAnswer answer;
  {
    SentinelClient client(ioc, settings, log, per_sentinel_timeout);
    client.locate([&answer](const SentinelAnswer& a) { answer = a; });
    ioc.run();
  }
  return answer;
}

}  // namespace sigsrv
