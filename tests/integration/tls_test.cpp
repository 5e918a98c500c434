// TLS end to end: wss:// and https:// on the server port (TLS_CERT_FILE/TLS_KEY_FILE), and
// rediss:// to a real redis-server started with --tls-port, with certificates made by a test CA.
#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "harness.hpp"
#include "loop_census.hpp"
#include "ws_client.hpp"

namespace {

using namespace testing_support;
namespace asio = boost::asio;
namespace ssl = asio::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

// A CA, a server certificate it signs (for 127.0.0.1 and localhost), a client certificate it
// signs, and an unrelated CA: made once per test binary with the openssl command.
struct Pki {
  std::string dir;
  std::string ca_cert, server_cert, server_key, client_cert, client_key, other_ca_cert;
};

const Pki& pki() {
  static const Pki kPki = [] {
    Pki p;
    p.dir = (std::filesystem::temp_directory_path() / ("signal-tls-" + std::to_string(getpid())))
                .string();
    std::filesystem::create_directories(p.dir);
    const std::string d = p.dir + "/";
    p.ca_cert = d + "ca.pem";
    p.server_cert = d + "server.pem";
    p.server_key = d + "server.key";
    p.client_cert = d + "client.pem";
    p.client_key = d + "client.key";
    p.other_ca_cert = d + "other-ca.pem";
    const std::string q = " 2>>" + d + "openssl.log";
    const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    std::ofstream(d + "server.ext") << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
    std::ofstream(d + "client.ext") << "extendedKeyUsage=clientAuth\n";
    const std::vector<std::string> steps = {
        "openssl req -x509" + ec + " -keyout " + d + "ca.key -out " + p.ca_cert +
            " -days 2 -subj /CN=signal-test-ca",
        "openssl req -x509" + ec + " -keyout " + d + "other-ca.key -out " + p.other_ca_cert +
            " -days 2 -subj /CN=other-ca",
        "openssl req" + ec + " -keyout " + p.server_key + " -out " + d + "server.csr" +
            " -subj /CN=localhost",
        "openssl x509 -req -in " + d + "server.csr -CA " + p.ca_cert + " -CAkey " + d +
            "ca.key -CAcreateserial -days 2 -extfile " + d + "server.ext -out " + p.server_cert,
        "openssl req" + ec + " -keyout " + p.client_key + " -out " + d + "client.csr" +
            " -subj /CN=signal-server",
        "openssl x509 -req -in " + d + "client.csr -CA " + p.ca_cert + " -CAkey " + d +
            "ca.key -CAcreateserial -days 2 -extfile " + d + "client.ext -out " + p.client_cert,
    };
    for (const auto& cmd : steps) {
      if (std::system((cmd + q).c_str()) != 0) {
        ADD_FAILURE() << "failed: " << cmd;
        break;
      }
    }
    // Redis runs as this user and must read the keys.
    std::filesystem::permissions(p.dir, std::filesystem::perms::all);
    return p;
  }();
  return kPki;
}

Env tls_env(const Env& extra = {}) {
  Env env = relaxed_limits(extra);
  env["TLS_CERT_FILE"] = pki().server_cert;
  env["TLS_KEY_FILE"] = pki().server_key;
  return env;
}

// Runs `ioc` until `done` is set or the deadline passes (then cancels by closing `socket`).
bool run_until(asio::io_context& ioc, const bool& done, tcp::socket& socket,
               std::chrono::milliseconds timeout = 5000ms) {
  ioc.restart();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done && std::chrono::steady_clock::now() < deadline) ioc.run_one_until(deadline);
  if (done) return true;
  error_code ignored;
  socket.close(ignored);
  ioc.restart();
  ioc.run_for(1000ms);  // let the aborted handlers run
  return false;
}

ssl::context client_context(const std::string& ca_file, int max_version = 0) {
  ssl::context ctx(ssl::context::tls_client);
  ctx.load_verify_file(ca_file);
  ctx.set_verify_mode(ssl::verify_peer);
  if (max_version != 0) {
    SSL_CTX_set_min_proto_version(ctx.native_handle(), 0);
    SSL_CTX_set_max_proto_version(ctx.native_handle(), max_version);
    // Debian's OpenSSL refuses TLS < 1.2 at security level 1 before the server is asked.
    SSL_CTX_set_security_level(ctx.native_handle(), 0);
  }
  return ctx;
}

