// Redis connection: connect, AUTH/SELECT handshake, pipelined writes, ordered replies, pings.
#include "bus/redis_connection.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <random>

namespace sigsrv {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

RedisConnection::RedisConnection(asio::io_context& ioc, RedisEndpoint endpoint,
                                 std::shared_ptr<asio::ssl::context> tls, Mode mode,
                                 std::string name, Logger& log, Hooks hooks, Timing timing)
    : ioc_(ioc),
      endpoint_(std::move(endpoint)),
      tls_(std::move(tls)),
      mode_(mode),
      name_(std::move(name)),
      log_(log),
      hooks_(std::move(hooks)),
      timing_(timing),
      resolver_(ioc),
      stream_(std::make_shared<MaybeTlsStream>(tcp::socket(ioc))),
      timer_(ioc),
      tick_(ioc) {}

void RedisConnection::start() {
  state_ = State::kWaiting;
  connect();
  tick();
}

void RedisConnection::stop() {
  state_ = State::kStopped;
  ++generation_;
  boost::system::error_code ec;
  stream_->socket().close(ec);
  timer_.cancel();
  tick_.cancel();
  resolver_.cancel();
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& p : pending) p.done(nullptr);
}

void RedisConnection::connect() {
  const unsigned gen = ++generation_;
  state_ = State::kConnecting;
  out_.clear();
  reader_.reset();
  carried_ = 0;
  last_read_ = 0;
  last_read_filled_ = false;
  if (!locator_) {
    dial(gen);
    return;
  }
  // Asking the sentinels has its own deadlines; the connect timeout starts once we know where.
  locator_([this, gen](std::optional<HostPort> address, const std::string& why) {
    if (gen != generation_ || state_ != State::kConnecting) return;
    if (!address) {
      fail(why);
      return;
    }
    endpoint_.host = address->host;
    endpoint_.port = address->port;
    dial(gen);
  });
}

void RedisConnection::dial(unsigned gen) {
  stream_ = std::make_shared<MaybeTlsStream>(tcp::socket(ioc_));
  timer_.expires_after(timing_.connect_timeout);
  timer_.async_wait([this, gen](boost::system::error_code ec) {
    if (ec || gen != generation_ || state_ == State::kUp) return;
    fail("connect timeout");
  });
  resolver_.async_resolve(
      endpoint_.host, std::to_string(endpoint_.port),
      [this, gen](boost::system::error_code ec, const tcp::resolver::results_type& results) {
        if (gen != generation_) return;
        if (ec) {
          fail("resolve " + endpoint_.host + ": " + ec.message());
          return;
        }
        asio::async_connect(
            stream_->socket(), results,
            [this, gen, s = stream_](boost::system::error_code e, const tcp::endpoint&) {
              if (gen != generation_) return;
              if (e) {
                fail("connect: " + e.message());
                return;
              }
              boost::system::error_code ignored;
              stream_->socket().set_option(tcp::no_delay(true), ignored);
              if (tls_) {
                tls_handshake();
              } else {
                handshake();
              }
            });
      });
}

void RedisConnection::tls_handshake() {
  stream_->start_client_tls(*tls_, endpoint_.host);
  const unsigned gen = generation_;
  stream_->tls().async_handshake(asio::ssl::stream_base::client,
                                 [this, gen, s = stream_](boost::system::error_code ec) {
                                   if (gen != generation_) return;
                                   if (ec) {
                                     fail("TLS handshake with " + endpoint_.host + ": " +
                                          ec.message() + redis_tls_hint(endpoint_.host));
                                     return;
                                   }
                                   handshake();
                                 });
}

