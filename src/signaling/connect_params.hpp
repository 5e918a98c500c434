// Reading the connect URL's query: roomId, token and the opt-in events flag.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sigsrv {

struct ConnectParams {
  std::optional<std::string> room_id;  // decoded; present only when it passes is_valid_room_id
  std::string token;                   // query `token`, empty when absent
  bool events = false;                 // `events=1`: opt-in welcome / peer-joined
  // `resume=1` opens a resumable session (implies events); `resume=TOKEN` resumes one, with
  // `lastSeq` (raw text, checked by the caller; absent means 0: nothing received).
  enum class Resume { kNone, kOpen, kToken } resume = Resume::kNone;
  std::string resume_token;
  std::optional<std::string> last_seq;
};

// A room id is 1..max_length characters of [A-Za-z0-9_\-:.].
bool is_valid_room_id(std::string_view id, std::size_t max_length);

// `target` is the request target ("/path?roomId=...&token=..."); any path is accepted.
ConnectParams parse_connect_target(std::string_view target, std::size_t room_id_max_length);

// Splits a comma-separated header value and trims each token.
template <class F>
void for_each_token(std::string_view v, F f) {
  while (!v.empty()) {
    const auto comma = v.find(',');
    std::string_view t = v.substr(0, comma);
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
    if (!t.empty()) f(t);
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
}

// Token from an `Authorization: Bearer ...` header value; empty when not a bearer token.
std::string_view bearer_token(std::string_view authorization);

// The client address behind `hops` trusted proxies, from the X-Forwarded-For entries in header
// order (every field's comma-separated list, joined): each proxy appends the address it saw, so
// the entry `hops` from the right is the one our outermost trusted proxy saw; entries left of it
// were written by the client and are never taken. Fewer entries than hops: the leftmost (all of
// them came from trusted proxies). None: empty (use the socket's peer).
std::string forwarded_client_ip(const std::vector<std::string_view>& fields, unsigned hops);

}  // namespace sigsrv
