// Text helpers shared by the parsers of configuration values, sentinel lists and ICE server lists.
#pragma once

#include <string_view>

namespace sigsrv {

// `s` without leading and trailing spaces, tabs and line ends.
inline std::string_view trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

}  // namespace sigsrv
