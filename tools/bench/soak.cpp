// signal-bench soak: thousands of members held for minutes while a steady relay runs over some of
// them and pairs leave and join all the time. Every relayed message is numbered (nothing lost,
// duplicated or reordered), every churned join and leave is checked, and the server is sampled
// at a fixed period (RSS, descriptors, socket queues, /metrics) so that drift after warm-up shows.
#include "soak.hpp"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "stats.hpp"
#include "ws_lite.hpp"

namespace bench {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct SoakOptions {
  std::string url;
  int conns = 15000;         // members held: idle pairs plus active pairs
  int active_pairs = 500;    // pairs that carry the relay
  double rate = 2000;        // relayed msgs/s in total, both directions of every active pair
  double churn = 10;         // pairs replaced per second (a leave of two, a join of two)
  double duration = 900;     // seconds of load after every member joined
  double warmup = 180;       // drift is measured from here to the end
  double sample_every = 10;  // seconds between samples of the server
  // A join not confirmed by a probe exchange, or a leave whose peer-disconnected was not heard,
  // by then has failed. Generous: on a shared machine a starved server can stall for seconds,
  // which the join times and the relay latency show; this catches what never completes.
  double join_timeout = 30;
  double max_drift = 2;     // percent; above it a level is not flat
  double drift_window = 0;  // seconds at each end for drift; 0: a third of the time after warm-up
  int size = 300;
  int concurrency = 500;  // handshakes in flight while the members are first opened
  int threads = 1;
  int pid = 0;
  std::string source_ips;
  std::string series;  // JSON lines, one per sample
};

[[noreturn]] void soak_usage(const std::string& why) {
  std::cerr
      << "signal-bench soak: " << why << "\n"
      << "usage: signal-bench soak --url ws://HOST:PORT [--conns 15000] [--active-pairs 500]\n"
      << "    [--rate 2000] [--churn PAIRS_PER_S] [--duration S] [--warmup S]\n"
      << "    [--sample-every S] [--series PATH] [--pid PID] [--source-ips A-B]\n"
      << "    [--concurrency C] [--threads T] [--size BYTES] [--join-timeout S]\n"
      << "    [--max-drift PCT] [--drift-window S]\n";
  std::exit(2);
}

SoakOptions parse_soak_args(int argc, char** argv) {
  SoakOptions o;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) soak_usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h") soak_usage("options");
    try {
      if (a == "--url")
        o.url = value();
      else if (a == "--conns")
        o.conns = std::stoi(value());
      else if (a == "--active-pairs")
        o.active_pairs = std::stoi(value());
      else if (a == "--rate")
        o.rate = std::stod(value());
      else if (a == "--churn")
        o.churn = std::stod(value());
      else if (a == "--duration")
        o.duration = std::stod(value());
      else if (a == "--warmup")
        o.warmup = std::stod(value());
      else if (a == "--sample-every")
        o.sample_every = std::stod(value());
      else if (a == "--join-timeout")
        o.join_timeout = std::stod(value());
      else if (a == "--max-drift")
        o.max_drift = std::stod(value());
      else if (a == "--drift-window")
        o.drift_window = std::stod(value());
      else if (a == "--size")
        o.size = std::stoi(value());
      else if (a == "--concurrency")
        o.concurrency = std::stoi(value());
      else if (a == "--threads")
        o.threads = std::stoi(value());
      else if (a == "--pid")
        o.pid = std::stoi(value());
      else if (a == "--source-ips")
        o.source_ips = value();
      else if (a == "--series")
        o.series = value();
      else
        soak_usage("unknown option " + a);
    } catch (const std::exception&) {
      soak_usage("bad value for " + a);
    }
  }
  if (o.url.empty()) soak_usage("--url is required");
  if (o.conns < 2 || o.conns % 2 != 0) soak_usage("--conns must be even and at least 2");
  if (o.active_pairs < 0 || o.active_pairs > o.conns / 2) soak_usage("bad --active-pairs");
  if (o.threads < 1 || o.threads > o.conns / 2) soak_usage("bad --threads");
  if (o.rate < 0 || o.churn < 0 || o.size < 64 || o.concurrency < 2)
    soak_usage("bad numeric option");
  if (o.sample_every <= 0 || o.warmup < 0 || o.duration <= o.warmup || o.drift_window < 0)
    soak_usage("need --duration > --warmup >= 0, --sample-every > 0, --drift-window >= 0");
  return o;
}

Target resolve(const std::string& url) {
  std::string err;
  auto t = resolve_target(url, &err);
  if (!t) soak_usage(err);
  return *t;
}

std::string json_str(const std::string& s) {
  return "\"" + json_escape(s) + "\"";
}

std::string json_num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof(buf), "%.0f", v);
  } else {
    std::snprintf(buf, sizeof(buf), "%.6g", v);
  }
  return buf;
}

// The sequence number and send time ride in the candidate string ("~SEQ~TIME_NS~"), since the
// server strips keys it does not know; the same layout as the relay mode's candidates.
std::string make_candidate(int size, uint64_t seq, int64_t ts) {
  static const std::string head = R"({"type":"candidate","candidate":"candidate:)";
  static const std::string tail =
      R"( 1 udp 2122260223 192.0.2.1 54321 typ host","sdpMid":"0","sdpMLineIndex":0})";
  std::string m = head + "~" + std::to_string(seq) + "~" + std::to_string(ts) + "~";
  const auto fixed = m.size() + tail.size();
  if (static_cast<int>(fixed) < size) m.append(static_cast<std::size_t>(size) - fixed, 'x');
  return m + tail;
}

bool read_mark(std::string_view text, uint64_t& seq, int64_t& ts) {
  const auto a = text.find('~');
  if (a == std::string_view::npos) return false;
  const auto b = text.find('~', a + 1);
  const auto c = b == std::string_view::npos ? b : text.find('~', b + 1);
  if (c == std::string_view::npos) return false;
  seq = std::strtoull(std::string(text.substr(a + 1, b - a - 1)).c_str(), nullptr, 10);
  ts = std::strtoll(std::string(text.substr(b + 1, c - b - 1)).c_str(), nullptr, 10);
  return true;
}

constexpr std::string_view kProbe = R"({"type":"control","action":"probe"})";

enum class Phase : int { kSetup, kRun, kDrain, kDone };

struct Shared {
  SoakOptions opt;
  Target target;
  std::vector<std::string> ips;
  std::atomic<int> phase{static_cast<int>(Phase::kSetup)};
  std::atomic<int64_t> run_start_ns{0};
};

