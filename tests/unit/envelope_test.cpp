// Tests the Redis pub/sub envelope (PROTOCOL.md section 4): building, parsing, Node interop.
#include "signaling/protocol.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace sigsrv {
namespace {

namespace json = boost::json;

// The keys of a JSON object, as a set.
std::set<std::string> KeysOf(const json::object& o) {
  std::set<std::string> keys;
  for (const auto& kv : o) keys.emplace(kv.key());
  return keys;
}

// Parses `text` as a JSON object; records a failure when it is not one.
json::object ParseObject(std::string_view text) {
  json::error_code ec;
  json::value v = json::parse(text, ec);
  EXPECT_FALSE(ec) << text << ": " << ec.message();
  EXPECT_TRUE(v.is_object()) << text;
  return v.is_object() ? v.get_object() : json::object();
}

constexpr std::string_view kOffer = R"({"type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n"})";

// --- relay_envelope ---

TEST(EnvelopeTest, RelayHasExactlyTheDocumentedFields) {
  const std::string text = relay_envelope("client-1", kOffer, "instance-a", 1700000000123456);
  const json::object o = ParseObject(text);
  EXPECT_EQ(KeysOf(o), (std::set<std::string>{"senderId", "data", "originServerId", "sentAtUs"}));
  EXPECT_EQ(o.size(), 4u);  // no duplicate keys either
  ASSERT_TRUE(o.contains("senderId"));
  EXPECT_EQ(o.at("senderId"), json::value("client-1"));
  ASSERT_TRUE(o.contains("data"));
  EXPECT_EQ(o.at("data"), json::parse(kOffer));
  ASSERT_TRUE(o.contains("originServerId"));
  EXPECT_EQ(o.at("originServerId"), json::value("instance-a"));
  ASSERT_TRUE(o.contains("sentAtUs"));
  ASSERT_TRUE(o.at("sentAtUs").is_int64());
  EXPECT_EQ(o.at("sentAtUs").get_int64(), 1700000000123456);
}

TEST(EnvelopeTest, RelayExactText) {
  EXPECT_EQ(relay_envelope("c1", R"({"type":"answer","sdp":"x"})", "i1", 42),
            R"({"senderId":"c1","data":{"type":"answer","sdp":"x"},"originServerId":"i1",)"
            R"("sentAtUs":42})");
}

TEST(EnvelopeTest, RelayEmbedsDataVerbatim) {
  // Forms a re-serialization would change: 2.0, \u0041, \/ and the spacing.
  const std::string_view data =
      R"({"type":"control", "action":"a\u0041\/","payload":{"n":2.0,"e":1E2,"l":[ ]}})";
  const std::string text = relay_envelope("c1", data, "i1", 7);
  EXPECT_NE(text.find(std::string(R"("data":)") + std::string(data) + ","), std::string::npos)
      << text;
  const json::object o = ParseObject(text);
  ASSERT_TRUE(o.contains("data"));
  EXPECT_EQ(o.at("data"), json::parse(data));
}

TEST(EnvelopeTest, RelaySentAtUsKeepsItsValue) {
  for (const int64_t t :
       {int64_t{0}, int64_t{1}, int64_t{1700000000123456}, int64_t{9007199254740993}, INT64_MAX}) {
    const json::object o = ParseObject(relay_envelope("c", "{}", "i", t));
    ASSERT_TRUE(o.contains("sentAtUs")) << t;
    ASSERT_TRUE(o.at("sentAtUs").is_int64()) << t;
    EXPECT_EQ(o.at("sentAtUs").get_int64(), t);
  }
}

TEST(EnvelopeTest, IdsNeedingEscapingRoundTrip) {
  const std::vector<std::string> ids = {"a\"b",
                                        "back\\slash",
                                        "line\nbreak",
                                        "tab\tcr\r",
                                        std::string("nul\0in", 6),
                                        "\x01\x1f",
                                        "h\xc3\xa9llo \xf0\x9f\x98\x80",
                                        "</script>",
                                        "\"}",
                                        ""};
  for (const auto& id : ids) {
    SCOPED_TRACE(id);
    const std::string origin = "inst-" + id;
    const std::string text = relay_envelope(id, kOffer, origin, 5);
    const json::object o = ParseObject(text);
    ASSERT_TRUE(o.contains("senderId"));
    ASSERT_TRUE(o.at("senderId").is_string());
    EXPECT_EQ(std::string_view(o.at("senderId").get_string()), id);
    ASSERT_TRUE(o.contains("originServerId"));
    ASSERT_TRUE(o.at("originServerId").is_string());
    EXPECT_EQ(std::string_view(o.at("originServerId").get_string()), origin);

    const auto e = parse_bus_envelope(text);
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->sender_id, id);
    EXPECT_EQ(e->origin_server_id, origin);
    EXPECT_EQ(e->data, kOffer);
  }
}

