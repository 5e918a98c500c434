// Hashing for maps keyed by std::string that are looked up by std::string_view: a lookup builds
// no key string (the window limiters' per-message path).
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace sigsrv {

// A key with its hash computed once: a lookup by it hashes nothing more. A member's message
// windows are looked up on every message it sends, by names (and hashes) made once.
struct HashedKey {
  static HashedKey of(std::string_view s) { return {s, std::hash<std::string_view>{}(s)}; }
  std::string_view text;
  std::size_t hash;
  friend bool operator==(const HashedKey& k, const std::string& s) { return k.text == s; }
};

struct StringViewHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  std::size_t operator()(const HashedKey& k) const { return k.hash; }
};

}  // namespace sigsrv
