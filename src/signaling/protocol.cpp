// Message validation: the seed server's zod schemas, reproduced key by key.
#include "signaling/protocol.hpp"

#include <algorithm>

#include <boost/json.hpp>
#include <charconv>
#include <cmath>

#include "signaling/json_string.hpp"

namespace sigsrv {
namespace json = boost::json;
namespace {

bool non_empty_string(const json::value* v) {
  return v && v->is_string() && !v->get_string().empty();
}

// sdpMLineIndex: an integer >= 0 (JS numbers: 1.0 counts) or null.
bool valid_mline_index(const json::value& v) {
  if (v.is_null()) return true;
  if (v.is_int64()) return v.get_int64() >= 0;
  if (v.is_uint64()) return v.get_uint64() <= (1ULL << 53);
  if (v.is_double()) {
    const double d = v.get_double();
    return d >= 0 && d <= 9007199254740991.0 && std::floor(d) == d;
  }
  return false;
}

// Numbers as JavaScript's JSON.stringify writes them (the Node server re-serialized every
// message): shortest round-trip digits, fixed notation for 1e-6 <= |x| < 1e21, else "1.5e-7".
void append_number(std::string& out, double d) {
  if (!std::isfinite(d)) {
    out += "null";
    return;
  }
  if (d == 0) {
    out += '0';  // also -0, as JavaScript prints it
    return;
  }
  char buf[400];
  const double a = std::fabs(d);
  const auto fmt =
      (a >= 1e-6 && a < 1e21) ? std::chars_format::fixed : std::chars_format::scientific;
  const auto res = std::to_chars(buf, buf + sizeof(buf), d, fmt);
  std::string_view text(buf, static_cast<std::size_t>(res.ptr - buf));
  const auto e = text.find('e');
  if (e == std::string_view::npos) {
    out += text;
    return;
  }
  // "1.5e-07" -> "1.5e-7"
  out += text.substr(0, e + 2);
  std::string_view exp = text.substr(e + 2);
  while (exp.size() > 1 && exp.front() == '0') exp.remove_prefix(1);
  out += exp;
}

void append_json(std::string& out, const json::value& v) {
  switch (v.kind()) {
    case json::kind::double_:
      append_number(out, v.get_double());
      return;
    case json::kind::array: {
      out += '[';
      bool first = true;
      for (const auto& item : v.get_array()) {
        if (!first) out += ',';
        first = false;
        append_json(out, item);
      }
      out += ']';
      return;
    }
    case json::kind::object: {
      out += '{';
      bool first = true;
      for (const auto& kv : v.get_object()) {
        if (!first) out += ',';
        first = false;
        append_json_string(out, kv.key());
        out += ':';
        append_json(out, kv.value());
      }
      out += '}';
      return;
    }
    case json::kind::string:
      append_json_string(out, v.get_string());
      return;
    default:
      out += json::serialize(v);  // integers, booleans, null
  }
}

void append_key(std::string& out, std::string_view key, const json::value& v) {
  out += ",\"";
  out += key;
  out += "\":";
  append_json(out, v);
}

}  // namespace

ParsedMessage parse_client_message(std::string_view input) {
  ParsedMessage result;
  // Parse into a stack-backed arena: no heap traffic for typical signaling messages.
  unsigned char arena[4096];
  json::monotonic_resource mr(arena, sizeof(arena));
  json::error_code ec;
  json::value root = json::parse(input, ec, &mr);
  if (ec || !root.is_object()) return result;
  result.kind = ParsedMessage::Kind::kSchemaError;

  const json::object& obj = root.get_object();
  const json::value* type = obj.if_contains("type");
  if (!type || !type->is_string()) return result;
  const json::string& t = type->get_string();

  std::string& out = result.text;
  // The relayed text is the input less unknown keys and whitespace, so this is one allocation
  // for typical messages (numbers and escapes may still grow it).
  out.reserve(input.size() + 32);
  if (t == "offer" || t == "answer") {
    const json::value* sdp = obj.if_contains("sdp");
    if (!non_empty_string(sdp)) return result;
    result.type = t == "offer" ? MessageType::kOffer : MessageType::kAnswer;
    out = t == "offer" ? R"({"type":"offer")" : R"({"type":"answer")";
    append_key(out, "sdp", *sdp);
  } else if (t == "candidate") {
    const json::value* cand = obj.if_contains("candidate");
    if (!non_empty_string(cand)) return result;
    const json::value* mid = obj.if_contains("sdpMid");
    if (mid && !(mid->is_string() || mid->is_null())) return result;
    const json::value* idx = obj.if_contains("sdpMLineIndex");
    if (idx && !valid_mline_index(*idx)) return result;
    result.type = MessageType::kCandidate;
    out = R"({"type":"candidate")";
    append_key(out, "candidate", *cand);
    if (mid) append_key(out, "sdpMid", *mid);
    if (idx) append_key(out, "sdpMLineIndex", *idx);
  } else if (t == "control") {
    const json::value* action = obj.if_contains("action");
    if (!non_empty_string(action)) return result;
    result.type = MessageType::kControl;
    out = R"({"type":"control")";
    append_key(out, "action", *action);
    if (const json::value* payload = obj.if_contains("payload"))
      append_key(out, "payload", *payload);
  } else {
    return result;
  }
  out += '}';
  result.kind = ParsedMessage::Kind::kValid;
  return result;
}

const SharedText& schema_error_message() {
  static const SharedText kMsg =
      std::make_shared<const std::string>(R"({"type":"control","action":"schema-error"})");
  return kMsg;
}

const SharedText& peer_disconnected_message() {
  static const SharedText kMsg =
      std::make_shared<const std::string>(R"({"type":"peer-disconnected"})");
  return kMsg;
}

std::string with_ice_servers(std::string object_json, std::string_view ice_servers) {
  if (ice_servers.empty()) return object_json;
  object_json.pop_back();  // '}'
  if (object_json.size() > 1) object_json += ',';
  object_json += R"("iceServers":)";
  object_json += ice_servers;
  object_json += '}';
  return object_json;
}

std::string welcome_message(std::string_view client_id, std::string_view room_id, std::size_t peers,
                            std::string_view ice_servers) {
  json::object payload;
  payload["clientId"] = client_id;
  payload["roomId"] = room_id;
  payload["peers"] = peers;
  return R"({"type":"control","action":"welcome","payload":)" +
         with_ice_servers(json::serialize(payload), ice_servers) + "}";
}

namespace {
std::string quoted(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  append_json_string(out, s);
  return out;
}

// What own_relay_marker returns, appended: the relay envelope writes it in place.
void append_own_relay_marker(std::string& out, std::string_view origin_server_id) {
  out += R"(,"originServerId":)";
  append_json_string(out, origin_server_id);
  out += R"(,"sentAtUs":)";
}
}  // namespace

std::optional<BusEnvelope> parse_bus_envelope(std::string_view payload) {
  json::error_code ec;
  json::value root = json::parse(payload, ec);
  if (ec || !root.is_object()) return std::nullopt;
  const json::object& o = root.get_object();
  const json::value* sender = o.if_contains("senderId");
  const json::value* data = o.if_contains("data");
  if (!sender || !sender->is_string() || !data || !data->is_object()) return std::nullopt;
  BusEnvelope e;
  e.sender_id = std::string(sender->get_string());
  append_json(e.data, *data);
  if (const json::value* v = o.if_contains("originServerId"); v && v->is_string()) {
    e.origin_server_id = std::string(v->get_string());
  }
  if (const json::value* v = o.if_contains("sourceInstance"); v && v->is_string()) {
    e.source_instance = std::string(v->get_string());
  }
  if (const json::value* v = o.if_contains("sentAtUs"); v && v->is_int64()) {
    e.sent_at_us = v->get_int64();
  }
  if (const json::value* v = o.if_contains("seqs"); v && v->is_object()) {
    for (const auto& kv : v->get_object()) {
      if (kv.value().is_int64() && kv.value().get_int64() > 0) {
        e.seqs.emplace_back(std::string(kv.key()), static_cast<uint64_t>(kv.value().get_int64()));
      }
    }
  }
  return e;
}

std::string client_id_from(uint64_t a, uint64_t b) {
  // xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx: 32 hex digits, of which the 13th is the version (4)
  // and the 17th carries the variant (8-b); the other 122 bits are a's and b's.
  static constexpr char kHex[] = "0123456789abcdef";
  const uint64_t hi = (a & ~0xf000ULL) | 0x4000ULL;
  const uint64_t lo = (b & ~(0xcULL << 60)) | (0x8ULL << 60);
  std::string out("client:");
  out.resize(out.size() + 36);
  char* p = out.data() + 7;
  const auto put = [&p](uint64_t v, int digits) {
    for (int i = digits - 1; i >= 0; --i) *p++ = kHex[(v >> (4 * i)) & 0xf];
  };
  put(hi >> 32, 8);
  *p++ = '-';
  put(hi >> 16, 4);
  *p++ = '-';
  put(hi, 4);
  *p++ = '-';
  put(lo >> 48, 4);
  *p++ = '-';
  put(lo, 12);
  return out;
}

std::string ipv4_text(const std::array<unsigned char, 4>& bytes) {
  char buf[16];
  char* p = buf;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (i != 0) *p++ = '.';
    p = std::to_chars(p, buf + sizeof buf, static_cast<unsigned>(bytes[i])).ptr;
  }
  return std::string(buf, p);
}

