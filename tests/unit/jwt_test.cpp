// Tests the JWT verifier: every algorithm, alg pinning, time/iss/aud/rooms claims, bad input.
#include "auth/jwt.hpp"

#include "../support/test_jwk.hpp"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

namespace sigsrv {
namespace {

constexpr int64_t kNow = 1'700'000'000;
constexpr char kSecret[] = "an HMAC secret that is long enough for HS512 tests";

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// --- encoding and signing helpers (independent of the code under test) -------------------------

std::string B64Url(std::string_view in) {
  return test_jwk::b64url(in);
}

std::string PublicPem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  EXPECT_NE(bio, nullptr);
  EXPECT_EQ(PEM_write_bio_PUBKEY(bio, key), 1);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<std::size_t>(len));
  BIO_free(bio);
  return pem;
}

std::shared_ptr<const JwtKey> KeyFromPem(const std::string& pem) {
  auto r = JwtKey::from_pem(pem);
  if (auto* err = std::get_if<std::string>(&r)) {
    ADD_FAILURE() << "from_pem failed: " << *err;
    return nullptr;
  }
  return std::get<std::shared_ptr<const JwtKey>>(r);
}

const EVP_MD* MdFor(std::string_view alg) {
  if (alg.ends_with("384")) return EVP_sha384();
  if (alg.ends_with("512")) return EVP_sha512();
  return EVP_sha256();
}

std::string HmacSign(const EVP_MD* md, std::string_view secret, std::string_view input) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EXPECT_NE(HMAC(md, secret.data(), static_cast<int>(secret.size()),
                 reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len),
            nullptr);
  return std::string(reinterpret_cast<char*>(mac), len);
}

std::string PkeySign(EVP_PKEY* key, const EVP_MD* md, std::string_view input, bool pss) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_PKEY_CTX* pctx = nullptr;
  EXPECT_EQ(EVP_DigestSignInit(ctx, &pctx, md, nullptr, key), 1);
  if (pss) {
    EXPECT_EQ(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
    EXPECT_EQ(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST), 1);
  }
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  std::size_t len = 0;
  EXPECT_EQ(EVP_DigestSign(ctx, nullptr, &len, in, input.size()), 1);
  std::string sig(len, '\0');
  EXPECT_EQ(
      EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len, in, input.size()), 1);
  sig.resize(len);
  EVP_MD_CTX_free(ctx);
  return sig;
}

// DER ECDSA-Sig-Value -> JOSE r||s, each left-padded to `part` bytes.
std::string DerToJose(const std::string& der, int part) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
  EXPECT_NE(es, nullptr);
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(es, &r, &s);
  std::string out(2 * static_cast<std::size_t>(part), '\0');
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  EXPECT_EQ(BN_bn2binpad(r, o, part), part);
  EXPECT_EQ(BN_bn2binpad(s, o + part, part), part);
  ECDSA_SIG_free(es);
  return out;
}

// --- keys, generated once per test program
// --------------------------------------------------------

struct Keys {
  PkeyPtr rsa;
  PkeyPtr p256;
  PkeyPtr p384;
  std::string rsa_pem;
  std::string p256_pem;
  std::string p384_pem;
  std::shared_ptr<const JwtKey> secret_key;
  std::shared_ptr<const JwtKey> rsa_key;
  std::shared_ptr<const JwtKey> p256_key;
  std::shared_ptr<const JwtKey> p384_key;
};

const Keys& TheKeys() {
  static const Keys* keys = [] {
    auto* k = new Keys;
    k->rsa.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<std::size_t>(2048)));
    k->p256.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
    k->p384.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384"));
    EXPECT_TRUE(k->rsa && k->p256 && k->p384) << "key generation failed";
    k->rsa_pem = PublicPem(k->rsa.get());
    k->p256_pem = PublicPem(k->p256.get());
    k->p384_pem = PublicPem(k->p384.get());
    k->secret_key = JwtKey::from_secret(kSecret);
    k->rsa_key = KeyFromPem(k->rsa_pem);
    k->p256_key = KeyFromPem(k->p256_pem);
    k->p384_key = KeyFromPem(k->p384_pem);
    return k;
  }();
  return *keys;
}

// The raw signature of `input` under `alg`, made with this file's keys.
std::string Sign(std::string_view alg, std::string_view input) {
  const Keys& k = TheKeys();
  const EVP_MD* md = MdFor(alg);
  if (alg.starts_with("HS")) return HmacSign(md, kSecret, input);
  if (alg.starts_with("RS")) return PkeySign(k.rsa.get(), md, input, false);
  if (alg.starts_with("PS")) return PkeySign(k.rsa.get(), md, input, true);
  if (alg == "ES256") return DerToJose(PkeySign(k.p256.get(), md, input, false), 32);
  if (alg == "ES384") return DerToJose(PkeySign(k.p384.get(), md, input, false), 48);
  ADD_FAILURE() << "no signer for " << alg;
  return {};
}

const JwtKey& KeyFor(std::string_view alg) {
  const Keys& k = TheKeys();
  if (alg.starts_with("HS")) return *k.secret_key;
  if (alg == "ES256") return *k.p256_key;
  if (alg == "ES384") return *k.p384_key;
  return *k.rsa_key;
}

JwtPolicy PolicyFor(std::string alg) {
  JwtPolicy p;
  p.alg = std::move(alg);
  return p;
}

// A token with a raw header and payload, signed with `sign_alg`.
std::string MintRaw(std::string_view header, std::string_view payload, std::string_view sign_alg) {
  const std::string input = B64Url(header) + "." + B64Url(payload);
  return input + "." + B64Url(Sign(sign_alg, input));
}

