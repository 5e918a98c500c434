// signal-bench: load generator for any server speaking the seed signaling protocol.
//   relay   N rooms of two peers; one sends at a fixed rate (or closed loop); latency, loss, order
//   connect handshake + join rate and setup latency (join detected by probe exchange)
//   hold    N idle connections held with pings answered; RSS per connection of --pid
//   soak    members held for minutes with a steady relay and churn; drift of --pid (soak.cpp)
//   attack  joins under half-open requests and clients that never read (attack.cpp)
// Progress goes to stderr every second; the last stdout line is one JSON object.
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "attack.hpp"
#include "soak.hpp"
#include "stats.hpp"
#include "ws_lite.hpp"

namespace bench {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct Options {
  std::string mode;
  std::string url, url_b;
  int rooms = 500;
  int size = 300;
  std::string type = "candidate";
  double rate = 0;  // total msgs/s; 0 = closed loop
  int window = 1;
  double duration = 10;
  double warmup = 2;
  int threads = 1;
  std::vector<int> pids;
  int conns = 1000;
  int concurrency = 100;
  std::string source_ips;  // e.g. 127.0.0.2-127.0.0.9
  double hold = 60;
  std::string rooms_out;  // relay: per-room ports and figures, for placement studies
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr
      << "signal-bench: " << why << "\n"
      << "usage:\n"
      << "  signal-bench relay --url ws://HOST:PORT [--url-b ws://HOST2:PORT2] [--rooms 500]\n"
      << "      [--size 300] [--type candidate|offer|control] [--rate MSGS_PER_S|0] [--window K]\n"
      << "      [--duration S] [--warmup S] [--threads T] [--pid PID ...] [--rooms-out PATH]\n"
      << "  signal-bench connect --url ws://HOST:PORT [--conns N] [--concurrency C] [--threads T]\n"
      << "  signal-bench hold --url ws://HOST:PORT --conns N [--concurrency C] [--hold S]\n"
      << "      [--source-ips 127.0.0.2-127.0.0.9] [--threads T] [--pid PID]\n"
      << "  signal-bench soak --url ws://HOST:PORT [--conns 15000] [--rate 2000] [--churn 10]\n"
      << "      [--duration S] [--warmup S] [--series PATH] [--pid PID] (soak --help: all)\n"
      << kAttackUsage
      << "The server needs rate limits above the offered load (RATE_LIMIT_* variables).\n";
  std::exit(2);
}

Options parse_args(int argc, char** argv) {
  if (argc < 2) usage("missing mode");
  Options o;
  o.mode = argv[1];
  if (o.mode != "relay" && o.mode != "connect" && o.mode != "hold" && o.mode != "attack")
    usage("unknown mode " + o.mode);
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    try {
      if (a == "--url")
        o.url = value();
      else if (a == "--url-b")
        o.url_b = value();
      else if (a == "--rooms")
        o.rooms = std::stoi(value());
      else if (a == "--size")
        o.size = std::stoi(value());
      else if (a == "--type")
        o.type = value();
      else if (a == "--rate")
        o.rate = std::stod(value());
      else if (a == "--window")
        o.window = std::stoi(value());
      else if (a == "--duration")
        o.duration = std::stod(value());
      else if (a == "--warmup")
        o.warmup = std::stod(value());
      else if (a == "--threads")
        o.threads = std::stoi(value());
      else if (a == "--rooms-out")
        o.rooms_out = value();
      else if (a == "--pid")
        o.pids.push_back(std::stoi(value()));
      else if (a == "--conns")
        o.conns = std::stoi(value());
      else if (a == "--concurrency")
        o.concurrency = std::stoi(value());
      else if (a == "--source-ips")
        o.source_ips = value();
      else if (a == "--hold")
        o.hold = std::stod(value());
      else
        usage("unknown option " + a);
    } catch (const std::exception&) {
      usage("bad value for " + a);
    }
  }
  if (o.url.empty()) usage("--url is required");
  if (o.type != "candidate" && o.type != "offer" && o.type != "control") usage("bad --type");
  if (o.rooms < 1 || o.threads < 1 || o.window < 1 || o.size < 64) usage("bad numeric option");
  return o;
}