void RedisConnection::handshake() {
  state_ = State::kHandshake;
  read();
  const unsigned gen = generation_;
  auto step_failed = [this, gen](const redisReply* r, const char* what) {
    if (gen != generation_) return true;
    if (!is_error(r)) return false;
    // The server's error text (e.g. WRONGPASS) carries no secret; the password is never logged.
    fail(std::string(what) + " failed: " + std::string(r ? reply_text(r) : "no reply"));
    return true;
  };
  if (!endpoint_.password.empty()) {
    enqueue(auth_command(endpoint_.user, endpoint_.password),
            [step_failed](const redisReply* r) { step_failed(r, "AUTH"); });
  }
  if (endpoint_.db != 0) {
    const std::string db = std::to_string(endpoint_.db);
    enqueue({"SELECT", db}, [step_failed](const redisReply* r) { step_failed(r, "SELECT"); });
  }
  if (require_master_) {
    // A sentinel's answer can be stale (a failover under way), and a node can come back from a
    // crash as a replica: only a node that says it is the master is used.
    enqueue({"ROLE"}, [this, gen](const redisReply* r) {
      if (gen != generation_ || role_is_master(r)) return;
      fail(is_error(r)
               ? "ROLE failed: " + std::string(r ? reply_text(r) : "no reply")
               : endpoint_.host + ":" + std::to_string(endpoint_.port) + " is not a master (ROLE)");
    });
  }
  // PING last: its reply proves the handshake went through and the server answers.
  enqueue({"PING"}, [this, gen, step_failed](const redisReply* r) {
    if (step_failed(r, "PING")) return;
    state_ = State::kUp;
    attempt_ = 0;
    timer_.cancel();
    last_pong_ = SteadyClock::now();
    if (!last_failure_.empty()) {
      log_.info("Redis connection restored", {{"connection", name_}});
      last_failure_.clear();
    }
    if (hooks_.on_up && gen == generation_) hooks_.on_up();
  });
}

void RedisConnection::enqueue(std::span<const std::string_view> args, Callback done) {
  append_command(out_, args);
  pending_.push_back(Pending{std::move(done), SteadyClock::now()});
  schedule_flush();
}

void RedisConnection::command(std::span<const std::string_view> args, Callback done) {
  if (state_ != State::kUp || pending_.size() >= kMaxPending || unsent_bytes() >= kMaxUnsentBytes) {
    // Not connected, or too far behind: fail now, but never re-enter the caller.
    asio::post(ioc_, [done = std::move(done)] { done(nullptr); });
    return;
  }
  enqueue(args, std::move(done));
}

void RedisConnection::command_encoded(std::string_view encoded, Callback done) {
  if (state_ != State::kUp || pending_.size() >= kMaxPending || unsent_bytes() >= kMaxUnsentBytes) {
    asio::post(ioc_, [done = std::move(done)] { done(nullptr); });
    return;
  }
  out_.append(encoded);
  pending_.push_back(Pending{std::move(done), SteadyClock::now()});
  schedule_flush();
}

void RedisConnection::send(std::span<const std::string_view> args) {
  if (state_ != State::kUp) return;
  append_command(out_, args);
  schedule_flush();
}

void RedisConnection::schedule_flush() {
  // After the handlers already queued on this loop: the commands of one loop turn (a burst of
  // PUBLISHes read from many sockets) go out in one write instead of one syscall each. A write
  // in flight takes them when it completes.
  if (flush_posted_ || write_in_flight_) return;
  flush_posted_ = true;
  asio::post(ioc_, [this] {
    flush_posted_ = false;
    flush();
  });
}

void RedisConnection::flush() {
  if (write_in_flight_ || out_.empty()) return;
  if (state_ != State::kHandshake && state_ != State::kUp) return;
  write_in_flight_ = true;
  writing_.swap(out_);
  out_.clear();
  const unsigned gen = generation_;
  asio::async_write(*stream_, asio::buffer(writing_),
                    [this, gen, s = stream_](boost::system::error_code ec, std::size_t) {
                      if (gen != generation_) return;  // fail() reset the write state already
                      write_in_flight_ = false;
                      writing_.clear();
                      if (ec) {
                        fail("write: " + ec.message());
                        return;
                      }
                      flush();  // whatever was queued meanwhile goes out in one write
                    });
}

