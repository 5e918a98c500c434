// The client's state machine without I/O: reconnect policy, admission, resume bookkeeping and
// the reading of server messages. The I/O layer feeds it socket events and carries out the
// actions it returns; a port of clients/js/signaling-client.js, policy for policy.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "signal_client/client.hpp"

namespace boost::json {
class value;
}

namespace signal_client::detail {

struct Url {
  bool tls = false;
  std::string host;  // without IPv6 brackets (what the resolver and TLS verification take)
  std::string port;
  std::string host_header;  // host[:port] as the Host header carries it
  std::string target;       // path and query, at least "/"
};

// ws:// or wss:// URLs; nullopt (and *error) for anything else.
std::optional<Url> parse_url(const std::string& url, std::string* error);

struct ResumeFrom {
  std::string token;
  std::int64_t last_seq = 0;
};

// `base_target` with roomId, token, events and resume (replacing any already in its query).
std::string build_target(const std::string& base_target, const Options& options,
                         const ResumeFrom* resume_from);

// Whether a close with `code` is retried (not counting a lost session, which always is).
bool retries(int code, const ReconnectOptions& r);

// Delay before attempt `attempt` (1-based): min(max, initial * factor^(attempt-1)) with "equal
// jitter" (half fixed, half `random01` in [0, 1)); at least draining_delay_ms after 1012.
int backoff_delay_ms(int attempt, int code, const ReconnectOptions& r, double random01);

struct Action {
  enum Kind {
    kOpen,      // open a new socket to `text` (the request target); it is the current one
    kWrite,     // write `text` on the current socket
    kClose,     // close the current socket with a close frame (code, reason); ignore it afterwards
    kSchedule,  // call on_timer() after delay_ms
    kCancelTimer,
    kEmit,  // deliver `event`
  };
  Kind kind = kEmit;
  std::string text;
  int code = 0;
  std::string reason;
  int delay_ms = 0;
  Event event;
};
using Actions = std::vector<Action>;

class SessionCore {
 public:
  SessionCore(Options options, std::function<double()> random);

  // Each returns what the I/O layer must do, in order. `now_ms`: a steady clock.
  Actions connect(const std::string& base_target);
  // `text`: one serialized message. Returns false when dropped (closed).
  bool send(std::string text, Actions& out);
  Actions close(int code, const std::string& reason);
  Actions on_opened(std::int64_t now_ms);  // the upgrade completed
  Actions on_message(std::string_view text, std::int64_t now_ms);
  // The current socket ended (never called for one closed by a kClose action).
  Actions on_closed(int code, const std::string& reason, bool clean, std::int64_t now_ms);
  Actions on_timer();

  State state() const { return state_; }
  const std::string& client_id() const { return client_id_; }
  bool has_session() const { return session_.has_value(); }
  const std::string& resume_token() const;
  std::int64_t last_seq() const { return last_seq_; }
  std::int64_t sent() const { return sent_count_; }
  int attempt() const { return attempt_; }
  std::size_t queued() const { return queue_.size(); }

 private:
  struct Session {
    std::string session_id;
    std::string token;
  };
  struct Sent {
    std::int64_t n;
    std::string text;
  };

  void open(Actions& out);
  void emit(Actions& out, Event ev);
  void ready(Actions& out, std::vector<std::string> resend, bool resumed);
  void write(Actions& out, std::string text);
  void reset_session();
  void lose_session(Actions& out, const std::string& reason);
  void on_welcome(Actions& out, const boost::json::value* payload, const std::string& payload_text);
  void on_resumed(Actions& out, const boost::json::value* payload, const std::string& payload_text,
                  std::int64_t now_ms);
  void after_close(Actions& out, int code, const std::string& reason, bool clean,
                   std::int64_t now_ms, const std::string& lost);
  void protocol_error(Actions& out, const std::string& why, std::string_view text);

  Options options_;
  std::function<double()> random_;
  std::string base_target_;
  State state_ = State::idle;
  bool socket_ = false;  // a current socket exists
  bool ever_opened_ = false;
  std::int64_t opened_at_ = -1;  // -1: the current socket has not opened
  int attempt_ = 0;
  std::deque<std::string> queue_;
  std::string client_id_;
  std::optional<Session> session_;
  std::int64_t last_seq_ = 0;
  std::int64_t sent_count_ = 0;
  std::deque<Sent> sent_log_;
  bool resume_attempt_ = false;
};

}  // namespace signal_client::detail
