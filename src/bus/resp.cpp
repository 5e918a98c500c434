// RESP encoding and the hiredis reader wrapper.
#include "bus/resp.hpp"

#include <charconv>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace sigsrv {

namespace {
std::size_t decimal_digits(std::size_t v) {
  std::size_t n = 1;
  for (; v >= 10; v /= 10) ++n;
  return n;
}

char* put_header(char* p, char kind, std::size_t n) {
  *p++ = kind;
  p = std::to_chars(p, p + 20, n).ptr;
  *p++ = '\r';
  *p++ = '\n';
  return p;
}
}  // namespace

// Once per relayed message (PUBLISH): sized first and written in place, rather than a dozen
// appends that each check the capacity and a std::to_string per argument.
void append_command(std::string& out, std::span<const std::string_view> args) {
  std::size_t size = 3 + decimal_digits(args.size());
  for (std::string_view a : args) size += 5 + decimal_digits(a.size()) + a.size();
  const std::size_t at = out.size();
  out.resize(at + size);
  char* p = put_header(out.data() + at, '*', args.size());
  for (std::string_view a : args) {
    p = put_header(p, '$', a.size());
    std::memcpy(p, a.data(), a.size());
    p += a.size();
    *p++ = '\r';
    *p++ = '\n';
  }
}

namespace {

enum class Scan { kOk, kShort, kNo };  // read; ran out of bytes first; not what was expected

// "<integer>\r\n" at in[pos]: at most 18 digits (hiredis takes anything longer).
Scan read_number(std::string_view in, std::size_t& pos, long long& value) {
  const bool negative = pos < in.size() && in[pos] == '-';
  if (negative) ++pos;
  const std::size_t start = pos;
  long long v = 0;
  while (pos < in.size() && in[pos] >= '0' && in[pos] <= '9') {
    if (pos - start == 18) return Scan::kNo;
    v = v * 10 + (in[pos] - '0');
    ++pos;
  }
  if (pos == in.size() || (in[pos] == '\r' && pos + 1 == in.size())) return Scan::kShort;
  if (pos == start || in[pos] != '\r' || in[pos + 1] != '\n') return Scan::kNo;
  pos += 2;
  value = negative ? -v : v;
  return Scan::kOk;
}

// "$<len>\r\n<bytes>\r\n" at in[pos] (a nil bulk string is not one).
Scan read_bulk(std::string_view in, std::size_t& pos, std::string_view& text) {
  if (pos >= in.size()) return Scan::kShort;
  if (in[pos] != '$') return Scan::kNo;
  ++pos;
  long long len = 0;
  if (const Scan r = read_number(in, pos, len); r != Scan::kOk) return r;
  if (len < 0) return Scan::kNo;
  const auto n = static_cast<std::size_t>(len);
  if (in.size() - pos < n + 2) return Scan::kShort;
  if (in[pos + n] != '\r' || in[pos + n + 1] != '\n') return Scan::kNo;
  text = in.substr(pos, n);
  pos += n + 2;
  return Scan::kOk;
}

}  // namespace

std::size_t parse_fast_reply(std::string_view in, bool messages, FastReply& out) {
  if (in.empty()) return 0;
  std::size_t pos = 1;
  Scan r = Scan::kNo;
  if (in[0] == ':') {
    r = read_number(in, pos, out.integer);
    out.kind = FastReply::Kind::kInteger;
  } else if (messages && in[0] == '*') {
    long long count = 0;
    std::string_view kind;
    r = read_number(in, pos, count);
    if (r == Scan::kOk && count != 3) r = Scan::kNo;
    if (r == Scan::kOk) r = read_bulk(in, pos, kind);
    if (r == Scan::kOk && kind != "message" && kind != "smessage") r = Scan::kNo;
    if (r == Scan::kOk) r = read_bulk(in, pos, out.channel);
    if (r == Scan::kOk) r = read_bulk(in, pos, out.payload);
    out.kind = FastReply::Kind::kMessage;
  }
  return r == Scan::kOk ? pos : 0;
}

std::size_t complete_reply_size(std::string_view in, bool* error) {
  *error = false;
  std::size_t pos = 0;
  long long owed = 1;  // replies (or array elements) still to be read
  while (owed > 0) {
    if (pos >= in.size()) return 0;
    const char type = in[pos++];
    if (type == '+' || type == '-' || type == ':') {
      // A line; hiredis checks what is on it.
      const std::size_t end = in.find("\r\n", pos);
      if (end == std::string_view::npos) return 0;
      pos = end + 2;
      --owed;
      continue;
    }
    long long n = 0;
    const Scan r = (type == '$' || type == '*') ? read_number(in, pos, n) : Scan::kNo;
    if (r == Scan::kShort) return 0;
    if (r == Scan::kNo || n < -1 || n > (type == '$' ? kMaxReplyBytes : kMaxReplyElements)) {
      *error = true;
      return 0;
    }
    --owed;
    if (type == '*') {
      owed += n > 0 ? n : 0;
    } else if (n >= 0) {
      const auto len = static_cast<std::size_t>(n);
      if (in.size() - pos < len + 2) return 0;
      if (in[pos + len] != '\r' || in[pos + len + 1] != '\n') {
        *error = true;
        return 0;
      }
      pos += len + 2;
    }
  }
  return pos;
}

