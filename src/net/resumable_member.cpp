// Resumable member: seat, log and identity across sockets; suspension window; resume claims.
#include "net/resumable_member.hpp"

#include <boost/asio/post.hpp>

#include "net/server.hpp"
#include "net/ws_session.hpp"
#include "obs/metrics.hpp"

namespace sigsrv {

ResumableMember::ResumableMember(Server& server, Loop& home, std::string session_id,
                                 std::string client_id)
    : server_(server),
      home_(home),
      session_id_(std::move(session_id)),
      client_id_(std::move(client_id)),
      log_(ResumeLimits{server.config().resume_buffer_messages,
                        server.config().resume_buffer_bytes}),
      life_(std::chrono::milliseconds(server.config().resume_window_ms)),
      window_(home.ioc) {}

void ResumableMember::start(std::shared_ptr<Room> room, std::weak_ptr<WsSession> socket,
                            unsigned socket_loop) {
  room_ = std::move(room);
  socket_ = std::move(socket);
  socket_loop_ = socket_loop;
  generation = 1;
  life_.joined();
}

void ResumableMember::deliver(const SharedText& message) {
  if (life_.state() == MemberLifecycle::State::kLeft) return;
  // Kept even while suspended: that is what a resume replays.
  SharedText numbered = log_.append(*message);
  auto socket = socket_.lock();
  if (!socket) return;
  if (socket_loop_ == home_.index) {
    socket->deliver(numbered);
    return;
  }
  boost::asio::post(server_.loop(socket_loop_).ioc,
                    [socket = std::move(socket), numbered] { socket->deliver(numbered); });
}

void ResumableMember::probe() {
  auto socket = socket_.lock();
  if (!socket) return;
  if (socket_loop_ == home_.index) {
    socket->probe();
    return;
  }
  boost::asio::post(server_.loop(socket_loop_).ioc,
                    [socket = std::move(socket)] { socket->probe(); });
}

void ResumableMember::socket_ended(uint64_t ended_generation, bool client_closed) {
  if (ended_generation != generation.load() || life_.state() != MemberLifecycle::State::kJoined) {
    return;  // a socket already taken over, or a member already gone
  }
  socket_.reset();
  // A draining instance cannot hold the seat for a resume: nothing here would serve it.
  const bool suspended =
      !server_.draining() &&
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
  notify_peers(std::make_shared<const std::string>(peer_suspended_message(client_id_)));
  server_.bus().publish_presence(room_->id(), client_id_, PresenceEvent::kSuspended);
  arm_window();
}

void ResumableMember::arm_window() {
  window_.expires_at(life_.deadline());
  window_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    if (ec) return;
    auto self = weak.lock();
    if (!self || !self->life_.expire(MemberLifecycle::Clock::now())) return;
    metrics().resume_windows_expired.inc();
    metrics().suspended_sessions.dec();
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
    if (state == MemberLifecycle::State::kSuspended) metrics().suspended_sessions.dec();
    out.result = Claim::Result::kNotRecovered;
    if (auto old = socket_.lock()) {
      boost::asio::post(server_.loop(socket_loop_).ioc,
                        [old = std::move(old)] { old->close_with(kResumedElsewhere); });
    }
    generation.fetch_add(1);  // whatever the old socket still does is no longer ours
    socket_.reset();
    life_.leave();
    depart(false);
    return out;
  }
  window_.cancel();
  if (auto old = socket_.lock()) {
    // The old socket has not been seen dead yet (a silent drop): it is closed with 4001, and
    // its end no longer matches the generation, so it neither suspends nor leaves the member.
    boost::asio::post(server_.loop(socket_loop_).ioc,
                      [old = std::move(old)] { old->close_with(kResumedElsewhere); });
  }
  out.result = Claim::Result::kResumed;
  out.replay = std::move(*replay);
  out.received = received.load();
  out.generation = generation.fetch_add(1) + 1;
  out.room = room_;
  socket_ = std::move(socket);
  socket_loop_ = socket_loop;
  if (state == MemberLifecycle::State::kSuspended) {
    metrics().suspended_sessions.dec();
    notify_peers(std::make_shared<const std::string>(peer_resumed_message(client_id_)));
    server_.bus().publish_presence(room_->id(), client_id_, PresenceEvent::kResumed);
  }
  return out;
}

void ResumableMember::leave() {
  const auto state = life_.state();
  if (state == MemberLifecycle::State::kLeft) return;
  if (state == MemberLifecycle::State::kSuspended) metrics().suspended_sessions.dec();
  window_.cancel();
  life_.leave();
  socket_.reset();
  depart(false);
}

void ResumableMember::depart(bool tombstone) {
  if (!room_) return;
  server_.resumables().remove(session_id_, tombstone,
                              std::chrono::milliseconds(server_.config().resume_window_ms));
  server_.depart(room_, this, client_id_, home_.index);
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