// A wss:// client with deadlines on every step.
class WssClient {
 public:
  WssClient(uint16_t port, ssl::context& ctx) : ws_(ioc_, ctx), port_(port) {}

  // TCP connect + TLS handshake (certificate verified for 127.0.0.1); the error on failure.
  error_code tls_connect() {
    error_code result = asio::error::timed_out;
    bool done = false;
    auto& tls = ws_.next_layer();
    tls.set_verify_callback(ssl::host_name_verification("127.0.0.1"));
    tls.next_layer().async_connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), [&](error_code ec) {
          if (ec) {
            result = ec;
            done = true;
            return;
          }
          tls.async_handshake(ssl::stream_base::client, [&](error_code e) {
            result = e;
            done = true;
          });
        });
    run_until(ioc_, done, tls.next_layer());
    return result;
  }

  error_code upgrade(const std::string& target) {
    error_code result = asio::error::timed_out;
    bool done = false;
    ws_.async_handshake("127.0.0.1:" + std::to_string(port_), target, [&](error_code ec) {
      result = ec;
      done = true;
    });
    run_until(ioc_, done, socket());
    return result;
  }

  bool send(const std::string& text) {
    bool done = false;
    error_code result = asio::error::timed_out;
    ws_.text(true);
    ws_.async_write(asio::buffer(text), [&](error_code ec, std::size_t) {
      result = ec;
      done = true;
    });
    run_until(ioc_, done, socket());
    return !result;
  }

  std::optional<std::string> recv() {
    bool done = false;
    error_code result = asio::error::timed_out;
    buffer_.clear();
    ws_.async_read(buffer_, [&](error_code ec, std::size_t) {
      result = ec;
      done = true;
    });
    run_until(ioc_, done, socket());
    if (result) {
      last_error_ = result;
      return std::nullopt;
    }
    return beast::buffers_to_string(buffer_.data());
  }

  // An HTTP GET over the TLS connection (instead of an upgrade).
  std::optional<http::response<http::string_body>> get(const std::string& target) {
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, "127.0.0.1");
    bool done = false;
    error_code result = asio::error::timed_out;
    http::response<http::string_body> res;
    http::async_write(ws_.next_layer(), req, [&](error_code ec, std::size_t) {
      if (ec) {
        result = ec;
        done = true;
        return;
      }
      http::async_read(ws_.next_layer(), buffer_, res, [&](error_code e, std::size_t) {
        result = e;
        done = true;
      });
    });
    run_until(ioc_, done, socket());
    if (result) return std::nullopt;
    return res;
  }

  // Starts the closing handshake with `code`; the server's answering close frame, once in, is
  // close_reason().
  void close(uint16_t code) {
    bool done = false;
    ws_.async_close(websocket::close_reason(code), [&](error_code) { done = true; });
    run_until(ioc_, done, socket());
  }

  websocket::close_reason close_reason() const { return ws_.reason(); }
  error_code last_error() const { return last_error_; }

 private:
  tcp::socket& socket() { return ws_.next_layer().next_layer(); }

  asio::io_context ioc_;
  websocket::stream<ssl::stream<tcp::socket>> ws_;
  beast::flat_buffer buffer_;
  uint16_t port_;
  error_code last_error_;
};

std::unique_ptr<WssClient> wss_join(uint16_t port, ssl::context& ctx, const std::string& target) {
  auto c = std::make_unique<WssClient>(port, ctx);
  if (auto ec = c->tls_connect()) {
    ADD_FAILURE() << "TLS connect: " << ec.message();
    return nullptr;
  }
  if (auto ec = c->upgrade(target)) {
    ADD_FAILURE() << "upgrade: " << ec.message();
    return nullptr;
  }
  return c;
}

TEST(Tls, WssRelaysBothWaysAndSatisfiesRequireWss) {
  auto server = ServerProcess::start(tls_env({{"REQUIRE_WSS", "true"}}));
  ASSERT_TRUE(server);
  auto ctx = client_context(pki().ca_cert);
  auto a = wss_join(server->port(), ctx, "/?roomId=tls-room");
  auto b = wss_join(server->port(), ctx, "/?roomId=tls-room");
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->send(R"({"type":"offer","sdp":"v=0 a","extra":1})"));
  EXPECT_EQ(b->recv(), R"({"type":"offer","sdp":"v=0 a"})");
  ASSERT_TRUE(b->send(R"({"type":"answer","sdp":"v=0 b"})"));
  EXPECT_EQ(a->recv(), R"({"type":"answer","sdp":"v=0 b"})");
}

