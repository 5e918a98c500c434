// TLS contexts built once at start-up from the configured files; errors name the variable.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>
#include <variant>

namespace sigsrv {

struct Config;

using TlsContextOrError = std::variant<std::shared_ptr<boost::asio::ssl::context>, std::string>;

// The server side of wss:// and https:// (TLS_CERT_FILE, TLS_KEY_FILE): TLS 1.2 or newer.
TlsContextOrError make_server_tls_context(const Config& config);

// The client side of rediss:// (REDIS_TLS_CA_FILE, or the system's CAs; optional client
// certificate REDIS_TLS_CERT_FILE + REDIS_TLS_KEY_FILE): the peer is always verified.
TlsContextOrError make_redis_tls_context(const Config& config);

// The OpenSSL error queue's first entry as text (for logs); empties the queue.
std::string take_openssl_error();

}  // namespace sigsrv
