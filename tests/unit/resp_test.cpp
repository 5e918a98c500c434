// Tests RESP command encoding (against hiredis' own encoder) and the RespReader reply parser.
#include "bus/resp.hpp"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sigsrv {
namespace {

using namespace std::string_view_literals;
using namespace std::string_literals;

// What hiredis' redisFormatCommandArgv produces for `args`.
std::string HiredisFormat(std::span<const std::string_view> args) {
  std::vector<const char*> argv;
  std::vector<size_t> lengths;
  for (std::string_view a : args) {
    argv.push_back(a.data());
    lengths.push_back(a.size());
  }
  char* command = nullptr;
  const auto size =
      redisFormatCommandArgv(&command, static_cast<int>(args.size()), argv.data(), lengths.data());
  EXPECT_GE(size, 0);
  EXPECT_NE(command, nullptr);
  if (size < 0 || command == nullptr) return "<hiredis failed>";
  std::string out(command, static_cast<std::size_t>(size));
  redisFreeCommand(command);
  return out;
}

std::string Append(std::span<const std::string_view> args) {
  std::string out;
  append_command(out, args);
  return out;
}

// --- append_command ---

TEST(RespCommandTest, MatchesHiredisByteForByte) {
  const std::string big(100000, 'x');
  const std::vector<std::vector<std::string_view>> commands = {
      {"PING"},
      {"PUBLISH", "room:abc", R"({"senderId":"a","data":{"type":"offer","sdp":"v=0"}})"},
      {"AUTH", "alice", "s3cret"},
      {"SELECT", "15"},
      {"PSUBSCRIBE", "room:*"},
      {"EVALSHA", "0123456789abcdef0123456789abcdef01234567", "1", "room:r", "c1", "10"},
      {"SET", "key", ""},
      {""},
      {"", "", ""},
      {"SET", "bin", "a\r\nb\0c\r\n"sv},
      {"\0"sv, "\r\n"sv, "\r"sv, "\n"sv, "$1\r\n*2\r\n"sv},
      {"PUBLISH", "room:big", big},
      {"SET", "utf8", "h\xc3\xa9llo \xf0\x9f\x98\x80"},
  };
  for (const auto& args : commands) {
    const std::string ours = Append(args);
    EXPECT_EQ(ours, HiredisFormat(args)) << "argc " << args.size();
  }
}

TEST(RespCommandTest, LengthsAtEveryDigitBoundaryMatchHiredis) {
  // The encoder sizes its output from the digit counts first: each count's edges.
  const std::string text(100001, 'y');
  for (const std::size_t n : {0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 9999, 10000, 100000}) {
    const std::vector<std::string_view> args = {"SET", std::string_view(text).substr(0, n)};
    EXPECT_EQ(Append(args), HiredisFormat(args)) << n;
  }
  for (const std::size_t argc : {9, 10, 11, 99, 100, 101}) {
    const std::vector<std::string_view> args(argc, "a");
    EXPECT_EQ(Append(args), HiredisFormat(args)) << argc;
  }
}

TEST(RespCommandTest, BinaryArgumentsKeepEveryByte) {
  const std::string_view binary("a\0b\r\nc", 6);
  ASSERT_EQ(binary.size(), 6u);
  const std::vector<std::string_view> args = {"SET", "k", binary};
  const std::string_view expected = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$6\r\na\0b\r\nc\r\n"sv;
  EXPECT_EQ(Append(args), expected);
  EXPECT_EQ(Append(args), HiredisFormat(args));
}

TEST(RespCommandTest, EmptyArgumentIsAZeroLengthBulkString) {
  const std::vector<std::string_view> args = {"PING", ""};
  EXPECT_EQ(Append(args), "*2\r\n$4\r\nPING\r\n$0\r\n\r\n");
  EXPECT_EQ(Append(args), HiredisFormat(args));
}

TEST(RespCommandTest, NoArgumentsIsAnEmptyArray) {
  const std::vector<std::string_view> args;
  EXPECT_EQ(Append(args), "*0\r\n");
  EXPECT_EQ(Append(args), HiredisFormat(args));
}

TEST(RespCommandTest, AppendsWithoutClearingTheBuffer) {
  std::string out = "+already queued\r\n";
  append_command(out, {"PING"});
  append_command(out, {"ECHO", "hi"});
  EXPECT_EQ(out, "+already queued\r\n*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n");
}

TEST(RespCommandTest, InitializerListOverloadMatchesSpan) {
  std::string from_list;
  append_command(from_list, {"PUBLISH", "room:r", "a\0b"sv});
  const std::vector<std::string_view> args = {"PUBLISH", "room:r", "a\0b"sv};
  EXPECT_EQ(from_list, Append(args));
  EXPECT_EQ(from_list, HiredisFormat(args));
}

// --- RespReader ---

// Feeds `bytes` to a fresh reader and returns the one reply they hold.
ReplyPtr ReadOne(std::string_view bytes) {
  RespReader reader;
  EXPECT_TRUE(reader.feed(bytes.data(), bytes.size()));
  bool error = false;
  ReplyPtr reply = reader.next(&error);
  EXPECT_FALSE(error) << bytes;
  EXPECT_NE(reply, nullptr) << bytes;
  // Nothing else is buffered.
  EXPECT_EQ(reader.next(&error), nullptr) << bytes;
  EXPECT_FALSE(error) << bytes;
  return reply;
}

TEST(RespReaderTest, Status) {
  const ReplyPtr r = ReadOne("+OK\r\n");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->type, REDIS_REPLY_STATUS);
  EXPECT_EQ(reply_text(r.get()), "OK");
  EXPECT_FALSE(is_error(r.get()));
}