Target resolve(const std::string& url) {
  std::string err;
  auto t = resolve_target(url, &err);
  if (!t) usage(err);
  return *t;
}

// ---------------------------------------------------------------- relay

// Sequence number and send time travel inside the content, since the server strips unknown keys:
// "~SEQ~TIME_NS~" in the candidate string, the sdp, or the control payload.
std::string make_message(const std::string& type, int size, uint64_t seq, int64_t ts) {
  const std::string mark = "~" + std::to_string(seq) + "~" + std::to_string(ts) + "~";
  std::string head, tail;
  if (type == "candidate") {
    head = R"({"type":"candidate","candidate":"candidate:)";
    tail = R"( 1 udp 2122260223 192.0.2.1 54321 typ host","sdpMid":"0","sdpMLineIndex":0})";
  } else if (type == "offer") {
    head = R"({"type":"offer","sdp":"v=0 )";
    tail = R"("})";
  } else {
    head = R"({"type":"control","action":"bench","payload":")";
    tail = R"("})";
  }
  std::string m = head + mark;
  const auto fixed = m.size() + tail.size();
  if (static_cast<int>(fixed) < size) m.append(static_cast<std::size_t>(size) - fixed, 'x');
  m += tail;
  return m;
}

bool parse_mark(std::string_view text, uint64_t& seq, int64_t& ts) {
  const auto a = text.find('~');
  if (a == std::string_view::npos) return false;
  const auto b = text.find('~', a + 1);
  const auto c = b == std::string_view::npos ? b : text.find('~', b + 1);
  if (c == std::string_view::npos) return false;
  seq = std::strtoull(std::string(text.substr(a + 1, b - a - 1)).c_str(), nullptr, 10);
  ts = std::strtoll(std::string(text.substr(b + 1, c - b - 1)).c_str(), nullptr, 10);
  return true;
}

enum class Phase : int { kConnect, kProbe, kWarmup, kMeasure, kDrain, kDone };

struct RelayShared {
  Options opt;
  Target a, b;
  std::atomic<int> phase{static_cast<int>(Phase::kConnect)};
  std::atomic<int64_t> measure_start_ns{0};
  std::atomic<int64_t> measure_end_ns{0};
  std::atomic<int> opened{0}, joined{0}, closed{0};
  std::mutex close_mu;
  std::map<std::string, int> close_reasons;
};

class RelayWorker : public WsLite::Handler {
 public:
  RelayWorker(RelayShared& shared, int index) : s_(shared), index_(index), tick_(ioc_) {}

  void add_room(int room) {
    auto r = std::make_unique<Room>();
    r->id = "bench-" + std::to_string(::getpid()) + "-" + std::to_string(room);
    r->sender = std::make_unique<WsLite>(ioc_, *this);
    r->receiver = std::make_unique<WsLite>(ioc_, *this);
    r->sender->user = rooms_.size() * 2;
    r->receiver->user = rooms_.size() * 2 + 1;
    rooms_.push_back(std::move(r));
  }
  void run() {
    for (auto& r : rooms_) {
      r->receiver->start(s_.b.endpoint, s_.b.host_header, s_.b.target_prefix + r->id);
      r->sender->start(s_.a.endpoint, s_.a.host_header, s_.a.target_prefix + r->id);
    }
    schedule_tick();
    auto guard = asio::make_work_guard(ioc_);
    ioc_.run();
  }
  void stop() { ioc_.stop(); }
  // Returns once every handler the worker was running has finished: after the phase changed,
  // none of them sends any more (a tick or a receipt may have read the old phase just before).
  void barrier() {
    std::promise<void> ran;
    asio::post(ioc_, [&ran] { ran.set_value(); });
    ran.get_future().wait();
  }