// A TLS connection is not moved to its room's loop (its SSL state belongs to the stream): it stays
// where the listener put it, so a room's members can sit on two loops, and every message then
// crosses between them (one post each way), in order.
TEST(Tls, ConnectionsStayWhereAcceptedAndSplitRoomsRelayInOrder) {
  auto server = ServerProcess::start(tls_env({{"THREADS", "2"}}));
  ASSERT_TRUE(server);
  auto ctx = client_context(pki().ca_cert);
  // One at a time: the listener's round-robin puts the second on the other loop.
  const Census start = census(server->pid());
  auto a = wss_join(server->port(), ctx, "/?roomId=tls-split");
  ASSERT_TRUE(a);
  const Census with_a = census(server->pid());
  auto b = wss_join(server->port(), ctx, "/?roomId=tls-split");
  ASSERT_TRUE(b);
  const int loop_a = new_socket_loop(start, with_a);
  const int loop_b = new_socket_loop(with_a, census(server->pid()));
  ASSERT_NE(loop_a, -1);
  ASSERT_NE(loop_b, -1);
  EXPECT_NE(loop_a, loop_b) << "the members share a loop: the test no longer crosses loops";
  constexpr int kMessages = 50;
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_TRUE(a->send(R"({"type":"offer","sdp":"a)" + std::to_string(i) + R"("})"));
    ASSERT_TRUE(b->send(R"({"type":"answer","sdp":"b)" + std::to_string(i) + R"("})"));
  }
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_EQ(b->recv(), R"({"type":"offer","sdp":"a)" + std::to_string(i) + R"("})");
    ASSERT_EQ(a->recv(), R"({"type":"answer","sdp":"b)" + std::to_string(i) + R"("})");
  }
}

// The answer to a client's close frame goes through the TLS write path too: a valid code is
// echoed, one RFC 6455 leaves undefined (above 4999) is answered with 1002.
TEST(Tls, CloseCodeIsEchoedOrRefusedWith1002) {
  auto server = ServerProcess::start(tls_env());
  ASSERT_TRUE(server);
  auto ctx = client_context(pki().ca_cert);
  auto peer = wss_join(server->port(), ctx, "/?roomId=tls-close");
  ASSERT_TRUE(peer);
  for (const auto& [sent, answered] : {std::pair{4000, 4000}, std::pair{5000, 1002}}) {
    auto c = wss_join(server->port(), ctx, "/?roomId=tls-close");
    ASSERT_TRUE(c);
    c->close(static_cast<uint16_t>(sent));
    EXPECT_EQ(c->close_reason().code, answered) << "sent " << sent;
    EXPECT_EQ(peer->recv(), R"({"type":"peer-disconnected"})");
  }
}

TEST(Tls, HealthAndMetricsAnswerOverHttpsOnTheSamePort) {
  auto server = ServerProcess::start(tls_env());
  ASSERT_TRUE(server);
  auto ctx = client_context(pki().ca_cert);
  WssClient c(server->port(), ctx);
  ASSERT_FALSE(c.tls_connect());
  auto health = c.get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->result_int(), 200);
  EXPECT_EQ(health->body(), "ok");
  auto metrics = c.get("/metrics");  // keep-alive: a second request on the same TLS connection
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body().find("cloudgaming_active_connections"), std::string::npos);
}

TEST(Tls, PlainHttpAndOldTlsAreRefusedAndCounted) {
  auto server = ServerProcess::start(tls_env());
  ASSERT_TRUE(server);
  // Plain HTTP to the TLS port gets no HTTP answer: the TLS handshake fails on its bytes.
  EXPECT_EQ(http_get(server->port(), "/healthz").status, 0u);

  auto tls11 = client_context(pki().ca_cert, TLS1_1_VERSION);
  WssClient old(server->port(), tls11);
  EXPECT_TRUE(old.tls_connect()) << "a TLS 1.1 handshake must fail";

  auto tls12 = client_context(pki().ca_cert, TLS1_2_VERSION);
  WssClient ok(server->port(), tls12);
  ASSERT_FALSE(ok.tls_connect()) << "TLS 1.2 is the floor and must be accepted";
  auto res = ok.get("/metrics");
  ASSERT_TRUE(res);
  const auto failures = metric_value(res->body(), "cloudgaming_tls_handshake_failures_total");
  ASSERT_TRUE(failures);
  EXPECT_GE(*failures, 2);
}