TEST(EnvelopeTest, RelayParsesBack) {
  const auto e = parse_bus_envelope(relay_envelope("client-1", kOffer, "instance-a", 123));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->sender_id, "client-1");
  EXPECT_EQ(e->data, kOffer);
  EXPECT_EQ(e->origin_server_id, "instance-a");
  EXPECT_EQ(e->source_instance, "");
  ASSERT_TRUE(e->sent_at_us.has_value());
  EXPECT_EQ(*e->sent_at_us, 123);
}

// --- departure_envelope ---

TEST(EnvelopeTest, OwnRelaysAreRecognisedByTheirTail) {
  const std::string mine = own_relay_marker("srv-a");
  EXPECT_TRUE(
      is_own_relay(relay_envelope("c1", R"({"type":"offer","sdp":"x"})", "srv-a", 17), mine));
  // Another instance's relay, a Node relay (different field order), a departure, presence.
  EXPECT_FALSE(
      is_own_relay(relay_envelope("c1", R"({"type":"offer","sdp":"x"})", "srv-b", 17), mine));
  EXPECT_FALSE(is_own_relay(
      R"({"senderId":"c1","data":{"type":"offer","sdp":"x"},"originServerId":"srv-a"})", mine));
  EXPECT_FALSE(is_own_relay(departure_envelope("c1", "srv-a", 17), mine));
  EXPECT_FALSE(is_own_relay(presence_message("c1", "srv-a"), mine));
  // A prefix of our id is not our id.
  EXPECT_FALSE(is_own_relay(relay_envelope("c1", "{}", "srv-a", 17), own_relay_marker("srv-")));
  // The tail without its digits, or with something after them, is not ours either.
  EXPECT_FALSE(is_own_relay(R"({"senderId":"c1","data":{})" + mine + "}", mine));
  EXPECT_FALSE(is_own_relay(R"({"senderId":"c1","data":{})" + mine + "17 }", mine));
  EXPECT_FALSE(is_own_relay(mine.substr(1) + "17}", mine));
}

TEST(EnvelopeTest, ClientTextCannotImitateOurTail) {
  // A candidate whose text spells our tail arrives escaped inside `data`, so the real tail of
  // another instance's envelope decides.
  const std::string mine = own_relay_marker("srv-a");
  const std::string data =
      R"({"type":"candidate","candidate":"x","originServerId":"srv-a","sentAtUs":1}"})";
  EXPECT_FALSE(is_own_relay(relay_envelope("c1", data, "srv-b", 5), mine));
  EXPECT_FALSE(is_own_relay(R"({"senderId":"c1","data":)" + data + "}", mine));
  EXPECT_TRUE(is_own_relay(relay_envelope("c1", data, "srv-a", 5), mine));
}