  // Results, read once the worker stopped.
  LatencyHistogram hist;
  uint64_t sent_total = 0, received_measured = 0, sent_measured = 0;
  uint64_t duplicates = 0, reordered = 0;
  uint64_t lost() const {
    uint64_t l = 0;
    for (const auto& r : rooms_) l += r->missing.size() + (r->next_seq - r->next_expected);
    return l;
  }
  std::atomic<uint64_t> progress_sent{0}, progress_received{0};
  // One line per room: id, sender and receiver client ports, messages measured, their latency sum.
  void write_rooms(std::ostream& out) const {
    for (const auto& r : rooms_) {
      out << r->id << ' ' << r->sender_port << ' ' << r->receiver_port << ' ' << r->measured << ' '
          << r->latency_sum_us << '\n';
    }
  }

 private:
  struct Room {
    std::string id;
    std::unique_ptr<WsLite> sender, receiver;
    bool joined = false;
    uint64_t next_seq = 0;       // next sequence number to send
    uint64_t next_expected = 0;  // receiver side
    std::set<uint64_t> missing;  // skipped numbers not yet seen
    int in_flight = 0;
    unsigned short sender_port = 0, receiver_port = 0;  // client side, taken when each opens
    uint64_t measured = 0, latency_sum_us = 0;          // this room's share of the measurement
  };

  Phase phase() const { return static_cast<Phase>(s_.phase.load(std::memory_order_relaxed)); }
  Room& room_of(WsLite& c) { return *rooms_[c.user / 2]; }
  bool is_sender(WsLite& c) const { return c.user % 2 == 0; }

  void on_open(WsLite& c) override {
    s_.opened.fetch_add(1);
    (is_sender(c) ? room_of(c).sender_port : room_of(c).receiver_port) = c.local_port();
  }
  void on_closed(WsLite&, int code, std::string_view reason) override {
    s_.closed.fetch_add(1);
    std::lock_guard lock(s_.close_mu);
    ++s_.close_reasons[std::to_string(code) + " " + std::string(reason)];
  }
  void on_message(WsLite& c, std::string_view text) override {
    Room& r = room_of(c);
    if (is_sender(c)) return;  // the sender hears nothing in relay mode but probes we ignore
    uint64_t seq;
    int64_t ts;
    if (!parse_mark(text, seq, ts)) {
      if (!r.joined && text.find("probe") != std::string_view::npos) {
        r.joined = true;
        s_.joined.fetch_add(1);
      }
      return;
    }
    const int64_t now = now_ns();
    if (r.in_flight > 0) --r.in_flight;
    if (seq == r.next_expected) {
      ++r.next_expected;
    } else if (seq > r.next_expected) {
      for (uint64_t m = r.next_expected; m < seq; ++m) r.missing.insert(m);
      r.next_expected = seq + 1;
    } else if (r.missing.erase(seq) > 0) {
      ++reordered;
    } else {
      ++duplicates;
    }
    progress_received.fetch_add(1, std::memory_order_relaxed);
    const int64_t start = s_.measure_start_ns.load(std::memory_order_relaxed);
    const int64_t end = s_.measure_end_ns.load(std::memory_order_relaxed);
    if (start != 0 && ts >= start && (end == 0 || ts < end)) {
      ++received_measured;
      const auto us = static_cast<uint64_t>(std::max<int64_t>(0, now - ts) / 1000);
      hist.record(us);
      ++r.measured;
      r.latency_sum_us += us;
    }
    if (s_.opt.rate == 0 && (phase() == Phase::kWarmup || phase() == Phase::kMeasure)) {
      send_one(r);
    }
  }