TEST(Tls, SilentClientIsDroppedAfterTheHandshakeTimeout) {
  auto server = ServerProcess::start(tls_env({{"HANDSHAKE_TIMEOUT_MS", "300"}}));
  ASSERT_TRUE(server);
  asio::io_context ioc;
  tcp::socket socket(ioc);
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server->port()));
  // Never starts the TLS handshake: the server must close within the timeout, not hold the socket.
  char byte = 0;
  bool done = false;
  error_code result;
  socket.async_read_some(asio::buffer(&byte, 1), [&](error_code ec, std::size_t) {
    result = ec;
    done = true;
  });
  ASSERT_TRUE(run_until(ioc, done, socket, 3000ms)) << "still open after 3 s";
  EXPECT_EQ(result, asio::error::eof);
  auto ctx = client_context(pki().ca_cert);
  WssClient probe(server->port(), ctx);
  ASSERT_FALSE(probe.tls_connect());
  auto res = probe.get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(metric_value(res->body(), "cloudgaming_handshake_timeouts_total"), 1.0);
}

TEST(Tls, ClientThatDoesNotTrustTheCertificateCannotConnect) {
  auto server = ServerProcess::start(tls_env());
  ASSERT_TRUE(server);
  auto wrong = client_context(pki().other_ca_cert);
  WssClient c(server->port(), wrong);
  EXPECT_TRUE(c.tls_connect());
}

TEST(Tls, BadTlsSettingsStopStartupNamingTheVariable) {
  auto only_cert = run_server_to_exit({{"TLS_CERT_FILE", pki().server_cert}}, {});
  EXPECT_EQ(only_cert.exit_code, 2);
  EXPECT_NE(only_cert.output.find("TLS_KEY_FILE"), std::string::npos) << only_cert.output;

  auto missing = run_server_to_exit(
      {{"TLS_CERT_FILE", pki().dir + "/nope.pem"}, {"TLS_KEY_FILE", pki().server_key}}, {});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("TLS_CERT_FILE"), std::string::npos) << missing.output;

  auto mismatch = run_server_to_exit(
      {{"TLS_CERT_FILE", pki().server_cert}, {"TLS_KEY_FILE", pki().client_key}}, {});
  EXPECT_EQ(mismatch.exit_code, 2);
  EXPECT_NE(mismatch.output.find("does not match"), std::string::npos) << mismatch.output;
  // The key's content never reaches the output.
  std::ifstream key_file(pki().client_key);
  std::string key_text((std::istreambuf_iterator<char>(key_file)), {});
  const std::string key_body = key_text.substr(key_text.find('\n') + 1, 40);
  EXPECT_EQ(mismatch.output.find(key_body), std::string::npos);

  auto ca_without_rediss = run_server_to_exit(
      {{"REDIS_URL", "redis://127.0.0.1:6379"}, {"REDIS_TLS_CA_FILE", pki().ca_cert}}, {});
  EXPECT_EQ(ca_without_rediss.exit_code, 2);
  EXPECT_NE(ca_without_rediss.output.find("REDIS_TLS_CA_FILE"), std::string::npos);
}

// redis-server with TLS on a free port, set in `*tls_port` (and its plain port for the harness'
// redis-cli); both picked again when a try finds one taken.
std::unique_ptr<RedisProcess> start_tls_redis(uint16_t* tls_port, bool require_client_cert) {
  return RedisProcess::start_with(0, {}, [=]() -> std::vector<std::string> {
    *tls_port = free_port();
    return {"--tls-port",         std::to_string(*tls_port),
            "--tls-cert-file",    pki().server_cert,
            "--tls-key-file",     pki().server_key,
            "--tls-ca-cert-file", pki().ca_cert,
            "--tls-auth-clients", require_client_cert ? "yes" : "no"};
  });
}

std::string rediss_url(uint16_t port) {
  return "rediss://127.0.0.1:" + std::to_string(port);
}

