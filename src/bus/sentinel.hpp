// Redis Sentinel, the pure part: the REDIS_SENTINELS list, and the replies and events the bus
// reads from sentinels (PROTOCOL.md section 10).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "bus/resp.hpp"

namespace sigsrv {

struct HostPort {
  std::string host;
  uint16_t port = 0;
  bool operator==(const HostPort&) const = default;
};

// "host:port" (or "[v6]:port"), for logs.
std::string to_string(const HostPort& hp);

// REDIS_SENTINELS: "h1:p1,h2:p2,..." (IPv6 as "[::1]:26379"); spaces around items are ignored.
// Every item needs a port (1-65535); an empty list or item is an error, which quotes the item.
std::variant<std::vector<HostPort>, std::string> parse_host_list(std::string_view text);

// A master name as the sentinels know it: one word (the +switch-master event separates its fields
// with spaces). Empty when it is fine, else why not.
std::string check_master_name(std::string_view name);

// A "+switch-master" event: "<name> <old-ip> <old-port> <new-ip> <new-port>". The new address
// when the event is about `master`; nothing for other masters or a malformed event.
std::optional<HostPort> parse_switch_master(std::string_view payload, std::string_view master);

// The answer of SENTINEL get-master-addr-by-name.
struct MasterAddr {
  enum class Kind { kAddress, kUnknownMaster, kError } kind = Kind::kError;
  HostPort address;    // kAddress
  std::string detail;  // kError: the server's error text, or what was wrong with the reply
};
MasterAddr parse_master_addr(const redisReply* r);

// True when a ROLE reply says the node is a master.
bool role_is_master(const redisReply* r);

}  // namespace sigsrv
