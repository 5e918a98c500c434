// Resume tokens, the numbered session log and the member lifecycle (PROTOCOL.md section 8).
#include "signaling/resume.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <array>
#include <boost/json.hpp>
#include <charconv>

namespace sigsrv {
namespace json = boost::json;

std::string to_hex(const unsigned char* data, std::size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 0xf];
  }
  return out;
}

namespace {

constexpr std::size_t kSessionIdHex = 32;
constexpr std::size_t kMacBytes = 16;  // 128 bits: forging one is out of reach

bool is_lower_hex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string token_mac(std::string_view key, std::string_view room_id, std::string_view session_id) {
  std::string input = "resume\n";
  input.append(room_id).append("\n").append(session_id);
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac.data(), &len);
  return to_hex(mac.data(), kMacBytes);
}

std::string control_with_client(std::string_view action, std::string_view client_id) {
  json::object payload;
  payload["clientId"] = client_id;
  std::string out = R"({"type":"control","action":")";
  out.append(action).append(R"(","payload":)").append(json::serialize(payload)).append("}");
  return out;
}

}  // namespace

std::optional<uint64_t> parse_last_seq(const std::optional<std::string>& text) {
  if (!text) return 0;
  const std::string& t = *text;
  if (t.empty() || t.size() > 20) return std::nullopt;
  for (char c : t) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc() || p != t.data() + t.size()) return std::nullopt;
  return v;
}

std::string random_session_id() {
  std::array<unsigned char, kSessionIdHex / 2> bytes{};
  // RAND_bytes only fails when the system has no entropy source at all; a session id from a
  // failed call would be predictable, so that is treated as an invariant.
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) std::abort();
  return to_hex(bytes.data(), bytes.size());
}

std::string mint_resume_token(std::string_view key, std::string_view room_id,
                              std::string_view session_id) {
  std::string out(session_id);
  out += '.';
  out += token_mac(key, room_id, session_id);
  return out;
}

std::optional<std::string> verify_resume_token(std::string_view key, std::string_view token,
                                               std::string_view room_id) {
  if (token.size() != kSessionIdHex + 1 + kMacBytes * 2 || token[kSessionIdHex] != '.') {
    return std::nullopt;
  }
  const std::string_view session_id = token.substr(0, kSessionIdHex);
  const std::string_view mac = token.substr(kSessionIdHex + 1);
  if (!is_lower_hex(session_id) || !is_lower_hex(mac)) return std::nullopt;
  const std::string expected = token_mac(key, room_id, session_id);
  if (CRYPTO_memcmp(expected.data(), mac.data(), expected.size()) != 0) return std::nullopt;
  return std::string(session_id);
}

std::string with_seq(std::string_view object_json, uint64_t seq) {
  // Every text handed here is a JSON object the server serialized, ending in '}'.
  std::string out;
  out.reserve(object_json.size() + 28);
  out.append(object_json.substr(0, object_json.size() - 1));
  if (object_json.size() > 2) out += ',';
  out += R"("seq":)";
  out += std::to_string(seq);
  out += '}';
  return out;
}

std::string resumable_welcome_message(std::string_view client_id, std::string_view room_id,
                                      std::size_t peers, std::string_view session_id,
                                      std::string_view resume_token, unsigned window_ms,
                                      std::string_view ice_servers) {
  json::object payload;
  payload["clientId"] = client_id;
  payload["roomId"] = room_id;
  payload["peers"] = peers;
  payload["sessionId"] = session_id;
  payload["resumeToken"] = resume_token;
  payload["resumeWindowMs"] = window_ms;
  return R"({"type":"control","action":"welcome","payload":)" +
         with_ice_servers(json::serialize(payload), ice_servers) + "}";
}

std::string resumed_message(bool recovered, uint64_t received, std::string_view ice_servers) {
  std::string payload = recovered
                            ? R"({"recovered":true,"received":)" + std::to_string(received) + "}"
                            : std::string(R"({"recovered":false})");
  return R"({"type":"control","action":"resumed","payload":)" +
         with_ice_servers(std::move(payload), ice_servers) + "}";
}

std::string peer_suspended_message(std::string_view client_id) {
  return control_with_client("peer-suspended", client_id);
}

std::string peer_resumed_message(std::string_view client_id) {
  return control_with_client("peer-resumed", client_id);
}

// ---- SessionLog ----

SharedText SessionLog::append(std::string_view message) {
  auto text = std::make_shared<const std::string>(with_seq(message, next_seq_++));
  kept_.push_back(text);
  bytes_ += text->size();
  while (kept_.size() > 1 && (kept_.size() > limits_.messages || bytes_ > limits_.bytes)) {
    bytes_ -= kept_.front()->size();
    kept_.pop_front();
    ++first_kept_;
  }
  return text;
}

std::optional<std::vector<SharedText>> SessionLog::replay_after(uint64_t last_seq) const {
  if (lost_ || last_seq > this->last_seq()) return std::nullopt;
  if (last_seq + 1 < first_kept_) return std::nullopt;
  std::vector<SharedText> out;
  out.reserve(static_cast<std::size_t>(next_seq_ - 1 - last_seq));
  for (auto it = kept_.begin() + static_cast<std::ptrdiff_t>(last_seq + 1 - first_kept_);
       it != kept_.end(); ++it) {
    out.push_back(*it);
  }
  return out;
}

// ---- MemberLifecycle ----

void MemberLifecycle::joined() {
  if (state_ == State::kAdmitted) state_ = State::kJoined;
}

bool MemberLifecycle::socket_ended(SocketEnd how, Clock::time_point now) {
  if (state_ != State::kJoined) {
    if (state_ == State::kAdmitted) state_ = State::kLeft;
    return state_ == State::kSuspended;
  }
  if (how == SocketEnd::kClientClosed) {
    state_ = State::kLeft;
    return false;
  }
  state_ = State::kSuspended;
  deadline_ = now + window_;
  return true;
}

bool MemberLifecycle::resume(Clock::time_point now) {
  if (state_ == State::kJoined || (state_ == State::kSuspended && now < deadline_)) {
    state_ = State::kJoined;
    ++resumes_;
    return true;
  }
  return false;
}

bool MemberLifecycle::expire(Clock::time_point now) {
  if (state_ != State::kSuspended || now < deadline_) return false;
  state_ = State::kLeft;
  return true;
}

}  // namespace sigsrv