void RedisConnection::read() {
  const unsigned gen = generation_;
  // A reply bigger than half the buffer doubles it (complete_reply_size bounds a reply), so that
  // every read takes a good share of what is left of it.
  //
  // A read that filled the buffer doubles it too, up to kBacklogReadBytes: Redis holds more for
  // us. This connection gets one read per turn of a loop that also reads every client socket,
  // and a subscriber hears each relay this instance publishes, so at full load the instance
  // publishes more per turn than 16 KiB of them: the subscriber fell behind, and Redis cut it
  // once its output buffer passed the pub/sub limit (client-output-buffer-limit, 32 MiB), every
  // second or two at 190,000 msg/s, losing what other instances published meanwhile. A read of
  // up to 1 MiB drains more than a turn publishes. The buffer shrinks back once a read leaves
  // it mostly empty.
  if (carried_ > read_buffer_.size() / 2) {
    if (carried_ > static_cast<std::size_t>(kMaxReplyBytes)) {
      fail("a reply of over 512 MiB");
      return;
    }
    read_buffer_.resize(read_buffer_.size() * 2);
  } else if (last_read_filled_ && read_buffer_.size() < kBacklogReadBytes) {
    read_buffer_.resize(read_buffer_.size() * 2);
  } else if (carried_ == 0 && read_buffer_.size() > kReadBufferBytes &&
             last_read_ < read_buffer_.size() / 4) {
    read_buffer_.resize(kReadBufferBytes);
    read_buffer_.shrink_to_fit();
  }
  stream_->async_read_some(
      asio::buffer(read_buffer_.data() + carried_, read_buffer_.size() - carried_),
      [this, gen, s = stream_](boost::system::error_code ec, std::size_t n) {
        if (gen != generation_) return;
        if (ec) {
          fail(ec == asio::error::eof ? std::string("connection closed by server")
                                      : "read: " + ec.message());
          return;
        }
        last_read_ = n;
        last_read_filled_ = carried_ + n == read_buffer_.size();
        std::string_view in(read_buffer_.data(), carried_ + n);
        while (!in.empty() && gen == generation_) {
          // The relay path's replies are read in place; any other whole reply goes to hiredis
          // alone, and one cut short by the read waits at the front of the buffer for the rest.
          // hiredis never holds part of a reply, so the next one can always be read in place.
          FastReply fast;
          std::size_t used =
              parse_fast_reply(in, mode_ == Mode::kSubscriber && state_ == State::kUp, fast);
          if (used > 0) {
            in.remove_prefix(used);
            dispatch_fast(fast);
            continue;
          }
          bool error = false;
          used = complete_reply_size(in, &error);
          if (error) {
            fail("protocol error");
            return;
          }
          if (used == 0) break;
          ReplyPtr reply;
          if (reader_.feed(in.data(), used)) reply = reader_.next(&error);
          if (!reply) {
            fail("protocol error");
            return;
          }
          in.remove_prefix(used);
          dispatch(reply.get());
        }
        if (gen != generation_) return;
        std::memmove(read_buffer_.data(), in.data(), in.size());
        carried_ = in.size();
        read();
      });
}

void RedisConnection::dispatch_fast(const FastReply& fast) {
  if (fast.kind == FastReply::Kind::kMessage) {
    // Only parsed as one when subscribed and up (see read()), as dispatch() requires.
    if (hooks_.on_message) hooks_.on_message(fast.channel, fast.payload);
    return;
  }
  redisReply reply{};
  reply.type = REDIS_REPLY_INTEGER;
  reply.integer = fast.integer;
  dispatch(&reply);
}

