// The client's state machine (see session_core.hpp); the JavaScript client's policy in C++17.
#include "session_core.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <utility>

namespace signal_client::detail {

namespace json = boost::json;

namespace {

bool unreserved(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '~';
}

std::string percent_encode(std::string_view s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    if (unreserved(c) || c == ':') {
      out += c;
    } else {
      const auto b = static_cast<unsigned char>(c);
      out += '%';
      out += kHex[b >> 4];
      out += kHex[b & 15];
    }
  }
  return out;
}

std::string lower(std::string s) {
  for (auto& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

const json::string* string_at(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v ? v->if_string() : nullptr;
}

std::string client_id_of(const json::value* payload) {
  if (!payload || !payload->is_object()) return {};
  const auto* id = string_at(payload->get_object(), "clientId");
  return id ? std::string(*id) : std::string();
}

}  // namespace

std::optional<Url> parse_url(const std::string& url, std::string* error) {
  auto fail = [&](const char* why) -> std::optional<Url> {
    if (error) *error = std::string(why) + ": " + url;
    return std::nullopt;
  };
  Url u;
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return fail("not a ws:// or wss:// URL");
  const std::string scheme = lower(url.substr(0, scheme_end));
  if (scheme == "wss") {
    u.tls = true;
  } else if (scheme != "ws") {
    return fail("not a ws:// or wss:// URL");
  }
  const auto rest = url.substr(scheme_end + 3);
  const auto authority_end = rest.find_first_of("/?#");
  const std::string authority = rest.substr(0, authority_end);
  std::string target = authority_end == std::string::npos ? "/" : rest.substr(authority_end);
  if (const auto hash = target.find('#'); hash != std::string::npos) target.erase(hash);
  if (target.empty() || target[0] == '?') target.insert(0, "/");
  if (authority.empty() || authority.find('@') != std::string::npos) {
    return fail("no host (or user info) in URL");
  }
  std::string port;
  if (authority[0] == '[') {
    const auto close = authority.find(']');
    if (close == std::string::npos) return fail("unterminated IPv6 address");
    u.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return fail("bad port");
      port = authority.substr(close + 2);
    }
  } else {
    const auto colon = authority.rfind(':');
    u.host = authority.substr(0, colon);
    if (colon != std::string::npos) port = authority.substr(colon + 1);
  }
  if (u.host.empty()) return fail("no host in URL");
  if (!port.empty()) {
    if (port.size() > 5 ||
        !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return fail("bad port");
    }
    if (std::stoi(port) > 65535) return fail("bad port");
  }
  u.port = port.empty() ? (u.tls ? "443" : "80") : port;
  const std::string host = authority[0] == '[' ? "[" + u.host + "]" : u.host;
  u.host_header = port.empty() ? host : host + ":" + port;
  u.target = target;
  return u;
}

std::string build_target(const std::string& base_target, const Options& options,
                         const ResumeFrom* resume_from) {
  const auto q = base_target.find('?');
  std::string path = base_target.substr(0, q);
  std::string kept;
  if (q != std::string::npos) {
    // URLSearchParams.set semantics: the parameters the client sets replace any given.
    std::string_view query(base_target);
    query.remove_prefix(q + 1);
    while (!query.empty()) {
      const auto amp = query.find('&');
      const auto pair = query.substr(0, amp);
      const auto key = pair.substr(0, pair.find('='));
      if (!pair.empty() && key != "roomId" && key != "token" && key != "events" &&
          key != "resume" && key != "lastSeq") {
        if (!kept.empty()) kept += '&';
        kept += pair;
      }
      if (amp == std::string_view::npos) break;
      query.remove_prefix(amp + 1);
    }
  }
  std::string out = path + "?" + kept;
  auto add = [&](const char* key, const std::string& value) {
    if (out.back() != '?') out += '&';
    out += key;
    out += '=';
    out += percent_encode(value);
  };
  add("roomId", options.room_id);
  if (!options.token.empty()) add("token", options.token);
  // resume implies events on new servers; asking anyway keeps the welcome (and so admission)
  // coming from a server that does not know resume.
  if (options.events || options.resume) add("events", "1");
  if (options.resume) {
    add("resume", resume_from ? resume_from->token : "1");
    if (resume_from) add("lastSeq", std::to_string(resume_from->last_seq));
  }
  return out;
}

bool retries(int code, const ReconnectOptions& r) {
  if (!r.enabled || code == close_code::kResumedElsewhere) return false;
  return std::find(r.retry_codes.begin(), r.retry_codes.end(), code) != r.retry_codes.end();
}

int backoff_delay_ms(int attempt, int code, const ReconnectOptions& r, double random01) {
  const double base =
      std::min<double>(r.max_delay_ms, r.initial_delay_ms * std::pow(r.factor, attempt - 1));
  double delay = base / 2 + random01 * (base / 2);
  if (code == close_code::kDraining) delay = std::max<double>(delay, r.draining_delay_ms);
  return static_cast<int>(std::lround(delay));
}

SessionCore::SessionCore(Options options, std::function<double()> random)
    : options_(std::move(options)), random_(std::move(random)) {}

const std::string& SessionCore::resume_token() const {
  static const std::string kNone;
  return session_ ? session_->token : kNone;
}

void SessionCore::emit(Actions& out, Event ev) {
  Action a;
  a.kind = Action::kEmit;
  a.event = std::move(ev);
  out.push_back(std::move(a));
}

Actions SessionCore::connect(const std::string& base_target) {
  Actions out;
  if (state_ != State::idle && state_ != State::closed) return out;
  base_target_ = base_target;
  attempt_ = 0;
  ever_opened_ = false;
  reset_session();
  open(out);
  return out;
}

void SessionCore::open(Actions& out) {
  state_ = ever_opened_ ? State::reconnecting : State::connecting;
  std::optional<ResumeFrom> from;
  if (options_.resume && session_) from = ResumeFrom{session_->token, last_seq_};
  resume_attempt_ = from.has_value();
  // A resumed session keeps its client id; a fresh join gets a new one.
  if (!from) client_id_.clear();
  opened_at_ = -1;
  socket_ = true;
  Action a;
  a.kind = Action::kOpen;
  a.text = build_target(base_target_, options_, from ? &*from : nullptr);
  out.push_back(std::move(a));
}

Actions SessionCore::on_opened(std::int64_t now_ms) {
  Actions out;
  if (!socket_) return out;
  opened_at_ = now_ms;
  // With events=1 the welcome proves admission (checks run after the upgrade, so a refused
  // client sees the upgrade succeed and then a close frame); a resume is admitted by `resumed`.
  if (!options_.events && !options_.resume) ready(out, {}, false);
  return out;
}

bool SessionCore::send(std::string text, Actions& out) {
  if (state_ == State::closed) return false;
  if (state_ == State::open && socket_) {
    write(out, std::move(text));
    return true;
  }
  if (queue_.size() >= options_.queue_limit) {
    // drop-oldest: the newest state wins (a fresh offer supersedes a stale one).
    Event ev;
    ev.type = EventType::queue_overflow;
    if (!queue_.empty()) {
      ev.text = std::move(queue_.front());
      queue_.pop_front();
    } else {
      ev.text = std::move(text);
      emit(out, std::move(ev));
      return false;
    }
    emit(out, std::move(ev));
  }
  queue_.push_back(std::move(text));
  return true;
}

void SessionCore::write(Actions& out, std::string text) {
  if (session_) {
    sent_count_ += 1;
    if (options_.resume_history > 0) {
      sent_log_.push_back({sent_count_, text});
      if (sent_log_.size() > options_.resume_history) sent_log_.pop_front();
    }
  }
  Action a;
  a.kind = Action::kWrite;
  a.text = std::move(text);
  out.push_back(std::move(a));
}

void SessionCore::ready(Actions& out, std::vector<std::string> resend, bool resumed) {
  const bool reconnected = ever_opened_;
  ever_opened_ = true;
  // Re-sent messages keep their session index: they go out before anything new.
  for (auto& text : resend) {
    Action a;
    a.kind = Action::kWrite;
    a.text = std::move(text);
    out.push_back(std::move(a));
  }
  state_ = State::open;
  while (!queue_.empty()) {
    auto text = std::move(queue_.front());
    queue_.pop_front();
    write(out, std::move(text));
  }
  Event ev;
  ev.type = EventType::open;
  ev.reconnected = reconnected;
  ev.resumed_session = resumed;
  ev.client_id = client_id_;
  emit(out, std::move(ev));
}

void SessionCore::reset_session() {
  session_.reset();
  last_seq_ = 0;
  sent_count_ = 0;
  sent_log_.clear();
  resume_attempt_ = false;
}

void SessionCore::lose_session(Actions& out, const std::string& reason) {
  Event ev;
  ev.type = EventType::session_lost;
  ev.reason = reason;
  ev.dropped = static_cast<std::int64_t>(queue_.size());
  // What was queued belonged to the old negotiation: dropped, not sent into the new session.
  queue_.clear();
  reset_session();
  client_id_.clear();
  emit(out, std::move(ev));
}

Actions SessionCore::close(int code, const std::string& reason) {
  Actions out;
  out.push_back(Action{Action::kCancelTimer, {}, 0, {}, 0, {}});
  queue_.clear();
  reset_session();
  const bool had_socket = socket_;
  const bool was_open = state_ == State::open;
  socket_ = false;
  const bool was_closed = state_ == State::closed;
  state_ = State::closed;
  if (had_socket) {
    Action a;
    a.kind = Action::kClose;
    a.code = code;
    a.reason = reason;
    out.push_back(std::move(a));
  }
  if ((had_socket || was_open) && !was_closed) {
    Event ev;
    ev.type = EventType::close;
    ev.code = code;
    ev.reason = reason;
    ev.clean = true;
    emit(out, std::move(ev));
  }
  return out;
}

Actions SessionCore::on_timer() {
  Actions out;
  if (state_ == State::reconnecting && !socket_) open(out);
  return out;
}

void SessionCore::protocol_error(Actions& out, const std::string& why, std::string_view text) {
  Event ev;
  ev.type = EventType::protocol_error;
  ev.reason = why;
  ev.text = std::string(text.substr(0, 512));
  emit(out, std::move(ev));
}

Actions SessionCore::on_message(std::string_view text, std::int64_t now_ms) {
  Actions out;
  if (!socket_) return out;
  json::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) {
    protocol_error(out, "not JSON: " + ec.message(), text);
    return out;
  }
  auto* obj = v.if_object();
  const json::string* type = obj ? string_at(*obj, "type") : nullptr;
  if (!type) {
    protocol_error(out, "not an object with a string type", text);
    return out;
  }
  // Only the server's own welcome and resumed come without seq in a resumable session; the
  // same actions with a seq were relayed from a peer and are plain controls.
  const auto* seq = obj->if_contains("seq");
  const bool from_server = seq == nullptr;
  if (session_ && seq) {
    if (const auto n = seq->if_int64()) {
      // Replays start after lastSeq by contract; a duplicate still must not reach the app.
      if (*n <= last_seq_) return out;
      last_seq_ = *n;
    } else if (const auto u = seq->if_uint64()) {
      if (static_cast<std::int64_t>(*u) <= last_seq_) return out;
      last_seq_ = static_cast<std::int64_t>(*u);
    }
  }
  const json::value* payload = obj->if_contains("payload");
  const std::string payload_text = payload ? json::serialize(*payload) : std::string();
  Event ev;
  ev.text = std::string(text);
  ev.payload = payload_text;
  if (*type == "control") {
    const auto* action = string_at(*obj, "action");
    if (!action) {
      protocol_error(out, "control without an action", text);
      return out;
    }
    ev.action = std::string(*action);
    if (*action == "welcome" && from_server) {
      on_welcome(out, payload, payload_text);
      return out;
    }
    if (*action == "resumed" && from_server && resume_attempt_) {
      on_resumed(out, payload, payload_text, now_ms);
      return out;
    }
    if (*action == "peer-joined") {
      ev.type = EventType::peer_joined;
    } else if (*action == "peer-suspended") {
      ev.type = EventType::peer_suspended;
    } else if (*action == "peer-resumed") {
      ev.type = EventType::peer_resumed;
    } else if (*action == "schema-error") {
      ev.type = EventType::schema_error;
    } else {
      ev.type = EventType::control;
    }
    ev.client_id = client_id_of(payload);
    emit(out, std::move(ev));
    return out;
  }
  if (*type == "offer" || *type == "answer") {
    const auto* sdp = string_at(*obj, "sdp");
    if (!sdp) {
      protocol_error(out, std::string(*type) + " without an sdp string", text);
      return out;
    }
    ev.type = *type == "offer" ? EventType::offer : EventType::answer;
    ev.sdp = std::string(*sdp);
    emit(out, std::move(ev));
    return out;
  }
  if (*type == "candidate") {
    const auto* candidate = string_at(*obj, "candidate");
    if (!candidate) {
      protocol_error(out, "candidate without a candidate string", text);
      return out;
    }
    ev.type = EventType::candidate;
    ev.candidate = std::string(*candidate);
    if (const auto* mid = string_at(*obj, "sdpMid")) ev.sdp_mid = std::string(*mid);
    if (const auto* idx = obj->if_contains("sdpMLineIndex")) {
      if (const auto n = idx->if_int64(); n && *n >= 0 && *n <= 65535) {
        ev.sdp_mline_index = static_cast<int>(*n);
      } else if (const auto u = idx->if_uint64(); u && *u <= 65535) {
        ev.sdp_mline_index = static_cast<int>(*u);
      }
    }
    emit(out, std::move(ev));
    return out;
  }
  if (*type == "peer-disconnected") {
    ev.type = EventType::peer_disconnected;
    emit(out, std::move(ev));
    return out;
  }
  protocol_error(out, "unknown message type: " + std::string(type->subview(0, 64)), text);
  return out;
}

