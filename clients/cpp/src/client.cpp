// The client's I/O: Beast WebSocket (plain or TLS) on a strand, driving SessionCore.
#include "signal_client/client.hpp"

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/json.hpp>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <utility>

#include "session_core.hpp"

namespace signal_client {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace http = beast::http;
namespace ssl = asio::ssl;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using Strand = asio::strand<asio::io_context::executor_type>;

const char* to_string(EventType type) {
  switch (type) {
    case EventType::open:
      return "open";
    case EventType::welcome:
      return "welcome";
    case EventType::offer:
      return "offer";
    case EventType::answer:
      return "answer";
    case EventType::candidate:
      return "candidate";
    case EventType::control:
      return "control";
    case EventType::peer_joined:
      return "peer-joined";
    case EventType::peer_disconnected:
      return "peer-disconnected";
    case EventType::peer_suspended:
      return "peer-suspended";
    case EventType::peer_resumed:
      return "peer-resumed";
    case EventType::resumed:
      return "resumed";
    case EventType::session_lost:
      return "session-lost";
    case EventType::schema_error:
      return "schema-error";
    case EventType::close:
      return "close";
    case EventType::reconnecting:
      return "reconnecting";
    case EventType::queue_overflow:
      return "queue-overflow";
    case EventType::protocol_error:
      return "protocol-error";
  }
  return "?";
}

const char* to_string(State state) {
  switch (state) {
    case State::idle:
      return "idle";
    case State::connecting:
      return "connecting";
    case State::open:
      return "open";
    case State::reconnecting:
      return "reconnecting";
    case State::closed:
      return "closed";
  }
  return "?";
}

namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// What a transport reports to the client (on the strand).
class TransportSink {
 public:
  virtual ~TransportSink() = default;
  virtual void transport_opened(std::uint64_t id) = 0;
  virtual void transport_message(std::uint64_t id, std::string text) = 0;
  // `too_big`: the server sent a message over max_message_bytes.
  virtual void transport_closed(std::uint64_t id, int code, std::string reason, bool clean,
                                bool too_big) = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual void start() = 0;
  virtual void write(std::string text) = 0;
  virtual void close(int code, std::string reason) = 0;  // close frame, then the socket ends
  virtual void abort() = 0;                              // the socket ends now
};

struct TransportConfig {
  detail::Url url;
  std::string target;
  std::string subprotocol;
  std::size_t max_message_bytes = 0;
  std::chrono::milliseconds handshake_timeout{0};
  std::chrono::milliseconds idle_timeout{0};
};

// One WebSocket connection attempt. Its pending operations own it; the sink is held weakly.
template <class NextLayer>
class WsTransport : public Transport, public std::enable_shared_from_this<WsTransport<NextLayer>> {
 public:
  template <class... Args>
  WsTransport(std::uint64_t id, std::weak_ptr<TransportSink> sink, TransportConfig config,
              Strand strand, std::shared_ptr<ssl::context> tls, Args&&... args)
      : id_(id),
        sink_(std::move(sink)),
        config_(std::move(config)),
        strand_(strand),
        tls_(std::move(tls)),
        resolver_(strand),
        ws_(std::forward<Args>(args)...) {}

  void start() override {
    auto self = this->shared_from_this();
    beast::get_lowest_layer(ws_).expires_after(config_.handshake_timeout);
    resolver_.async_resolve(config_.url.host, config_.url.port,
                            [self](error_code ec, tcp::resolver::results_type results) {
                              if (ec) return self->fail(ec);
                              self->on_resolved(results);
                            });
  }

  void write(std::string text) override {
    if (done_ || closing_) return;
    outbox_.push_back(std::move(text));
    if (!writing_ && opened_) write_next();
  }

  void close(int code, std::string reason) override {
    if (done_ || closing_) return;
    closing_ = true;
    close_code_ = code;
    close_reason_ = std::move(reason);
    if (!opened_) return abort();
    if (!writing_) start_close();
  }

  void abort() override {
    if (done_) return;
    done_ = true;
    error_code ignored;
    resolver_.cancel();
    beast::get_lowest_layer(ws_).socket().close(ignored);
  }

