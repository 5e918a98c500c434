// Message validation: the seed server's zod schemas, reproduced key by key.
#include "signaling/protocol.hpp"

#include <algorithm>

#include <array>
#include <boost/json.hpp>
#include <charconv>
#include <cmath>
#include <cstring>
#include <utility>

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

// `,"key":` and the value's JSON text, written as is.
void append_raw_key(std::string& out, std::string_view key, std::string_view json_text) {
  out += ",\"";
  out += key;
  out += "\":";
  out += json_text;
}

void append_key(std::string& out, std::string_view key, const json::value& v) {
  append_raw_key(out, key, {});
  append_json(out, v);
}

// --- The common shapes, read without a DOM ---
//
// Nearly every relayed message is a candidate, offer or answer (or a control message with a
// scalar payload or none) whose values are ASCII strings, small integers or null, and the relay
// envelope around it is as plain. A DOM parse, the schema checks on it and the re-serialization
// cost ~5,200 instructions of a 12,700-instruction relay. FlatScan reads such a flat object in one
// pass, and what it reads is copied as written: in these shapes the canonical text is the input's
// own tokens. It either decides exactly as the DOM path would or gives up, and the DOM path
// decides: it never rejects anything itself. Given up on: escapes other than \" \\ \b \f \n \r \t
// (\/ and \u change under re-serialization), bytes outside ASCII, numbers other than plain
// non-negative integers, nested values, duplicate keys (the last one wins in the DOM), and anything
// malformed.

class FlatScan {
 public:
  explicit FlatScan(std::string_view in) : p_(in.data()), end_(in.data() + in.size()) {}

  const char* pos() const { return p_; }
  std::size_t spaces() const { return spaces_; }
  bool at_end() {
    ws();
    return p_ == end_;
  }
  // Whitespace, then `c`.
  bool eat(char c) {
    ws();
    if (p_ == end_ || *p_ != c) return false;
    ++p_;
    return true;
  }
  bool next_is(char c) {
    ws();
    return p_ != end_ && *p_ == c;
  }

  // A string literal at the current position; `text` is the literal with its quotes.
  bool string(std::string_view& text, bool& escaped) {
    ws();
    if (p_ == end_ || *p_ != '"') return false;
    const char* start = p_++;
    escaped = false;
    for (;;) {
      p_ += plain_prefix<true>({p_, static_cast<std::size_t>(end_ - p_)});
      if (p_ == end_) return false;
      if (*p_ == '"') break;
      if (*p_ != '\\' || end_ - p_ < 2) return false;
      switch (p_[1]) {
        case '"':
        case '\\':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
          break;
        default:
          return false;
      }
      escaped = true;
      p_ += 2;
    }
    ++p_;
    text = {start, static_cast<std::size_t>(p_ - start)};
    return true;
  }
  bool string(std::string_view& text) {
    bool escaped = false;
    return string(text, escaped);
  }

  // An integer of 1 to `max_digits` digits, without sign or leading zero, so that the DOM reads
  // it as an int64 and writes it back as the same digits.
  bool integer(std::string_view& text, std::size_t max_digits) {
    ws();
    const char* start = p_;
    while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    const auto n = static_cast<std::size_t>(p_ - start);
    if (n == 0 || n > max_digits || (n > 1 && *start == '0')) return false;
    if (p_ != end_ && (*p_ == '.' || *p_ == 'e' || *p_ == 'E')) return false;
    text = {start, n};
    return true;
  }

  bool null(std::string_view& text) {
    ws();
    const char* start = p_;
    if (!word("null")) return false;
    text = {start, 4};
    return true;
  }

  // A value whose text is kept as written: a string, an integer, true, false or null.
  bool scalar(std::string_view& text) {
    ws();
    if (p_ == end_) return false;
    const char* start = p_;
    bool ok = false;
    switch (*p_) {
      case '"':
        return string(text);
      case 't':
        ok = word("true");
        break;
      case 'f':
        ok = word("false");
        break;
      case 'n':
        ok = word("null");
        break;
      default:
        return integer(text, kMaxPlainDigits);
    }
    text = {start, static_cast<std::size_t>(p_ - start)};
    return ok;
  }

  static constexpr std::size_t kMaxPlainDigits = 15;  // below 2^53: the same value everywhere

