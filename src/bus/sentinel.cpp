// Redis Sentinel, the pure part: parsing REDIS_SENTINELS and what the sentinels answer.
#include "bus/sentinel.hpp"

#include "config/config.hpp"
#include "config/text.hpp"

namespace sigsrv {

namespace {

std::variant<HostPort, std::string> parse_item(std::string_view item) {
  HostPort hp;
  std::string_view port;
  if (item.find("://") != std::string_view::npos) return std::string("host:port, not a URL");
  if (!item.empty() && item.front() == '[') {
    const auto close = item.find(']');
    if (close == std::string_view::npos || close + 1 >= item.size() || item[close + 1] != ':') {
      return std::string("expected [ipv6]:port");
    }
    hp.host = std::string(item.substr(1, close - 1));
    port = item.substr(close + 2);
  } else {
    const auto colon = item.rfind(':');
    if (colon == std::string_view::npos) return std::string("expected host:port");
    hp.host = std::string(item.substr(0, colon));
    if (hp.host.find(':') != std::string::npos) {
      return std::string("an IPv6 address goes in brackets: [addr]:port");
    }
    port = item.substr(colon + 1);
  }
  if (hp.host.empty()) return std::string("missing host");
  if (hp.host.find_first_of(" \t/@") != std::string::npos) return std::string("not a host name");
  const auto p = parse_port(port);
  if (!p || *p == 0) return std::string("port must be 1-65535");
  hp.port = *p;
  return hp;
}

std::vector<std::string_view> words(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    const std::size_t start = i;
    while (i < s.size() && s[i] != ' ') ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

}  // namespace

std::string to_string(const HostPort& hp) {
  const bool v6 = hp.host.find(':') != std::string::npos;
  return (v6 ? "[" + hp.host + "]" : hp.host) + ":" + std::to_string(hp.port);
}

std::variant<std::vector<HostPort>, std::string> parse_host_list(std::string_view text) {
  std::vector<HostPort> out;
  std::size_t from = 0;
  while (true) {
    const auto comma = text.find(',', from);
    const std::string_view item =
        trim(text.substr(from, comma == std::string_view::npos ? text.npos : comma - from));
    if (item.empty()) return std::string("empty item (expected host:port,host:port,...)");
    auto parsed = parse_item(item);
    if (auto* why = std::get_if<std::string>(&parsed)) {
      return "'" + std::string(item) + "': " + *why;
    }
    out.push_back(std::get<HostPort>(std::move(parsed)));
    if (comma == std::string_view::npos) break;
    from = comma + 1;
  }
  return out;
}

std::string check_master_name(std::string_view name) {
  if (name.empty()) return "empty";
  if (name.find_first_of(" \t\r\n") != std::string_view::npos) {
    return "must be one word (the name in the sentinels' `sentinel monitor` line)";
  }
  return {};
}

std::optional<HostPort> parse_switch_master(std::string_view payload, std::string_view master) {
  const auto w = words(payload);
  if (w.size() != 5 || w[0] != master) return std::nullopt;
  const auto port = parse_port(w[4]);
  if (!port || *port == 0 || w[3].empty()) return std::nullopt;
  return HostPort{std::string(w[3]), *port};
}

MasterAddr parse_master_addr(const redisReply* r) {
  MasterAddr out;
  if (r == nullptr) {
    out.detail = "no reply";
    return out;
  }
  if (r->type == REDIS_REPLY_ERROR) {
    out.detail = std::string(reply_text(r));
    return out;
  }
  if (r->type == REDIS_REPLY_NIL) {
    out.kind = MasterAddr::Kind::kUnknownMaster;
    return out;
  }
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
      r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING) {
    out.detail = "unexpected reply to SENTINEL get-master-addr-by-name";
    return out;
  }
  const auto port = parse_port(reply_text(r->element[1]));
  if (!port || *port == 0 || r->element[0]->len == 0) {
    out.detail = "unexpected address in SENTINEL get-master-addr-by-name";
    return out;
  }
  out.kind = MasterAddr::Kind::kAddress;
  out.address = HostPort{std::string(reply_text(r->element[0])), *port};
  return out;
}

bool role_is_master(const redisReply* r) {
  return r != nullptr && r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
         (r->element[0]->type == REDIS_REPLY_STRING || r->element[0]->type == REDIS_REPLY_STATUS) &&
         reply_text(r->element[0]) == "master";
}

}  // namespace sigsrv
