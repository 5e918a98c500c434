// Tests the DOM-free reading of common messages and envelopes (src/signaling/protocol.cpp): it
// takes the shapes the relay sees, gives up on the rest, and never decides other than the DOM.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "signaling/protocol.hpp"

namespace sigsrv {
namespace {

bool FastDecides(std::string_view input) {
  ParsedMessage m;
  return detail::parse_common_message(input, m);
}

// The public parse (fast path first) and the DOM path alone agree on `input`.
void ExpectMessageAsDom(std::string_view input) {
  const ParsedMessage full = parse_client_message(input);
  const ParsedMessage dom = detail::parse_client_message_dom(input);
  EXPECT_EQ(full.kind, dom.kind) << input;
  EXPECT_EQ(full.type, dom.type) << input;
  EXPECT_EQ(full.text, dom.text) << input;
}

bool EnvelopeFastDecides(std::string_view payload) {
  BusEnvelope e;
  return detail::parse_common_envelope(payload, e);
}

void ExpectEnvelopeAsDom(std::string_view payload) {
  const auto full = parse_bus_envelope(payload);
  const auto dom = detail::parse_bus_envelope_dom(payload);
  ASSERT_EQ(full.has_value(), dom.has_value()) << payload;
  if (!full) return;
  EXPECT_EQ(full->sender_id, dom->sender_id) << payload;
  EXPECT_EQ(full->data, dom->data) << payload;
  EXPECT_EQ(full->origin_server_id, dom->origin_server_id) << payload;
  EXPECT_EQ(full->source_instance, dom->source_instance) << payload;
  EXPECT_EQ(full->sent_at_us, dom->sent_at_us) << payload;
  EXPECT_EQ(full->seqs, dom->seqs) << payload;
}

const std::vector<std::string>& CommonMessages() {
  static const std::vector<std::string> kRows = {
      // What signal-bench sends, and what browsers send (usernameFragment is stripped).
      R"({"type":"candidate","candidate":"candidate:~1~2~ 1 udp 2122260223 192.0.2.1 54321 typ host","sdpMid":"0","sdpMLineIndex":0})",
      R"({"type":"candidate","candidate":"candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"})",
      R"({"type":"candidate","candidate":"c","sdpMid":null,"sdpMLineIndex":null})",
      R"({"type":"candidate","candidate":"c","sdpMid":""})",
      R"({"type":"candidate","candidate":"c","sdpMLineIndex":123456789012345})",
      R"({"sdpMLineIndex":1,"sdpMid":"audio","candidate":"c","type":"candidate"})",
      R"({"type":"offer","sdp":"v=0\r\no=- 4611 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"})",
      R"({"type":"answer","sdp":"v=0\r\n","extra":true,"more":false,"n":null,"i":42})",
      R"({"type":"offer","sdp":"quote \" backslash \\ tab \t bell \b feed \f"})",
      " {\n \"type\" : \"offer\" ,\t\"sdp\" : \"x\" }\r\n",
      R"({"type":"candidate","candidate":"c","usernameFragment":"a\"b"})",
      R"({"type":"offer","sdp":"a","":""})",
      // Control messages with a scalar payload or none (signal-bench's join probe is one).
      R"({"type":"control","action":"probe"})",
      R"({"payload":"x","action":"restart","type":"control"})",
      R"({"type":"control","action":"a","payload":null})",
      R"({"type":"control","action":"a","payload":true,"sdp":"stripped"})",
      R"({"type":"control","action":"a","payload":12})",
  };
  return kRows;
}