TEST(RespReaderTest, Error) {
  const ReplyPtr r = ReadOne("-WRONGPASS invalid username-password pair\r\n");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->type, REDIS_REPLY_ERROR);
  EXPECT_EQ(reply_text(r.get()), "WRONGPASS invalid username-password pair");
  EXPECT_TRUE(is_error(r.get()));
}

TEST(RespReaderTest, Integer) {
  const ReplyPtr r = ReadOne(":42\r\n");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->type, REDIS_REPLY_INTEGER);
  EXPECT_EQ(r->integer, 42);
  EXPECT_FALSE(is_error(r.get()));

  const ReplyPtr negative = ReadOne(":-9007199254740993\r\n");
  ASSERT_NE(negative, nullptr);
  EXPECT_EQ(negative->type, REDIS_REPLY_INTEGER);
  EXPECT_EQ(negative->integer, -9007199254740993LL);

  const ReplyPtr zero = ReadOne(":0\r\n");
  ASSERT_NE(zero, nullptr);
  EXPECT_EQ(zero->type, REDIS_REPLY_INTEGER);
  EXPECT_EQ(zero->integer, 0);
}

TEST(RespReaderTest, NilBulkString) {
  const ReplyPtr r = ReadOne("$-1\r\n");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->type, REDIS_REPLY_NIL);
  EXPECT_EQ(reply_text(r.get()), "");
  EXPECT_FALSE(is_error(r.get()));
}

TEST(RespReaderTest, NilArray) {
  const ReplyPtr r = ReadOne("*-1\r\n");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->type, REDIS_REPLY_NIL);
}

TEST(RespReaderTest, BulkString) {
  const ReplyPtr r = ReadOne("$5\r\nhello\r\n");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->type, REDIS_REPLY_STRING);
  EXPECT_EQ(reply_text(r.get()), "hello");
}

TEST(RespReaderTest, EmptyBulkString) {
  const ReplyPtr r = ReadOne("$0\r\n\r\n");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->type, REDIS_REPLY_STRING);
  EXPECT_EQ(r->len, 0u);
  EXPECT_EQ(reply_text(r.get()), "");
}

TEST(RespReaderTest, BinaryBulkString) {
  const ReplyPtr r = ReadOne("$8\r\na\r\nb\0c\r\n\r\n"sv);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->type, REDIS_REPLY_STRING);
  EXPECT_EQ(reply_text(r.get()), "a\r\nb\0c\r\n"sv);
}