std::string relay_envelope(std::string_view sender_id, std::string_view data_json,
                           std::string_view origin_server_id, int64_t sent_at_us) {
  // Once per relayed message: written straight into one buffer, sized for ids that need no
  // escaping (as they are in practice), with no temporary string.
  std::string out;
  out.reserve(data_json.size() + sender_id.size() + origin_server_id.size() + 80);
  out += R"({"senderId":)";
  append_json_string(out, sender_id);
  out += R"(,"data":)";
  out += data_json;
  append_own_relay_marker(out, origin_server_id);  // what is_own_relay reads back
  char digits[24];
  out.append(digits, std::to_chars(digits, digits + sizeof digits, sent_at_us).ptr);
  out += '}';
  return out;
}

std::string own_relay_marker(std::string_view origin_server_id) {
  std::string out;
  append_own_relay_marker(out, origin_server_id);
  return out;
}

bool is_own_relay(std::string_view payload, std::string_view own_marker) {
  // From the end: '}', the digits, then the marker right before them. (string_view::rfind would
  // compare the marker at every offset of a payload that is not ours: 4% of a Redis-bus relay.)
  if (payload.size() < own_marker.size() + 2 || payload.back() != '}') return false;
  std::size_t start = payload.size() - 1;
  while (start > 0 && payload[start - 1] >= '0' && payload[start - 1] <= '9') --start;
  if (start == payload.size() - 1 || start < own_marker.size()) return false;
  return payload.substr(start - own_marker.size(), own_marker.size()) == own_marker;
}

