// ICE server URLs and coturn use-auth-secret credentials (PROTOCOL.md section 9).
#include "signaling/ice_servers.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <charconv>

#include "config/text.hpp"

namespace sigsrv {
namespace json = boost::json;
namespace {

bool hostname_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.';
}

bool ipv6_char(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
         c == '.';
}

// "" when `port` is 1-65535 in decimal, else why not.
std::string check_port(std::string_view port) {
  unsigned value = 0;
  const char* end = port.data() + port.size();
  auto [p, ec] = std::from_chars(port.data(), end, value);
  if (port.empty() || ec != std::errc() || p != end || value == 0 || value > 65535) {
    return "the port must be a number from 1 to 65535";
  }
  return {};
}

// "" when `hostport` is HOST[:PORT], else why not.
std::string check_host_port(std::string_view hostport) {
  std::string_view host;
  std::string_view rest;
  if (!hostport.empty() && hostport.front() == '[') {
    const auto close = hostport.find(']');
    if (close == std::string_view::npos) return "an IPv6 address needs its closing ']'";
    const std::string_view addr = hostport.substr(1, close - 1);
    if (addr.empty() || !std::all_of(addr.begin(), addr.end(), ipv6_char)) {
      return "'[" + std::string(addr) + "]' is not an IPv6 address";
    }
    host = hostport.substr(0, close + 1);
    rest = hostport.substr(close + 1);
  } else {
    const auto colon = hostport.find(':');
    host = hostport.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view() : hostport.substr(colon);
    if (host.empty()) return "no host";
    if (!std::all_of(host.begin(), host.end(), hostname_char) || host.front() == '.' ||
        host.front() == '-') {
      return "'" + std::string(host) + "' is not a host name or IPv4 address";
    }
  }
  if (rest.empty()) return {};
  if (rest.front() != ':') return "unexpected '" + std::string(rest) + "' after the host";
  return check_port(rest.substr(1));
}

std::string base64(const unsigned char* data, std::size_t size) {
  std::string out(4 * ((size + 2) / 3), '\0');
  const int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(size));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::string urls_array(const std::vector<IceUrl>& urls, bool turn) {
  json::array a;
  for (const auto& u : urls) {
    if ((u.scheme != IceUrl::Scheme::kStun) == turn) a.emplace_back(u.text);
  }
  return a.empty() ? std::string() : json::serialize(a);
}

}  // namespace

std::variant<IceUrl, std::string> parse_ice_url(std::string_view text) {
  text = trim(text);
  IceUrl url;
  url.text = std::string(text);
  std::string_view rest;
  if (text.rfind("stun:", 0) == 0) {
    url.scheme = IceUrl::Scheme::kStun;
    rest = text.substr(5);
  } else if (text.rfind("turn:", 0) == 0) {
    url.scheme = IceUrl::Scheme::kTurn;
    rest = text.substr(5);
  } else if (text.rfind("turns:", 0) == 0) {
    url.scheme = IceUrl::Scheme::kTurns;
    rest = text.substr(6);
  } else {
    return "'" + url.text + "' must start with stun:, turn: or turns:";
  }
  // Never echoed: what comes before '@' may be a password.
  if (rest.find('@') != std::string_view::npos) {
    return "a URL with user information (user@host) is refused: TURN credentials are minted from "
           "TURN_SECRET";
  }
  if (rest.rfind("//", 0) == 0) {
    return "'" + url.text + "': write scheme:host[:port], without '//' (RFC 7064, RFC 7065)";
  }
  const auto q = rest.find('?');
  const std::string_view hostport = rest.substr(0, q);
  if (q != std::string_view::npos) {
    const std::string_view query = rest.substr(q + 1);
    if (url.scheme == IceUrl::Scheme::kStun) {
      return "'" + url.text + "': a stun: URL takes no query";
    }
    if (query != "transport=udp" && query != "transport=tcp") {
      return "'" + url.text + "': the only query allowed is ?transport=udp or ?transport=tcp";
    }
  }
  if (auto why = check_host_port(hostport); !why.empty()) return "'" + url.text + "': " + why;
  return url;
}

std::variant<std::vector<IceUrl>, std::string> parse_ice_urls(std::string_view text) {
  std::vector<IceUrl> out;
  while (!text.empty()) {
    const auto comma = text.find(',');
    const std::string_view item = trim(text.substr(0, comma));
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    if (item.empty()) continue;
    auto parsed = parse_ice_url(item);
    if (auto* why = std::get_if<std::string>(&parsed)) return std::move(*why);
    out.push_back(std::move(std::get<IceUrl>(parsed)));
  }
  return out;
}

TurnCredential turn_credential(std::string_view secret, std::string_view client_id,
                               int64_t expiry_unix_seconds) {
  TurnCredential c;
  c.username = std::to_string(expiry_unix_seconds);
  c.username += ':';
  c.username += client_id;
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned mac_len = 0;
  HMAC(EVP_sha1(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(c.username.data()), c.username.size(), mac.data(),
       &mac_len);
  c.credential = base64(mac.data(), mac_len);
  return c;
}

IceServers::IceServers(const std::vector<IceUrl>& urls, std::string secret, unsigned expiry_seconds)
    : stun_urls_(urls_array(urls, false)),
      turn_urls_(urls_array(urls, true)),
      secret_(std::move(secret)),
      expiry_seconds_(expiry_seconds) {}

std::string IceServers::json(std::string_view client_id, int64_t now_unix_seconds) const {
  std::string out = "[";
  if (!stun_urls_.empty()) out += R"({"urls":)" + stun_urls_ + "}";
  if (!turn_urls_.empty()) {
    const TurnCredential c = turn_credential(
        secret_, client_id, now_unix_seconds + static_cast<int64_t>(expiry_seconds_));
    if (out.size() > 1) out += ',';
    out += R"({"urls":)" + turn_urls_;
    out += R"(,"username":)" + json::serialize(json::string_view(c.username));
    out += R"(,"credential":)" + json::serialize(json::string_view(c.credential)) + "}";
  }
  return out + "]";
}

}  // namespace sigsrv
