// Resumable member: seat, log and identity across sockets; suspension window; resume claims.
#include "net/resumable_member.hpp"

#include <boost/asio/post.hpp>

#include "net/server.hpp"
#include "net/ws_session.hpp"
#include "obs/metrics.hpp"

namespace sigsrv {

// A numbered message arrived past a gap (the bus lost what came between, while its subscriber
// reconnected): the client resumes, and the replay from the bus' log fills the gap or says
// recovered:false. Never a hole in what it was sent.
inline constexpr Rejection kSessionResync{1013, "Session resync"};

ResumableMember::ResumableMember(Server& server, Loop& home, std::string session_id,
                                 std::string client_id)
    : server_(server),
      home_(home),
      session_id_(std::move(session_id)),
      client_id_(std::move(client_id)),
      shared_(server.bus().shares_sessions()),
      log_(ResumeLimits{server.config().resume_buffer_messages,
                        server.config().resume_buffer_bytes}),
      life_(std::chrono::milliseconds(server.config().resume_window_ms)),
      window_(home.ioc) {}

SessionRef ResumableMember::ref() const {
  return SessionRef{room_ ? room_->id() : std::string(), session_id_, client_id_};
}

void ResumableMember::start(std::shared_ptr<Room> room, std::weak_ptr<WsSession> socket,
                            unsigned socket_loop) {
  room_ = std::move(room);
  socket_ = std::move(socket);
  socket_loop_ = socket_loop;
  generation = 1;
  life_.joined();
}

uint64_t ResumableMember::adopt(std::shared_ptr<Room> room, std::weak_ptr<WsSession> socket,
                                unsigned socket_loop, uint64_t last_seq, bool was_suspended) {
  const auto state = life_.state();
  if (state == MemberLifecycle::State::kAdmitted) {
    room_ = std::move(room);
    life_.joined();
  } else {
    // Already held here: a silent socket is replaced, a suspension ends.
    if (state == MemberLifecycle::State::kSuspended) end_suspension();
    life_.resume(MemberLifecycle::Clock::now());
    close_socket(kResumedElsewhere);
  }
  window_.cancel();
  inbound.clear_overload();
  last_seq_ = last_seq;
  socket_ = std::move(socket);
  socket_loop_ = socket_loop;
  if (was_suspended) announce(PresenceEvent::kResumed);
  return generation.fetch_add(1) + 1;
}

template <class F>
void ResumableMember::on_socket(F f) {
  auto socket = socket_.lock();
  if (!socket) return;
  if (socket_loop_ == home_.index) {
    f(*socket);
    return;
  }
  boost::asio::post(server_.loop(socket_loop_).ioc,
                    [socket = std::move(socket), f = std::move(f)] { f(*socket); });
}

void ResumableMember::forward(const SharedText& numbered) {
  on_socket([numbered](WsSession& s) { s.deliver(numbered); });
}

void ResumableMember::announce(PresenceEvent event) {
  notify_peers(std::make_shared<const std::string>(event == PresenceEvent::kSuspended
                                                       ? peer_suspended_message(client_id_)
                                                       : peer_resumed_message(client_id_)));
  server_.bus().publish_presence(room_->id(), client_id_, event);
}

void ResumableMember::close_socket(Rejection r) {
  auto socket = socket_.lock();
  if (!socket) return;
  boost::asio::post(server_.loop(socket_loop_).ioc,
                    [socket = std::move(socket), r] { socket->close_with(r); });
}

void ResumableMember::deliver(const SharedText& message) {
  if (life_.state() == MemberLifecycle::State::kLeft) return;
  if (shared_) {
    // Numbered by the bus, in order with the relays; it comes back through deliver_numbered.
    server_.bus().session_append(ref(), message);
    return;
  }
  // Kept even while suspended: that is what a resume replays.
  forward(log_.append(*message));
}

void ResumableMember::deliver_relay(const SharedText& data, const RecipientSeqs& seqs) {
  for (const auto& [client, seq] : seqs) {
    if (client == client_id_) {
      deliver_numbered(seq, std::make_shared<const std::string>(with_seq(*data, seq)));
      return;
    }
  }
  // Relayed without a number for this session (a Node instance, or a relay that raced the
  // session's start): numbered now.
  deliver(data);
}

void ResumableMember::deliver_numbered(uint64_t seq, const SharedText& text) {
  if (life_.state() == MemberLifecycle::State::kLeft || seq <= last_seq_) return;
  if (seq != last_seq_ + 1) {
    // Once per socket: the socket is let go at once, and its resume sets last_seq_ again.
    if (!socket_.expired()) {
      metrics().resume_resyncs.inc();
      server_.log().warn("Gap in a resumable session's messages; asking the client to resume",
                         {{"clientId", client_id_}, {"expected", last_seq_ + 1}, {"got", seq}});
      close_socket(kSessionResync);
      resynced_ = true;
      socket_.reset();
    }
    return;
  }
  last_seq_ = seq;
  forward(text);
}

void ResumableMember::resync() {
  if (life_.state() != MemberLifecycle::State::kJoined || socket_.expired()) return;
  metrics().resume_resyncs.inc();
  resynced_ = true;
  close_socket(kSessionResync);
}

void ResumableMember::taken_over() {
  if (life_.state() == MemberLifecycle::State::kLeft) return;
  if (life_.state() == MemberLifecycle::State::kAdmitted) {
    // Claimed here and, at once, by another instance: ours is not adopted yet, and now never is
    // (the socket waiting for it joins afresh).
    life_.leave();
    server_.resumables().remove(session_id_, false, std::chrono::milliseconds(0));
    return;
  }
  if (life_.state() == MemberLifecycle::State::kSuspended) end_suspension();
  window_.cancel();
  life_.leave();
  generation.fetch_add(1);  // what the old socket still reads is not the session's any more
  close_socket(kResumedElsewhere);
  socket_.reset();
  server_.log().info("Session resumed on another instance",
                     {{"clientId", client_id_}, {"roomId", room_->id()}});
  server_.resumables().remove(session_id_, false, std::chrono::milliseconds(0));
  server_.rooms().detach(room_, client_id_);
  server_.bus().release_room(room_->id());
  room_.reset();
}

void ResumableMember::overloaded() {
  // In process, what was not posted was never numbered: a resume must answer recovered:false.
  // (With shared sessions the bus numbered it, and the resume's replay has it.)
  if (!shared_) log_.mark_lost();
  on_socket([](WsSession& s) { s.overloaded(); });
}

void ResumableMember::fault(std::string_view what) {
  on_socket([why = std::string(what)](WsSession& s) { s.fault(why); });
}

void ResumableMember::probe() {
  on_socket([](WsSession& s) { s.probe(); });
}

void ResumableMember::socket_ended(uint64_t ended_generation, bool client_closed) {
  if (ended_generation != generation.load() || life_.state() != MemberLifecycle::State::kJoined) {
    return;  // a socket already taken over, or a member already gone
  }
  socket_.reset();
  const bool draining = server_.draining();
  // A draining instance cannot hold the seat for a resume. With shared sessions the bus does:
  // the session is handed over (resumed on another instance, or released when this instance's
  // lease lapses); in process, the member leaves.
  const bool suspended =
      (!draining || shared_) &&
      life_.socket_ended(client_closed ? MemberLifecycle::SocketEnd::kClientClosed
                                       : MemberLifecycle::SocketEnd::kLost,
                         MemberLifecycle::Clock::now());
  if (!suspended) {
    depart(client_closed);
    return;
  }
  Metrics& m = metrics();
  m.sessions_suspended.inc();
  m.suspended_sessions.inc();
  server_.log().info("Client suspended", {{"clientId", client_id_},
                                          {"roomId", room_->id()},
                                          {"resumeWindowMs", server_.config().resume_window_ms}});
  if (shared_) server_.bus().session_suspended(ref());
  announce(PresenceEvent::kSuspended);
  if (draining) {
    server_.hand_over_session();
    return;
  }
  arm_window();
}

void ResumableMember::end_suspension() {
  metrics().suspended_sessions.dec();
}

void ResumableMember::arm_window() {
  window_.expires_at(life_.deadline());
  window_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    if (ec) return;
    auto self = weak.lock();
    if (!self || !self->life_.expire(MemberLifecycle::Clock::now())) return;
    metrics().resume_windows_expired.inc();
    self->end_suspension();
    self->server_.log().info("Resume window passed",
                             {{"clientId", self->client_id_}, {"roomId", self->room_->id()}});
    // Not a tombstone: a late token reads as a window that passed (recovered:false).
    self->depart(false);
  });
}