  void send_one(Room& r) {
    const int64_t ts = now_ns();
    const std::string m = make_message(s_.opt.type, s_.opt.size, r.next_seq++, ts);
    r.sender->send(m);
    ++r.in_flight;
    ++sent_total;
    progress_sent.fetch_add(1, std::memory_order_relaxed);
    const int64_t start = s_.measure_start_ns.load(std::memory_order_relaxed);
    if (start != 0 && ts >= start && s_.measure_end_ns.load(std::memory_order_relaxed) == 0) {
      ++sent_measured;
    }
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
    const Phase p = phase();
    const int64_t now = now_ns();
    if (p == Phase::kProbe) {
      // Until each receiver hears its sender, send probes (servers without our join-before-open
      // guarantee may drop messages sent while the join is in flight).
      if (now - last_probe_ns_ > 20'000'000) {
        last_probe_ns_ = now;
        for (auto& r : rooms_) {
          if (!r->joined && r->sender->open())
            r->sender->send(R"({"type":"control","action":"probe"})");
        }
      }
      return;
    }
    if (p != Phase::kWarmup && p != Phase::kMeasure) return;
    if (s_.opt.rate == 0) {
      if (!primed_) {
        primed_ = true;
        for (auto& r : rooms_) {
          for (int k = 0; k < s_.opt.window; ++k) send_one(*r);
        }
      }
      return;
    }
    // Open loop: this worker's share of the rate, spread over its rooms round-robin.
    if (rate_start_ns_ == 0) rate_start_ns_ = now;
    const double share = s_.opt.rate * static_cast<double>(rooms_.size()) / s_.opt.rooms;
    const auto due = static_cast<uint64_t>(share * static_cast<double>(now - rate_start_ns_) / 1e9);
    while (rate_sent_ < due) {
      send_one(*rooms_[rr_++ % rooms_.size()]);
      ++rate_sent_;
    }
  }

  RelayShared& s_;
  int index_;
  asio::io_context ioc_{1};
  asio::steady_timer tick_;
  std::vector<std::unique_ptr<Room>> rooms_;
  int64_t last_probe_ns_ = 0;
  bool primed_ = false;
  int64_t rate_start_ns_ = 0;
  uint64_t rate_sent_ = 0;
  std::size_t rr_ = 0;
};

std::string server_stats_json(const std::vector<int>& pids, const std::vector<ProcSample>& before,
                              const std::vector<ProcSample>& after, double seconds) {
  std::string out = "[";
  for (std::size_t i = 0; i < pids.size(); ++i) {
    if (i) out += ",";
    const double cpu = after[i].ok && before[i].ok
                           ? (after[i].cpu_seconds - before[i].cpu_seconds) / seconds * 100
                           : -1;
    char buf[160];
    std::snprintf(buf, sizeof(buf), R"({"pid":%d,"cpu_percent":%.1f,"rss_kb":%llu})", pids[i], cpu,
                  static_cast<unsigned long long>(after[i].rss_kb));
    out += buf;
  }
  return out + "]";
}

std::vector<ProcSample> sample_pids(const std::vector<int>& pids) {
  std::vector<ProcSample> s;
  for (int p : pids) s.push_back(read_proc(p));
  return s;
}

