// Redis Cluster, the pure part: key slots, the CLUSTER SLOTS reply and MOVED/ASK redirects
// (PROTOCOL.md section 10).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "bus/resp.hpp"
#include "bus/sentinel.hpp"

namespace sigsrv {

inline constexpr std::size_t kClusterSlots = 16384;

// The slot of a key (or a sharded channel): CRC16/XMODEM of its hash tag (the text between the
// first '{' and the next '}', when not empty), else of the whole key, modulo 16384.
uint16_t key_slot(std::string_view key);

// "{text}": the hash tag that puts every key carrying it in one slot.
inline std::string hash_tag(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  return out.append("{").append(text).append("}");
}

struct SlotRange {
  uint16_t first = 0;
  uint16_t last = 0;
  HostPort master;
  bool operator==(const SlotRange&) const = default;
};

// A CLUSTER SLOTS reply: [[first, last, [host, port, id...], replicas...], ...]. A master whose
// host is empty or "?" is the node that answered (`asked_host`). An error (a node without
// cluster support answers "ERR This instance has cluster support disabled") or a malformed reply
// gives its text.
std::variant<std::vector<SlotRange>, std::string> parse_cluster_slots(const redisReply* r,
                                                                      std::string_view asked_host);

// "MOVED 3999 127.0.0.1:6381" or "ASK 3999 127.0.0.1:6381" (an empty host: the node that
// answered). Nothing for any other error.
struct Redirect {
  enum class Kind { kMoved, kAsk } kind = Kind::kMoved;
  uint16_t slot = 0;
  HostPort to;
};
std::optional<Redirect> parse_redirect(std::string_view error, std::string_view asked_host);

}  // namespace sigsrv
