// Tests connect URL parsing: roomId, token, events, and the Authorization bearer token.
#include "signaling/connect_params.hpp"

#include <gtest/gtest.h>

#include <string>

namespace sigsrv {
namespace {

constexpr std::size_t kMax = 64;

std::optional<std::string> RoomOf(std::string_view target, std::size_t max = kMax) {
  return parse_connect_target(target, max).room_id;
}

TEST(ConnectParamsTest, PlainRoomId) {
  EXPECT_EQ(RoomOf("/?roomId=test-room"), "test-room");
}

TEST(ConnectParamsTest, EveryAllowedCharacter) {
  const std::string id = "AZaz09_-:.";
  EXPECT_EQ(RoomOf("/?roomId=" + id), id);
}

TEST(ConnectParamsTest, AnyPathIsAccepted) {
  EXPECT_EQ(RoomOf("/signal/ws?roomId=r1"), "r1");
  EXPECT_EQ(RoomOf("/a/b/c/?roomId=r2"), "r2");
}

TEST(ConnectParamsTest, RoomIdIsPercentDecoded) {
  EXPECT_EQ(RoomOf("/?roomId=room%2D1"), "room-1");
  EXPECT_EQ(RoomOf("/?roomId=a%3Ab"), "a:b");
  EXPECT_EQ(RoomOf("/?roomId=%41%62c"), "Abc");
}

TEST(ConnectParamsTest, DecodedInvalidCharactersAreRejected) {
  EXPECT_EQ(RoomOf("/?roomId=a%20b"), std::nullopt);  // space
  EXPECT_EQ(RoomOf("/?roomId=a+b"), std::nullopt);    // '+' decodes to a space
  EXPECT_EQ(RoomOf("/?roomId=a%2Fb"), std::nullopt);  // '/'
  EXPECT_EQ(RoomOf("/?roomId=a%00"), std::nullopt);   // NUL
  EXPECT_EQ(RoomOf("/?roomId=caf%C3%A9"), std::nullopt);
}

TEST(ConnectParamsTest, InvalidCharactersAreRejected) {
  const char* bad[] = {"a!b", "a$b", "a*b", "a,b", "a~b", "a'b", "a(b", "a@b", "a;b"};
  for (const char* id : bad) {
    EXPECT_EQ(RoomOf(std::string("/?roomId=") + id), std::nullopt) << id;
  }
}

TEST(ConnectParamsTest, LengthLimitIsInclusive) {
  EXPECT_EQ(RoomOf("/?roomId=" + std::string(kMax, 'a')), std::string(kMax, 'a'));
  EXPECT_EQ(RoomOf("/?roomId=" + std::string(kMax + 1, 'a')), std::nullopt);
  EXPECT_EQ(RoomOf("/?roomId=abc", 3), "abc");
  EXPECT_EQ(RoomOf("/?roomId=abcd", 3), std::nullopt);
  EXPECT_EQ(RoomOf("/?roomId=a", 1), "a");
}

TEST(ConnectParamsTest, LengthIsCountedAfterDecoding) {
  std::string encoded;
  for (std::size_t i = 0; i < kMax; ++i) encoded += "%41";
  EXPECT_EQ(RoomOf("/?roomId=" + encoded), std::string(kMax, 'A'));
  EXPECT_EQ(RoomOf("/?roomId=" + encoded + "%41"), std::nullopt);
}

TEST(ConnectParamsTest, MissingOrEmptyRoomId) {
  EXPECT_EQ(RoomOf("/"), std::nullopt);
  EXPECT_EQ(RoomOf("/?"), std::nullopt);
  EXPECT_EQ(RoomOf("/?token=t"), std::nullopt);
  EXPECT_EQ(RoomOf("/?roomId="), std::nullopt);
  EXPECT_EQ(RoomOf("/?roomId"), std::nullopt);
  EXPECT_EQ(RoomOf("/?roomid=abc"), std::nullopt);  // keys are case-sensitive
  EXPECT_EQ(RoomOf("/?room=abc"), std::nullopt);
}

TEST(ConnectParamsTest, FirstValueWins) {
  EXPECT_EQ(RoomOf("/?roomId=a&roomId=b"), "a");
  EXPECT_EQ(RoomOf("/?roomId=bad!&roomId=good"), std::nullopt);
  const ConnectParams p =
      parse_connect_target("/?roomId=r&token=one&token=two&events=1&events=0", kMax);
  EXPECT_EQ(p.token, "one");
  EXPECT_TRUE(p.events);
  EXPECT_FALSE(parse_connect_target("/?roomId=r&events=0&events=1", kMax).events);
}

TEST(ConnectParamsTest, TokenIsDecoded) {
  const ConnectParams p = parse_connect_target("/?roomId=r&token=eyJ.a%2Bb.c%3D", kMax);
  EXPECT_EQ(p.token, "eyJ.a+b.c=");
  EXPECT_EQ(p.room_id, "r");
  EXPECT_EQ(parse_connect_target("/?token=a+b&roomId=r", kMax).token, "a b");
}

TEST(ConnectParamsTest, TokenAbsentIsEmpty) {
  EXPECT_EQ(parse_connect_target("/?roomId=r", kMax).token, "");
}

TEST(ConnectParamsTest, TokenIsReadEvenWithoutValidRoom) {
  EXPECT_EQ(parse_connect_target("/?token=abc", kMax).token, "abc");
}

TEST(ConnectParamsTest, EventsFlag) {
  EXPECT_TRUE(parse_connect_target("/?roomId=r&events=1", kMax).events);
  EXPECT_TRUE(parse_connect_target("/?events=true&roomId=r", kMax).events);
  EXPECT_FALSE(parse_connect_target("/?roomId=r", kMax).events);
  EXPECT_FALSE(parse_connect_target("/?roomId=r&events=0", kMax).events);
  EXPECT_FALSE(parse_connect_target("/?roomId=r&events=", kMax).events);
  EXPECT_FALSE(parse_connect_target("/?roomId=r&events", kMax).events);
  EXPECT_FALSE(parse_connect_target("/?roomId=r&events=yes", kMax).events);
  EXPECT_FALSE(parse_connect_target("/?roomId=r&events=2", kMax).events);
}

TEST(ConnectParamsTest, AbsoluteFormTarget) {
  const ConnectParams p = parse_connect_target(
      "ws://signal.example.com:3002/path?roomId=abs-room&token=t&events=1", kMax);
  EXPECT_EQ(p.room_id, "abs-room");
  EXPECT_EQ(p.token, "t");
  EXPECT_TRUE(p.events);
  EXPECT_EQ(RoomOf("http://h/?roomId=x"), "x");
}

TEST(ConnectParamsTest, QueryIsReadWhateverThePathLooksLike) {
  // As new URL(req.url, base) in the Node server: the query is what follows '?', up to '#'.
  EXPECT_EQ(parse_connect_target("not a target ?roomId=r", kMax).room_id, "r");
  EXPECT_EQ(parse_connect_target("o:?#", kMax).room_id, std::nullopt);
  EXPECT_EQ(parse_connect_target("/?roomId=a#roomId=b", kMax).room_id, "a");
  EXPECT_EQ(parse_connect_target("/?#roomId=b", kMax).room_id, std::nullopt);
  EXPECT_EQ(parse_connect_target("/no-query", kMax).room_id, std::nullopt);
  // Malformed escapes stay as they are (and then fail the room id check).
  EXPECT_EQ(parse_connect_target("/?roomId=a%2", kMax).room_id, std::nullopt);
  EXPECT_EQ(parse_connect_target("/?token=%zz&roomId=x", kMax).token, "%zz");
}

TEST(ConnectParamsTest, IsValidRoomId) {
  EXPECT_TRUE(is_valid_room_id("a", 1));
  EXPECT_FALSE(is_valid_room_id("", 64));
  EXPECT_FALSE(is_valid_room_id("ab", 1));
  EXPECT_TRUE(is_valid_room_id("room_1-a:b.c", 64));
  EXPECT_FALSE(is_valid_room_id("room 1", 64));
  EXPECT_FALSE(is_valid_room_id("room/1", 64));
  EXPECT_FALSE(is_valid_room_id(std::string_view("a\0b", 3), 64));
}

TEST(BearerTokenTest, ParsesBearerCaseInsensitively) {
  EXPECT_EQ(bearer_token("Bearer abc.def.ghi"), "abc.def.ghi");
  EXPECT_EQ(bearer_token("bearer abc"), "abc");
  EXPECT_EQ(bearer_token("BEARER abc"), "abc");
  EXPECT_EQ(bearer_token("bEaReR abc"), "abc");
}

TEST(BearerTokenTest, TrimsSpaces) {
  EXPECT_EQ(bearer_token("Bearer    abc  "), "abc");
  EXPECT_EQ(bearer_token("Bearer abc\t"), "abc");
}

TEST(BearerTokenTest, NotABearerTokenIsEmpty) {
  EXPECT_EQ(bearer_token(""), "");
  EXPECT_EQ(bearer_token("Bearer"), "");
  EXPECT_EQ(bearer_token("Bearer "), "");
  EXPECT_EQ(bearer_token("Bearer    "), "");
  EXPECT_EQ(bearer_token("Bearerabc"), "");
  EXPECT_EQ(bearer_token("Basic dXNlcjpwdw=="), "");
  EXPECT_EQ(bearer_token("Token abc"), "");
  EXPECT_EQ(bearer_token("abc"), "");
}

TEST(ForwardedClientIpTest, TakesTheEntryTheTrustedProxyAppended) {
  EXPECT_EQ(forwarded_client_ip({"203.0.113.7"}, 1), "203.0.113.7");
  EXPECT_EQ(forwarded_client_ip({"1.1.1.1, 203.0.113.7"}, 1), "203.0.113.7")
      << "the client wrote the first entry";
  EXPECT_EQ(forwarded_client_ip({"1.1.1.1", "203.0.113.7"}, 1), "203.0.113.7")
      << "a proxy that adds its own header line";
  EXPECT_EQ(forwarded_client_ip({" 1.1.1.1 ,\t203.0.113.7 , 10.0.0.2"}, 2), "203.0.113.7");
}

TEST(ForwardedClientIpTest, ShortOrEmptyHeaders) {
  EXPECT_EQ(forwarded_client_ip({"203.0.113.7"}, 3), "203.0.113.7") << "fewer entries than hops";
  EXPECT_EQ(forwarded_client_ip({}, 1), "");
  EXPECT_EQ(forwarded_client_ip({" , "}, 1), "");
  EXPECT_EQ(forwarded_client_ip({"203.0.113.7"}, 0), "203.0.113.7") << "0 reads as 1";
}

}  // namespace
}  // namespace sigsrv