const std::vector<std::string>& UncommonMessages() {
  static const std::vector<std::string> kRows = {
      // Re-serialization would change these bytes.
      R"({"type":"offer","sdp":"a\/b"})",
      R"({"type":"offer","sdp":"\u0041"})",
      "{\"type\":\"offer\",\"sdp\":\"caf\xC3\xA9\"}",
      R"({"type":"candidate","candidate":"c","sdpMLineIndex":1.0})",
      R"({"type":"candidate","candidate":"c","sdpMLineIndex":1e0})",
      R"({"type":"candidate","candidate":"c","sdpMLineIndex":1234567890123456})",
      R"({"type":"candidate","candidate":"c","x":-1})",
      // The DOM keeps the last of duplicates.
      R"({"type":"offer","sdp":"a","sdp":"b"})",
      R"({"type":"offer","type":"answer","sdp":"b"})",
      R"({"type":"candidate","candidate":"c","sdpMid":"0","sdpMid":null})",
      // Nested or unknown values, and types this path leaves to the DOM.
      R"({"type":"offer","sdp":"x","nested":{"a":[]}})",
      R"({"type":"offer","sdp":"x","list":[1]})",
      R"({"type":"control","action":"a","payload":{"x":1}})",
      R"({"type":"control","action":"a","payload":[1]})",
      R"({"type":"control","action":"a","payload":-1})",
      R"({"type":"control","action":"a","payload":0.5})",
      R"({"type":"control","action":""})",
      R"({"type":"control","action":"a","payload":1,"payload":2})",
      R"({"type":"c\u0061ndidate","candidate":"c"})",
      R"({"t\u0079pe":"offer","sdp":"x"})",
      // Schema errors and malformed input.
      R"({"type":"offer","sdp":""})",
      R"({"type":"offer"})",
      R"({"type":"candidate","candidate":"c","sdpMid":0})",
      R"({"type":"candidate","candidate":"c","sdpMLineIndex":-1})",
      R"({"type":"candidate","candidate":"c","sdpMLineIndex":01})",
      R"({"type":"offer","sdp":"x"} trailing)",
      R"({"type":"offer","sdp":"x",})",
      R"({"type":"offer","sdp":"x","n":nul})",
      R"({"type":"offer","sdp":"x","n":truex})",
      "{\"type\":\"offer\",\"sdp\":\"a\x01\"}",
      R"({"type":"offer","sdp":"x)",
      R"({})",
      "",
      "[]",
  };
  return kRows;
}

TEST(CommonShapesTest, MessagesOfTheCommonShapesAreReadWithoutTheDom) {
  for (const std::string& row : CommonMessages()) {
    EXPECT_TRUE(FastDecides(row)) << row;
    ExpectMessageAsDom(row);
  }
}

TEST(CommonShapesTest, EverythingElseIsLeftToTheDom) {
  for (const std::string& row : UncommonMessages()) {
    EXPECT_FALSE(FastDecides(row)) << row;
    ExpectMessageAsDom(row);
  }
}

TEST(CommonShapesTest, CanonicalTextIsTheDomsByteForByte) {
  EXPECT_EQ(
      parse_client_message(
          R"({ "sdpMLineIndex" : 0, "usernameFragment":"u", "candidate":"c", "type":"candidate" })")
          .text,
      R"({"type":"candidate","candidate":"c","sdpMLineIndex":0})");
  EXPECT_EQ(parse_client_message(R"({"sdp":"v=0\r\n","type":"answer"})").text,
            R"({"type":"answer","sdp":"v=0\r\n"})");
}

// Every input of the mutations below: the common rows, and JSON-significant bytes to mutate them
// with. Mutated inputs fall on both sides of every give-up rule.
std::string Mutate(std::string s, std::mt19937& rng) {
  static constexpr std::string_view kBytes = "{}[]\":,\\ \t\n0123456789-+.eEtrunlfasx/\x01\xC3\x7F";
  const int edits = 1 + static_cast<int>(rng() % 3);
  for (int i = 0; i < edits; ++i) {
    const std::size_t at = s.empty() ? 0 : rng() % s.size();
    const char byte = kBytes[rng() % kBytes.size()];
    switch (rng() % 4) {
      case 0:
        if (!s.empty()) s[at] = byte;
        break;
      case 1:
        s.insert(s.begin() + static_cast<std::ptrdiff_t>(at), byte);
        break;
      case 2:
        if (!s.empty()) s.erase(at, 1);
        break;
      default: {  // repeat a slice: duplicate keys, doubled tokens
        const std::size_t len = 1 + rng() % 24;
        s.insert(at, s.substr(at, len));
      }
    }
  }
  return s;
}

TEST(CommonShapesTest, MutatedMessagesDecideAsTheDom) {
  std::mt19937 rng(20261201);
  int decided = 0;
  int valid = 0;
  constexpr int kRounds = 60000;
  for (int i = 0; i < kRounds; ++i) {
    const auto& base = CommonMessages()[rng() % CommonMessages().size()];
    const std::string input = Mutate(base, rng);
    decided += FastDecides(input) ? 1 : 0;
    const ParsedMessage full = parse_client_message(input);
    const ParsedMessage dom = detail::parse_client_message_dom(input);
    valid += dom.kind == ParsedMessage::Kind::kValid ? 1 : 0;
    ASSERT_EQ(full.kind, dom.kind) << input;
    ASSERT_EQ(full.type, dom.type) << input;
    ASSERT_EQ(full.text, dom.text) << input;
  }
  // Not vacuous: many mutations stay valid and common, many do not.
  EXPECT_GT(decided, kRounds / 10);
  EXPECT_GT(valid - decided, kRounds / 300);
}

