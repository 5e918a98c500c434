// pino-compatible JSON lines on stdout (or one readable line per event with PRETTY_LOGS).
#pragma once

#include <cstdint>
#include <initializer_list>
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

class Logger {
 public:
  // `sink` receives whole lines (tests capture them); the default writes to stdout.
  using Sink = void (*)(std::string_view line);
  Logger(LogLevel level, bool pretty, std::string instance_id, Sink sink = nullptr);

  bool enabled(LogLevel l) const { return static_cast<int>(l) >= static_cast<int>(level_); }
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

  // Formats without writing (unit tests).
  std::string format(LogLevel l, int64_t time_ms, std::string_view msg,
                     std::initializer_list<LogField> fields) const;

 private:
  LogLevel level_;
  bool pretty_;
  std::string instance_id_;
  std::string hostname_;
  long pid_;
  Sink sink_;
  std::mutex mu_;  // one line at a time; logging is never on the per-message path
};

// REDIS_URL with any password replaced by "***", safe to log.
std::string redact_url(std::string_view url);

}  // namespace sigsrv