int run_relay(const Options& opt) {
  RelayShared s;
  s.opt = opt;
  s.a = resolve(opt.url);
  s.b = resolve(opt.url_b.empty() ? opt.url : opt.url_b);
  std::vector<std::unique_ptr<RelayWorker>> workers;
  for (int t = 0; t < opt.threads; ++t) workers.push_back(std::make_unique<RelayWorker>(s, t));
  for (int r = 0; r < opt.rooms; ++r) workers[r % opt.threads]->add_room(r);
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->run(); });

  auto set_phase = [&](Phase p) { s.phase.store(static_cast<int>(p)); };
  auto progress = [&](const char* label, double t) {
    uint64_t sent = 0, recv = 0;
    for (auto& w : workers) {
      sent += w->progress_sent.load();
      recv += w->progress_received.load();
    }
    std::fprintf(stderr, "[%5.1fs] %-8s open=%d joined=%d closed=%d sent=%llu received=%llu\n", t,
                 label, s.opened.load(), s.joined.load(), s.closed.load(),
                 static_cast<unsigned long long>(sent), static_cast<unsigned long long>(recv));
  };
  const auto t0 = SteadyClock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(SteadyClock::now() - t0).count(); };
  // Connect and probe (bounded).
  double next_print = 1;
  set_phase(Phase::kProbe);
  while (s.joined.load() < opt.rooms && elapsed() < 60 && s.closed.load() == 0) {
    std::this_thread::sleep_for(20ms);
    if (elapsed() >= next_print) {
      progress("joining", elapsed());
      next_print += 1;
    }
  }
  bool failed_setup = s.joined.load() < opt.rooms;
  std::vector<ProcSample> before, after;
  double measured_seconds = 0;
  if (!failed_setup) {
    set_phase(Phase::kWarmup);
    const double warm_end = elapsed() + opt.warmup;
    while (elapsed() < warm_end) {
      std::this_thread::sleep_for(10ms);
      if (elapsed() >= next_print) {
        progress("warmup", elapsed());
        next_print += 1;
      }
    }
    before = sample_pids(opt.pids);
    s.measure_start_ns = now_ns();
    set_phase(Phase::kMeasure);
    const double measure_end = elapsed() + opt.duration;
    while (elapsed() < measure_end) {
      std::this_thread::sleep_for(10ms);
      if (elapsed() >= next_print) {
        progress("measure", elapsed());
        next_print += 1;
      }
    }
    s.measure_end_ns = now_ns();
    measured_seconds = static_cast<double>(s.measure_end_ns - s.measure_start_ns) / 1e9;
    after = sample_pids(opt.pids);
    set_phase(Phase::kDrain);
    for (auto& w : workers) w->barrier();  // nothing is sent from here on
    // Let what is in flight arrive: until everything sent was received, at most 3 s. (Stopping
    // at the first 100 ms without progress counted a loaded machine's stalls as losses.)
    const double drain_end = elapsed() + 3;
    while (elapsed() < drain_end) {
      uint64_t sent = 0, recv = 0;
      for (auto& w : workers) {
        recv += w->progress_received.load();
        sent += w->progress_sent.load();
      }
      if (recv >= sent) break;
      std::this_thread::sleep_for(10ms);
    }
  }
  set_phase(Phase::kDone);
  for (auto& w : workers) w->stop();
  for (auto& t : threads) t.join();

  if (!opt.rooms_out.empty()) {
    std::ofstream f(opt.rooms_out);
    for (auto& w : workers) w->write_rooms(f);
  }
  LatencyHistogram hist;
  uint64_t sent = 0, sent_measured = 0, received_measured = 0, lost = 0, dup = 0, reord = 0;
  for (auto& w : workers) {
    hist.merge(w->hist);
    sent += w->sent_total;
    sent_measured += w->sent_measured;
    received_measured += w->received_measured;
    lost += w->lost();
    dup += w->duplicates;
    reord += w->reordered;
  }
  std::string reasons;
  for (const auto& [k, v] : s.close_reasons) {
    reasons += (reasons.empty() ? "" : ",") + std::string("\"") + json_escape(k) +
               "\":" + std::to_string(v);
  }
  char buf[1024];
  std::snprintf(
      buf, sizeof(buf),
      R"({"mode":"relay","rooms":%d,"size":%d,"type":"%s","rate_offered":%.0f,"window":%d,"threads":%d,)"
      R"("two_instances":%s,"duration_s":%.2f,"sent":%llu,"sent_measured":%llu,"received_measured":%llu,)"
      R"("delivered_per_s":%.0f,"lost":%llu,"duplicated":%llu,"reordered":%llu,"setup_failed":%s,)"
      R"("latency_us":{"p50":%llu,"p90":%llu,"p99":%llu,"p999":%llu,"max":%llu},)",
      opt.rooms, opt.size, opt.type.c_str(), opt.rate, opt.window, opt.threads,
      opt.url_b.empty() ? "false" : "true", measured_seconds, static_cast<unsigned long long>(sent),
      static_cast<unsigned long long>(sent_measured),
      static_cast<unsigned long long>(received_measured),
      measured_seconds > 0 ? static_cast<double>(received_measured) / measured_seconds : 0.0,
      static_cast<unsigned long long>(lost), static_cast<unsigned long long>(dup),
      static_cast<unsigned long long>(reord), failed_setup ? "true" : "false",
      static_cast<unsigned long long>(hist.quantile(0.50)),
      static_cast<unsigned long long>(hist.quantile(0.90)),
      static_cast<unsigned long long>(hist.quantile(0.99)),
      static_cast<unsigned long long>(hist.quantile(0.999)),
      static_cast<unsigned long long>(hist.max()));
  std::cout << buf << "\"closed\":{" << reasons << "},\"server\":"
            << (after.empty() ? "[]" : server_stats_json(opt.pids, before, after, measured_seconds))
            << "}" << std::endl;
  return (failed_setup || lost > 0 || dup > 0 || reord > 0 || s.closed.load() > 0) ? 1 : 0;
}