// Counters a worker updates and the sampler reads while the run goes on.
struct Counters {
  std::atomic<int64_t> open_conns{0};
  std::atomic<uint64_t> sent{0}, received{0}, duplicated{0}, reordered{0}, lost_finished{0};
  std::atomic<uint64_t> setup_ok{0}, setup_failed{0};
  std::atomic<uint64_t> churn_joins_ok{0}, churn_joins_failed{0};
  std::atomic<uint64_t> leaves_ok{0}, leaves_failed{0};
  std::atomic<uint64_t> unexpected_closes{0}, unexpected_messages{0};
  std::atomic<uint64_t> lat_count{0}, lat_sum_us{0}, lat_max_us{0};
  // The longest gap between two of the worker's 1 ms ticks: signal-bench itself held up (its
  // core taken by others), which would otherwise read as the server's latency.
  std::atomic<uint64_t> tick_gap_max_us{0};
  std::atomic<uint64_t> unsent_bytes{0};  // in signal-bench's own write buffers
  std::atomic<uint64_t> outstanding{0};   // sent, not yet received, on pairs still held
};

// Two members of one room. While live it may carry the relay (its slot is an active one); when
// churned it stops sending, waits for what it sent, then side 0 leaves and side 1 must hear
// peer-disconnected before it leaves too.
struct Pair {
  enum class State { kJoining, kLive, kRetiring, kLeaving };
  struct Direction {  // messages sent by side d and received by side 1 - d
    uint64_t next_seq = 0;
    uint64_t next_expected = 0;
    std::set<uint64_t> missing;
    uint64_t outstanding() const { return missing.size() + (next_seq - next_expected); }
  };
  uint64_t serial = 0;
  std::size_t slot = 0;
  bool churned = false;  // a replacement, not one of the first population
  State state = State::kJoining;
  std::unique_ptr<WsLite> side[2];
  bool opened[2] = {false, false};
  bool heard[2] = {false, false};  // side i heard the other's probe
  int64_t started_ns = 0;
  int64_t state_since_ns = 0;
  int next_dir = 0;
  Direction dir[2];
  uint64_t outstanding() const { return dir[0].outstanding() + dir[1].outstanding(); }
};

class SoakWorker : public WsLite::Handler {
 public:
  SoakWorker(Shared& s, int index, std::size_t slots, std::size_t active_slots, double rate,
             double churn)
      : s_(s),
        index_(index),
        slots_(slots, 0),
        active_slots_(active_slots),
        rate_(rate),
        churn_(churn),
        tick_(ioc_) {}

  void run() {
    schedule_tick();
    auto guard = asio::make_work_guard(ioc_);
    ioc_.run();
    for (auto& [serial, p] : pairs_) {
      for (auto& conn : p->side) conn->close();
    }
  }
  void stop() {
    asio::post(ioc_, [this] { ioc_.stop(); });
  }

  Counters counters;
  // Read once the worker stopped.
  LatencyHistogram hist;       // relay latency during the run phase
  LatencyHistogram join_hist;  // churned joins: connect to both members hearing each other
  std::map<std::string, int> close_reasons;
  uint64_t lost_total() const {
    uint64_t l = counters.lost_finished.load();
    for (const auto& [serial, p] : pairs_) l += p->outstanding();
    return l;
  }
  uint64_t pairs_in_state(Pair::State st) const {
    uint64_t n = 0;
    for (const auto& [serial, p] : pairs_) n += p->state == st ? 1 : 0;
    return n;
  }

 private:
  Phase phase() const { return static_cast<Phase>(s_.phase.load(std::memory_order_relaxed)); }

  Pair* find(const WsLite& conn) {
    auto it = pairs_.find(conn.user / 2);
    return it == pairs_.end() ? nullptr : it->second.get();
  }

  const std::string& next_ip() {
    static const std::string none;
    if (s_.ips.empty()) return none;
    return s_.ips[ip_rr_++ % s_.ips.size()];
  }

  void start_pair(std::size_t slot, bool churned) {
    auto owned = std::make_unique<Pair>();
    Pair& p = *owned;
    p.serial = next_serial_++;
    p.slot = slot;
    p.churned = churned;
    p.started_ns = p.state_since_ns = now_ns();
    const std::string room = "soak-" + std::to_string(::getpid()) + "-" + std::to_string(index_) +
                             "-" + std::to_string(p.serial);
    for (int i = 0; i < 2; ++i) {
      p.side[i] = std::make_unique<WsLite>(ioc_, *this);
      p.side[i]->user = p.serial * 2 + static_cast<uint64_t>(i);
    }
    slots_[slot] = p.serial;
    joining_.push_back(p.serial);
    pairs_.emplace(p.serial, std::move(owned));
    // Registered before the sockets start: a start that fails at once reports through on_closed.
    for (int i = 0; i < 2; ++i) {
      if (p.side[i]) {
        p.side[i]->start(s_.target.endpoint, s_.target.host_header, s_.target.target_prefix + room,
                         next_ip());
      }
      if (pairs_.find(p.serial) == pairs_.end()) return;  // failed and finished already
    }
  }

  void close_side(Pair& p, int i) {
    if (p.opened[i]) {
      p.opened[i] = false;
      counters.open_conns.fetch_sub(1, std::memory_order_relaxed);
    }
    p.side[i]->close();
  }

  // Done with a pair: both sockets closed, what it never delivered counted as lost. The object
  // stays alive a while, since the sockets' handlers may still run.
  void finish(Pair& p) {
    close_side(p, 0);
    close_side(p, 1);
    counters.lost_finished.fetch_add(p.outstanding(), std::memory_order_relaxed);
    auto it = pairs_.find(p.serial);
    graveyard_.emplace_back(now_ns(), std::move(it->second));
    pairs_.erase(it);
  }

  // A pair that cannot go on (failed join, unexpected close): finished, and its slot, if it is
  // still the slot's pair, gets a replacement.
  void replace(Pair& p) {
    const std::size_t slot = p.slot;
    const uint64_t serial = p.serial;
    // A first-population join that failed is retried as one; anything later is churn.
    const bool churned = p.churned || p.state != Pair::State::kJoining;
    finish(p);
    // Posted: a start that fails at once (a source address that cannot be bound) must not
    // recurse.
    asio::post(ioc_, [this, slot, serial, churned] {
      if (slots_[slot] == serial && phase() != Phase::kDone) start_pair(slot, churned);
    });
  }

  void set_state(Pair& p, Pair::State st) {
    p.state = st;
    p.state_since_ns = now_ns();
  }

