// Server: owns the loops and listeners; heartbeat ticks per loop; drain on SIGTERM/SIGINT.
#include "net/server.hpp"

#include <boost/asio/post.hpp>
#include <csignal>
#include <cstdlib>

#include "signaling/resume.hpp"

#include "net/listener.hpp"
#include "net/loop_owned.hpp"
#include "net/ws_session.hpp"
#include "obs/metrics.hpp"

namespace sigsrv {

namespace {

// TURN_URLS were checked when the configuration was loaded.
IceServers ice_servers_of(const Config& c) {
  std::vector<IceUrl> urls;
  for (const auto& text : c.turn_urls) {
    if (auto parsed = parse_ice_url(text); auto* url = std::get_if<IceUrl>(&parsed)) {
      urls.push_back(std::move(*url));
    }
  }
  return IceServers(urls, c.turn_secret, c.turn_expiry_seconds);
}

}  // namespace

Server::Server(const Config& config, Logger& log, Bus& bus)
    : config_(config),
      log_(log),
      bus_(bus),
      // Without RESUME_SECRET, tokens are good on this process only: another instance (or this
      // one restarted) refuses them as forged. Two random ids make a 256-bit key.
      resume_key_(config.resume_secret.empty() ? random_session_id() + random_session_id()
                                               : config.resume_secret),
      ice_servers_(ice_servers_of(config)),
      origins_(config.allowed_origins) {
  policy_.shutdown_close_code = config.shutdown_close_code;
  policy_.require_wss = config.require_wss;
  policy_.origins = &origins_;
  policy_.subprotocol_required = !config.subprotocol.empty();
  const unsigned n =
      config.threads > 0 ? config.threads : std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < n; ++i) {
    loops_.push_back(
        std::make_unique<Loop>(i, i == 0 ? bus.loop_context() : nullptr,
                               std::chrono::milliseconds(config.handshake_timeout_ms)));
  }
  main_listener_ = std::make_unique<Listener>(*this, PortKind::kMain);
  if (config.health_port) health_listener_ = std::make_unique<Listener>(*this, PortKind::kHealth);
}

namespace {

// io_context's shutdown (every queued handler destroyed without running) is protected: ~io_context
// runs it, one io_context at a time.
struct HandlerDiscard : asio::io_context {
  static void discard(asio::execution_context& ctx) {
    void (asio::execution_context::*shutdown_services)() = &HandlerDiscard::shutdown;
    (ctx.*shutdown_services)();
  }
};

}  // namespace

Server::~Server() {
  // Handlers still queued when the loops stopped hold sessions of any loop (a delivery carries its
  // recipient to the recipient's loop, the bus' loop holds targets of all of them). Destroy them
  // on every loop before any io_context goes, so that each session is freed while the timers and
  // sockets of its own loop still exist, whatever the order of the loops' destruction.
  if (loops_finished()) {
    for (auto& loop : loops_) HandlerDiscard::discard(loop->ioc);
  }
}

std::string Server::ice_servers_for(std::string_view client_id) const {
  if (ice_servers_.empty()) return {};
  if (ice_servers_.issues_credentials()) metrics().turn_credentials_issued.inc();
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  return ice_servers_.json(client_id, now);
}

std::optional<std::string> Server::listen() {
  if (auto err = main_listener_->open(config_.host, config_.port)) return err;
  if (health_listener_) {
    if (auto err = health_listener_->open(config_.host, *config_.health_port)) {
      return "HEALTH_PORT: " + *err;
    }
  }
  return std::nullopt;
}

uint16_t Server::port() const {
  return main_listener_->port();
}

std::optional<uint16_t> Server::health_port() const {
  if (!health_listener_) return std::nullopt;
  return health_listener_->port();
}

Loop& Server::next_loop() {
  return *loops_[next_loop_.load(std::memory_order_relaxed) % loops_.size()];
}

void Server::loop_taken() {
  next_loop_.fetch_add(1, std::memory_order_relaxed);
}

