// RESP: commands encoded directly into a connection's output buffer; replies parsed by hiredis.
#pragma once

#include <hiredis/hiredis.h>

#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace sigsrv {

// Appends one command as a RESP array of bulk strings (what redisFormatCommandArgv produces),
// without a temporary allocation per command: PUBLISH runs once per relayed message.
void append_command(std::string& out, std::span<const std::string_view> args);
inline void append_command(std::string& out, std::initializer_list<std::string_view> args) {
  append_command(out, std::span<const std::string_view>(args.begin(), args.size()));
}

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

// A deep copy of `r`, freed like a parsed reply (freeReplyObject): for a reply that must outlive
// the callback it was handed to.
ReplyPtr copy_reply(const redisReply& r);

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
