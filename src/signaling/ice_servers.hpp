// ICE servers handed to clients (PROTOCOL.md section 9): TURN_URLS checked, and time-limited TURN
// credentials in coturn's use-auth-secret scheme. Pure: the clock is the caller's.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace sigsrv {

// One URL of TURN_URLS. STUN URLs are handed out as they are; TURN and TURNS URLs with
// credentials.
struct IceUrl {
  enum class Scheme { kStun, kTurn, kTurns };
  Scheme scheme = Scheme::kStun;
  std::string text;  // as written (trimmed)
};

// `stun:HOST[:PORT]` (RFC 7064), `turn:HOST[:PORT][?transport=udp|tcp]` and the same with
// `turns:` (RFC 7065). HOST is a DNS name, an IPv4 address or a bracketed IPv6 address. Refused,
// with a sentence saying why: any other scheme (stuns: too, which browsers do not take), `//`
// after the scheme, user information (credentials belong in TURN_SECRET), a bad port or query.
std::variant<IceUrl, std::string> parse_ice_url(std::string_view text);

// TURN_URLS: comma-separated, blanks around items ignored, empty items skipped.
std::variant<std::vector<IceUrl>, std::string> parse_ice_urls(std::string_view text);

// coturn's use-auth-secret (TURN REST API) credential: username `EXPIRY:CLIENTID`, EXPIRY in
// seconds since the Unix epoch; credential base64(HMAC-SHA1(secret, username)), padded.
struct TurnCredential {
  std::string username;
  std::string credential;
};
TurnCredential turn_credential(std::string_view secret, std::string_view client_id,
                               int64_t expiry_unix_seconds);

// The `iceServers` value of one welcome or resumed payload, in RTCPeerConnection form: one entry
// with the STUN URLs, one with the TURN/TURNS URLs and a credential for the client that expires
// `expiry_seconds` after `now`. Built once from the configuration, shared by every loop (const).
class IceServers {
 public:
  IceServers() = default;
  IceServers(const std::vector<IceUrl>& urls, std::string secret, unsigned expiry_seconds);

  // Nothing to hand out (TURN_URLS unset): welcomes stay as they were.
  bool empty() const { return stun_urls_.empty() && turn_urls_.empty(); }
  // Whether json() mints a credential (there is a TURN URL).
  bool issues_credentials() const { return !turn_urls_.empty(); }
  unsigned expiry_seconds() const { return expiry_seconds_; }

  // A JSON array, e.g. [{"urls":["stun:s:3478"]},{"urls":["turn:t:3478"],"username":..,
  // "credential":..}]; "[]" when empty().
  std::string json(std::string_view client_id, int64_t now_unix_seconds) const;

 private:
  std::string stun_urls_;  // the "urls" arrays, serialized once
  std::string turn_urls_;
  std::string secret_;
  unsigned expiry_seconds_ = 14400;
};

}  // namespace sigsrv
