// What WsSession keeps of the upgrade request until admission is decided (its files share it).
#pragma once

#include <optional>
#include <string>

#include "net/ws_session.hpp"
#include "signaling/connect_params.hpp"

namespace sigsrv {

struct WsSession::Upgrade {
  ConnectParams params;
  bool has_host = false;
  std::optional<std::string> origin;
  std::string forwarded_proto;
  bool subprotocol_offered = false;
  std::string authorization_token;
  // Waited once for a JWKS fetch (JWKS_URL); the next key lookup is final.
  bool jwks_waited = false;
  Request request;  // kept alive until async_accept completes
};

}  // namespace sigsrv