void Server::schedule_heartbeat(Loop& loop) {
  loop.heartbeat.expires_after(heartbeat_step());
  loop.heartbeat.async_wait([this, &loop](boost::system::error_code ec) {
    if (ec) return;
    // This step's share of the loop: a kHeartbeatSteps-th of its sessions, so each is visited
    // once per interval and the pings (and their pongs, and the memory of the writes in flight)
    // are spread over the interval instead of all leaving at once.
    const std::size_t n = loop.sessions.size();
    heartbeat_slice(loop, (n + kHeartbeatSteps - 1) / kHeartbeatSteps);
  });
}

std::chrono::milliseconds Server::heartbeat_step() const {
  return std::max(std::chrono::milliseconds(1),
                  std::chrono::milliseconds(config_.heartbeat_interval_ms / kHeartbeatSteps));
}

void Server::heartbeat_slice(Loop& loop, std::size_t left) {
  // Ticks never remove sessions synchronously (terminate only closes the socket), so the list is
  // stable within a slice. Between slices and steps sessions come and go (a leaving one swaps the
  // last into its slot), so the cursor may reach a session early or skip it for a round: a tick
  // acts only when a full interval (less one step) has passed since the session's last ping.
  const auto now = std::chrono::steady_clock::now();
  const auto due_after =
      std::chrono::milliseconds(config_.heartbeat_interval_ms) - heartbeat_step();
  for (std::size_t done = 0; done < kHeartbeatSlice && left > 0 && !loop.sessions.empty();
       ++done, --left) {
    if (loop.heartbeat_cursor >= loop.sessions.size()) loop.heartbeat_cursor = 0;
    loop.sessions[loop.heartbeat_cursor++]->heartbeat_tick(now, due_after);
  }
  if (left > 0 && !loop.sessions.empty()) {
    boost::asio::post(loop.ioc, [this, &loop, left] { heartbeat_slice(loop, left); });
    return;
  }
  schedule_heartbeat(loop);
}

int Server::run() {
  Loop& first = *loops_[0];
  signals_.emplace(first.ioc, SIGINT, SIGTERM);
  std::function<void()> wait_signal = [this, &wait_signal] {
    signals_->async_wait([this, &wait_signal](boost::system::error_code ec, int signo) {
      if (ec) return;
      if (draining()) {
        log_.warn("Second signal during drain: exiting now", {{"signal", signo}});
        stop_all();
        return;
      }
      log_.info("Shutdown signal received, draining", {{"signal", signo}});
      begin_drain();
      wait_signal();
    });
  };
  wait_signal();
  main_listener_->start();
  if (health_listener_) health_listener_->start();
  for (auto& loop : loops_) schedule_heartbeat(*loop);
  metrics().ready.set(ready() ? 1 : 0);

  for (std::size_t i = 1; i < loops_.size(); ++i) {
    Loop& l = *loops_[i];
    l.thread = std::thread([this, &l] { run_loop(l); });
  }
  run_loop(first);
  for (std::size_t i = 1; i < loops_.size(); ++i) {
    if (loops_[i]->thread.joinable()) loops_[i]->thread.join();
  }
  return 0;
}

void Server::begin_drain() {
  if (draining_.exchange(true)) return;
  metrics().draining.set(1);
  metrics().ready.set(0);
  const Rejection r = draining_rejection(config_.shutdown_close_code);
  // Suspended sessions cannot be resumed on an instance that is going away: in process they
  // leave now, on their own loops, so their seats are free and their peers told before the
  // exit; on a bus that shares sessions they stay suspended there, handed over.
  auto members = resumables_.live();
  if (bus_.shares_sessions()) {
    if (!members.empty()) hand_over_session();
  } else {
    for (auto& member : members) {
      boost::asio::post(member->home().ioc, [member] { member->leave(); });
    }
  }
  for (auto& loop : loops_) {
    boost::asio::post(loop->ioc, [&l = *loop, r] {
      // close_with() never removes from the list (the session leaves it when its read ends).
      for (WsSession* s : l.sessions) s->close_with(r);
    });
  }
  drain_deadline_ =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(config_.drain_timeout_ms);
  boost::asio::post(loops_[0]->ioc, [this] { watch_drain(drain_deadline_); });
}

std::chrono::milliseconds Server::remaining_drain_budget() const {
  if (!draining()) return std::chrono::milliseconds(0);
  const auto left = drain_deadline_ - std::chrono::steady_clock::now();
  return std::max(std::chrono::milliseconds(0),
                  std::chrono::duration_cast<std::chrono::milliseconds>(left));
}

