// JWT verification (RFC 7519/7515) for the connect checks, rows 8-10 of PROTOCOL.md section 1.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "signaling/admission.hpp"

namespace sigsrv {

struct JwtPolicy {
  std::string alg;       // the one algorithm accepted: HS256 ... PS256
  std::string issuer;    // required `iss` when not empty
  std::string audience;  // required in `aud` (string or array) when not empty
  std::string rooms_claim = "rooms";
  std::chrono::seconds clock_skew{30};
};

// A verification key. HS*: the shared secret; RS*/PS*/ES*: a public key (from PEM or a JWK).
class JwtKey {
 public:
  static std::shared_ptr<const JwtKey> from_secret(std::string secret);
  // Error text names what is wrong with the PEM, never its content.
  static std::variant<std::shared_ptr<const JwtKey>, std::string> from_pem(const std::string& pem);
  // Takes ownership of an EVP_PKEY* built elsewhere (a JWK from a JWKS document).
  static std::shared_ptr<const JwtKey> adopt_pkey(void* evp_pkey);
  ~JwtKey();
  JwtKey(const JwtKey&) = delete;
  JwtKey& operator=(const JwtKey&) = delete;

  bool is_secret() const { return pkey_ == nullptr; }
  const std::string& secret() const { return secret_; }
  void* pkey() const { return pkey_; }  // EVP_PKEY*
  int pkey_type() const;                // EVP_PKEY_RSA, EVP_PKEY_EC, ...

 private:
  JwtKey() = default;
  std::string secret_;
  void* pkey_ = nullptr;
};

struct JwtResult {
  TokenOutcome outcome = TokenOutcome::kInvalid;
  std::string reason;  // why it was refused, for debug logs; never contains the token
  std::string kid;     // the header's key id, when present
};

// Tokens larger than this are refused before any decoding.
inline constexpr std::size_t kMaxTokenBytes = 8192;

// Splits, decodes and checks the token: header alg equals policy.alg (so `none` and HS-vs-RS
// confusion are refused), signature, exp/nbf with skew, iss, aud, and the rooms claim.
// `now` is seconds since the epoch.
JwtResult verify_jwt(std::string_view token, const JwtKey& key, const JwtPolicy& policy,
                     std::string_view room_id, int64_t now);

// The key id of a token's header without verifying anything (to pick a JWKS key).
std::optional<std::string> jwt_kid(std::string_view token);

std::optional<std::string> base64url_decode(std::string_view in);

// Whether `key` can verify `alg` at all (HS needs a secret, RS/PS an RSA key, ES256 a P-256 key,
// ES384 a P-384 key): checked at start-up so a mismatch stops the server, not every client.
bool jwt_key_fits(std::string_view alg, const JwtKey& key);

}  // namespace sigsrv
