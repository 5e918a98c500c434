// Tests client message validation and canonical serialization (PROTOCOL.md section 2).
#include "signaling/protocol.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <array>
#include <boost/json.hpp>
#include <cstdio>
#include <random>
#include <string>

namespace sigsrv {
namespace {

using Kind = ParsedMessage::Kind;

// Parses `input`, expects it valid and returns the relayed text.
std::string Valid(std::string_view input, MessageType expected_type) {
  const ParsedMessage m = parse_client_message(input);
  EXPECT_EQ(m.kind, Kind::kValid) << input;
  EXPECT_EQ(m.type, expected_type) << input;
  return m.text;
}

Kind KindOf(std::string_view input) {
  return parse_client_message(input).kind;
}

// --- valid messages and their canonical text ---

TEST(ProtocolTest, OfferIsRelayedCanonically) {
  EXPECT_EQ(Valid(R"({"type":"offer","sdp":"v=0"})", MessageType::kOffer),
            R"({"type":"offer","sdp":"v=0"})");
}

TEST(ProtocolTest, AnswerIsRelayedCanonically) {
  EXPECT_EQ(Valid(R"({"type":"answer","sdp":"v=0"})", MessageType::kAnswer),
            R"({"type":"answer","sdp":"v=0"})");
}

TEST(ProtocolTest, KeysAreWrittenInSchemaOrderWithTypeFirst) {
  EXPECT_EQ(Valid(R"({"sdp":"x","type":"offer"})", MessageType::kOffer),
            R"({"type":"offer","sdp":"x"})");
  EXPECT_EQ(Valid(R"({"sdpMLineIndex":0,"sdpMid":"0","candidate":"c","type":"candidate"})",
                  MessageType::kCandidate),
            R"({"type":"candidate","candidate":"c","sdpMid":"0","sdpMLineIndex":0})");
  EXPECT_EQ(Valid(R"({"payload":1,"action":"a","type":"control"})", MessageType::kControl),
            R"({"type":"control","action":"a","payload":1})");
}

TEST(ProtocolTest, CandidateWithAllFields) {
  EXPECT_EQ(Valid(R"({"type":"candidate","candidate":"c","sdpMid":"0","sdpMLineIndex":0})",
                  MessageType::kCandidate),
            R"({"type":"candidate","candidate":"c","sdpMid":"0","sdpMLineIndex":0})");
}

TEST(ProtocolTest, CandidateWithOnlyRequiredField) {
  EXPECT_EQ(Valid(R"({"type":"candidate","candidate":"c"})", MessageType::kCandidate),
            R"({"type":"candidate","candidate":"c"})");
}

TEST(ProtocolTest, CandidateOptionalFieldsMayBeNull) {
  EXPECT_EQ(Valid(R"({"type":"candidate","candidate":"c","sdpMid":null,"sdpMLineIndex":null})",
                  MessageType::kCandidate),
            R"({"type":"candidate","candidate":"c","sdpMid":null,"sdpMLineIndex":null})");
}

TEST(ProtocolTest, CandidateEmptySdpMidIsAString) {
  EXPECT_EQ(Valid(R"({"type":"candidate","candidate":"c","sdpMid":""})", MessageType::kCandidate),
            R"({"type":"candidate","candidate":"c","sdpMid":""})");
}

TEST(ProtocolTest, SdpMLineIndexWholeDoubleIsWrittenAsInteger) {
  EXPECT_EQ(
      Valid(R"({"type":"candidate","candidate":"c","sdpMLineIndex":1.0})", MessageType::kCandidate),
      R"({"type":"candidate","candidate":"c","sdpMLineIndex":1})");
  EXPECT_EQ(
      Valid(R"({"type":"candidate","candidate":"c","sdpMLineIndex":2e0})", MessageType::kCandidate),
      R"({"type":"candidate","candidate":"c","sdpMLineIndex":2})");
}

TEST(ProtocolTest, SdpMLineIndexLargeInteger) {
  EXPECT_EQ(Valid(R"({"type":"candidate","candidate":"c","sdpMLineIndex":65535})",
                  MessageType::kCandidate),
            R"({"type":"candidate","candidate":"c","sdpMLineIndex":65535})");
}

TEST(ProtocolTest, ControlWithoutPayload) {
  EXPECT_EQ(Valid(R"({"type":"control","action":"mute"})", MessageType::kControl),
            R"({"type":"control","action":"mute"})");
}

TEST(ProtocolTest, ControlPayloadOfAnyJsonTypeIsKept) {
  const std::pair<const char*, const char*> cases[] = {
      {"null", "null"},
      {"true", "true"},
      {"false", "false"},
      {"42", "42"},
      {"-7", "-7"},
      {R"("text")", R"("text")"},
      {"[1,\"a\",null]", "[1,\"a\",null]"},
      {R"({"x":{"y":[1,2]},"z":"w"})", R"({"x":{"y":[1,2]},"z":"w"})"},
      {"{}", "{}"},
      {"[]", "[]"},
  };
  for (const auto& [in, out] : cases) {
    const std::string input =
        std::string(R"({"type":"control","action":"a","payload":)") + in + "}";
    EXPECT_EQ(Valid(input, MessageType::kControl),
              std::string(R"({"type":"control","action":"a","payload":)") + out + "}")
        << input;
  }
}

TEST(ProtocolTest, PayloadNumbersKeepTheirValue) {
  const ParsedMessage m =
      parse_client_message(R"({"type":"control","action":"a","payload":[-1.5,0.1,2.0,1e21]})");
  ASSERT_EQ(m.kind, Kind::kValid);
  const boost::json::array out = boost::json::parse(m.text).at("payload").as_array();
  const double expected[] = {-1.5, 0.1, 2.0, 1e21};
  ASSERT_EQ(out.size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) {
    // JavaScript has one number type: 2 and 2.0 are the same value.
    EXPECT_EQ(boost::json::value_to<double>(out[i]), expected[i]) << i;
  }
}

// The Node server re-serialized with JSON.stringify; numbers keep that form on the wire.
TEST(ProtocolTest, PayloadNumbersAreWrittenAsJsonStringifyWould) {
  EXPECT_EQ(Valid(R"({"type":"control","action":"a","payload":[-1.5,0.1,2.0,1e21,1.5e-7,-0.0]})",
                  MessageType::kControl),
            R"({"type":"control","action":"a","payload":[-1.5,0.1,2,1e+21,1.5e-7,0]})");
}

TEST(ProtocolTest, DuplicateKeysKeepTheLastValue) {
  // JSON.parse (and so the Node server) keeps the last of duplicate keys.
  EXPECT_EQ(Valid(R"({"type":"offer","sdp":"a","sdp":"b"})", MessageType::kOffer),
            R"({"type":"offer","sdp":"b"})");
  EXPECT_EQ(KindOf(R"({"type":"offer","sdp":"a","sdp":""})"), Kind::kSchemaError);
}

TEST(ProtocolTest, UnknownKeysAreStripped) {
  EXPECT_EQ(Valid(R"({"type":"offer","sdp":"x","extra":1,"nested":{"a":[]}})", MessageType::kOffer),
            R"({"type":"offer","sdp":"x"})");
  EXPECT_EQ(
      Valid(R"({"type":"answer","sdp":"x","candidate":"c","action":"a"})", MessageType::kAnswer),
      R"({"type":"answer","sdp":"x"})");
  EXPECT_EQ(Valid(R"({"type":"candidate","candidate":"c","sdp":"x","payload":1,"foo":"bar"})",
                  MessageType::kCandidate),
            R"({"type":"candidate","candidate":"c"})");
  EXPECT_EQ(Valid(R"({"type":"control","action":"a","sdp":"x","clientId":"spoof"})",
                  MessageType::kControl),
            R"({"type":"control","action":"a"})");
}

TEST(ProtocolTest, WhitespaceIsNotPreserved) {
  EXPECT_EQ(Valid(" { \"type\" : \"offer\" ,\n \"sdp\" : \"x\" } ", MessageType::kOffer),
            R"({"type":"offer","sdp":"x"})");
}

TEST(ProtocolTest, EscapesRoundTrip) {
  // \/ is written back as /, the other short escapes as themselves (as JSON.stringify does).
  EXPECT_EQ(Valid(R"({"type":"offer","sdp":"a\"b\\c\/d\ne\r\tf\b\f"})", MessageType::kOffer),
            R"({"type":"offer","sdp":"a\"b\\c/d\ne\r\tf\b\f"})");
  // Other control characters come back as \u00XX.
  EXPECT_EQ(Valid(R"({"type":"offer","sdp":"\u0001"})", MessageType::kOffer),
            R"({"type":"offer","sdp":"\u0001"})");
}

