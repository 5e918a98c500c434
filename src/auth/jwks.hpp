// JWKS (RFC 7517) for JWT_ALG RS*/PS*/ES*: the key-set parser, the JWKS_URL endpoint, and the
// cache policy (TTL, rate-limited refetch on an unknown kid, last good set kept). Pure: the HTTP(S)
// fetch is injected; auth/jwks_client.cpp does it.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "auth/jwt.hpp"

namespace sigsrv {

// The keys of one JWKS document that can verify JWT_ALG. Immutable once built, so sessions on
// every loop share it through std::shared_ptr<const JwkSet> without locking.
struct JwkSet {
  struct Entry {
    std::string kid;  // empty when the JWK has none
    std::shared_ptr<const JwtKey> key;
  };
  std::vector<Entry> keys;
};

struct JwksParseResult {
  std::shared_ptr<const JwkSet> set;  // null when the document is unusable (`error` says why)
  std::string error;
  std::vector<std::string> skipped;  // one line per JWK left out and why; never key material
};

// A document holding more keys is cut here: real providers publish two or three, and every key
// costs an EVP_PKEY for as long as the set is cached.
inline constexpr std::size_t kMaxJwksKeys = 64;

// Builds the usable keys of a JWK Set for `alg`. RSA JWKs (n, e; 2048..16384 bits, RFC 7518 3.3)
// and EC JWKs (P-256, P-384; the point must be on the curve) are read; a JWK is skipped when its
// `use` is set and is not "sig", its `key_ops` lacks "verify", its `alg` is set and differs from
// `alg`, its kid repeats an earlier one, or the key does not fit `alg` (jwt_key_fits). A document
// that is not a JSON object with a "keys" array, or that leaves no usable key, is an error: the
// cache then keeps the set it had.
JwksParseResult parse_jwks(std::string_view json, std::string_view alg);

// The key a token names, from a set that may not be fetched yet.
struct KeyPick {
  std::shared_ptr<const JwtKey> key;  // null: no key for this token (`reason` says why)
  bool refetch_may_help = false;      // no set yet, or the kid is not in it (a rotation?)
  std::string reason;
};
// A token with a kid gets the key with that kid. A token without one is accepted only when the
// set holds exactly one key: trying every key would multiply the signature checks an anonymous
// client can cause, and providers that publish several keys put a kid in every token.
KeyPick pick_jwks_key(const JwkSet* set, const std::optional<std::string>& kid);

// JWKS_URL, split for the client: http:// (tests, a sidecar) or https:// (an identity provider).
struct JwksEndpoint {
  bool tls = false;
  std::string host;         // name or address, without IPv6 brackets (resolve, SNI, cert check)
  std::string port;         // explicit, or 80/443 from the scheme
  std::string host_header;  // Host header: host[:port] as written in the URL
  std::string target;       // path and query, "/" when empty
};
// The error names what is wrong (scheme, host) without repeating the URL.
std::variant<JwksEndpoint, std::string> parse_jwks_url(std::string_view url);
// scheme://host[:port]/path: userinfo and query (where a URL may carry a secret) are left out.
std::string jwks_url_for_logs(std::string_view url);

// A token whose kid is unknown triggers at most one fetch per this interval. Long enough that
// tokens with made-up kids cannot turn the server into a load generator against the identity
// provider (one request per 5 s whatever their number); short enough that a rotation published
// just now is picked up within a client's retry.
inline constexpr std::chrono::milliseconds kJwksMinRefetchInterval{5000};
// A failed fetch is retried after 5 s, doubling up to this, until one succeeds.
inline constexpr std::chrono::milliseconds kJwksMaxRetryInterval{60000};
// Connections waiting for a fetch at once; more are refused (1008 Unauthorized) instead of held.
inline constexpr std::size_t kJwksMaxWaiters = 1024;

struct JwksCacheOptions {
  std::string alg;                        // JWT_ALG
  std::chrono::milliseconds ttl{300000};  // JWKS_CACHE_TTL
  std::chrono::milliseconds min_refetch_interval{kJwksMinRefetchInterval};
  std::size_t max_waiters = kJwksMaxWaiters;
};

// What the fetcher got: a body (HTTP 200) or why there is none.
struct JwksFetch {
  bool ok = false;
  std::string body;
  std::string error;
};

enum class JwksWait { kWaiting, kRateLimited, kTooManyWaiters };

// The key set and when to fetch it. At most one fetch is in flight; the set is fetched at
// start-up, again JWKS_CACHE_TTL after each success, sooner for an unknown kid (rate limited),
// and with back-off after a failure; a failed fetch keeps the last good set. Thread-safe: sessions
// on every loop read and wait, the fetcher's thread answers.
class JwksCache {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // `start_fetch` runs (outside the lock, on whichever thread decided) each time a fetch starts;
  // the fetcher must answer each call with exactly one fetched().
  JwksCache(JwksCacheOptions options, std::function<void()> start_fetch);
  JwksCache(const JwksCache&) = delete;
  JwksCache& operator=(const JwksCache&) = delete;

  std::shared_ptr<const JwkSet> current() const;

  // Starts the fetch that is due (the first one, a TTL refresh, a retry); returns when the next
  // is due, or nullopt while one is in flight (ask again after fetched()).
  std::optional<TimePoint> tick(TimePoint now);

  // A token found no key and a newer set might hold it. kWaiting: `resume` runs once the fetch in
  // flight (or started by this call) ends, on the fetcher's thread, whatever its outcome; the
  // caller looks the key up again then and does not wait twice. Otherwise `resume` is dropped
  // and the caller refuses the token now.
  JwksWait await_refresh(TimePoint now, std::function<void()> resume);

  struct Outcome {
    bool ok = false;
    std::size_t keys = 0;  // in the set now (the last good one after a failure)
    std::string error;
    std::vector<std::string> skipped;
  };
  // The answer to start_fetch: parses, swaps the set in on success, wakes every waiter.
  Outcome fetched(TimePoint now, JwksFetch fetch);

  // Drops the waiters without running them (shutdown: their loops are stopping).
  void drop_waiters();

 private:
  std::optional<TimePoint> next_due_locked() const;

  const JwksCacheOptions options_;
  const std::function<void()> start_fetch_;
  mutable std::mutex mu_;
  std::shared_ptr<const JwkSet> set_;
  bool in_flight_ = false;
  std::optional<TimePoint> last_attempt_;  // start of the latest fetch
  std::optional<TimePoint> fetched_at_;    // end of the latest successful fetch
  unsigned failures_ = 0;                  // consecutive failed fetches
  std::vector<std::function<void()>> waiters_;
};

}  // namespace sigsrv
