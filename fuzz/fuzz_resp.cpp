// libFuzzer target: Redis replies fed to the RESP reader in arbitrary pieces, and the two
// in-place readers (complete_reply_size, parse_fast_reply) checked against hiredis.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "bus/resp.hpp"

namespace {

// What a connection does with a buffer: measure the first reply, hand exactly those bytes to
// hiredis. Whatever the scanner calls whole must be one reply to hiredis (or one it refuses),
// and a reply read in place must be exactly as long.
void check_scanner(std::string_view in) {
  while (!in.empty()) {
    bool error = false;
    const std::size_t n = sigsrv::complete_reply_size(in, &error);
    if (error || n == 0) return;
    if (n > in.size()) std::abort();
    sigsrv::FastReply fast;
    const std::size_t used = sigsrv::parse_fast_reply(in, true, fast);
    if (used != 0 && used != n) std::abort();
    sigsrv::RespReader reader;
    if (!reader.feed(in.data(), n)) return;
    sigsrv::ReplyPtr reply = reader.next(&error);
    if (error) return;  // RESP2 hiredis refuses (a malformed integer, nesting over 7)
    if (!reply) std::abort();
    if (reader.next(&error) != nullptr) std::abort();
    in.remove_prefix(n);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  check_scanner(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
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