TEST(ProtocolTest, EveryByteIsEscapedAsBoostJsonWould) {
  // Strings are written without json::serialize; each byte value, in keys and values, must come
  // out as json::serialize writes it (0x80-0xFF as parts of a valid UTF-8 sequence).
  for (int c = 1; c < 0x80; ++c) {
    const std::string s = "a" + std::string(1, static_cast<char>(c)) + "b";
    const std::string quoted = boost::json::serialize(boost::json::string_view(s));
    boost::json::object payload;
    payload[s] = s;
    const std::string input = R"({"type":"control","action":)" + quoted + R"(,"payload":)" +
                              boost::json::serialize(payload) + "}";
    EXPECT_EQ(Valid(input, MessageType::kControl), R"({"type":"control","action":)" + quoted +
                                                       R"(,"payload":{)" + quoted + ":" + quoted +
                                                       "}}")
        << c;
  }
}

TEST(ProtocolTest, UnicodeRoundTrips) {
  // Raw UTF-8 is kept as is.
  EXPECT_EQ(Valid("{\"type\":\"control\",\"action\":\"caf\xC3\xA9 \xF0\x9F\x8E\xAE\"}",
                  MessageType::kControl),
            "{\"type\":\"control\",\"action\":\"caf\xC3\xA9 \xF0\x9F\x8E\xAE\"}");
  // \u escapes of printable characters (including a surrogate pair) become UTF-8.
  EXPECT_EQ(Valid(R"({"type":"control","action":"caf\u00e9 \ud83c\udfae"})", MessageType::kControl),
            "{\"type\":\"control\",\"action\":\"caf\xC3\xA9 \xF0\x9F\x8E\xAE\"}");
}