  void went_live(Pair& p) {
    if (p.churned) join_hist.record(static_cast<uint64_t>((now_ns() - p.started_ns) / 1000));
    set_state(p, Pair::State::kLive);
    (p.churned ? counters.churn_joins_ok : counters.setup_ok)
        .fetch_add(1, std::memory_order_relaxed);
    if (!p.churned) fill_setup();
  }

  void join_failed(Pair& p) {
    (p.churned ? counters.churn_joins_failed : counters.setup_failed)
        .fetch_add(1, std::memory_order_relaxed);
    replace(p);
  }

  void begin_leave(Pair& p) {
    set_state(p, Pair::State::kLeaving);
    close_side(p, 0);
  }

  void on_open(WsLite& conn) override {
    Pair* p = find(conn);
    if (!p) return;
    const int i = static_cast<int>(conn.user % 2);
    p->opened[i] = true;
    counters.open_conns.fetch_add(1, std::memory_order_relaxed);
    if (p->state == Pair::State::kJoining) conn.send(kProbe);
  }

  void on_message(WsLite& conn, std::string_view text) override {
    Pair* p = find(conn);
    if (!p) return;
    const int i = static_cast<int>(conn.user % 2);
    uint64_t seq;
    int64_t ts;
    if (read_mark(text, seq, ts)) {
      receive(*p, 1 - i, seq, ts);
      return;
    }
    if (text.find("peer-disconnected") != std::string_view::npos) {
      if (p->state == Pair::State::kLeaving && i == 1) {
        counters.leaves_ok.fetch_add(1, std::memory_order_relaxed);
        finish(*p);
      } else {
        // The server let a member go that nobody closed.
        counters.unexpected_closes.fetch_add(1, std::memory_order_relaxed);
        ++close_reasons["peer-disconnected before any leave"];
        replace(*p);
      }
      return;
    }
    if (text.find("probe") != std::string_view::npos) {
      if (p->state == Pair::State::kJoining) {
        p->heard[i] = true;
        if (p->heard[0] && p->heard[1]) went_live(*p);
      }
      return;  // late probes after the join are expected
    }
    counters.unexpected_messages.fetch_add(1, std::memory_order_relaxed);
  }

  void on_closed(WsLite& conn, int code, std::string_view reason) override {
    Pair* p = find(conn);
    if (!p) return;
    const int i = static_cast<int>(conn.user % 2);
    if (p->opened[i]) {
      p->opened[i] = false;
      counters.open_conns.fetch_sub(1, std::memory_order_relaxed);
    }
    ++close_reasons[std::to_string(code) + " " + std::string(reason)];
    switch (p->state) {
      case Pair::State::kJoining:
        join_failed(*p);
        return;
      case Pair::State::kLive:
      case Pair::State::kRetiring:
        counters.unexpected_closes.fetch_add(1, std::memory_order_relaxed);
        replace(*p);
        return;
      case Pair::State::kLeaving:
        counters.leaves_failed.fetch_add(1, std::memory_order_relaxed);
        finish(*p);
        return;
    }
  }

  void receive(Pair& p, int d, uint64_t seq, int64_t ts) {
    Pair::Direction& r = p.dir[d];
    if (seq == r.next_expected) {
      ++r.next_expected;
    } else if (seq > r.next_expected) {
      for (uint64_t m = r.next_expected; m < seq; ++m) r.missing.insert(m);
      r.next_expected = seq + 1;
    } else if (r.missing.erase(seq) > 0) {
      counters.reordered.fetch_add(1, std::memory_order_relaxed);
    } else {
      counters.duplicated.fetch_add(1, std::memory_order_relaxed);
    }
    counters.received.fetch_add(1, std::memory_order_relaxed);
    const auto us = static_cast<uint64_t>(std::max<int64_t>(0, now_ns() - ts) / 1000);
    if (phase() == Phase::kRun) hist.record(us);
    counters.lat_count.fetch_add(1, std::memory_order_relaxed);
    counters.lat_sum_us.fetch_add(us, std::memory_order_relaxed);
    uint64_t prev = counters.lat_max_us.load(std::memory_order_relaxed);
    while (us > prev && !counters.lat_max_us.compare_exchange_weak(prev, us)) {
    }
    if (p.state == Pair::State::kRetiring && p.outstanding() == 0) begin_leave(p);
  }

  void send(Pair& p, int d) {
    if (!p.side[d]->open()) return;
    p.side[d]->send(make_candidate(s_.opt.size, p.dir[d].next_seq++, now_ns()));
    counters.sent.fetch_add(1, std::memory_order_relaxed);
  }

  // The first population: at most `concurrency` pairs joining at once.
  void fill_setup() {
    const auto limit =
        static_cast<std::size_t>(std::max(1, s_.opt.concurrency / 2 / std::max(1, s_.opt.threads)));
    while (setup_next_ < slots_.size() && joining_now() < limit) {
      start_pair(setup_next_++, false);
    }
  }
  std::size_t joining_now() {
    std::size_t n = 0;
    for (uint64_t serial : joining_) {
      auto it = pairs_.find(serial);
      if (it != pairs_.end() && it->second->state == Pair::State::kJoining) ++n;
    }
    return n;
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
    const int64_t tick_now = now_ns();
    if (last_tick_ns_ != 0) {
      const auto gap = static_cast<uint64_t>((tick_now - last_tick_ns_) / 1000);
      uint64_t prev = counters.tick_gap_max_us.load(std::memory_order_relaxed);
      while (gap > prev && !counters.tick_gap_max_us.compare_exchange_weak(prev, gap)) {
      }
    }
    last_tick_ns_ = tick_now;
    const int64_t now = now_ns();
    const Phase ph = phase();
    if (ph == Phase::kSetup && setup_next_ == 0) fill_setup();
    if (ph == Phase::kRun) {
      const int64_t start = s_.run_start_ns.load(std::memory_order_relaxed);
      const double elapsed = static_cast<double>(now - start) / 1e9;
      send_due(elapsed);
      churn_due(elapsed);
    }
    if (now - last_probe_ns_ >= 20'000'000) {
      last_probe_ns_ = now;
      probe_joining();
      if (ph == Phase::kDrain) publish_outstanding();
    }
    if (now - last_housekeeping_ns_ >= 1'000'000'000) {
      last_housekeeping_ns_ = now;
      housekeeping(now);
    }
  }