 private:
  void on_resolved(const tcp::resolver::results_type& results) {
    if (done_) return;
    auto self = this->shared_from_this();
    beast::get_lowest_layer(ws_).async_connect(results,
                                               [self](error_code ec, const tcp::endpoint&) {
                                                 if (ec) return self->fail(ec);
                                                 self->on_connected();
                                               });
  }

  void on_connected();  // TLS handshake (wss) or straight to the upgrade

  void upgrade() {
    if (done_) return;
    beast::get_lowest_layer(ws_).expires_never();
    websocket::stream_base::timeout t{};
    t.handshake_timeout = config_.handshake_timeout;
    // The server pings every HEARTBEAT_INTERVAL_MS; a network that silently stops forwarding is
    // noticed here: a ping after half the idle time, the connection dropped after all of it.
    t.idle_timeout = config_.idle_timeout.count() > 0
                         ? std::chrono::nanoseconds(config_.idle_timeout)
                         : websocket::stream_base::none();
    t.keep_alive_pings = true;
    ws_.set_option(t);
    ws_.read_message_max(config_.max_message_bytes);
    const std::string subprotocol = config_.subprotocol;
    ws_.set_option(websocket::stream_base::decorator([subprotocol](websocket::request_type& req) {
      req.set(http::field::user_agent, "signal-client-cpp");
      if (!subprotocol.empty()) req.set(http::field::sec_websocket_protocol, subprotocol);
    }));
    auto self = this->shared_from_this();
    ws_.async_handshake(response_, config_.url.host_header, config_.target, [self](error_code ec) {
      if (ec) return self->fail(ec);
      self->on_upgraded();
    });
  }

  void on_upgraded() {
    if (done_) return;
    opened_ = true;
    if (auto sink = sink_.lock(); sink && !closing_) sink->transport_opened(id_);
    read();
    if (closing_) {
      start_close();
    } else if (!outbox_.empty() && !writing_) {
      write_next();
    }
  }

  void read() {
    auto self = this->shared_from_this();
    ws_.async_read(buffer_, [self](error_code ec, std::size_t) {
      if (ec) return self->fail(ec);
      std::string text = beast::buffers_to_string(self->buffer_.data());
      self->buffer_.consume(self->buffer_.size());
      if (auto sink = self->sink_.lock()) sink->transport_message(self->id_, std::move(text));
      if (!self->done_) self->read();
    });
  }

  void write_next() {
    if (outbox_.empty() || done_) return;
    writing_ = true;
    ws_.text(true);
    auto self = this->shared_from_this();
    ws_.async_write(asio::buffer(outbox_.front()), [self](error_code ec, std::size_t) {
      self->writing_ = false;
      if (ec) return;  // the read side reports the end of the connection
      self->outbox_.pop_front();
      if (self->closing_) {
        if (self->outbox_.empty())
          self->start_close();
        else
          self->write_next();
        return;
      }
      self->write_next();
    });
  }

  void start_close() {
    if (done_ || close_started_) return;
    close_started_ = true;
    auto self = this->shared_from_this();
    websocket::close_reason cr(static_cast<websocket::close_code>(close_code_),
                               close_reason_.substr(0, 123));
    // Beast's handshake timeout bounds the wait for the server's answer.
    ws_.async_close(cr, [self](error_code) { self->abort(); });
  }

  void fail(error_code ec) {
    if (done_) return;
    int code = close_code::kAbnormal;
    std::string reason = ec.message();
    bool clean = false;
    bool too_big = false;
    if (ec == websocket::error::closed) {
      code = ws_.reason().code;
      reason = std::string(ws_.reason().reason.c_str());
      clean = true;
      if (code == 0) code = 1005;  // a close frame without a code
    } else if (ec == websocket::error::message_too_big) {
      code = close_code::kTooBig;
      too_big = true;
    }
    abort();
    if (auto sink = sink_.lock()) sink->transport_closed(id_, code, reason, clean, too_big);
  }

