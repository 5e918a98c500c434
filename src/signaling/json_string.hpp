// JSON string literals, shared by the relay's serializer and the logger.
#pragma once

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <cstddef>
#include <string>
#include <string_view>

namespace sigsrv {

// Appends `s` as a JSON string literal, byte for byte as boost::json::serialize writes it: quote,
// backslash and the control characters escaped (\b \t \n \f \r short, the rest as \u00xx);
// everything else, UTF-8 included, as is.
void append_json_string(std::string& out, std::string_view s);

// The length of the prefix of `s` that a JSON string literal holds as is: no quote, backslash or
// control character, and with kAsciiOnly no byte outside ASCII either. Inline: the relay's
// writer and its DOM-free reader each run it over every string of every message.
template <bool kAsciiOnly>
inline std::size_t plain_prefix(std::string_view s) {
  std::size_t i = 0;
#if defined(__SSE2__)
  // 16 bytes per step: a candidate or an SDP line rarely holds anything to escape.
  const __m128i quote = _mm_set1_epi8('"');
  const __m128i backslash = _mm_set1_epi8('\\');
  const __m128i control_max = _mm_set1_epi8(0x1f);
  const __m128i space = _mm_set1_epi8(0x20);
  for (; i + 16 <= s.size(); i += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s.data() + i));
    // Signed bytes: 0x80-0xff are negative, so one compare finds them and 0x00-0x1f. Without
    // them, c <= 0x1f unsigned: max(c, 0x1f) == 0x1f.
    const __m128i low = kAsciiOnly ? _mm_cmplt_epi8(v, space)
                                   : _mm_cmpeq_epi8(_mm_max_epu8(v, control_max), control_max);
    const __m128i hit =
        _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)), low);
    const int mask = _mm_movemask_epi8(hit);
    if (mask != 0) return i + static_cast<std::size_t>(__builtin_ctz(static_cast<unsigned>(mask)));
  }
#endif
  for (; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == '"' || c == '\\' || (kAsciiOnly && c >= 0x80)) return i;
  }
  return s.size();
}

}  // namespace sigsrv