std::string HeaderFor(std::string_view alg, std::string_view extra = "") {
  return std::string(R"({"alg":")") + std::string(alg) + R"(","typ":"JWT")" + std::string(extra) +
         "}";
}

std::string Mint(std::string_view alg, std::string_view payload, std::string_view extra = "") {
  return MintRaw(HeaderFor(alg, extra), payload, alg);
}

std::string ExpPayload(int64_t exp) {
  return R"({"sub":"u1","exp":)" + std::to_string(exp) + "}";
}

struct Parts {
  std::string header;
  std::string payload;
  std::string signature;
};

Parts Split(const std::string& token) {
  const auto d1 = token.find('.');
  const auto d2 = token.find('.', d1 + 1);
  return {token.substr(0, d1), token.substr(d1 + 1, d2 - d1 - 1), token.substr(d2 + 1)};
}

JwtResult Verify(std::string_view token, std::string_view alg, std::string_view room = "room1",
                 int64_t now = kNow) {
  return verify_jwt(token, KeyFor(alg), PolicyFor(std::string(alg)), room, now);
}

// --- every algorithm
// ------------------------------------------------------------------------------

class JwtAlgTest : public ::testing::TestWithParam<const char*> {};

TEST_P(JwtAlgTest, ValidTokenIsAccepted) {
  const std::string alg = GetParam();
  const std::string token = Mint(alg, ExpPayload(kNow + 300), R"(,"kid":"k-)" + alg + "\"");
  const JwtResult r = Verify(token, alg);
  EXPECT_EQ(r.outcome, TokenOutcome::kValid) << r.reason;
  EXPECT_EQ(r.kid, "k-" + alg);
}

TEST_P(JwtAlgTest, TamperedPayloadIsRefused) {
  const std::string alg = GetParam();
  const std::string token = Mint(alg, R"({"sub":"u1","rooms":["room2"]})");
  ASSERT_EQ(Verify(token, alg, "room2").outcome, TokenOutcome::kValid);
  const Parts p = Split(token);
  const std::string forged =
      p.header + "." + B64Url(R"({"sub":"u1","rooms":["room1"]})") + "." + p.signature;
  const JwtResult r = Verify(forged, alg, "room1");
  EXPECT_EQ(r.outcome, TokenOutcome::kInvalid);
  EXPECT_EQ(r.reason.find(forged), std::string::npos);
}

TEST_P(JwtAlgTest, TamperedSignatureByteIsRefused) {
  const std::string alg = GetParam();
  const std::string token = Mint(alg, ExpPayload(kNow + 300));
  const Parts p = Split(token);
  for (std::size_t pos : {std::size_t{0}, std::size_t{7}}) {
    std::string sig = Sign(alg, p.header + "." + p.payload);
    ASSERT_GT(sig.size(), pos);
    sig[sig.size() - 1 - pos] ^= 0x01;
    const std::string forged = p.header + "." + p.payload + "." + B64Url(sig);
    EXPECT_EQ(Verify(forged, alg).outcome, TokenOutcome::kInvalid) << "byte " << pos;
  }
}

TEST_P(JwtAlgTest, EmptySignatureIsRefused) {
  const std::string alg = GetParam();
  const Parts p = Split(Mint(alg, ExpPayload(kNow + 300)));
  EXPECT_EQ(Verify(p.header + "." + p.payload + ".", alg).outcome, TokenOutcome::kInvalid);
}

TEST_P(JwtAlgTest, TruncatedOrExtendedSignatureIsRefused) {
  const std::string alg = GetParam();
  const Parts p = Split(Mint(alg, ExpPayload(kNow + 300)));
  const std::string input = p.header + "." + p.payload;
  const std::string sig = Sign(alg, input);
  const std::string half = sig.substr(0, sig.size() / 2);
  const std::string extended = sig + std::string(1, '\0');
  EXPECT_EQ(Verify(input + "." + B64Url(half), alg).outcome, TokenOutcome::kInvalid);
  EXPECT_EQ(Verify(input + "." + B64Url(extended), alg).outcome, TokenOutcome::kInvalid);
}

INSTANTIATE_TEST_SUITE_P(Jwt, JwtAlgTest,
                         ::testing::Values("HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
                                           "PS256", "ES256", "ES384"),
                         [](const auto& info) { return std::string(info.param); });

// --- algorithm pinning
// ----------------------------------------------------------------------------

TEST(JwtTest, HeaderAlgDifferentFromPolicyIsRefused) {
  const std::string token = Mint("RS256", ExpPayload(kNow + 300));
  const JwtKey& rsa = *TheKeys().rsa_key;
  EXPECT_EQ(verify_jwt(token, rsa, PolicyFor("RS256"), "room1", kNow).outcome,
            TokenOutcome::kValid);
  EXPECT_EQ(verify_jwt(token, rsa, PolicyFor("RS384"), "room1", kNow).outcome,
            TokenOutcome::kInvalid);
  EXPECT_EQ(verify_jwt(token, rsa, PolicyFor("PS256"), "room1", kNow).outcome,
            TokenOutcome::kInvalid);
}

TEST(JwtTest, HeaderAlgMustEqualPolicyEvenWhenTheSignatureVerifies) {
  // Signed exactly as HS256/RS256 would be, but the header names another algorithm.
  const std::string hs = MintRaw(HeaderFor("HS384"), ExpPayload(kNow + 300), "HS256");
  EXPECT_EQ(Verify(hs, "HS256").outcome, TokenOutcome::kInvalid);
  const std::string rs = MintRaw(HeaderFor("PS256"), ExpPayload(kNow + 300), "RS256");
  EXPECT_EQ(Verify(rs, "RS256").outcome, TokenOutcome::kInvalid);
  const std::string none = MintRaw(HeaderFor("none"), ExpPayload(kNow + 300), "HS256");
  EXPECT_EQ(Verify(none, "HS256").outcome, TokenOutcome::kInvalid);
}

