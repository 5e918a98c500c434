// The C++ client library against the real signal-server binary: relay both ways with a raw
// (browser-shaped) WebSocket peer, resume across a silent drop and on another instance, the
// window passing, refusals without retry storms, TLS with a test CA, bad server input, and the
// client on the caller's io_context.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <signal_client/client.hpp>
#include <thread>

#include "harness.hpp"
#include "net_fixtures.hpp"
#include "ws_client.hpp"

using namespace testing_support;
using namespace client_tests;
namespace json = boost::json;
using signal_client::Event;
using signal_client::EventType;
using Clock = std::chrono::steady_clock;

namespace {

// A client whose events the test reads in order (the polled queue).
struct Host {
  explicit Host(signal_client::Options o) : client(std::move(o)) {}
  signal_client::Client client;
  std::vector<Event> seen;

  // The next event of `type` (those before it are kept in `seen`); nullopt at the deadline.
  std::optional<Event> wait_for(EventType type, std::chrono::milliseconds timeout = 5000ms) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      auto ev = client.wait_event(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
      if (!ev) break;
      seen.push_back(*ev);
      if (ev->type == type) return ev;
    }
    return std::nullopt;
  }
  int count(EventType type) const {
    int n = 0;
    for (const auto& e : seen) n += e.type == type;
    return n;
  }
};

signal_client::Options options(uint16_t port, const std::string& room) {
  signal_client::Options o;
  o.url = "ws://127.0.0.1:" + std::to_string(port);
  o.room_id = room;
  o.reconnect.initial_delay_ms = 50;
  o.reconnect.max_delay_ms = 400;
  o.reconnect.draining_delay_ms = 50;
  o.random = [] { return 0.5; };
  return o;
}

std::unique_ptr<WsClient> browser(uint16_t port, const std::string& room) {
  std::string err;
  auto c = WsClient::connect(port, "/?roomId=" + room + "&events=1", {}, &err);
  EXPECT_TRUE(c) << err;
  return c;
}

// The next message of the raw peer that is not a server notice (welcome, peer-*).
std::optional<json::value> next_relayed(WsClient& c, std::chrono::milliseconds timeout = 5000ms) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    auto text =
        c.recv(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
    if (!text) return std::nullopt;
    auto v = json::parse(*text);
    const auto& o = v.as_object();
    if (o.at("type") == "control") {
      const auto action = o.at("action").as_string();
      if (action == "welcome" || action.starts_with("peer-")) continue;
    }
    return v;
  }
  return std::nullopt;
}

std::string sdp_of(const json::value& v) {
  return std::string(v.at("sdp").as_string());
}

Env env_with(const Env& extra) {
  // The stale-member probe would release a silent member these tests keep on purpose.
  Env env = relaxed_limits({{"STALE_MEMBER_PROBE_MS", "0"}});
  for (const auto& [k, v] : extra) env[k] = v;
  return env;
}