TEST(Tls, RedissCarriesRelayBetweenTwoInstances) {
  uint16_t tls_port = 0;
  auto redis = start_tls_redis(&tls_port, false);
  ASSERT_TRUE(redis);
  const Env env =
      relaxed_limits({{"REDIS_URL", rediss_url(tls_port)}, {"REDIS_TLS_CA_FILE", pki().ca_cert}});
  auto s1 = ServerProcess::start(env);
  auto s2 = ServerProcess::start(env);
  ASSERT_TRUE(s1 && s2);
  ASSERT_TRUE(wait_until([&] { return http_get(s1->port(), "/readyz").status == 200; }, 10000ms));
  ASSERT_TRUE(wait_until([&] { return http_get(s2->port(), "/readyz").status == 200; }, 10000ms));
  auto a = WsClient::connect(s1->port(), "/?roomId=rediss-room");
  auto b = WsClient::connect(s2->port(), "/?roomId=rediss-room");
  ASSERT_TRUE(a && b);
  // The membership went through Redis: the room set holds both.
  EXPECT_EQ(redis->cli({"SCARD", "room:rediss-room"}), "2");
  a->send(R"({"type":"candidate","candidate":"c1","sdpMid":"0","sdpMLineIndex":0})");
  EXPECT_EQ(b->recv(), R"({"type":"candidate","candidate":"c1","sdpMid":"0","sdpMLineIndex":0})");
  b->send(R"({"type":"control","action":"ping"})");
  EXPECT_EQ(a->recv(), R"({"type":"control","action":"ping"})");
}

TEST(Tls, RedissWithClientCertificate) {
  uint16_t tls_port = 0;
  auto redis = start_tls_redis(&tls_port, true);
  ASSERT_TRUE(redis);
  auto server = ServerProcess::start(relaxed_limits({{"REDIS_URL", rediss_url(tls_port)},
                                                     {"REDIS_TLS_CA_FILE", pki().ca_cert},
                                                     {"REDIS_TLS_CERT_FILE", pki().client_cert},
                                                     {"REDIS_TLS_KEY_FILE", pki().client_key}}));
  ASSERT_TRUE(server);
  EXPECT_TRUE(
      wait_until([&] { return http_get(server->port(), "/readyz").status == 200; }, 10000ms))
      << server->output();
}

TEST(Tls, RedissWithTheWrongCaIsRefusedAndNeverReady) {
  uint16_t tls_port = 0;
  auto redis = start_tls_redis(&tls_port, false);
  ASSERT_TRUE(redis);
  auto server = ServerProcess::start(relaxed_limits(
      {{"REDIS_URL", rediss_url(tls_port)}, {"REDIS_TLS_CA_FILE", pki().other_ca_cert}}));
  ASSERT_TRUE(server);
  EXPECT_TRUE(server->wait_for_output("certificate verify failed", 10000ms)) << server->output();
  EXPECT_NE(server->output().find("REDIS_TLS_CA_FILE"), std::string::npos);
  EXPECT_EQ(http_get(server->port(), "/readyz").status, 503u);
  // Clients are refused rather than admitted to a room nobody else can see.
  auto c = WsClient::connect(server->port(), "/?roomId=never");
  if (c) {
    auto closed = c->wait_close();
    ASSERT_TRUE(closed);
    EXPECT_NE(closed->code, 0);
  }
  EXPECT_EQ(redis->cli({"EXISTS", "room:never"}), "0");
}

// Starts a server into `s`; true once its /readyz says 200 (within 10 s).
bool start_ready(std::unique_ptr<ServerProcess>& s, const Env& env) {
  s = ServerProcess::start(env);
  return s && wait_until([&] { return ready(*s); }, 10000ms);
}

