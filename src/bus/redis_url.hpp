// REDIS_URL parsing: redis://[user:password@]host:port[/db] (rediss:// for TLS).
#pragma once

#include <cstdint>
#include <string>
#include <variant>

namespace sigsrv {

struct RedisEndpoint {
  std::string host = "127.0.0.1";
  uint16_t port = 6379;
  std::string user;      // empty: AUTH with the password alone (legacy requirepass)
  std::string password;  // empty: no AUTH
  unsigned db = 0;
  bool tls = false;
};

// Error text never contains the password.
std::variant<RedisEndpoint, std::string> parse_redis_url(const std::string& url);

}  // namespace sigsrv