// Peer sends p1..p3 and the host h1..h3 while the host's network is down; after the resume
// each side has every message once, in order, and live traffic flows.
void expect_zero_loss_across(Host& host, WsClient& peer, const std::function<void()>& drop,
                             const std::string& expect_instance_note) {
  drop();
  for (int i = 1; i <= 3; ++i) {
    peer.send(R"({"type":"offer","sdp":"p)" + std::to_string(i) + R"("})");
    ASSERT_TRUE(host.client.send_offer("h" + std::to_string(i)));
  }
  auto closed = host.wait_for(EventType::close, 10000ms);
  ASSERT_TRUE(closed) << "the silent drop was never noticed";
  EXPECT_EQ(closed->code, 1006);
  EXPECT_TRUE(closed->will_retry);
  auto resumed = host.wait_for(EventType::resumed, 10000ms);
  ASSERT_TRUE(resumed) << expect_instance_note;
  EXPECT_TRUE(resumed->recovered);
  auto open = host.wait_for(EventType::open);
  ASSERT_TRUE(open);
  EXPECT_TRUE(open->reconnected);
  EXPECT_TRUE(open->resumed_session);
  EXPECT_EQ(host.count(EventType::session_lost), 0);
  // Markers after the gap prove nothing more (no duplicate) is on its way.
  peer.send(R"({"type":"offer","sdp":"p-end"})");
  ASSERT_TRUE(host.client.send_offer("h-end"));
  std::vector<std::string> at_host;
  while (at_host.empty() || at_host.back() != "p-end") {
    auto ev = host.wait_for(EventType::offer);
    ASSERT_TRUE(ev) << "host got only " << at_host.size();
    at_host.push_back(ev->sdp);
  }
  EXPECT_EQ(at_host, (std::vector<std::string>{"p1", "p2", "p3", "p-end"}));
  std::vector<std::string> at_peer;
  while (at_peer.empty() || at_peer.back() != "h-end") {
    auto v = next_relayed(peer);
    ASSERT_TRUE(v) << "peer got only " << at_peer.size();
    at_peer.push_back(sdp_of(*v));
  }
  EXPECT_EQ(at_peer, (std::vector<std::string>{"h1", "h2", "h3", "h-end"}));
}

}  // namespace

TEST(CppClient, RelaysEveryTypeBothWaysWithABrowserShapedPeer) {
  auto server = ServerProcess::start(env_with({}));
  ASSERT_TRUE(server);
  Host host(options(server->port(), "relay"));
  ASSERT_TRUE(host.client.connect());
  auto welcome = host.wait_for(EventType::welcome);
  ASSERT_TRUE(welcome);
  EXPECT_FALSE(welcome->client_id.empty());
  ASSERT_TRUE(host.wait_for(EventType::open));
  EXPECT_EQ(host.client.state(), signal_client::State::open);
  auto peer = browser(server->port(), "relay");
  ASSERT_TRUE(peer);
  ASSERT_TRUE(host.wait_for(EventType::peer_joined));

  peer->send(R"({"type":"offer","sdp":"v=0 offer"})");
  auto offer = host.wait_for(EventType::offer);
  ASSERT_TRUE(offer);
  EXPECT_EQ(offer->sdp, "v=0 offer");
  ASSERT_TRUE(host.client.send_answer("v=0 answer"));
  auto answer = next_relayed(*peer);
  ASSERT_TRUE(answer);
  EXPECT_EQ(*answer, json::parse(R"({"type":"answer","sdp":"v=0 answer"})"));

  ASSERT_TRUE(host.client.send_candidate("candidate:1 1 udp 1 10.0.0.1 9 typ host", "0", 0));
  auto cand = next_relayed(*peer);
  ASSERT_TRUE(cand);
  EXPECT_EQ(
      *cand,
      json::parse(
          R"({"type":"candidate","candidate":"candidate:1 1 udp 1 10.0.0.1 9 typ host","sdpMid":"0","sdpMLineIndex":0})"));
  peer->send(R"({"type":"candidate","candidate":"candidate:2","sdpMid":null,"sdpMLineIndex":1})");
  auto c2 = host.wait_for(EventType::candidate);
  ASSERT_TRUE(c2);
  EXPECT_EQ(c2->candidate, "candidate:2");
  EXPECT_FALSE(c2->sdp_mid);
  EXPECT_EQ(c2->sdp_mline_index, 1);

  ASSERT_TRUE(host.client.send_control("bitrate", R"({"kbps":5000})"));
  auto ctl = next_relayed(*peer);
  ASSERT_TRUE(ctl);
  EXPECT_EQ(*ctl, json::parse(R"({"type":"control","action":"bitrate","payload":{"kbps":5000}})"));
  peer->send(R"({"type":"control","action":"keyframe","payload":[1,"x"]})");
  auto ctl2 = host.wait_for(EventType::control);
  ASSERT_TRUE(ctl2);
  EXPECT_EQ(ctl2->action, "keyframe");
  EXPECT_EQ(json::parse(ctl2->payload), json::parse(R"([1,"x"])"));

  EXPECT_FALSE(host.client.send_offer("")) << "refused locally, as the server would";
  EXPECT_FALSE(host.client.send_control("x", "{not json"));

  peer->close();
  ASSERT_TRUE(host.wait_for(EventType::peer_disconnected));
  host.client.close();
  auto closed = host.wait_for(EventType::close);
  ASSERT_TRUE(closed);
  EXPECT_FALSE(closed->will_retry);
  EXPECT_FALSE(host.client.send_offer("after close"));
}