  // Open loop: this worker's share of the rate, round-robin over its active slots' live pairs,
  // each pair alternating direction.
  void send_due(double elapsed) {
    if (active_slots_ == 0) return;
    const auto due = static_cast<uint64_t>(rate_ * elapsed);
    while (rate_sent_ < due) {
      Pair* p = nullptr;
      for (std::size_t k = 0; k < active_slots_ && !p; ++k) {
        auto it = pairs_.find(slots_[send_rr_++ % active_slots_]);
        if (it != pairs_.end() && it->second->state == Pair::State::kLive) p = it->second.get();
      }
      if (!p) return;  // every active pair is joining: the next tick catches up
      send(*p, p->next_dir);
      p->next_dir ^= 1;
      ++rate_sent_;
    }
  }

  // Churn: slots in turn (idle and active alike) get a new pair; the old one retires.
  void churn_due(double elapsed) {
    const auto due = static_cast<uint64_t>(churn_ * elapsed);
    while (churned_ < due) {
      Pair* p = nullptr;
      std::size_t slot = 0;
      for (std::size_t k = 0; k < slots_.size() && !p; ++k) {
        slot = churn_rr_++ % slots_.size();
        auto it = pairs_.find(slots_[slot]);
        if (it != pairs_.end() && it->second->state == Pair::State::kLive) p = it->second.get();
      }
      if (!p) return;
      ++churned_;
      start_pair(slot, true);
      if (p->outstanding() == 0) {
        begin_leave(*p);
      } else {
        set_state(*p, Pair::State::kRetiring);
      }
    }
  }

  void probe_joining() {
    for (std::size_t k = 0; k < joining_.size();) {
      auto it = pairs_.find(joining_[k]);
      if (it == pairs_.end() || it->second->state != Pair::State::kJoining) {
        joining_[k] = joining_.back();
        joining_.pop_back();
        continue;
      }
      Pair& p = *it->second;
      // Each side repeats its probe until the other has heard one (a probe that arrives while
      // the other's join is in flight may be dropped).
      if (p.side[0]->open() && !p.heard[1]) p.side[0]->send(kProbe);
      if (p.side[1]->open() && !p.heard[0]) p.side[1]->send(kProbe);
      ++k;
    }
  }

  void publish_outstanding() {
    uint64_t out = 0;
    for (const auto& [serial, p] : pairs_) out += p->outstanding();
    counters.outstanding.store(out, std::memory_order_relaxed);
  }

  void housekeeping(int64_t now) {
    const auto join_timeout = static_cast<int64_t>(s_.opt.join_timeout * 1e9);
    constexpr int64_t kRetireTimeout = 5'000'000'000;  // then it leaves; the rest counts as lost
    std::vector<uint64_t> timed_out;
    uint64_t unsent = 0;
    for (const auto& [serial, p] : pairs_) {
      const int64_t age = now - p->state_since_ns;
      if ((p->state == Pair::State::kJoining && age > join_timeout) ||
          (p->state == Pair::State::kRetiring && age > kRetireTimeout) ||
          (p->state == Pair::State::kLeaving && age > join_timeout)) {
        timed_out.push_back(serial);
      }
      for (const auto& side : p->side) unsent += side->unsent_bytes();
    }
    counters.unsent_bytes.store(unsent, std::memory_order_relaxed);
    for (uint64_t serial : timed_out) {
      auto it = pairs_.find(serial);
      if (it == pairs_.end()) continue;
      Pair& p = *it->second;
      switch (p.state) {
        case Pair::State::kJoining:
          ++close_reasons["join not confirmed in time"];
          join_failed(p);
          break;
        case Pair::State::kRetiring:
          begin_leave(p);
          break;
        case Pair::State::kLeaving:
          ++close_reasons["peer-disconnected not heard in time"];
          counters.leaves_failed.fetch_add(1, std::memory_order_relaxed);
          finish(p);
          break;
        case Pair::State::kLive:
          break;
      }
    }
    publish_outstanding();
    while (!graveyard_.empty() && now - graveyard_.front().first > 5'000'000'000) {
      graveyard_.erase(graveyard_.begin());
    }
  }

  Shared& s_;
  int index_;
  asio::io_context ioc_{1};
  std::vector<uint64_t> slots_;  // the serial of each slot's current pair; active slots first
  std::size_t active_slots_;
  double rate_, churn_;  // this worker's shares, per second
  asio::steady_timer tick_;
  std::unordered_map<uint64_t, std::unique_ptr<Pair>> pairs_;
  std::vector<uint64_t> joining_;  // serials that were joining when started (pruned by probes)
  std::vector<std::pair<int64_t, std::unique_ptr<Pair>>> graveyard_;
  uint64_t next_serial_ = 1;
  std::size_t setup_next_ = 0;
  std::size_t ip_rr_ = 0, send_rr_ = 0, churn_rr_ = 0;
  uint64_t rate_sent_ = 0, churned_ = 0;
  int64_t last_probe_ns_ = 0, last_housekeeping_ns_ = 0, last_tick_ns_ = 0;
};

// ---------------------------------------------------------------- server readings

uint64_t count_fds(int pid) {
  uint64_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

double loadavg_1m() {
  std::ifstream f("/proc/loadavg");
  double v = -1;
  f >> v;
  return v;
}

// The server's side of its TCP connections (local port = its port): the kernel's queues are
// where a server that falls behind shows first (bytes it has not read in rx, bytes its peers have
// not acknowledged in tx), and CLOSE_WAIT sockets are ones the server never closed.
struct SocketQueues {
  uint64_t established = 0, close_wait = 0, other = 0;
  uint64_t rx_bytes = 0, tx_bytes = 0;
  void add(unsigned state, uint64_t rx, uint64_t tx) {
    if (state == 1) {  // TCP_ESTABLISHED
      ++established;
    } else if (state == 8) {  // TCP_CLOSE_WAIT
      ++close_wait;
    } else {
      ++other;
    }
    rx_bytes += rx;
    tx_bytes += tx;
  }
};

// Through sock_diag, filtered in the kernel on the source port: /proc/net/tcp formats every
// socket of the machine as text (tens of thousands here, TIME_WAIT included), which took 100 ms
// and more of the load generator's core per reading. nullopt when netlink is refused.
std::optional<SocketQueues> diag_socket_queues(unsigned port) {
  const int fd = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return std::nullopt;
  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
    nlattr attr;
    inet_diag_bc_op ops[4];  // sport >= port and sport <= port
  } msg{};
  msg.nlh.nlmsg_len = sizeof(msg);
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.req.sdiag_family = AF_INET;
  msg.req.sdiag_protocol = IPPROTO_TCP;
  msg.req.idiag_states = 0xfff & ~((1u << 6) | (1u << 10));  // not TIME_WAIT, not LISTEN
  msg.attr.nla_len = sizeof(msg.attr) + sizeof(msg.ops);
  msg.attr.nla_type = INET_DIAG_REQ_BYTECODE;
  // Each test jumps to the next op when true and past the end (rejected) when false.
  const auto p = static_cast<unsigned short>(port);
  msg.ops[0] = {INET_DIAG_BC_S_GE, 8, 20};
  msg.ops[1] = {0, 0, p};
  msg.ops[2] = {INET_DIAG_BC_S_LE, 8, 12};
  msg.ops[3] = {0, 0, p};
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd, &msg, sizeof(msg), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) <
      0) {
    ::close(fd);
    return std::nullopt;
  }
  SocketQueues q;
  std::vector<char> buf(1 << 16);
  for (;;) {
    const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n <= 0) break;
    auto len = static_cast<unsigned>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, len);
         h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type == NLMSG_DONE) {
        ::close(fd);
        return q;
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        ::close(fd);
        return std::nullopt;
      }
      const auto* m = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
      q.add(m->idiag_state, m->idiag_rqueue, m->idiag_wqueue);
    }
  }
  ::close(fd);
  return std::nullopt;
}

