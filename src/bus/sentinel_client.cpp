// Redis Sentinel client: one short exchange per question (connect, AUTH, SENTINEL
// get-master-addr-by-name, close), and a subscriber connection for +switch-master.
#include "bus/sentinel_client.hpp"

#include <boost/asio/post.hpp>

#include "bus/redis_exchange.hpp"

namespace sigsrv {

namespace asio = boost::asio;

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
  auto ex = std::make_shared<RedisExchange>(
      ioc_, [this, alive = alive_, q, index](const RedisExchange::Outcome& o) {
        if (!*alive) return;
        using Kind = RedisExchange::Outcome::Kind;
        if (o.kind == Kind::kReply) {
          const MasterAddr m = parse_master_addr(o.reply);
          switch (m.kind) {
            case MasterAddr::Kind::kAddress: {
              preferred_ = index;
              SentinelAnswer a;
              a.kind = SentinelAnswer::Kind::kAddress;
              a.address = m.address;
              q->done(a);
              return;
            }
            case MasterAddr::Kind::kUnknownMaster:
              q->unknown = true;
              q->detail = to_string(settings_.sentinels[index]) + ": no such master";
              break;
            case MasterAddr::Kind::kError:
              q->detail = to_string(settings_.sentinels[index]) + ": " + m.detail;
              break;
          }
        } else {
          if (o.kind == Kind::kAuthFailed) q->auth_failed = true;
          q->detail = o.detail;
        }
        ask(q);
      });
  ex->run(settings_.sentinels[index], RedisCredentials{{}, settings_.password, settings_.tls},
          {"SENTINEL", "get-master-addr-by-name", settings_.master}, timeout_);
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
  watch_ =
      std::make_unique<RedisConnection>(ioc_, ep, settings_.tls, RedisConnection::Mode::kSubscriber,
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
