// Redis Cluster, the pure part: key slots, CLUSTER SLOTS, MOVED/ASK.
#include "bus/cluster.hpp"

#include <array>

#include "config/config.hpp"

namespace sigsrv {

namespace {

// CRC16/XMODEM (polynomial 0x1021, initial 0), the checksum Redis Cluster hashes keys with.
constexpr std::array<uint16_t, 256> make_crc_table() {
  std::array<uint16_t, 256> t{};
  for (unsigned i = 0; i < 256; ++i) {
    auto crc = static_cast<uint16_t>(i << 8);
    for (int b = 0; b < 8; ++b) {
      crc = static_cast<uint16_t>((crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    t[i] = crc;
  }
  return t;
}
constexpr auto kCrcTable = make_crc_table();

uint16_t crc16(std::string_view s) {
  uint16_t crc = 0;
  for (const char c : s) {
    crc = static_cast<uint16_t>((crc << 8) ^
                                kCrcTable[((crc >> 8) ^ static_cast<unsigned char>(c)) & 0xff]);
  }
  return crc;
}

std::string host_or(std::string_view host, std::string_view asked_host) {
  return std::string(host.empty() || host == "?" ? asked_host : host);
}

}  // namespace

uint16_t key_slot(std::string_view key) {
  const auto open = key.find('{');
  if (open != std::string_view::npos) {
    const auto close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  return static_cast<uint16_t>(crc16(key) & (kClusterSlots - 1));
}

std::variant<std::vector<SlotRange>, std::string> parse_cluster_slots(const redisReply* r,
                                                                      std::string_view asked_host) {
  if (r == nullptr) return std::string("no reply");
  if (r->type == REDIS_REPLY_ERROR) return std::string(reply_text(r));
  if (r->type != REDIS_REPLY_ARRAY) return std::string("CLUSTER SLOTS: not an array");
  std::vector<SlotRange> out;
  for (std::size_t i = 0; i < r->elements; ++i) {
    const redisReply* range = r->element[i];
    if (range->type != REDIS_REPLY_ARRAY || range->elements < 3 ||
        range->element[0]->type != REDIS_REPLY_INTEGER ||
        range->element[1]->type != REDIS_REPLY_INTEGER ||
        range->element[2]->type != REDIS_REPLY_ARRAY || range->element[2]->elements < 2) {
      return std::string("CLUSTER SLOTS: malformed range");
    }
    const long long first = range->element[0]->integer;
    const long long last = range->element[1]->integer;
    if (first < 0 || last < first || last >= static_cast<long long>(kClusterSlots)) {
      return std::string("CLUSTER SLOTS: slot out of range");
    }
    const redisReply* node = range->element[2];
    if (node->element[0]->type != REDIS_REPLY_STRING ||
        node->element[1]->type != REDIS_REPLY_INTEGER || node->element[1]->integer <= 0 ||
        node->element[1]->integer > 65535) {
      return std::string("CLUSTER SLOTS: malformed node");
    }
    out.push_back(SlotRange{static_cast<uint16_t>(first), static_cast<uint16_t>(last),
                            HostPort{host_or(reply_text(node->element[0]), asked_host),
                                     static_cast<uint16_t>(node->element[1]->integer)}});
  }
  return out;
}

std::optional<Redirect> parse_redirect(std::string_view error, std::string_view asked_host) {
  Redirect r;
  if (error.rfind("MOVED ", 0) == 0) {
    r.kind = Redirect::Kind::kMoved;
    error.remove_prefix(6);
  } else if (error.rfind("ASK ", 0) == 0) {
    r.kind = Redirect::Kind::kAsk;
    error.remove_prefix(4);
  } else {
    return std::nullopt;
  }
  const auto space = error.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  const auto slot = parse_port(error.substr(0, space));  // 0-65535 digits; checked below
  const std::string_view address = error.substr(space + 1);
  const auto colon = address.rfind(':');
  if (!slot || *slot >= kClusterSlots || colon == std::string_view::npos) return std::nullopt;
  const auto port = parse_port(address.substr(colon + 1));
  if (!port || *port == 0) return std::nullopt;
  r.slot = *slot;
  r.to = HostPort{host_or(address.substr(0, colon), asked_host), *port};
  return r;
}

}  // namespace sigsrv
