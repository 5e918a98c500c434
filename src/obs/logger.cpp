// Log line formatting (JSON with pino's field names, or a pretty single line) and the writer
// thread that writes the lines.
#include "obs/logger.hpp"

#include <unistd.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <thread>
#include <utility>
#include <vector>

#include "obs/metrics.hpp"
#include "signaling/json_string.hpp"

namespace sigsrv {
namespace {

void append_value(std::string& out, const LogField& f, bool quote_strings) {
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string_view>) {
          if (quote_strings) {
            append_json_string(out, v);
          } else {
            out.append(v);
          }
        } else if constexpr (std::is_same_v<T, bool>) {
          out += v ? "true" : "false";
        } else if constexpr (std::is_same_v<T, double>) {
          char buf[32];
          std::snprintf(buf, sizeof(buf), "%.6g", v);
          out += buf;
        } else {
          char buf[24];
          const auto r = std::to_chars(buf, buf + sizeof(buf), v);
          out.append(buf, r.ptr);
        }
      },
      f.value);
}

const char* level_name(LogLevel l) {
  switch (l) {
    case LogLevel::kTrace:
      return "TRACE";
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarn:
      return "WARN";
    case LogLevel::kError:
      return "ERROR";
    case LogLevel::kFatal:
      return "FATAL";
    default:
      return "USERLVL";
  }
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

// The writer thread and the bounded queue the loops hand their lines to: the lines' bytes, one
// after the other, in a buffer that the writer swaps for its own (empty) one and writes whole, so
// that once the buffers have grown, a line costs one copy and no allocation.
class LogWriter {
 public:
  LogWriter(const Logger& owner, Logger::Sink sink, std::size_t max_bytes)
      : owner_(owner), sink_(sink), max_bytes_(max_bytes), thread_([this] { run(); }) {}

  // Whatever is queued is written first.
  ~LogWriter() {
    {
      const std::lock_guard lock(mu_);
      stop_ = true;
    }
    wake_.notify_one();
    thread_.join();
  }
  LogWriter(const LogWriter&) = delete;
  LogWriter& operator=(const LogWriter&) = delete;

  // Overflow policy: when the writer cannot keep up (stdout blocked, or slower than the loops
  // produce) and the queue already holds max_bytes_ of lines, a new line below error is dropped,
  // never waited for: a loop must not block on its log. Error lines may use a reserve of a quarter
  // more, and fatal lines are always queued (the process is ending; fatal() then waits for them).
  // Every drop is counted (dropped(), cloudgaming_log_lines_dropped_total), and the writer writes
  // a line saying how many were dropped after the batch it takes next, so the log itself shows
  // the gap. Nothing else ever waits here: the lock is held to copy the line in.
  void push(LogLevel l, std::string_view line) {
    std::unique_lock lock(mu_);
    const std::size_t queued = queue_.size();
    if (l < LogLevel::kFatal) {
      const std::size_t bound = l >= LogLevel::kError ? max_bytes_ + max_bytes_ / 4 : max_bytes_;
      if (line.size() > bound || queued > bound - line.size()) {
        ++unreported_drops_;
        dropped_.fetch_add(1, std::memory_order_relaxed);
        metrics().log_lines_dropped.inc();
        if (std::exchange(idle_, false)) {
          lock.unlock();
          wake_.notify_one();
        }
        return;
      }
    }
    queue_.append(line);
    if (sink_ != nullptr) ends_.push_back(queue_.size());
    ++queued_seq_;
    // The writer is woken for the first line after it went idle, and when a burst fills a quarter
    // of the bound; otherwise it takes what came meanwhile when its pause after a write ends.
    const bool eager = queue_.size() >= max_bytes_ / 4 && queued < max_bytes_ / 4;
    if (std::exchange(idle_, false) || eager) {
      lock.unlock();
      wake_.notify_one();
    }
  }

  void flush() {
    std::unique_lock lock(mu_);
    const uint64_t target = queued_seq_;
    if (written_seq_ >= target) return;
    ++flush_waiters_;
    wake_.notify_one();
    written_.wait(lock, [&] { return written_seq_ >= target; });
    --flush_waiters_;
  }

  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  // After a write the writer pauses this long (unless a flush, a quarter-full queue or the
  // destructor calls it back), so that lines logged meanwhile go out in one write, not one each.
  static constexpr std::chrono::milliseconds kPause{5};
  // What the writer's buffers keep between bursts; a larger one is given back after its write.
  static constexpr std::size_t kKeepBytes = std::size_t{256} << 10;

  void run() {
    std::string batch;
    std::vector<std::size_t> ends;
    std::unique_lock lock(mu_);
    for (;;) {
      idle_ = true;
      wake_.wait(lock, [&] { return stop_ || !queue_.empty() || unreported_drops_ > 0; });
      idle_ = false;
      if (queue_.empty() && unreported_drops_ == 0) break;  // stopping, everything written
      batch.swap(queue_);
      ends.swap(ends_);
      const uint64_t drops = std::exchange(unreported_drops_, 0);
      const uint64_t upto = queued_seq_;
      lock.unlock();
      write(batch, ends, drops);
      if (batch.capacity() > kKeepBytes) {
        std::string().swap(batch);
      } else {
        batch.clear();
      }
      ends.clear();
      lock.lock();
      written_seq_ = upto;
      if (flush_waiters_ > 0) written_.notify_all();
      wake_.wait_for(lock, kPause, [&] {
        return stop_ || flush_waiters_ > 0 || queue_.size() >= max_bytes_ / 4;
      });
    }
  }

  // One fwrite (and fflush) per batch on stdout; a sink gets the lines one by one.
  void write(std::string& batch, std::vector<std::size_t>& ends, uint64_t drops) {
    if (drops > 0) {
      batch += owner_.format(LogLevel::kWarn, now_ms(),
                             "Log lines dropped: the log writer could not keep up",
                             {{"dropped", drops}});
      ends.push_back(batch.size());
    }
    if (sink_ == nullptr) {
      std::fwrite(batch.data(), 1, batch.size(), stdout);
      std::fflush(stdout);
      return;
    }
    std::size_t begin = 0;
    for (const std::size_t end : ends) {
      sink_(std::string_view(batch).substr(begin, end - begin));
      begin = end;
    }
  }

  const Logger& owner_;
  const Logger::Sink sink_;  // null: stdout
  const std::size_t max_bytes_;

  std::mutex mu_;
  std::condition_variable wake_;     // the writer: a line while idle, a flush, a burst, stop
  std::condition_variable written_;  // flush() callers
  std::string queue_;                // the lines queued, whole, in order
  std::vector<std::size_t> ends_;    // where each ends in queue_ (for a sink only)
  uint64_t queued_seq_ = 0;          // lines queued so far
  uint64_t written_seq_ = 0;         // of those, lines written
  uint64_t unreported_drops_ = 0;
  std::atomic<uint64_t> dropped_{0};
  int flush_waiters_ = 0;
  bool idle_ = false;  // the writer waits for a line (as opposed to writing, or its pause)
  bool stop_ = false;
  std::thread thread_;  // last: starts once the rest is set up
};

Logger::Logger(LogLevel level, bool pretty, std::string instance_id, Sink sink)
    : level_(level),
      pretty_(pretty),
      instance_id_(std::move(instance_id)),
      pid_(getpid()),
      sink_(sink) {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) == 0) hostname_ = host;
  json_context_ = ",\"pid\":" + std::to_string(pid_) + ",\"hostname\":";
  append_json_string(json_context_, hostname_);
  json_context_ += ",\"instanceId\":";
  append_json_string(json_context_, instance_id_);
  if (sink_ == nullptr) writer_ = std::make_unique<LogWriter>(*this, nullptr, kDefaultQueueBytes);
}