TEST(RespReaderTest, EmptyArray) {
  const ReplyPtr r = ReadOne("*0\r\n");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->type, REDIS_REPLY_ARRAY);
  EXPECT_EQ(r->elements, 0u);
}

TEST(RespReaderTest, PubSubMessageArray) {
  const ReplyPtr r = ReadOne(
      "*4\r\n$8\r\npmessage\r\n$6\r\nroom:*\r\n$6\r\nroom:a\r\n$16\r\n{\"senderId\":\"x\"}\r\n");
  ASSERT_NE(r, nullptr);
  ASSERT_EQ(r->type, REDIS_REPLY_ARRAY);
  ASSERT_EQ(r->elements, 4u);
  for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(r->element[i]->type, REDIS_REPLY_STRING) << i;
  EXPECT_EQ(reply_text(r->element[0]), "pmessage");
  EXPECT_EQ(reply_text(r->element[1]), "room:*");
  EXPECT_EQ(reply_text(r->element[2]), "room:a");
  EXPECT_EQ(reply_text(r->element[3]), R"({"senderId":"x"})");
}

// An array holding every reply type, including an array of arrays.
constexpr std::string_view kNested =
    "*6\r\n"
    "+OK\r\n"
    "-ERR no\r\n"
    ":7\r\n"
    "$-1\r\n"
    "$4\r\n\r\n\0x\r\n"
    "*2\r\n"
    "*2\r\n$1\r\na\r\n:1\r\n"
    "*0\r\n"sv;

void ExpectNested(const redisReply* r) {
  ASSERT_NE(r, nullptr);
  ASSERT_EQ(r->type, REDIS_REPLY_ARRAY);
  ASSERT_EQ(r->elements, 6u);
  EXPECT_EQ(r->element[0]->type, REDIS_REPLY_STATUS);
  EXPECT_EQ(reply_text(r->element[0]), "OK");
  EXPECT_EQ(r->element[1]->type, REDIS_REPLY_ERROR);
  EXPECT_EQ(reply_text(r->element[1]), "ERR no");
  EXPECT_EQ(r->element[2]->type, REDIS_REPLY_INTEGER);
  EXPECT_EQ(r->element[2]->integer, 7);
  EXPECT_EQ(r->element[3]->type, REDIS_REPLY_NIL);
  EXPECT_EQ(r->element[4]->type, REDIS_REPLY_STRING);
  EXPECT_EQ(reply_text(r->element[4]), "\r\n\0x"sv);
  const redisReply* inner = r->element[5];
  ASSERT_EQ(inner->type, REDIS_REPLY_ARRAY);
  ASSERT_EQ(inner->elements, 2u);
  const redisReply* pair = inner->element[0];
  ASSERT_EQ(pair->type, REDIS_REPLY_ARRAY);
  ASSERT_EQ(pair->elements, 2u);
  EXPECT_EQ(pair->element[0]->type, REDIS_REPLY_STRING);
  EXPECT_EQ(reply_text(pair->element[0]), "a");
  EXPECT_EQ(pair->element[1]->type, REDIS_REPLY_INTEGER);
  EXPECT_EQ(pair->element[1]->integer, 1);
  EXPECT_EQ(inner->element[1]->type, REDIS_REPLY_ARRAY);
  EXPECT_EQ(inner->element[1]->elements, 0u);
}

TEST(RespReaderTest, NestedArrays) {
  const ReplyPtr r = ReadOne(kNested);
  ExpectNested(r.get());
  // An error inside an array is data, not a failed array.
  EXPECT_FALSE(is_error(r.get()));
}

TEST(RespReaderTest, ReplyAppearsOnlyWhenCompleteAtEverySplit) {
  for (std::size_t split = 1; split < kNested.size(); ++split) {
    SCOPED_TRACE(split);
    RespReader reader;
    bool error = false;
    ASSERT_TRUE(reader.feed(kNested.data(), split));
    EXPECT_EQ(reader.next(&error), nullptr);
    EXPECT_FALSE(error);
    ASSERT_TRUE(reader.feed(kNested.data() + split, kNested.size() - split));
    const ReplyPtr r = reader.next(&error);
    EXPECT_FALSE(error);
    ExpectNested(r.get());
    EXPECT_EQ(reader.next(&error), nullptr);
    EXPECT_FALSE(error);
  }
}

