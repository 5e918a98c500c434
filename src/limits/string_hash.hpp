// Hashing for maps keyed by std::string that are looked up by std::string_view: a lookup builds
// no key string (the window limiters' per-message path).
#pragma once

#include <cstddef>
#include <functional>
#include <string_view>

namespace sigsrv {

struct StringViewHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

}  // namespace sigsrv