Logger::Logger(LogLevel level, bool pretty, std::string instance_id, Sink sink,
               std::size_t queue_bytes)
    : Logger(level, pretty, std::move(instance_id), sink) {
  if (sink_ != nullptr) writer_ = std::make_unique<LogWriter>(*this, sink_, queue_bytes);
}

Logger::~Logger() = default;

std::string Logger::format(LogLevel l, int64_t time_ms, std::string_view msg,
                           std::initializer_list<LogField> fields) const {
  std::string out;
  out.reserve(256);
  format_to(out, l, time_ms, msg, fields);
  return out;
}

void Logger::format_to(std::string& out, LogLevel l, int64_t time_ms, std::string_view msg,
                       std::initializer_list<LogField> fields) const {
  if (pretty_) {
    const std::time_t secs = static_cast<std::time_t>(time_ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char ts[48];
    std::snprintf(ts, sizeof(ts), "[%02d:%02d:%02d.%03d] ", tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(time_ms % 1000));
    out += ts;
    out += level_name(l);
    out += ": ";
    out += msg;
    for (const auto& f : fields) {
      out += ' ';
      out += f.key;
      out += '=';
      append_value(out, f, false);
    }
    out += '\n';
    return;
  }
  char num[24];
  out += "{\"level\":";
  out.append(num, std::to_chars(num, num + sizeof(num), static_cast<int>(l)).ptr);
  out += ",\"time\":";
  out.append(num, std::to_chars(num, num + sizeof(num), time_ms).ptr);
  out += json_context_;
  for (const auto& f : fields) {
    out += ',';
    append_json_string(out, f.key);
    out += ':';
    append_value(out, f, true);
  }
  out += ",\"msg\":";
  append_json_string(out, msg);
  out += "}\n";
}

void Logger::log(LogLevel l, std::string_view msg, std::initializer_list<LogField> fields) {
  if (!enabled(l)) return;
  // Formatted into this thread's own buffer, which keeps its capacity: no allocation per line.
  thread_local std::string line;
  line.clear();
  format_to(line, l, now_ms(), msg, fields);
  if (!writer_) {
    const std::lock_guard lock(mu_);
    sink_(line);
    return;
  }
  writer_->push(l, line);
  if (l >= LogLevel::kFatal) writer_->flush();
}

void Logger::flush() {
  if (writer_) writer_->flush();
}

uint64_t Logger::dropped() const {
  return writer_ ? writer_->dropped() : 0;
}

std::string redact_url(std::string_view url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return std::string(url);
  const auto auth_start = scheme_end + 3;
  // The authority ends at the first '/', its userinfo at the last '@' in it (a password may
  // itself contain '@'), as URL parsers read it.
  const auto slash = url.find('/', auth_start);
  const auto authority_len =
      slash == std::string_view::npos ? url.size() - auth_start : slash - auth_start;
  const auto at_rel = url.substr(auth_start, authority_len).rfind('@');
  if (at_rel == std::string_view::npos) return std::string(url);
  const auto at = auth_start + at_rel;
  const std::string_view userinfo = url.substr(auth_start, at - auth_start);
  const auto colon = userinfo.find(':');
  std::string out(url.substr(0, auth_start));
  if (colon == std::string_view::npos) {
    out += "***";  // a lone userinfo part is a password for Redis (AUTH password)
  } else {
    out.append(userinfo.substr(0, colon)).append(":***");
  }
  out.append(url.substr(at));
  return out;
}

}  // namespace sigsrv