void SessionCore::on_welcome(Actions& out, const json::value* payload,
                             const std::string& payload_text) {
  client_id_ = client_id_of(payload);
  if (options_.resume) {
    reset_session();
    // A server that does not know resume sends no token: reconnects then join afresh.
    const json::object* p = payload ? payload->if_object() : nullptr;
    const auto* token = p ? string_at(*p, "resumeToken") : nullptr;
    if (token && !token->empty()) {
      const auto* id = string_at(*p, "sessionId");
      session_ = Session{id ? std::string(*id) : std::string(), std::string(*token)};
    }
  }
  Event ev;
  ev.type = EventType::welcome;
  ev.action = "welcome";
  ev.client_id = client_id_;
  ev.payload = payload_text;
  emit(out, std::move(ev));
  if (state_ != State::open) ready(out, {}, false);
}

void SessionCore::on_resumed(Actions& out, const json::value* payload,
                             const std::string& payload_text, std::int64_t now_ms) {
  resume_attempt_ = false;
  const json::object* p = payload ? payload->if_object() : nullptr;
  const auto* rec = p ? p->if_contains("recovered") : nullptr;
  const bool recovered = rec && rec->is_bool() && rec->get_bool();
  const auto* received_v = p ? p->if_contains("received") : nullptr;
  Event ev;
  ev.type = EventType::resumed;
  ev.action = "resumed";
  ev.recovered = recovered;
  ev.payload = payload_text;
  std::optional<std::int64_t> received;
  if (received_v) {
    if (const auto n = received_v->if_int64()) received = *n;
    if (const auto u = received_v->if_uint64()) received = static_cast<std::int64_t>(*u);
  }
  ev.received = received.value_or(-1);
  emit(out, std::move(ev));
  if (!recovered) {
    // The server goes on with a fresh join; its welcome admits us into the new session.
    lose_session(out, "not-recovered");
    return;
  }
  const std::int64_t oldest_kept = sent_log_.empty() ? sent_count_ + 1 : sent_log_.front().n;
  // More than we wrote, or a re-send the log no longer holds: exactly-once is out of reach, so
  // leave and join afresh, which peers see as peer-disconnected + peer-joined.
  if (!received || *received < 0 || *received > sent_count_ || oldest_kept > *received + 1) {
    Action a;
    a.kind = Action::kClose;
    a.code = close_code::kNormal;
    a.reason = "Session lost";
    out.push_back(std::move(a));
    socket_ = false;
    after_close(out, close_code::kNormal, "Session lost", true, now_ms, "cannot-resend");
    return;
  }
  std::vector<std::string> resend;
  while (!sent_log_.empty() && sent_log_.front().n <= *received) sent_log_.pop_front();
  for (const auto& e : sent_log_) resend.push_back(e.text);
  ready(out, std::move(resend), true);
}

