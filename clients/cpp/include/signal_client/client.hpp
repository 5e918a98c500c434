// signal_client: the C++17 client of signal-server for native hosts (docs/CLIENTS.md).
//
// Threads: a Client may be used from any number of threads at once. Every public member
// function is thread-safe; the work itself runs on one I/O thread: the client's own (the
// Client(Options) constructor) or a thread running the caller's io_context. Callbacks
// (Options::on_event) run on that I/O thread, one at a time, never while a member function is
// on the stack of the calling thread; they may call any member function of the client except
// the destructor. Without a callback, events wait in a queue (bounded by
// Options::event_queue_limit) that poll_event() / wait_event() read from any thread.
//
// Lifetime: no callback runs once the destructor has started. The destructor drops a connection
// still open without a close frame (a resumable session is then suspended, not left); after
// close() it lets the close handshake finish (at most handshake_timeout_ms) with its own thread,
// which it joins. With the caller's io_context, destroy the Client on a thread that is not
// running one of its callbacks; handlers still pending in that io_context do nothing.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace boost::asio {
class io_context;
}

namespace signal_client {

// Close codes signal-server uses; docs/CLIENTS.md has the table of what each client does.
namespace close_code {
constexpr int kNormal = 1000;            // also "Room is full": never retried
constexpr int kAbnormal = 1006;          // no close frame: network loss, crash, timeout: retried
constexpr int kPolicy = 1008;            // invalid roomId, auth, origin...: never retried
constexpr int kTooBig = 1009;            // a message over the size limit: never retried
constexpr int kInternal = 1011;          // retried
constexpr int kDraining = 1012;          // retried, after at least drainingDelayMs
constexpr int kTryAgain = 1013;          // capacity, rate limit, Redis unavailable: retried
constexpr int kResumedElsewhere = 4001;  // another connection took the session: never retried
}  // namespace close_code

// The JavaScript client's reconnect options, with its defaults.
struct ReconnectOptions {
  bool enabled = true;
  int initial_delay_ms = 500;    // first delay (before jitter)
  int max_delay_ms = 15000;      // cap of the exponential delay
  double factor = 2;             // growth per failed attempt
  int draining_delay_ms = 1000;  // least delay after 1012
  int max_attempts = -1;         // consecutive failed attempts before giving up; -1: no limit
  int stable_after_ms = 2000;    // a socket open this long resets the attempt count
  std::vector<int> retry_codes = {1006, 1011, 1012, 1013};
};

struct Options {
  std::string url;  // ws://HOST[:PORT][/PATH][?QUERY] or wss://...; path and query are kept
  std::string room_id;
  std::string token;        // JWT, sent as the `token` query parameter; empty: none
  std::string subprotocol;  // offered in Sec-WebSocket-Protocol; empty: none
  bool resume = true;       // resumable session (resume=1, implies events=1)
  bool events = true;       // welcome / peer-joined (events=1); needed to see admission
  // wss:// trust: empty uses the system's default CA paths (OpenSSL's; on Windows give a file).
  std::string ca_file;
  bool verify_peer = true;  // false only for development against self-signed servers
  ReconnectOptions reconnect;
  std::size_t queue_limit = 256;     // messages held while not admitted; the oldest is dropped
  std::size_t resume_history = 256;  // sent messages kept to re-send after a resume
  std::size_t max_message_bytes = 1 << 20;  // a larger incoming message closes with 1009
  // Nothing from the server for half of this: the client pings; for all of it: the connection
  // is taken as dead (1006, retried and resumed). Keep it above the server's heartbeat interval.
  int idle_timeout_ms = 45000;
  int handshake_timeout_ms = 10000;      // TCP + TLS + upgrade
  std::function<double()> random;        // jitter source in [0, 1); empty: a seeded PRNG
  std::size_t event_queue_limit = 4096;  // polled events kept (without on_event); oldest dropped
  // Called on the I/O thread for every event; empty: events go to the polled queue.
  std::function<void(const struct Event&)> on_event;
};

enum class EventType {
  open,         // admitted (welcome or resumed seen); reconnected / resumed tell which
  welcome,      // the server's welcome: client_id, payload (JSON text)
  offer,        // sdp
  answer,       // sdp
  candidate,    // candidate, sdp_mid, sdp_mline_index
  control,      // action, payload (JSON text): controls without an event of their own
  peer_joined,  // client_id
  peer_disconnected,
  peer_suspended,  // client_id: a resumable peer dropped, its seat is held
  peer_resumed,    // client_id
  resumed,         // the server's answer to a resume: recovered, received
  session_lost,    // reason ("not-recovered", "invalid-token", "invalid-lastSeq",
                   // "cannot-resend"), dropped: renegotiate
  schema_error,    // the server refused one of our messages
  close,           // code, reason, clean, will_retry, delay_ms
  reconnecting,    // attempt, delay_ms, code, reason
  queue_overflow,  // a queued message was dropped (text)
  protocol_error,  // the server sent something unusable: reason says what, text has it
};

const char* to_string(EventType type);

struct Event {
  EventType type = EventType::control;
  std::string sdp;
  std::string candidate;
  std::optional<std::string> sdp_mid;
  std::optional<int> sdp_mline_index;
  std::string action;
  std::string payload;  // JSON text of `payload`; empty when absent
  std::string client_id;
  bool recovered = false;
  std::int64_t received = 0;
  int code = 0;
  std::string reason;
  bool clean = false;  // close: a close frame was exchanged
  bool will_retry = false;
  int delay_ms = 0;
  int attempt = 0;
  std::int64_t dropped = 0;
  bool reconnected = false;      // open: not the first admission
  bool resumed_session = false;  // open: the old session continues
  std::string text;              // the message as received (or the dropped message)
};

enum class State { idle, connecting, open, reconnecting, closed };
const char* to_string(State state);

class Client {
 public:
  // Runs its own I/O thread.
  explicit Client(Options options);
  // Runs on `io` (the caller runs it).
  Client(boost::asio::io_context& io, Options options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Starts connecting (and reconnecting per the policy). False when already started or the
  // options are unusable (bad URL, empty room id); see last_error().
  bool connect();
  // Leaves for good: close frame (which ends a resumable session on the server), no reconnect.
  void close(int code = close_code::kNormal, const std::string& reason = "");

  // Sent when admitted, else queued. False (nothing sent) on an empty sdp/candidate/action, a
  // payload that is not JSON, or after close.
  bool send_offer(const std::string& sdp);
  bool send_answer(const std::string& sdp);
  bool send_candidate(const std::string& candidate, std::optional<std::string> sdp_mid = {},
                      std::optional<int> sdp_mline_index = {});
  // `payload_json`: JSON text of the payload; empty for none.
  bool send_control(const std::string& action, const std::string& payload_json = "");

  // The polled queue (when Options::on_event is empty).
  std::optional<Event> poll_event();
  std::optional<Event> wait_event(std::chrono::milliseconds timeout);

  State state() const;
  std::string client_id() const;  // from the welcome; empty before
  std::string last_error() const;

 private:
  struct Impl;
  struct Runner;
  bool send_text(std::string text);
  std::unique_ptr<Runner> runner_;  // the own I/O thread, if any
  std::shared_ptr<Impl> impl_;
};

}  // namespace signal_client