// A managed Redis Cluster with in-transit encryption and an ACL user: REDIS_TLS and
// REDIS_USERNAME. Every node serves TLS (its cluster bus and replication too), and the user exists
// on every node (ACLs are per node), with the channels sharded pub/sub needs (&*).
TEST(Tls, RedisClusterOverTlsWithAnAclUserRelaysAcrossInstances) {
  RedisClusterProcess::Options options;
  options.tls =
      RedisClusterProcess::Options::Tls{pki().server_cert, pki().server_key, pki().ca_cert};
  auto cluster = RedisClusterProcess::start(options);
  ASSERT_TRUE(cluster);
  for (std::size_t i = 0; i < cluster->size(); ++i) {
    ASSERT_EQ(
        cluster->cli(i, {"ACL", "SETUSER", "relay", "on", ">relay-secret-7", "~*", "&*", "+@all"}),
        "OK");
  }
  Env env = relaxed_limits({{"REDIS_CLUSTER_NODES", cluster->tls_seeds()},
                            {"REDIS_TLS", "true"},
                            {"REDIS_TLS_CA_FILE", pki().ca_cert},
                            {"REDIS_USERNAME", "relay"},
                            {"REDIS_PASSWORD", "relay-secret-7"},
                            {"LOG_LEVEL", "debug"}});
  std::unique_ptr<ServerProcess> one, two;
  ASSERT_TRUE(start_ready(one, env) && start_ready(two, env)) << (one ? one->output() : "");
  // A room on each master, its members on different instances: both ways, in order.
  const auto rooms = cluster->rooms_per_master("tls-cluster", 1);
  ASSERT_EQ(rooms.size(), 3u);
  for (const auto& ids : rooms) {
    const std::string& room = ids.at(0);
    auto a = WsClient::connect(one->port(), "/?roomId=" + room);
    auto b = WsClient::connect(two->port(), "/?roomId=" + room);
    ASSERT_TRUE(a && b) << room;
    for (int i = 0; i < 20; ++i) {
      a->send(R"({"type":"candidate","candidate":"a)" + std::to_string(i) + R"("})");
      b->send(R"({"type":"candidate","candidate":"b)" + std::to_string(i) + R"("})");
    }
    for (int i = 0; i < 20; ++i) {
      EXPECT_EQ(b->recv(), R"({"type":"candidate","candidate":"a)" + std::to_string(i) + R"("})")
          << room;
      EXPECT_EQ(a->recv(), R"({"type":"candidate","candidate":"b)" + std::to_string(i) + R"("})")
          << room;
    }
  }
  // Each master holds both instances' command and sharded-subscriber connections, every one made
  // as the ACL user and to the TLS port (none to the plain port the cli uses).
  for (std::size_t m : cluster->masters()) {
    std::size_t relay = 0;
    std::istringstream list(cluster->cli(m, {"CLIENT", "LIST"}));
    for (std::string line; std::getline(list, line);) {
      if (line.find(" user=relay ") == std::string::npos) continue;
      ++relay;
      EXPECT_EQ(line.find(" laddr=127.0.0.1:" + std::to_string(cluster->port(m)) + " "),
                std::string::npos)
          << line;
    }
    EXPECT_GE(relay, 4u) << "master " << m;
  }
  for (auto* s : {one.get(), two.get()}) {
    EXPECT_EQ(s->output().find("relay-secret-7"), std::string::npos);
  }

  // A wrong password for the user stops start-up naming the variable, and never shows it.
  Env wrong = env;
  wrong["REDIS_PASSWORD"] = "not-the-secret-3";
  const auto refused = run_server_to_exit(wrong, {});
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_NE(refused.output.find("REDIS_PASSWORD"), std::string::npos) << refused.output;
  EXPECT_EQ(refused.output.find("not-the-secret-3"), std::string::npos);

  // A CA that did not sign the nodes' certificates: never ready, and the log says why.
  Env other_ca = env;
  other_ca["REDIS_TLS_CA_FILE"] = pki().other_ca_cert;
  auto untrusting = ServerProcess::start(other_ca);
  ASSERT_TRUE(untrusting);
  EXPECT_TRUE(untrusting->wait_for_output("certificate verify failed", 10000ms))
      << untrusting->output();
  EXPECT_EQ(http_get(untrusting->port(), "/readyz").status, 503u);
}

