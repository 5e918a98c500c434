// Redis Sentinel, the I/O part: asks the sentinels where the master is, and watches them for
// failovers (+switch-master). Runs on the bus loop.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bus/redis_connection.hpp"
#include "bus/sentinel.hpp"
#include "obs/logger.hpp"

namespace sigsrv {

struct SentinelSettings {
  std::vector<HostPort> sentinels;
  std::string master;    // REDIS_SENTINEL_MASTER
  std::string password;  // REDIS_SENTINEL_PASSWORD: AUTH to the sentinels (empty: none)
  // REDIS_TLS: the sentinels are reached over TLS too (the certificate names the sentinel's host).
  std::shared_ptr<boost::asio::ssl::context> tls;
};

// What asking every sentinel once came to.
struct SentinelAnswer {
  enum class Kind {
    kAddress,        // a sentinel named the master's address
    kUnknownMaster,  // every sentinel that answered knows no master by that name
    kAuthFailed,     // every sentinel that answered refused REDIS_SENTINEL_PASSWORD (or its lack)
    kUnreachable     // no sentinel answered
  } kind = Kind::kUnreachable;
  HostPort address;
  std::string detail;  // for logs: the last sentinel's error
};

class SentinelClient {
 public:
  using Locate = std::function<void(const SentinelAnswer&)>;

  SentinelClient(boost::asio::io_context& ioc, SentinelSettings settings, Logger& log,
                 std::chrono::milliseconds per_sentinel_timeout = std::chrono::milliseconds(1000));
  ~SentinelClient();
  SentinelClient(const SentinelClient&) = delete;
  SentinelClient& operator=(const SentinelClient&) = delete;

  const SentinelSettings& settings() const { return settings_; }

  // SENTINEL get-master-addr-by-name, to the sentinels in turn (the last one that answered
  // first) until one names an address. `done` runs on the loop, never inside this call, and never
  // after stop().
  void locate(Locate done);

  // Subscribes to +switch-master on one sentinel (the next one when it goes away). `on_switch`
  // gets the new address when the event names our master; `on_up` runs whenever the watch
  // (re)connects, since a failover may have happened while it was down.
  void watch(std::function<void(const HostPort&)> on_switch, std::function<void()> on_up);
  void stop();

 private:
  struct Query;
  void ask(const std::shared_ptr<Query>& q);

  boost::asio::io_context& ioc_;
  SentinelSettings settings_;
  Logger& log_;
  std::chrono::milliseconds timeout_;
  std::size_t preferred_ = 0;  // the sentinel that answered last
  std::size_t watch_next_ = 0;
  std::shared_ptr<bool> alive_;
  std::unique_ptr<RedisConnection> watch_;
};

// Asks the sentinels once, blocking up to about `budget` (start-up checks): for an unknown master
// name or a refused password, before the server listens.
SentinelAnswer ask_sentinels_once(const SentinelSettings& settings, Logger& log,
                                  std::chrono::milliseconds per_sentinel_timeout);

}  // namespace sigsrv
