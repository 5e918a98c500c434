// Tests ALLOWED_ORIGINS matching: exact, same host, same hostname, bare entries, "null".
#include "auth/origin.hpp"

#include <gtest/gtest.h>

namespace sigsrv {
namespace {

TEST(OriginMatcherTest, EmptyListIsDisabled) {
  EXPECT_FALSE(OriginMatcher({}).enabled());
  EXPECT_TRUE(OriginMatcher({"https://a.example"}).enabled());
}

TEST(OriginMatcherTest, ExactMatch) {
  const OriginMatcher m({"https://yourgame.com", "https://www.yourgame.com"});
  EXPECT_TRUE(m.allowed("https://yourgame.com"));
  EXPECT_TRUE(m.allowed("https://www.yourgame.com"));
}

TEST(OriginMatcherTest, SameHostDifferentScheme) {
  const OriginMatcher m({"https://game.example.com:8443"});
  EXPECT_TRUE(m.allowed("http://game.example.com:8443"));
  EXPECT_TRUE(m.allowed("https://game.example.com:8443"));
}

TEST(OriginMatcherTest, SameHostnameAnyPort) {
  const OriginMatcher m({"https://game.example.com"});
  EXPECT_TRUE(m.allowed("https://game.example.com:8443"));
  EXPECT_TRUE(m.allowed("http://game.example.com:3000"));
}

TEST(OriginMatcherTest, BareHostnameEntry) {
  const OriginMatcher m({"localhost"});
  EXPECT_TRUE(m.allowed("http://localhost"));
  EXPECT_TRUE(m.allowed("http://localhost:5173"));
  EXPECT_TRUE(m.allowed("https://localhost:8080"));
  EXPECT_FALSE(m.allowed("http://localhost.evil.com"));
  EXPECT_FALSE(m.allowed("http://127.0.0.1"));
}

TEST(OriginMatcherTest, BareHostAndPortEntry) {
  const OriginMatcher m({"game.example.com:8443"});
  EXPECT_TRUE(m.allowed("https://game.example.com:8443"));
  EXPECT_TRUE(m.allowed("http://game.example.com:8443"));
  EXPECT_TRUE(m.allowed("https://game.example.com"));  // hostname equality
  EXPECT_FALSE(m.allowed("https://other.example.com:8443"));
}

TEST(OriginMatcherTest, NonMatches) {
  const OriginMatcher m({"https://game.com", "localhost"});
  EXPECT_FALSE(m.allowed("https://evil.com"));
  EXPECT_FALSE(m.allowed("https://game.com.evil.com"));
  EXPECT_FALSE(m.allowed("https://evilgame.com"));
  EXPECT_FALSE(m.allowed("https://sub.game.com"));
  EXPECT_FALSE(m.allowed("https://game.co"));
  EXPECT_FALSE(m.allowed("game.com"));  // not an origin: exact match only
  EXPECT_FALSE(m.allowed(""));
}

TEST(OriginMatcherTest, UserinfoDoesNotSpoofHost) {
  const OriginMatcher m({"https://game.com"});
  EXPECT_FALSE(m.allowed("https://game.com@evil.com"));
  EXPECT_FALSE(m.allowed("https://game.com:443@evil.com"));
}

TEST(OriginMatcherTest, NullOrigin) {
  EXPECT_FALSE(OriginMatcher({"https://game.com", "localhost"}).allowed("null"));
  EXPECT_TRUE(OriginMatcher({"null"}).allowed("null"));
  // A "null" entry must not match real origins through host matching.
  EXPECT_FALSE(OriginMatcher({"null"}).allowed("http://null.example"));
}

TEST(OriginMatcherTest, HostComparisonIsCaseInsensitive) {
  const OriginMatcher m({"https://Game.Example.COM"});
  EXPECT_TRUE(m.allowed("https://game.example.com"));
  EXPECT_TRUE(m.allowed("https://GAME.EXAMPLE.COM"));
  EXPECT_TRUE(OriginMatcher({"LOCALHOST"}).allowed("http://localhost:3000"));
}

TEST(OriginMatcherTest, EntryWithTrailingSlashStillMatchesByHost) {
  const OriginMatcher m({"https://game.com/"});
  EXPECT_TRUE(m.allowed("https://game.com"));
}

TEST(OriginMatcherTest, OriginWithoutHostMatchesOnlyExactly) {
  const OriginMatcher m({"https://game.com"});
  EXPECT_FALSE(m.allowed("file://"));
  EXPECT_TRUE(OriginMatcher({"file://"}).allowed("file://"));
}

}  // namespace
}  // namespace sigsrv
