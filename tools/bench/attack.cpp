// signal-bench attack: admission under attack. Connections that never finish their HTTP request
// (half-open) and upgraded clients that never read (stuck, each with a partner that keeps
// sending to it) hold the server's connections and memory, re-opened as the server cuts them so
// the pressure stays constant; meanwhile legitimate pairs join at a steady rate and exchange a
// probe. Reports the pairs' join latency, how and when the server cut the attackers (its
// /metrics counters), and the server's RSS (--pid): at rest, with the half-open connections, and
// at its peak.
#include "attack.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "stats.hpp"
#include "ws_lite.hpp"

namespace bench {

const char* const kAttackUsage =
    "  signal-bench attack --url ws://HOST:PORT [--half-open 10000] [--stuck 2000]\n"
    "      [--duration S] [--legit-rate PAIRS_PER_S] [--half-open-bytes B] [--stuck-msg-bytes B]\n"
    "      [--stuck-rate MSGS_PER_S] [--stuck-rcvbuf B] [--concurrency C] [--ramp-timeout S]\n"
    "      [--source-ips 127.0.0.2-127.0.0.9] [--max-p99-ms 50] [--pid PID]\n";

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct AttackOptions {
  std::string url;
  int half_open = 10000;     // connections that send part of a request and wait
  int stuck = 2000;          // upgraded members that never read (each with a sending partner)
  int half_open_bytes = 0;   // size of each partial request (0: request line and three headers)
  double legit_rate = 50;    // legitimate pairs started per second
  double duration = 20;      // seconds of legitimate joins once the attack is in place
  double ramp_timeout = 60;  // seconds to wait for the attack to reach full strength
  int stuck_msg_bytes = 4096;
  double stuck_rate = 20;  // messages per second from each partner to its stuck member
  int stuck_rcvbuf = 4096;
  int concurrency = 500;  // attack connections being set up at once
  std::string source_ips;
  double max_p99_ms = 50;
  int pid = 0;
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "signal-bench attack: " << why << "\nusage:\n" << kAttackUsage;
  std::exit(2);
}

AttackOptions parse(int argc, char** argv) {
  AttackOptions o;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    try {
      if (a == "--url")
        o.url = value();
      else if (a == "--half-open")
        o.half_open = std::stoi(value());
      else if (a == "--stuck")
        o.stuck = std::stoi(value());
      else if (a == "--half-open-bytes")
        o.half_open_bytes = std::stoi(value());
      else if (a == "--legit-rate")
        o.legit_rate = std::stod(value());
      else if (a == "--duration")
        o.duration = std::stod(value());
      else if (a == "--ramp-timeout")
        o.ramp_timeout = std::stod(value());
      else if (a == "--stuck-msg-bytes")
        o.stuck_msg_bytes = std::stoi(value());
      else if (a == "--stuck-rate")
        o.stuck_rate = std::stod(value());
      else if (a == "--stuck-rcvbuf")
        o.stuck_rcvbuf = std::stoi(value());
      else if (a == "--concurrency")
        o.concurrency = std::stoi(value());
      else if (a == "--source-ips")
        o.source_ips = value();
      else if (a == "--max-p99-ms")
        o.max_p99_ms = std::stod(value());
      else if (a == "--pid")
        o.pid = std::stoi(value());
      else
        usage("unknown option " + a);
    } catch (const std::exception&) {
      usage("bad value for " + a);
    }
  }
  if (o.url.empty()) usage("--url is required");
  if (o.half_open < 0 || o.stuck < 0 || o.legit_rate <= 0 || o.duration <= 0 || o.concurrency < 1 ||
      o.stuck_msg_bytes < 64 || o.stuck_rate < 0 || o.half_open_bytes < 0) {
    usage("bad numeric option");
  }
  return o;
}

Target resolve(const std::string& url) {
  std::string err;
  auto t = resolve_target(url, &err);
  if (!t) usage(err);
  return *t;
}

// Opens a socket for `ep`, bound to `source_ip` when given.
boost::system::error_code open_from(tcp::socket& s, const tcp::endpoint& ep,
                                    const std::string& source_ip) {
  boost::system::error_code ec;
  s.open(ep.protocol(), ec);
  if (ec || source_ip.empty()) return ec;
  s.bind(tcp::endpoint(asio::ip::make_address(source_ip), 0), ec);
  return ec;
}

// ---------------------------------------------------------------- the attackers

