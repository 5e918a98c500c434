// WebSocket session, socket side: upgrade, read loop, bounded writes, heartbeat, probe, close.
#include "net/ws_session.hpp"

#include <sys/socket.h>

#include <cerrno>

#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include "net/server.hpp"
#include "net/ws_admission.hpp"
#include "obs/metrics.hpp"
#include "signaling/protocol.hpp"

namespace sigsrv {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace http = beast::http;

namespace {

// The highest close code RFC 6455 defines a range for (4000-4999: private use, section 7.4.2).
constexpr uint16_t kMaxCloseCode = 4999;

using WsStream = websocket::stream<MaybeTlsStream, false>;

// Beast's read buffer: its stream's `impl_->rd_buf`, a private member without a public accessor.
// receive() fills it between frames, as Beast's own read of a frame header would, and
// read_next() must not wait on the socket for bytes it already holds. The explicit instantiation
// below may name the private member (C++20 [temp.spec.general]/6); a Beast without
// `impl_->rd_buf` fails to compile here.
auto& beast_read_buffer(WsStream& ws);
template <auto Impl>
struct BeastInput {
  friend auto& beast_read_buffer(WsStream& ws) { return (ws.*Impl)->rd_buf; }
};
template struct BeastInput<&WsStream::impl_>;

// Allocates an operation at its own size. Asio's default recycles the thread's last freed
// operation block when it fits, so a small wait that outlives its handler (await_data() on an
// idle connection) would keep whatever larger block was freed just before, such as Beast's read.
template <class T>
struct ExactAllocator {
  using value_type = T;
  ExactAllocator() = default;
  template <class U>
  ExactAllocator(const ExactAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T))); }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p); }
  friend bool operator==(ExactAllocator, ExactAllocator) { return true; }
};

}  // namespace

WsSession::WsSession(Server& server, Loop& loop, MaybeTlsStream stream)
    : server_(server), loop_(loop), ws_(std::move(stream)), member_(server.config()) {
  server_.websocket_count.fetch_add(1, std::memory_order_relaxed);
}

WsSession::~WsSession() {
  unregister();
  server_.websocket_count.fetch_sub(1, std::memory_order_relaxed);
}