// Sentinel with TLS everywhere (REDIS_TLS): the sentinel answers on its TLS port (with a password
// of its own) and reaches the data nodes over TLS (tls-replication), as do the replica and the
// bus. A failover is followed.
TEST(Tls, SentinelOverTlsFollowsAFailover) {
  uint16_t master_tls = 0;
  uint16_t replica_tls = 0;
  uint16_t sentinel_tls = 0;
  const std::vector<std::string> node_tls = {"--tls-cert-file",    pki().server_cert,
                                             "--tls-key-file",     pki().server_key,
                                             "--tls-ca-cert-file", pki().ca_cert,
                                             "--tls-auth-clients", "no",
                                             "--tls-replication",  "yes"};
  // Each TLS port is picked again with the plain one when a try finds it taken.
  auto with_port = [&](uint16_t* port, std::vector<std::string> more) {
    return [&node_tls, port, more] {
      *port = free_port();
      std::vector<std::string> args = node_tls;
      args.insert(args.end(), {"--tls-port", std::to_string(*port)});
      args.insert(args.end(), more.begin(), more.end());
      return args;
    };
  };
  auto master = RedisProcess::start_with(0, {}, with_port(&master_tls, {}));
  ASSERT_TRUE(master);
  auto replica = RedisProcess::start_with(
      0, {}, with_port(&replica_tls, {"--replicaof", "127.0.0.1", std::to_string(master_tls)}));
  ASSERT_TRUE(replica);
  auto sentinel = SentinelProcess::start(master_tls, "mymaster", 1, "sentinel-secret-9", {}, [&] {
    sentinel_tls = free_port();
    return std::vector<std::string>{"tls-port " + std::to_string(sentinel_tls),
                                    "tls-cert-file " + pki().server_cert,
                                    "tls-key-file " + pki().server_key,
                                    "tls-ca-cert-file " + pki().ca_cert,
                                    "tls-auth-clients no",
                                    "tls-replication yes"};
  });
  ASSERT_TRUE(sentinel);
  ASSERT_TRUE(sentinel->wait_knows_replica(*replica));
  // The data nodes' ACL user, on both (ACLs are not replicated); the sentinel stays the default
  // user.
  for (const auto* node : {master.get(), replica.get()}) {
    ASSERT_EQ(node->cli({"ACL", "SETUSER", "relay", "on", ">relay-secret-8", "~*", "&*", "+@all"}),
              "OK");
  }

  const Env env = relaxed_limits({{"REDIS_SENTINELS", "127.0.0.1:" + std::to_string(sentinel_tls)},
                                  {"REDIS_SENTINEL_MASTER", "mymaster"},
                                  {"REDIS_SENTINEL_PASSWORD", "sentinel-secret-9"},
                                  {"REDIS_TLS", "true"},
                                  {"REDIS_TLS_CA_FILE", pki().ca_cert},
                                  {"REDIS_USERNAME", "relay"},
                                  {"REDIS_PASSWORD", "relay-secret-8"}});
  std::unique_ptr<ServerProcess> one, two;
  ASSERT_TRUE(start_ready(one, env) && start_ready(two, env)) << (one ? one->output() : "");
  auto a = WsClient::connect(one->port(), "/?roomId=tls-sentinel");
  auto b = WsClient::connect(two->port(), "/?roomId=tls-sentinel");
  ASSERT_TRUE(a && b);
  a->send(R"({"type":"offer","sdp":"before"})");
  ASSERT_EQ(b->recv(), R"({"type":"offer","sdp":"before"})");

  master->kill_now();
  ASSERT_TRUE(wait_until([&] { return sentinel->master_port() == replica_tls; }, 15000ms))
      << sentinel->cli({"SENTINEL", "master", "mymaster"});
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  bool resumed = false;
  for (int i = 0; !resumed && std::chrono::steady_clock::now() < deadline; ++i) {
    a->send(R"({"type":"offer","sdp":"try-)" + std::to_string(i) + R"("})");
    auto got = b->recv(200ms);
    resumed = got && got->find("try-") != std::string::npos;
  }
  EXPECT_TRUE(resumed) << one->output();
  // The new master serves the bus on its TLS port only, as the ACL user: on the plain port there
  // is just this CLIENT LIST.
  std::size_t as_relay = 0;
  std::istringstream list(replica->cli({"CLIENT", "LIST"}));
  for (std::string line; std::getline(list, line);) {
    if (line.find(" laddr=127.0.0.1:" + std::to_string(replica_tls) + " ") != std::string::npos) {
      as_relay += line.find(" user=relay ") != std::string::npos ? 1 : 0;
    } else {
      EXPECT_NE(line.find("cmd=client|list"), std::string::npos) << line;
    }
  }
  EXPECT_GE(as_relay, 4u);  // both instances' command and subscriber connections
  for (auto* s : {one.get(), two.get()}) {
    EXPECT_EQ(s->output().find("relay-secret-8"), std::string::npos);
    EXPECT_EQ(s->output().find("sentinel-secret-9"), std::string::npos);
  }
}

}  // namespace
