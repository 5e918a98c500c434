// libFuzzer target: client message validation and re-serialization, and the bus envelope; the
// DOM-free reading of both against the DOM's.
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
  // The DOM-free path decides only as the DOM path does.
  const sigsrv::ParsedMessage dom = sigsrv::detail::parse_client_message_dom(in);
  if (m.kind != dom.kind || m.type != dom.type || m.text != dom.text) __builtin_trap();
  const auto envelope = sigsrv::parse_bus_envelope(in);
  const auto envelope_dom = sigsrv::detail::parse_bus_envelope_dom(in);
  if (envelope.has_value() != envelope_dom.has_value()) __builtin_trap();
  if (envelope &&
      (envelope->sender_id != envelope_dom->sender_id || envelope->data != envelope_dom->data ||
       envelope->origin_server_id != envelope_dom->origin_server_id ||
       envelope->source_instance != envelope_dom->source_instance ||
       envelope->sent_at_us != envelope_dom->sent_at_us || envelope->seqs != envelope_dom->seqs)) {
    __builtin_trap();
  }
  (void)sigsrv::parse_presence(in);
  return 0;
}