ResumableMember::Claim ResumableMember::claim(std::weak_ptr<WsSession> socket, unsigned socket_loop,
                                              uint64_t last_seq) {
  Claim out;
  const auto state = life_.state();
  if (state == MemberLifecycle::State::kLeft) return out;
  auto replay = log_.replay_after(last_seq);
  const auto now = MemberLifecycle::Clock::now();
  if (!replay || !life_.resume(now)) {
    // Messages missing, or the window passed before its timer ran: the member leaves (peers
    // hear peer-disconnected) and the socket joins afresh.
    if (state == MemberLifecycle::State::kSuspended) end_suspension();
    out.result = Claim::Result::kNotRecovered;
    close_socket(kResumedElsewhere);
    generation.fetch_add(1);  // whatever the old socket still does is no longer ours
    socket_.reset();
    life_.leave();
    depart(false);
    return out;
  }
  window_.cancel();
  // The old socket has not been seen dead yet (a silent drop): it is closed with 4001, and its
  // end no longer matches the generation, so it neither suspends nor leaves the member.
  close_socket(kResumedElsewhere);
  out.result = Claim::Result::kResumed;
  out.replay = std::move(*replay);
  out.received = received.load();
  out.generation = generation.fetch_add(1) + 1;
  out.room = room_;
  inbound.clear_overload();
  socket_ = std::move(socket);
  socket_loop_ = socket_loop;
  if (state == MemberLifecycle::State::kSuspended) {
    end_suspension();
    announce(PresenceEvent::kResumed);
  }
  return out;
}

