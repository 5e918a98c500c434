// Tests log line formatting (pino-compatible JSON and pretty), level filtering and URL redaction.
#include "obs/logger.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <string>
#include <vector>

namespace sigsrv {
namespace {

namespace json = boost::json;

constexpr int64_t kTime = 1700000000123;

json::object ParseLine(const std::string& line) {
  EXPECT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "one line per event";
  json::error_code ec;
  json::value v = json::parse(line, ec);
  EXPECT_FALSE(ec) << ec.message() << ": " << line;
  if (ec || !v.is_object()) return {};
  return v.as_object();
}

TEST(LoggerTest, JsonLineHasPinoFields) {
  const Logger log(LogLevel::kInfo, false, "server:abc");
  const json::object o =
      ParseLine(log.format(LogLevel::kInfo, kTime, "Client joined room",
                           {{"clientId", "client:1"}, {"roomId", "room-456"}, {"localCount", 2}}));
  EXPECT_EQ(o.at("level"), 30);
  EXPECT_EQ(o.at("time"), kTime);
  EXPECT_EQ(o.at("instanceId"), "server:abc");
  EXPECT_EQ(o.at("msg"), "Client joined room");
  EXPECT_EQ(o.at("clientId"), "client:1");
  EXPECT_EQ(o.at("roomId"), "room-456");
  EXPECT_EQ(o.at("localCount"), 2);
  EXPECT_TRUE(o.at("pid").is_number());
  EXPECT_TRUE(o.at("hostname").is_string());
}

TEST(LoggerTest, JsonLineStartsWithLevel) {
  const Logger log(LogLevel::kInfo, false, "i");
  EXPECT_EQ(log.format(LogLevel::kWarn, kTime, "m", {}).rfind("{\"level\":40,\"time\":", 0), 0u);
}

TEST(LoggerTest, LevelNumbers) {
  const Logger log(LogLevel::kTrace, false, "i");
  const std::pair<LogLevel, int> levels[] = {{LogLevel::kTrace, 10}, {LogLevel::kDebug, 20},
                                             {LogLevel::kInfo, 30},  {LogLevel::kWarn, 40},
                                             {LogLevel::kError, 50}, {LogLevel::kFatal, 60}};
  for (const auto& [level, number] : levels) {
    EXPECT_EQ(ParseLine(log.format(level, kTime, "m", {})).at("level"), number);
  }
}

TEST(LoggerTest, FieldValueTypes) {
  const Logger log(LogLevel::kInfo, false, "i");
  const std::string owned = "owned";
  const json::object o = ParseLine(log.format(LogLevel::kInfo, kTime, "m",
                                              {{"s", owned},
                                               {"i", -5},
                                               {"u", 7u},
                                               {"big", 18446744073709551615ull},
                                               {"d", 0.25},
                                               {"t", true},
                                               {"f", false},
                                               {"l", -9000000000ll}}));
  EXPECT_EQ(o.at("s"), "owned");
  EXPECT_EQ(o.at("i"), -5);
  EXPECT_EQ(o.at("u"), 7);
  EXPECT_EQ(o.at("big").as_uint64(), 18446744073709551615ull);
  EXPECT_DOUBLE_EQ(o.at("d").to_number<double>(), 0.25);
  EXPECT_EQ(o.at("t"), true);
  EXPECT_EQ(o.at("f"), false);
  EXPECT_EQ(o.at("l"), -9000000000ll);
}

TEST(LoggerTest, StringsAreEscaped) {
  const Logger log(LogLevel::kInfo, false, "in\"st");
  const std::string nasty = "quote\" backslash\\ newline\n tab\t ctl\x01 caf\xC3\xA9";
  const std::string line = log.format(LogLevel::kError, kTime, nasty, {{"err", nasty}, {nasty, 1}});
  const json::object o = ParseLine(line);
  EXPECT_EQ(o.at("msg").as_string(), nasty);
  EXPECT_EQ(o.at("err").as_string(), nasty);
  EXPECT_EQ(o.at(nasty), 1);
  EXPECT_EQ(o.at("instanceId"), "in\"st");
}

TEST(LoggerTest, PrettyLineHasLevelNameMessageAndFields) {
  const Logger log(LogLevel::kInfo, true, "i");
  // 01:02:03.004 UTC on 1970-01-01.
  const std::string line = log.format(LogLevel::kWarn, 3723004, "Closing slow client",
                                      {{"clientId", "c1"}, {"bufferedBytes", 42}, {"ok", true}});
  EXPECT_EQ(line,
            "[01:02:03.004] WARN: Closing slow client clientId=c1 bufferedBytes=42 ok=true\n");
}

TEST(LoggerTest, PrettyLevelNames) {
  const Logger log(LogLevel::kTrace, true, "i");
  const std::pair<LogLevel, const char*> levels[] = {
      {LogLevel::kTrace, "TRACE"}, {LogLevel::kDebug, "DEBUG"}, {LogLevel::kInfo, "INFO"},
      {LogLevel::kWarn, "WARN"},   {LogLevel::kError, "ERROR"}, {LogLevel::kFatal, "FATAL"}};
  for (const auto& [level, name] : levels) {
    const std::string line = log.format(level, kTime, "hello", {});
    EXPECT_NE(line.find(std::string("] ") + name + ": hello"), std::string::npos) << line;
  }
}

std::vector<std::string>& Captured() {
  static std::vector<std::string> lines;
  return lines;
}
void CaptureSink(std::string_view line) {
  Captured().emplace_back(line);
}

TEST(LoggerTest, LevelFiltering) {
  Captured().clear();
  Logger log(LogLevel::kWarn, false, "inst", CaptureSink);
  EXPECT_FALSE(log.enabled(LogLevel::kInfo));
  EXPECT_TRUE(log.enabled(LogLevel::kWarn));
  log.debug("d");
  log.info("i");
  log.warn("w", {{"k", "v"}});
  log.error("e");
  log.fatal("f");
  ASSERT_EQ(Captured().size(), 3u);
  const json::object w = ParseLine(Captured()[0]);
  EXPECT_EQ(w.at("msg"), "w");
  EXPECT_EQ(w.at("level"), 40);
  EXPECT_EQ(w.at("k"), "v");
  EXPECT_EQ(w.at("instanceId"), "inst");
  EXPECT_EQ(ParseLine(Captured()[1]).at("level"), 50);
  EXPECT_EQ(ParseLine(Captured()[2]).at("level"), 60);
}

TEST(LoggerTest, SilentLogsNothing) {
  Captured().clear();
  Logger log(LogLevel::kSilent, false, "inst", CaptureSink);
  log.fatal("f");
  log.error("e");
  EXPECT_TRUE(Captured().empty());
}

TEST(LoggerTest, LogStampsCurrentTime) {
  Captured().clear();
  Logger log(LogLevel::kInfo, false, "inst", CaptureSink);
  log.info("now");
  ASSERT_EQ(Captured().size(), 1u);
  // Any time after 2023-11-14 in milliseconds (not seconds).
  EXPECT_GT(ParseLine(Captured()[0]).at("time").to_number<int64_t>(), kTime);
}

TEST(RedactUrlTest, HidesPasswords) {
  EXPECT_EQ(redact_url("redis://user:pw@h:1"), "redis://user:***@h:1");
  EXPECT_EQ(redact_url("redis://:pw@h"), "redis://:***@h");
  EXPECT_EQ(redact_url("rediss://default:s3cret@redis.railway.internal:6379/0"),
            "rediss://default:***@redis.railway.internal:6379/0");
  EXPECT_EQ(redact_url("redis://pw@h:6379"), "redis://***@h:6379");
}

TEST(RedactUrlTest, LeavesUrlsWithoutUserinfoUnchanged) {
  EXPECT_EQ(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
  EXPECT_EQ(redact_url("redis://h:6379/0"), "redis://h:6379/0");
  EXPECT_EQ(redact_url("redis://h/path@x"), "redis://h/path@x");  // '@' after the path
  EXPECT_EQ(redact_url("not a url"), "not a url");
  EXPECT_EQ(redact_url(""), "");
}

// URL parsers take the LAST '@' of the authority: all of "p@ss" is the password and is hidden.
TEST(RedactUrlTest, PasswordContainingAt) {
  const std::string out = redact_url("redis://user:p@ss@h:1");
  EXPECT_EQ(out, "redis://user:***@h:1");
  EXPECT_EQ(out.find("ss@"), std::string::npos) << out;
}

}  // namespace
}  // namespace sigsrv