TEST(RespReaderTest, ReplyAppearsOnlyWhenCompleteByteByByte) {
  const std::vector<std::string_view> replies = {
      "+OK\r\n", "-ERR x\r\n", ":123\r\n", "$-1\r\n", "$6\r\nab\r\n\0c\r\n"sv, kNested};
  for (std::string_view bytes : replies) {
    RespReader reader;
    bool error = false;
    for (std::size_t i = 0; i + 1 < bytes.size(); ++i) {
      ASSERT_TRUE(reader.feed(bytes.data() + i, 1));
      ASSERT_EQ(reader.next(&error), nullptr) << bytes << " after byte " << i;
      ASSERT_FALSE(error);
    }
    ASSERT_TRUE(reader.feed(bytes.data() + bytes.size() - 1, 1));
    EXPECT_NE(reader.next(&error), nullptr) << bytes;
    EXPECT_FALSE(error);
  }
}

TEST(RespReaderTest, EmptyFeedIsHarmless) {
  RespReader reader;
  bool error = false;
  EXPECT_TRUE(reader.feed("", 0));
  EXPECT_EQ(reader.next(&error), nullptr);
  EXPECT_FALSE(error);
  ASSERT_TRUE(reader.feed(":5\r\n", 4));
  const ReplyPtr r = reader.next(&error);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->integer, 5);
}

TEST(RespReaderTest, TwoRepliesInOneFeedComeOutInOrder) {
  RespReader reader;
  const std::string_view bytes = "+first\r\n:2\r\n";
  ASSERT_TRUE(reader.feed(bytes.data(), bytes.size()));
  bool error = false;
  const ReplyPtr first = reader.next(&error);
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first->type, REDIS_REPLY_STATUS);
  EXPECT_EQ(reply_text(first.get()), "first");
  const ReplyPtr second = reader.next(&error);
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(second->type, REDIS_REPLY_INTEGER);
  EXPECT_EQ(second->integer, 2);
  EXPECT_EQ(reader.next(&error), nullptr);
  EXPECT_FALSE(error);
}

TEST(RespReaderTest, RepliesSpanningFeedsComeOutInOrder) {
  RespReader reader;
  bool error = false;
  // One feed ends a reply and starts the next.
  ASSERT_TRUE(reader.feed("$3\r\nab", 6));
  EXPECT_EQ(reader.next(&error), nullptr);
  ASSERT_TRUE(reader.feed("c\r\n-ERR a\r\n:", 12));
  const ReplyPtr first = reader.next(&error);
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(reply_text(first.get()), "abc");
  const ReplyPtr second = reader.next(&error);
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(second->type, REDIS_REPLY_ERROR);
  EXPECT_EQ(reply_text(second.get()), "ERR a");
  EXPECT_EQ(reader.next(&error), nullptr);
  ASSERT_TRUE(reader.feed("9\r\n", 3));
  const ReplyPtr third = reader.next(&error);
  ASSERT_NE(third, nullptr);
  EXPECT_EQ(third->integer, 9);
  EXPECT_FALSE(error);
}

TEST(RespReaderTest, GarbageSetsTheErrorFlag) {
  for (std::string_view garbage : {"hello\r\n"sv, "?\r\n"sv, "GET / HTTP/1.1\r\n"sv, "\0\r\n"sv}) {
    RespReader reader;
    ASSERT_TRUE(reader.feed(garbage.data(), garbage.size()));
    bool error = false;
    EXPECT_EQ(reader.next(&error), nullptr) << garbage;
    EXPECT_TRUE(error) << garbage;
  }
}

TEST(RespReaderTest, GarbageInsideAnArraySetsTheErrorFlag) {
  RespReader reader;
  const std::string_view bytes = "*2\r\n:1\r\n!oops\r\n";
  ASSERT_TRUE(reader.feed(bytes.data(), bytes.size()));
  bool error = false;
  EXPECT_EQ(reader.next(&error), nullptr);
  EXPECT_TRUE(error);
}