// ---------------------------------------------------------------- connect

class ConnectWorker : public WsLite::Handler {
 public:
  ConnectWorker(const Target& t, int pairs, int concurrency, std::atomic<int>& done_pairs)
      : t_(t), pairs_(pairs), concurrency_(concurrency), done_pairs_(done_pairs), tick_(ioc_) {}
  void run() {
    for (int i = 0; i < std::min(pairs_, concurrency_); ++i) start_pair();
    schedule_tick();
    auto guard = asio::make_work_guard(ioc_);
    ioc_.run_for(std::chrono::seconds(120));
  }
  void stop() { ioc_.stop(); }
  // Returns once every handler the worker was running has finished: after the phase changed,
  // none of them sends any more (a tick or a receipt may have read the old phase just before).
  void barrier() {
    std::promise<void> ran;
    asio::post(ioc_, [&ran] { ran.set_value(); });
    ran.get_future().wait();
  }
  LatencyHistogram hist;
  int failures = 0;
  std::map<std::string, int> reasons;

 private:
  struct Pair {
    std::unique_ptr<WsLite> a, b;
    int64_t start = 0;
    bool a_heard = false, b_heard = false, finished = false;
  };
  void start_pair() {
    if (started_ >= pairs_) return;
    const int i = started_++;
    auto p = std::make_unique<Pair>();
    p->a = std::make_unique<WsLite>(ioc_, *this);
    p->b = std::make_unique<WsLite>(ioc_, *this);
    p->a->user = static_cast<uint64_t>(i) * 2;
    p->b->user = static_cast<uint64_t>(i) * 2 + 1;
    p->start = now_ns();
    const std::string room = "conn-" + std::to_string(::getpid()) + "-" +
                             std::to_string(reinterpret_cast<uintptr_t>(this) % 100000) + "-" +
                             std::to_string(i);
    p->a->start(t_.endpoint, t_.host_header, t_.target_prefix + room);
    p->b->start(t_.endpoint, t_.host_header, t_.target_prefix + room);
    pairs_map_[i] = std::move(p);
  }
  Pair* pair_of(WsLite& c) {
    auto it = pairs_map_.find(static_cast<int>(c.user / 2));
    return it == pairs_map_.end() ? nullptr : it->second.get();
  }
  void finish(int index, bool ok) {
    auto it = pairs_map_.find(index);
    if (it == pairs_map_.end() || it->second->finished) return;
    Pair& p = *it->second;
    p.finished = true;
    if (ok)
      hist.record(static_cast<uint64_t>((now_ns() - p.start) / 1000));
    else
      ++failures;
    p.a->close();
    p.b->close();
    graveyard_.push_back(std::move(it->second));  // handlers may still reference them
    pairs_map_.erase(it);
    done_pairs_.fetch_add(1);
    start_pair();
  }
  void on_open(WsLite& c) override {
    // Probe at once; the tick repeats it until the other side hears one (a server may drop
    // what arrives while the join is still in flight).
    c.send(R"({"type":"control","action":"probe"})");
  }
  void on_message(WsLite& c, std::string_view text) override {
    Pair* p = pair_of(c);
    if (!p || text.find("probe") == std::string_view::npos) return;
    (c.user % 2 == 0 ? p->a_heard : p->b_heard) = true;
    if (p->a_heard && p->b_heard) finish(static_cast<int>(c.user / 2), true);
  }
  void on_closed(WsLite& c, int code, std::string_view reason) override {
    Pair* p = pair_of(c);
    if (!p || p->finished) return;
    ++reasons[std::to_string(code) + " " + std::string(reason)];
    finish(static_cast<int>(c.user / 2), false);
  }
  void schedule_tick() {
    tick_.expires_after(10ms);
    tick_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      for (auto& [i, p] : pairs_map_) {
        if (p->a->open() && !p->b_heard) p->a->send(R"({"type":"control","action":"probe"})");
        if (p->b->open() && !p->a_heard) p->b->send(R"({"type":"control","action":"probe"})");
      }
      if (graveyard_.size() > 4096) graveyard_.erase(graveyard_.begin(), graveyard_.begin() + 2048);
      schedule_tick();
    });
  }
  const Target& t_;
  int pairs_, concurrency_;
  std::atomic<int>& done_pairs_;
  asio::io_context ioc_{1};
  asio::steady_timer tick_;
  int started_ = 0;
  std::map<int, std::unique_ptr<Pair>> pairs_map_;
  std::vector<std::unique_ptr<Pair>> graveyard_;
};