// Every attacking connection, on one thread of its own. Half-open connections and stuck pairs
// each have a fixed number of slots; a slot whose connection the server ended is opened again.
class Attackers : public WsLite::Handler {
 public:
  Attackers(const AttackOptions& o, const Target& t, std::vector<std::string> ips)
      : o_(o), t_(t), ips_(std::move(ips)), tick_(ioc_) {
    stuck_pairs_.resize(static_cast<std::size_t>(o.stuck));
    fill_message_ = R"({"type":"control","action":"fill","payload":")";
    fill_message_.append(static_cast<std::size_t>(o.stuck_msg_bytes) - fill_message_.size() - 2,
                         'x');
    fill_message_ += "\"}";
  }

  void run() {
    yield_to_measurement();
    for (int i = 0; i < o_.half_open; ++i) queue_.push_back(Slot{false, i});
    pump();
    schedule_tick();
    auto guard = asio::make_work_guard(ioc_);
    ioc_.run();
  }
  // Opens the stuck pairs (after the half-open connections are in place).
  void start_stuck() {
    asio::post(ioc_, [this] {
      for (int i = 0; i < o_.stuck; ++i) queue_.push_back(Slot{true, i});
      pump();
    });
  }
  void stop() {
    asio::post(ioc_, [this] { ioc_.stop(); });
  }

  // This thread yields to the legitimate clients' when they share a core: what they measure
  // must be the server's delay, not this process' own bursts of reconnects. Under a real-time
  // policy (chrt, to keep a shared machine's other work off the measurement) one priority
  // below the process; otherwise 10 nice levels below.
  static void yield_to_measurement() {
    const int policy = ::sched_getscheduler(0);
    if (policy == SCHED_FIFO || policy == SCHED_RR) {
      sched_param p{};
      if (::sched_getparam(0, &p) == 0 && p.sched_priority > 1) {
        --p.sched_priority;
        ::pthread_setschedparam(::pthread_self(), policy, &p);
      }
      return;
    }
    const auto tid = static_cast<id_t>(::syscall(SYS_gettid));
    errno = 0;
    const int nice_now = ::getpriority(PRIO_PROCESS, tid);
    if (errno == 0) ::setpriority(PRIO_PROCESS, tid, std::min(nice_now + 10, 19));
  }

  // Progress, read by the main thread while running.
  std::atomic<int> half_open_now{0}, stuck_now{0};
  std::atomic<uint64_t> half_open_opened{0}, half_open_cut{0}, connect_failed{0};
  std::atomic<uint64_t> stuck_opened{0}, stuck_cut{0}, stuck_refused{0}, partner_closed{0};
  std::atomic<uint64_t> fill_sent{0};
  // Read once the thread has stopped: how long the server let a half-open connection live.
  LatencyHistogram half_open_life;
  std::map<std::string, int> partner_close_reasons;

 private:
  struct Slot {
    bool stuck;
    int index;
  };
  struct HalfOpen {
    explicit HalfOpen(asio::io_context& ioc) : socket(ioc) {}
    tcp::socket socket;
    int index = 0;
    int64_t open_ns = 0;
    std::string request;
    std::array<char, 512> scratch{};
  };
  struct StuckPair {
    explicit StuckPair(asio::io_context& ioc) : socket(ioc) {}
    tcp::socket socket;  // the member that stops reading after its 101
    std::unique_ptr<WsLite> partner;
    int index = 0;
    std::string room;
    std::string request;
    std::string head;
    std::array<char, 1024> scratch{};
    bool stuck_up = false;  // upgraded and counted in stuck_now
    bool sending = false;   // the partner heard that the stuck member is in its room
    bool finished = false;  // being replaced
    int64_t send_start_ns = 0;
    uint64_t sent = 0;
  };

  const std::string& ip_for(int index) const {
    static const std::string none;
    return ips_.empty() ? none : ips_[static_cast<std::size_t>(index) % ips_.size()];
  }

  // Starts queued connections while fewer than --concurrency are being set up.
  void pump() {
    while (setting_up_ < o_.concurrency && !queue_.empty()) {
      const Slot s = queue_.front();
      queue_.pop_front();
      ++setting_up_;
      if (s.stuck)
        open_stuck(s.index);
      else
        open_half(s.index);
    }
  }
  void setup_done() {
    --setting_up_;
    pump();
  }
  // A slot whose connection failed to open is tried again a little later.
  void retry_later(Slot s) {
    connect_failed.fetch_add(1, std::memory_order_relaxed);
    auto t = std::make_shared<asio::steady_timer>(ioc_, 200ms);
    t->async_wait([this, t, s](boost::system::error_code) {
      queue_.push_back(s);
      pump();
    });
  }

  // -------- half-open: a request that never ends (no blank line after the headers)

  void open_half(int index) {
    auto c = std::make_shared<HalfOpen>(ioc_);
    c->index = index;
    if (open_from(c->socket, t_.endpoint, ip_for(index))) {
      setup_done();
      retry_later(Slot{false, index});
      return;
    }
    c->request = "GET " + t_.target_prefix + "half-" + std::to_string(index) +
                 " HTTP/1.1\r\nHost: " + t_.host_header +
                 "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    if (static_cast<int>(c->request.size()) + 12 < o_.half_open_bytes) {
      // One long header, never ended: the server holds it in its read buffer.
      c->request += "X-Pad: ";
      c->request.append(static_cast<std::size_t>(o_.half_open_bytes) - c->request.size(), 'p');
    }
    c->socket.async_connect(t_.endpoint, [this, c](boost::system::error_code ec) {
      if (ec) {
        setup_done();
        retry_later(Slot{false, c->index});
        return;
      }
      asio::async_write(c->socket, asio::buffer(c->request),
                        [this, c](boost::system::error_code e, std::size_t) {
                          setup_done();
                          if (e) {
                            retry_later(Slot{false, c->index});
                            return;
                          }
                          c->open_ns = now_ns();
                          half_open_now.fetch_add(1, std::memory_order_relaxed);
                          half_open_opened.fetch_add(1, std::memory_order_relaxed);
                          wait_half(c);
                        });
    });
  }
  void wait_half(const std::shared_ptr<HalfOpen>& c) {
    c->socket.async_read_some(
        asio::buffer(c->scratch), [this, c](boost::system::error_code ec, std::size_t) {
          if (!ec) {
            wait_half(c);  // an answer (408, 400): wait for the end
            return;
          }
          // Cut by the server: counted, and opened again at once.
          half_open_now.fetch_sub(1, std::memory_order_relaxed);
          half_open_cut.fetch_add(1, std::memory_order_relaxed);
          half_open_life.record(static_cast<uint64_t>((now_ns() - c->open_ns) / 1000));
          boost::system::error_code ignored;
          c->socket.close(ignored);
          queue_.push_back(Slot{false, c->index});
          pump();
        });
  }

  // -------- stuck: upgraded, joined, then never read; its partner keeps sending to it

  void open_stuck(int index) {
    auto p = std::make_shared<StuckPair>(ioc_);
    p->index = index;
    p->room = "stuck-" + std::to_string(::getpid()) + "-" + std::to_string(index) + "-" +
              std::to_string(++generation_);
    if (open_from(p->socket, t_.endpoint, ip_for(index))) {
      setup_done();
      retry_later(Slot{true, index});
      return;
    }
    // A small receive window: the server's writes back up into its own buffers soon, as for a
    // client on a stalled link, without parking megabytes in this machine's kernel.
    boost::system::error_code ignored;
    if (o_.stuck_rcvbuf > 0) {
      p->socket.set_option(asio::socket_base::receive_buffer_size(o_.stuck_rcvbuf), ignored);
    }
    p->request = "GET " + t_.target_prefix + p->room + " HTTP/1.1\r\nHost: " + t_.host_header +
                 "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    p->socket.async_connect(t_.endpoint, [this, p](boost::system::error_code ec) {
      if (ec) {
        setup_done();
        retry_later(Slot{true, p->index});
        return;
      }
      asio::async_write(p->socket, asio::buffer(p->request),
                        [this, p](boost::system::error_code e, std::size_t) {
                          if (e) {
                            setup_done();
                            retry_later(Slot{true, p->index});
                            return;
                          }
                          read_stuck_head(p);
                        });
    });
  }
  void read_stuck_head(const std::shared_ptr<StuckPair>& p) {
    p->socket.async_read_some(
        asio::buffer(p->scratch), [this, p](boost::system::error_code ec, std::size_t n) {
          if (ec) {
            setup_done();
            retry_later(Slot{true, p->index});
            return;
          }
          p->head.append(p->scratch.data(), n);
          const auto end = p->head.find("\r\n\r\n");
          if (end == std::string::npos) {
            if (p->head.size() > 8192) {
              setup_done();
              retry_later(Slot{true, p->index});
              return;
            }
            read_stuck_head(p);
            return;
          }
          setup_done();
          // Refused after the upgrade: the close frame follows the 101 at once.
          const bool refused =
              p->head.rfind("HTTP/1.1 101", 0) != 0 ||
              (p->head.size() > end + 4 && static_cast<unsigned char>(p->head[end + 4]) == 0x88);
          if (refused) {
            stuck_refused.fetch_add(1, std::memory_order_relaxed);
            finish_pair(p, 200ms);
            return;
          }
          // From here on nothing reads this socket.
          p->stuck_up = true;
          stuck_now.fetch_add(1, std::memory_order_relaxed);
          stuck_opened.fetch_add(1, std::memory_order_relaxed);
          p->partner = std::make_unique<WsLite>(ioc_, *this);
          p->partner->user = static_cast<uint64_t>(p->index);
          stuck_pairs_[static_cast<std::size_t>(p->index)] = p;
          p->partner->start(t_.endpoint, t_.host_header, t_.target_prefix + p->room + "&events=1",
                            ip_for(p->index));
        });
  }
  // Ends both sides of a pair and opens a new one in its slot after `delay`.
  void finish_pair(const std::shared_ptr<StuckPair>& p, std::chrono::milliseconds delay) {
    if (p->finished) return;
    p->finished = true;
    if (p->stuck_up) stuck_now.fetch_sub(1, std::memory_order_relaxed);
    boost::system::error_code ignored;
    p->socket.close(ignored);
    if (p->partner) {
      p->partner->close();
      // Its handlers may still be queued: kept a while before it is destroyed.
      graveyard_.push_back({now_ns(), std::move(p->partner)});
    }
    if (stuck_pairs_[static_cast<std::size_t>(p->index)] == p) {
      stuck_pairs_[static_cast<std::size_t>(p->index)].reset();
    }
    const Slot s{true, p->index};
    if (delay == 0ms) {
      queue_.push_back(s);
      pump();
      return;
    }
    auto t = std::make_shared<asio::steady_timer>(ioc_, delay);
    t->async_wait([this, t, s](boost::system::error_code) {
      queue_.push_back(s);
      pump();
    });
  }
  std::shared_ptr<StuckPair> pair_of(WsLite& c) {
    auto& p = stuck_pairs_[static_cast<std::size_t>(c.user)];
    return p && p->partner.get() == &c ? p : nullptr;
  }

  void on_open(WsLite&) override {}
  void on_message(WsLite& c, std::string_view text) override {
    auto p = pair_of(c);
    if (!p) return;
    if (text.find("\"welcome\"") != std::string_view::npos) {
      if (text.find("\"peers\":1") == std::string_view::npos) {
        // The stuck member is not in the room (cut already): start over.
        stuck_refused.fetch_add(1, std::memory_order_relaxed);
        finish_pair(p, 200ms);
        return;
      }
      p->sending = true;
      p->send_start_ns = now_ns();
      return;
    }
    if (text.find("peer-disconnected") != std::string_view::npos) {
      // The server let the stuck member go (backpressure close, heartbeat): a new pair.
      stuck_cut.fetch_add(1, std::memory_order_relaxed);
      finish_pair(p, 0ms);
    }
  }
  void on_closed(WsLite& c, int code, std::string_view reason) override {
    auto p = pair_of(c);
    if (!p) return;
    partner_closed.fetch_add(1, std::memory_order_relaxed);
    ++partner_close_reasons[std::to_string(code) + " " + std::string(reason)];
    finish_pair(p, 200ms);
  }

  void schedule_tick() {
    tick_.expires_after(10ms);
    tick_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      tick();
      schedule_tick();
    });
  }
  // Each partner sends its share of --stuck-rate, unless its own socket backs up.
  void tick() {
    const int64_t now = now_ns();
    for (auto& p : stuck_pairs_) {
      if (!p || !p->sending || !p->partner || !p->partner->open()) continue;
      const auto due =
          static_cast<uint64_t>(o_.stuck_rate * static_cast<double>(now - p->send_start_ns) / 1e9);
      while (p->sent < due && p->partner->unsent_bytes() < (1u << 20)) {
        p->partner->send(fill_message_);
        ++p->sent;
        fill_sent.fetch_add(1, std::memory_order_relaxed);
      }
      if (p->sent < due) p->sent = due;  // the backlog is skipped, not sent in a burst later
    }
    while (!graveyard_.empty() && now - graveyard_.front().first > 2'000'000'000) {
      graveyard_.pop_front();
    }
  }

  const AttackOptions& o_;
  const Target& t_;
  std::vector<std::string> ips_;
  asio::io_context ioc_{1};
  asio::steady_timer tick_;
  std::deque<Slot> queue_;
  int setting_up_ = 0;
  uint64_t generation_ = 0;
  std::vector<std::shared_ptr<StuckPair>> stuck_pairs_;
  std::deque<std::pair<int64_t, std::unique_ptr<WsLite>>> graveyard_;
  std::string fill_message_;
};