  std::uint64_t id_;
  std::weak_ptr<TransportSink> sink_;
  TransportConfig config_;
  Strand strand_;
  std::shared_ptr<ssl::context> tls_;  // outlives the stream that uses it
  tcp::resolver resolver_;
  websocket::stream<NextLayer> ws_;
  beast::flat_buffer buffer_;
  websocket::response_type response_;
  std::deque<std::string> outbox_;
  bool opened_ = false;
  bool writing_ = false;
  bool closing_ = false;
  bool close_started_ = false;
  bool done_ = false;
  int close_code_ = close_code::kNormal;
  std::string close_reason_;
};

template <>
void WsTransport<beast::tcp_stream>::on_connected() {
  upgrade();
}

template <>
void WsTransport<beast::ssl_stream<beast::tcp_stream>>::on_connected() {
  if (done_) return;
  auto& stream = ws_.next_layer();
  error_code ec;
  asio::ip::make_address(config_.url.host, ec);
  // SNI names hosts, never IP addresses (RFC 6066).
  if (ec && !SSL_set_tlsext_host_name(stream.native_handle(), config_.url.host.c_str())) {
    return fail(error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category()));
  }
  stream.set_verify_callback(ssl::host_name_verification(config_.url.host));
  auto self = shared_from_this();
  stream.async_handshake(ssl::stream_base::client, [self](error_code e) {
    if (e) return self->fail(e);
    self->upgrade();
  });
}

std::function<double()> default_random() {
  auto gen = std::make_shared<std::mt19937_64>(std::random_device{}());
  return [gen] { return std::uniform_real_distribution<double>(0.0, 1.0)(*gen); };
}

}  // namespace

struct Client::Impl : TransportSink, std::enable_shared_from_this<Client::Impl> {
  Impl(asio::io_context& io, Options opts)
      : io_(io),
        strand_(asio::make_strand(io)),
        timer_(strand_),
        options_(std::move(opts)),
        core_(options_, options_.random ? options_.random : default_random()) {}

  // --- any thread ---

  template <class F>
  void run_on_strand(F&& f) {
    std::weak_ptr<Impl> weak = shared_from_this();
    asio::post(strand_, [weak, f = std::forward<F>(f)]() mutable {
      if (auto self = weak.lock()) f(*self);
    });
  }

  void deliver(Event ev) {
    if (options_.on_event) {
      std::lock_guard<std::mutex> lock(callback_mutex_);
      if (dead_) return;
      options_.on_event(ev);
      return;
    }
    std::lock_guard<std::mutex> lock(events_mutex_);
    if (events_.size() >= options_.event_queue_limit) events_.pop_front();
    events_.push_back(std::move(ev));
    events_cv_.notify_all();
  }

  // --- the strand ---

  void apply(detail::Actions actions) {
    for (auto& a : actions) {
      switch (a.kind) {
        case detail::Action::kOpen:
          open_transport(a.text);
          break;
        case detail::Action::kWrite:
          if (transport_) transport_->write(std::move(a.text));
          break;
        case detail::Action::kClose:
          if (transport_) transport_->close(a.code, a.reason);
          transport_.reset();
          break;
        case detail::Action::kSchedule:
          schedule(a.delay_ms);
          break;
        case detail::Action::kCancelTimer:
          timer_.cancel();
          break;
        case detail::Action::kEmit:
          pending_events_.push_back(std::move(a.event));
          break;
      }
    }
    {
      std::lock_guard<std::mutex> lock(snapshot_mutex_);
      state_ = core_.state();
      client_id_ = core_.client_id();
    }
    // Events go out after the state is updated, so a callback sees the state they announce.
    auto events = std::move(pending_events_);
    pending_events_.clear();
    for (auto& ev : events) deliver(std::move(ev));
  }

  void open_transport(const std::string& target) {
    if (transport_) transport_->abort();
    TransportConfig config;
    config.url = url_;
    config.target = target;
    config.subprotocol = options_.subprotocol;
    config.max_message_bytes = options_.max_message_bytes;
    config.handshake_timeout = std::chrono::milliseconds(options_.handshake_timeout_ms);
    config.idle_timeout = std::chrono::milliseconds(options_.idle_timeout_ms);
    const auto id = ++transport_id_;
    std::weak_ptr<TransportSink> sink = std::static_pointer_cast<TransportSink>(shared_from_this());
    if (url_.tls) {
      auto t = std::make_shared<WsTransport<beast::ssl_stream<beast::tcp_stream>>>(
          id, sink, std::move(config), strand_, tls_, strand_, *tls_);
      transport_ = t;
    } else {
      auto t = std::make_shared<WsTransport<beast::tcp_stream>>(id, sink, std::move(config),
                                                                strand_, nullptr, strand_);
      transport_ = t;
    }
    transport_->start();
  }