TEST(JwtTest, KeyOfTheWrongKindIsRefusedEvenWhenTheSignatureVerifies) {
  const Keys& k = TheKeys();
  // An RSA JwtKey has an empty secret: an HMAC made with "" must not pass as HS256.
  const std::string input = B64Url(HeaderFor("HS256")) + "." + B64Url(ExpPayload(kNow + 300));
  const std::string empty_hmac = input + "." + B64Url(HmacSign(EVP_sha256(), "", input));
  EXPECT_EQ(verify_jwt(empty_hmac, *JwtKey::from_secret(""), PolicyFor("HS256"), "r", kNow).outcome,
            TokenOutcome::kValid);
  EXPECT_EQ(verify_jwt(empty_hmac, *k.rsa_key, PolicyFor("HS256"), "r", kNow).outcome,
            TokenOutcome::kInvalid);
  EXPECT_EQ(verify_jwt(empty_hmac, *k.p256_key, PolicyFor("HS256"), "r", kNow).outcome,
            TokenOutcome::kInvalid);

  // A DER ECDSA signature under an RS256 header must not pass with an EC key.
  const std::string rs_input = B64Url(HeaderFor("RS256")) + "." + B64Url(ExpPayload(kNow + 300));
  const std::string ec_der =
      rs_input + "." + B64Url(PkeySign(k.p256.get(), EVP_sha256(), rs_input, false));
  EXPECT_EQ(verify_jwt(ec_der, *k.p256_key, PolicyFor("RS256"), "r", kNow).outcome,
            TokenOutcome::kInvalid);
}

TEST(JwtTest, PkcsSignatureUnderPssHeaderIsRefused) {
  // Header says PS256 (matching the policy), but the signature is PKCS#1 v1.5.
  const std::string token = MintRaw(HeaderFor("PS256"), ExpPayload(kNow + 300), "RS256");
  EXPECT_EQ(Verify(token, "PS256").outcome, TokenOutcome::kInvalid);
}

TEST(JwtTest, AlgNoneIsRefused) {
  const std::string unsigned_token =
      B64Url(R"({"alg":"none","typ":"JWT"})") + "." + B64Url(ExpPayload(kNow + 300)) + ".";
  for (const char* alg : {"HS256", "RS256", "ES256"}) {
    EXPECT_EQ(Verify(unsigned_token, alg).outcome, TokenOutcome::kInvalid) << alg;
  }
  // Even a policy naming "none" accepts nothing.
  EXPECT_EQ(
      verify_jwt(unsigned_token, *TheKeys().secret_key, PolicyFor("none"), "room1", kNow).outcome,
      TokenOutcome::kInvalid);
  EXPECT_EQ(verify_jwt(unsigned_token, *JwtKey::from_secret(""), PolicyFor("none"), "room1", kNow)
                .outcome,
            TokenOutcome::kInvalid);
}

TEST(JwtTest, MissingOrNonStringAlgIsRefused) {
  EXPECT_EQ(Verify(MintRaw(R"({"typ":"JWT"})", ExpPayload(kNow + 300), "HS256"), "HS256").outcome,
            TokenOutcome::kInvalid);
  EXPECT_EQ(
      Verify(MintRaw(R"({"alg":["HS256"]})", ExpPayload(kNow + 300), "HS256"), "HS256").outcome,
      TokenOutcome::kInvalid);
  EXPECT_EQ(Verify(MintRaw(R"({"alg":"hs256"})", ExpPayload(kNow + 300), "HS256"), "HS256").outcome,
            TokenOutcome::kInvalid);
}

TEST(JwtTest, AlgorithmConfusionIsRefused) {
  // The classic attack: HMAC keyed with the RSA public key's PEM text.
  const std::string& pem = TheKeys().rsa_pem;
  const std::string header = HeaderFor("HS256");
  const std::string input = B64Url(header) + "." + B64Url(ExpPayload(kNow + 300));
  const std::string token = input + "." + B64Url(HmacSign(EVP_sha256(), pem, input));
  const JwtKey& rsa = *TheKeys().rsa_key;

  // Sanity: the token is a well-formed HS256 token for a secret equal to the PEM text.
  EXPECT_EQ(verify_jwt(token, *JwtKey::from_secret(pem), PolicyFor("HS256"), "room1", kNow).outcome,
            TokenOutcome::kValid);

  EXPECT_EQ(verify_jwt(token, rsa, PolicyFor("RS256"), "room1", kNow).outcome,
            TokenOutcome::kInvalid);
  EXPECT_EQ(verify_jwt(token, rsa, PolicyFor("HS256"), "room1", kNow).outcome,
            TokenOutcome::kInvalid);
}

TEST(JwtTest, SecretKeyNeverVerifiesAsymmetricAlgs) {
  const std::string token = Mint("RS256", ExpPayload(kNow + 300));
  EXPECT_EQ(verify_jwt(token, *TheKeys().secret_key, PolicyFor("RS256"), "room1", kNow).outcome,
            TokenOutcome::kInvalid);
  const std::string es = Mint("ES256", ExpPayload(kNow + 300));
  EXPECT_EQ(verify_jwt(es, *TheKeys().rsa_key, PolicyFor("ES256"), "room1", kNow).outcome,
            TokenOutcome::kInvalid);
  EXPECT_EQ(verify_jwt(es, *TheKeys().p384_key, PolicyFor("ES256"), "room1", kNow).outcome,
            TokenOutcome::kInvalid);
}

TEST(JwtTest, CritHeaderIsRefused) {
  EXPECT_EQ(Verify(Mint("HS256", ExpPayload(kNow + 300), R"(,"x":1)"), "HS256").outcome,
            TokenOutcome::kValid);
  EXPECT_EQ(
      Verify(Mint("HS256", ExpPayload(kNow + 300), R"(,"crit":["x"],"x":1)"), "HS256").outcome,
      TokenOutcome::kInvalid);
  EXPECT_EQ(Verify(Mint("ES256", ExpPayload(kNow + 300), R"(,"crit":[])"), "ES256").outcome,
            TokenOutcome::kInvalid);
}

// --- jwt_key_fits
// ---------------------------------------------------------------------------------

