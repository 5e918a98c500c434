#include "net/tls_context.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "config/config.hpp"

namespace sigsrv {

namespace ssl = boost::asio::ssl;

std::string take_openssl_error() {
  const unsigned long code = ERR_get_error();  // NOLINT(google-runtime-int): OpenSSL's type
  ERR_clear_error();
  if (code == 0) return "unknown TLS error";
  char text[256];
  ERR_error_string_n(code, text, sizeof text);
  return text;
}

namespace {

// TLS 1.2 is the floor: 1.0 and 1.1 are deprecated (RFC 8996) and no supported browser needs them.
std::shared_ptr<ssl::context> base_context(ssl::context::method method) {
  auto ctx = std::make_shared<ssl::context>(method);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                   ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  return ctx;
}

// Loads a certificate chain and its key; the error names the variable and the file, never the
// key's content.
std::optional<std::string> load_pair(ssl::context& ctx, const std::string& cert_var,
                                     const std::string& cert_file, const std::string& key_var,
                                     const std::string& key_file) {
  // Key first: loading the certificate after it drops a key that does not match, which the
  // check below then reports in plain words.
  boost::system::error_code ec;
  ctx.use_private_key_file(key_file, ssl::context::pem, ec);
  if (ec) return key_var + ": cannot load private key '" + key_file + "': " + ec.message();
  ctx.use_certificate_chain_file(cert_file, ec);
  if (ec) return cert_var + ": cannot load certificate chain '" + cert_file + "': " + ec.message();
  if (SSL_CTX_check_private_key(ctx.native_handle()) != 1) {
    ERR_clear_error();
    return key_var + ": the key in '" + key_file + "' does not match the certificate in " +
           cert_var;
  }
  return std::nullopt;
}

}  // namespace

TlsContextOrError make_server_tls_context(const Config& config) {
  auto ctx = base_context(ssl::context::tls_server);
  if (auto err = load_pair(*ctx, "TLS_CERT_FILE", config.tls_cert_file, "TLS_KEY_FILE",
                           config.tls_key_file)) {
    return *err;
  }
  return ctx;
}

TlsContextOrError make_redis_tls_context(const Config& config) {
  auto ctx = base_context(ssl::context::tls_client);
  boost::system::error_code ec;
  if (config.redis_tls_ca_file.empty()) {
    ctx->set_default_verify_paths(ec);
    if (ec)
      return "REDIS_TLS_CA_FILE: unset, and the system CA store cannot be read: " + ec.message();
  } else {
    ctx->load_verify_file(config.redis_tls_ca_file, ec);
    if (ec) {
      return "REDIS_TLS_CA_FILE: cannot load CA certificates from '" + config.redis_tls_ca_file +
             "': " + ec.message();
    }
  }
  ctx->set_verify_mode(ssl::verify_peer);
  if (!config.redis_tls_cert_file.empty()) {
    if (auto err = load_pair(*ctx, "REDIS_TLS_CERT_FILE", config.redis_tls_cert_file,
                             "REDIS_TLS_KEY_FILE", config.redis_tls_key_file)) {
      return *err;
    }
  }
  return ctx;
}

}  // namespace sigsrv