// --- envelopes ---

std::vector<std::string> CommonEnvelopes() {
  std::vector<std::string> rows;
  for (const std::string& m : CommonMessages()) {
    const ParsedMessage p = parse_client_message(m);
    rows.push_back(relay_envelope("client:6f1c2b9e-4d1a-4b7e-9f3e-2a1d0c9b8e7f", p.text,
                                  "instance-a", 1700000000123456));
  }
  rows.push_back(departure_envelope("client:a", "instance-b", 77));
  // As the Node instances write them: no sentAtUs.
  rows.emplace_back(
      R"({"senderId":"c1","data":{"type":"answer","sdp":"x"},"originServerId":"n1"})");
  rows.emplace_back(R"({"senderId":"c1","data":{"type":"peer-disconnected"}})");
  rows.emplace_back(R"({"senderId":"","data":{}})");
  // Sessions shared through Redis number the resumable recipients.
  rows.emplace_back(
      R"({"senderId":"c1","data":{"type":"offer","sdp":"x"},"originServerId":"i","sentAtUs":5,"seqs":{"client:b":7,"client:c":0}})");
  rows.emplace_back(R"({ "data" : {"type":"offer","sdp":"x"} , "senderId" : "c1", "other": 1 })");
  return rows;
}

TEST(CommonShapesTest, EnvelopesOfTheCommonShapesAreReadWithoutTheDom) {
  for (const std::string& row : CommonEnvelopes()) {
    EXPECT_TRUE(EnvelopeFastDecides(row)) << row;
    ExpectEnvelopeAsDom(row);
  }
  const auto e = parse_bus_envelope(CommonEnvelopes().back());
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->data, R"({"type":"offer","sdp":"x"})");
}

TEST(CommonShapesTest, UncommonEnvelopesAreLeftToTheDom) {
  const char* rows[] = {
      // data that re-serialization would change, or that holds more than scalars
      R"({"senderId":"c","data":{ "type":"offer","sdp":"x"}})",
      R"({"senderId":"c","data":{"type":"offer","sdp":"a\/b"}})",
      R"({"senderId":"c","data":{"type":"offer","sdp":"x","sdp":"y"}})",
      R"({"senderId":"c","data":{"type":"control","action":"a","payload":{"x":1}}})",
      R"({"senderId":"c","data":{"n":1.5}})",
      // ids that would need unescaping, numbers the DOM reads differently
      R"({"senderId":"c\"1","data":{}})",
      R"({"senderId":"c","data":{},"originServerId":"i\\1"})",
      R"({"senderId":"c","data":{},"sentAtUs":-5})",
      R"({"senderId":"c","data":{},"sentAtUs":9223372036854775807})",
      R"({"senderId":"c","data":{},"seqs":{"a":1,"a":0}})",
      R"({"senderId":"c","data":{},"seqs":{"a":"1"}})",
      R"({"senderId":"c","senderId":"d","data":{}})",
      // not envelopes
      R"({"senderId":"c"})",
      R"({"data":{}})",
      R"({"senderId":1,"data":{}})",
      R"({"senderId":"c","data":[]})",
      R"({"senderId":"c","data":{}} x)",
  };
  for (const char* row : rows) {
    EXPECT_FALSE(EnvelopeFastDecides(row)) << row;
    ExpectEnvelopeAsDom(row);
  }
}

TEST(CommonShapesTest, MutatedEnvelopesDecideAsTheDom) {
  std::mt19937 rng(1201);
  const std::vector<std::string> bases = CommonEnvelopes();
  int decided = 0;
  constexpr int kRounds = 40000;
  for (int i = 0; i < kRounds; ++i) {
    const std::string input = Mutate(bases[rng() % bases.size()], rng);
    decided += EnvelopeFastDecides(input) ? 1 : 0;
    ExpectEnvelopeAsDom(input);
    if (HasFailure()) return;
  }
  EXPECT_GT(decided, kRounds / 10);
}

}  // namespace
}  // namespace sigsrv
