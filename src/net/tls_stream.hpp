// A TCP socket that may carry TLS, chosen per connection at run time.
//
// The server port speaks TLS when TLS_CERT_FILE is set and plain TCP otherwise, and a Redis
// connection speaks TLS for rediss:// only. Templating every session on its stream type would
// compile Beast's WebSocket and HTTP code twice (the slowest files of the build) for a choice
// that costs one predictable branch per I/O call; this type makes the choice at run time and
// satisfies Asio's AsyncReadStream/AsyncWriteStream and Beast's teardown and close points.
//
// Write coalescing (plain TCP WebSocket connections, see enable_coalescing()): frames are
// appended to one buffer per connection. A relayed message (write_text_frame) to a connection
// that was not written to lately goes out at once. When that write ends, the connection joins
// the thread's flush pass, a handler posted behind the loop's queue, and what is relayed to it
// until then is written by the pass, in one write(). Beast completes each message read through
// the loop's queue, so a sender's next message arrives one queue pass later; while handlers keep
// adding to connections in the pass, it waits up to three more queue passes for them. A
// connection that got nothing by its pass is idle again. So a connection receiving a stream gets
// one write() per few messages, and a single message (a join's welcome, a quiet room) waits for
// nothing. Beast's own frames (ping, pong, close, through async_write_some) go out at once with
// whatever is buffered before them. Both append whole frames on the connection's one thread, so
// they never interleave.
#pragma once

#include <array>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/teardown.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sigsrv {

// Told when Beast starts a closing teardown: its close frame is written (or buffered), whether it
// answers the client's close frame, fails the connection for a protocol error, or ends a close
// the server began. After that the socket ends when the client closes it, which a client may never
// do.
class TeardownObserver {
 public:
  virtual void on_teardown() = 0;

 protected:
  ~TeardownObserver() = default;
};

class MaybeTlsStream {
 public:
  using tcp = boost::asio::ip::tcp;
  using TlsLayer = boost::asio::ssl::stream<tcp::socket>;
  // The io_context's own executor rather than the socket's type-erased any_io_executor: Beast's
  // operations copy, track and destroy the stream's executor dozens of times per message read,
  // which costs an indirect call each with any_io_executor and next to nothing with this one.
  using executor_type = boost::asio::io_context::executor_type;

  // `socket` must have been made on an io_context (all of ours are: the loops', the bus').
  explicit MaybeTlsStream(tcp::socket socket) : plain_(std::move(socket)) {
    if (plain_.get_executor().target<executor_type>() == nullptr) {
      throw std::invalid_argument("MaybeTlsStream: the socket's executor is not an io_context's");
    }
  }
  MaybeTlsStream(MaybeTlsStream&& other) noexcept
      : plain_(std::move(other.plain_)),
        tls_(std::move(other.tls_)),
        coalesce_(other.coalesce_),
        out_(std::move(other.out_)),
        close_code_(other.close_code_),
        teardown_observer_(other.teardown_observer_) {
    if (out_) out_->owner = this;
  }
  MaybeTlsStream& operator=(MaybeTlsStream&&) = delete;
  MaybeTlsStream(const MaybeTlsStream&) = delete;
  MaybeTlsStream& operator=(const MaybeTlsStream&) = delete;
  ~MaybeTlsStream() {
    if (out_) out_->owner = nullptr;  // a flush in flight must not come back to us
  }

  // Wraps the socket in TLS; the handshake is the caller's next step.
  void start_tls(boost::asio::ssl::context& ctx) {
    tls_ = std::make_unique<TlsLayer>(std::move(plain_), ctx);
  }
  // A client's TLS: SNI for servers behind a TLS proxy, and a certificate that must name `host`,
  // the host dialled.
  void start_client_tls(boost::asio::ssl::context& ctx, const std::string& host) {
    start_tls(ctx);
    SSL_set_tlsext_host_name(tls_->native_handle(), host.c_str());
    tls_->set_verify_callback(boost::asio::ssl::host_name_verification(host));
  }
  bool is_tls() const { return tls_ != nullptr; }
  TlsLayer& tls() { return *tls_; }

  tcp::socket& socket() { return tls_ ? tls_->next_layer() : plain_; }
  executor_type get_executor() { return *plain_.get_executor().target<executor_type>(); }

