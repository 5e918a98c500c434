// Test keys for JWKS: OpenSSL key pairs made in the test, their public JWK, and tokens they sign
// (independent of the code under test; shared by the unit and integration tests).
#pragma once

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include <boost/json.hpp>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace test_jwk {

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

inline std::string b64url(std::string_view in) {
  static constexpr char kChars[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kChars[(acc >> bits) & 0x3f];
    }
  }
  if (bits > 0) out += kChars[(acc << (6 - bits)) & 0x3f];
  return out;
}

inline Pkey rsa_key(unsigned bits = 2048) {
  return Pkey(EVP_RSA_gen(bits));
}

// curve: "P-256" or "P-384".
inline Pkey ec_key(const char* curve) {
  return Pkey(EVP_EC_gen(curve));
}

inline std::string bn_bytes(const EVP_PKEY* key, const char* param) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(key, param, &bn) != 1) throw std::runtime_error("no bn param");
  std::string out(static_cast<std::size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  BN_free(bn);
  return out;
}

// The public JWK of `key` with `kid` (omitted when empty); `extra` members are added as given.
inline boost::json::object public_jwk(const EVP_PKEY* key, const std::string& kid,
                                      const boost::json::object& extra = {}) {
  boost::json::object jwk;
  if (EVP_PKEY_is_a(key, "RSA")) {
    jwk["kty"] = "RSA";
    jwk["n"] = b64url(bn_bytes(key, OSSL_PKEY_PARAM_RSA_N));
    jwk["e"] = b64url(bn_bytes(key, OSSL_PKEY_PARAM_RSA_E));
  } else {
    unsigned char point[256];
    std::size_t len = 0;
    if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point,
                                        sizeof(point), &len) != 1) {
      throw std::runtime_error("no EC point");
    }
    const std::size_t part = (len - 1) / 2;  // 04 || x || y
    jwk["kty"] = "EC";
    jwk["crv"] = part == 32 ? "P-256" : "P-384";
    jwk["x"] = b64url(std::string_view(reinterpret_cast<char*>(point) + 1, part));
    jwk["y"] = b64url(std::string_view(reinterpret_cast<char*>(point) + 1 + part, part));
  }
  if (!kid.empty()) jwk["kid"] = kid;
  for (const auto& kv : extra) jwk[kv.key()] = kv.value();
  return jwk;
}

inline std::string jwks_document(std::initializer_list<boost::json::object> keys) {
  boost::json::array arr;
  for (const auto& k : keys) arr.push_back(k);
  return boost::json::serialize(boost::json::object{{"keys", arr}});
}

// A compact JWS over `claims` signed with `key`: RS256 for RSA keys, ES256/ES384 for EC keys
// (JOSE r||s signature). `kid` goes in the header when not empty.
inline std::string sign(EVP_PKEY* key, const std::string& kid, const boost::json::object& claims) {
  const bool rsa = EVP_PKEY_is_a(key, "RSA");
  const int bits = EVP_PKEY_get_bits(key);
  const std::string alg = rsa ? "RS256" : (bits == 256 ? "ES256" : "ES384");
  const EVP_MD* md = alg == "ES384" ? EVP_sha384() : EVP_sha256();
  boost::json::object header{{"alg", alg}, {"typ", "JWT"}};
  if (!kid.empty()) header["kid"] = kid;
  const std::string input =
      b64url(boost::json::serialize(header)) + "." + b64url(boost::json::serialize(claims));
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  std::size_t len = 0;
  EVP_DigestSignInit(ctx, nullptr, md, nullptr, key);
  EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()),
                 input.size());
  std::string sig(len, '\0');
  EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                 reinterpret_cast<const unsigned char*>(input.data()), input.size());
  EVP_MD_CTX_free(ctx);
  sig.resize(len);
  if (!rsa) {
    const auto* p = reinterpret_cast<const unsigned char*>(sig.data());
    ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
    const std::size_t part = bits == 256 ? 32 : 48;
    std::string jose(2 * part, '\0');
    BN_bn2binpad(ECDSA_SIG_get0_r(es), reinterpret_cast<unsigned char*>(jose.data()),
                 static_cast<int>(part));
    BN_bn2binpad(ECDSA_SIG_get0_s(es), reinterpret_cast<unsigned char*>(jose.data()) + part,
                 static_cast<int>(part));
    ECDSA_SIG_free(es);
    sig = jose;
  }
  return input + "." + b64url(sig);
}

}  // namespace test_jwk