std::string departure_envelope(std::string_view sender_id, std::string_view source_instance,
                               int64_t sent_at_us) {
  return R"({"senderId":)" + quoted(sender_id) + R"(,"data":{"type":"peer-disconnected"})" +
         R"(,"sourceInstance":)" + quoted(source_instance) + R"(,"sentAtUs":)" +
         std::to_string(sent_at_us) + "}";
}

std::string presence_message(std::string_view client_id, std::string_view origin_server_id,
                             PresenceEvent event, bool resumable) {
  std::string out =
      R"({"clientId":)" + quoted(client_id) + R"(,"originServerId":)" + quoted(origin_server_id);
  if (resumable) out += R"(,"resumable":true)";
  switch (event) {
    case PresenceEvent::kJoined:
      break;  // no "event": what every instance already reads as a join
    case PresenceEvent::kSuspended:
      out += R"(,"event":"suspended")";
      break;
    case PresenceEvent::kResumed:
      out += R"(,"event":"resumed")";
      break;
    case PresenceEvent::kProbe:
      out += R"(,"event":"probe")";
      break;
    case PresenceEvent::kTakeover:
      out += R"(,"event":"takeover")";
      break;
    case PresenceEvent::kNumbered:
      break;  // written by the Redis script that numbers the notice (kSessionAppend)
  }
  return out + "}";
}

std::optional<PresenceNotice> parse_presence(std::string_view payload) {
  json::error_code ec;
  json::value root = json::parse(payload, ec);
  if (ec || !root.is_object()) return std::nullopt;
  const json::value* client = root.get_object().if_contains("clientId");
  const json::value* origin = root.get_object().if_contains("originServerId");
  if (!client || !client->is_string()) return std::nullopt;
  PresenceNotice p;
  p.client_id = std::string(client->get_string());
  if (origin && origin->is_string()) p.origin_server_id = std::string(origin->get_string());
  if (const json::value* r = root.get_object().if_contains("resumable")) {
    p.resumable = r->is_bool() && r->get_bool();
  }
  if (const json::value* event = root.get_object().if_contains("event")) {
    if (!event->is_string()) return std::nullopt;
    const json::string& e = event->get_string();
    if (e == "suspended") {
      p.event = PresenceEvent::kSuspended;
    } else if (e == "resumed") {
      p.event = PresenceEvent::kResumed;
    } else if (e == "probe") {
      p.event = PresenceEvent::kProbe;
    } else if (e == "takeover") {
      p.event = PresenceEvent::kTakeover;
    } else if (e == "numbered") {
      const json::value* seq = root.get_object().if_contains("seq");
      const json::value* data = root.get_object().if_contains("data");
      if (!seq || !seq->is_int64() || seq->get_int64() <= 0 || !data || !data->is_object()) {
        return std::nullopt;
      }
      p.event = PresenceEvent::kNumbered;
      p.seq = static_cast<uint64_t>(seq->get_int64());
      append_json(p.data, *data);
    } else {
      return std::nullopt;  // from a newer instance: not ours to guess at
    }
  }
  return p;
}

std::string peer_joined_message(std::string_view client_id) {
  json::object payload;
  payload["clientId"] = client_id;
  return R"({"type":"control","action":"peer-joined","payload":)" + json::serialize(payload) + "}";
}

}  // namespace sigsrv
