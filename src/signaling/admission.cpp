// Connect checks in contract order; the first failing row decides the close code.
#include "signaling/admission.hpp"

namespace sigsrv {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::optional<Rejection> check_before_auth(const AdmissionPolicy& policy,
                                           const ConnectFacts& facts) {
  if (facts.draining) return draining_rejection(policy.shutdown_close_code);
  if (facts.breaker_open) return kBreakerOpen;
  if (facts.over_max_connections) return kAtCapacity;
  if (!facts.has_host) return kMalformed;
  if (facts.params == nullptr || !facts.params->room_id) return kInvalidRoom;
  if (policy.require_wss && !facts.is_tls) {
    // Behind a TLS-terminating proxy the first X-Forwarded-Proto entry tells the client's scheme.
    std::string_view proto = facts.forwarded_proto;
    proto = proto.substr(0, proto.find(','));
    while (!proto.empty() && proto.back() == ' ') proto.remove_suffix(1);
    while (!proto.empty() && proto.front() == ' ') proto.remove_prefix(1);
    if (!iequals(proto, "https")) return kWssRequired;
  }
  if (policy.origins && policy.origins->enabled() && facts.origin &&
      !policy.origins->allowed(*facts.origin)) {
    return kOriginNotAllowed;
  }
  if (policy.subprotocol_required && !facts.subprotocol_offered) return kSubprotocolRequired;
  return std::nullopt;
}

std::optional<Rejection> check_auth(bool enable_auth, bool has_token, TokenOutcome outcome) {
  if (!enable_auth) return std::nullopt;
  if (!has_token) return kUnauthorized;
  if (outcome == TokenOutcome::kInvalid) return kUnauthorized;
  if (outcome == TokenOutcome::kRoomNotAllowed) return kForbidden;
  return std::nullopt;
}

}  // namespace sigsrv
