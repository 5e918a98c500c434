// Connect URL parsing with Boost.URL (percent-decoding as the Node server's URLSearchParams).
#include "signaling/connect_params.hpp"

#include <boost/url/parse.hpp>

#include <algorithm>

namespace sigsrv {

bool is_valid_room_id(std::string_view id, std::size_t max_length) {
  if (id.empty() || id.size() > max_length) return false;
  return std::all_of(id.begin(), id.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '-' || c == ':' || c == '.';
  });
}

ConnectParams parse_connect_target(std::string_view target, std::size_t room_id_max_length) {
  ConnectParams out;
  auto parsed = boost::urls::parse_origin_form(target);
  if (!parsed) {
    // Absolute-form targets ("ws://host/?roomId=") are legal in HTTP/1.1 too.
    auto abs = boost::urls::parse_uri(target);
    if (!abs) return out;
    parsed = *abs;
  }
  // params() decodes percent-escapes and '+' as space, like URLSearchParams; first value wins.
  bool have_room = false, have_token = false, have_events = false;
  for (auto p : parsed->params()) {
    if (p.key == "roomId" && !have_room) {
      have_room = true;
      if (p.has_value && is_valid_room_id(p.value, room_id_max_length)) out.room_id = p.value;
    } else if (p.key == "token" && !have_token) {
      have_token = true;
      out.token = p.value;
    } else if (p.key == "events" && !have_events) {
      have_events = true;
      out.events = p.value == "1" || p.value == "true";
    }
  }
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

}  // namespace sigsrv