void WsSession::start(Request request, ConnectParams params, const boost::asio::ip::address& peer) {
  const Config& cfg = server_.config();
  admission_ = std::make_unique<WsAdmission>(*this);
  WsAdmission& u = *admission_;
  u.params = std::move(params);
  u.has_host = request.count(http::field::host) > 0 && !request[http::field::host].empty();
  if (auto it = request.find(http::field::origin); it != request.end())
    u.origin = std::string(it->value());
  u.forwarded_proto = std::string(request["X-Forwarded-Proto"]);
  u.authorization_token = std::string(bearer_token(request[http::field::authorization]));

  ip_ = peer.is_v4() ? ipv4_text(peer.to_v4().to_bytes()) : peer.to_string();
  if (cfg.trust_proxy) {
    // Every X-Forwarded-For field, in order: a proxy may add its own line instead of appending.
    std::vector<std::string_view> fields;
    const auto [first, last] = request.equal_range("X-Forwarded-For");
    for (auto it = first; it != last; ++it) fields.push_back(it->value());
    if (auto forwarded = forwarded_client_ip(fields, cfg.trusted_proxy_hops); !forwarded.empty()) {
      ip_ = std::move(forwarded);
    }
  }

  // Subprotocol: select SUBPROTOCOL when offered; without it, echo the first offer (as `ws` does)
  // so browsers that offer one still connect.
  std::string selected;
  for_each_token(request[http::field::sec_websocket_protocol], [&](std::string_view t) {
    if (!cfg.subprotocol.empty()) {
      if (t == cfg.subprotocol) {
        u.subprotocol_offered = true;
        selected = std::string(t);
      }
    } else if (selected.empty()) {
      selected = std::string(t);
    }
  });
  ws_.set_option(websocket::stream_base::decorator([selected](websocket::response_type& res) {
    res.set(http::field::server, "signal-server");
    if (!selected.empty()) res.set(http::field::sec_websocket_protocol, selected);
  }));
  websocket::stream_base::timeout timeouts{};
  timeouts.handshake_timeout = std::chrono::milliseconds(cfg.handshake_timeout_ms);
  timeouts.idle_timeout = websocket::stream_base::none();  // the loop's heartbeat does this job
  timeouts.keep_alive_pings = false;
  ws_.set_option(timeouts);
  ws_.read_message_max(0);  // no Beast limit: read() enforces MESSAGE_MAX_BYTES itself
  ws_.auto_fragment(false);
  ws_.control_callback([this](websocket::frame_type kind, beast::string_view) {
    if (kind == websocket::frame_type::pong) {
      alive_ = answered_probe_ = true;
    } else if (kind == websocket::frame_type::close) {
      // The client left (Beast calls this for a valid close frame only); Beast answers it next.
      member_.client_closed = true;
      // Beast refuses the codes RFC 6455 reserves but echoes those above 4999, which it leaves
      // undefined: answer them as a protocol error, like the reserved ones.
      if (ws_.reason().code > kMaxCloseCode) {
        ws_.next_layer().replace_next_close_code(websocket::close_code::protocol_error);
      }
    }
  });

  // Beast refuses an upgrade without Host (HTTP 400), but the contract answers it after the
  // upgrade with 1008 "Malformed request" (row 3), which browsers can see: give it an empty one.
  if (!u.has_host) request.set(http::field::host, "");
  u.request = std::move(request);
  // The checks and the join run before the 101 goes out, so that when the client's open event
  // fires it is already a member: nothing its peers send after that moment can miss it. A
  // refusal is still sent after the upgrade, as a close code browsers can see.
  state_ = State::kAdmitting;
  // The HTTP deadline ended with the request; this one covers admission and the upgrade (a join
  // that Redis never answers must not hold the socket).
  arm_deadline();
  u.admit();
}

void WsSession::arm_deadline() {
  deadline_ = std::make_unique<boost::asio::steady_timer>(loop_.ioc);
  deadline_->expires_after(std::chrono::milliseconds(server_.config().handshake_timeout_ms));
  deadline_->async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    if (ec) return;
    if (auto self = weak.lock()) {
      if (!self->accepted_) metrics().handshake_timeouts.inc();
      self->terminate();
    }
  });
}

void WsSession::refuse(Rejection r) {
  if (refusal_.code == 0) refusal_ = r;
  accept();
}

void WsSession::open() {
  loop_slot = loop_.sessions.size();
  loop_.sessions.push_back(this);
  registered_ = true;
  state_ = State::kOpen;
  metrics().active_connections.inc();
}

void WsSession::accept() {
  ws_.async_accept(admission_->request, [self = shared_from_this()](boost::system::error_code e) {
    self->on_accepted(e);
  });
}

void WsSession::on_accepted(boost::system::error_code ec) {
  admission_.reset();
  deadline_.reset();  // cancels the wait; an open connection carries no timer
  if (ec) {
    end();  // the upgrade failed: undo the join, if any
    return;
  }
  accepted_ = true;
  // The 101 is out; from here every write is a WebSocket frame, ended by a closing teardown.
  // Plain TCP: relayed messages become frames in the stream's write buffer (no write operation
  // per message, and what arrives while a write is in flight shares the next syscall); TLS
  // keeps Beast's writes.
  MaybeTlsStream& stream = ws_.next_layer();
  stream.enable_coalescing();
  stream.observe_teardown(this);
  if (stream.coalescing()) {
    outbox_.drain([&stream](const std::string& m) { stream.write_text_frame(m); });
  }
  if (refusal_.code != 0) {
    const Rejection r = refusal_;
    refusal_ = Rejection{0, {}};
    close_with(r);
    return;
  }
  if (state_ != State::kOpen) return;
  write_next();
  // The client has only just been sent the 101, so its first frame is rarely here yet: wait
  // rather than try a read that would find nothing.
  read_next(/*bytes_likely=*/false);
  if (probe_after_accept_) probe();
}