TEST(JwtKeyFitsTest, MatchesFamiliesAndCurves) {
  const Keys& k = TheKeys();
  EXPECT_TRUE(jwt_key_fits("HS256", *k.secret_key));
  EXPECT_TRUE(jwt_key_fits("HS512", *k.secret_key));
  EXPECT_FALSE(jwt_key_fits("HS256", *k.rsa_key));
  EXPECT_FALSE(jwt_key_fits("HS384", *k.p256_key));

  EXPECT_TRUE(jwt_key_fits("RS256", *k.rsa_key));
  EXPECT_TRUE(jwt_key_fits("PS256", *k.rsa_key));
  EXPECT_FALSE(jwt_key_fits("RS256", *k.secret_key));
  EXPECT_FALSE(jwt_key_fits("PS256", *k.secret_key));
  EXPECT_FALSE(jwt_key_fits("RS256", *k.p256_key));

  EXPECT_TRUE(jwt_key_fits("ES256", *k.p256_key));
  EXPECT_FALSE(jwt_key_fits("ES256", *k.p384_key));
  EXPECT_TRUE(jwt_key_fits("ES384", *k.p384_key));
  EXPECT_FALSE(jwt_key_fits("ES384", *k.p256_key));
  EXPECT_FALSE(jwt_key_fits("ES256", *k.rsa_key));
  EXPECT_FALSE(jwt_key_fits("ES256", *k.secret_key));

  EXPECT_FALSE(jwt_key_fits("none", *k.secret_key));
  EXPECT_FALSE(jwt_key_fits("ES512", *k.p384_key));
  EXPECT_FALSE(jwt_key_fits("", *k.rsa_key));
}

TEST(JwtKeyTest, FromPemRefusesGarbageWithoutEchoingIt) {
  const std::string bad =
      "-----BEGIN PUBLIC KEY-----\nTOPSECRETnotbase64!!\n-----END PUBLIC KEY-----\n";
  auto r = JwtKey::from_pem(bad);
  ASSERT_TRUE(std::holds_alternative<std::string>(r));
  EXPECT_FALSE(std::get<std::string>(r).empty());
  EXPECT_EQ(std::get<std::string>(r).find("TOPSECRET"), std::string::npos);
  EXPECT_TRUE(std::holds_alternative<std::string>(JwtKey::from_pem("")));
}

TEST(JwtKeyTest, KeyKinds) {
  const Keys& k = TheKeys();
  EXPECT_TRUE(k.secret_key->is_secret());
  EXPECT_FALSE(k.rsa_key->is_secret());
  EXPECT_EQ(k.rsa_key->pkey_type(), EVP_PKEY_RSA);
  EXPECT_EQ(k.p256_key->pkey_type(), EVP_PKEY_EC);
}

// --- time claims
// ----------------------------------------------------------------------------------

TEST(JwtClaimsTest, ExpiredBeyondSkewIsRefused) {
  // Default skew is 30 s.
  EXPECT_EQ(Verify(Mint("HS256", ExpPayload(kNow - 31)), "HS256").outcome, TokenOutcome::kInvalid);
  EXPECT_EQ(Verify(Mint("HS256", ExpPayload(kNow - 3600)), "HS256").outcome,
            TokenOutcome::kInvalid);
}

TEST(JwtClaimsTest, ExpiredWithinSkewIsAccepted) {
  EXPECT_EQ(Verify(Mint("HS256", ExpPayload(kNow - 29)), "HS256").outcome, TokenOutcome::kValid);
  EXPECT_EQ(Verify(Mint("HS256", ExpPayload(kNow)), "HS256").outcome, TokenOutcome::kValid);

  JwtPolicy p = PolicyFor("HS256");
  p.clock_skew = std::chrono::seconds(120);
  const std::string token = Mint("HS256", ExpPayload(kNow - 100));
  EXPECT_EQ(verify_jwt(token, KeyFor("HS256"), p, "room1", kNow).outcome, TokenOutcome::kValid);
  p.clock_skew = std::chrono::seconds(60);
  EXPECT_EQ(verify_jwt(token, KeyFor("HS256"), p, "room1", kNow).outcome, TokenOutcome::kInvalid);
}

TEST(JwtClaimsTest, ExpWithZeroSkewIsExclusive) {
  // RFC 7519 4.1.4: the current time must be before exp.
  JwtPolicy p = PolicyFor("HS256");
  p.clock_skew = std::chrono::seconds(0);
  EXPECT_EQ(verify_jwt(Mint("HS256", ExpPayload(kNow)), KeyFor("HS256"), p, "r", kNow).outcome,
            TokenOutcome::kInvalid);
  EXPECT_EQ(verify_jwt(Mint("HS256", ExpPayload(kNow + 1)), KeyFor("HS256"), p, "r", kNow).outcome,
            TokenOutcome::kValid);
}

TEST(JwtClaimsTest, FractionalExpIsANumber) {
  EXPECT_EQ(Verify(Mint("HS256", R"({"exp":1700000100.5})"), "HS256").outcome,
            TokenOutcome::kValid);
  EXPECT_EQ(Verify(Mint("HS256", R"({"exp":1699990000.5})"), "HS256").outcome,
            TokenOutcome::kInvalid);
}

TEST(JwtClaimsTest, NotBeforeBeyondSkewIsRefused) {
  const std::string far = Mint("HS256", R"({"nbf":)" + std::to_string(kNow + 31) + "}");
  EXPECT_EQ(Verify(far, "HS256").outcome, TokenOutcome::kInvalid);
  // The same token becomes valid once the clock catches up.
  EXPECT_EQ(Verify(far, "HS256", "room1", kNow + 1).outcome, TokenOutcome::kValid);
}

