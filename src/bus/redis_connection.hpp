// One Redis connection on an Asio loop: pipelined commands, health pings, reconnect with backoff.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bus/redis_url.hpp"
#include "bus/resp.hpp"
#include "bus/sentinel.hpp"
#include "net/tls_stream.hpp"
#include "obs/logger.hpp"

namespace sigsrv {

struct RedisTiming {
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds command_timeout{3000};  // oldest reply overdue: drop the connection
  std::chrono::milliseconds ping_interval{1000};
  std::chrono::milliseconds backoff_min{100};
  // Capped low: relay must resume within ~2 s of Redis answering again.
  std::chrono::milliseconds backoff_max{1000};
};

class RedisConnection {
 public:
  enum class Mode { kCommand, kSubscriber };
  // Called with the reply, or with null when the command could not complete (connection down,
  // dropped or timed out). Always called exactly once, on the connection's loop.
  using Callback = std::function<void(const redisReply*)>;
  struct Hooks {
    std::function<void()> on_up;                          // connected, AUTH and SELECT done
    std::function<void(const std::string& why)> on_down;  // lost; reconnecting
    // Subscriber mode only.
    std::function<void(std::string_view channel, std::string_view payload)> on_message;
    std::function<void(std::string_view channel)> on_subscribed;
    std::function<void(std::string_view channel)> on_unsubscribed;
    // An error reply that answers no command (a refused SSUBSCRIBE: MOVED); logged when unset.
    std::function<void(std::string_view error)> on_error;
  };
  using Timing = RedisTiming;

  // `tls` is set for rediss:// (the endpoint's host is the name its certificate must carry).
  RedisConnection(boost::asio::io_context& ioc, RedisEndpoint endpoint,
                  std::shared_ptr<boost::asio::ssl::context> tls, Mode mode, std::string name,
                  Logger& log, Hooks hooks, Timing timing = {});
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // Where to connect, asked before every attempt (Sentinel: the current master). The answer
  // replaces the endpoint's host and port (credentials and database stay); no address means this
  // attempt failed for `why`, and the next one comes after the usual backoff.
  using Located = std::function<void(std::optional<HostPort> address, const std::string& why)>;
  using Locator = std::function<void(const Located& done)>;
  // Before start(). `require_master`: the handshake sends ROLE and refuses a node that is not a
  // master, and a READONLY error (the node was demoted under us) drops the connection.
  void set_locator(Locator locate, bool require_master) {
    locator_ = std::move(locate);
    require_master_ = require_master;
  }
  // Where the connection is (or was last) connected.
  const RedisEndpoint& endpoint() const { return endpoint_; }

  void start();
  void stop();
  // Drops the connection and reconnects (the server answered in a way that makes it useless).
  void drop(const std::string& why) { fail(why); }
  // Drops the connection and reconnects after the shortest backoff: the master is elsewhere now.
  void redirect(const std::string& why) {
    attempt_ = 0;
    fail(why);
  }
  bool up() const { return state_ == State::kUp; }

  // Pipelined: written at once, replies matched in order. On the connection's loop only.
  void command(std::span<const std::string_view> args, Callback done);
  void command(std::initializer_list<std::string_view> args, Callback done) {
    command(std::span<const std::string_view>(args.begin(), args.size()), std::move(done));
  }
  // The same for a command encoded already (append_command): a cluster re-sends one after a
  // redirect without encoding it again.
  void command_encoded(std::string_view encoded, Callback done);
  // Replies owed beyond this fail at once (counted by the caller): a Redis that stopped
  // answering must not grow memory without bound until the reply timeout trips.
  static constexpr std::size_t kMaxPending = 100000;
  // And beyond this many encoded bytes not yet taken by the socket (a Redis that stopped
  // reading): a command past it fails at once, so memory stays bounded by bytes too.
  static constexpr std::size_t kMaxUnsentBytes = 64 << 20;
  std::size_t pending() const { return pending_.size() + (out_.empty() ? 0 : 1); }
  std::size_t unsent_bytes() const { return out_.size() + writing_.size(); }
  // Subscriber mode: (S)SUBSCRIBE/(S)UNSUBSCRIBE, answered through the hooks. Dropped while down
  // (the owner resubscribes from on_up).
  void send(std::span<const std::string_view> args);
  void send(std::initializer_list<std::string_view> args) {
    send(std::span<const std::string_view>(args.begin(), args.size()));
  }

 private:
  enum class State { kStopped, kWaiting, kConnecting, kHandshake, kUp };
  struct Pending {
    Callback done;
    std::chrono::steady_clock::time_point sent;
  };

  void connect();
  void dial(unsigned gen);
  void tls_handshake();
  void handshake();
  void read();
  void schedule_flush();
  void flush();
  void dispatch(const redisReply* reply);  // never null
  void dispatch_fast(const FastReply& reply);
  void fail(const std::string& why);
  void schedule_reconnect();
  void tick();
  void enqueue(std::span<const std::string_view> args, Callback done);
  void enqueue(std::initializer_list<std::string_view> args, Callback done) {
    enqueue(std::span<const std::string_view>(args.begin(), args.size()), std::move(done));
  }

  boost::asio::io_context& ioc_;
  RedisEndpoint endpoint_;
  std::shared_ptr<boost::asio::ssl::context> tls_;
  Mode mode_;
  std::string name_;
  Logger& log_;
  Hooks hooks_;
  Timing timing_;

  boost::asio::ip::tcp::resolver resolver_;
  // A fresh stream per connection attempt (TLS state cannot be reused). Shared with the
  // handlers of its operations: a TLS operation still in flight touches its stream after the
  // socket closed, so the stream outlives a reconnect until its last handler ran.
  std::shared_ptr<MaybeTlsStream> stream_;
  boost::asio::steady_timer timer_;  // connect timeout, then reconnect delay
  boost::asio::steady_timer tick_;   // pings and reply deadlines
  State state_ = State::kStopped;
  unsigned generation_ = 0;  // bumps on every (re)connect; stale handlers check it
  unsigned attempt_ = 0;

  std::string out_;      // encoded commands not yet handed to the socket
  std::string writing_;  // the bytes of the write in flight
  bool write_in_flight_ = false;
  bool flush_posted_ = false;    // a flush() is queued on the loop (see schedule_flush())
  std::deque<Pending> pending_;  // replies owed, in order
  RespReader reader_;
  static constexpr std::size_t kReadBufferBytes = 16384;
  // The most one read takes while Redis has more queued for us than a read held (see read()).
  static constexpr std::size_t kBacklogReadBytes = 1 << 20;
  std::vector<char> read_buffer_ = std::vector<char>(kReadBufferBytes);  // grows (see read())
  std::size_t carried_ = 0;        // the start of a reply, at the front of read_buffer_
  std::size_t last_read_ = 0;      // bytes the last read took
  bool last_read_filled_ = false;  // ... and whether they filled the buffer
  std::chrono::steady_clock::time_point last_ping_{};
  std::chrono::steady_clock::time_point last_pong_{};
  std::string last_failure_;  // logged once per distinct failure while reconnecting
  Locator locator_;
  bool require_master_ = false;
};

}  // namespace sigsrv
