// Network fixtures of the client tests (see net_fixtures.hpp), on Asio.
#include "net_fixtures.hpp"

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <future>
#include <mutex>
#include <set>
#include <thread>

namespace client_tests {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

namespace {

struct Pair : std::enable_shared_from_this<Pair> {
  explicit Pair(asio::io_context& io) : client(io), upstream(io) {}
  tcp::socket client;
  tcp::socket upstream;
  std::array<char, 16384> up_buf{};
  std::array<char, 16384> down_buf{};
  bool holed = false;  // black-holed: bytes read and dropped

  void pump(tcp::socket& from, tcp::socket& to, std::array<char, 16384>& buf) {
    auto self = shared_from_this();
    from.async_read_some(asio::buffer(buf), [self, &from, &to, &buf](error_code ec, std::size_t n) {
      if (ec) return self->close();
      if (self->holed) return self->pump(from, to, buf);
      asio::async_write(to, asio::buffer(buf.data(), n),
                        [self, &from, &to, &buf](error_code e, std::size_t) {
                          if (e) return self->close();
                          self->pump(from, to, buf);
                        });
    });
  }
  void close() {
    error_code ignored;
    client.close(ignored);
    upstream.close(ignored);
  }
};

}  // namespace

struct CutProxy::Impl {
  asio::io_context io;
  tcp::acceptor acceptor{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  std::atomic<uint16_t> upstream{0};
  std::atomic<bool> refusing{false};
  std::atomic<int> accepted{0};
  std::set<std::shared_ptr<Pair>> pairs;  // on the io thread
  std::thread thread;

  void accept() {
    auto pair = std::make_shared<Pair>(io);
    acceptor.async_accept(pair->client, [this, pair](error_code ec) {
      if (ec) return;
      accept();
      if (refusing) return pair->close();
      ++accepted;
      pairs.insert(pair);
      pair->upstream.async_connect(
          tcp::endpoint(asio::ip::make_address("127.0.0.1"), upstream.load()),
          [pair](error_code e) {
            if (e) return pair->close();
            pair->pump(pair->client, pair->upstream, pair->up_buf);
            pair->pump(pair->upstream, pair->client, pair->down_buf);
          });
    });
  }
  template <class F>
  void on_io(F f) {
    std::promise<void> done;
    asio::post(io, [&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  }
};

CutProxy::CutProxy(uint16_t upstream) : impl_(std::make_shared<Impl>()) {
  impl_->upstream = upstream;
  impl_->accept();
  impl_->thread = std::thread([impl = impl_.get()] { impl->io.run(); });
}

CutProxy::~CutProxy() {
  impl_->io.stop();
  impl_->thread.join();
}

uint16_t CutProxy::port() const {
  return impl_->acceptor.local_endpoint().port();
}

void CutProxy::black_hole() {
  impl_->on_io([this] {
    for (auto& p : impl_->pairs) p->holed = true;
    impl_->pairs.clear();  // their pumps keep them alive, dropping what they read
  });
}

void CutProxy::cut() {
  impl_->on_io([this] {
    for (auto& p : impl_->pairs) p->close();  // both ends see the stream end
    impl_->pairs.clear();
  });
}

void CutProxy::refuse(bool on) {
  impl_->refusing = on;
}
void CutProxy::retarget(uint16_t upstream) {
  impl_->upstream = upstream;
}
int CutProxy::accepted() const {
  return impl_->accepted;
}

struct ScriptedServer::Impl {
  asio::io_context io;
  tcp::acceptor acceptor{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  std::vector<std::string> frames;
  std::atomic<int> accepted{0};
  std::thread thread;

  struct Conn : std::enable_shared_from_this<Conn> {
    explicit Conn(tcp::socket s) : ws(std::move(s)) {}
    websocket::stream<beast::tcp_stream> ws;
    std::vector<std::string> frames;
    std::size_t next = 0;
    beast::flat_buffer buf;
    void start() {
      auto self = shared_from_this();
      ws.async_accept([self](error_code ec) {
        if (!ec) self->write();
      });
    }
    void write() {
      if (next == frames.size()) return read();
      auto self = shared_from_this();
      ws.text(true);
      ws.async_write(asio::buffer(frames[next]), [self](error_code ec, std::size_t) {
        if (ec) return;
        ++self->next;
        self->write();
      });
    }
    void read() {
      auto self = shared_from_this();
      ws.async_read(buf, [self](error_code ec, std::size_t) {
        if (ec) return;
        self->buf.consume(self->buf.size());
        self->read();
      });
    }
  };

  void accept() {
    acceptor.async_accept([this](error_code ec, tcp::socket s) {
      if (ec) return;
      ++accepted;
      auto c = std::make_shared<Conn>(std::move(s));
      c->frames = frames;
      c->start();
      accept();
    });
  }
};

ScriptedServer::ScriptedServer(std::vector<std::string> frames) : impl_(std::make_shared<Impl>()) {
  impl_->frames = std::move(frames);
  impl_->accept();
  impl_->thread = std::thread([impl = impl_.get()] { impl->io.run(); });
}

ScriptedServer::~ScriptedServer() {
  impl_->io.stop();
  impl_->thread.join();
}

uint16_t ScriptedServer::port() const {
  return impl_->acceptor.local_endpoint().port();
}
int ScriptedServer::accepted() const {
  return impl_->accepted;
}

}  // namespace client_tests
