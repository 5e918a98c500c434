// Google Benchmark micro-benchmarks of the per-message path: validate + strip + serialize each
// message type, and a relay through the room registry to in-process peers.
#include <benchmark/benchmark.h>

#include <atomic>
#include <memory>
#include <string>

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

void BM_ParseOffer4K(benchmark::State& state) {
  std::string sdp(4000, 'a');
  const std::string msg = R"({"type":"offer","sdp":")" + sdp + R"("})";
  for (auto _ : state) benchmark::DoNotOptimize(parse_client_message(msg));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * msg.size()));
}
BENCHMARK(BM_ParseOffer4K);

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

}  // namespace

BENCHMARK_MAIN();
