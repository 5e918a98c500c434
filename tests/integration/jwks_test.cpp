// JWKS_URL end to end: the real binary fetches keys from an HTTP JWKS server run by the test
// (rotation, outage after a good fetch, no keys ever, an unknown kid and the refetch rate).
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <iostream>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "../support/test_jwk.hpp"
#include "admission.hpp"
#include "harness.hpp"
#include "ws_client.hpp"

using namespace testing_support;
namespace json = boost::json;

namespace {

// A minimal HTTP/1.1 server (HTTPS when given a certificate) on a free port, answering every
// request with the current body, one connection at a time, closing after each response; it counts
// requests.
class JwksServer {
 public:
  explicit JwksServer(const std::string& cert_file = {}, const std::string& key_file = {}) {
    if (!cert_file.empty()) {
      ctx_ = SSL_CTX_new(TLS_server_method());
      if (SSL_CTX_use_certificate_chain_file(ctx_, cert_file.c_str()) != 1 ||
          SSL_CTX_use_PrivateKey_file(ctx_, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
        ADD_FAILURE() << "JWKS server cannot load its certificate";
      }
    }
    // CLOEXEC: the server under test is forked from this process and must not inherit it.
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(fd_, 16) != 0) {
      ADD_FAILURE() << "JWKS server cannot listen";
    }
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~JwksServer() {
    stop();
    SSL_CTX_free(ctx_);
  }

  uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/jwks.json"; }
  void set_body(std::string body) {
    std::lock_guard lock(mu_);
    body_ = std::move(body);
  }
  int requests() const { return requests_.load(); }
  // Closes the listening socket: fetches then fail with "connection refused".
  void stop() {
    if (stopping_.exchange(true)) return;
    thread_.join();
    ::close(fd_);
  }

 private:
  void serve() {
    while (!stopping_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      // Blocking I/O with timeouts: a client that stalls costs at most 2 s.
      timeval tv{2, 0};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      ::setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
      SSL* ssl = nullptr;
      if (ctx_ != nullptr) {
        ssl = SSL_new(ctx_);
        SSL_set_fd(ssl, c);
        if (SSL_accept(ssl) != 1) {  // e.g. the client did not trust the certificate
          SSL_free(ssl);
          ::close(c);
          continue;
        }
      }
      std::string request;
      char buf[2048];
      while (request.find("\r\n\r\n") == std::string::npos && request.size() < 16384) {
        const int n = ssl != nullptr ? SSL_read(ssl, buf, sizeof(buf))
                                     : static_cast<int>(::recv(c, buf, sizeof(buf), 0));
        if (n <= 0) break;
        request.append(buf, static_cast<std::size_t>(n));
      }
      ++requests_;
      std::string body;
      {
        std::lock_guard lock(mu_);
        body = body_;
      }
      const std::string response =
          "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
          std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
      if (ssl != nullptr) {
        SSL_write(ssl, response.data(), static_cast<int>(response.size()));
        SSL_shutdown(ssl);
        SSL_free(ssl);
      } else {
        std::size_t sent = 0;
        while (sent < response.size()) {
          const ssize_t n = ::send(c, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
          if (n <= 0) break;
          sent += static_cast<std::size_t>(n);
        }
      }
      ::close(c);
    }
  }

  SSL_CTX* ctx_ = nullptr;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> requests_{0};
  mutable std::mutex mu_;
  std::string body_;
};

// A self-signed certificate for DNS:localhost only, made with the openssl tool in a scratch dir.
struct TestCert {
  std::string dir, cert, key;
  TestCert() {
    char tmpl[] = "/tmp/jwks-cert-XXXXXX";
    dir = ::mkdtemp(tmpl);
    cert = dir + "/cert.pem";
    key = dir + "/key.pem";
    const std::string cmd =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
        "-subj /CN=localhost -addext subjectAltName=DNS:localhost -keyout " +
        key + " -out " + cert + " >/dev/null 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  ~TestCert() { std::system(("rm -rf " + dir).c_str()); }
};

int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string token(EVP_PKEY* key, const std::string& kid, const std::string& room = "r1") {
  return test_jwk::sign(key, kid, {{"rooms", json::array{room}}, {"exp", now_s() + 600}});
}

Env jwks_env(const std::string& url, Env extra = {}) {
  extra["ENABLE_AUTH"] = "true";
  extra["JWT_ALG"] = "RS256";
  extra["JWKS_URL"] = url;
  extra["LOG_LEVEL"] = "debug";
  // Every try uses room r1 (the tokens are for it): a try that gave up while its join still
  // waited for a key fetch may hold a seat for a moment, which must not fill the room.
  if (!extra.count("ROOM_CAPACITY")) extra["ROOM_CAPACITY"] = "1000";
  return relaxed_limits(extra);
}

// nullopt: admitted (its probe was answered); else how the server closed the connection.
std::optional<CloseInfo> try_connect(uint16_t port, const std::string& jwt,
                                     const std::string& room = "r1") {
  std::string err;
  auto c = WsClient::connect(port, "/?roomId=" + room + "&token=" + jwt, {}, &err);
  if (!c) return CloseInfo{-1, err};
  return refusal(*c);
}

bool admitted(uint16_t port, const std::string& jwt) {
  const auto r = try_connect(port, jwt);
  if (r) std::cerr << "not admitted: " << r->code << " " << r->reason << "\n";
  return !r.has_value();
}

bool unauthorized(const std::optional<CloseInfo>& r) {
  return r && r->code == 1008 && r->reason == "Unauthorized";
}

test_jwk::Pkey& key_a() {
  static test_jwk::Pkey k = test_jwk::rsa_key();
  return k;
}
test_jwk::Pkey& key_b() {
  static test_jwk::Pkey k = test_jwk::rsa_key();
  return k;
}

}  // namespace

TEST(Jwks, RotatedKeyIsPickedUpByItsKid) {
  JwksServer idp;
  idp.set_body(test_jwk::jwks_document({test_jwk::public_jwk(key_a().get(), "a")}));
  auto server = ServerProcess::start(jwks_env(idp.url()));
  ASSERT_TRUE(server);
  const uint16_t port = server->port();
  // The first token may arrive before the start-up fetch ends: it waits for it.
  EXPECT_TRUE(admitted(port, token(key_a().get(), "a")));
  EXPECT_EQ(idp.requests(), 1);

  // The provider rotates: b appears. A token naming b makes the server refetch (once the 5 s
  // refetch interval since the start-up fetch has passed), and is admitted.
  idp.set_body(test_jwk::jwks_document(
      {test_jwk::public_jwk(key_a().get(), "a"), test_jwk::public_jwk(key_b().get(), "b")}));
  const std::string token_b = token(key_b().get(), "b");
  EXPECT_TRUE(wait_until([&] { return admitted(port, token_b); }, 12000ms));
  EXPECT_EQ(idp.requests(), 2);
  EXPECT_TRUE(admitted(port, token(key_a().get(), "a")));
  EXPECT_EQ(scrape(port, R"(cloudgaming_jwks_refresh_total{result="ok"})"), 2.0);
  EXPECT_EQ(scrape(port, "cloudgaming_jwks_keys"), 2.0);

  // A token signed by a but naming b is refused: the kid picks the key, the signature decides.
  EXPECT_TRUE(unauthorized(try_connect(port, token(key_a().get(), "b"))));
  EXPECT_EQ(server->stop(SIGTERM), 0);
  EXPECT_NE(server->output().find("JWKS key set fetched"), std::string::npos);
}

TEST(Jwks, LastGoodKeysSurviveAnOutage) {
  JwksServer idp;
  idp.set_body(test_jwk::jwks_document({test_jwk::public_jwk(key_a().get(), "a")}));
  // Userinfo and query may carry credentials: they are used, but never logged.
  std::string url = idp.url();
  url.replace(url.find("127.0.0.1"), 0, "reader:pw-4f8e@");
  url += "?apikey=key-9c1d";
  auto server = ServerProcess::start(jwks_env(url, {{"JWKS_CACHE_TTL", "1000"}}));
  ASSERT_TRUE(server);
  const uint16_t port = server->port();
  ASSERT_TRUE(wait_until([&] { return scrape(port, "cloudgaming_jwks_keys") == 1.0; }));
  idp.stop();
  // The TTL refresh fails (connection refused): warned, counted, and the keys stay.
  ASSERT_TRUE(server->wait_for_output("JWKS refresh failed", 5000ms)) << server->output();
  EXPECT_GE(scrape(port, R"(cloudgaming_jwks_refresh_total{result="error"})").value_or(0), 1.0);
  EXPECT_EQ(scrape(port, "cloudgaming_jwks_keys"), 1.0);
  EXPECT_TRUE(admitted(port, token(key_a().get(), "a")));
  EXPECT_TRUE(server->running());
  const std::string out = server->output();
  EXPECT_NE(out.find(idp.url()), std::string::npos) << "the warning names the URL";
  EXPECT_EQ(out.find("pw-4f8e"), std::string::npos);
  EXPECT_EQ(out.find("key-9c1d"), std::string::npos);
}

TEST(Jwks, NoKeysEverFetchedRefusesCleanly) {
  // Nothing listens there.
  const std::string url = "http://127.0.0.1:" + std::to_string(free_port()) + "/jwks.json";
  auto server = ServerProcess::start(jwks_env(url));
  ASSERT_TRUE(server);
  const uint16_t port = server->port();
  EXPECT_EQ(http_get(port, "/healthz").status, 200u);
  const auto r = try_connect(port, token(key_a().get(), "a"));
  EXPECT_TRUE(unauthorized(r)) << (r ? r->reason : "admitted");
  EXPECT_TRUE(server->running());
  EXPECT_EQ(http_get(port, "/healthz").status, 200u);
  EXPECT_TRUE(server->wait_for_output("no key set fetched from JWKS_URL yet")) << server->output();
  EXPECT_EQ(scrape(port, "cloudgaming_jwks_keys"), 0.0);
  EXPECT_EQ(server->stop(SIGTERM), 0);
}

TEST(Jwks, UnknownKidIsRefusedAndRefetchesAreRateLimited) {
  JwksServer idp;
  idp.set_body(test_jwk::jwks_document({test_jwk::public_jwk(key_a().get(), "a")}));
  auto server = ServerProcess::start(jwks_env(idp.url()));
  ASSERT_TRUE(server);
  const uint16_t port = server->port();
  ASSERT_TRUE(wait_until([&] { return idp.requests() == 1; }));
  const auto start = std::chrono::steady_clock::now();
  const std::string forged = token(key_b().get(), "never-published");
  int refused = 0;
  // Tokens naming a kid that never appears, for over one refetch interval (5 s).
  while (std::chrono::steady_clock::now() - start < 6500ms) {
    const auto r = try_connect(port, forged);
    EXPECT_TRUE(unauthorized(r)) << (r ? r->reason : "admitted");
    ++refused;
  }
  const double elapsed_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GT(refused, 10);
  // The start-up fetch, then at most one refetch per 5 s whatever the number of tokens.
  EXPECT_LE(idp.requests(), 1 + static_cast<int>(elapsed_s / 5.0) + 1);
  EXPECT_GE(idp.requests(), 2) << "a refetch after the interval";
  // Known keys keep working meanwhile.
  EXPECT_TRUE(admitted(port, token(key_a().get(), "a")));
  EXPECT_EQ(server->stop(SIGTERM), 0);
  EXPECT_NE(server->output().find("kid not in the key set"), std::string::npos);
}

TEST(Jwks, HttpsVerifiesTheProviderCertificateAndHostName) {
  TestCert cert;
  JwksServer idp(cert.cert, cert.key);
  idp.set_body(test_jwk::jwks_document({test_jwk::public_jwk(key_a().get(), "a")}));
  const std::string port = std::to_string(idp.port());
  const std::string jwt = token(key_a().get(), "a");

  // Trusted (SSL_CERT_FILE stands in for the system CA store) and the name matches: keys load.
  auto server = ServerProcess::start(
      jwks_env("https://localhost:" + port + "/jwks.json", {{"SSL_CERT_FILE", cert.cert}}));
  ASSERT_TRUE(server);
  EXPECT_TRUE(admitted(server->port(), jwt)) << server->output();
  EXPECT_EQ(server->stop(SIGTERM), 0);

  // The same trusted certificate under a name it does not carry (127.0.0.1): refused.
  server = ServerProcess::start(
      jwks_env("https://127.0.0.1:" + port + "/jwks.json", {{"SSL_CERT_FILE", cert.cert}}));
  ASSERT_TRUE(server);
  EXPECT_TRUE(unauthorized(try_connect(server->port(), jwt)));
  EXPECT_TRUE(server->wait_for_output("TLS handshake failed")) << server->output();
  EXPECT_EQ(server->stop(SIGTERM), 0);

  // The right name, but a certificate nobody vouches for (the default CA store): refused.
  server = ServerProcess::start(jwks_env("https://localhost:" + port + "/jwks.json"));
  ASSERT_TRUE(server);
  EXPECT_TRUE(unauthorized(try_connect(server->port(), jwt)));
  EXPECT_TRUE(server->wait_for_output("TLS handshake failed")) << server->output();
  EXPECT_EQ(server->stop(SIGTERM), 0);
  EXPECT_EQ(idp.requests(), 1) << "only the trusted, matching connection got to send a request";
}