void RedisConnection::dispatch(const redisReply* reply) {
  if (mode_ == Mode::kSubscriber && state_ == State::kUp && reply->type == REDIS_REPLY_ARRAY &&
      reply->elements >= 2) {
    const std::string_view kind = reply_text(reply->element[0]);
    // Sharded pub/sub (Redis Cluster) answers the same way under other names.
    if ((kind == "message" || kind == "smessage") && reply->elements == 3) {
      if (hooks_.on_message)
        hooks_.on_message(reply_text(reply->element[1]), reply_text(reply->element[2]));
      return;
    }
    if (kind == "subscribe" || kind == "ssubscribe") {
      if (hooks_.on_subscribed) hooks_.on_subscribed(reply_text(reply->element[1]));
      return;
    }
    if (kind == "unsubscribe" || kind == "sunsubscribe") {
      if (hooks_.on_unsubscribed) hooks_.on_unsubscribed(reply_text(reply->element[1]));
      return;
    }
    if (kind == "pong") {
      last_pong_ = SteadyClock::now();
      return;
    }
  }
  if (pending_.empty()) {
    // A subscriber with no channels gets a plain +PONG.
    if (mode_ == Mode::kSubscriber && reply->type == REDIS_REPLY_STATUS &&
        reply_text(reply) == "PONG") {
      last_pong_ = SteadyClock::now();
      return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
      if (hooks_.on_error) {
        hooks_.on_error(reply_text(reply));
      } else {
        log_.warn("Redis error", {{"connection", name_}, {"err", reply_text(reply)}});
      }
    }
    return;
  }
  Pending p = std::move(pending_.front());
  pending_.pop_front();
  const bool demoted = require_master_ && reply->type == REDIS_REPLY_ERROR &&
                       reply_text(reply).rfind("READONLY", 0) == 0;
  const unsigned gen = generation_;
  p.done(reply);
  // A write refused by a replica: this node is no longer the master. Find the one that is.
  if (demoted && gen == generation_) fail("READONLY: the node is no longer the master");
}

void RedisConnection::fail(const std::string& why) {
  if (state_ == State::kStopped) return;
  const bool was_up = state_ == State::kUp;
  ++generation_;
  state_ = State::kWaiting;
  boost::system::error_code ec;
  stream_->socket().close(ec);
  write_in_flight_ = false;
  writing_.clear();
  out_.clear();
  if (why != last_failure_) {
    log_.warn("Redis connection failed", {{"connection", name_}, {"err", why}});
    last_failure_ = why;
  }
  // Fail every reply still owed, in order; callbacks may enqueue nothing (we are down).
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& p : pending) p.done(nullptr);
  if (was_up && hooks_.on_down) hooks_.on_down(why);
  schedule_reconnect();
}

void RedisConnection::schedule_reconnect() {
  thread_local std::mt19937 rng{std::random_device{}()};
  const auto cap = std::min<long long>(timing_.backoff_max.count(), timing_.backoff_min.count()
                                                                        << std::min(attempt_, 16u));
  ++attempt_;
  // Full jitter between half the step and the step, so instances do not reconnect in lockstep.
  std::uniform_int_distribution<long long> jitter(cap / 2, cap);
  const unsigned gen = generation_;
  timer_.expires_after(std::chrono::milliseconds(jitter(rng)));
  timer_.async_wait([this, gen](boost::system::error_code ec) {
    if (ec || gen != generation_ || state_ == State::kStopped) return;
    connect();
  });
}

void RedisConnection::tick() {
  tick_.expires_after(std::min(timing_.ping_interval / 2, std::chrono::milliseconds(250)));
  tick_.async_wait([this](boost::system::error_code ec) {
    if (ec || state_ == State::kStopped) return;
    const auto now = SteadyClock::now();
    if (state_ == State::kUp) {
      if (!pending_.empty() && now - pending_.front().sent > timing_.command_timeout) {
        fail("reply timeout");
      } else if (mode_ == Mode::kSubscriber && last_ping_ > last_pong_ &&
                 now - last_ping_ > timing_.command_timeout) {
        fail("ping timeout");
      } else if (now - last_ping_ >= timing_.ping_interval &&
                 (mode_ == Mode::kCommand || last_pong_ >= last_ping_)) {
        // Subscriber: one PING at a time, so an unanswered one ages into the timeout above.
        last_ping_ = now;
        if (mode_ == Mode::kSubscriber) {
          send({"PING"});
        } else {
          command({"PING"}, [this](const redisReply* r) {
            if (!is_error(r)) last_pong_ = SteadyClock::now();
          });
        }
      }
    }
    tick();
  });
}

}  // namespace sigsrv