  void schedule(int delay_ms) {
    timer_.expires_after(std::chrono::milliseconds(delay_ms));
    std::weak_ptr<Impl> weak = shared_from_this();
    timer_.async_wait([weak](error_code ec) {
      if (ec) return;
      if (auto self = weak.lock()) self->apply(self->core_.on_timer());
    });
  }

  void transport_opened(std::uint64_t id) override {
    if (id != transport_id_ || !transport_) return;
    apply(core_.on_opened(now_ms()));
  }

  void transport_message(std::uint64_t id, std::string text) override {
    if (id != transport_id_ || !transport_) return;
    apply(core_.on_message(text, now_ms()));
  }

  void transport_closed(std::uint64_t id, int code, std::string reason, bool clean,
                        bool too_big) override {
    if (id != transport_id_ || !transport_) return;
    transport_.reset();
    if (too_big) {
      Event ev;
      ev.type = EventType::protocol_error;
      ev.code = code;
      ev.reason =
          "message over max_message_bytes (" + std::to_string(options_.max_message_bytes) + ")";
      pending_events_.push_back(std::move(ev));
    }
    apply(core_.on_closed(code, reason, clean, now_ms()));
  }

  void shutdown() {
    timer_.cancel();
    if (transport_) transport_->abort();
    transport_.reset();
  }

  asio::io_context& io_;
  Strand strand_;
  asio::steady_timer timer_;
  Options options_;
  detail::SessionCore core_;
  detail::Url url_;
  std::shared_ptr<ssl::context> tls_;
  std::shared_ptr<Transport> transport_;
  std::uint64_t transport_id_ = 0;
  std::vector<Event> pending_events_;

  std::mutex callback_mutex_;
  bool dead_ = false;  // guarded by callback_mutex_
  std::mutex events_mutex_;
  std::condition_variable events_cv_;
  std::deque<Event> events_;

  mutable std::mutex snapshot_mutex_;
  State state_ = State::idle;
  std::string client_id_;
  std::string last_error_;
  bool started_ = false;
  bool closed_by_user_ = false;
};

// The client's own I/O thread (the one-argument constructor).
struct Client::Runner {
  asio::io_context io{1};
  asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(io);
  std::thread thread;
};

Client::Client(Options options) : runner_(std::make_unique<Runner>()) {
  impl_ = std::make_shared<Impl>(runner_->io, std::move(options));
  runner_->thread = std::thread([io = &runner_->io] { io->run(); });
}

Client::Client(asio::io_context& io, Options options)
    : impl_(std::make_shared<Impl>(io, std::move(options))) {}

Client::~Client() {
  {
    std::lock_guard<std::mutex> lock(impl_->callback_mutex_);
    impl_->dead_ = true;
  }
  // The abort runs on the strand; the posted handler keeps the Impl alive until then.
  auto impl = std::move(impl_);
  asio::post(impl->strand_, [impl] { impl->shutdown(); });
  impl.reset();
  if (runner_) {
    // With the socket aborted and the timer cancelled nothing is left to wait for: run()
    // returns once their handlers ran, and the Impl with them.
    runner_->work.reset();
    runner_->thread.join();
  }
}