namespace {

// hiredis' own reply builders, plus one limit: a multi-bulk header announcing more than
// kMaxReplyElements elements is refused before anything is allocated. Without it, a reply
// such as "*888888888\r\n" makes hiredis 0.14 allocate gigabytes up front (found by fuzzing).
// Replies are built with malloc/calloc, as hiredis does, so freeReplyObject frees them.

redisReply* new_reply(const redisReadTask* task, int type) {
  auto* r = static_cast<redisReply*>(std::calloc(1, sizeof(redisReply)));
  if (r == nullptr) return nullptr;
  r->type = type;
  if (task->parent != nullptr) {
    static_cast<redisReply*>(task->parent->obj)->element[task->idx] = r;
  }
  return r;
}

void* create_string(const redisReadTask* task, char* str, std::size_t len) {
  char* buf = static_cast<char*>(std::malloc(len + 1));
  if (buf == nullptr) return nullptr;
  redisReply* r = new_reply(task, task->type);
  if (r == nullptr) {
    std::free(buf);
    return nullptr;
  }
  std::memcpy(buf, str, len);
  buf[len] = '\0';
  r->str = buf;
  r->len = len;
  return r;
}

void* create_array(const redisReadTask* task, int elements) {
  if (elements > kMaxReplyElements) return nullptr;  // the reader reports an error
  redisReply** slots = nullptr;
  if (elements > 0) {
    slots = static_cast<redisReply**>(
        std::calloc(static_cast<std::size_t>(elements), sizeof(redisReply*)));
    if (slots == nullptr) return nullptr;
  }
  redisReply* r = new_reply(task, REDIS_REPLY_ARRAY);
  if (r == nullptr) {
    std::free(slots);
    return nullptr;
  }
  r->element = slots;
  r->elements = elements > 0 ? static_cast<std::size_t>(elements) : 0;
  return r;
}

void* create_integer(const redisReadTask* task, long long value) {
  redisReply* r = new_reply(task, REDIS_REPLY_INTEGER);
  if (r != nullptr) r->integer = value;
  return r;
}

void* create_nil(const redisReadTask* task) {
  return new_reply(task, REDIS_REPLY_NIL);
}

// Not const: redisReaderCreateWithFunctions takes a mutable pointer.
redisReplyObjectFunctions reply_functions = {create_string, create_array, create_integer,
                                             create_nil, freeReplyObject};

redisReader* new_reader() {
  redisReader* r = redisReaderCreateWithFunctions(&reply_functions);
  if (r == nullptr) throw std::bad_alloc();
  return r;
}

}  // namespace

RespReader::RespReader() : reader_(new_reader()) {}

RespReader::~RespReader() {
  redisReaderFree(reader_);
}

bool RespReader::feed(const char* data, std::size_t size) {
  return redisReaderFeed(reader_, data, size) == REDIS_OK;
}

ReplyPtr copy_reply(const redisReply& r) {
  // calloc/malloc as hiredis' own reader allocates, so that freeReplyObject frees the copy.
  ReplyPtr out(static_cast<redisReply*>(std::calloc(1, sizeof(redisReply))));
  if (!out) throw std::bad_alloc();
  redisReply& c = *out;
  c.type = r.type;
  c.integer = r.integer;
  const bool has_text =
      r.type == REDIS_REPLY_STRING || r.type == REDIS_REPLY_STATUS || r.type == REDIS_REPLY_ERROR;
  if (has_text && r.str != nullptr) {
    c.str = static_cast<char*>(std::malloc(r.len + 1));
    if (c.str == nullptr) throw std::bad_alloc();
    std::memcpy(c.str, r.str, r.len);
    c.str[r.len] = '\0';
    c.len = r.len;
  }
  if (r.type == REDIS_REPLY_ARRAY && r.element != nullptr && r.elements > 0) {
    c.element = static_cast<redisReply**>(std::calloc(r.elements, sizeof(redisReply*)));
    if (c.element == nullptr) throw std::bad_alloc();
    c.elements = r.elements;
    for (std::size_t i = 0; i < r.elements; ++i) c.element[i] = copy_reply(*r.element[i]).release();
  }
  return out;
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
  reader_ = new_reader();
}

}  // namespace sigsrv