 private:
  void ws() {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) {
      ++p_;
      ++spaces_;
    }
  }
  bool word(std::string_view w) {
    ws();
    if (static_cast<std::size_t>(end_ - p_) < w.size() ||
        std::memcmp(p_, w.data(), w.size()) != 0) {
      return false;
    }
    p_ += w.size();
    return true;
  }

  const char* p_;
  const char* end_;
  std::size_t spaces_ = 0;
};

// One object: `member(key, scan)` reads each member's value and returns false to give up.
// Keys with escapes are given up on (a schema key never has one).
template <typename Member>
bool scan_object(FlatScan& s, Member&& member) {
  if (!s.eat('{')) return false;
  if (s.eat('}')) return true;
  do {
    std::string_view key;
    bool escaped = false;
    if (!s.string(key, escaped) || escaped || !s.eat(':')) return false;
    key = key.substr(1, key.size() - 2);
    if (!member(key, s)) return false;
  } while (s.eat(','));
  return s.eat('}');
}

// Records a schema key's value text; a second one is the DOM path's to resolve.
bool keep(std::string_view& slot, std::string_view text) {
  if (!slot.empty()) return false;
  slot = text;
  return true;
}

// A flat object written as append_json writes it: no whitespace, no duplicate key, every value
// a scalar FlatScan keeps. `text` is the object's text.
bool canonical_flat_object(FlatScan& s, std::string_view& text) {
  if (!s.next_is('{')) return false;
  const char* start = s.pos();
  const std::size_t spaces = s.spaces();
  std::array<std::string_view, 8> keys;
  std::size_t n = 0;
  const bool ok = scan_object(s, [&](std::string_view key, FlatScan& scan) {
    if (n == keys.size() || std::find(keys.begin(), keys.begin() + n, key) != keys.begin() + n) {
      return false;
    }
    keys[n++] = key;
    std::string_view value;
    return scan.scalar(value);
  });
  if (!ok || s.spaces() != spaces) return false;
  text = {start, static_cast<std::size_t>(s.pos() - start)};
  return true;
}

}  // namespace