TEST(CppClient, ResumesAcrossASilentNetworkDropWithZeroLoss) {
  auto server = ServerProcess::start(env_with({}));
  ASSERT_TRUE(server);
  CutProxy proxy(server->port());
  auto o = options(proxy.port(), "blip");
  o.idle_timeout_ms = 1000;  // a ping after 0.5 s of silence, dead after 1 s
  Host host(o);
  ASSERT_TRUE(host.client.connect());
  ASSERT_TRUE(host.wait_for(EventType::open));
  auto peer = browser(server->port(), "blip");
  ASSERT_TRUE(peer);
  ASSERT_TRUE(host.wait_for(EventType::peer_joined));
  peer->send(R"({"type":"offer","sdp":"p0"})");
  ASSERT_TRUE(host.wait_for(EventType::offer));
  expect_zero_loss_across(
      host, *peer, [&] { proxy.black_hole(); }, "same instance");
  EXPECT_EQ(proxy.accepted(), 2);
}

TEST(CppClient, ResumesOnAnotherInstanceOnTheRedisBus) {
  auto redis = RedisProcess::start();
  ASSERT_TRUE(redis);
  Env env = env_with({{"REDIS_URL", redis->url()}, {"RESUME_SECRET", "fleet-secret"}});
  auto one = ServerProcess::start(env);
  auto two = ServerProcess::start(env);
  ASSERT_TRUE(one && two);
  for (auto* s : {one.get(), two.get()}) {
    ASSERT_TRUE(wait_until([&] { return http_get(s->port(), "/readyz").status == 200; }));
  }
  CutProxy proxy(one->port());
  auto o = options(proxy.port(), "fleet");
  o.idle_timeout_ms = 1000;
  Host host(o);
  ASSERT_TRUE(host.client.connect());
  ASSERT_TRUE(host.wait_for(EventType::open));
  auto peer = browser(two->port(), "fleet");
  ASSERT_TRUE(peer);
  ASSERT_TRUE(host.wait_for(EventType::peer_joined));
  const std::string id = host.client.client_id();
  expect_zero_loss_across(
      host, *peer,
      [&] {
        proxy.black_hole();
        proxy.retarget(two->port());  // the load balancer sends the comeback elsewhere
      },
      "on the other instance");
  EXPECT_EQ(host.client.client_id(), id) << "the same member, not a new one";
  EXPECT_EQ(redis->cli({"SCARD", "room:fleet"}), "2");
}

