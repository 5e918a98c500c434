// JSON string literals as boost::json::serialize writes them, without its temporaries.
#include "signaling/json_string.hpp"

namespace sigsrv {

// A JSON string literal, byte for byte as json::serialize writes it (quote, backslash and the
// control characters escaped; \b \t \n \f \r short, the rest as \u00xx), straight into `out`
// rather than through a temporary string.
void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (;;) {
    const std::size_t plain = plain_prefix<false>(s);
    out.append(s.data(), plain);
    if (plain == s.size()) break;
    const auto c = static_cast<unsigned char>(s[plain]);
    s.remove_prefix(plain + 1);
    out += '\\';
    switch (c) {
      case '"':
      case '\\':
        out += static_cast<char>(c);
        break;
      case '\b':
        out += 'b';
        break;
      case '\t':
        out += 't';
        break;
      case '\n':
        out += 'n';
        break;
      case '\f':
        out += 'f';
        break;
      case '\r':
        out += 'r';
        break;
      default:
        out += "u00";
        out += kHex[c >> 4];
        out += kHex[c & 15];
    }
  }
  out += '"';
}

}  // namespace sigsrv