TEST(ProtocolTest, LargeSdpRoundTrips) {
  const std::string sdp(100000, 'a');
  const std::string input = R"({"type":"offer","sdp":")" + sdp + R"("})";
  EXPECT_EQ(Valid(input, MessageType::kOffer), input);
}

// --- schema errors: a JSON object failing the table ---

TEST(ProtocolTest, SchemaErrorRows) {
  const char* rows[] = {
      // offer / answer
      R"({"type":"offer"})",
      R"({"type":"offer","sdp":""})",
      R"({"type":"offer","sdp":1})",
      R"({"type":"offer","sdp":null})",
      R"({"type":"offer","sdp":["x"]})",
      R"({"type":"answer"})",
      R"({"type":"answer","sdp":""})",
      R"({"type":"answer","sdp":true})",
      // candidate
      R"({"type":"candidate"})",
      R"({"type":"candidate","candidate":""})",
      R"({"type":"candidate","candidate":5})",
      R"({"type":"candidate","candidate":"c","sdpMid":0})",
      R"({"type":"candidate","candidate":"c","sdpMid":{}})",
      R"({"type":"candidate","candidate":"c","sdpMLineIndex":-1})",
      R"({"type":"candidate","candidate":"c","sdpMLineIndex":0.5})",
      R"({"type":"candidate","candidate":"c","sdpMLineIndex":-0.5})",
      R"({"type":"candidate","candidate":"c","sdpMLineIndex":"0"})",
      R"({"type":"candidate","candidate":"c","sdpMLineIndex":true})",
      R"({"type":"candidate","candidate":"c","sdpMLineIndex":[0]})",
      R"({"type":"candidate","candidate":"c","sdpMLineIndex":1e300})",
      // control
      R"({"type":"control"})",
      R"({"type":"control","action":""})",
      R"({"type":"control","action":7})",
      R"({"type":"control","payload":{}})",
      // type
      R"({"type":"hello"})",
      R"({"type":"Offer","sdp":"x"})",
      R"({"type":"peer-disconnected"})",
      R"({"type":""})",
      R"({"sdp":"x"})",
      R"({})",
      R"({"type":1,"sdp":"x"})",
      R"({"type":null})",
      R"({"type":["offer"],"sdp":"x"})",
  };
  for (const char* row : rows) {
    const ParsedMessage m = parse_client_message(row);
    EXPECT_EQ(m.kind, Kind::kSchemaError) << row;
  }
}

// --- not JSON, or not an object: dropped silently ---

