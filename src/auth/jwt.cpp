// JWT verification with OpenSSL 3 EVP: HMAC for HS*, RSA PKCS#1 v1.5 / PSS for RS*/PS*, ECDSA
// (JOSE r||s converted to DER) for ES*. Claims after the signature, rooms last.
#include "auth/jwt.hpp"

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <array>
#include <boost/json.hpp>

namespace sigsrv {
namespace json = boost::json;

namespace {

struct AlgInfo {
  enum class Family { kHmac, kRsa, kRsaPss, kEcdsa } family;
  const EVP_MD* (*md)();
  std::size_t ec_part = 0;  // bytes of r and of s for ES*
  int ec_nid = 0;
};

std::optional<AlgInfo> alg_info(std::string_view alg) {
  using F = AlgInfo::Family;
  if (alg == "HS256") return AlgInfo{F::kHmac, EVP_sha256};
  if (alg == "HS384") return AlgInfo{F::kHmac, EVP_sha384};
  if (alg == "HS512") return AlgInfo{F::kHmac, EVP_sha512};
  if (alg == "RS256") return AlgInfo{F::kRsa, EVP_sha256};
  if (alg == "RS384") return AlgInfo{F::kRsa, EVP_sha384};
  if (alg == "RS512") return AlgInfo{F::kRsa, EVP_sha512};
  if (alg == "PS256") return AlgInfo{F::kRsaPss, EVP_sha256};
  if (alg == "ES256") return AlgInfo{F::kEcdsa, EVP_sha256, 32, NID_X9_62_prime256v1};
  if (alg == "ES384") return AlgInfo{F::kEcdsa, EVP_sha384, 48, NID_secp384r1};
  return std::nullopt;
}

JwtResult refuse(std::string reason, TokenOutcome outcome = TokenOutcome::kInvalid) {
  JwtResult r;
  r.outcome = outcome;
  r.reason = std::move(reason);
  return r;
}

std::optional<json::object> decode_json_object(std::string_view part) {
  auto raw = base64url_decode(part);
  if (!raw) return std::nullopt;
  json::error_code ec;
  json::value v = json::parse(*raw, ec);
  if (ec || !v.is_object()) return std::nullopt;
  return std::move(v.as_object());
}

std::optional<double> number_claim(const json::object& o, std::string_view name) {
  const json::value* v = o.if_contains(name);
  if (v == nullptr) return std::nullopt;
  if (v->is_int64()) return static_cast<double>(v->get_int64());
  if (v->is_uint64()) return static_cast<double>(v->get_uint64());
  if (v->is_double()) return v->get_double();
  return std::nullopt;
}

bool verify_hmac(const AlgInfo& a, const std::string& secret, std::string_view input,
                 const std::string& sig) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int len = 0;
  if (HMAC(a.md(), secret.data(), static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac.data(),
           &len) == nullptr) {
    return false;
  }
  // Constant-time compare: the length is public, the bytes are not.
  return sig.size() == len && CRYPTO_memcmp(mac.data(), sig.data(), len) == 0;
}

// JOSE ECDSA signatures are r||s of fixed width; OpenSSL verifies DER.
std::optional<std::string> ecdsa_jose_to_der(const std::string& sig, std::size_t part) {
  if (sig.size() != 2 * part) return std::nullopt;
  const auto* p = reinterpret_cast<const unsigned char*>(sig.data());
  BIGNUM* r = BN_bin2bn(p, static_cast<int>(part), nullptr);
  BIGNUM* s = BN_bin2bn(p + part, static_cast<int>(part), nullptr);
  ECDSA_SIG* es = ECDSA_SIG_new();
  if (r == nullptr || s == nullptr || es == nullptr || ECDSA_SIG_set0(es, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return std::nullopt;
  }
  unsigned char* der = nullptr;
  const int len = i2d_ECDSA_SIG(es, &der);
  ECDSA_SIG_free(es);
  if (len <= 0) return std::nullopt;
  std::string out(reinterpret_cast<char*>(der), static_cast<std::size_t>(len));
  OPENSSL_free(der);
  return out;
}

bool verify_pkey(const AlgInfo& a, EVP_PKEY* key, std::string_view input, const std::string& sig) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr) return false;
  EVP_PKEY_CTX* pctx = nullptr;
  bool ok = EVP_DigestVerifyInit(ctx, &pctx, a.md(), nullptr, key) == 1;
  if (ok && a.family == AlgInfo::Family::kRsaPss) {
    // RFC 7518 3.5: MGF1 with the same hash, salt as long as the hash.
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1;
  }
  ok = ok &&
       EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                        reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

bool key_fits(const AlgInfo& a, const JwtKey& key) {
  if (a.family == AlgInfo::Family::kHmac) return key.is_secret();
  if (key.is_secret()) return false;  // an HS secret never verifies RS/PS/ES (and vice versa)
  auto* pkey = static_cast<EVP_PKEY*>(key.pkey());
  if (a.family == AlgInfo::Family::kEcdsa) {
    if (!EVP_PKEY_is_a(pkey, "EC")) return false;
    char curve[64] = {};
    std::size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, curve, sizeof(curve),
                                       &len) != 1) {
      return false;
    }
    return OBJ_sn2nid(curve) == a.ec_nid || OBJ_txt2nid(curve) == a.ec_nid;
  }
  return EVP_PKEY_is_a(pkey, "RSA");
}

}  // namespace

