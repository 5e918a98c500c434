// RESP: commands encoded directly into a connection's output buffer; replies parsed by hiredis,
// except the relay path's integers and pub/sub messages, read in place (parse_fast_reply).
#pragma once

#include <hiredis/hiredis.h>

#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sigsrv {

// Appends one command as a RESP array of bulk strings (what redisFormatCommandArgv produces),
// without a temporary allocation per command: PUBLISH runs once per relayed message.
void append_command(std::string& out, std::span<const std::string_view> args);
inline void append_command(std::string& out, std::initializer_list<std::string_view> args) {
  append_command(out, std::span<const std::string_view>(args.begin(), args.size()));
}

// AUTH with the password alone (the default user) or as an ACL user: the one form every
// connection and exchange that authenticates sends.
inline std::vector<std::string_view> auth_command(std::string_view user,
                                                  std::string_view password) {
  if (user.empty()) return {"AUTH", password};
  return {"AUTH", user, password};
}

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

// A deep copy of `r`, freed like a parsed reply (freeReplyObject): for a reply that must outlive
// the callback it was handed to.
ReplyPtr copy_reply(const redisReply& r);

// The two replies of the relay path, read in place: an integer (what PUBLISH answers) and, when
// `messages`, a pub/sub message (`message` or `smessage`, channel, payload). Through hiredis each
// cost a copy of the bytes and, for a message, eight allocations: a Redis-bus relay reads one
// message per instance in its room and one reply.
struct FastReply {
  enum class Kind { kInteger, kMessage } kind = Kind::kInteger;
  long long integer = 0;
  std::string_view channel;  // into the input
  std::string_view payload;
};
// The bytes taken by one such reply at the start of `in`; 0 when `in` does not start with a
// complete one (another reply, a partial one, or bytes that are not RESP).
std::size_t parse_fast_reply(std::string_view in, bool messages, FastReply& out);

// The bytes of the first whole RESP2 reply in `in` (of any type, arrays nested to any depth); 0
// while it is cut short. Sets *error when `in` does not start with RESP, or with a reply no
// connection should buffer: an array of over kMaxReplyElements elements or a string of over
// kMaxReplyBytes. A connection hands hiredis only whole replies, so hiredis never holds part of
// one and the next reply can always be read in place.
inline constexpr long long kMaxReplyElements = 1 << 20;
inline constexpr long long kMaxReplyBytes = 512LL << 20;  // Redis' own proto-max-bulk-len
std::size_t complete_reply_size(std::string_view in, bool* error);

// Incremental reply parser over hiredis' redisReader.
class RespReader {
 public:
  RespReader();
  ~RespReader();
  RespReader(const RespReader&) = delete;
  RespReader& operator=(const RespReader&) = delete;

  // False when the stream is not valid RESP (the connection must be dropped).
  bool feed(const char* data, std::size_t size);
  // Next complete reply, or null when more bytes are needed; sets *error on a protocol error.
  ReplyPtr next(bool* error);
  void reset();

 private:
  redisReader* reader_;
};

inline std::string_view reply_text(const redisReply* r) {
  return r && r->str ? std::string_view(r->str, r->len) : std::string_view();
}
inline bool is_error(const redisReply* r) {
  return r == nullptr || r->type == REDIS_REPLY_ERROR;
}

}  // namespace sigsrv