TEST(JwtClaimsTest, NotBeforeWithinSkewIsAccepted) {
  EXPECT_EQ(Verify(Mint("HS256", R"({"nbf":)" + std::to_string(kNow + 29) + "}"), "HS256").outcome,
            TokenOutcome::kValid);
  EXPECT_EQ(Verify(Mint("HS256", R"({"nbf":)" + std::to_string(kNow + 30) + "}"), "HS256").outcome,
            TokenOutcome::kValid);
  EXPECT_EQ(Verify(Mint("HS256", R"({"nbf":)" + std::to_string(kNow - 100) + "}"), "HS256").outcome,
            TokenOutcome::kValid);
}

TEST(JwtClaimsTest, NonNumericTimeClaimsAreRefused) {
  for (const char* payload : {R"({"exp":"1800000000"})", R"({"exp":null})", R"({"exp":true})",
                              R"({"exp":[1800000000]})", R"({"nbf":"0"})", R"({"nbf":{}})"}) {
    EXPECT_EQ(Verify(Mint("HS256", payload), "HS256").outcome, TokenOutcome::kInvalid) << payload;
  }
  // No exp at all is accepted (exp is optional).
  EXPECT_EQ(Verify(Mint("HS256", R"({"sub":"u1"})"), "HS256").outcome, TokenOutcome::kValid);
}

// --- iss / aud
// ------------------------------------------------------------------------------------