  // From here on, writes are coalesced (see the top of this file). Only for plain TCP: a TLS
  // stream must outlive its operations, and a coalesced flush does not keep its owner alive.
  // Only for writers that end with a teardown (WebSocket): closing the socket directly drops
  // what is still buffered.
  void enable_coalescing() { coalesce_ = !tls_; }
  bool coalescing() const { return coalesce_; }
  // Bytes accepted but not yet written to the socket.
  std::size_t buffered() const { return out_ ? out_->pending.size() + out_->writing.size() : 0; }
  // Drops what is buffered and not yet handed to the socket (a slow reader being closed).
  // Its memory goes too: the socket may stay open for a closing handshake it never answers.
  void discard_pending() {
    if (out_) std::string().swap(out_->pending);
  }
  // Appends one unmasked, unfragmented text frame (RFC 6455 section 5.2) carrying `payload`.
  // Coalescing streams only. After a write error or Beast's close frame the frame is dropped: the
  // read side ends the connection.
  void write_text_frame(std::string_view payload);
  // Nothing buffered or in flight.
  bool idle() const { return !out_ || (!out_->flushing && out_->pending.empty()); }
  // Runs `done` once the buffer is on the socket (at once when idle).
  void when_flushed(std::function<void(boost::system::error_code)> done) {
    if (idle()) {
      done(out_ ? out_->error : boost::system::error_code{});
      return;
    }
    out_->on_flushed = std::move(done);
  }