void ResumableMember::leave() {
  const auto state = life_.state();
  if (state == MemberLifecycle::State::kLeft) return;
  if (state == MemberLifecycle::State::kSuspended) end_suspension();
  window_.cancel();
  life_.leave();
  socket_.reset();
  depart(false);
}

void ResumableMember::depart(bool tombstone) {
  if (!room_) return;
  server_.resumables().remove(session_id_, tombstone,
                              std::chrono::milliseconds(server_.config().resume_window_ms));
  const SessionRef session = ref();
  server_.depart(room_, this, client_id_, home_.index);
  if (shared_) server_.bus().session_end(session, tombstone);
  room_.reset();
}

void ResumableMember::notify_peers(const SharedText& note) {
  Targets others;
  room_->collect_others(this, others);
  for (auto& t : others) {
    if (t.wants_events) server_.send_from(home_.index, std::move(t), note);
  }
}

// ---- ResumeRegistry ----

void ResumeRegistry::add(const std::shared_ptr<ResumableMember>& member) {
  std::lock_guard lock(mu_);
  live_[member->session_id()] = member;
}

std::pair<ResumeRegistry::Found, std::shared_ptr<ResumableMember>> ResumeRegistry::find(
    const std::string& session_id) {
  std::lock_guard lock(mu_);
  prune(Clock::now());
  if (auto it = live_.find(session_id); it != live_.end()) return {Found::kLive, it->second};
  if (left_.count(session_id) > 0) return {Found::kLeft, nullptr};
  return {Found::kUnknown, nullptr};
}

void ResumeRegistry::remove(const std::string& session_id, bool tombstone,
                            std::chrono::milliseconds keep) {
  std::lock_guard lock(mu_);
  live_.erase(session_id);
  if (!tombstone) return;
  const auto now = Clock::now();
  prune(now);
  if (left_order_.size() >= kMaxTombstones) {
    left_.erase(left_order_.front().second);
    left_order_.pop_front();
  }
  left_[session_id] = now + keep;
  left_order_.emplace_back(now + keep, session_id);
}

std::vector<std::shared_ptr<ResumableMember>> ResumeRegistry::live() {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<ResumableMember>> out;
  out.reserve(live_.size());
  for (auto& [id, m] : live_) out.push_back(m);
  return out;
}

void ResumeRegistry::prune(Clock::time_point now) {
  // One window for every tombstone, so expiry order is insertion order.
  while (!left_order_.empty() && left_order_.front().first <= now) {
    left_.erase(left_order_.front().second);
    left_order_.pop_front();
  }
}

}  // namespace sigsrv