TEST(RespReaderTest, GarbageAfterAValidReplyFailsOnlyAfterIt) {
  RespReader reader;
  const std::string_view bytes = "+OK\r\n%%%\r\n";
  ASSERT_TRUE(reader.feed(bytes.data(), bytes.size()));
  bool error = false;
  const ReplyPtr ok = reader.next(&error);
  ASSERT_NE(ok, nullptr);
  EXPECT_EQ(reply_text(ok.get()), "OK");
  EXPECT_FALSE(error);
  EXPECT_EQ(reader.next(&error), nullptr);
  EXPECT_TRUE(error);
}

TEST(RespReaderTest, AfterAnErrorFeedFailsUntilReset) {
  RespReader reader;
  ASSERT_TRUE(reader.feed("x\r\n", 3));
  bool error = false;
  EXPECT_EQ(reader.next(&error), nullptr);
  ASSERT_TRUE(error);
  EXPECT_FALSE(reader.feed("+OK\r\n", 5));

  reader.reset();
  error = false;
  ASSERT_TRUE(reader.feed("+OK\r\n", 5));
  const ReplyPtr r = reader.next(&error);
  EXPECT_FALSE(error);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(reply_text(r.get()), "OK");
}

TEST(RespReaderTest, ResetDiscardsAPartialReply) {
  RespReader reader;
  ASSERT_TRUE(reader.feed("$10\r\nhal", 8));
  bool error = false;
  EXPECT_EQ(reader.next(&error), nullptr);
  reader.reset();
  ASSERT_TRUE(reader.feed(":1\r\n", 4));
  const ReplyPtr r = reader.next(&error);
  EXPECT_FALSE(error);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->type, REDIS_REPLY_INTEGER);
  EXPECT_EQ(r->integer, 1);
}

TEST(RespReaderTest, ReplyTextAndIsErrorOnNull) {
  EXPECT_EQ(reply_text(nullptr), "");
  EXPECT_TRUE(is_error(nullptr));
}

// Found by fuzzing: hiredis 0.14 would allocate an array for every announced element up front.
TEST(RespReaderTest, HugeArrayHeaderIsAnErrorNotAnAllocation) {
  RespReader reader;
  const std::string_view huge = "*888888888\r\n";
  ASSERT_TRUE(reader.feed(huge.data(), huge.size()));
  bool error = false;
  EXPECT_EQ(reader.next(&error), nullptr);
  EXPECT_TRUE(error);
  // Arrays of ordinary size still parse after a reset.
  reader.reset();
  const std::string_view two = "*2\r\n:1\r\n:2\r\n";
  ASSERT_TRUE(reader.feed(two.data(), two.size()));
  error = false;
  ReplyPtr r = reader.next(&error);
  ASSERT_TRUE(r);
  EXPECT_FALSE(error);
  EXPECT_EQ(r->elements, 2u);
}

// --- parse_fast_reply ---

TEST(RespFastTest, IntegerReplies) {
  FastReply r;
  EXPECT_EQ(parse_fast_reply(":12\r\n+OK\r\n", false, r), 5u);
  EXPECT_EQ(r.kind, FastReply::Kind::kInteger);
  EXPECT_EQ(r.integer, 12);
  EXPECT_EQ(parse_fast_reply(":-3\r\n", true, r), 5u);
  EXPECT_EQ(r.integer, -3);
  EXPECT_EQ(parse_fast_reply(":999999999999999999\r\n", false, r), 21u);
  EXPECT_EQ(r.integer, 999999999999999999LL);
  // Longer than 18 digits, empty, or not ended by CRLF: hiredis reads (or refuses) those.
  EXPECT_EQ(parse_fast_reply(":9223372036854775807\r\n", false, r), 0u);
  EXPECT_EQ(parse_fast_reply(":\r\n", false, r), 0u);
  EXPECT_EQ(parse_fast_reply(":12\n", false, r), 0u);
  EXPECT_EQ(parse_fast_reply(":1x\r\n", false, r), 0u);
}