SocketQueues read_socket_queues(unsigned port, bool& from_diag) {
  from_diag = false;
  if (auto q = diag_socket_queues(port)) {
    from_diag = true;
    return *q;
  }
  SocketQueues q;
  std::ifstream f("/proc/net/tcp");
  std::string line;
  std::getline(f, line);  // header
  while (std::getline(f, line)) {
    unsigned lport = 0, state = 0;
    unsigned long tx = 0, rx = 0;
    if (std::sscanf(line.c_str(), " %*d: %*x:%x %*x:%*x %x %lx:%lx", &lport, &state, &tx, &rx) !=
        4) {
      continue;
    }
    if (lport != port || state == 0x0A || state == 0x06) continue;  // as the filter above
    q.add(state, rx, tx);
  }
  return q;
}

// GET /metrics, parsed into {name or name{labels}: value} for gauges and counters (histograms
// and the signaling_* copies of the spec's metrics left out). Empty when the scrape failed.
std::map<std::string, double> scrape_metrics(const tcp::endpoint& ep, const std::string& host) {
  std::map<std::string, double> out;
  asio::io_context ioc;
  tcp::socket sock(ioc);
  boost::system::error_code ec;
  sock.connect(ep, ec);
  if (ec) return out;
  timeval tv{5, 0};  // a server that stops answering must not stop the sampler
  ::setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  const std::string req =
      "GET /metrics HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n";
  asio::write(sock, asio::buffer(req), ec);
  if (ec) return out;
  std::string resp;
  char buf[16384];
  for (;;) {
    const std::size_t n = sock.read_some(asio::buffer(buf), ec);
    resp.append(buf, n);
    if (ec) break;
    const auto head_end = resp.find("\r\n\r\n");
    if (head_end == std::string::npos) continue;
    const auto cl = resp.find("Content-Length: ");
    if (cl != std::string::npos && cl < head_end) {
      const auto len = std::strtoull(resp.c_str() + cl + 16, nullptr, 10);
      if (resp.size() >= head_end + 4 + len) break;
    }
  }
  const auto head_end = resp.find("\r\n\r\n");
  if (resp.rfind("HTTP/1.1 200", 0) != 0 || head_end == std::string::npos) return out;
  std::map<std::string, std::string> types;
  std::istringstream body(resp.substr(head_end + 4));
  std::string line;
  while (std::getline(body, line)) {
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream t(line.substr(7));
      std::string name, type;
      t >> name >> type;
      types[name] = type;
      continue;
    }
    if (line.empty() || line[0] == '#') continue;
    const auto space = line.rfind(' ');
    if (space == std::string::npos) continue;
    const std::string key = line.substr(0, space);
    const std::string name = key.substr(0, key.find('{'));
    auto t = types.find(name);
    if (t == types.end() || (t->second != "gauge" && t->second != "counter")) continue;
    if (name.rfind("signaling_", 0) == 0) continue;
    out[key] = std::strtod(line.c_str() + space + 1, nullptr);
  }
  return out;
}

struct Sample {
  double t = 0;
  std::map<std::string, double> v;        // our readings
  std::map<std::string, double> metrics;  // the server's /metrics
};

// A level after warm-up and at the end: one figure for the first and for the last `window`
// seconds after warm-up, since one reading would make drift the noise of one moment.
// - kPeak, the highest reading, for memory and counts. Every HEARTBEAT_INTERVAL_MS the server
//   pings every member in one go; the allocator gives the memory of that burst back at some
//   heartbeats and not at others, so single RSS readings swing between two levels. The high one
//   is the high-water mark, which a leak raises; windows of several heartbeats always hold it.
// - kMedian, the typical reading, for queues: empty between bursts, a queue that builds up
//   raises its median, while the bursts themselves only raise its highest reading.
enum class Stat { kPeak, kMedian };

struct Level {
  double start = NAN, end = NAN, max = NAN;
  std::size_t samples = 0;
  double drift_pct() const {
    return start > 0 ? (end - start) / start * 100 : (end == 0 && start == 0 ? 0 : NAN);
  }
};

// The window: `window` seconds when given, else a third of what follows the warm-up; never more
// than that third, so the two windows never overlap.
double drift_window(double warmup, double duration, double window) {
  const double third = (duration - warmup) / 3;
  return window > 0 ? std::min(window, third) : third;
}

double stat_of(std::vector<double> x, Stat stat) {
  if (x.empty()) return NAN;
  if (stat == Stat::kPeak) return *std::max_element(x.begin(), x.end());
  std::sort(x.begin(), x.end());
  const std::size_t n = x.size();
  return n % 2 ? x[n / 2] : (x[n / 2 - 1] + x[n / 2]) / 2;
}

Level level_of(const std::vector<Sample>& samples, double warmup, double window, Stat stat,
               const std::function<std::optional<double>(const Sample&)>& get) {
  Level l;
  if (samples.empty()) return l;
  const double last = samples.back().t;
  std::vector<double> first_w, last_w;
  for (const auto& s : samples) {
    if (s.t + 1e-6 < warmup) continue;
    const auto v = get(s);
    if (!v) continue;
    ++l.samples;
    l.max = std::isnan(l.max) ? *v : std::max(l.max, *v);
    if (s.t <= warmup + window + 1e-6) first_w.push_back(*v);
    if (s.t >= last - window - 1e-6) last_w.push_back(*v);
  }
  l.start = stat_of(first_w, stat);
  l.end = stat_of(last_w, stat);
  return l;
}

