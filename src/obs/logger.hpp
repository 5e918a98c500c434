// pino-compatible JSON lines on stdout (or one readable line per event with PRETTY_LOGS), written
// by a thread of their own so that logging never blocks an event loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <variant>

#include "config/config.hpp"

namespace sigsrv {

// A context field: {"clientId", id}. Values are copied into the line, never kept.
struct LogField {
  std::string_view key;
  std::variant<std::string_view, int64_t, uint64_t, double, bool> value;
  LogField(std::string_view k, std::string_view v) : key(k), value(v) {}
  LogField(std::string_view k, const std::string& v) : key(k), value(std::string_view(v)) {}
  LogField(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
  LogField(std::string_view k, int v) : key(k), value(static_cast<int64_t>(v)) {}
  LogField(std::string_view k, long v) : key(k), value(static_cast<int64_t>(v)) {}
  LogField(std::string_view k, long long v) : key(k), value(static_cast<int64_t>(v)) {}
  LogField(std::string_view k, unsigned v) : key(k), value(static_cast<uint64_t>(v)) {}
  LogField(std::string_view k, unsigned long v) : key(k), value(static_cast<uint64_t>(v)) {}
  LogField(std::string_view k, unsigned long long v) : key(k), value(static_cast<uint64_t>(v)) {}
  LogField(std::string_view k, double v) : key(k), value(v) {}
  LogField(std::string_view k, bool v) : key(k), value(v) {}
};

class LogWriter;

class Logger {
 public:
  // `sink` receives whole lines (tests capture them); the default writes to stdout.
  using Sink = void (*)(std::string_view line);
  // What the writer thread holds at most, in bytes of formatted lines (see LogWriter::push).
  static constexpr std::size_t kDefaultQueueBytes = std::size_t{4} << 20;

  // Stdout: lines go through the writer thread. A `sink` given alone is called on the logging
  // thread instead, one line at a time (tests that read what was logged right after logging it).
  Logger(LogLevel level, bool pretty, std::string instance_id, Sink sink = nullptr);
  // `sink` (stdout when null) written by the writer thread, which queues up to `queue_bytes`.
  Logger(LogLevel level, bool pretty, std::string instance_id, Sink sink, std::size_t queue_bytes);
  // Writes whatever is queued, then stops the writer thread.
  ~Logger();
  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;

  bool enabled(LogLevel l) const { return static_cast<int>(l) >= static_cast<int>(level_); }
  // Formats the line here and hands it to the writer; a fatal line is written (after every line
  // before it) by the time this returns.
  void log(LogLevel l, std::string_view msg, std::initializer_list<LogField> fields = {});
  void debug(std::string_view m, std::initializer_list<LogField> f = {}) {
    log(LogLevel::kDebug, m, f);
  }
  void info(std::string_view m, std::initializer_list<LogField> f = {}) {
    log(LogLevel::kInfo, m, f);
  }
  void warn(std::string_view m, std::initializer_list<LogField> f = {}) {
    log(LogLevel::kWarn, m, f);
  }
  void error(std::string_view m, std::initializer_list<LogField> f = {}) {
    log(LogLevel::kError, m, f);
  }
  void fatal(std::string_view m, std::initializer_list<LogField> f = {}) {
    log(LogLevel::kFatal, m, f);
  }
  // Returns once every line logged before the call is written.
  void flush();
  // Lines dropped because the writer could not keep up (also cloudgaming_log_lines_dropped_total).
  uint64_t dropped() const;

  // Formats without writing (unit tests).
  std::string format(LogLevel l, int64_t time_ms, std::string_view msg,
                     std::initializer_list<LogField> fields) const;

 private:
  void format_to(std::string& out, LogLevel l, int64_t time_ms, std::string_view msg,
                 std::initializer_list<LogField> fields) const;

  LogLevel level_;
  bool pretty_;
  std::string instance_id_;
  std::string hostname_;
  long pid_;
  std::string json_context_;  // ,"pid":…,"hostname":…,"instanceId":…: the same on every line
  Sink sink_;
  std::mutex mu_;                      // without a writer: one line at a time
  std::unique_ptr<LogWriter> writer_;  // null when the sink is called on the logging thread
};

// REDIS_URL with any password replaced by "***", safe to log.
std::string redact_url(std::string_view url);

}  // namespace sigsrv
