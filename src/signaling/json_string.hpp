// JSON string literals, shared by the relay's serializer and the logger.
#pragma once

#include <string>
#include <string_view>

namespace sigsrv {

// Appends `s` as a JSON string literal, byte for byte as boost::json::serialize writes it: quote,
// backslash and the control characters escaped (\b \t \n \f \r short, the rest as \u00xx);
// everything else, UTF-8 included, as is.
void append_json_string(std::string& out, std::string_view s);

}  // namespace sigsrv
