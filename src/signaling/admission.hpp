// The ordered connect checks of PROTOCOL.md section 1, as pure decisions.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "auth/origin.hpp"
#include "signaling/connect_params.hpp"

namespace sigsrv {

struct Rejection {
  uint16_t code;
  std::string_view reason;
  bool operator==(const Rejection&) const = default;
};

// Fixed rows (row 1 uses SHUTDOWN_CLOSE_CODE, see draining_rejection()).
inline constexpr Rejection kBreakerOpen{1013, "Service unavailable"};
inline constexpr Rejection kAtCapacity{1013, "Server at capacity"};
inline constexpr Rejection kMalformed{1008, "Malformed request"};
inline constexpr Rejection kInvalidRoom{1008, "Invalid roomId"};
inline constexpr Rejection kWssRequired{1008, "WSS required"};
inline constexpr Rejection kOriginNotAllowed{1008, "Origin not allowed"};
inline constexpr Rejection kSubprotocolRequired{1008, "Subprotocol required"};
inline constexpr Rejection kUnauthorized{1008, "Unauthorized"};
inline constexpr Rejection kForbidden{1008, "Forbidden"};
inline constexpr Rejection kRateLimited{1013, "Rate limited"};
inline constexpr Rejection kRoomFull{1000, "Room is full"};
inline constexpr Rejection kInternalError{1011, "Internal error"};
inline constexpr Rejection kOverloaded{1013, "Server overloaded"};
// Resumable sessions (PROTOCOL.md section 8).
inline constexpr Rejection kInvalidResumeToken{1008, "Invalid resume token"};
inline constexpr Rejection kInvalidLastSeq{1008, "Invalid lastSeq"};
inline constexpr Rejection kResumedElsewhere{4001, "Session resumed elsewhere"};
// The reason the Node server's `ws` library gives for a message over maxPayload.
inline constexpr Rejection kMessageTooBig{1009, "Max payload size exceeded"};

inline Rejection draining_rejection(uint16_t shutdown_close_code) {
  return {shutdown_close_code, "Server draining"};
}

// What the server knows about a connect request before any expensive work.
struct ConnectFacts {
  bool draining = false;
  bool breaker_open = false;
  bool over_max_connections = false;
  bool has_host = false;
  const ConnectParams* params = nullptr;
  bool is_tls = false;
  std::string_view forwarded_proto;  // X-Forwarded-Proto, empty when absent
  std::optional<std::string_view> origin;
  bool subprotocol_offered = false;
};

struct AdmissionPolicy {
  uint16_t shutdown_close_code = 1012;
  bool require_wss = false;
  const OriginMatcher* origins = nullptr;  // null or disabled = all origins
  bool subprotocol_required = false;
};

// Rows 1-7 (and the MAX_CONNECTIONS cap right after the breaker): cheap checks, no I/O.
std::optional<Rejection> check_before_auth(const AdmissionPolicy& policy,
                                           const ConnectFacts& facts);

// Rows 8-10, given the verifier's outcome for the token.
enum class TokenOutcome { kValid, kInvalid, kRoomNotAllowed };
std::optional<Rejection> check_auth(bool enable_auth, bool has_token, TokenOutcome outcome);

}  // namespace sigsrv