bool Client::connect() {
  std::string error;
  auto url = detail::parse_url(impl_->options_.url, &error);
  if (url && impl_->options_.room_id.empty()) error = "room_id is empty";
  std::shared_ptr<ssl::context> tls;
  if (url && error.empty() && url->tls) {
    tls = std::make_shared<ssl::context>(ssl::context::tls_client);
    error_code ec;
    if (impl_->options_.verify_peer) {
      tls->set_verify_mode(ssl::verify_peer, ec);
      if (!ec) {
        if (impl_->options_.ca_file.empty()) {
          tls->set_default_verify_paths(ec);
        } else {
          tls->load_verify_file(impl_->options_.ca_file, ec);
        }
      }
    } else {
      tls->set_verify_mode(ssl::verify_none, ec);
    }
    if (ec) error = "TLS setup (" + impl_->options_.ca_file + "): " + ec.message();
  }
  std::lock_guard<std::mutex> lock(impl_->snapshot_mutex_);
  if (!error.empty()) {
    impl_->last_error_ = error;
    return false;
  }
  if (impl_->started_ && impl_->state_ != State::closed) {
    impl_->last_error_ = "already connecting or connected";
    return false;
  }
  impl_->started_ = true;
  impl_->closed_by_user_ = false;
  impl_->state_ = State::connecting;
  impl_->run_on_strand([url = *url, tls](Impl& self) {
    self.url_ = url;
    self.tls_ = tls;
    self.apply(self.core_.connect(url.target));
  });
  return true;
}

void Client::close(int code, const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(impl_->snapshot_mutex_);
    impl_->closed_by_user_ = true;
  }
  impl_->run_on_strand([code, reason](Impl& self) { self.apply(self.core_.close(code, reason)); });
}

namespace {

bool non_empty(const std::string& s) {
  return !s.empty();
}

}  // namespace

bool Client::send_offer(const std::string& sdp) {
  if (!non_empty(sdp)) return false;
  return send_text(json::serialize(json::object{{"type", "offer"}, {"sdp", sdp}}));
}

bool Client::send_answer(const std::string& sdp) {
  if (!non_empty(sdp)) return false;
  return send_text(json::serialize(json::object{{"type", "answer"}, {"sdp", sdp}}));
}

bool Client::send_candidate(const std::string& candidate, std::optional<std::string> sdp_mid,
                            std::optional<int> sdp_mline_index) {
  if (!non_empty(candidate)) return false;
  if (sdp_mline_index && *sdp_mline_index < 0) return false;
  json::object o{{"type", "candidate"}, {"candidate", candidate}};
  if (sdp_mid) o["sdpMid"] = *sdp_mid;
  if (sdp_mline_index) o["sdpMLineIndex"] = *sdp_mline_index;
  return send_text(json::serialize(o));
}

bool Client::send_control(const std::string& action, const std::string& payload_json) {
  if (!non_empty(action)) return false;
  json::object o{{"type", "control"}, {"action", action}};
  if (!payload_json.empty()) {
    error_code ec;
    auto payload = json::parse(payload_json, ec);
    if (ec) return false;
    o["payload"] = std::move(payload);
  }
  return send_text(json::serialize(o));
}

bool Client::send_text(std::string text) {
  {
    std::lock_guard<std::mutex> lock(impl_->snapshot_mutex_);
    if (impl_->closed_by_user_ || (impl_->started_ && impl_->state_ == State::closed)) {
      return false;
    }
  }
  impl_->run_on_strand([text = std::move(text)](Impl& self) mutable {
    detail::Actions out;
    self.core_.send(std::move(text), out);
    self.apply(std::move(out));
  });
  return true;
}

std::optional<Event> Client::poll_event() {
  std::lock_guard<std::mutex> lock(impl_->events_mutex_);
  if (impl_->events_.empty()) return std::nullopt;
  Event ev = std::move(impl_->events_.front());
  impl_->events_.pop_front();
  return ev;
}

std::optional<Event> Client::wait_event(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(impl_->events_mutex_);
  if (!impl_->events_cv_.wait_for(lock, timeout, [&] { return !impl_->events_.empty(); })) {
    return std::nullopt;
  }
  Event ev = std::move(impl_->events_.front());
  impl_->events_.pop_front();
  return ev;
}

State Client::state() const {
  std::lock_guard<std::mutex> lock(impl_->snapshot_mutex_);
  return impl_->state_;
}

std::string Client::client_id() const {
  std::lock_guard<std::mutex> lock(impl_->snapshot_mutex_);
  return impl_->client_id_;
}

std::string Client::last_error() const {
  std::lock_guard<std::mutex> lock(impl_->snapshot_mutex_);
  return impl_->last_error_;
}

}  // namespace signal_client
