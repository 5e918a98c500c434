// Tests the JWKS core: JWK Set parsing (keys made here with OpenSSL), key choice by kid,
// JWKS_URL splitting, and the cache policy with an injected clock and fetch.
#include "auth/jwks.hpp"

#include <gtest/gtest.h>

#include "../support/test_jwk.hpp"
#include "obs/metrics.hpp"

namespace sigsrv {
namespace {

namespace json = boost::json;
using test_jwk::public_jwk;
using namespace std::chrono_literals;

constexpr int64_t kNow = 1'700'000'000;

JwtPolicy policy(std::string alg) {
  JwtPolicy p;
  p.alg = std::move(alg);
  return p;
}

// The keys are slow to make (RSA): once per test program.
EVP_PKEY* rsa_a() {
  static test_jwk::Pkey k = test_jwk::rsa_key();
  return k.get();
}
EVP_PKEY* rsa_b() {
  static test_jwk::Pkey k = test_jwk::rsa_key();
  return k.get();
}
EVP_PKEY* p256() {
  static test_jwk::Pkey k = test_jwk::ec_key("P-256");
  return k.get();
}
EVP_PKEY* p384() {
  static test_jwk::Pkey k = test_jwk::ec_key("P-384");
  return k.get();
}

JwtResult verify_with(const JwksParseResult& r, EVP_PKEY* signer, const std::string& kid,
                      const std::string& alg) {
  const std::string token = test_jwk::sign(signer, kid, {{"exp", kNow + 60}});
  KeyPick pick = pick_jwks_key(r.set.get(), jwt_kid(token));
  if (!pick.key) return JwtResult{TokenOutcome::kInvalid, pick.reason, {}};
  return verify_jwt(token, *pick.key, policy(alg), "room", kNow);
}

std::vector<std::string> kids(const JwksParseResult& r) {
  std::vector<std::string> out;
  if (r.set) {
    for (const auto& e : r.set->keys) out.push_back(e.kid);
  }
  return out;
}

TEST(JwksParseTest, RsaKeysVerifyTheirTokens) {
  const auto r = parse_jwks(
      test_jwk::jwks_document(
          {public_jwk(rsa_a(), "a", {{"use", "sig"}, {"alg", "RS256"}}), public_jwk(rsa_b(), "b")}),
      "RS256");
  ASSERT_TRUE(r.set) << r.error;
  EXPECT_EQ(kids(r), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(verify_with(r, rsa_a(), "a", "RS256").outcome, TokenOutcome::kValid);
  EXPECT_EQ(verify_with(r, rsa_b(), "b", "RS256").outcome, TokenOutcome::kValid);
  // Signed by b, named a: the key a refuses it.
  EXPECT_EQ(verify_with(r, rsa_b(), "a", "RS256").outcome, TokenOutcome::kInvalid);
}

TEST(JwksParseTest, EcKeysVerifyTheirTokens) {
  auto r = parse_jwks(test_jwk::jwks_document({public_jwk(p256(), "ec1")}), "ES256");
  ASSERT_TRUE(r.set) << r.error;
  EXPECT_EQ(verify_with(r, p256(), "ec1", "ES256").outcome, TokenOutcome::kValid);
  r = parse_jwks(test_jwk::jwks_document({public_jwk(p384(), "ec2")}), "ES384");
  ASSERT_TRUE(r.set) << r.error;
  EXPECT_EQ(verify_with(r, p384(), "ec2", "ES384").outcome, TokenOutcome::kValid);
}

TEST(JwksParseTest, PssUsesRsaKeys) {
  const auto r = parse_jwks(test_jwk::jwks_document({public_jwk(rsa_a(), "a")}), "PS256");
  ASSERT_TRUE(r.set) << r.error;
  EXPECT_EQ(r.set->keys.size(), 1u);
}

TEST(JwksParseTest, SkipsKeysThatDoNotFitOrAreNotForSigning) {
  json::object bad_point = public_jwk(p256(), "bad-point");
  std::string y = *base64url_decode(std::string(bad_point["y"].as_string()));
  y.back() = static_cast<char>(y.back() ^ 1);
  bad_point["y"] = test_jwk::b64url(y);
  json::object short_x = public_jwk(p256(), "short-x");
  short_x["x"] =
      test_jwk::b64url(base64url_decode(std::string(short_x["x"].as_string()))->substr(1));
  const auto small = test_jwk::rsa_key(1024);
  const auto r =
      parse_jwks(test_jwk::jwks_document({
                     public_jwk(rsa_a(), "enc", {{"use", "enc"}}),
                     public_jwk(rsa_a(), "other-alg", {{"alg", "RS512"}}),
                     public_jwk(rsa_a(), "no-verify", {{"key_ops", json::array{"encrypt"}}}),
                     public_jwk(p256(), "ec-for-rs"),
                     public_jwk(small.get(), "small"),
                     json::object{{"kty", "oct"}, {"kid", "hmac"}, {"k", "c2VjcmV0"}},
                     json::object{{"kty", "RSA"}, {"kid", "no-n"}, {"e", "AQAB"}},
                     bad_point,
                     short_x,
                     public_jwk(rsa_a(), "good", {{"key_ops", json::array{"verify"}}}),
                     public_jwk(rsa_b(), "good"),
                     json::object{{"kid", 5}},
                     json::object{},
                 }),
                 "RS256");
  ASSERT_TRUE(r.set) << r.error;
  EXPECT_EQ(kids(r), (std::vector<std::string>{"good"}));
  EXPECT_EQ(r.skipped.size(), 12u);
  for (const auto& s : r.skipped) EXPECT_EQ(s.find("AQAB"), std::string::npos) << s;
}

TEST(JwksParseTest, EcKeysOfTheOtherCurveAreSkipped) {
  const auto r = parse_jwks(
      test_jwk::jwks_document({public_jwk(p384(), "p384"), public_jwk(p256(), "p256")}), "ES256");
  ASSERT_TRUE(r.set) << r.error;
  EXPECT_EQ(kids(r), (std::vector<std::string>{"p256"}));
}

TEST(JwksParseTest, PointOffTheCurveIsSkipped) {
  json::object jwk = public_jwk(p256(), "k");
  std::string y = *base64url_decode(std::string(jwk["y"].as_string()));
  y[5] = static_cast<char>(y[5] ^ 0x40);
  jwk["y"] = test_jwk::b64url(y);
  const auto r = parse_jwks(test_jwk::jwks_document({jwk}), "ES256");
  EXPECT_FALSE(r.set);
  ASSERT_EQ(r.skipped.size(), 1u);
}

TEST(JwksParseTest, UnusableDocumentsAreErrors) {
  EXPECT_FALSE(parse_jwks("", "RS256").set);
  EXPECT_FALSE(parse_jwks("[]", "RS256").set);
  EXPECT_FALSE(parse_jwks("{\"keys\":{}}", "RS256").set);
  EXPECT_FALSE(parse_jwks("{\"keys\":[]}", "RS256").set);
  const auto r = parse_jwks(test_jwk::jwks_document({public_jwk(p256(), "ec")}), "RS256");
  EXPECT_FALSE(r.set);
  EXPECT_NE(r.error.find("RS256"), std::string::npos);
  EXPECT_FALSE(
      parse_jwks("{\"keys\":[1,2,{\"kty\":\"RSA\",\"n\":\"!\",\"e\":\"AQAB\"}]}", "RS256").set);
}

TEST(JwksParseTest, KeyCountIsCapped) {
  std::string doc = "{\"keys\":[";
  const json::object jwk = public_jwk(rsa_a(), "");
  for (std::size_t i = 0; i < kMaxJwksKeys + 3; ++i) {
    json::object k = jwk;
    k["kid"] = "k" + std::to_string(i);
    doc += (i ? "," : "") + json::serialize(k);
  }
  doc += "]}";
  const auto r = parse_jwks(doc, "RS256");
  ASSERT_TRUE(r.set);
  EXPECT_EQ(r.set->keys.size(), kMaxJwksKeys);
  EXPECT_EQ(r.skipped.size(), 3u);
}

TEST(JwksPickTest, ByKidAndWithoutKid) {
  const auto one = parse_jwks(test_jwk::jwks_document({public_jwk(rsa_a(), "a")}), "RS256");
  const auto two = parse_jwks(
      test_jwk::jwks_document({public_jwk(rsa_a(), "a"), public_jwk(rsa_b(), "")}), "RS256");
  ASSERT_TRUE(one.set && two.set);

  auto none = pick_jwks_key(nullptr, std::string("a"));
  EXPECT_FALSE(none.key);
  EXPECT_TRUE(none.refetch_may_help);

  EXPECT_TRUE(pick_jwks_key(one.set.get(), std::string("a")).key);
  auto unknown = pick_jwks_key(one.set.get(), std::string("z"));
  EXPECT_FALSE(unknown.key);
  EXPECT_TRUE(unknown.refetch_may_help);

  // Without kid: the only key, else nothing (and a refetch would not change that).
  EXPECT_TRUE(pick_jwks_key(one.set.get(), std::nullopt).key);
  auto ambiguous = pick_jwks_key(two.set.get(), std::nullopt);
  EXPECT_FALSE(ambiguous.key);
  EXPECT_FALSE(ambiguous.refetch_may_help);
  // A kid-less JWK is not picked by a token that names a kid.
  EXPECT_FALSE(pick_jwks_key(two.set.get(), std::string("b")).key);

  const std::string token_without_kid = test_jwk::sign(rsa_a(), "", {{"exp", kNow + 60}});
  auto pick = pick_jwks_key(one.set.get(), jwt_kid(token_without_kid));
  ASSERT_TRUE(pick.key);
  EXPECT_EQ(verify_jwt(token_without_kid, *pick.key, policy("RS256"), "r", kNow).outcome,
            TokenOutcome::kValid);
}

TEST(JwksUrlTest, SplitsHttpsAndHttp) {
  auto ep =
      std::get<JwksEndpoint>(parse_jwks_url("https://tenant.auth0.com/.well-known/jwks.json"));
  EXPECT_TRUE(ep.tls);
  EXPECT_EQ(ep.host, "tenant.auth0.com");
  EXPECT_EQ(ep.port, "443");
  EXPECT_EQ(ep.host_header, "tenant.auth0.com");
  EXPECT_EQ(ep.target, "/.well-known/jwks.json");

  ep = std::get<JwksEndpoint>(parse_jwks_url("http://127.0.0.1:8080/keys?v=2"));
  EXPECT_FALSE(ep.tls);
  EXPECT_EQ(ep.host, "127.0.0.1");
  EXPECT_EQ(ep.port, "8080");
  EXPECT_EQ(ep.host_header, "127.0.0.1:8080");
  EXPECT_EQ(ep.target, "/keys?v=2");

  ep = std::get<JwksEndpoint>(parse_jwks_url("HTTPS://[::1]:8443"));
  EXPECT_TRUE(ep.tls);
  EXPECT_EQ(ep.host, "::1");
  EXPECT_EQ(ep.host_header, "[::1]:8443");
  EXPECT_EQ(ep.target, "/");
}

TEST(JwksUrlTest, RefusesOtherSchemesAndMissingHosts) {
  EXPECT_TRUE(std::holds_alternative<std::string>(parse_jwks_url("ftp://x/jwks.json")));
  EXPECT_TRUE(std::holds_alternative<std::string>(parse_jwks_url("https:///jwks.json")));
  EXPECT_TRUE(std::holds_alternative<std::string>(parse_jwks_url("/jwks.json")));
  EXPECT_TRUE(std::holds_alternative<std::string>(parse_jwks_url("https://x:0/")));
  EXPECT_TRUE(std::holds_alternative<std::string>(parse_jwks_url("https://x:99999/")));
}

TEST(JwksUrlTest, LogFormDropsUserinfoAndQuery) {
  EXPECT_EQ(jwks_url_for_logs("https://user:s3cret@idp.example:8443/jwks.json?token=s3cret#f"),
            "https://idp.example:8443/jwks.json");
}

// --- cache policy -----------------------------------------------------------------------------

class JwksCacheTest : public ::testing::Test {
 protected:
  using TimePoint = JwksCache::TimePoint;

  JwksCache make(std::chrono::milliseconds ttl = 60s, std::size_t max_waiters = 8) {
    JwksCacheOptions o;
    o.alg = "RS256";
    o.ttl = ttl;
    o.max_waiters = max_waiters;
    return JwksCache(o, [this] { ++fetches; });
  }
  static JwksFetch ok(const std::string& body) { return JwksFetch{true, body, {}}; }
  static JwksFetch error() { return JwksFetch{false, {}, "connection refused"}; }

  std::string doc_a = test_jwk::jwks_document({public_jwk(rsa_a(), "a")});
  std::string doc_ab =
      test_jwk::jwks_document({public_jwk(rsa_a(), "a"), public_jwk(rsa_b(), "b")});
  TimePoint t0 = TimePoint{} + 1000s;
  int fetches = 0;
};

TEST_F(JwksCacheTest, FetchesAtStartThenEveryTtl) {
  auto cache = make(60s);
  EXPECT_FALSE(cache.current());
  EXPECT_FALSE(cache.tick(t0).has_value());  // started
  EXPECT_EQ(fetches, 1);
  EXPECT_FALSE(cache.tick(t0 + 1s).has_value());  // in flight: no second fetch
  EXPECT_EQ(fetches, 1);
  const auto out = cache.fetched(t0 + 1s, ok(doc_a));
  EXPECT_TRUE(out.ok);
  EXPECT_EQ(out.keys, 1u);
  ASSERT_TRUE(cache.current());
  EXPECT_EQ(cache.tick(t0 + 2s), t0 + 61s);
  EXPECT_EQ(fetches, 1);
  EXPECT_FALSE(cache.tick(t0 + 61s).has_value());
  EXPECT_EQ(fetches, 2);
  cache.fetched(t0 + 61s, ok(doc_ab));
  EXPECT_EQ(cache.current()->keys.size(), 2u);
}

TEST_F(JwksCacheTest, FailedRefreshKeepsTheLastGoodSetAndBacksOff) {
  auto cache = make(60s);
  cache.tick(t0);
  cache.fetched(t0, ok(doc_a));
  const auto good = cache.current();
  const uint64_t errors_before = metrics().jwks_refresh(false).value();

  cache.tick(t0 + 60s);
  auto out = cache.fetched(t0 + 60s, error());
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.keys, 1u);
  EXPECT_EQ(out.error, "connection refused");
  EXPECT_EQ(cache.current(), good);
  EXPECT_EQ(metrics().jwks_refresh(false).value(), errors_before + 1);
  EXPECT_EQ(metrics().jwks_keys.value(), 1);

  // A body that is not a usable key set is a failure too.
  EXPECT_EQ(cache.tick(t0 + 61s), t0 + 65s);  // retry after 5 s
  cache.tick(t0 + 65s);
  out = cache.fetched(t0 + 65s, ok("{\"keys\":[]}"));
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(cache.current(), good);
  EXPECT_EQ(cache.tick(t0 + 66s), t0 + 75s);  // then 10 s, 20 s, ... up to 60 s
  TimePoint t = t0 + 75s;
  std::vector<std::chrono::seconds> waits;
  for (int i = 0; i < 5; ++i) {
    ASSERT_FALSE(cache.tick(t).has_value());
    cache.fetched(t, error());
    const auto due = cache.tick(t);
    ASSERT_TRUE(due.has_value());
    waits.push_back(std::chrono::duration_cast<std::chrono::seconds>(*due - t));
    t = *due;
  }
  EXPECT_EQ(waits, (std::vector<std::chrono::seconds>{20s, 40s, 60s, 60s, 60s}));
  EXPECT_EQ(cache.current(), good);

  cache.tick(t);
  cache.fetched(t, ok(doc_ab));
  EXPECT_EQ(cache.current()->keys.size(), 2u);
  EXPECT_EQ(cache.tick(t + 1s), t + 60s);  // back to the TTL
}

TEST_F(JwksCacheTest, UnknownKidWaitsForTheFetchInFlight) {
  auto cache = make();
  cache.tick(t0);
  int resumed = 0;
  EXPECT_EQ(cache.await_refresh(t0, [&] { ++resumed; }), JwksWait::kWaiting);
  EXPECT_EQ(cache.await_refresh(t0, [&] { ++resumed; }), JwksWait::kWaiting);
  EXPECT_EQ(fetches, 1);  // they share the start-up fetch
  EXPECT_EQ(resumed, 0);
  cache.fetched(t0 + 1s, error());  // woken whatever the outcome
  EXPECT_EQ(resumed, 2);
}

TEST_F(JwksCacheTest, UnknownKidRefetchIsRateLimited) {
  auto cache = make();
  cache.tick(t0);
  cache.fetched(t0, ok(doc_a));
  int resumed = 0;
  // Within 5 s of the last fetch: refused at once, no request.
  EXPECT_EQ(cache.await_refresh(t0 + 4s, [&] { ++resumed; }), JwksWait::kRateLimited);
  EXPECT_EQ(fetches, 1);
  // After it: one fetch, shared by everyone who asks while it runs.
  EXPECT_EQ(cache.await_refresh(t0 + 5s, [&] { ++resumed; }), JwksWait::kWaiting);
  EXPECT_EQ(cache.await_refresh(t0 + 5s, [&] { ++resumed; }), JwksWait::kWaiting);
  EXPECT_EQ(fetches, 2);
  cache.fetched(t0 + 6s, ok(doc_ab));
  EXPECT_EQ(resumed, 2);
  EXPECT_TRUE(pick_jwks_key(cache.current().get(), std::string("b")).key);
  EXPECT_EQ(cache.await_refresh(t0 + 9s, [&] { ++resumed; }), JwksWait::kRateLimited);
  EXPECT_EQ(fetches, 2);
  // The demand fetch counts as a refresh: the TTL runs from it.
  EXPECT_EQ(cache.tick(t0 + 9s), t0 + 66s);
}

TEST_F(JwksCacheTest, RateLimitCountsFailedFetchesToo) {
  auto cache = make();
  cache.tick(t0);
  cache.fetched(t0 + 1s, error());
  EXPECT_EQ(cache.await_refresh(t0 + 2s, [] {}), JwksWait::kRateLimited);
  EXPECT_EQ(cache.await_refresh(t0 + 5s, [] {}), JwksWait::kWaiting);
  EXPECT_EQ(fetches, 2);
}

TEST_F(JwksCacheTest, WaitersAreBounded) {
  auto cache = make(60s, 2);
  cache.tick(t0);
  int resumed = 0;
  EXPECT_EQ(cache.await_refresh(t0, [&] { ++resumed; }), JwksWait::kWaiting);
  EXPECT_EQ(cache.await_refresh(t0, [&] { ++resumed; }), JwksWait::kWaiting);
  EXPECT_EQ(cache.await_refresh(t0, [&] { ++resumed; }), JwksWait::kTooManyWaiters);
  cache.fetched(t0, ok(doc_a));
  EXPECT_EQ(resumed, 2);
  // Room again once they were woken.
  EXPECT_EQ(cache.await_refresh(t0 + 5s, [&] { ++resumed; }), JwksWait::kWaiting);
}

TEST_F(JwksCacheTest, DroppedWaitersAreNotRun) {
  auto cache = make();
  cache.tick(t0);
  int resumed = 0;
  cache.await_refresh(t0, [&] { ++resumed; });
  cache.drop_waiters();
  cache.fetched(t0, ok(doc_a));
  EXPECT_EQ(resumed, 0);
}

TEST_F(JwksCacheTest, SetsAreSharedNotCopied) {
  auto cache = make();
  cache.tick(t0);
  cache.fetched(t0, ok(doc_a));
  auto held = cache.current();
  cache.tick(t0 + 60s);
  cache.fetched(t0 + 60s, ok(doc_ab));
  // A session that picked a key from the old set still holds a valid key.
  ASSERT_EQ(held->keys.size(), 1u);
  EXPECT_TRUE(jwt_key_fits("RS256", *held->keys[0].key));
  EXPECT_NE(held, cache.current());
  EXPECT_EQ(metrics().jwks_keys.value(), 2);
}

}  // namespace
}  // namespace sigsrv