TEST(JwtClaimsTest, IssuerIsRequiredWhenConfigured) {
  JwtPolicy p = PolicyFor("HS256");
  p.issuer = "https://auth.example";
  const JwtKey& key = KeyFor("HS256");
  auto outcome = [&](const std::string& payload) {
    return verify_jwt(Mint("HS256", payload), key, p, "room1", kNow).outcome;
  };
  EXPECT_EQ(outcome(R"({"iss":"https://auth.example"})"), TokenOutcome::kValid);
  EXPECT_EQ(outcome(R"({"iss":"https://evil.example"})"), TokenOutcome::kInvalid);
  EXPECT_EQ(outcome(R"({"iss":"https://auth.example/"})"), TokenOutcome::kInvalid);
  EXPECT_EQ(outcome(R"({"sub":"u1"})"), TokenOutcome::kInvalid);
  EXPECT_EQ(outcome(R"({"iss":["https://auth.example"]})"), TokenOutcome::kInvalid);
  EXPECT_EQ(outcome(R"({"iss":null})"), TokenOutcome::kInvalid);

  p.issuer.clear();
  EXPECT_EQ(outcome(R"({"iss":"https://anyone.example"})"), TokenOutcome::kValid);
  EXPECT_EQ(outcome(R"({"sub":"u1"})"), TokenOutcome::kValid);
}

TEST(JwtClaimsTest, AudienceIsRequiredWhenConfigured) {
  JwtPolicy p = PolicyFor("ES256");
  p.audience = "signal";
  const JwtKey& key = KeyFor("ES256");
  auto outcome = [&](const std::string& payload) {
    return verify_jwt(Mint("ES256", payload), key, p, "room1", kNow).outcome;
  };
  EXPECT_EQ(outcome(R"({"aud":"signal"})"), TokenOutcome::kValid);
  EXPECT_EQ(outcome(R"({"aud":["other","signal"]})"), TokenOutcome::kValid);
  EXPECT_EQ(outcome(R"({"aud":["signal","other"]})"), TokenOutcome::kValid);
  EXPECT_EQ(outcome(R"({"aud":["other","signals"]})"), TokenOutcome::kInvalid);
  EXPECT_EQ(outcome(R"({"aud":[]})"), TokenOutcome::kInvalid);
  EXPECT_EQ(outcome(R"({"aud":"signalx"})"), TokenOutcome::kInvalid);
  EXPECT_EQ(outcome(R"({"aud":[1,null,{"a":"signal"}]})"), TokenOutcome::kInvalid);
  EXPECT_EQ(outcome(R"({"sub":"u1"})"), TokenOutcome::kInvalid);

  p.audience.clear();
  EXPECT_EQ(outcome(R"({"aud":"whatever"})"), TokenOutcome::kValid);
  EXPECT_EQ(outcome(R"({"sub":"u1"})"), TokenOutcome::kValid);
}

// --- rooms claim
// ----------------------------------------------------------------------------------

TEST(JwtRoomsTest, DefaultRoomsClaim) {
  const std::string listed = Mint("RS256", R"({"rooms":["lobby","room1"]})");
  EXPECT_EQ(Verify(listed, "RS256", "room1").outcome, TokenOutcome::kValid);
  EXPECT_EQ(Verify(listed, "RS256", "lobby").outcome, TokenOutcome::kValid);
  EXPECT_EQ(Verify(listed, "RS256", "room2").outcome, TokenOutcome::kRoomNotAllowed);
  EXPECT_EQ(Verify(listed, "RS256", "room").outcome, TokenOutcome::kRoomNotAllowed);

  EXPECT_EQ(Verify(Mint("RS256", R"({"rooms":[]})"), "RS256").outcome,
            TokenOutcome::kRoomNotAllowed);
  EXPECT_EQ(Verify(Mint("RS256", R"({"rooms":[1,null]})"), "RS256", "1").outcome,
            TokenOutcome::kRoomNotAllowed);
}

TEST(JwtRoomsTest, AbsentOrNonArrayClaimDoesNotLimit) {
  EXPECT_EQ(Verify(Mint("HS256", R"({"sub":"u1"})"), "HS256", "room9").outcome,
            TokenOutcome::kValid);
  EXPECT_EQ(Verify(Mint("HS256", R"({"rooms":"room1"})"), "HS256", "room9").outcome,
            TokenOutcome::kValid);
  EXPECT_EQ(Verify(Mint("HS256", R"({"rooms":{"room1":true}})"), "HS256", "room9").outcome,
            TokenOutcome::kValid);
  EXPECT_EQ(Verify(Mint("HS256", R"({"rooms":null})"), "HS256", "room9").outcome,
            TokenOutcome::kValid);
}

TEST(JwtRoomsTest, CustomRoomsClaim) {
  JwtPolicy p = PolicyFor("HS256");
  p.rooms_claim = "allowed_rooms";
  const JwtKey& key = KeyFor("HS256");
  const std::string token = Mint("HS256", R"({"allowed_rooms":["a","b"],"rooms":["room1"]})");
  EXPECT_EQ(verify_jwt(token, key, p, "a", kNow).outcome, TokenOutcome::kValid);
  EXPECT_EQ(verify_jwt(token, key, p, "room1", kNow).outcome, TokenOutcome::kRoomNotAllowed);

  // With a custom name, the default "rooms" claim is ignored.
  const std::string only_default = Mint("HS256", R"({"rooms":["room1"]})");
  EXPECT_EQ(verify_jwt(only_default, key, p, "room9", kNow).outcome, TokenOutcome::kValid);
  const std::string not_array = Mint("HS256", R"({"allowed_rooms":"a"})");
  EXPECT_EQ(verify_jwt(not_array, key, p, "room9", kNow).outcome, TokenOutcome::kValid);
}

TEST(JwtRoomsTest, OtherFailuresComeBeforeTheRoomCheck) {
  // A token that would be Forbidden but is also invalid must be Unauthorized (row 9 before 10).
  const std::string expired =
      Mint("HS256", R"({"rooms":["x"],"exp":)" + std::to_string(kNow - 3600) + "}");
  EXPECT_EQ(Verify(expired, "HS256", "room1").outcome, TokenOutcome::kInvalid);

  const Parts p = Split(Mint("HS256", R"({"rooms":["x"]})"));
  const std::string bad_sig = p.header + "." + p.payload + "." + B64Url(std::string(32, 'x'));
  EXPECT_EQ(Verify(bad_sig, "HS256", "room1").outcome, TokenOutcome::kInvalid);

  JwtPolicy pol = PolicyFor("HS256");
  pol.issuer = "iss";
  EXPECT_EQ(
      verify_jwt(Mint("HS256", R"({"rooms":["x"]})"), KeyFor("HS256"), pol, "room1", kNow).outcome,
      TokenOutcome::kInvalid);
}

// --- ECDSA signature format
// -----------------------------------------------------------------------

TEST(JwtTest, EcdsaSignatureOfWrongLengthIsRefused) {
  for (const char* alg : {"ES256", "ES384"}) {
    const std::string token = Mint(alg, ExpPayload(kNow + 300));
    const Parts p = Split(token);
    const std::string input = p.header + "." + p.payload;
    const std::string jose = Sign(alg, input);
    ASSERT_EQ(Verify(token, alg).outcome, TokenOutcome::kValid);

    const std::string shorter = jose.substr(0, jose.size() - 1);
    const std::string longer = std::string(1, '\0') + jose;
    const std::string half = jose.substr(0, jose.size() / 2);
    for (const std::string& sig : {shorter, longer, half}) {
      EXPECT_EQ(Verify(input + "." + B64Url(sig), alg).outcome, TokenOutcome::kInvalid)
          << alg << " length " << sig.size();
    }
    // A DER signature (what OpenSSL produces) is not JOSE.
    const std::string der =
        PkeySign(std::string_view(alg) == "ES256" ? TheKeys().p256.get() : TheKeys().p384.get(),
                 MdFor(alg), input, false);
    EXPECT_EQ(Verify(input + "." + B64Url(der), alg).outcome, TokenOutcome::kInvalid) << alg;
  }
}

TEST(JwtTest, EcdsaZeroSignatureIsRefused) {
  const Parts p = Split(Mint("ES256", ExpPayload(kNow + 300)));
  const std::string forged = p.header + "." + p.payload + "." + B64Url(std::string(64, '\0'));
  EXPECT_EQ(Verify(forged, "ES256").outcome, TokenOutcome::kInvalid);
}

// --- malformed tokens
// -----------------------------------------------------------------------------

TEST(JwtMalformedTest, WrongNumberOfParts) {
  const std::string token = Mint("HS256", ExpPayload(kNow + 300));
  const Parts p = Split(token);
  ASSERT_EQ(Verify(token, "HS256").outcome, TokenOutcome::kValid);
  EXPECT_EQ(Verify(p.header + "." + p.payload, "HS256").outcome, TokenOutcome::kInvalid);
  EXPECT_EQ(Verify(token + "." + p.signature, "HS256").outcome, TokenOutcome::kInvalid);
  EXPECT_EQ(Verify(token + ".", "HS256").outcome, TokenOutcome::kInvalid);
  EXPECT_EQ(Verify(p.header, "HS256").outcome, TokenOutcome::kInvalid);
  for (const char* junk : {"", ".", "..", "...", "a.b", "a.b.c.d"}) {
    EXPECT_EQ(Verify(junk, "HS256").outcome, TokenOutcome::kInvalid) << junk;
  }
}

TEST(JwtMalformedTest, BadBase64Url) {
  const Parts p = Split(Mint("HS256", ExpPayload(kNow + 300)));
  // Standard-alphabet characters and padding are not base64url.
  EXPECT_EQ(Verify(p.header + "=." + p.payload + "." + p.signature, "HS256").outcome,
            TokenOutcome::kInvalid);
  EXPECT_EQ(Verify(p.header + "." + p.payload + "." + p.signature + "=", "HS256").outcome,
            TokenOutcome::kInvalid);
  std::string plus = p.payload;
  plus[1] = '+';
  EXPECT_EQ(Verify(p.header + "." + plus + "." + p.signature, "HS256").outcome,
            TokenOutcome::kInvalid);
  std::string star = p.signature;
  star[0] = '*';
  EXPECT_EQ(Verify(p.header + "." + p.payload + "." + star, "HS256").outcome,
            TokenOutcome::kInvalid);
  // Whitespace inside a part.
  EXPECT_EQ(Verify(p.header + "." + p.payload + ". " + p.signature, "HS256").outcome,
            TokenOutcome::kInvalid);
}

TEST(JwtMalformedTest, Base64LengthOneModFour) {
  // A payload whose encoding is 0 mod 4, then one more character: 1 mod 4, never valid.
  std::string payload = R"({"p":""})";
  while (B64Url(payload).size() % 4 != 0) payload.insert(6, "x");
  const std::string pp = B64Url(payload) + "A";
  ASSERT_EQ(pp.size() % 4, 1u);
  const std::string input = B64Url(HeaderFor("HS256")) + "." + pp;
  EXPECT_EQ(Verify(input + "." + B64Url(Sign("HS256", input)), "HS256").outcome,
            TokenOutcome::kInvalid);
  // The signature part too.
  const Parts p = Split(Mint("HS256", ExpPayload(kNow + 300)));
  std::string sig = p.signature;  // 43 chars = 3 mod 4; adding two makes 1 mod 4
  ASSERT_EQ(sig.size() % 4, 3u);
  EXPECT_EQ(Verify(p.header + "." + p.payload + "." + sig + "AA", "HS256").outcome,
            TokenOutcome::kInvalid);
}

TEST(JwtMalformedTest, HeaderOrPayloadNotAJsonObject) {
  const auto raw = [](std::string_view header, std::string_view payload) {
    const std::string input = B64Url(header) + "." + B64Url(payload);
    return input + "." + B64Url(Sign("HS256", input));
  };
  const std::string good_payload = ExpPayload(kNow + 300);
  EXPECT_EQ(Verify(raw(HeaderFor("HS256"), good_payload), "HS256").outcome, TokenOutcome::kValid);
  EXPECT_EQ(Verify(raw("not json", good_payload), "HS256").outcome, TokenOutcome::kInvalid);
  EXPECT_EQ(Verify(raw(R"({"alg":"HS256")", good_payload), "HS256").outcome,
            TokenOutcome::kInvalid);
  EXPECT_EQ(Verify(raw(R"(["HS256"])", good_payload), "HS256").outcome, TokenOutcome::kInvalid);
  EXPECT_EQ(Verify(raw("", good_payload), "HS256").outcome, TokenOutcome::kInvalid);
  EXPECT_EQ(Verify(raw(HeaderFor("HS256"), R"([1,2,3])"), "HS256").outcome, TokenOutcome::kInvalid);
  EXPECT_EQ(Verify(raw(HeaderFor("HS256"), R"("a string")"), "HS256").outcome,
            TokenOutcome::kInvalid);
  EXPECT_EQ(Verify(raw(HeaderFor("HS256"), "null"), "HS256").outcome, TokenOutcome::kInvalid);
  EXPECT_EQ(Verify(raw(HeaderFor("HS256"), R"({"a":1} trailing)"), "HS256").outcome,
            TokenOutcome::kInvalid);
  EXPECT_EQ(Verify(raw(HeaderFor("HS256"), std::string("\xff\xfe{}", 4)), "HS256").outcome,
            TokenOutcome::kInvalid);
}

TEST(JwtMalformedTest, OversizeTokenIsRefused) {
  // Build validly signed tokens of exactly kMaxTokenBytes and one byte more.
  std::string at_limit;
  std::string over_limit;
  for (int kid_len = 0; kid_len < 4 && (at_limit.empty() || over_limit.empty()); ++kid_len) {
    const std::string extra = R"(,"kid":")" + std::string(kid_len, 'k') + "\"";
    for (std::size_t pad = 6000; pad < 6200; ++pad) {
      const std::string token = Mint("HS256", R"({"pad":")" + std::string(pad, 'p') + "\"}", extra);
      if (token.size() == kMaxTokenBytes && at_limit.empty()) at_limit = token;
      if (token.size() == kMaxTokenBytes + 1 && over_limit.empty()) over_limit = token;
    }
  }
  ASSERT_EQ(at_limit.size(), kMaxTokenBytes);
  ASSERT_EQ(over_limit.size(), kMaxTokenBytes + 1);
  EXPECT_EQ(Verify(at_limit, "HS256").outcome, TokenOutcome::kValid);
  const JwtResult r = Verify(over_limit, "HS256");
  EXPECT_EQ(r.outcome, TokenOutcome::kInvalid);
  EXPECT_EQ(r.reason.find("pppp"), std::string::npos);

  const std::string huge(1 << 20, 'A');
  EXPECT_EQ(Verify(huge, "HS256").outcome, TokenOutcome::kInvalid);
  EXPECT_EQ(Verify(huge + "." + huge + "." + huge, "HS256").outcome, TokenOutcome::kInvalid);
  EXPECT_EQ(jwt_kid(huge + "." + huge), std::nullopt);
}

TEST(JwtMalformedTest, BinaryGarbageDoesNotCrash) {
  std::string garbage;
  for (int i = 0; i < 256; ++i) garbage += static_cast<char>(i);
  for (const std::string& t : {garbage, garbage + "." + garbage + "." + garbage,
                               std::string("\0.\0.\0", 5), std::string(3000, '.')}) {
    for (const char* alg : {"HS256", "RS256", "ES256"}) {
      EXPECT_EQ(Verify(t, alg).outcome, TokenOutcome::kInvalid);
    }
    EXPECT_EQ(jwt_kid(t), std::nullopt);
  }
}

// --- reasons never echo the token
// -----------------------------------------------------------------

TEST(JwtTest, ReasonNeverContainsTheToken) {
  const std::string good = Mint("HS256", ExpPayload(kNow + 300));
  const Parts p = Split(good);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"bad signature", p.header + "." + p.payload + "." + B64Url(std::string(32, 'z'))},
      {"expired", Mint("HS256", ExpPayload(kNow - 3600))},
      {"wrong alg", Mint("HS384", ExpPayload(kNow + 300))},
      {"bad header", B64Url("not json") + "." + p.payload + "." + p.signature},
      {"two parts", p.header + "." + p.payload},
      {"room", Mint("HS256", R"({"rooms":["secret-room-list"]})")},
  };
  for (const auto& [name, token] : cases) {
    const JwtResult r = Verify(token, "HS256", "room1");
    EXPECT_NE(r.outcome, TokenOutcome::kValid) << name;
    EXPECT_FALSE(r.reason.empty()) << name;
    EXPECT_EQ(r.reason.find(token), std::string::npos) << name << ": " << r.reason;
    const Parts tp = Split(token);
    for (const std::string& part : {tp.header, tp.payload, tp.signature}) {
      if (part.size() >= 8) {
        EXPECT_EQ(r.reason.find(part), std::string::npos) << name;
      }
    }
    EXPECT_EQ(r.reason.find("secret-room-list"), std::string::npos) << name;
  }
}

// --- jwt_kid
// --------------------------------------------------------------------------------------

TEST(JwtKidTest, ReturnsTheKid) {
  EXPECT_EQ(jwt_kid(Mint("RS256", ExpPayload(kNow), R"(,"kid":"2024-key")")), "2024-key");
  EXPECT_EQ(jwt_kid(Mint("HS256", ExpPayload(kNow), R"(,"kid":"")")), "");
  // Not verified: a bad signature still yields the kid.
  EXPECT_EQ(jwt_kid(B64Url(R"({"alg":"RS256","kid":"k1"})") + ".e30.AAAA"), "k1");
  EXPECT_EQ(jwt_kid(B64Url(R"({"alg":"RS256","kid":"k1"})") + ".whatever"), "k1");
}

TEST(JwtKidTest, NulloptWithoutAStringKid) {
  EXPECT_EQ(jwt_kid(Mint("RS256", ExpPayload(kNow))), std::nullopt);
  EXPECT_EQ(jwt_kid(Mint("RS256", ExpPayload(kNow), R"(,"kid":7)")), std::nullopt);
  EXPECT_EQ(jwt_kid(Mint("RS256", ExpPayload(kNow), R"(,"kid":null)")), std::nullopt);
  EXPECT_EQ(jwt_kid("no-dots-at-all"), std::nullopt);
  EXPECT_EQ(jwt_kid(""), std::nullopt);
  EXPECT_EQ(jwt_kid(B64Url("not json") + ".e30.sig"), std::nullopt);
  EXPECT_EQ(jwt_kid("e30+.e30.sig"), std::nullopt);
}

// --- base64url_decode
// -----------------------------------------------------------------------------

TEST(Base64UrlTest, Rfc4648VectorsUnpadded) {
  EXPECT_EQ(base64url_decode(""), "");
  EXPECT_EQ(base64url_decode("Zg"), "f");
  EXPECT_EQ(base64url_decode("Zm8"), "fo");
  EXPECT_EQ(base64url_decode("Zm9v"), "foo");
  EXPECT_EQ(base64url_decode("Zm9vYg"), "foob");
  EXPECT_EQ(base64url_decode("Zm9vYmE"), "fooba");
  EXPECT_EQ(base64url_decode("Zm9vYmFy"), "foobar");
}

TEST(Base64UrlTest, UrlSafeAlphabet) {
  // "+/8" in standard base64 is "-_8" in base64url.
  EXPECT_EQ(base64url_decode("-_8"), std::string("\xfb\xff", 2));
  EXPECT_EQ(base64url_decode("____"), std::string("\xff\xff\xff", 3));
  EXPECT_EQ(base64url_decode("AAAA"), std::string(3, '\0'));
}

TEST(Base64UrlTest, RoundTripsAllByteValues) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (std::size_t n = 0; n <= all.size(); n += 37) {
    const std::string in = all.substr(0, n);
    EXPECT_EQ(base64url_decode(B64Url(in)), in) << n;
  }
}

TEST(Base64UrlTest, RejectsStandardAlphabetAndPadding) {
  EXPECT_EQ(base64url_decode("+_8"), std::nullopt);
  EXPECT_EQ(base64url_decode("-/8"), std::nullopt);
  EXPECT_EQ(base64url_decode("Zg=="), std::nullopt);
  EXPECT_EQ(base64url_decode("Zm8="), std::nullopt);
  EXPECT_EQ(base64url_decode("Zm9v===="), std::nullopt);
  EXPECT_EQ(base64url_decode("Zm 9"), std::nullopt);
  EXPECT_EQ(base64url_decode("Zm9\n"), std::nullopt);
  EXPECT_EQ(base64url_decode("Zm.v"), std::nullopt);
  EXPECT_EQ(base64url_decode(std::string("Zm\0v", 4)), std::nullopt);
  EXPECT_EQ(base64url_decode("Zm\xc3\xa9"), std::nullopt);
}

TEST(Base64UrlTest, RejectsLengthOneModFour) {
  EXPECT_EQ(base64url_decode("Z"), std::nullopt);
  EXPECT_EQ(base64url_decode("A"), std::nullopt);
  EXPECT_EQ(base64url_decode("Zm9vY"), std::nullopt);
  EXPECT_EQ(base64url_decode("Zm9vYmFyA"), std::nullopt);
}

TEST(Base64UrlTest, RejectsNonCanonicalTrailingBits) {
  // "Zg" is canonical for "f"; "Zh".."Zv" carry non-zero leftover bits.
  EXPECT_EQ(base64url_decode("Zh"), std::nullopt);
  EXPECT_EQ(base64url_decode("Zv"), std::nullopt);
  EXPECT_EQ(base64url_decode("Zm9"), std::nullopt);  // canonical is "Zm8"
  EXPECT_EQ(base64url_decode("Zm9vYh"), std::nullopt);
  EXPECT_EQ(base64url_decode("Zm9vYmF"), std::nullopt);  // canonical is "Zm9vYmE"
  EXPECT_EQ(base64url_decode("-_9"), std::nullopt);
}

}  // namespace
}  // namespace sigsrv