// ---------------------------------------------------------------- the legitimate clients

// Pairs started at a steady rate, on a thread of their own; a pair has joined when each side has
// heard the other's probe (as in the connect mode). Latency: from the start of both TCP connects.
class Legit : public WsLite::Handler {
 public:
  Legit(const AttackOptions& o, const Target& t) : o_(o), t_(t), tick_(ioc_) {}

  void run() {
    schedule_tick();
    auto guard = asio::make_work_guard(ioc_);
    ioc_.run();
  }
  void begin() {
    asio::post(ioc_, [this] {
      starting_ = true;
      rate_start_ns_ = now_ns();
    });
  }
  void end_starts() {
    asio::post(ioc_, [this] { starting_ = false; });
  }
  void stop() {
    asio::post(ioc_, [this] { ioc_.stop(); });
  }

  std::atomic<int> started{0}, joined{0}, failed{0}, in_flight{0};
  LatencyHistogram hist;               // read after stop
  std::map<std::string, int> reasons;  // read after stop

 private:
  struct Pair {
    std::unique_ptr<WsLite> a, b;
    int64_t start = 0;
    bool a_heard = false, b_heard = false, finished = false;
  };
  static constexpr int64_t kPairTimeoutNs = 10'000'000'000;

  void start_pair() {
    const int i = started.fetch_add(1);
    auto p = std::make_unique<Pair>();
    p->a = std::make_unique<WsLite>(ioc_, *this);
    p->b = std::make_unique<WsLite>(ioc_, *this);
    p->a->user = static_cast<uint64_t>(i) * 2;
    p->b->user = static_cast<uint64_t>(i) * 2 + 1;
    p->start = now_ns();
    const std::string room = "legit-" + std::to_string(::getpid()) + "-" + std::to_string(i);
    p->a->start(t_.endpoint, t_.host_header, t_.target_prefix + room);
    p->b->start(t_.endpoint, t_.host_header, t_.target_prefix + room);
    pairs_[i] = std::move(p);
    in_flight.fetch_add(1);
  }
  Pair* pair_of(WsLite& c) {
    auto it = pairs_.find(static_cast<int>(c.user / 2));
    return it == pairs_.end() ? nullptr : it->second.get();
  }
  void finish(int index, bool ok, const std::string& why) {
    auto it = pairs_.find(index);
    if (it == pairs_.end() || it->second->finished) return;
    Pair& p = *it->second;
    p.finished = true;
    if (ok) {
      hist.record(static_cast<uint64_t>((now_ns() - p.start) / 1000));
      joined.fetch_add(1);
    } else {
      failed.fetch_add(1);
      ++reasons[why];
    }
    p.a->close();
    p.b->close();
    graveyard_.push_back({now_ns(), std::move(it->second)});
    pairs_.erase(it);
    in_flight.fetch_sub(1);
  }
  void on_open(WsLite& c) override { c.send(R"({"type":"control","action":"probe"})"); }
  void on_message(WsLite& c, std::string_view text) override {
    Pair* p = pair_of(c);
    if (!p || text.find("probe") == std::string_view::npos) return;
    (c.user % 2 == 0 ? p->a_heard : p->b_heard) = true;
    if (p->a_heard && p->b_heard) finish(static_cast<int>(c.user / 2), true, {});
  }
  void on_closed(WsLite& c, int code, std::string_view reason) override {
    Pair* p = pair_of(c);
    if (!p || p->finished) return;
    finish(static_cast<int>(c.user / 2), false, std::to_string(code) + " " + std::string(reason));
  }
  void schedule_tick() {
    tick_.expires_after(1ms);
    tick_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      tick();
      schedule_tick();
    });
  }
  void tick() {
    const int64_t now = now_ns();
    if (starting_) {
      const auto due =
          static_cast<int>(o_.legit_rate * static_cast<double>(now - rate_start_ns_) / 1e9) + 1;
      while (started_here_ < due) {
        ++started_here_;
        start_pair();
      }
    }
    // Probes again every 10 ms until heard (a server may drop what arrives mid-join), and a pair
    // that has not joined in 10 s has failed.
    if (now - last_probe_ns_ >= 10'000'000) {
      last_probe_ns_ = now;
      std::vector<int> late;
      for (auto& [i, p] : pairs_) {
        if (now - p->start > kPairTimeoutNs) {
          late.push_back(i);
          continue;
        }
        if (p->a->open() && !p->b_heard) p->a->send(R"({"type":"control","action":"probe"})");
        if (p->b->open() && !p->a_heard) p->b->send(R"({"type":"control","action":"probe"})");
      }
      for (int i : late) finish(i, false, "timeout (10 s)");
    }
    while (!graveyard_.empty() && now - graveyard_.front().first > 2'000'000'000) {
      graveyard_.pop_front();
    }
  }

  const AttackOptions& o_;
  const Target& t_;
  asio::io_context ioc_{1};
  asio::steady_timer tick_;
  bool starting_ = false;
  int64_t rate_start_ns_ = 0;
  int started_here_ = 0;
  int64_t last_probe_ns_ = 0;
  std::map<int, std::unique_ptr<Pair>> pairs_;
  std::deque<std::pair<int64_t, std::unique_ptr<Pair>>> graveyard_;
};

