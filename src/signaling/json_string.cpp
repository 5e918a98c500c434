// JSON string literals as boost::json::serialize writes them, without its temporaries.
#include "signaling/json_string.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace sigsrv {
namespace {

// The length of the prefix of `s` that needs no escape in a JSON string.
std::size_t plain_prefix(std::string_view s) {
  std::size_t i = 0;
#if defined(__SSE2__)
  // 16 bytes per step: a candidate or an SDP line rarely holds anything to escape.
  const __m128i quote = _mm_set1_epi8('"');
  const __m128i backslash = _mm_set1_epi8('\\');
  const __m128i control_max = _mm_set1_epi8(0x1f);
  for (; i + 16 <= s.size(); i += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s.data() + i));
    // c <= 0x1f, unsigned: max(c, 0x1f) == 0x1f.
    const __m128i hit =
        _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                     _mm_cmpeq_epi8(_mm_max_epu8(v, control_max), control_max));
    const int mask = _mm_movemask_epi8(hit);
    if (mask != 0) return i + static_cast<std::size_t>(__builtin_ctz(static_cast<unsigned>(mask)));
  }
#endif
  for (; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == '"' || c == '\\') return i;
  }
  return s.size();
}

}  // namespace

// A JSON string literal, byte for byte as json::serialize writes it (quote, backslash and the
// control characters escaped; \b \t \n \f \r short, the rest as \u00xx), straight into `out`
// rather than through a temporary string.
void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (;;) {
    const std::size_t plain = plain_prefix(s);
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
