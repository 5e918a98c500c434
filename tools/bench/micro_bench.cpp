// Google Benchmark micro-benchmarks of the per-message path: validate + strip + serialize each
// message type, a relay through the room registry to in-process peers, what a join's log line
// costs the loop that logs it, and what a /metrics answer costs the loop that serves it.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>

#include "obs/logger.hpp"
#include "obs/metrics.hpp"
#include "obs/process_stats.hpp"
#include "signaling/protocol.hpp"
#include "signaling/rooms.hpp"

namespace {

using namespace sigsrv;

std::string candidate_of(std::size_t size) {
  std::string m =
      R"({"type":"candidate","candidate":"candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host )";
  const std::string tail = R"(","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"})";
  if (m.size() + tail.size() < size) m.append(size - m.size() - tail.size(), 'x');
  return m + tail;
}

void BM_ParseCandidate300(benchmark::State& state) {
  const std::string msg = candidate_of(300);
  for (auto _ : state) benchmark::DoNotOptimize(parse_client_message(msg));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * msg.size()));
}
BENCHMARK(BM_ParseCandidate300);

// The same message through the DOM path alone, which every message took before the DOM-free
// reading of common shapes.
void BM_ParseCandidate300Dom(benchmark::State& state) {
  const std::string msg = candidate_of(300);
  for (auto _ : state) benchmark::DoNotOptimize(detail::parse_client_message_dom(msg));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * msg.size()));
}
BENCHMARK(BM_ParseCandidate300Dom);

// What an instance reads for each message relayed to it from another one.
std::string envelope_of_candidate300() {
  return relay_envelope("client:6f1c2b9e-4d1a-4b7e-9f3e-2a1d0c9b8e7f",
                        parse_client_message(candidate_of(300)).text, "instance-1a2b3c",
                        1700000000123456);
}

void BM_ParseEnvelope(benchmark::State& state) {
  const std::string payload = envelope_of_candidate300();
  for (auto _ : state) benchmark::DoNotOptimize(parse_bus_envelope(payload));
}
BENCHMARK(BM_ParseEnvelope);

void BM_ParseEnvelopeDom(benchmark::State& state) {
  const std::string payload = envelope_of_candidate300();
  for (auto _ : state) benchmark::DoNotOptimize(detail::parse_bus_envelope_dom(payload));
}
BENCHMARK(BM_ParseEnvelopeDom);

void BM_ParseOffer4K(benchmark::State& state) {
  std::string sdp(4000, 'a');
  const std::string msg = R"({"type":"offer","sdp":")" + sdp + R"("})";
  for (auto _ : state) benchmark::DoNotOptimize(parse_client_message(msg));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * msg.size()));
}
BENCHMARK(BM_ParseOffer4K);

void BM_ParseOffer4KDom(benchmark::State& state) {
  std::string sdp(4000, 'a');
  const std::string msg = R"({"type":"offer","sdp":")" + sdp + R"("})";
  for (auto _ : state) benchmark::DoNotOptimize(detail::parse_client_message_dom(msg));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * msg.size()));
}
BENCHMARK(BM_ParseOffer4KDom);

void BM_ParseControl(benchmark::State& state) {
  const std::string msg =
      R"({"type":"control","action":"input","payload":{"x":0.5,"y":-12,"buttons":[1,0,1],"ts":1700000000123}})";
  for (auto _ : state) benchmark::DoNotOptimize(parse_client_message(msg));
}
BENCHMARK(BM_ParseControl);

void BM_RejectNotJson(benchmark::State& state) {
  const std::string msg = "this is not json at all, just a line of text from a confused client";
  for (auto _ : state) benchmark::DoNotOptimize(parse_client_message(msg));
}
BENCHMARK(BM_RejectNotJson);

class CountingPeer final : public Peer {
 public:
  void deliver(const SharedText& m) override { bytes += m->size(); }
  void probe() override {}
  void fault(std::string_view) override {}
  std::size_t bytes = 0;
};