void WsSession::read() {
  // Read in pieces up to MESSAGE_MAX_BYTES + 1, so an oversize message is caught with at most
  // that much buffered, and refused with a proper closing handshake (Beast's own size limit
  // would cut the TCP connection right after its close frame). A piece is at least 512 bytes and
  // as large as what is already read, so the buffer doubles with a large message, and an idle
  // connection waits on 512 bytes instead of Beast's default 1,536.
  constexpr std::size_t kMinReadPiece = 512;
  const std::size_t remaining = server_.config().message_max_bytes + 1 - read_buffer_.size();
  const std::size_t limit = std::min(remaining, std::max(kMinReadPiece, read_buffer_.size()));
  ws_.async_read_some(read_buffer_, limit,
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                        self->on_read(ec);
                      });
}

void WsSession::on_read(boost::system::error_code ec) {
  if (ec) {
    // Beast reports the client's close frame as `closed` (and has answered it).
    if (ec == websocket::error::closed) member_.client_closed = true;
    end();
    return;
  }
  if (read_buffer_.size() > server_.config().message_max_bytes) {
    metrics().oversize_closes.inc();
    read_buffer_.clear();
    close_with(kMessageTooBig);
    return;
  }
  if (!ws_.is_message_done()) {
    read();
    return;
  }
  if (state_ == State::kOpen) {
    const auto data = read_buffer_.cdata();
    // The boundary for what a client's message sets off on this loop: a throw closes this
    // session alone (1011) and the loop goes on.
    try {
      member_.on_message(*this,
                         std::string_view(static_cast<const char*>(data.data()), data.size()));
    } catch (const std::exception& e) {
      fault(e.what());
    }
  }
  read_buffer_.clear();
  // A large message (an SDP offer or answer, a few KB) grew the buffer; give the memory back
  // rather than keep it on a connection that will mostly idle. Candidates fit and reuse it.
  if (read_buffer_.capacity() > 1024) read_buffer_.shrink_to_fit();
  read_next();
}

void WsSession::read_next(bool bytes_likely) {
  // Closing: Beast's close operation reads on to the client's close frame itself.
  if (state_ != State::kOpen) return;
  // TLS: the TLS layer may hold decrypted bytes of its own, so the socket says nothing.
  if (ws_.next_layer().is_tls() || !ws_.is_message_done() || beast_read_buffer(ws_).size() != 0) {
    read();
  } else if (bytes_likely) {
    receive();
  } else {
    await_data();
  }
}

