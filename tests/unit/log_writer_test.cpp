// Tests the logger's writer thread: order and delivery, the bounded queue's drops (counted, and
// reported in the log), fatal lines written before fatal() returns, the destructor's flush.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "obs/logger.hpp"
#include "obs/metrics.hpp"

namespace sigsrv {
namespace {

namespace json = boost::json;

// What the sink got, and a gate that holds the writer inside the sink while it is closed.
struct Capture {
  std::mutex mu;
  std::condition_variable cv;
  bool closed = false;
  int entered = 0;  // calls that reached the sink
  std::vector<std::string> lines;

  void reset() {
    const std::lock_guard lock(mu);
    closed = false;
    entered = 0;
    lines.clear();
  }
  void close() {
    const std::lock_guard lock(mu);
    closed = true;
  }
  void open() {
    {
      const std::lock_guard lock(mu);
      closed = false;
    }
    cv.notify_all();
  }
  // Waits until the writer is inside the sink (and held there while closed).
  void wait_entered(int n) {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return entered >= n; });
  }
  void wait_lines(std::size_t n) {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return lines.size() >= n; });
  }
  std::vector<std::string> taken() {
    const std::lock_guard lock(mu);
    return lines;
  }
};

Capture& capture() {
  static Capture c;
  return c;
}

void GatedSink(std::string_view line) {
  Capture& c = capture();
  std::unique_lock lock(c.mu);
  ++c.entered;
  c.cv.notify_all();
  c.cv.wait(lock, [&] { return !c.closed; });
  c.lines.emplace_back(line);
  c.cv.notify_all();
}

json::object Parse(const std::string& line) {
  EXPECT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "one whole line per call";
  json::error_code ec;
  json::value v = json::parse(line, ec);
  EXPECT_FALSE(ec) << ec.message() << ": " << line;
  if (ec || !v.is_object()) return {};
  return v.as_object();
}

std::string Msg(const std::string& line) {
  const json::object o = Parse(line);
  return o.contains("msg") ? std::string(o.at("msg").as_string()) : std::string();
}

// "queued-007": the same length for every i below 1000.
std::string Queued(std::size_t i) {
  const std::string n = std::to_string(i);
  return "queued-" + std::string(n.size() < 3 ? 3 - n.size() : 0, '0') + n;
}

TEST(LogWriterTest, EveryLineDeliveredInOrderPerThread) {
  capture().reset();
  constexpr int kThreads = 4;
  constexpr int kLines = 3000;
  {
    Logger log(LogLevel::kInfo, false, "inst", GatedSink, Logger::kDefaultQueueBytes);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&log, t] {
        for (int i = 0; i < kLines; ++i) log.info("line", {{"thread", t}, {"seq", i}});
      });
    }
    for (auto& th : threads) th.join();
    log.flush();
    EXPECT_EQ(log.dropped(), 0u);
    EXPECT_EQ(capture().taken().size(), static_cast<std::size_t>(kThreads * kLines));
  }
  std::vector<int64_t> next(kThreads, 0);
  const auto lines = capture().taken();
  ASSERT_EQ(lines.size(), static_cast<std::size_t>(kThreads * kLines));
  for (const auto& line : lines) {
    const json::object o = Parse(line);
    const auto t = o.at("thread").as_int64();
    ASSERT_TRUE(t >= 0 && t < kThreads) << line;
    EXPECT_EQ(o.at("seq").as_int64(), next[t]++) << line;
  }
  for (const auto n : next) EXPECT_EQ(n, kLines);
}

