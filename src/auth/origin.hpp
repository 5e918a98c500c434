// ALLOWED_ORIGINS matching (PROTOCOL.md section 1): exact, same host, or same hostname.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sigsrv {

class OriginMatcher {
 public:
  explicit OriginMatcher(const std::vector<std::string>& entries);
  bool enabled() const { return !entries_.empty(); }
  // True when an entry equals the origin, or its host or hostname equals the origin's.
  bool allowed(std::string_view origin) const;

 private:
  struct Entry {
    std::string exact;
    std::string host;      // lower-case host[:port]
    std::string hostname;  // lower-case host without port
  };
  std::vector<Entry> entries_;
};

}  // namespace sigsrv