// What a relay does once a message is valid: share the bytes, collect the room's other members,
// hand each the same buffer.
void BM_RelayThroughRegistry(benchmark::State& state) {
  RoomRegistry registry;
  auto sender = std::make_shared<CountingPeer>();
  auto receiver = std::make_shared<CountingPeer>();
  auto room = registry.attach("room-1", Member{"client:a", sender, sender.get(), 0, false, false});
  registry.attach("room-1", Member{"client:b", receiver, receiver.get(), 0, false, false});
  const std::string msg = candidate_of(300);
  for (auto _ : state) {
    ParsedMessage parsed = parse_client_message(msg);
    SharedText shared = std::make_shared<const std::string>(std::move(parsed.text));
    Targets targets;
    room->collect_others(sender.get(), targets);
    for (const auto& t : targets) t.peer->deliver(shared);
  }
  benchmark::DoNotOptimize(receiver->bytes);
}
BENCHMARK(BM_RelayThroughRegistry);

void log_join(Logger& log) {
  log.info("Client joined room", {{"clientId", "client:6f1c2b9e-4d1a-4b7e-9f3e-2a1d0c9b8e7f"},
                                  {"roomId", "room-4567"},
                                  {"localCount", 2}});
}

void BM_LogFormatJoinLine(benchmark::State& state) {
  const Logger log(LogLevel::kInfo, false, "server:0123456789abcdef");
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        log.format(LogLevel::kInfo, 1700000000123, "Client joined room",
                   {{"clientId", "client:6f1c2b9e-4d1a-4b7e-9f3e-2a1d0c9b8e7f"},
                    {"roomId", "room-4567"},
                    {"localCount", 2}}));
  }
}
BENCHMARK(BM_LogFormatJoinLine);

// /dev/null: the cost of the write() calls without a disk's.
std::FILE* log_file() {
  static std::FILE* f = std::fopen("/dev/null", "w");
  return f;
}
void file_sink(std::string_view line) {
  std::fwrite(line.data(), 1, line.size(), log_file());
  std::fflush(log_file());
}

// The line handed to the writer thread, which writes batches of 256 lines to stdout (/dev/null
// meanwhile): the real time per line is what the loop and the writer pay together, on one CPU.
void BM_LogJoinLineQueued(benchmark::State& state) {
  std::fflush(stdout);
  const int saved_stdout = dup(1);
  const int null_fd = open("/dev/null", O_WRONLY);
  dup2(null_fd, 1);
  {
    Logger log(LogLevel::kInfo, false, "server:0123456789abcdef");
    int n = 0;
    for (auto _ : state) {
      log_join(log);
      if (++n % 256 == 0) log.flush();
    }
    log.flush();
    if (log.dropped() > 0) state.SkipWithError("lines dropped");
  }
  std::fflush(stdout);
  dup2(saved_stdout, 1);
  close(saved_stdout);
  close(null_fd);
}
BENCHMARK(BM_LogJoinLineQueued)->UseRealTime();

// The line written to a file on the logging thread, one fwrite and fflush each.
void BM_LogJoinLineWrittenInline(benchmark::State& state) {
  Logger log(LogLevel::kInfo, false, "server:0123456789abcdef", file_sink);
  for (auto _ : state) log_join(log);
}
BENCHMARK(BM_LogJoinLineWrittenInline);

// One /metrics body with both name sets (the default), as the loop that answers a scrape builds
// it: counters and histograms are atomics, open descriptors come from the sampler thread, so the
// cost does not depend on how many connections are open.
void BM_MetricsRender(benchmark::State& state) {
  const OpenFdSampler sampler(std::chrono::seconds(10));
  for (auto _ : state) {
    std::string body = metrics().render(MetricNames::kBoth);
    benchmark::DoNotOptimize(body.data());
    state.counters["bytes"] = static_cast<double>(body.size());
  }
}
BENCHMARK(BM_MetricsRender);

// Its share spent reading /proc/self/stat for the process_* gauges.
void BM_ProcessStats(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(read_process_stats());
}
BENCHMARK(BM_ProcessStats);

}  // namespace

BENCHMARK_MAIN();