int run_connect(const Options& opt) {
  const Target t = resolve(opt.url);
  const int pairs = std::max(1, opt.conns / 2);
  std::atomic<int> done{0};
  std::vector<std::unique_ptr<ConnectWorker>> workers;
  for (int i = 0; i < opt.threads; ++i) {
    const int share = pairs / opt.threads + (i < pairs % opt.threads ? 1 : 0);
    workers.push_back(std::make_unique<ConnectWorker>(
        t, share, std::max(1, opt.concurrency / 2 / opt.threads), done));
  }
  const auto t0 = SteadyClock::now();
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->run(); });
  int last = 0;
  auto next_print = t0 + 1s;
  while (done.load() < pairs && SteadyClock::now() - t0 < 110s) {
    std::this_thread::sleep_for(5ms);  // the rate is computed from when the last pair finished
    if (SteadyClock::now() >= next_print) {
      const int d = done.load();
      std::fprintf(stderr, "[connect] pairs done=%d (+%d/s)\n", d, d - last);
      last = d;
      next_print += 1s;
    }
  }
  const double secs = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  for (auto& w : workers) w->stop();
  for (auto& th : threads) th.join();
  LatencyHistogram hist;
  int failures = 0;
  std::map<std::string, int> reasons;
  for (auto& w : workers) {
    hist.merge(w->hist);
    failures += w->failures;
    for (auto& [k, v] : w->reasons) reasons[k] += v;
  }
  std::string r;
  for (const auto& [k, v] : reasons)
    r += (r.empty() ? "" : ",") + std::string("\"") + json_escape(k) + "\":" + std::to_string(v);
  char buf[512];
  std::snprintf(
      buf, sizeof(buf),
      R"({"mode":"connect","conns":%d,"concurrency":%d,"seconds":%.2f,"joined_conns":%llu,"failed_pairs":%d,)"
      R"("handshake_join_per_s":%.0f,"setup_us":{"p50":%llu,"p90":%llu,"p99":%llu,"max":%llu},)",
      pairs * 2, opt.concurrency, secs, static_cast<unsigned long long>(hist.count() * 2), failures,
      static_cast<double>(hist.count() * 2) / secs,
      static_cast<unsigned long long>(hist.quantile(0.5)),
      static_cast<unsigned long long>(hist.quantile(0.9)),
      static_cast<unsigned long long>(hist.quantile(0.99)),
      static_cast<unsigned long long>(hist.max()));
  std::cout << buf << "\"closed\":{" << r << "}}" << std::endl;
  return failures > 0 || static_cast<int>(hist.count()) < pairs ? 1 : 0;
}

// ---------------------------------------------------------------- hold

class HoldWorker : public WsLite::Handler {
 public:
  HoldWorker(const Target& t, std::vector<std::string> ips, int conns, int concurrency, int id)
      : t_(t),
        ips_(std::move(ips)),
        conns_(conns),
        concurrency_(concurrency),
        id_(id),
        tick_(ioc_) {}
  void run() {
    for (int i = 0; i < std::min(conns_, concurrency_); ++i) start_one();
    auto guard = asio::make_work_guard(ioc_);
    ioc_.run();
  }
  void stop() {
    asio::post(ioc_, [this] { ioc_.stop(); });
  }
  std::atomic<int> open_now{0}, opened{0}, failed{0};