TEST(EnvelopeTest, DepartureFields) {
  const std::string text = departure_envelope("a\"b", "instance-b", 1700000000000001);
  const json::object o = ParseObject(text);
  EXPECT_EQ(KeysOf(o), (std::set<std::string>{"senderId", "data", "sourceInstance", "sentAtUs"}));
  EXPECT_EQ(o.size(), 4u);
  EXPECT_FALSE(o.contains("originServerId"));
  ASSERT_TRUE(o.contains("senderId"));
  EXPECT_EQ(o.at("senderId"), json::value("a\"b"));
  ASSERT_TRUE(o.contains("data"));
  EXPECT_EQ(o.at("data"), json::parse(R"({"type":"peer-disconnected"})"));
  ASSERT_TRUE(o.contains("sourceInstance"));
  EXPECT_EQ(o.at("sourceInstance"), json::value("instance-b"));
  ASSERT_TRUE(o.contains("sentAtUs"));
  ASSERT_TRUE(o.at("sentAtUs").is_int64());
  EXPECT_EQ(o.at("sentAtUs").get_int64(), 1700000000000001);
}

TEST(EnvelopeTest, DepartureParsesBack) {
  const auto e = parse_bus_envelope(departure_envelope("c\\9", "inst\"b", 77));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->sender_id, "c\\9");
  EXPECT_EQ(e->data, *peer_disconnected_message());
  EXPECT_EQ(e->data, R"({"type":"peer-disconnected"})");
  EXPECT_EQ(e->origin_server_id, "");
  EXPECT_EQ(e->source_instance, "inst\"b");
  ASSERT_TRUE(e->sent_at_us.has_value());
  EXPECT_EQ(*e->sent_at_us, 77);
}

// --- parse_bus_envelope: messages from the Node instances ---

TEST(EnvelopeTest, AcceptsNodeRelay) {
  const auto e = parse_bus_envelope(
      R"({"senderId":"c1","data":{"type":"candidate",)"
      R"("candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdpMid":"0","sdpMLineIndex":0},)"
      R"("originServerId":"node-1"})");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->sender_id, "c1");
  EXPECT_EQ(e->data, R"({"type":"candidate","candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host",)"
                     R"("sdpMid":"0","sdpMLineIndex":0})");
  EXPECT_EQ(e->origin_server_id, "node-1");
  EXPECT_EQ(e->source_instance, "");
  EXPECT_FALSE(e->sent_at_us.has_value());
}

TEST(EnvelopeTest, AcceptsNodeDeparture) {
  const auto e = parse_bus_envelope(R"({"senderId":"c1","data":{"type":"peer-disconnected"}})");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->sender_id, "c1");
  EXPECT_EQ(e->data, R"({"type":"peer-disconnected"})");
  EXPECT_EQ(e->origin_server_id, "");
  EXPECT_EQ(e->source_instance, "");
  EXPECT_FALSE(e->sent_at_us.has_value());
}

TEST(EnvelopeTest, FieldOrderDoesNotMatter) {
  const auto e = parse_bus_envelope(
      R"({"originServerId":"n","sentAtUs":9,"data":{"type":"offer","sdp":"s"},"senderId":"c"})");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->sender_id, "c");
  EXPECT_EQ(e->data, R"({"type":"offer","sdp":"s"})");
  EXPECT_EQ(e->origin_server_id, "n");
  ASSERT_TRUE(e->sent_at_us.has_value());
  EXPECT_EQ(*e->sent_at_us, 9);
}

TEST(EnvelopeTest, UnknownFieldsAreIgnored) {
  const auto e = parse_bus_envelope(
      R"({"senderId":"c","data":{"type":"offer","sdp":"s"},"originServerId":"n","v":2,"x":{}})");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->sender_id, "c");
  EXPECT_EQ(e->data, R"({"type":"offer","sdp":"s"})");
  EXPECT_EQ(e->origin_server_id, "n");
}

TEST(EnvelopeTest, NonIntegerSentAtUsIsIgnored) {
  for (const std::string_view sent : {R"("5")", "1.5", "null", "{}"}) {
    const std::string text =
        std::string(R"({"senderId":"c","data":{},"sentAtUs":)") + std::string(sent) + "}";
    const auto e = parse_bus_envelope(text);
    ASSERT_TRUE(e.has_value()) << text;
    EXPECT_FALSE(e->sent_at_us.has_value()) << text;
    EXPECT_EQ(e->data, "{}");
  }
}