std::string sample_json(const Sample& s, const char* phase) {
  std::string o = "{\"t\":" + json_num(s.t) + ",\"phase\":\"" + phase + "\"";
  for (const auto& [k, v] : s.v) o += "," + json_str(k) + ":" + json_num(v);
  o += ",\"metrics\":{";
  bool first = true;
  for (const auto& [k, v] : s.metrics) {
    o += (first ? "" : ",") + json_str(k) + ":" + json_num(v);
    first = false;
  }
  return o + "}}";
}

// Counters that must not move during a clean soak: drops, refusals, forced closes, bus trouble.
constexpr const char* kTroubleCounters[] = {
    "cloudgaming_backpressure_closes_total",
    "cloudgaming_rate_limit_drops_total",
    "cloudgaming_connections_rejected_total",
    "cloudgaming_schema_rejects_total",
    "cloudgaming_messages_invalid_json_total",
    "cloudgaming_heartbeat_terminations_total",
    "cloudgaming_oversize_closes_total",
    "cloudgaming_handshake_timeouts_total",
    "cloudgaming_redis_errors_total",
    "cloudgaming_rate_limit_fail_open_total",
    "cloudgaming_bus_gaps_total",
    "cloudgaming_log_lines_dropped_total",
    "cloudgaming_redis_leaves_abandoned_total",
    "cloudgaming_stale_members_released_total",
    "cloudgaming_resume_resyncs_total",
    "cloudgaming_crashed_members_released_total",
    "cloudgaming_resume_windows_expired_total",
};

double metric_sum(const std::map<std::string, double>& m, const std::string& name) {
  double v = 0;
  for (auto it = m.lower_bound(name); it != m.end() && it->first.rfind(name, 0) == 0; ++it) {
    if (it->first.size() == name.size() || it->first[name.size()] == '{') v += it->second;
  }
  return v;
}

}  // namespace