void Server::watch_drain(std::chrono::steady_clock::time_point deadline) {
  const std::size_t left = websocket_count.load();
  if (left == 0) {
    log_.info("Drain complete");
    stop_all();
    return;
  }
  if (std::chrono::steady_clock::now() >= deadline) {
    log_.warn("Drain timeout reached, exiting with connections still open",
              {{"connections", left}});
    stop_all();
    return;
  }
  if (!drain_timer_) drain_timer_.emplace(loops_[0]->ioc);
  drain_timer_->expires_after(std::chrono::milliseconds(10));
  drain_timer_->async_wait([this, deadline](boost::system::error_code ec) {
    if (!ec) watch_drain(deadline);
  });
}

namespace {

// Runs a handler posted to `peer` on its loop: what it throws faults that peer alone.
template <class F>
void run_for(Peer& peer, F& f) {
  try {
    f(peer);
  } catch (const std::exception& e) {
    peer.fault(e.what());
  }
}

}  // namespace

template <class F>
void Server::post_bounded(Target&& target, std::size_t bytes, F f) {
  Peer& peer = *target.peer;
  auto& ioc = loops_[target.loop]->ioc;
  if (!target.numbered && ioc.get_executor().running_in_this_thread()) {
    // Already on the socket's loop (the bus delivering to a session of loop 0, which it
    // shares): delivered now, as send_from does, with nothing queued to bound. What reaches a
    // plain session from other loops and the bus comes through here, so its order holds. Not
    // for a resumable member: its resume and replay run in handlers posted to it, which a
    // numbered relay must not overtake.
    run_for(peer, f);
    return;
  }
  switch (peer.inbound.reserve(bytes, config_.backpressure_close_threshold_bytes)) {
    case InboundBudget::Reserve::kRefused:
      return;
    case InboundBudget::Reserve::kOverloaded:
      boost::asio::post(ioc, [peer = std::move(target.peer)] { peer->overloaded(); });
      return;
    case InboundBudget::Reserve::kReserved:
      break;
  }
  // Posts from one thread run in order, so a sender's order holds across loops. The reference
  // moves into the handler, so the peer is released on its own loop.
  boost::asio::post(ioc, [peer = std::move(target.peer), bytes, f = std::move(f)] {
    peer->inbound.release(bytes);
    run_for(*peer, f);
  });
}

void Server::run_loop(Loop& l) {
  auto guard = boost::asio::make_work_guard(l.ioc);
  try {
    l.ioc.run();
    return;
  } catch (const std::exception& e) {
    fail_loop(l, e.what());
  } catch (...) {
    fail_loop(l, "an exception that is not a std::exception");
  }
}

void Server::fail_loop(Loop& l, std::string_view what) {
  // Outside any session: the state this loop shares (rooms, the bus, the registry) may be half
  // updated, and other loops keep using it. Stop at once, loudly, and let the supervisor restart
  // the instance (its members are then released by the crash reaper, or resume elsewhere).
  log_.fatal("Unhandled failure on an event loop; exiting",
             {{"loop", l.index}, {"err", std::string(what)}});
  log_.flush();
  std::_Exit(kExitLoopFailure);
}

void Server::post_to(Target&& target, const SharedText& message) {
  post_bounded(std::move(target), message->size(),
               [message](Peer& peer) { peer.deliver(message); });
}

void Server::send_from(unsigned from_loop, Target&& target, const SharedText& message) {
  if (target.loop == from_loop) {
    target.peer->deliver(message);
    return;
  }
  post_to(std::move(target), message);
}

void Server::depart(const std::shared_ptr<Room>& room, const Peer* self,
                    const std::string& client_id, unsigned from_loop) {
  const std::string& room_id = room->id();
  // Collect before detaching, so nobody who joins after this member is gone hears of it.
  Targets others;
  room->collect_others(self, others);
  rooms_.detach(room, client_id);
  bus_.leave(room_id, client_id);
  for (auto& t : others) send_from(from_loop, std::move(t), peer_disconnected_message());
  bus_.publish_departure(room_id, client_id);
  log_.info("Client left room", {{"clientId", client_id}, {"roomId", room_id}});
}