Actions SessionCore::on_closed(int code, const std::string& reason, bool clean,
                               std::int64_t now_ms) {
  Actions out;
  if (!socket_) return out;
  socket_ = false;
  std::string lost;
  if (code == close_code::kPolicy && resume_attempt_) {
    if (reason == "Invalid resume token") lost = "invalid-token";
    if (reason == "Invalid lastSeq") lost = "invalid-lastSeq";
  }
  after_close(out, code, reason, clean, now_ms, lost);
  return out;
}

void SessionCore::after_close(Actions& out, int code, const std::string& reason, bool clean,
                              std::int64_t now_ms, const std::string& lost) {
  const auto& r = options_.reconnect;
  if (opened_at_ >= 0 && now_ms >= 0 && r.enabled && now_ms - opened_at_ >= r.stable_after_ms) {
    attempt_ = 0;
  }
  opened_at_ = -1;
  const bool retry = r.enabled && (r.max_attempts < 0 || attempt_ < r.max_attempts) &&
                     (!lost.empty() || retries(code, r));
  Event ev;
  ev.type = EventType::close;
  ev.code = code;
  ev.reason = reason;
  ev.clean = clean;
  if (!retry) {
    queue_.clear();
    reset_session();
    state_ = State::closed;
    emit(out, std::move(ev));
    return;
  }
  attempt_ += 1;
  const double rnd = random_ ? random_() : 0.5;
  const int delay = backoff_delay_ms(attempt_, code, r, rnd);
  state_ = State::reconnecting;
  ev.will_retry = true;
  ev.delay_ms = delay;
  emit(out, std::move(ev));
  if (!lost.empty()) lose_session(out, lost);
  Action a;
  a.kind = Action::kSchedule;
  a.delay_ms = delay;
  out.push_back(std::move(a));
  Event rec;
  rec.type = EventType::reconnecting;
  rec.attempt = attempt_;
  rec.delay_ms = delay;
  rec.code = code;
  rec.reason = reason;
  emit(out, std::move(rec));
}

}  // namespace signal_client::detail