// ---------------------------------------------------------------- the server's side

// GET /metrics on the server's port; the sample values whose names are in `names` (absent: -1).
std::map<std::string, double> scrape(const Target& t, const std::vector<std::string>& names) {
  std::map<std::string, double> out;
  for (const auto& n : names) out[n] = -1;
  asio::io_context ioc;
  tcp::socket s(ioc);
  std::string request =
      "GET /metrics HTTP/1.1\r\nHost: " + t.host_header + "\r\nConnection: close\r\n\r\n";
  std::string body;
  std::array<char, 16384> buf{};
  std::function<void()> read_more = [&] {
    s.async_read_some(asio::buffer(buf), [&](boost::system::error_code ec, std::size_t n) {
      body.append(buf.data(), n);
      if (!ec) read_more();
    });
  };
  s.async_connect(t.endpoint, [&](boost::system::error_code ec) {
    if (ec) return;
    asio::async_write(s, asio::buffer(request), [&](boost::system::error_code e, std::size_t) {
      if (!e) read_more();
    });
  });
  ioc.run_for(5s);
  for (const auto& n : names) {
    const auto at = body.find("\n" + n + " ");
    if (at == std::string::npos) continue;
    out[n] = std::strtod(body.c_str() + at + n.size() + 2, nullptr);
  }
  return out;
}

