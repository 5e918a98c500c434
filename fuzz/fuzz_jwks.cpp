// libFuzzer target: JWK Set parsing for each algorithm family, and JWKS_URL splitting.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "auth/jwks.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (const char* alg : {"RS256", "ES256", "ES384"}) {
    const sigsrv::JwksParseResult r = sigsrv::parse_jwks(text, alg);
    // Either a non-empty set of keys that fit, or an error; never both, never neither.
    if ((r.set == nullptr) == r.error.empty()) __builtin_trap();
    if (r.set) {
      if (r.set->keys.empty() || r.set->keys.size() > sigsrv::kMaxJwksKeys) __builtin_trap();
      for (const auto& e : r.set->keys) {
        if (!sigsrv::jwt_key_fits(alg, *e.key)) __builtin_trap();
      }
      (void)sigsrv::pick_jwks_key(r.set.get(), std::nullopt);
    }
  }
  (void)sigsrv::parse_jwks_url(text);
  (void)sigsrv::jwks_url_for_logs(text);
  return 0;
}