TEST(ProtocolTest, NotJsonOrNotObject) {
  const char* rows[] = {
      "",
      "   ",
      "hello",
      "{",
      R"({"type":"offer","sdp":"x"} trailing)",
      R"({"type":"offer","sdp":"x",})",
      R"({'type':'offer'})",
      "[]",
      R"([{"type":"offer","sdp":"x"}])",
      R"("{\"type\":\"offer\",\"sdp\":\"x\"}")",
      "42",
      "-1.5",
      "true",
      "null",
  };
  for (const char* row : rows) {
    EXPECT_EQ(KindOf(row), Kind::kNotJson) << "input: " << row;
  }
}

TEST(ProtocolTest, InvalidResultCarriesNoText) {
  EXPECT_TRUE(parse_client_message(R"({"type":"offer"})").text.empty());
  EXPECT_TRUE(parse_client_message("nope").text.empty());
}

// --- messages the server sends ---

TEST(ProtocolTest, ServerMessages) {
  EXPECT_EQ(*schema_error_message(), R"({"type":"control","action":"schema-error"})");
  EXPECT_EQ(*peer_disconnected_message(), R"({"type":"peer-disconnected"})");
  // The same shared buffer every time.
  EXPECT_EQ(schema_error_message().get(), schema_error_message().get());
}

TEST(ProtocolTest, WelcomeMessage) {
  EXPECT_EQ(welcome_message("client:abc", "room-1", 1),
            R"({"type":"control","action":"welcome","payload":)"
            R"({"clientId":"client:abc","roomId":"room-1","peers":1}})");
  EXPECT_EQ(welcome_message("a\"b", "r", 0), R"({"type":"control","action":"welcome","payload":)"
                                             R"({"clientId":"a\"b","roomId":"r","peers":0}})");
}

TEST(ProtocolTest, PeerJoinedMessage) {
  EXPECT_EQ(peer_joined_message("client:xyz"),
            R"({"type":"control","action":"peer-joined","payload":{"clientId":"client:xyz"}})");
}

TEST(ProtocolTest, ServerMessagesAreValidClientMessagesToo) {
  // What the server sends must survive its own validation unchanged (it may be relayed back).
  const std::string welcome = welcome_message("c", "r", 2);
  EXPECT_EQ(Valid(welcome, MessageType::kControl), welcome);
  const std::string joined = peer_joined_message("c");
  EXPECT_EQ(Valid(joined, MessageType::kControl), joined);
  EXPECT_EQ(Valid(*schema_error_message(), MessageType::kControl), *schema_error_message());
}

// The id written by hand is the one the snprintf format wrote ("client:" + UUID v4, as the Node
// server's), for any bits, including all zeros and all ones.
TEST(ProtocolTest, ClientIdIsAVersion4Uuid) {
  const auto reference = [](uint64_t a, uint64_t b) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "client:%08x-%04x-4%03x-%04x-%012llx",
                  static_cast<unsigned>(a >> 32), static_cast<unsigned>((a >> 16) & 0xffff),
                  static_cast<unsigned>(a & 0x0fff),
                  static_cast<unsigned>(0x8000 | ((b >> 48) & 0x3fff)),
                  static_cast<unsigned long long>(b & 0xffffffffffffULL));
    return std::string(buf);
  };
  EXPECT_EQ(client_id_from(0, 0), "client:00000000-0000-4000-8000-000000000000");
  EXPECT_EQ(client_id_from(~0ULL, ~0ULL), "client:ffffffff-ffff-4fff-bfff-ffffffffffff");
  std::mt19937_64 rng(7);
  for (int i = 0; i < 10000; ++i) {
    const uint64_t a = rng(), b = rng();
    ASSERT_EQ(client_id_from(a, b), reference(a, b)) << a << " " << b;
  }
}

TEST(ProtocolTest, Ipv4TextIsInetNtops) {
  std::mt19937 rng(11);
  for (int i = 0; i < 10000; ++i) {
    std::array<unsigned char, 4> bytes{};
    for (auto& b : bytes) b = static_cast<unsigned char>(i < 256 ? i : rng());
    char expected[INET_ADDRSTRLEN];
    ASSERT_NE(inet_ntop(AF_INET, bytes.data(), expected, sizeof expected), nullptr);
    ASSERT_EQ(ipv4_text(bytes), expected);
  }
  EXPECT_EQ(ipv4_text({255, 255, 255, 255}), "255.255.255.255");
  EXPECT_EQ(ipv4_text({10, 0, 0, 1}), "10.0.0.1");
}

}  // namespace
}  // namespace sigsrv