int run_soak(int argc, char** argv) {
  const SoakOptions opt = parse_soak_args(argc, argv);
  raise_open_files_limit();
  Shared s;
  s.opt = opt;
  s.target = resolve(opt.url);
  s.ips = expand_ips(opt.source_ips);
  const unsigned port = s.target.endpoint.port();

  std::ofstream series;
  if (!opt.series.empty()) {
    series.open(opt.series, std::ios::trunc);
    if (!series) soak_usage("cannot write " + opt.series);
  }
  const ProcSample empty = opt.pid ? read_proc(opt.pid) : ProcSample{};
  const uint64_t empty_fds = opt.pid ? count_fds(opt.pid) : 0;

  // Slots split over the workers, active ones first in each.
  const std::size_t pairs = static_cast<std::size_t>(opt.conns / 2);
  std::vector<std::unique_ptr<SoakWorker>> workers;
  for (int w = 0; w < opt.threads; ++w) {
    const auto t = static_cast<std::size_t>(opt.threads);
    const auto wi = static_cast<std::size_t>(w);
    const std::size_t slots = pairs / t + (wi < pairs % t ? 1 : 0);
    const auto ap = static_cast<std::size_t>(opt.active_pairs);
    const std::size_t active = ap / t + (wi < ap % t ? 1 : 0);
    const double rate = opt.active_pairs ? opt.rate * static_cast<double>(active) / ap : 0;
    const double churn = opt.churn * static_cast<double>(slots) / static_cast<double>(pairs);
    workers.push_back(std::make_unique<SoakWorker>(s, w, slots, active, rate, churn));
  }
  auto total = [&](auto member) {
    uint64_t n = 0;
    for (auto& w : workers) n += static_cast<uint64_t>((w->counters.*member).load());
    return n;
  };
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->run(); });

  // Setup: every member joined (each pair confirmed by a probe exchange).
  const auto setup_t0 = SteadyClock::now();
  bool setup_ok = true;
  while (total(&Counters::setup_ok) < pairs) {
    std::this_thread::sleep_for(1s);
    const double el = std::chrono::duration<double>(SteadyClock::now() - setup_t0).count();
    std::fprintf(stderr, "[soak setup %5.0fs] open=%llu pairs joined=%llu failed=%llu\n", el,
                 static_cast<unsigned long long>(total(&Counters::open_conns)),
                 static_cast<unsigned long long>(total(&Counters::setup_ok)),
                 static_cast<unsigned long long>(total(&Counters::setup_failed)));
    if (el > 300 || total(&Counters::setup_failed) > pairs / 10) {
      setup_ok = false;
      break;
    }
  }
  const double setup_s = std::chrono::duration<double>(SteadyClock::now() - setup_t0).count();

  std::vector<Sample> samples;
  double bench_gap_max_ms = 0;
  uint64_t last_received = 0;
  double last_cpu = empty.cpu_seconds;
  auto take_sample = [&](double t, double dt) {
    Sample x;
    x.t = t;
    if (opt.pid) {
      const ProcSample ps = read_proc(opt.pid);
      x.v["rss_kb"] = static_cast<double>(ps.rss_kb);
      x.v["fds"] = static_cast<double>(count_fds(opt.pid));
      x.v["server_cpu_pct"] = dt > 0 ? (ps.cpu_seconds - last_cpu) / dt * 100 : 0;
      last_cpu = ps.cpu_seconds;
    }
    // How long the readings take is recorded too: they run beside the load.
    auto ms_since = [](SteadyClock::time_point a) {
      return std::chrono::duration<double, std::milli>(SteadyClock::now() - a).count();
    };
    const auto tcp_t0 = SteadyClock::now();
    bool from_diag = false;
    const SocketQueues q = read_socket_queues(port, from_diag);
    x.v["read_sockets_ms"] = ms_since(tcp_t0);
    x.v["sockets_from_diag"] = from_diag ? 1 : 0;
    x.v["server_sockets_established"] = static_cast<double>(q.established);
    x.v["server_sockets_close_wait"] = static_cast<double>(q.close_wait);
    x.v["server_sockets_other"] = static_cast<double>(q.other);
    x.v["tcp_rx_queue_bytes"] = static_cast<double>(q.rx_bytes);
    x.v["tcp_tx_queue_bytes"] = static_cast<double>(q.tx_bytes);
    const uint64_t sent = total(&Counters::sent), received = total(&Counters::received);
    const uint64_t lost = total(&Counters::lost_finished);
    x.v["open_conns"] = static_cast<double>(total(&Counters::open_conns));
    x.v["sent"] = static_cast<double>(sent);
    x.v["received"] = static_cast<double>(received);
    x.v["in_flight"] = static_cast<double>(sent - std::min(sent, received + lost));
    x.v["lost_so_far"] = static_cast<double>(lost);
    x.v["duplicated"] = static_cast<double>(total(&Counters::duplicated));
    x.v["reordered"] = static_cast<double>(total(&Counters::reordered));
    x.v["churn_joins_ok"] = static_cast<double>(total(&Counters::churn_joins_ok));
    x.v["churn_joins_failed"] = static_cast<double>(total(&Counters::churn_joins_failed));
    x.v["leaves_ok"] = static_cast<double>(total(&Counters::leaves_ok));
    x.v["leaves_failed"] = static_cast<double>(total(&Counters::leaves_failed));
    x.v["unexpected_closes"] = static_cast<double>(total(&Counters::unexpected_closes));
    x.v["bench_unsent_bytes"] = static_cast<double>(total(&Counters::unsent_bytes));
    x.v["delivered_per_s"] = dt > 0 ? static_cast<double>(received - last_received) / dt : 0;
    last_received = received;
    uint64_t lat_n = 0, lat_sum = 0, lat_max = 0, tick_gap = 0;
    for (auto& w : workers) {
      lat_n += w->counters.lat_count.exchange(0);
      lat_sum += w->counters.lat_sum_us.exchange(0);
      lat_max = std::max(lat_max, w->counters.lat_max_us.exchange(0));
      tick_gap = std::max(tick_gap, w->counters.tick_gap_max_us.exchange(0));
    }
    x.v["latency_mean_us"] = lat_n ? static_cast<double>(lat_sum) / lat_n : 0;
    x.v["latency_max_us"] = static_cast<double>(lat_max);
    x.v["bench_tick_gap_max_ms"] = static_cast<double>(tick_gap) / 1000;
    bench_gap_max_ms = std::max(bench_gap_max_ms, static_cast<double>(tick_gap) / 1000);
    x.v["loadavg_1m"] = loadavg_1m();
    const auto scrape_t0 = SteadyClock::now();
    x.metrics = scrape_metrics(s.target.endpoint, s.target.host_header);
    x.v["scrape_ms"] = ms_since(scrape_t0);
    x.v["metrics_ok"] = x.metrics.empty() ? 0 : 1;
    auto get = [&x](const char* k) {
      auto it = x.v.find(k);
      return it == x.v.end() ? -1.0 : it->second;
    };
    if (series) {
      series << sample_json(x, t < opt.warmup ? "warmup" : "steady") << "\n";
      series.flush();
    }
    std::fprintf(
        stderr,
        "[soak %5.0fs] conns=%.0f sent=%.0f lost=%.0f churn ok/failed=%.0f/%.0f "
        "leaves ok/failed=%.0f/%.0f rss=%.0fkB fds=%.0f rxq=%.0f txq=%.0f in_flight=%.0f\n",
        t, get("open_conns"), get("sent"), get("lost_so_far"), get("churn_joins_ok"),
        get("churn_joins_failed"), get("leaves_ok"), get("leaves_failed"), get("rss_kb"),
        get("fds"), get("tcp_rx_queue_bytes"), get("tcp_tx_queue_bytes"), get("in_flight"));
    samples.push_back(std::move(x));
  };

  double run_s = 0;
  if (setup_ok) {
    const auto t0 = SteadyClock::now();
    s.run_start_ns = t0.time_since_epoch().count();
    s.phase = static_cast<int>(Phase::kRun);
    auto elapsed = [&t0] { return std::chrono::duration<double>(SteadyClock::now() - t0).count(); };
    take_sample(0, 0);
    // Samples are stamped with when they were taken; after one that took long (a server that
    // did not answer /metrics for a while) the next waits for the next period, not at once.
    for (;;) {
      const double next = std::min(
          opt.duration, (std::floor(elapsed() / opt.sample_every + 1e-9) + 1) * opt.sample_every);
      std::this_thread::sleep_until(t0 + std::chrono::duration_cast<SteadyClock::duration>(
                                             std::chrono::duration<double>(next)));
      const double t = elapsed();
      take_sample(t, t - samples.back().t);
      if (next >= opt.duration) break;
    }
    run_s = std::chrono::duration<double>(SteadyClock::now() - t0).count();
    // Stop sending and churning; what is in flight has 5 s to arrive.
    s.phase = static_cast<int>(Phase::kDrain);
    const auto drain_end = SteadyClock::now() + 5s;
    std::this_thread::sleep_for(50ms);
    while (total(&Counters::outstanding) > 0 && SteadyClock::now() < drain_end) {
      std::this_thread::sleep_for(20ms);
    }
  }
  s.phase = static_cast<int>(Phase::kDone);
  for (auto& w : workers) w->stop();
  for (auto& t : threads) t.join();

  LatencyHistogram hist, join_hist;
  uint64_t lost = 0, leaving = 0, joining = 0;
  std::map<std::string, int> reasons;
  for (auto& w : workers) {
    hist.merge(w->hist);
    join_hist.merge(w->join_hist);
    lost += w->lost_total();
    leaving += w->pairs_in_state(Pair::State::kLeaving);
    joining += w->pairs_in_state(Pair::State::kJoining);
    for (const auto& [k, v] : w->close_reasons) reasons[k] += v;
  }
  const uint64_t sent = total(&Counters::sent), received = total(&Counters::received);
  const uint64_t dup = total(&Counters::duplicated), reord = total(&Counters::reordered);
  const uint64_t churn_ok = total(&Counters::churn_joins_ok);
  const uint64_t churn_failed = total(&Counters::churn_joins_failed);
  const uint64_t leaves_ok = total(&Counters::leaves_ok);
  const uint64_t leaves_failed = total(&Counters::leaves_failed);
  const uint64_t unexpected = total(&Counters::unexpected_closes);
  const uint64_t unexpected_msgs = total(&Counters::unexpected_messages);

  // Levels after warm-up, over a window at each end.
  const double window = drift_window(opt.warmup, opt.duration, opt.drift_window);
  struct Tracked {
    const char* name;
    bool queue;  // a queue: its median, and flat also when it stays under the floor below
    std::function<std::optional<double>(const Sample&)> get;
  };
  auto ours = [](const char* k) {
    return [k](const Sample& x) -> std::optional<double> {
      auto it = x.v.find(k);
      if (it == x.v.end()) return std::nullopt;
      return it->second;
    };
  };
  auto metric = [](const char* k) {
    return [k](const Sample& x) -> std::optional<double> {
      auto it = x.metrics.find(k);
      if (it == x.metrics.end()) return std::nullopt;
      return it->second;
    };
  };
  std::vector<Tracked> tracked = {
      {"rss_kb", false, ours("rss_kb")},
      {"fds", false, ours("fds")},
      {"server_sockets_established", false, ours("server_sockets_established")},
      {"server_sockets_close_wait", true, ours("server_sockets_close_wait")},
      {"tcp_rx_queue_bytes", true, ours("tcp_rx_queue_bytes")},
      {"tcp_tx_queue_bytes", true, ours("tcp_tx_queue_bytes")},
      {"in_flight", true, ours("in_flight")},
      {"bench_unsent_bytes", true, ours("bench_unsent_bytes")},
      {"cloudgaming_active_connections", false, metric("cloudgaming_active_connections")},
      {"cloudgaming_local_rooms", false, metric("cloudgaming_local_rooms")},
      {"cloudgaming_suspended_sessions", true, metric("cloudgaming_suspended_sessions")},
      {"process_open_fds", false, metric("process_open_fds")},
      {"process_resident_memory_bytes", false, metric("process_resident_memory_bytes")},
  };
  // A queue is at its floor while it holds less than 100 ms of the offered traffic (messages,
  // or their bytes); below that a percentage is the noise of the moment it was read.
  const double floor_msgs = std::max(1.0, opt.rate * 0.1);
  const double floor_bytes = floor_msgs * opt.size;
  bool flat = !samples.empty();
  std::string levels, drifts, not_flat;
  for (const auto& tr : tracked) {
    const Level l =
        level_of(samples, opt.warmup, window, tr.queue ? Stat::kMedian : Stat::kPeak, tr.get);
    if (l.samples == 0) continue;
    const double d = l.drift_pct();
    const std::string name = tr.name;
    const double floor = name == "in_flight"                       ? floor_msgs
                         : name.find("bytes") != std::string::npos ? floor_bytes
                                                                   : 0;
    bool ok = std::isfinite(d) && std::fabs(d) < opt.max_drift;
    if (tr.queue && l.end <= std::max(floor, l.start)) ok = true;  // not growing, or at the floor
    if (!ok) {
      flat = false;
      not_flat += (not_flat.empty() ? "" : ",") + json_str(name);
    }
    levels += (levels.empty() ? "" : ",") + json_str(name) + ":{\"stat\":\"" +
              (tr.queue ? "median" : "peak") + "\",\"start\":" + json_num(l.start) +
              ",\"end\":" + json_num(l.end) + ",\"max\":" + json_num(l.max) +
              ",\"flat\":" + (ok ? "true" : "false") + "}";
    drifts += (drifts.empty() ? "" : ",") + json_str(name) + ":" +
              (std::isfinite(d) ? json_num(std::round(d * 100) / 100) : "null");
  }
  // Trouble counters: their increase over the run (after setup).
  std::string trouble;
  uint64_t trouble_total = 0;
  if (samples.size() >= 2 && !samples.front().metrics.empty() && !samples.back().metrics.empty()) {
    for (const char* name : kTroubleCounters) {
      const double inc =
          metric_sum(samples.back().metrics, name) - metric_sum(samples.front().metrics, name);
      trouble_total += static_cast<uint64_t>(std::max(0.0, inc));
      trouble += (trouble.empty() ? "" : ",") + json_str(name) + ":" + json_num(inc);
    }
  }
  std::string rs;
  for (const auto& [k, v] : reasons)
    rs += (rs.empty() ? "" : ",") + json_str(k) + ":" + json_num(v);

  const bool clean = setup_ok && lost == 0 && dup == 0 && reord == 0 && churn_failed == 0 &&
                     leaves_failed == 0 && unexpected == 0 && unexpected_msgs == 0 &&
                     trouble_total == 0;
  std::ostringstream o;
  o << "{\"mode\":\"soak\",\"conns\":" << opt.conns << ",\"active_pairs\":" << opt.active_pairs
    << ",\"rate_offered\":" << json_num(opt.rate)
    << ",\"churn_pairs_per_s\":" << json_num(opt.churn) << ",\"size\":" << opt.size
    << ",\"threads\":" << opt.threads << ",\"duration_planned_s\":" << json_num(opt.duration)
    << ",\"duration_s\":" << json_num(std::round(run_s * 10) / 10)
    << ",\"warmup_s\":" << json_num(opt.warmup)
    << ",\"sample_every_s\":" << json_num(opt.sample_every)
    << ",\"drift_window_s\":" << json_num(window)
    << ",\"setup_s\":" << json_num(std::round(setup_s * 10) / 10)
    << ",\"setup_failed\":" << (setup_ok ? "false" : "true")
    << ",\"setup_join_failures\":" << total(&Counters::setup_failed)
    << ",\"conns_open_end\":" << (samples.empty() ? 0 : samples.back().v["open_conns"])
    << ",\"sent\":" << sent << ",\"received\":" << received
    << ",\"delivered_per_s\":" << json_num(run_s > 0 ? std::round(received / run_s) : 0)
    << ",\"lost\":" << lost << ",\"duplicated\":" << dup << ",\"reordered\":" << reord
    << ",\"churn_joins_ok\":" << churn_ok << ",\"churn_joins_failed\":" << churn_failed
    << ",\"leaves_ok\":" << leaves_ok << ",\"leaves_failed\":" << leaves_failed
    << ",\"leaves_pending_at_end\":" << leaving << ",\"joins_pending_at_end\":" << joining
    << ",\"unexpected_closes\":" << unexpected << ",\"unexpected_messages\":" << unexpected_msgs
    << ",\"latency_us\":{\"p50\":" << hist.quantile(0.5) << ",\"p99\":" << hist.quantile(0.99)
    << ",\"p999\":" << hist.quantile(0.999) << ",\"max\":" << hist.max() << "}"
    << ",\"join_ms\":{\"p50\":" << json_num(join_hist.quantile(0.5) / 1000.0)
    << ",\"p99\":" << json_num(join_hist.quantile(0.99) / 1000.0)
    << ",\"max\":" << json_num(join_hist.max() / 1000.0) << "}"
    << ",\"bench_tick_gap_max_ms\":" << json_num(bench_gap_max_ms)
    << ",\"server_empty\":{\"rss_kb\":" << empty.rss_kb << ",\"fds\":" << empty_fds << "}"
    << ",\"max_drift_pct\":" << json_num(opt.max_drift) << ",\"drift_pct\":{" << drifts << "}"
    << ",\"levels\":{" << levels << "},\"not_flat\":[" << not_flat << "]"
    << ",\"flat\":" << (flat ? "true" : "false") << ",\"trouble_counters\":{" << trouble << "}"
    << ",\"closed\":{" << rs << "},\"clean\":" << (clean ? "true" : "false") << "}";
  std::cout << o.str() << std::endl;
  return clean && flat ? 0 : 1;
}

}  // namespace bench
