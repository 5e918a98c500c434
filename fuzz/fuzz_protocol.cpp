// libFuzzer target: client message validation and re-serialization, and the bus envelope.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <boost/json.hpp>

#include "signaling/protocol.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const sigsrv::ParsedMessage m = sigsrv::parse_client_message(in);
  if (m.kind == sigsrv::ParsedMessage::Kind::kValid) {
    // What we relay must itself be valid JSON that validates to the same bytes.
    boost::json::error_code ec;
    (void)boost::json::parse(m.text, ec);
    if (ec) __builtin_trap();
    // And validates again as the same type. (Not byte-identical: Boost.JSON reads integer
    // literals beyond 64 bits as doubles that can differ from strtod's in the last place.)
    const sigsrv::ParsedMessage again = sigsrv::parse_client_message(m.text);
    if (again.kind != sigsrv::ParsedMessage::Kind::kValid || again.type != m.type) __builtin_trap();
  }
  (void)sigsrv::parse_bus_envelope(in);
  (void)sigsrv::parse_presence(in);
  return 0;
}
