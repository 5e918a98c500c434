// Origin matching, with entries pre-parsed once at start.
#include "auth/origin.hpp"

#include <boost/url/parse.hpp>

#include <algorithm>
#include <optional>

namespace sigsrv {
namespace {

struct HostParts {
  std::string host;
  std::string hostname;
};

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return out;
}

// An entry without a scheme ("localhost", "game.example.com:8443") is read as http://ENTRY.
std::optional<HostParts> host_of(std::string_view text) {
  std::string with_scheme(text);
  if (text.find("://") == std::string_view::npos) with_scheme = "http://" + with_scheme;
  auto u = boost::urls::parse_uri(with_scheme);
  if (!u || !u->has_authority() || u->encoded_host().empty()) return std::nullopt;
  HostParts parts;
  parts.hostname = lower(u->encoded_host());
  parts.host = parts.hostname;
  if (u->has_port()) parts.host += ":" + std::string(u->port());
  return parts;
}

}  // namespace

OriginMatcher::OriginMatcher(const std::vector<std::string>& entries) {
  for (const auto& e : entries) {
    Entry entry{e, {}, {}};
    if (auto parts = host_of(e)) {
      entry.host = parts->host;
      entry.hostname = parts->hostname;
    }
    entries_.push_back(std::move(entry));
  }
}

bool OriginMatcher::allowed(std::string_view origin) const {
  std::optional<HostParts> o;
  // Only a real origin (scheme://host) takes part in host matching; "null" matches only itself.
  if (origin.find("://") != std::string_view::npos) o = host_of(origin);
  for (const auto& e : entries_) {
    if (e.exact == origin) return true;
    if (o && !e.host.empty() && (e.host == o->host || e.hostname == o->hostname)) return true;
  }
  return false;
}

}  // namespace sigsrv