void WsSession::receive() {
  // At a frame boundary with Beast's buffer empty: read what the socket has into that buffer
  // ourselves, as Beast would read a frame header, and hand it to Beast only if something came.
  // One system call per batch of messages, and a connection that has gone quiet keeps no Beast
  // read pending, nor a buffer of ours.
  auto& input = beast_read_buffer(ws_);
  // Empty, so its free space starts at the front: one contiguous piece.
  const boost::asio::mutable_buffer space = *input.prepare(input.max_size()).begin();
  const int fd = ws_.next_layer().socket().native_handle();
  ssize_t n = 0;
  do {
    n = ::recv(fd, space.data(), space.size(), MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    await_data();
    return;
  }
  if (n <= 0) {
    end();  // end of stream or a socket error: as a failed read
    return;
  }
  input.commit(static_cast<std::size_t>(n));
  // Pongs the heartbeat or a probe waits for, taken without waking Beast: a Beast read that only
  // met pongs would stay pending, with its buffer, until the client's next message.
  if (!alive_ || !answered_probe_) {
    while (take_pong()) {
    }
    if (input.size() == 0) {
      // Fewer bytes than asked for: the socket had no more, so a wait sees what comes next.
      if (static_cast<std::size_t>(n) < space.size()) {
        await_data();
      } else {
        receive();
      }
      return;
    }
  }
  read();
}

void WsSession::await_data() {
  read_buffer_.shrink_to_fit();  // empty here: nothing is kept for a connection that idles
  // A wait for readability, not a read: nothing is read into until bytes are there. Asio re-arms
  // the socket for each wait (one epoll_ctl, which reports bytes already there), so a wait never
  // misses what came before it.
  ws_.next_layer().socket().async_wait(
      boost::asio::socket_base::wait_read,
      // Bound to the loop's own executor type, not the socket's polymorphic one: the operation
      // then keeps no second type-erased executor.
      boost::asio::bind_allocator(
          ExactAllocator<void>{},
          boost::asio::bind_executor(loop_.ioc.get_executor(),
                                     [self = shared_from_this()](boost::system::error_code ec) {
                                       // Closed by terminate(): as a failed read.
                                       if (ec) {
                                         self->end();
                                       } else {
                                         self->read_next();
                                       }
                                     })));
}

bool WsSession::take_pong() {
  // A client's pong (RFC 6455 section 5.5.3) at the start of Beast's buffer: FIN and opcode 0xA,
  // no extension bits, masked, at most 125 bytes of payload, and whole; else it is left to Beast.
  constexpr std::size_t kHeader = 2 + 4;
  auto& input = beast_read_buffer(ws_);
  unsigned char head[2];
  if (input.size() < kHeader) return false;
  boost::asio::buffer_copy(boost::asio::buffer(head), input.data());
  if (head[0] != 0x8A || (head[1] & 0x80) == 0) return false;
  const std::size_t len = head[1] & 0x7F;
  if (len > 125 || input.size() < kHeader + len) return false;
  input.consume(kHeader + len);
  alive_ = answered_probe_ = true;
  return true;
}

void WsSession::deliver(const SharedText& message) {
  if (state_ != State::kOpen) return;
  MaybeTlsStream& stream = ws_.next_layer();
  switch (outbox_.offer(message->size(), stream.buffered(),
                        server_.config().backpressure_close_threshold_bytes)) {
    case Outbox::Offer::kRefused:
      return;
    case Outbox::Offer::kOverloaded:
      overload(outbox_.bytes() + stream.buffered() + message->size());
      return;
    case Outbox::Offer::kAccepted:
      break;
  }
  metrics().messages_delivered.inc();
  if (accepted_ && stream.coalescing()) {
    stream.write_text_frame(*message);
  } else {
    outbox_.push(message);
    if (accepted_) write_next();
  }
  // What other loops check their posts against (Server::post_bounded).
  inbound.set_unsent(outbox_.bytes() + stream.buffered());
}

void WsSession::fault(std::string_view what) {
  metrics().session_faults.inc();
  server_.log().error("Closing a connection whose handling failed",
                      {{"clientId", member_.client_id},
                       {"roomId", member_.room ? member_.room->id() : std::string()},
                       {"err", std::string(what)}});
  close_with(kInternalError);
}

void WsSession::overloaded() {
  overload(outbox_.bytes() + ws_.next_layer().buffered() + inbound.inbound());
}

void WsSession::overload(std::size_t unsent) {
  if (overload_reported_ || state_ != State::kOpen) return;
  overload_reported_ = true;
  metrics().backpressure_closes.inc();
  server_.log().warn("Closing slow client",
                     {{"clientId", member_.client_id},
                      {"roomId", member_.room ? member_.room->id() : std::string()},
                      {"unsentBytes", unsent}});
  // Not closed right here: deliver() runs inside someone else's relay, departure or drain
  // walk, and a close would re-enter it. The close is a handler of its own.
  boost::asio::post(loop_.ioc, [self = shared_from_this()] { self->close_with(kOverloaded); });
}

void WsSession::write_next() {
  const std::string* msg = outbox_.begin_write();
  if (msg == nullptr) return;  // a write in flight, or nothing queued
  ws_.text(true);
  ws_.async_write(boost::asio::buffer(*msg),
                  [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                    self->outbox_.end_write();
                    // A failed write ends the session through the read side.
                    if (!ec && self->state_ == State::kOpen) self->write_next();
                  });
}

void WsSession::close_with(Rejection r) {
  if (state_ == State::kClosing || state_ == State::kEnded) return;
  if (!accepted_) {
    if (refusal_.code == 0)
      refusal_ = r;  // sent as soon as the upgrade completes; the first one wins
    return;
  }
  state_ = State::kClosing;
  outbox_.drop_unsent();
  // A reader too slow for its backlog gets the close frame without the backlog before it.
  if (r == kOverloaded) ws_.next_layer().discard_pending();
  // The member is out as soon as the server decides to close it: its peers hear at once, and
  // its seat is free, without waiting for a client that may never answer the close.
  member_.depart(*this);
  // Without a read pending, Beast's close reads up to the peer's close frame itself; either way
  // the session ends here or in on_read, whichever comes first (end() runs once).
  ws_.async_close(websocket::close_reason(static_cast<websocket::close_code>(r.code), r.reason),
                  [self = shared_from_this()](boost::system::error_code) { self->end(); });
  // A peer that never reads cannot take the close frame: give it the handshake timeout, then cut.
  arm_deadline();
}

void WsSession::on_teardown() {
  // close_with() has done this already for the closes the server begins.
  if (state_ != State::kOpen) return;
  // Beast's read now waits for the client to end the socket, with no deadline of its own: the
  // member is out at once, as in close_with(), and the socket gets the handshake timeout.
  state_ = State::kClosing;
  outbox_.drop_unsent();
  member_.depart(*this);
  arm_deadline();
}

void WsSession::heartbeat_tick(std::chrono::steady_clock::time_point now,
                               std::chrono::steady_clock::duration due_after) {
  if (state_ != State::kOpen || !accepted_) return;
  if (now - last_heartbeat_ < due_after) return;
  last_heartbeat_ = now;
  if (!alive_) {
    metrics().heartbeat_terminations.inc();
    server_.log().info("Terminating unresponsive client", {{"clientId", member_.client_id}});
    terminate();
    return;
  }
  alive_ = false;
  if (ping_in_flight_) return;
  ping_in_flight_ = true;
  ws_.async_ping({}, [self = shared_from_this()](boost::system::error_code) {
    self->ping_in_flight_ = false;
  });
}

void WsSession::probe() {
  if (state_ != State::kOpen || probe_timer_) return;
  if (!accepted_) {
    // Joined, its 101 still being written: the ping follows the upgrade.
    probe_after_accept_ = true;
    return;
  }
  answered_probe_ = false;
  if (!ping_in_flight_) {
    ping_in_flight_ = true;
    ws_.async_ping({}, [self = shared_from_this()](boost::system::error_code) {
      self->ping_in_flight_ = false;
    });
  }
  probe_timer_ = std::make_unique<boost::asio::steady_timer>(loop_.ioc);
  probe_timer_->expires_after(std::chrono::milliseconds(server_.config().stale_member_probe_ms));
  probe_timer_->async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    if (ec) return;
    auto self = weak.lock();
    if (!self) return;
    self->probe_timer_.reset();
    if (self->answered_probe_ || self->state_ != State::kOpen) return;
    metrics().stale_members_released.inc();
    self->server_.log().info("Releasing member that did not answer a probe",
                             {{"clientId", self->member_.client_id}});
    self->terminate();
  });
}

void WsSession::terminate() {
  boost::system::error_code ec;
  ws_.next_layer().socket().close(ec);
}

void WsSession::unregister() {
  if (!registered_) return;
  // Swap-remove from the loop's list; the moved session learns its new slot.
  auto& list = loop_.sessions;
  list[loop_slot] = list.back();
  list[loop_slot]->loop_slot = loop_slot;
  list.pop_back();
  registered_ = false;
  metrics().active_connections.dec();
}

void WsSession::end() {
  if (state_ == State::kEnded) return;
  state_ = State::kEnded;
  if (deadline_) deadline_->cancel();
  unregister();
  member_.depart(*this);
}

}  // namespace sigsrv
