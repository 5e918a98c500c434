// libFuzzer target: the connect URL's query (roomId, token, events), Authorization and Origin.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "auth/origin.hpp"
#include "signaling/connect_params.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const sigsrv::ConnectParams p = sigsrv::parse_connect_target(in, 64);
  // A room id that comes out is always a valid one.
  if (p.room_id && !sigsrv::is_valid_room_id(*p.room_id, 64)) __builtin_trap();
  (void)sigsrv::bearer_token(in);
  // The Origin header is attacker-controlled too.
  static const sigsrv::OriginMatcher kOrigins(
      {"https://game.example.com", "localhost", "app.example.com:8443"});
  (void)kOrigins.allowed(in);
  return 0;
}