TEST(CppClient, AfterTheWindowResumedFalseIsSurfacedThenAFreshSession) {
  auto server = ServerProcess::start(env_with({{"RESUME_WINDOW_MS", "300"}}));
  ASSERT_TRUE(server);
  CutProxy proxy(server->port());
  Host host(options(proxy.port(), "late"));
  ASSERT_TRUE(host.client.connect());
  ASSERT_TRUE(host.wait_for(EventType::open));
  const std::string first_id = host.client.client_id();
  auto peer = browser(server->port(), "late");
  ASSERT_TRUE(peer);
  ASSERT_TRUE(host.wait_for(EventType::peer_joined));
  proxy.refuse(true);  // the network stays down...
  proxy.cut();
  auto closed = host.wait_for(EventType::close);
  ASSERT_TRUE(closed);
  EXPECT_TRUE(closed->will_retry);
  // ...until the server released the seat (the peer hears the departure).
  bool departed = false;
  for (int i = 0; i < 10 && !departed; ++i) {
    auto text = peer->recv(3000ms);
    ASSERT_TRUE(text);
    departed = json::parse(*text).at("type") == "peer-disconnected";
  }
  ASSERT_TRUE(departed);
  proxy.refuse(false);
  auto resumed = host.wait_for(EventType::resumed, 10000ms);
  ASSERT_TRUE(resumed);
  EXPECT_FALSE(resumed->recovered);
  auto lost = host.wait_for(EventType::session_lost);
  ASSERT_TRUE(lost);
  EXPECT_EQ(lost->reason, "not-recovered");
  auto open = host.wait_for(EventType::open);
  ASSERT_TRUE(open);
  EXPECT_TRUE(open->reconnected);
  EXPECT_FALSE(open->resumed_session);
  EXPECT_NE(host.client.client_id(), first_id) << "a fresh join: renegotiate";
}

TEST(CppClient, RoomFullAndUnauthorizedCloseForGoodWithoutRetrying) {
  auto server = ServerProcess::start(env_with({{"ROOM_CAPACITY", "1"}}));
  ASSERT_TRUE(server);
  auto first = browser(server->port(), "full");
  ASSERT_TRUE(first);
  Host host(options(server->port(), "full"));
  ASSERT_TRUE(host.client.connect());
  auto closed = host.wait_for(EventType::close);
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->code, 1000);
  EXPECT_EQ(closed->reason, "Room is full");
  EXPECT_FALSE(closed->will_retry);
  EXPECT_EQ(host.count(EventType::open), 0);
  EXPECT_EQ(host.client.state(), signal_client::State::closed);

  auto secured =
      ServerProcess::start(env_with({{"ENABLE_AUTH", "true"}, {"JWT_SECRET", "s3cret"}}));
  ASSERT_TRUE(secured);
  Host guest(options(secured->port(), "vip"));
  ASSERT_TRUE(guest.client.connect());
  closed = guest.wait_for(EventType::close);
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->code, 1008);
  EXPECT_EQ(closed->reason, "Unauthorized");
  EXPECT_FALSE(closed->will_retry);
  EXPECT_EQ(guest.count(EventType::reconnecting), 0);
}

TEST(CppClient, RateLimitedRetriesWithGrowingDelaysThenGivesUp) {
  auto server = ServerProcess::start(env_with({{"RATE_LIMIT_CONN_PER_10S", "1"}}));
  ASSERT_TRUE(server);
  auto first = browser(server->port(), "rl");  // the one connection allowed in these 10 s
  ASSERT_TRUE(first);
  auto o = options(server->port(), "rl");
  o.reconnect.initial_delay_ms = 100;
  o.reconnect.max_attempts = 3;
  // Each close stamped on the client's I/O thread as it is emitted: the next attempt waits for
  // its delay after that, so the stamps are at least a delay apart however late this thread runs.
  std::mutex m;
  std::vector<std::pair<Event, Clock::time_point>> closes;
  o.on_event = [&](const Event& e) {
    if (e.type != EventType::close) return;
    std::lock_guard lock(m);
    closes.emplace_back(e, Clock::now());
  };
  signal_client::Client client(o);
  ASSERT_TRUE(client.connect());
  ASSERT_TRUE(wait_until([&] {
    std::lock_guard lock(m);
    return !closes.empty() && !closes.back().first.will_retry;
  }));
  std::lock_guard lock(m);
  std::vector<int> delays;
  for (const auto& [closed, at] : closes) {
    EXPECT_EQ(closed.code, 1013);
    EXPECT_EQ(closed.reason, "Rate limited");
    if (closed.will_retry) delays.push_back(closed.delay_ms);
  }
  EXPECT_EQ(delays, (std::vector<int>{75, 150, 300})) << "backoff with jitter 0.5";
  ASSERT_EQ(closes.size(), delays.size() + 1);
  for (std::size_t i = 0; i < delays.size(); ++i) {
    EXPECT_GE(closes[i + 1].second - closes[i].second, std::chrono::milliseconds(delays[i]))
        << "attempt " << i + 2;
  }
  EXPECT_EQ(client.state(), signal_client::State::closed);
}