namespace detail {

bool parse_common_message(std::string_view input, ParsedMessage& result) {
  FlatScan s(input);
  std::string_view type, sdp, candidate, mid, index, action, payload;  // value texts; empty: absent
  const bool read = scan_object(s, [&](std::string_view key, FlatScan& scan) {
    std::string_view text;
    if (key == "type") return scan.string(text) && keep(type, text);
    if (key == "sdp") return scan.string(text) && keep(sdp, text);
    if (key == "candidate") return scan.string(text) && keep(candidate, text);
    if (key == "action") return scan.string(text) && keep(action, text);
    if (key == "payload") return scan.scalar(text) && keep(payload, text);
    if (key == "sdpMid") {
      return (scan.null(text) || scan.string(text)) && keep(mid, text);
    }
    if (key == "sdpMLineIndex") {
      return (scan.null(text) || scan.integer(text, FlatScan::kMaxPlainDigits)) &&
             keep(index, text);
    }
    return scan.scalar(text);
  });
  if (!read || !s.at_end()) return false;

  std::string& out = result.text;
  if (type == R"("offer")" || type == R"("answer")") {
    if (sdp.size() <= 2) return false;  // absent or empty: a schema error
    const bool offer = type == R"("offer")";
    out.reserve(sdp.size() + 26);
    out = offer ? R"({"type":"offer","sdp":)" : R"({"type":"answer","sdp":)";
    out += sdp;
    result.type = offer ? MessageType::kOffer : MessageType::kAnswer;
  } else if (type == R"("candidate")") {
    if (candidate.size() <= 2) return false;
    out.reserve(candidate.size() + mid.size() + index.size() + 64);
    out = R"({"type":"candidate","candidate":)";
    out += candidate;
    if (!mid.empty()) append_raw_key(out, "sdpMid", mid);
    if (!index.empty()) append_raw_key(out, "sdpMLineIndex", index);
    result.type = MessageType::kCandidate;
  } else if (type == R"("control")") {
    // Only with a scalar payload or none: a nested one (an object, say) is the DOM path's.
    if (action.size() <= 2) return false;
    out.reserve(action.size() + payload.size() + 48);
    out = R"({"type":"control","action":)";
    out += action;
    if (!payload.empty()) append_raw_key(out, "payload", payload);
    result.type = MessageType::kControl;
  } else {
    return false;
  }
  out += '}';
  result.kind = ParsedMessage::Kind::kValid;
  return true;
}

ParsedMessage parse_client_message_dom(std::string_view input) {
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

}  // namespace detail

ParsedMessage parse_client_message(std::string_view input) {
  ParsedMessage result;
  if (detail::parse_common_message(input, result)) return result;
  return detail::parse_client_message_dom(input);
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
}  // namespace

namespace detail {

bool parse_common_envelope(std::string_view payload, BusEnvelope& e) {
  FlatScan s(payload);
  std::string_view sender, data, origin, source, sent_at;
  bool seqs_seen = false;
  const auto id = [](FlatScan& scan, std::string_view& slot) {
    std::string_view text;
    bool escaped = false;
    return scan.string(text, escaped) && !escaped && keep(slot, text);
  };
  const bool read = scan_object(s, [&](std::string_view key, FlatScan& scan) {
    std::string_view text;
    if (key == "senderId") return id(scan, sender);
    if (key == "originServerId") return id(scan, origin);
    if (key == "sourceInstance") return id(scan, source);
    if (key == "data") return canonical_flat_object(scan, text) && keep(data, text);
    if (key == "sentAtUs") return scan.integer(text, 18) && keep(sent_at, text);
    if (key == "seqs") {
      // {"clientId":seq,...}: kept when positive, as the DOM path keeps them.
      if (std::exchange(seqs_seen, true)) return false;
      std::array<std::string_view, 16> clients;
      std::size_t n = 0;
      return scan_object(scan, [&](std::string_view client, FlatScan& member) {
        if (n == clients.size() ||
            std::find(clients.begin(), clients.begin() + n, client) != clients.begin() + n) {
          return false;
        }
        clients[n++] = client;
        std::string_view digits;
        if (!member.integer(digits, 18)) return false;
        uint64_t seq = 0;
        std::from_chars(digits.data(), digits.data() + digits.size(), seq);
        if (seq > 0) e.seqs.emplace_back(std::string(client), seq);
        return true;
      });
    }
    return scan.scalar(text);
  });
  if (!read || !s.at_end() || sender.empty() || data.empty()) return false;
  const auto unquoted = [](std::string_view text) { return text.substr(1, text.size() - 2); };
  e.sender_id = unquoted(sender);
  e.data = data;
  if (!origin.empty()) e.origin_server_id = unquoted(origin);
  if (!source.empty()) e.source_instance = unquoted(source);
  if (!sent_at.empty()) {
    int64_t t = 0;
    std::from_chars(sent_at.data(), sent_at.data() + sent_at.size(), t);
    e.sent_at_us = t;
  }
  return true;
}

std::optional<BusEnvelope> parse_bus_envelope_dom(std::string_view payload) {
  // Into a stack-backed arena, as client messages: every field is copied out.
  unsigned char arena[4096];
  json::monotonic_resource mr(arena, sizeof(arena));
  json::error_code ec;
  json::value root = json::parse(payload, ec, &mr);
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

}  // namespace detail

std::optional<BusEnvelope> parse_bus_envelope(std::string_view payload) {
  BusEnvelope e;
  if (detail::parse_common_envelope(payload, e)) return e;
  return detail::parse_bus_envelope_dom(payload);
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
  return relay_envelope_marked(sender_id, data_json, own_relay_marker(origin_server_id),
                               sent_at_us);
}

std::string relay_envelope_marked(std::string_view sender_id, std::string_view data_json,
                                  std::string_view own_marker, int64_t sent_at_us) {
  // Once per relayed message: written straight into one buffer, sized for ids that need no
  // escaping (as they are in practice), with no temporary string.
  std::string out;
  out.reserve(data_json.size() + sender_id.size() + own_marker.size() + 48);
  out += R"({"senderId":)";
  append_json_string(out, sender_id);
  out += R"(,"data":)";
  out += data_json;
  out += own_marker;  // what is_own_relay reads back
  char digits[24];
  out.append(digits, std::to_chars(digits, digits + sizeof digits, sent_at_us).ptr);
  out += '}';
  return out;
}

std::string own_relay_marker(std::string_view origin_server_id) {
  std::string out = R"(,"originServerId":)";
  append_json_string(out, origin_server_id);
  out += R"(,"sentAtUs":)";
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
