// Resumable sessions (PROTOCOL.md section 8) as pure values: tokens, the seq/replay log and the
// member lifecycle, driven by events and an injected clock. The sockets live in src/net.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "signaling/protocol.hpp"

namespace sigsrv {

// Lower-case hex of `n` bytes (session ids, MACs; the Redis bus names its scripts by SHA1 so).
std::string to_hex(const unsigned char* data, std::size_t n);

// `lastSeq`: decimal digits only, at most 64 bits. Absent means 0 (nothing received yet).
std::optional<uint64_t> parse_last_seq(const std::optional<std::string>& text);

// A fresh session id: 128 random bits as 32 hex digits.
std::string random_session_id();

// Tokens are `SESSIONID.MAC` with MAC = the first 16 bytes of
// HMAC-SHA256(key, "resume\n" ROOM "\n" SESSIONID) in lowercase hex: any instance holding the key
// can check one without a lookup, and one minted for another room or by another key never verifies.
std::string mint_resume_token(std::string_view key, std::string_view room_id,
                              std::string_view session_id);
// The session id when `token` was minted with `key` for `room_id`; nullopt otherwise.
std::optional<std::string> verify_resume_token(std::string_view key, std::string_view token,
                                               std::string_view room_id);

// `{...}` -> `{...,"seq":N}`. `object_json` is a JSON object the server wrote itself.
std::string with_seq(std::string_view object_json, uint64_t seq);

// The server's own messages to a resumable client. `ice_servers`: the payload's iceServers
// (PROTOCOL.md section 9) as JSON text; empty: none.
std::string resumable_welcome_message(std::string_view client_id, std::string_view room_id,
                                      std::size_t peers, std::string_view session_id,
                                      std::string_view resume_token, unsigned window_ms,
                                      std::string_view ice_servers = {});
std::string resumed_message(bool recovered, uint64_t received, std::string_view ice_servers = {});
std::string peer_suspended_message(std::string_view client_id);
std::string peer_resumed_message(std::string_view client_id);

struct ResumeLimits {
  std::size_t messages = 256;   // RESUME_BUFFER_MESSAGES
  std::size_t bytes = 1 << 20;  // RESUME_BUFFER_BYTES
};

// Everything sent to one session, numbered 1, 2, 3... and the most recent of it kept for a
// replay. Overflow policy: the oldest kept messages are dropped to make room (the newest always
// stays); a resume that needs a dropped one is answered recovered:false, never a partial replay.
class SessionLog {
 public:
  explicit SessionLog(ResumeLimits limits) : limits_(limits) {}

  // Numbers `message` with the next seq, keeps it and returns the text to send.
  SharedText append(std::string_view message);
  uint64_t last_seq() const { return next_seq_ - 1; }
  std::size_t kept() const { return kept_.size(); }
  std::size_t kept_bytes() const { return bytes_; }
  // The messages after `last_seq`, in order; nullopt when they are not all kept any more, or
  // when `last_seq` is beyond anything sent (a client cannot have received those).
  std::optional<std::vector<SharedText>> replay_after(uint64_t last_seq) const;
  // Messages for the session were dropped before they could be numbered (its connection was
  // overloaded): no resume can be complete any more, so every replay answers nullopt.
  void mark_lost() { lost_ = true; }

 private:
  bool lost_ = false;
  ResumeLimits limits_;
  std::deque<SharedText> kept_;  // seqs first_kept_ .. next_seq_ - 1
  uint64_t first_kept_ = 1;
  uint64_t next_seq_ = 1;
  std::size_t bytes_ = 0;
};

// The lifecycle of a resumable member: admitted -> joined -> (suspended -> joined)* -> left.
// A socket that ends with the client's close frame means the member left; any other end
// suspends it, holding its seat until the window passes.
class MemberLifecycle {
 public:
  using Clock = std::chrono::steady_clock;
  enum class State { kAdmitted, kJoined, kSuspended, kLeft };
  enum class SocketEnd { kClientClosed, kLost };

  explicit MemberLifecycle(std::chrono::milliseconds window) : window_(window) {}

  State state() const { return state_; }
  Clock::time_point deadline() const { return deadline_; }
  unsigned resumes() const { return resumes_; }

  // admitted -> joined.
  void joined();
  // The socket ended: true when the member is now suspended (until deadline()), false when it
  // left (close frame, or not joined).
  bool socket_ended(SocketEnd how, Clock::time_point now);
  // A resume claims the session (suspended, or still joined on a socket not yet seen dead):
  // true and joined again, or false when it has left or its window has passed.
  bool resume(Clock::time_point now);
  // The window timer fired: true when that ended the member (it was still suspended and due).
  bool expire(Clock::time_point now);
  // The member leaves for good (drain, or a resume that could not recover).
  void leave() { state_ = State::kLeft; }

 private:
  std::chrono::milliseconds window_;
  State state_ = State::kAdmitted;
  Clock::time_point deadline_{};
  unsigned resumes_ = 0;
};

}  // namespace sigsrv
