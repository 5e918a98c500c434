// Log line formatting: JSON with pino's field names, or a pretty single line.
#include "obs/logger.hpp"

#include <unistd.h>

#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace sigsrv {
namespace {

void append_json_string(std::string& out, std::string_view s) {
  out += boost::json::serialize(boost::json::string(s));
}

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
          out += std::to_string(v);
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

void stdout_sink(std::string_view line) {
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

}  // namespace

Logger::Logger(LogLevel level, bool pretty, std::string instance_id, Sink sink)
    : level_(level),
      pretty_(pretty),
      instance_id_(std::move(instance_id)),
      pid_(getpid()),
      sink_(sink ? sink : stdout_sink) {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) == 0) hostname_ = host;
}

std::string Logger::format(LogLevel l, int64_t time_ms, std::string_view msg,
                           std::initializer_list<LogField> fields) const {
  std::string out;
  out.reserve(192);
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
    return out;
  }
  out += "{\"level\":";
  out += std::to_string(static_cast<int>(l));
  out += ",\"time\":";
  out += std::to_string(time_ms);
  out += ",\"pid\":";
  out += std::to_string(pid_);
  out += ",\"hostname\":";
  append_json_string(out, hostname_);
  out += ",\"instanceId\":";
  append_json_string(out, instance_id_);
  for (const auto& f : fields) {
    out += ',';
    append_json_string(out, f.key);
    out += ':';
    append_value(out, f, true);
  }
  out += ",\"msg\":";
  append_json_string(out, msg);
  out += "}\n";
  return out;
}

void Logger::log(LogLevel l, std::string_view msg, std::initializer_list<LogField> fields) {
  if (!enabled(l)) return;
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  const std::string line = format(l, now, msg, fields);
  std::lock_guard lock(mu_);
  sink_(line);
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