  template <class MutableBuffers, class Handler>
  void async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    if (tls_) {
      tls_->async_read_some(buffers, std::forward<Handler>(handler));
    } else {
      plain_.async_read_some(buffers, std::forward<Handler>(handler));
    }
  }

  // The next close frame written carries `code` in place of the one Beast put there. Beast
  // answers a client's close frame with its code whenever it deems the code valid, and it deems
  // 5000-65535 valid, which RFC 6455 leaves undefined (section 7.4.2): the session replaces that
  // echo with 1002. Beast writes the frame in one call, so it is found whole in one write.
  void replace_next_close_code(uint16_t code) { close_code_ = code; }

  // `o` (which must outlive the stream's operations) hears of every teardown from now on.
  void observe_teardown(TeardownObserver* o) { teardown_observer_ = o; }
  void notify_teardown() {
    if (teardown_observer_) teardown_observer_->on_teardown();
  }

  template <class ConstBuffers, class Handler>
  void async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    if (close_code_ != 0 && rewrite_close_frame(buffers)) [[unlikely]] {
      write_some(boost::asio::const_buffer(rewritten_.data(), rewritten_.size()),
                 std::forward<Handler>(handler));
      return;
    }
    write_some(buffers, std::forward<Handler>(handler));
  }

 private:
  template <class ConstBuffers, class Handler>
  void write_some(const ConstBuffers& buffers, Handler&& handler) {
    if (tls_) {
      tls_->async_write_some(buffers, std::forward<Handler>(handler));
      return;
    }
    if (!coalesce_) {
      plain_.async_write_some(buffers, std::forward<Handler>(handler));
      return;
    }
    // Accept every byte now (so Beast hands over a frame in one call), complete from the loop,
    // never inline.
    const std::size_t n = boost::asio::buffer_size(buffers);
    Outbox& o = outbox();
    const boost::system::error_code ec = o.error;
    if (!ec) {
      const std::size_t old = o.pending.size();
      o.pending.resize(old + n);
      boost::asio::buffer_copy(boost::asio::buffer(o.pending.data() + old, n), buffers);
      // Beast's frames come whole, one or more per call. Its close frame is the last frame of
      // the connection (RFC 6455 section 5.5.1): relayed frames offered after it are dropped,
      // as after a write error, though they would still fit before the teardown.
      if (n != 0 && static_cast<unsigned char>(o.pending[old]) == 0x88) {
        o.error = boost::asio::error::shut_down;
      }
      schedule_flush();
    }
    boost::asio::post(get_executor(),
                      [h = std::forward<Handler>(handler), ec, n]() mutable { h(ec, ec ? 0 : n); });
  }

  // When `buffers` hold Beast's answer to a close frame (FIN close, unmasked, a code and no
  // reason): a copy in rewritten_ with the code replaced by close_code_ (then cleared). Beast
  // writes nothing after it, so the copy outlives the write.
  template <class ConstBuffers>
  bool rewrite_close_frame(const ConstBuffers& buffers) {
    if (boost::asio::buffer_size(buffers) != rewritten_.size()) return false;
    boost::asio::buffer_copy(boost::asio::buffer(rewritten_), buffers);
    if (rewritten_[0] != static_cast<char>(0x88) || rewritten_[1] != 2) return false;
    rewritten_[2] = static_cast<char>(close_code_ >> 8);
    rewritten_[3] = static_cast<char>(close_code_ & 0xFF);
    close_code_ = 0;
    return true;
  }

  // Coalesced writes. Shared with the handlers of the flush, which may run after the stream is
  // gone (they then only release this).
  struct Outbox {
    MaybeTlsStream* owner = nullptr;
    std::string pending;              // accepted, not yet handed to the socket
    std::string writing;              // the socket write in flight
    bool flushing = false;            // a socket write is in flight
    bool dirty = false;               // in this thread's flush pass (relayed frames wait there)
    boost::system::error_code error;  // sticky: later writes fail with it
    std::function<void(boost::system::error_code)> on_flushed;
  };

  // An idle connection keeps no write buffers (finish_flush()), so a busy loop would allocate an
  // Outbox and grow its buffer for nearly every message. Instead a thread keeps a few idle
  // Outboxes, with their buffers' capacity, for its next writer.
  static constexpr std::size_t kSpareOutboxes = 32;
  static constexpr std::size_t kSpareBufferBytes = 4096;  // larger buffers are freed
  static std::vector<std::shared_ptr<Outbox>>& spare_outboxes() {
    thread_local std::vector<std::shared_ptr<Outbox>> spare;
    return spare;
  }

  Outbox& outbox() {
    if (!out_) {
      auto& spare = spare_outboxes();
      if (spare.empty()) {
        out_ = std::make_shared<Outbox>();
      } else {
        out_ = std::move(spare.back());
        spare.pop_back();
      }
      out_->owner = this;
    }
    return *out_;
  }

  // Gives up out_, idle and without error, keeping it for reuse when it is small.
  void release_outbox() {
    std::shared_ptr<Outbox> out = std::move(out_);
    auto& spare = spare_outboxes();
    if (spare.size() >= kSpareOutboxes || out->on_flushed || out->dirty ||
        out->pending.capacity() + out->writing.capacity() > kSpareBufferBytes) {
      return;
    }
    out->owner = nullptr;
    out->pending.clear();
    out->writing.clear();
    spare.push_back(std::move(out));
  }

  void schedule_flush() {
    if (!out_->flushing) flush();  // else the write in flight takes it when it ends
  }

  // Relayed frames are written by the thread's flush pass, one write() per connection for
  // everything the loop relayed to it meanwhile (see the top of this file).
  struct FlushPass {
    std::vector<std::shared_ptr<Outbox>> dirty;
    bool posted = false;
    std::size_t coalesced = 0;  // frames since the pass was last posted that joined a buffer
                                // already waiting for it
    unsigned waits = 0;         // times the pass has posted itself again
  };
  static FlushPass& flush_pass() {
    thread_local FlushPass pass;
    return pass;
  }
  // In a trial (500 rooms, window 8, every relayed frame through the pass): sendto per relayed
  // message 0.77 with no wait, then 0.46, 0.29, 0.20 and 0.19 with one to four waits.
  static constexpr unsigned kMaxFlushWaits = 3;

  // A relayed frame was appended to out_.
  void relayed_frame_added() {
    Outbox& o = *out_;
    if (o.dirty) {
      ++flush_pass().coalesced;  // the pass writes it, with what else comes meanwhile
    } else if (!o.flushing) {
      flush();  // not written to since the last pass: at once
    }
    // else the write in flight hands it to the pass when it ends
  }

  // out_ is written (or, idle, released) by the thread's next flush pass.
  void join_flush_pass() {
    FlushPass& pass = flush_pass();
    if (!out_->dirty) {
      out_->dirty = true;
      pass.dirty.push_back(out_);
    }
    if (!pass.posted) {
      pass.posted = true;
      pass.coalesced = 0;
      pass.waits = 0;
      boost::asio::post(get_executor(), [ex = get_executor()] { run_flush_pass(ex); });
    }
  }

  static void run_flush_pass(const executor_type& ex) {
    FlushPass& pass = flush_pass();
    // Handlers that ran since the pass was posted added to buffers already waiting (a sender's
    // next messages, read one per queue pass): those queued behind them likely will too, so
    // wait for them, a bounded number of times. Frames that each went to a different connection
    // (joins: welcome, peer-joined) gain nothing from a wait and go at once.
    if (pass.coalesced != 0 && pass.waits < kMaxFlushWaits) {
      ++pass.waits;
      pass.coalesced = 0;
      boost::asio::post(ex, [ex] { run_flush_pass(ex); });
      return;
    }
    pass.posted = false;
    std::vector<std::shared_ptr<Outbox>> dirty;
    dirty.swap(pass.dirty);  // what joins during the flushes below goes to the next pass
    for (const auto& out : dirty) {
      out->dirty = false;
      if (!out->owner || out->flushing) continue;  // gone, or its write's end brings it back
      if (!out->pending.empty()) {
        out->owner->flush();
      } else {
        out->owner->finish_flush(out);  // nothing came: idle again
      }
    }
    dirty.clear();
    if (pass.dirty.empty()) pass.dirty.swap(dirty);  // keep the capacity
  }

  void flush() {
    Outbox& o = *out_;
    o.flushing = true;
    o.writing.swap(o.pending);
    o.pending.clear();
    boost::asio::async_write(
        plain_, boost::asio::buffer(o.writing),
        boost::asio::bind_executor(get_executor(),
                                   [out = out_](boost::system::error_code ec, std::size_t) {
                                     out->flushing = false;
                                     out->writing.clear();
                                     if (ec) {
                                       out->error = ec;
                                       out->pending.clear();
                                       if (out->owner) out->owner->finish_flush(out);
                                       return;
                                     }
                                     if (!out->owner) return;
                                     // A teardown waiting for the buffer to drain goes on now.
                                     if (out->pending.empty() && out->on_flushed) {
                                       std::exchange(out->on_flushed, nullptr)(out->error);
                                     }
                                     // The connection stays with the pass until the next one: what
                                     // is relayed to it meanwhile (its sender's next messages, one
                                     // queue pass apart) goes out together.
                                     if (out->owner) out->owner->join_flush_pass();
                                   }));
  }

  // Idle again: tell a waiting teardown, and keep no write buffers on an idle connection
  // (unless an error must stay recorded).
  void finish_flush(const std::shared_ptr<Outbox>& out) {
    if (out->on_flushed) std::exchange(out->on_flushed, nullptr)(out->error);
    if (!out->error && out_ == out && idle()) release_outbox();
  }

  // After start_tls() the socket lives inside tls_; plain_ is then a closed, moved-from socket
  // kept only for its executor (moving a socket keeps the executor).
  tcp::socket plain_;
  std::unique_ptr<TlsLayer> tls_;
  bool coalesce_ = false;
  std::shared_ptr<Outbox> out_;
  uint16_t close_code_ = 0;          // replace_next_close_code(); 0: none
  std::array<char, 4> rewritten_{};  // the rewritten close frame (a TLS write reads it)
  TeardownObserver* teardown_observer_ = nullptr;
};