void Server::release_member(const std::string& room_id, const std::string& client_id,
                            bool free_seat) {
  if (auto room = rooms_.find(room_id)) {
    Targets others;
    room->collect_except_id(client_id, others);
    for (auto& t : others) post_to(std::move(t), peer_disconnected_message());
  }
  if (free_seat) bus_.release_seat(room_id, client_id);
  bus_.publish_departure(room_id, client_id);
  log_.info("Client left room", {{"clientId", client_id}, {"roomId", room_id}});
}

void Server::deliver_remote(const std::string& room_id, std::string_view sender_id,
                            const SharedText& data, const RecipientSeqs& seqs, bool from_here) {
  auto room = rooms_.find(room_id);
  if (!room) return;
  const auto start = std::chrono::steady_clock::now();
  Targets targets;
  room->collect_except_id(sender_id, targets);
  std::shared_ptr<const RecipientSeqs> numbers;  // one copy, shared by the numbered recipients
  for (auto& t : targets) {
    if (!t.numbered) {
      if (!from_here) post_to(std::move(t), data);
      continue;
    }
    if (!numbers) numbers = std::make_shared<const RecipientSeqs>(seqs);
    post_bounded(std::move(t), data->size(),
                 [data, numbers](Peer& peer) { peer.deliver_relay(data, *numbers); });
  }
  // Fan-out on this path too: a message from another instance, queued to the members here (our
  // own relays coming back were timed when they were sent).
  if (from_here && !numbers) return;
  metrics().fanout_duration.observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

template <class F>
void Server::post_to_numbered(const std::string& room_id, std::string_view client_id, F f) {
  auto room = rooms_.find(room_id);
  if (!room) return;
  Targets targets;
  room->collect_id(client_id, targets);
  for (auto& t : targets) {
    if (!t.numbered) continue;
    boost::asio::post(loops_[t.loop]->ioc, [peer = std::move(t.peer), f] { run_for(*peer, f); });
  }
}

void Server::deliver_numbered(const std::string& room_id, std::string_view client_id, uint64_t seq,
                              const SharedText& text) {
  post_to_numbered(room_id, client_id, [seq, text](Peer& p) { p.deliver_numbered(seq, text); });
}

void Server::presence_remote(const std::string& room_id, std::string_view client_id,
                             PresenceEvent event) {
  if (event == PresenceEvent::kProbe) {
    probe_room(room_id);
    return;
  }
  if (event == PresenceEvent::kTakeover) {
    // Another instance resumed this member's session: our copy lets go, without a departure.
    post_to_numbered(room_id, client_id, [](Peer& p) { p.taken_over(); });
    return;
  }
  auto room = rooms_.find(room_id);
  if (!room) return;
  Targets targets;
  room->collect_except_id(client_id, targets);
  SharedText note;
  for (auto& t : targets) {
    if (!t.wants_events) continue;
    if (!note) {
      note = std::make_shared<const std::string>(
          event == PresenceEvent::kJoined      ? peer_joined_message(client_id)
          : event == PresenceEvent::kSuspended ? peer_suspended_message(client_id)
                                               : peer_resumed_message(client_id));
    }
    post_to(std::move(t), note);
  }
}

void Server::probe_room(const std::string& room_id) {
  auto room = rooms_.find(room_id);
  if (!room) return;
  Targets members;
  room->collect_others(nullptr, members);
  for (auto& t : members) {
    boost::asio::post(loops_[t.loop]->ioc, [peer = std::move(t.peer)] { peer->probe(); });
  }
}

void Server::sessions_resync(const std::set<std::string>* only_rooms) {
  auto rooms = only_rooms ? std::make_shared<const std::set<std::string>>(*only_rooms) : nullptr;
  for (auto& member : resumables_.live()) {
    boost::asio::post(member->home().ioc, [member, rooms] {
      // The member's room is read on its own loop.
      if (rooms && (!member->room() || !rooms->contains(member->room()->id()))) return;
      member->resync();
    });
  }
}

std::vector<std::pair<std::string, std::string>> Server::local_members() {
  return rooms_.memberships();
}

void Server::stop_all() {
  main_listener_->close();
  if (health_listener_) health_listener_->close();
  for (auto& loop : loops_) loop->ioc.stop();
}

}  // namespace sigsrv