 private:
  void start_one() {
    if (started_ >= conns_) return;
    const int i = started_++;
    auto c = std::make_unique<WsLite>(ioc_, *this);
    // Two members per room, as in production.
    const std::string room = "hold-" + std::to_string(::getpid()) + "-" + std::to_string(id_) +
                             "-" + std::to_string(i / 2);
    const std::string ip =
        ips_.empty() ? std::string() : ips_[static_cast<std::size_t>(i) % ips_.size()];
    c->start(t_.endpoint, t_.host_header, t_.target_prefix + room, ip);
    conns_list_.push_back(std::move(c));
  }
  void on_open(WsLite& c) override {
    c.user = 1;  // opened: a later close is a drop, not a failed attempt
    open_now.fetch_add(1);
    opened.fetch_add(1);
    start_one();
  }
  void on_message(WsLite&, std::string_view) override {}
  void on_closed(WsLite& c, int, std::string_view) override {
    if (c.user == 1) {
      open_now.fetch_sub(1);
    } else {
      failed.fetch_add(1);
      start_one();
    }
  }
  const Target& t_;
  std::vector<std::string> ips_;
  int conns_, concurrency_, id_;
  asio::io_context ioc_{1};
  asio::steady_timer tick_;
  int started_ = 0;
  std::vector<std::unique_ptr<WsLite>> conns_list_;
};

int run_hold(const Options& opt) {
  const Target t = resolve(opt.url);
  const auto ips = expand_ips(opt.source_ips);
  const auto base = sample_pids(opt.pids);
  std::vector<std::unique_ptr<HoldWorker>> workers;
  for (int i = 0; i < opt.threads; ++i) {
    const int share = opt.conns / opt.threads + (i < opt.conns % opt.threads ? 1 : 0);
    workers.push_back(
        std::make_unique<HoldWorker>(t, ips, share, std::max(1, opt.concurrency / opt.threads), i));
  }
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->run(); });
  auto total = [&](auto member) {
    int n = 0;
    for (auto& w : workers) n += ((*w).*member).load();
    return n;
  };
  const auto t0 = SteadyClock::now();
  while (total(&HoldWorker::opened) + total(&HoldWorker::failed) < opt.conns &&
         SteadyClock::now() - t0 < 300s) {
    std::this_thread::sleep_for(1s);
    std::fprintf(stderr, "[hold] opening: open=%d failed=%d\n", total(&HoldWorker::open_now),
                 total(&HoldWorker::failed));
  }
  const int opened = total(&HoldWorker::open_now);
  const auto loaded = sample_pids(opt.pids);
  const auto h0 = SteadyClock::now();
  while (SteadyClock::now() - h0 < std::chrono::duration<double>(opt.hold)) {
    std::this_thread::sleep_for(1s);
    std::fprintf(stderr, "[hold] holding: open=%d\n", total(&HoldWorker::open_now));
  }
  const int still_open = total(&HoldWorker::open_now);
  for (auto& w : workers) w->stop();
  for (auto& th : threads) th.join();
  double per_conn = -1;
  if (!opt.pids.empty() && base[0].ok && loaded[0].ok && opened > 0) {
    per_conn = static_cast<double>(loaded[0].rss_kb - base[0].rss_kb) * 1024.0 / opened;
  }
  char buf[512];
  std::snprintf(
      buf, sizeof(buf),
      R"({"mode":"hold","conns":%d,"opened":%d,"failed":%d,"held_s":%.0f,"still_open":%d,"dropped":%d,)"
      R"("server_rss_kb_before":%llu,"server_rss_kb_loaded":%llu,"rss_bytes_per_conn":%.0f})",
      opt.conns, opened, total(&HoldWorker::failed), opt.hold, still_open, opened - still_open,
      static_cast<unsigned long long>(base.empty() ? 0 : base[0].rss_kb),
      static_cast<unsigned long long>(loaded.empty() ? 0 : loaded[0].rss_kb), per_conn);
  std::cout << buf << std::endl;
  return (opened < opt.conns || still_open < opened) ? 1 : 0;
}

}  // namespace
}  // namespace bench

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "soak") return bench::run_soak(argc, argv);
  if (argc >= 2 && std::string(argv[1]) == "attack") return bench::run_attack(argc, argv);
  const bench::Options opt = bench::parse_args(argc, argv);
  if (opt.mode == "relay") return bench::run_relay(opt);
  if (opt.mode == "connect") return bench::run_connect(opt);
  return bench::run_hold(opt);
}
