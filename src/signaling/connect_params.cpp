// Connect URL parsing with Boost.URL (percent-decoding as the Node server's URLSearchParams).
#include "signaling/connect_params.hpp"

#include <algorithm>

namespace sigsrv {

bool is_valid_room_id(std::string_view id, std::size_t max_length) {
  if (id.empty() || id.size() > max_length) return false;
  return std::all_of(id.begin(), id.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '-' || c == ':' || c == '.';
  });
}

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded decoding, as URLSearchParams does: '+' is a space, a valid
// %XX is its byte, anything else (a lone or malformed '%') is kept as it is.
std::string form_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '+') {
      out += ' ';
    } else if (c == '%' && i + 2 < in.size() && hex_value(in[i + 1]) >= 0 &&
               hex_value(in[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(in[i + 1]) * 16 + hex_value(in[i + 2]));
      i += 2;
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

ConnectParams parse_connect_target(std::string_view target, std::size_t room_id_max_length) {
  // The query is what follows the first '?' up to any '#', whatever the target's form (origin
  // form "/path?q", absolute form "ws://host/path?q"). Parsed by hand: the request line is
  // attacker-controlled, and this is all the URL handling a connect needs.
  ConnectParams out;
  const auto q = target.find('?');
  if (q == std::string_view::npos) return out;
  std::string_view query = target.substr(q + 1);
  query = query.substr(0, query.find('#'));
  bool have_room = false, have_token = false, have_events = false, have_resume = false;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    const std::string key = form_decode(pair.substr(0, eq));
    const std::string value =
        eq == std::string_view::npos ? std::string() : form_decode(pair.substr(eq + 1));
    // First value wins, as URLSearchParams.get() returns.
    if (key == "roomId" && !have_room) {
      have_room = true;
      if (is_valid_room_id(value, room_id_max_length)) out.room_id = value;
    } else if (key == "token" && !have_token) {
      have_token = true;
      out.token = value;
    } else if (key == "events" && !have_events) {
      have_events = true;
      out.events = value == "1" || value == "true";
    } else if (key == "resume" && !have_resume) {
      have_resume = true;
      if (value == "1" || value == "true") {
        out.resume = ConnectParams::Resume::kOpen;
      } else if (!value.empty()) {
        out.resume = ConnectParams::Resume::kToken;
        out.resume_token = value;
      }
    } else if (key == "lastSeq" && !out.last_seq) {
      out.last_seq = value;
    }
  }
  // A resumable session always gets the opt-in events (welcome carries its token).
  if (out.resume != ConnectParams::Resume::kNone) out.events = true;
  return out;
}

std::string_view bearer_token(std::string_view authorization) {
  constexpr std::string_view kPrefix = "bearer ";
  if (authorization.size() <= kPrefix.size()) return {};
  for (std::size_t i = 0; i < kPrefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != kPrefix[i]) return {};
  }
  std::string_view t = authorization.substr(kPrefix.size());
  while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
  while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
  return t;
}

std::string forwarded_client_ip(const std::vector<std::string_view>& fields, unsigned hops) {
  std::vector<std::string_view> entries;
  for (std::string_view v : fields) {
    for_each_token(v, [&entries](std::string_view t) { entries.push_back(t); });
  }
  if (entries.empty()) return {};
  const std::size_t from_right = std::max<std::size_t>(hops, 1);
  if (entries.size() < from_right) return std::string(entries.front());
  return std::string(entries[entries.size() - from_right]);
}

}  // namespace sigsrv
