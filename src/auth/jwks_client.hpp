// Fetches JWKS_URL over HTTP(S) and feeds the key cache (auth/jwks.hpp); Beast stays in the .cpp.
#pragma once

#include <memory>

#include "auth/jwks.hpp"
#include "config/config.hpp"
#include "obs/logger.hpp"

namespace sigsrv {

// Runs on an io_context and thread of its own rather than on a server loop: a TLS handshake and
// the parsing of a key set (RSA/EC public-key checks) take milliseconds that would otherwise
// stall every connection of that loop, and the fetcher has to keep going while the loops are
// busy or draining. Sessions only touch the JwksCache (mutex-guarded); the cache wakes them with
// a callback that each session posts back to its own loop.
class JwksClient {
 public:
  JwksClient(const Config& config, Logger& log);
  // Stops the thread and drops the sessions still waiting (call after the server stopped and
  // before it is destroyed: the waiters hold sessions, and sessions refer to the server).
  ~JwksClient();
  JwksClient(const JwksClient&) = delete;
  JwksClient& operator=(const JwksClient&) = delete;

  // Starts the first fetch (without waiting for it) and the refresh timer.
  void start();
  JwksCache& cache();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sigsrv