std::optional<std::string> base64url_decode(std::string_view in) {
  static constexpr auto kTable = [] {
    std::array<int8_t, 256> t{};
    t.fill(-1);
    const char* chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(chars[i])] = static_cast<int8_t>(i);
    return t;
  }();
  // JWS uses unpadded base64url; a length of 1 mod 4 can never be valid.
  if (in.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const int8_t v = kTable[static_cast<unsigned char>(c)];
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  // Leftover bits must be zero (canonical encoding).
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

std::shared_ptr<const JwtKey> JwtKey::from_secret(std::string secret) {
  std::shared_ptr<JwtKey> k(new JwtKey());
  k->secret_ = std::move(secret);
  return k;
}

std::variant<std::shared_ptr<const JwtKey>, std::string> JwtKey::from_pem(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return std::string("out of memory");
  EVP_PKEY* pkey = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  if (pkey == nullptr) {
    // A certificate is accepted too: its public key is used.
    BIO_reset(bio);
    if (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
      pkey = X509_get_pubkey(cert);
      X509_free(cert);
    }
  }
  BIO_free(bio);
  if (pkey == nullptr) {
    return std::string("not a PEM public key (\"-----BEGIN PUBLIC KEY-----\") or certificate");
  }
  std::shared_ptr<JwtKey> k(new JwtKey());
  k->pkey_ = pkey;
  return std::shared_ptr<const JwtKey>(std::move(k));
}

std::shared_ptr<const JwtKey> JwtKey::adopt_pkey(void* evp_pkey) {
  std::shared_ptr<JwtKey> k(new JwtKey());
  k->pkey_ = evp_pkey;
  return k;
}

JwtKey::~JwtKey() {
  EVP_PKEY_free(static_cast<EVP_PKEY*>(pkey_));
}

int JwtKey::pkey_type() const {
  return pkey_ ? EVP_PKEY_get_base_id(static_cast<EVP_PKEY*>(pkey_)) : EVP_PKEY_HMAC;
}

bool jwt_key_fits(std::string_view alg, const JwtKey& key) {
  const auto info = alg_info(alg);
  return info && key_fits(*info, key);
}

std::optional<std::string> jwt_kid(std::string_view token) {
  const auto dot = token.find('.');
  if (dot == std::string_view::npos || token.size() > kMaxTokenBytes) return std::nullopt;
  auto header = decode_json_object(token.substr(0, dot));
  if (!header) return std::nullopt;
  const json::value* kid = header->if_contains("kid");
  if (kid == nullptr || !kid->is_string()) return std::nullopt;
  return std::string(kid->get_string());
}

JwtResult verify_jwt(std::string_view token, const JwtKey& key, const JwtPolicy& policy,
                     std::string_view room_id, int64_t now) {
  if (token.size() > kMaxTokenBytes) return refuse("token too large");
  const auto d1 = token.find('.');
  const auto d2 = d1 == std::string_view::npos ? d1 : token.find('.', d1 + 1);
  if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos) {
    return refuse("not a compact JWS (three dot-separated parts)");
  }
  auto header = decode_json_object(token.substr(0, d1));
  if (!header) return refuse("bad header");
  auto claims = decode_json_object(token.substr(d1 + 1, d2 - d1 - 1));
  if (!claims) return refuse("bad payload");
  auto sig = base64url_decode(token.substr(d2 + 1));
  if (!sig) return refuse("bad signature encoding");

  JwtResult result;
  if (const json::value* kid = header->if_contains("kid"); kid && kid->is_string()) {
    result.kid = std::string(kid->get_string());
  }
  // Only the configured algorithm: `none`, another family, or another hash size are refused
  // before any key is touched (no algorithm confusion).
  const json::value* alg = header->if_contains("alg");
  if (alg == nullptr || !alg->is_string() || alg->get_string() != policy.alg) {
    return refuse("algorithm not allowed");
  }
  if (header->if_contains("crit") != nullptr) return refuse("unsupported crit header");
  const auto info = alg_info(policy.alg);
  if (!info || !key_fits(*info, key)) return refuse("key does not fit the algorithm");

  const std::string_view signing_input = token.substr(0, d2);
  const bool good =
      info->family == AlgInfo::Family::kHmac
          ? verify_hmac(*info, key.secret(), signing_input, *sig)
          : [&] {
              std::string s = *sig;
              if (info->family == AlgInfo::Family::kEcdsa) {
                auto der = ecdsa_jose_to_der(s, info->ec_part);
                if (!der) return false;
                s = std::move(*der);
              }
              return verify_pkey(*info, static_cast<EVP_PKEY*>(key.pkey()), signing_input, s);
            }();
  if (!good) return refuse("bad signature");

  const auto skew = static_cast<double>(policy.clock_skew.count());
  const auto t = static_cast<double>(now);
  if (claims->if_contains("exp") && !number_claim(*claims, "exp")) return refuse("bad exp");
  if (claims->if_contains("nbf") && !number_claim(*claims, "nbf")) return refuse("bad nbf");
  if (auto exp = number_claim(*claims, "exp"); exp && t >= *exp + skew) return refuse("expired");
  if (auto nbf = number_claim(*claims, "nbf"); nbf && t + skew < *nbf)
    return refuse("not yet valid");
  if (!policy.issuer.empty()) {
    const json::value* iss = claims->if_contains("iss");
    if (iss == nullptr || !iss->is_string() || iss->get_string() != policy.issuer) {
      return refuse("wrong issuer");
    }
  }
  if (!policy.audience.empty()) {
    const json::value* aud = claims->if_contains("aud");
    bool match = false;
    if (aud && aud->is_string()) match = aud->get_string() == policy.audience;
    if (aud && aud->is_array()) {
      for (const auto& a : aud->get_array())
        match = match || (a.is_string() && a.get_string() == policy.audience);
    }
    if (!match) return refuse("wrong audience");
  }
  // The rooms claim limits the token when it is an array (PROTOCOL.md row 10).
  if (const json::value* rooms = claims->if_contains(policy.rooms_claim);
      rooms && rooms->is_array()) {
    bool listed = false;
    for (const auto& r : rooms->get_array())
      listed = listed || (r.is_string() && r.get_string() == room_id);
    if (!listed) return refuse("room not in token", TokenOutcome::kRoomNotAllowed);
  }
  result.outcome = TokenOutcome::kValid;
  return result;
}

}  // namespace sigsrv
