// libFuzzer target: Redis replies fed to the RESP reader in arbitrary pieces.
#include <cstddef>
#include <cstdint>

#include "bus/resp.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  sigsrv::RespReader reader;
  // The first byte picks the split, so replies straddling reads are exercised too.
  const std::size_t step = 1 + data[0] % 16;
  bool error = false;
  for (std::size_t pos = 1; pos < size && !error; pos += step) {
    const std::size_t n = std::min(step, size - pos);
    if (!reader.feed(reinterpret_cast<const char*>(data + pos), n)) break;
    while (!error) {
      sigsrv::ReplyPtr reply = reader.next(&error);
      if (!reply) break;
      (void)sigsrv::reply_text(reply.get());
    }
  }
  return 0;
}
