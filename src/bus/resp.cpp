// RESP encoding and the hiredis reader wrapper.
#include "bus/resp.hpp"

#include <stdexcept>

namespace sigsrv {

void append_command(std::string& out, std::span<const std::string_view> args) {
  out += '*';
  out += std::to_string(args.size());
  out += "\r\n";
  for (std::string_view a : args) {
    out += '$';
    out += std::to_string(a.size());
    out += "\r\n";
    out.append(a);
    out += "\r\n";
  }
}

RespReader::RespReader() : reader_(redisReaderCreate()) {
  if (reader_ == nullptr) throw std::bad_alloc();
}

RespReader::~RespReader() {
  redisReaderFree(reader_);
}

bool RespReader::feed(const char* data, std::size_t size) {
  return redisReaderFeed(reader_, data, size) == REDIS_OK;
}

ReplyPtr RespReader::next(bool* error) {
  void* reply = nullptr;
  if (redisReaderGetReply(reader_, &reply) != REDIS_OK) {
    *error = true;
    return nullptr;
  }
  return ReplyPtr(static_cast<redisReply*>(reply));
}

void RespReader::reset() {
  redisReaderFree(reader_);
  reader_ = redisReaderCreate();
  if (reader_ == nullptr) throw std::bad_alloc();
}

}  // namespace sigsrv