TEST(LogWriterTest, FullQueueDropsCountsAndSaysSo) {
  capture().reset();
  constexpr std::size_t kBound = 4096;
  const uint64_t metric_before = metrics().log_lines_dropped.value();
  Logger log(LogLevel::kInfo, false, "inst", GatedSink, kBound);
  const std::size_t line_size = log.format(LogLevel::kInfo, 1700000000123, "queued-000", {}).size();
  const std::size_t fits = kBound / line_size;
  constexpr std::size_t kLogged = 100;
  ASSERT_LT(fits, kLogged);

  capture().close();
  log.info("first");
  capture().wait_entered(1);  // the writer holds "first" in the sink: nothing else leaves
  for (std::size_t i = 0; i < kLogged; ++i) {
    log.info(Queued(i));
  }
  const uint64_t dropped = kLogged - fits;
  EXPECT_EQ(log.dropped(), dropped);
  EXPECT_EQ(metrics().log_lines_dropped.value() - metric_before, dropped);
  // Errors have a reserve beyond the bound.
  log.error("an error");
  EXPECT_EQ(log.dropped(), dropped);
  EXPECT_TRUE(capture().taken().empty());

  capture().open();
  log.flush();
  const auto lines = capture().taken();
  ASSERT_EQ(lines.size(), 1 + fits + 1 + 1);
  EXPECT_EQ(Msg(lines[0]), "first");
  for (std::size_t i = 0; i < fits; ++i) {
    EXPECT_EQ(Msg(lines[1 + i]), Queued(i)) << "the oldest are kept, the newest dropped";
  }
  EXPECT_EQ(Msg(lines[1 + fits]), "an error");
  const json::object gap = Parse(lines.back());
  EXPECT_EQ(gap.at("level"), 40);
  EXPECT_EQ(gap.at("dropped").to_number<uint64_t>(), dropped);
  EXPECT_NE(Msg(lines.back()).find("dropped"), std::string::npos);

  // Once the writer keeps up again, nothing more is dropped.
  log.info("after");
  log.flush();
  EXPECT_EQ(Msg(capture().taken().back()), "after");
  EXPECT_EQ(log.dropped(), dropped);
}

TEST(LogWriterTest, LineOverTheBoundIsDroppedAndReported) {
  capture().reset();
  Logger log(LogLevel::kInfo, false, "inst", GatedSink, 512);
  log.info(std::string(600, 'x'));
  EXPECT_EQ(log.dropped(), 1u);
  // Reported even though no line is written with it.
  capture().wait_lines(1);
  const json::object gap = Parse(capture().taken().front());
  EXPECT_EQ(gap.at("dropped"), 1);
  log.info("short");
  log.flush();
  const auto lines = capture().taken();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(Msg(lines[1]), "short");
}

TEST(LogWriterTest, FatalIsWrittenWhenItReturns) {
  capture().reset();
  Logger log(LogLevel::kInfo, false, "inst", GatedSink, Logger::kDefaultQueueBytes);
  for (int i = 0; i < 50; ++i) log.info("before", {{"i", i}});
  log.fatal("Cannot start", {{"err", "address in use"}});
  const auto lines = capture().taken();
  ASSERT_EQ(lines.size(), 51u);
  EXPECT_EQ(Msg(lines.back()), "Cannot start");
  EXPECT_EQ(Parse(lines.back()).at("level"), 60);
}

TEST(LogWriterTest, DestructorWritesEverythingQueued) {
  capture().reset();
  {
    Logger log(LogLevel::kInfo, false, "inst", GatedSink, Logger::kDefaultQueueBytes);
    capture().close();
    log.info("first");
    capture().wait_entered(1);
    for (int i = 0; i < 200; ++i) log.info("queued", {{"i", i}});
    log.info("Server stopped");
    capture().open();
  }
  const auto lines = capture().taken();
  ASSERT_EQ(lines.size(), 202u);
  EXPECT_EQ(Msg(lines.front()), "first");
  EXPECT_EQ(Msg(lines.back()), "Server stopped");
}

TEST(LogWriterTest, EscapingMatchesBoostJson) {
  const Logger log(LogLevel::kInfo, false, "i");
  std::string every_byte;
  for (int c = 1; c < 256; ++c) every_byte += static_cast<char>(c);
  every_byte += std::string("\0end", 4);
  const std::string line = log.format(LogLevel::kInfo, 1, every_byte, {{every_byte, every_byte}});
  const std::string quoted = json::serialize(json::string(every_byte));
  EXPECT_EQ(line.substr(line.size() - quoted.size() - 2), quoted + "}\n");
  EXPECT_NE(line.find("," + quoted + ":" + quoted + ","), std::string::npos);
}

}  // namespace
}  // namespace sigsrv
