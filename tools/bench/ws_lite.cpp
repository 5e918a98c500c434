// Minimal WebSocket client: HTTP upgrade, frame encode/decode, ping answers.
#include "ws_lite.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <random>

namespace bench {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

std::optional<Url> parse_ws_url(const std::string& url) {
  const std::string scheme = "ws://";
  if (url.rfind(scheme, 0) != 0) return std::nullopt;
  std::string rest = url.substr(scheme.size());
  const auto slash = rest.find_first_of("/?");
  std::string authority = rest.substr(0, slash);
  Url u;
  u.target = slash == std::string::npos ? "/" : rest.substr(slash);
  if (!u.target.empty() && u.target[0] == '?') u.target = "/" + u.target;
  const auto colon = authority.rfind(':');
  if (colon == std::string::npos) {
    u.host = authority;
    u.port = 80;
  } else {
    u.host = authority.substr(0, colon);
    u.port = static_cast<uint16_t>(std::stoi(authority.substr(colon + 1)));
  }
  if (u.host.empty()) return std::nullopt;
  return u;
}

namespace {

void append_frame(std::string& out, unsigned opcode, std::string_view payload, uint32_t mask_key) {
  const std::size_t n = payload.size();
  out += static_cast<char>(0x80 | opcode);
  if (n < 126) {
    out += static_cast<char>(0x80 | n);
  } else if (n < 65536) {
    out += static_cast<char>(0x80 | 126);
    out += static_cast<char>((n >> 8) & 0xff);
    out += static_cast<char>(n & 0xff);
  } else {
    out += static_cast<char>(0x80 | 127);
    for (int i = 7; i >= 0; --i)
      out += static_cast<char>((static_cast<uint64_t>(n) >> (8 * i)) & 0xff);
  }
  char mask[4];
  std::memcpy(mask, &mask_key, 4);
  out.append(mask, 4);
  const std::size_t start = out.size();
  out.append(payload);
  for (std::size_t i = 0; i < n; ++i) out[start + i] ^= mask[i & 3];
}

}  // namespace

void append_text_frame(std::string& out, std::string_view payload, uint32_t mask_key) {
  append_frame(out, 0x1, payload, mask_key);
}

WsLite::WsLite(asio::io_context& ioc, Handler& handler) : socket_(ioc), handler_(handler) {
  thread_local std::mt19937 rng{std::random_device{}()};
  mask_key_ = rng();
  in_.resize(16384);
}

void WsLite::start(const tcp::endpoint& server, const std::string& host_header,
                   const std::string& target, const std::string& source_ip) {
  boost::system::error_code ec;
  socket_.open(server.protocol(), ec);
  if (ec) {
    fail(1006, ec.message());
    return;
  }
  if (!source_ip.empty()) {
    socket_.bind(tcp::endpoint(asio::ip::make_address(source_ip), 0), ec);
    if (ec) {
      fail(1006, "bind " + source_ip + ": " + ec.message());
      return;
    }
  }
  socket_.async_connect(server, [this, host_header, target](boost::system::error_code e) {
    if (e) {
      fail(1006, "connect: " + e.message());
      return;
    }
    boost::system::error_code ignored;
    socket_.set_option(tcp::no_delay(true), ignored);
    state_ = State::kUpgrading;
    // A fixed key is fine: the server only checks that one is there.
    out_ = "GET " + target + " HTTP/1.1\r\nHost: " + host_header +
           "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    flush();
    read();
  });
}

void WsLite::send(std::string_view text) {
  if (state_ != State::kOpen) return;
  append_frame(out_, 0x1, text, mask_key_);
  flush();
}

void WsLite::close() {
  if (state_ == State::kClosed) return;
  boost::system::error_code ec;
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  state_ = State::kClosed;
}

void WsLite::flush() {
  if (write_in_flight_ || out_.empty() || state_ == State::kClosed) return;
  write_in_flight_ = true;
  writing_.swap(out_);
  out_.clear();
  asio::async_write(socket_, asio::buffer(writing_),
                    [this](boost::system::error_code ec, std::size_t) {
                      write_in_flight_ = false;
                      writing_.clear();
                      if (ec) {
                        fail(1006, "write: " + ec.message());
                        return;
                      }
                      flush();
                    });
}

void WsLite::read() {
  if (in_.size() - in_len_ < 4096) in_.resize(in_.size() * 2);
  socket_.async_read_some(asio::buffer(in_.data() + in_len_, in_.size() - in_len_),
                          [this](boost::system::error_code ec, std::size_t n) {
                            if (state_ == State::kClosed) return;
                            if (ec) {
                              fail(1006, ec.message());
                              return;
                            }
                            in_len_ += n;
                            on_bytes();
                            if (state_ != State::kClosed) read();
                          });
}

void WsLite::on_bytes() {
  std::size_t pos = 0;
  if (state_ == State::kUpgrading) {
    const std::string_view head(in_.data(), in_len_);
    const auto end = head.find("\r\n\r\n");
    if (end == std::string_view::npos) return;
    if (head.substr(0, 12) != "HTTP/1.1 101") {
      fail(1006, "upgrade refused: " + std::string(head.substr(0, head.find("\r\n"))));
      return;
    }
    pos = end + 4;
    state_ = State::kOpen;
    handler_.on_open(*this);
    if (state_ != State::kOpen) return;
  }
  const auto* p = reinterpret_cast<const unsigned char*>(in_.data());
  while (state_ == State::kOpen) {
    if (in_len_ - pos < 2) break;
    const unsigned b0 = p[pos], b1 = p[pos + 1];
    uint64_t len = b1 & 0x7f;
    std::size_t header = 2;
    if (len == 126) {
      if (in_len_ - pos < 4) break;
      len = (uint64_t{p[pos + 2]} << 8) | p[pos + 3];
      header = 4;
    } else if (len == 127) {
      if (in_len_ - pos < 10) break;
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | p[pos + 2 + i];
      header = 10;
    }
    if (in_len_ - pos < header + len) {
      if (header + len > in_.size()) in_.resize(header + len + 4096);
      break;
    }
    const std::string_view payload(in_.data() + pos + header, static_cast<std::size_t>(len));
    const unsigned opcode = b0 & 0x0f;
    const bool fin = (b0 & 0x80) != 0;
    pos += header + len;
    if (opcode == 0x9) {
      append_frame(out_, 0xA, payload, mask_key_);  // pong
      flush();
    } else if (opcode == 0x8) {
      int code = 1005;
      std::string reason;
      if (payload.size() >= 2) {
        code =
            (static_cast<unsigned char>(payload[0]) << 8) | static_cast<unsigned char>(payload[1]);
        reason = std::string(payload.substr(2));
      }
      fail(code, reason);
      return;
    } else if (opcode == 0x1 || opcode == 0x2 || opcode == 0x0) {
      if (fin && fragments_.empty()) {
        handler_.on_message(*this, payload);
      } else {
        fragments_.append(payload);
        if (fin) {
          std::string whole = std::move(fragments_);
          fragments_.clear();
          handler_.on_message(*this, whole);
        }
      }
    }
  }
  if (pos > 0 && state_ != State::kClosed) {
    std::memmove(in_.data(), in_.data() + pos, in_len_ - pos);
    in_len_ -= pos;
  }
}

void WsLite::fail(int code, std::string_view reason) {
  if (state_ == State::kClosed) return;
  close();
  handler_.on_closed(*this, code, reason);
}

std::optional<Target> resolve_target(const std::string& url, std::string* error) {
  auto u = parse_ws_url(url);
  if (!u) {
    *error = "not a ws:// URL: " + url;
    return std::nullopt;
  }
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::resolver r(ioc);
  boost::system::error_code ec;
  auto results = r.resolve(u->host, std::to_string(u->port), ec);
  if (ec || results.empty()) {
    *error = "cannot resolve " + u->host + ": " + ec.message();
    return std::nullopt;
  }
  Target t;
  t.endpoint = *results.begin();
  t.host_header = u->host + ":" + std::to_string(u->port);
  t.target_prefix = u->target + (u->target.find('?') == std::string::npos ? "?" : "&") + "roomId=";
  return t;
}

std::vector<std::string> expand_ips(const std::string& range) {
  if (range.empty()) return {};
  const auto dash = range.find('-');
  if (dash == std::string::npos) return {range};
  const auto a = boost::asio::ip::make_address_v4(range.substr(0, dash)).to_uint();
  const auto b = boost::asio::ip::make_address_v4(range.substr(dash + 1)).to_uint();
  std::vector<std::string> out;
  for (auto x = a; x <= b; ++x) out.push_back(boost::asio::ip::address_v4(x).to_string());
  return out;
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) o += c;
  }
  return o;
}

}  // namespace bench
