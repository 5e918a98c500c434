// JWKS_URL client: one GET at a time (http:// or https:// with the system CA store and host name
// verification), bounded in time and size, on a thread of its own; the cache decides when.
#include "auth/jwks_client.hpp"

#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <thread>

namespace sigsrv {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;

namespace {

// Resolve, connect, TLS handshake, request and response together: a provider slower than this is
// treated as down (the last good set stays; waiting connections are refused).
constexpr std::chrono::milliseconds kFetchTimeout{5000};
// Real key sets are a few KB; the cap keeps a wrong URL (or a hostile endpoint) from filling
// memory.
constexpr std::size_t kMaxJwksBytes = 1 << 20;

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

JwksFetch failure(std::string why) {
  JwksFetch f;
  f.error = std::move(why);
  return f;
}

}  // namespace

struct JwksClient::Impl {
  Impl(const Config& config, Logger& l)
      : log(l),
        endpoint(std::get<JwksEndpoint>(parse_jwks_url(config.jwks_url))),
        url_for_logs(jwks_url_for_logs(config.jwks_url)),
        cache(JwksCacheOptions{config.jwt_alg, std::chrono::milliseconds(config.jwks_cache_ttl_ms)},
              [this] {
                // Called from session loops too: the fetch itself always runs on our thread.
                asio::post(ioc, [this] { asio::co_spawn(ioc, run_fetch(), asio::detached); });
              }) {
    tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                    ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    // The system CA store (SSL_CERT_FILE / SSL_CERT_DIR override it for a private CA).
    tls.set_default_verify_paths();
  }

  // Arms the timer for the next scheduled fetch, or starts it when due.
  void schedule() {
    const auto due = cache.tick(std::chrono::steady_clock::now());
    if (!due) return;  // a fetch is in flight; its end schedules again
    refresh.expires_at(*due);
    refresh.async_wait([this](boost::system::error_code ec) {
      if (!ec) schedule();  // aborted: a newer schedule() re-armed the timer
    });
  }

  asio::awaitable<void> run_fetch() {
    JwksFetch result;
    try {
      result = co_await get();
    } catch (const std::exception& e) {
      // Only allocation failures can get here; the cache must still hear of this fetch, or it
      // would consider it in flight forever and never fetch again.
      result = failure(std::string("internal error: ") + e.what());
    }
    const auto out = cache.fetched(std::chrono::steady_clock::now(), std::move(result));
    // The URL without userinfo or query; errors come from the network or the parser, and name
    // keys by kid only.
    for (const auto& s : out.skipped)
      log.debug("JWKS key skipped", {{"url", url_for_logs}, {"why", s}});
    if (!out.ok) {
      log.warn("JWKS refresh failed; keeping the last good key set",
               {{"url", url_for_logs}, {"err", out.error}, {"keys", out.keys}});
    } else if (out.keys != logged_keys) {
      log.info("JWKS key set fetched", {{"url", url_for_logs}, {"keys", out.keys}});
      logged_keys = out.keys;
    } else {
      log.debug("JWKS key set refreshed", {{"url", url_for_logs}, {"keys", out.keys}});
    }
    schedule();
  }

  asio::awaitable<JwksFetch> get() {
    const auto deadline = std::chrono::steady_clock::now() + kFetchTimeout;
    // The resolver has no timeout of its own; the stream's covers everything after it.
    resolve_guard.expires_at(deadline);
    resolve_guard.async_wait([this](boost::system::error_code ec) {
      if (!ec) resolver.cancel();
    });
    auto [rec, results] = co_await resolver.async_resolve(endpoint.host, endpoint.port, kTuple);
    resolve_guard.cancel();
    if (rec) co_return failure("cannot resolve the host: " + rec.message());
    beast::tcp_stream tcp(ioc);
    tcp.expires_at(deadline);
    auto [cec, peer] = co_await tcp.async_connect(results, kTuple);
    if (cec) co_return failure("cannot connect: " + cec.message());
    if (!endpoint.tls) {
      co_return co_await exchange(tcp);
    }

    beast::ssl_stream<beast::tcp_stream> stream(std::move(tcp), tls);
    boost::system::error_code not_ip;
    asio::ip::make_address(endpoint.host, not_ip);
    // SNI carries names only (RFC 6066 3); the certificate is checked against the host either way.
    if (not_ip && SSL_set_tlsext_host_name(stream.native_handle(), endpoint.host.c_str()) != 1) {
      co_return failure("cannot set SNI");
    }
    stream.set_verify_mode(ssl::verify_peer);
    stream.set_verify_callback(ssl::host_name_verification(endpoint.host));
    auto [hec] = co_await stream.async_handshake(ssl::stream_base::client, kTuple);
    if (hec) co_return failure("TLS handshake failed: " + hec.message());
    // No TLS shutdown afterwards: the whole response is read, and the socket just closes.
    co_return co_await exchange(stream);
  }

  template <class Stream>
  asio::awaitable<JwksFetch> exchange(Stream& stream) {
    http::request<http::empty_body> req{http::verb::get, endpoint.target, 11};
    req.set(http::field::host, endpoint.host_header);
    req.set(http::field::user_agent, "signal-server");
    req.set(http::field::accept, "application/json");
    req.set(http::field::connection, "close");
    auto [wec, written] = co_await http::async_write(stream, req, kTuple);
    if (wec) co_return failure("cannot send the request: " + wec.message());
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxJwksBytes);
    auto [rec, read] = co_await http::async_read(stream, buffer, parser, kTuple);
    if (rec == http::error::body_limit) co_return failure("response larger than 1 MiB");
    if (rec) co_return failure("cannot read the response: " + rec.message());
    // Redirects are not followed: configure the final URL.
    if (parser.get().result() != http::status::ok) {
      co_return failure("HTTP status " + std::to_string(parser.get().result_int()));
    }
    JwksFetch ok;
    ok.ok = true;
    ok.body = std::move(parser.release().body());
    co_return ok;
  }

  Logger& log;
  const JwksEndpoint endpoint;
  const std::string url_for_logs;
  JwksCache cache;
  std::size_t logged_keys = 0;
  // Destroyed before the cache: pending handlers and coroutine frames refer to it.
  asio::io_context ioc{1};
  asio::steady_timer refresh{ioc};
  asio::ip::tcp::resolver resolver{ioc};
  asio::steady_timer resolve_guard{ioc};
  ssl::context tls{ssl::context::tls_client};
  std::thread thread;
};

JwksClient::JwksClient(const Config& config, Logger& log)
    : impl_(std::make_unique<Impl>(config, log)) {}

JwksClient::~JwksClient() {
  impl_->ioc.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->cache.drop_waiters();
}

void JwksClient::start() {
  Impl& i = *impl_;
  asio::post(i.ioc, [&i] { i.schedule(); });
  i.thread = std::thread([&i] {
    auto guard = asio::make_work_guard(i.ioc);
    i.ioc.run();
  });
}

JwksCache& JwksClient::cache() {
  return impl_->cache;
}

}  // namespace sigsrv