TEST(RespFastTest, MessagesInPlace) {
  const std::string message = "*3\r\n$7\r\nmessage\r\n$6\r\nroom:a\r\n$5\r\nhe\0lo\r\n"s;
  FastReply r;
  const std::string followed = message + ":1\r\n";  // r points into it
  ASSERT_EQ(parse_fast_reply(followed, true, r), message.size());
  EXPECT_EQ(r.kind, FastReply::Kind::kMessage);
  EXPECT_EQ(r.channel, "room:a");
  EXPECT_EQ(r.payload, "he\0lo"sv);
  const std::string sharded = "*3\r\n$8\r\nsmessage\r\n$8\r\nroom:{a}\r\n$0\r\n\r\n";
  ASSERT_EQ(parse_fast_reply(sharded, true, r), sharded.size());
  EXPECT_EQ(r.channel, "room:{a}");
  EXPECT_EQ(r.payload, "");
  // Not a subscriber that is up: hiredis reads it.
  EXPECT_EQ(parse_fast_reply(message, false, r), 0u);
}

TEST(RespFastTest, EverythingElseIsLeftToHiredis) {
  FastReply r;
  for (std::string_view other : {"+OK\r\n"sv, "-ERR no\r\n"sv, "$3\r\nabc\r\n"sv, "$-1\r\n"sv,
                                 "*-1\r\n"sv, "*3\r\n$9\r\nsubscribe\r\n$6\r\nroom:a\r\n:1\r\n"sv,
                                 "*3\r\n$10\r\nssubscribe\r\n$6\r\nroom:a\r\n:1\r\n"sv,
                                 "*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$6\r\nroom:a\r\n$1\r\nx\r\n"sv,
                                 "*2\r\n$4\r\npong\r\n$0\r\n\r\n"sv,
                                 // Lengths that do not match the bytes.
                                 "*3\r\n$7\r\nmessage\r\n$2\r\nabc\r\n$1\r\nx\r\n"sv,
                                 "*3\r\n$7\r\nmessage\r\n$6\r\nroom:a\r\n$-1\r\n"sv}) {
    EXPECT_EQ(parse_fast_reply(other, true, r), 0u) << other;
  }
}

TEST(RespFastTest, APartialReplyIsNotTaken) {
  const std::string message = "*3\r\n$7\r\nmessage\r\n$6\r\nroom:a\r\n$5\r\nhello\r\n";
  FastReply r;
  for (std::size_t cut = 0; cut < message.size(); ++cut) {
    EXPECT_EQ(parse_fast_reply(std::string_view(message).substr(0, cut), true, r), 0u) << cut;
  }
  for (std::size_t cut = 0; cut < 6; ++cut) {
    EXPECT_EQ(parse_fast_reply(std::string_view(":123\r\n").substr(0, cut), true, r), 0u) << cut;
  }
}

// --- complete_reply_size ---

TEST(RespCompleteTest, MeasuresTheFirstWholeReplyOfAnyType) {
  bool error = true;
  for (std::string_view one :
       {"+OK\r\n"sv, "-ERR no\r\n"sv, ":12\r\n"sv, ":9223372036854775807\r\n"sv,
        "$3\r\na\r\n\r\n"sv, "$0\r\n\r\n"sv, "$-1\r\n"sv, "*-1\r\n"sv, "*0\r\n"sv,
        "*3\r\n$9\r\nsubscribe\r\n$6\r\nroom:a\r\n:1\r\n"sv,
        "*2\r\n*2\r\n:1\r\n$-1\r\n*1\r\n*0\r\n"sv,  // nested, with nils and an empty array
        "*3\r\n$7\r\nmessage\r\n$6\r\nroom:a\r\n$5\r\nhe\0lo\r\n"sv}) {
    EXPECT_EQ(complete_reply_size(one, &error), one.size()) << one;
    EXPECT_FALSE(error) << one;
    const std::string followed = std::string(one) + "+next\r\n";
    EXPECT_EQ(complete_reply_size(followed, &error), one.size()) << one;
    // Cut anywhere, it is not whole yet, and that is no error.
    for (std::size_t cut = 0; cut < one.size(); ++cut) {
      EXPECT_EQ(complete_reply_size(one.substr(0, cut), &error), 0u) << one << " cut " << cut;
      EXPECT_FALSE(error) << one << " cut " << cut;
    }
  }
}