namespace {

struct TestCa {
  std::string dir, ca, other_ca, cert, key;
};

const TestCa& test_ca() {
  static const TestCa kCa = [] {
    TestCa p;
    p.dir =
        (std::filesystem::temp_directory_path() / ("signal-client-tls-" + std::to_string(getpid())))
            .string();
    std::filesystem::create_directories(p.dir);
    const std::string d = p.dir + "/";
    p.ca = d + "ca.pem";
    p.other_ca = d + "other-ca.pem";
    p.cert = d + "server.pem";
    p.key = d + "server.key";
    const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    std::ofstream(d + "server.ext") << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
    for (const auto& cmd : std::vector<std::string>{
             "openssl req -x509" + ec + " -keyout " + d + "ca.key -out " + p.ca +
                 " -days 2 -subj /CN=client-test-ca",
             "openssl req -x509" + ec + " -keyout " + d + "other.key -out " + p.other_ca +
                 " -days 2 -subj /CN=other-ca",
             "openssl req" + ec + " -keyout " + p.key + " -out " + d +
                 "server.csr -subj /CN=localhost",
             "openssl x509 -req -in " + d + "server.csr -CA " + p.ca + " -CAkey " + d +
                 "ca.key -CAcreateserial -days 2 -extfile " + d + "server.ext -out " + p.cert}) {
      if (std::system((cmd + " 2>>" + d + "openssl.log").c_str()) != 0) {
        ADD_FAILURE() << "failed: " << cmd;
        break;
      }
    }
    return p;
  }();
  return kCa;
}

}  // namespace

TEST(CppClient, WssWithATestCaAndRefusesAnUntrustedServer) {
  auto server = ServerProcess::start(
      env_with({{"TLS_CERT_FILE", test_ca().cert}, {"TLS_KEY_FILE", test_ca().key}}));
  ASSERT_TRUE(server);
  auto o = options(server->port(), "tls");
  o.url = "wss://127.0.0.1:" + std::to_string(server->port()) + "/";
  o.ca_file = test_ca().ca;
  Host a(o), b(o);
  ASSERT_TRUE(a.client.connect());
  ASSERT_TRUE(a.wait_for(EventType::open));
  ASSERT_TRUE(b.client.connect());
  ASSERT_TRUE(b.wait_for(EventType::open));
  ASSERT_TRUE(a.client.send_offer("over tls"));
  auto offer = b.wait_for(EventType::offer);
  ASSERT_TRUE(offer);
  EXPECT_EQ(offer->sdp, "over tls");

  o.ca_file = test_ca().other_ca;
  o.reconnect.max_attempts = 0;
  Host c(o);
  ASSERT_TRUE(c.client.connect());
  auto closed = c.wait_for(EventType::close);
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->code, 1006);
  EXPECT_NE(closed->reason.find("certificate verify failed"), std::string::npos) << closed->reason;
  EXPECT_EQ(c.count(EventType::open), 0);

  o.ca_file = test_ca().dir + "/missing.pem";
  signal_client::Client bad(o);
  EXPECT_FALSE(bad.connect());
  EXPECT_NE(bad.last_error().find("TLS setup"), std::string::npos) << bad.last_error();
}

