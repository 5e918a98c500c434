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

// What to check when the TLS handshake with `host` fails (e.g. "certificate verify failed").
inline std::string redis_tls_hint(const std::string& host) {
  return " (check REDIS_TLS_CA_FILE, and that the certificate names " + host + ")";
}

// Error text never contains the password.
std::variant<RedisEndpoint, std::string> parse_redis_url(const std::string& url);

}  // namespace sigsrv