TEST(RespCompleteTest, AgreesWithHiredisAndTheFastPath) {
  const std::string stream =
      "*3\r\n$7\r\nmessage\r\n$6\r\nroom:a\r\n$5\r\nhello\r\n:7\r\n"
      "*2\r\n*3\r\n:0\r\n:5460\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n$-1\r\n+OK\r\n"s;
  RespReader reader;
  std::string_view in = stream;
  int replies = 0;
  while (!in.empty()) {
    bool error = false;
    const std::size_t n = complete_reply_size(in, &error);
    ASSERT_FALSE(error);
    ASSERT_GT(n, 0u);
    FastReply fast;
    const std::size_t used = parse_fast_reply(in, true, fast);
    if (used > 0) {
      EXPECT_EQ(used, n);
    }
    ASSERT_TRUE(reader.feed(in.data(), n));
    EXPECT_NE(reader.next(&error), nullptr) << "hiredis takes exactly those bytes as one reply";
    EXPECT_EQ(reader.next(&error), nullptr);
    in.remove_prefix(n);
    ++replies;
  }
  EXPECT_EQ(replies, 4);
}

TEST(RespCompleteTest, RefusesWhatIsNotRespOrTooBig) {
  for (std::string_view bad : {"x\r\n"sv, "\r\n"sv, "$abc\r\n"sv, "$-2\r\n"sv, "*-2\r\n"sv,
                               "$3\r\nabcd\r\n"sv, "*2\r\n:1\r\n?\r\n"sv, "$536870913\r\n"sv,
                               "*1048577\r\n"sv, "$1234567890123456789\r\n"sv}) {
    bool error = false;
    EXPECT_EQ(complete_reply_size(bad, &error), 0u) << bad;
    EXPECT_TRUE(error) << bad;
  }
  // At the limits, only waiting for the bytes.
  bool error = true;
  EXPECT_EQ(complete_reply_size("$536870912\r\n", &error), 0u);
  EXPECT_FALSE(error);
  EXPECT_EQ(complete_reply_size("*1048576\r\n", &error), 0u);
  EXPECT_FALSE(error);
}

// --- copy_reply ---

TEST(RespCopyTest, DeepCopyOutlivesTheOriginalAndFreesLikeOne) {
  ReplyPtr copy;
  {
    const ReplyPtr r =
        ReadOne("*5\r\n$2\r\nok\r\n:42\r\n$-1\r\n*2\r\n+PONG\r\n-ERR no\r\n$3\r\na\0b\r\n"sv);
    ASSERT_NE(r, nullptr);
    copy = copy_reply(*r);
  }  // the original is freed here; ASan would catch a copy that still points into it
  ASSERT_EQ(copy->type, REDIS_REPLY_ARRAY);
  ASSERT_EQ(copy->elements, 5u);
  EXPECT_EQ(reply_text(copy->element[0]), "ok");
  EXPECT_EQ(copy->element[1]->type, REDIS_REPLY_INTEGER);
  EXPECT_EQ(copy->element[1]->integer, 42);
  EXPECT_EQ(copy->element[2]->type, REDIS_REPLY_NIL);
  const redisReply* nested = copy->element[3];
  ASSERT_EQ(nested->type, REDIS_REPLY_ARRAY);
  ASSERT_EQ(nested->elements, 2u);
  EXPECT_EQ(nested->element[0]->type, REDIS_REPLY_STATUS);
  EXPECT_EQ(reply_text(nested->element[0]), "PONG");
  EXPECT_TRUE(is_error(nested->element[1]));
  EXPECT_EQ(reply_text(nested->element[1]), "ERR no");
  EXPECT_EQ(reply_text(copy->element[4]), "a\0b"sv) << "binary-safe";
}

}  // namespace
}  // namespace sigsrv