TEST(CppClient, BadServerInputIsReportedAndNeverCrashesTheHost) {
  ScriptedServer fake({
      R"({"type":"control","action":"welcome","payload":{"clientId":"x","roomId":"r","peers":0}})",
      "not json at all", R"([1,2,3])", R"({"type":"bogus"})", R"({"type":"offer"})",
      R"({"type":"candidate","candidate":{"nested":true}})",
      R"({"type":"offer","sdp":"still fine"})", std::string(4096, 'x'),  // over max_message_bytes
  });
  auto o = options(fake.port(), "r");
  o.max_message_bytes = 1024;
  Host host(o);
  ASSERT_TRUE(host.client.connect());
  ASSERT_TRUE(host.wait_for(EventType::open));
  auto ok = host.wait_for(EventType::offer);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->sdp, "still fine");
  EXPECT_EQ(host.count(EventType::protocol_error), 5);
  auto closed = host.wait_for(EventType::close);
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->code, 1009) << closed->reason;
  EXPECT_FALSE(closed->will_retry);
  EXPECT_EQ(host.count(EventType::protocol_error), 6) << "the oversize frame is reported too";
  EXPECT_EQ(fake.accepted(), 1) << "no retry";
}

TEST(CppClient, ExampleHostAnswersAnOffer) {
  auto server = ServerProcess::start(env_with({}));
  ASSERT_TRUE(server);
  const std::string url = "ws://127.0.0.1:" + std::to_string(server->port());
  std::vector<std::string> args = {SIGNAL_CLIENT_EXAMPLE_BIN, url, "example", "--once"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  ASSERT_EQ(posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ), 0);
  auto peer = browser(server->port(), "example");
  ASSERT_TRUE(peer);
  // The host may join before or after the peer: offer once it is in the room.
  ASSERT_TRUE(
      wait_until([&] { return scrape(server->port(), "cloudgaming_active_connections") == 2.0; }));
  peer->send(R"({"type":"offer","sdp":"v=0 from-browser"})");
  auto answer = next_relayed(*peer);
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->at("type"), "answer");
  EXPECT_NE(sdp_of(*answer).find("s=example-host"), std::string::npos);
  int status = -1;
  const bool exited = wait_until([&] { return waitpid(pid, &status, WNOHANG) == pid; });
  if (!exited) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  EXPECT_TRUE(exited);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST(CppClient, RunsOnTheCallersIoContextWithCallbacksOnItsThread) {
  auto server = ServerProcess::start(env_with({}));
  ASSERT_TRUE(server);
  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  std::thread runner([&] { io.run(); });

  std::mutex mu;
  std::condition_variable cv;
  std::vector<Event> events;
  std::vector<std::thread::id> callback_threads;
  auto opts = options(server->port(), "callers-io");
  opts.on_event = [&](const Event& e) {
    std::lock_guard lock(mu);
    events.push_back(e);
    callback_threads.push_back(std::this_thread::get_id());
    cv.notify_all();
  };
  auto wait_for = [&](EventType type) -> std::optional<Event> {
    std::unique_lock lock(mu);
    std::optional<Event> found;
    cv.wait_for(lock, 5s, [&] {
      for (const auto& e : events) {
        if (e.type == type) found = e;
      }
      return found.has_value();
    });
    return found;
  };
  {
    signal_client::Client client(io, opts);
    ASSERT_TRUE(client.connect());
    ASSERT_TRUE(wait_for(EventType::open));
    auto peer = browser(server->port(), "callers-io");
    ASSERT_TRUE(peer);
    ASSERT_TRUE(wait_for(EventType::peer_joined));
    peer->send(R"({"type":"offer","sdp":"v=0 from the page"})");
    auto offer = wait_for(EventType::offer);
    ASSERT_TRUE(offer);
    EXPECT_EQ(offer->sdp, "v=0 from the page");
    ASSERT_TRUE(client.send_answer("v=0 from the host"));
    auto answer = next_relayed(*peer);
    ASSERT_TRUE(answer);
    EXPECT_EQ(sdp_of(*answer), "v=0 from the host");
    client.close();
    ASSERT_TRUE(wait_for(EventType::close));
  }
  std::lock_guard lock(mu);
  ASSERT_FALSE(callback_threads.empty());
  for (const auto& id : callback_threads) EXPECT_EQ(id, runner.get_id());
  work.reset();
  io.stop();
  runner.join();
}
