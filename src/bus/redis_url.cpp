// REDIS_URL parsing with Boost.URL (percent-decoded user and password).
#include "bus/redis_url.hpp"

#include "config/config.hpp"

#include <boost/url/parse.hpp>
#include <charconv>

namespace sigsrv {

std::variant<RedisEndpoint, std::string> parse_redis_url(const std::string& url) {
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed) return std::string("not a URL (expected redis://[user:password@]host:port[/db])");
  RedisEndpoint ep;
  const auto scheme = parsed->scheme();
  if (scheme == "rediss") {
    ep.tls = true;
  } else if (scheme != "redis") {
    return std::string("scheme must be redis:// or rediss://");
  }
  if (!parsed->has_authority() || parsed->encoded_host().empty()) {
    return std::string("missing host");
  }
  ep.host = std::string(parsed->host_address());
  if (parsed->has_port()) {
    const auto port = parse_port(parsed->port());
    if (!port || *port == 0) return std::string("port must be 1-65535");
    ep.port = *port;
  }
  if (parsed->has_userinfo()) {
    ep.user = parsed->user();
    if (parsed->has_password()) ep.password = parsed->password();
    // redis://:password@host is a password alone; "default" is Redis 6's implicit user.
  }
  std::string path = parsed->path();
  if (!path.empty() && path[0] != '/') {
    // "redis://host:63x79" parses as port "63" and path "x79": the port was not a number.
    return std::string("port must be 1-65535");
  }
  if (!path.empty() && path != "/") {
    const std::string digits = path.substr(1);
    unsigned db = 0;
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), db);
    if (ec != std::errc() || ptr != digits.data() + digits.size()) {
      return std::string("database must be a number (redis://host:port/0)");
    }
    ep.db = db;
  }
  return ep;
}

}  // namespace sigsrv
