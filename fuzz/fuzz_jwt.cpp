// libFuzzer target: JWT parsing and HS256 verification of arbitrary tokens; nothing may pass.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "auth/jwt.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto kKey = sigsrv::JwtKey::from_secret("fuzz-secret-never-guessed-by-a-fuzzer");
  static const sigsrv::JwtPolicy kPolicy{"HS256", "iss", "aud", "rooms", std::chrono::seconds(30)};
  const std::string_view token(reinterpret_cast<const char*>(data), size);
  const sigsrv::JwtResult r = sigsrv::verify_jwt(token, *kKey, kPolicy, "room", 1700000000);
  // Forging an HMAC is out of reach: any acceptance is a verifier bug.
  if (r.outcome != sigsrv::TokenOutcome::kInvalid) __builtin_trap();
  (void)sigsrv::jwt_kid(token);
  (void)sigsrv::base64url_decode(token);
  return 0;
}