const std::vector<std::string> kMetrics = {
    "cloudgaming_handshake_timeouts_total",
    "cloudgaming_backpressure_closes_total",
    "cloudgaming_connections_accepted_total",
    "cloudgaming_heartbeat_terminations_total",
    "cloudgaming_connections_rejected_total{reason=\"at_capacity\"}",
    "cloudgaming_active_connections",
    "cloudgaming_handshake_evictions_total",
};

}  // namespace

int run_attack(int argc, char** argv) {
  const AttackOptions opt = parse(argc, argv);
  // Every attacking connection is a descriptor here as well as in the server.
  raise_open_files_limit();
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  const auto needed = static_cast<rlim_t>(opt.half_open + 2 * opt.stuck) + 1000;
  if (rl.rlim_cur < needed) {
    std::fprintf(
        stderr, "[attack] warning: open-files limit %llu is below the %llu connections need\n",
        static_cast<unsigned long long>(rl.rlim_cur), static_cast<unsigned long long>(needed));
  }
  const Target t = resolve(opt.url);
  const auto ips = expand_ips(opt.source_ips);
  const auto metrics_before = scrape(t, kMetrics);
  const ProcSample base = opt.pid ? read_proc(opt.pid) : ProcSample{};

  Attackers attackers(opt, t, ips);
  Legit legit(opt, t);
  std::thread attack_thread([&] { attackers.run(); });
  std::thread legit_thread([&] { legit.run(); });

  const auto t0 = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  uint64_t peak_rss_kb = base.rss_kb;
  auto rss_now = [&]() -> uint64_t {
    if (!opt.pid) return 0;
    const ProcSample s = read_proc(opt.pid);
    if (s.ok) peak_rss_kb = std::max(peak_rss_kb, s.rss_kb);
    return s.ok ? s.rss_kb : 0;
  };
  double next_print = 1;
  auto progress = [&](const char* phase) {
    if (elapsed() < next_print) return;
    next_print += 1;
    std::fprintf(
        stderr,
        "[%5.1fs] %-9s half-open %d (cut %llu) stuck %d (cut %llu, refused %llu) "
        "legit joined %d failed %d  rss %llu KiB\n",
        elapsed(), phase, attackers.half_open_now.load(),
        static_cast<unsigned long long>(attackers.half_open_cut.load()), attackers.stuck_now.load(),
        static_cast<unsigned long long>(attackers.stuck_cut.load()),
        static_cast<unsigned long long>(attackers.stuck_refused.load()), legit.joined.load(),
        legit.failed.load(), static_cast<unsigned long long>(rss_now()));
  };
  // 1. The half-open connections, all at once; RSS with them alone.
  const double ramp_end = opt.ramp_timeout;
  while (attackers.half_open_opened.load() < static_cast<uint64_t>(opt.half_open) &&
         elapsed() < ramp_end) {
    std::this_thread::sleep_for(10ms);
    rss_now();
    progress("half-open");
  }
  std::this_thread::sleep_for(500ms);  // let the server take what is still in its backlog
  const int half_open_counted = attackers.half_open_now.load();
  const uint64_t rss_half_open_kb = rss_now();
  // 2. The stuck pairs.
  attackers.start_stuck();
  while (attackers.stuck_opened.load() < static_cast<uint64_t>(opt.stuck * 99 / 100) &&
         elapsed() < 2 * ramp_end) {
    std::this_thread::sleep_for(10ms);
    rss_now();
    progress("stuck");
  }
  // Full strength reached: every half-open slot and nearly every stuck pair opened at least once
  // (the server may already be cutting the first ones).
  const bool ramp_failed =
      attackers.half_open_opened.load() < static_cast<uint64_t>(opt.half_open) ||
      attackers.stuck_opened.load() < static_cast<uint64_t>(opt.stuck * 99 / 100);
  const uint64_t rss_attack_kb = rss_now();
  // 3. Legitimate pairs join while the attack goes on; the attack is sampled as it stands.
  const ProcSample cpu_before = opt.pid ? read_proc(opt.pid) : ProcSample{};
  const auto measure_start = Clock::now();
  legit.begin();
  uint64_t samples = 0, half_sum = 0, stuck_sum = 0;
  int half_min = opt.half_open, stuck_min = opt.stuck;
  const auto sample_attack = [&] {
    const int h = attackers.half_open_now.load(), s = attackers.stuck_now.load();
    ++samples;
    half_sum += static_cast<uint64_t>(h);
    stuck_sum += static_cast<uint64_t>(s);
    half_min = std::min(half_min, h);
    stuck_min = std::min(stuck_min, s);
  };
  while (Clock::now() - measure_start < std::chrono::duration<double>(opt.duration)) {
    std::this_thread::sleep_for(100ms);
    rss_now();
    sample_attack();
    progress("measure");
  }
  legit.end_starts();
  // The pairs still joining finish (or time out) under the same attack.
  const auto drain_start = Clock::now();
  while (legit.in_flight.load() > 0 && Clock::now() - drain_start < 11s) {
    std::this_thread::sleep_for(20ms);
    rss_now();
  }
  const double measured_s = std::chrono::duration<double>(Clock::now() - measure_start).count();
  const ProcSample cpu_after = opt.pid ? read_proc(opt.pid) : ProcSample{};
  const uint64_t rss_end_kb = rss_now();
  const auto metrics_after = scrape(t, kMetrics);
  attackers.stop();
  legit.stop();
  attack_thread.join();
  legit_thread.join();

  const LatencyHistogram& h = legit.hist;
  const double p99_ms = static_cast<double>(h.quantile(0.99)) / 1000.0;
  const bool p99_met = h.count() > 0 && p99_ms < opt.max_p99_ms;
  const int attack_conns = opt.half_open + 2 * opt.stuck;
  auto per = [](uint64_t hi_kb, uint64_t lo_kb, double n) {
    return n > 0 && hi_kb >= lo_kb ? static_cast<double>(hi_kb - lo_kb) * 1024.0 / n : -1.0;
  };
  auto delta = [&](const std::string& name) {
    const double a = metrics_after.at(name), b = metrics_before.at(name);
    return a < 0 || b < 0 ? -1.0 : a - b;
  };
  std::string reasons;
  for (const auto& [k, v] : legit.reasons) {
    reasons += (reasons.empty() ? "\"" : ",\"") + json_escape(k) + "\":" + std::to_string(v);
  }
  std::string partner_reasons;
  for (const auto& [k, v] : attackers.partner_close_reasons) {
    partner_reasons +=
        (partner_reasons.empty() ? "\"" : ",\"") + json_escape(k) + "\":" + std::to_string(v);
  }
  const double cpu_pct = cpu_before.ok && cpu_after.ok
                             ? (cpu_after.cpu_seconds - cpu_before.cpu_seconds) / measured_s * 100
                             : -1;
  char buf[4096];
  std::snprintf(
      buf, sizeof(buf),
      R"({"mode":"attack","half_open":%d,"stuck":%d,"half_open_bytes":%d,"stuck_msg_bytes":%d,)"
      R"("stuck_rate":%.1f,"legit_rate":%.1f,"duration_s":%.2f,"ramp_failed":%s,)"
      R"("attack":{"half_open_avg":%.0f,"half_open_min":%d,"half_open_opened":%llu,)"
      R"("half_open_cut":%llu,"half_open_life_ms":{"p50":%.0f,"p99":%.0f,"max":%.0f},)"
      R"("stuck_avg":%.0f,"stuck_min":%d,"stuck_opened":%llu,"stuck_cut":%llu,)"
      R"("stuck_refused":%llu,"fill_messages_sent":%llu,"connect_failures":%llu,)"
      R"("partner_closed":{%s}},)"
      R"("legit":{"pairs":%d,"joined_pairs":%d,"failed_pairs":%d,)"
      R"("join_us":{"p50":%llu,"p90":%llu,"p99":%llu,"max":%llu},"p99_budget_ms":%.0f,)"
      R"("p99_met":%s,"closed":{%s}},)"
      R"("server":{"pid":%d,"cpu_percent":%.1f,"rss_kb_base":%llu,"rss_kb_half_open":%llu,)"
      R"("rss_kb_attack":%llu,"rss_kb_peak":%llu,"rss_kb_end":%llu,)"
      R"("rss_bytes_per_half_open":%.0f,"rss_bytes_per_stuck_pair_peak":%.0f,)"
      R"("rss_bytes_per_attack_conn_peak":%.0f},)"
      R"("metrics":{"handshake_timeouts":%.0f,"backpressure_closes":%.0f,)"
      R"("connections_accepted":%.0f,"heartbeat_terminations":%.0f,"rejected_at_capacity":%.0f,)"
      R"("handshake_evictions":%.0f}})",
      opt.half_open, opt.stuck, opt.half_open_bytes, opt.stuck_msg_bytes, opt.stuck_rate,
      opt.legit_rate, measured_s, ramp_failed ? "true" : "false",
      samples ? static_cast<double>(half_sum) / static_cast<double>(samples) : 0.0, half_min,
      static_cast<unsigned long long>(attackers.half_open_opened.load()),
      static_cast<unsigned long long>(attackers.half_open_cut.load()),
      static_cast<double>(attackers.half_open_life.quantile(0.5)) / 1000.0,
      static_cast<double>(attackers.half_open_life.quantile(0.99)) / 1000.0,
      static_cast<double>(attackers.half_open_life.max()) / 1000.0,
      samples ? static_cast<double>(stuck_sum) / static_cast<double>(samples) : 0.0, stuck_min,
      static_cast<unsigned long long>(attackers.stuck_opened.load()),
      static_cast<unsigned long long>(attackers.stuck_cut.load()),
      static_cast<unsigned long long>(attackers.stuck_refused.load()),
      static_cast<unsigned long long>(attackers.fill_sent.load()),
      static_cast<unsigned long long>(attackers.connect_failed.load()), partner_reasons.c_str(),
      legit.started.load(), legit.joined.load(), legit.failed.load(),
      static_cast<unsigned long long>(h.quantile(0.5)),
      static_cast<unsigned long long>(h.quantile(0.9)),
      static_cast<unsigned long long>(h.quantile(0.99)), static_cast<unsigned long long>(h.max()),
      opt.max_p99_ms, p99_met ? "true" : "false", reasons.c_str(), opt.pid, cpu_pct,
      static_cast<unsigned long long>(base.rss_kb),
      static_cast<unsigned long long>(rss_half_open_kb),
      static_cast<unsigned long long>(rss_attack_kb), static_cast<unsigned long long>(peak_rss_kb),
      static_cast<unsigned long long>(rss_end_kb),
      opt.pid ? per(rss_half_open_kb, base.rss_kb, half_open_counted) : -1.0,
      opt.pid && opt.stuck ? per(peak_rss_kb, rss_half_open_kb, opt.stuck) : -1.0,
      opt.pid && attack_conns ? per(peak_rss_kb, base.rss_kb, attack_conns) : -1.0,
      delta(kMetrics[0]), delta(kMetrics[1]), delta(kMetrics[2]), delta(kMetrics[3]),
      delta(kMetrics[4]), delta(kMetrics[6]));
  std::cout << buf << std::endl;
  return (legit.failed.load() > 0 || h.count() == 0 || !p99_met || ramp_failed) ? 1 : 0;
}

}  // namespace bench