inline void MaybeTlsStream::write_text_frame(std::string_view payload) {
  Outbox& o = outbox();
  if (o.error) return;
  std::string& p = o.pending;
  const std::size_t n = payload.size();
  p.push_back(static_cast<char>(0x81));  // FIN, text
  if (n < 126) {
    p.push_back(static_cast<char>(n));
  } else if (n <= 0xFFFF) {
    p.push_back(static_cast<char>(126));
    p.push_back(static_cast<char>(n >> 8));
    p.push_back(static_cast<char>(n & 0xFF));
  } else {
    p.push_back(static_cast<char>(127));
    for (int shift = 56; shift >= 0; shift -= 8) {
      p.push_back(static_cast<char>((static_cast<uint64_t>(n) >> shift) & 0xFF));
    }
  }
  p.append(payload);
  relayed_frame_added();
}

// Beast's customisation points, found by argument-dependent lookup.
inline void beast_close_socket(MaybeTlsStream& s) {
  boost::system::error_code ec;
  s.socket().close(ec);
}

inline void teardown(boost::beast::role_type role, MaybeTlsStream& s,
                     boost::system::error_code& ec) {
  if (s.is_tls()) {
    boost::beast::teardown(role, s.tls(), ec);
  } else {
    boost::beast::websocket::teardown(role, s.socket(), ec);
  }
}

template <class Handler>
void async_teardown(boost::beast::role_type role, MaybeTlsStream& s, Handler&& handler) {
  s.notify_teardown();
  if (!s.idle()) {
    // The close frame is still in the write buffer: shut the socket down once it is out.
    // (The WebSocket close operation keeps the stream's owner alive meanwhile.)
    auto h = std::make_shared<std::decay_t<Handler>>(std::forward<Handler>(handler));
    s.when_flushed([role, &s, h](boost::system::error_code) {
      boost::beast::websocket::async_teardown(role, s.socket(), std::move(*h));
    });
    return;
  }
  if (s.is_tls()) {
    boost::beast::async_teardown(role, s.tls(), std::forward<Handler>(handler));
  } else {
    boost::beast::websocket::async_teardown(role, s.socket(), std::forward<Handler>(handler));
  }
}

}  // namespace sigsrv
