// Tests REDIS_URL parsing (redis://[user:password@]host:port[/db], rediss:// for TLS).
#include "bus/redis_url.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace sigsrv {
namespace {

// The endpoint `url` parses to; records a failure carrying the error text when it does not.
std::optional<RedisEndpoint> Endpoint(const std::string& url) {
  auto result = parse_redis_url(url);
  if (const auto* error = std::get_if<std::string>(&result)) {
    ADD_FAILURE() << url << " was rejected: " << *error;
    return std::nullopt;
  }
  return std::get<RedisEndpoint>(result);
}

// The error text for `url`; records a failure when it parses.
std::optional<std::string> Error(const std::string& url) {
  auto result = parse_redis_url(url);
  if (const auto* ep = std::get_if<RedisEndpoint>(&result)) {
    ADD_FAILURE() << url << " was accepted (host " << ep->host << ", port " << ep->port << ", db "
                  << ep->db << ")";
    return std::nullopt;
  }
  return std::get<std::string>(result);
}

// --- host and port ---

TEST(RedisUrlTest, PortDefaultsTo6379) {
  const auto ep = Endpoint("redis://redis.example.com");
  ASSERT_TRUE(ep.has_value());
  EXPECT_EQ(ep->host, "redis.example.com");
  EXPECT_EQ(ep->port, 6379);
  EXPECT_EQ(ep->user, "");
  EXPECT_EQ(ep->password, "");
  EXPECT_EQ(ep->db, 0u);
  EXPECT_FALSE(ep->tls);
}

TEST(RedisUrlTest, PortDefaultsTo6379WithTrailingSlash) {
  const auto ep = Endpoint("redis://cache/");
  ASSERT_TRUE(ep.has_value());
  EXPECT_EQ(ep->host, "cache");
  EXPECT_EQ(ep->port, 6379);
  EXPECT_EQ(ep->db, 0u);
}

TEST(RedisUrlTest, ExplicitPort) {
  const auto ep = Endpoint("redis://redis.example.com:6380");
  ASSERT_TRUE(ep.has_value());
  EXPECT_EQ(ep->host, "redis.example.com");
  EXPECT_EQ(ep->port, 6380);
}

TEST(RedisUrlTest, PortBoundsAreAccepted) {
  const auto low = Endpoint("redis://h:1");
  ASSERT_TRUE(low.has_value());
  EXPECT_EQ(low->port, 1);
  const auto high = Endpoint("redis://h:65535");
  ASSERT_TRUE(high.has_value());
  EXPECT_EQ(high->port, 65535);
}

TEST(RedisUrlTest, HostNames) {
  const std::vector<std::string> hosts = {"localhost", "redis", "my-redis.svc.cluster.local",
                                          "redis-0.redis-headless.default.svc"};
  for (const auto& host : hosts) {
    const auto ep = Endpoint("redis://" + host + ":7000");
    ASSERT_TRUE(ep.has_value()) << host;
    EXPECT_EQ(ep->host, host);
    EXPECT_EQ(ep->port, 7000) << host;
  }
}

TEST(RedisUrlTest, Ipv4Host) {
  const auto ep = Endpoint("redis://10.0.0.5:6381");
  ASSERT_TRUE(ep.has_value());
  EXPECT_EQ(ep->host, "10.0.0.5");
  EXPECT_EQ(ep->port, 6381);
}

// The host is handed to the resolver, which wants the address without the URL's brackets.
TEST(RedisUrlTest, Ipv6LoopbackHost) {
  const auto ep = Endpoint("redis://[::1]:6379");
  ASSERT_TRUE(ep.has_value());
  EXPECT_EQ(ep->host, "::1");
  EXPECT_EQ(ep->port, 6379);
}

TEST(RedisUrlTest, Ipv6HostWithDefaultPortAndDb) {
  const auto ep = Endpoint("redis://[2001:db8::7]/2");
  ASSERT_TRUE(ep.has_value());
  EXPECT_EQ(ep->host, "2001:db8::7");
  EXPECT_EQ(ep->port, 6379);
  EXPECT_EQ(ep->db, 2u);
}

// --- credentials ---

TEST(RedisUrlTest, UserAndPassword) {
  const auto ep = Endpoint("redis://alice:s3cret@redis:6379");
  ASSERT_TRUE(ep.has_value());
  EXPECT_EQ(ep->user, "alice");
  EXPECT_EQ(ep->password, "s3cret");
  EXPECT_EQ(ep->host, "redis");
  EXPECT_EQ(ep->port, 6379);
}

TEST(RedisUrlTest, PasswordWithoutUser) {
  // Legacy requirepass: AUTH with the password alone.
  const auto ep = Endpoint("redis://:s3cret@redis:6379");
  ASSERT_TRUE(ep.has_value());
  EXPECT_EQ(ep->user, "");
  EXPECT_EQ(ep->password, "s3cret");
  EXPECT_EQ(ep->host, "redis");
}

TEST(RedisUrlTest, NoCredentials) {
  const auto ep = Endpoint("redis://redis:6379");
  ASSERT_TRUE(ep.has_value());
  EXPECT_EQ(ep->user, "");
  EXPECT_EQ(ep->password, "");
}

TEST(RedisUrlTest, PercentEncodedPasswordIsDecoded) {
  const auto ep = Endpoint("redis://:p%40ss@redis:6379");
  ASSERT_TRUE(ep.has_value());
  EXPECT_EQ(ep->password, "p@ss");
  EXPECT_EQ(ep->host, "redis");
}

TEST(RedisUrlTest, PercentEncodedUserAndPasswordAreDecoded) {
  const auto ep = Endpoint("redis://us%3Aer:a%3Ab%2Fc%25d%20e@redis");
  ASSERT_TRUE(ep.has_value());
  EXPECT_EQ(ep->user, "us:er");
  EXPECT_EQ(ep->password, "a:b/c%d e");
  EXPECT_EQ(ep->host, "redis");
  EXPECT_EQ(ep->port, 6379);
}

// --- database ---

TEST(RedisUrlTest, DatabaseNumber) {
  const auto ep = Endpoint("redis://redis:6379/3");
  ASSERT_TRUE(ep.has_value());
  EXPECT_EQ(ep->db, 3u);
  EXPECT_EQ(ep->port, 6379);
  const auto zero = Endpoint("redis://redis:6379/0");
  ASSERT_TRUE(zero.has_value());
  EXPECT_EQ(zero->db, 0u);
  const auto fifteen = Endpoint("redis://:pw@redis/15");
  ASSERT_TRUE(fifteen.has_value());
  EXPECT_EQ(fifteen->db, 15u);
  EXPECT_EQ(fifteen->password, "pw");
}

TEST(RedisUrlTest, BadDatabaseIsRejected) {
  for (const std::string db : {"abc", "1a", "-1", "1/2", "0x1", "99999999999999999999"}) {
    const auto url = "redis://redis:6379/" + db;
    EXPECT_TRUE(Error(url).has_value()) << url;
  }
}

// --- scheme ---

TEST(RedisUrlTest, RedissSetsTls) {
  const auto ep = Endpoint("rediss://redis.example.com:6380/1");
  ASSERT_TRUE(ep.has_value());
  EXPECT_TRUE(ep->tls);
  EXPECT_EQ(ep->host, "redis.example.com");
  EXPECT_EQ(ep->port, 6380);
  EXPECT_EQ(ep->db, 1u);
}

TEST(RedisUrlTest, RedisSchemeIsPlain) {
  const auto ep = Endpoint("redis://redis.example.com:6380");
  ASSERT_TRUE(ep.has_value());
  EXPECT_FALSE(ep->tls);
}

TEST(RedisUrlTest, BadSchemeIsRejected) {
  for (const std::string url : {"http://redis:6379", "https://redis:6379", "tcp://redis:6379",
                                "redis-sentinel://redis:26379", "unix:///tmp/redis.sock"}) {
    EXPECT_TRUE(Error(url).has_value()) << url;
  }
}

TEST(RedisUrlTest, NotAUrlIsRejected) {
  for (const std::string url :
       {"", "redis", "localhost:6379", "redis://redis:6379/0 1", "redis://red is:6379"}) {
    EXPECT_TRUE(Error(url).has_value()) << url;
  }
}

// --- missing host ---

TEST(RedisUrlTest, MissingHostIsRejected) {
  for (const std::string url : {"redis://", "redis://:6379", "redis:///0", "redis://:pw@:6379",
                                "redis://user:pw@/0", "redis:redis:6379"}) {
    EXPECT_TRUE(Error(url).has_value()) << url;
  }
}

// --- bad ports ---

TEST(RedisUrlTest, PortZeroIsRejected) {
  EXPECT_TRUE(Error("redis://redis:0").has_value());
}

TEST(RedisUrlTest, PortAbove65535IsRejected) {
  EXPECT_TRUE(Error("redis://redis:70000").has_value());
  EXPECT_TRUE(Error("redis://redis:65536").has_value());
  EXPECT_TRUE(Error("redis://redis:99999999999999999999").has_value());
}

TEST(RedisUrlTest, NonNumericPortIsRejected) {
  for (const std::string port : {"abc", "x6379", "-1", "+6379", "6379x"}) {
    const auto url = "redis://redis:" + port;
    EXPECT_TRUE(Error(url).has_value()) << url;
  }
}

// Boost.URL reads "redis://redis:63x79" as port "63" plus a path "x79": still a bad port.
TEST(RedisUrlTest, PortWithTrailingCharactersIsRejected) {
  for (const std::string port : {"63x79", "6379.0", "6379a1"}) {
    const auto url = "redis://redis:" + port;
    EXPECT_TRUE(Error(url).has_value()) << url;
  }
}

// --- secrecy ---

TEST(RedisUrlTest, ErrorTextNeverContainsThePassword) {
  const std::string password = "Hunter2Secret";
  const std::vector<std::string> urls = {
      "http://alice:" + password + "@redis:6379",     // bad scheme
      "redis://alice:" + password + "@redis:0",       // port 0
      "redis://alice:" + password + "@redis:70000",   // port too large
      "redis://alice:" + password + "@redis:abc",     // non-numeric port
      "redis://alice:" + password + "@redis/db1",     // bad db
      "redis://:" + password + "@:6379",              // missing host
      "redis://:" + password + "@",                   // missing host, no port
      "redis://alice:" + password + "@red is:6379",   // not a URL
      "rediss://:" + password + "@redis:6379/0/1",    // bad db over TLS
      "redis://alice:" + password + "%zz@redis:6379"  // bad percent-encoding
  };
  for (const auto& url : urls) {
    const auto error = Error(url);
    ASSERT_TRUE(error.has_value()) << url;
    EXPECT_FALSE(error->empty()) << url;
    EXPECT_EQ(error->find(password), std::string::npos) << url << " -> " << *error;
    // Not even a fragment of it.
    EXPECT_EQ(error->find("Hunter"), std::string::npos) << url << " -> " << *error;
  }
}

TEST(RedisUrlTest, ErrorTextNeverContainsADecodedPassword) {
  const auto error = Error("redis://:p%40ssw0rd@redis:0");
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->find("p@ssw0rd"), std::string::npos) << *error;
  EXPECT_EQ(error->find("p%40ssw0rd"), std::string::npos) << *error;
}

}  // namespace
}  // namespace sigsrv