TEST(EnvelopeTest, DataIsReSerializedCompactlyInKeyOrder) {
  const auto e = parse_bus_envelope(
      "{ \"senderId\" : \"c\" ,\n \"data\" : { \"type\" : \"control\" , \"action\" : \"x\" ,"
      " \"payload\" : { \"z\" : [ 1 , { } , [ ] , true , false , null ] , \"a\" : \"b\" } } }");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->data,
            R"({"type":"control","action":"x","payload":{"z":[1,{},[],true,false,null],"a":"b"}})");
}

TEST(EnvelopeTest, DataNumbersAreWrittenAsJsonStringifyWould) {
  const auto e = parse_bus_envelope(
      R"({"senderId":"c","data":{"n":[2.0,-1.5,0.1,100,1E2,-0,-0.0,1e21,1.5e-7,1e-6,1e-7,)"
      R"(123e18,0.000001234,-2.50,5e-324,1.7976931348623157e308,12345.678,1e300]}})");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->data, R"({"n":[2,-1.5,0.1,100,100,0,0,1e+21,1.5e-7,0.000001,1e-7,)"
                     R"(123000000000000000000,0.000001234,-2.5,5e-324,1.7976931348623157e+308,)"
                     R"(12345.678,1e+300]})");
}

TEST(EnvelopeTest, DataStringsAreWrittenAsJsonStringifyWould) {
  const auto e = parse_bus_envelope(
      R"({"senderId":"c","data":{"s":"\u0041\/\u00e9\"\\\b\f\n\r\t\u001F\u0000"}})");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->data, "{\"s\":\"A/\xc3\xa9\\\"\\\\\\b\\f\\n\\r\\t\\u001f\\u0000\"}");
}

TEST(EnvelopeTest, EmptyDataObjectIsAccepted) {
  const auto e = parse_bus_envelope(R"({"senderId":"","data":{}})");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->sender_id, "");
  EXPECT_EQ(e->data, "{}");
}

// --- parse_bus_envelope: rejections ---

TEST(EnvelopeTest, RejectsNonJson) {
  for (const std::string_view text : {"", "not json", "{",
                                      R"({"senderId":"c","data":{}})"
                                      " trailing",
                                      R"({"senderId":"c","data":{},})", R"({senderId:"c",data:{}})",
                                      R"({'senderId':'c','data':{}})"}) {
    EXPECT_FALSE(parse_bus_envelope(text).has_value()) << text;
  }
}

TEST(EnvelopeTest, RejectsNonObject) {
  for (const std::string_view text :
       {"[]", R"([{"senderId":"c","data":{}}])", R"("senderId")", "42", "true", "null"}) {
    EXPECT_FALSE(parse_bus_envelope(text).has_value()) << text;
  }
}

TEST(EnvelopeTest, RejectsMissingSenderId) {
  EXPECT_FALSE(parse_bus_envelope(R"({"data":{"type":"peer-disconnected"}})").has_value());
  EXPECT_FALSE(parse_bus_envelope(R"({"sender":"c","data":{},"originServerId":"n"})").has_value());
}

TEST(EnvelopeTest, RejectsNonStringSenderId) {
  for (const std::string_view sender : {"42", "null", "true", "{}", R"(["c"])"}) {
    const std::string text =
        std::string(R"({"senderId":)") + std::string(sender) + R"(,"data":{}})";
    EXPECT_FALSE(parse_bus_envelope(text).has_value()) << text;
  }
}

TEST(EnvelopeTest, RejectsMissingData) {
  EXPECT_FALSE(parse_bus_envelope(R"({"senderId":"c"})").has_value());
  EXPECT_FALSE(parse_bus_envelope(R"({"senderId":"c","originServerId":"n"})").has_value());
}

TEST(EnvelopeTest, RejectsDataThatIsNotAnObject) {
  for (const std::string_view data :
       {R"("{\"type\":\"offer\"}")", R"([{"type":"offer"}])", "null", "42", "false", "[]"}) {
    const std::string text = std::string(R"({"senderId":"c","data":)") + std::string(data) + "}";
    EXPECT_FALSE(parse_bus_envelope(text).has_value()) << text;
  }
}

}  // namespace
}  // namespace sigsrv
