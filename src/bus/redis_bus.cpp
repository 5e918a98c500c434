// Redis bus: Lua-scripted membership, per-room SUBSCRIBE, PUBLISH relay, shared windows,
// circuit breaker, instance lease, and re-assertion of local state whenever Redis comes back.
#include "bus/redis_bus.hpp"

#include <openssl/evp.h>
#include <algorithm>
#include <boost/asio/post.hpp>
#include <charconv>

#include "bus/redis_scripts.hpp"
#include "signaling/resume.hpp"

namespace sigsrv {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;

namespace {

constexpr std::array<const char*, 15> kScriptBodies = {
    redis_scripts::kJoin,          redis_scripts::kLeave,        redis_scripts::kRejoin,
    redis_scripts::kLimit,         redis_scripts::kLease,        redis_scripts::kSweep,
    redis_scripts::kReap,          redis_scripts::kSessionOpen,  redis_scripts::kRelay,
    redis_scripts::kSessionAppend, redis_scripts::kSessionCount, redis_scripts::kSessionState,
    redis_scripts::kSessionEnd,    redis_scripts::kSessionClaim, redis_scripts::kWindowAdd};
static_assert(kScriptBodies.size() == 15);
// Resumable sessions' keys (see redis_scripts.hpp). Their TTL while live: refreshed by every
// message numbered for the session; a session quiet for longer is answered recovered:false.
constexpr std::chrono::hours kSessionTtl{24};
// How long message hits are counted here before they go to Redis: the overshoot a fleet can see
// is what the other instances relay in this long plus a round trip (README "Shared limits
// across a fleet"); against one INCRBY per key per period instead of a script per message.
constexpr std::chrono::milliseconds kReconcilePeriod{5};
// Keys per reconcile script call: a long batch (many rooms busy at once) is split so that no
// single call holds Redis for long.
constexpr std::size_t kReconcileKeysPerCall = 256;
// Reap scripts in flight at once after a crash: enough to walk 50,000 rooms within a second,
// few enough that relays queued behind them on the command connection barely wait.
constexpr std::size_t kMaxReapsInFlight = 256;

// The scripts' text for a mode: its prelude (see redis_scripts.hpp), then the script.
std::array<std::string, 15> script_bodies(bool cluster) {
  std::array<std::string, 15> out;
  for (std::size_t i = 0; i < kScriptBodies.size(); ++i) {
    out[i] = std::string(cluster ? redis_scripts::kPreludeCluster : redis_scripts::kPreludeSingle) +
             kScriptBodies[i];
  }
  return out;
}

// SHA1 in hex, as EVALSHA names a script.
std::string sha1_hex(std::string_view text) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  EVP_Digest(text.data(), text.size(), digest.data(), &size, EVP_sha1(), nullptr);
  return to_hex(digest.data(), size);
}

// The sweep's period: a sixth of the lease TTL, kept within 250-500 ms (one cheap call per
// instance per period; a crash is noticed within the TTL plus one period).
std::chrono::milliseconds sweep_period(unsigned lease_ttl_ms) {
  return std::chrono::milliseconds(std::clamp(lease_ttl_ms / 6, 250u, 500u));
}

// How long an expired registry entry is kept: every instance has swept it many times by then.
std::string forget_after_ms(unsigned lease_ttl_ms) {
  return std::to_string(std::max<uint64_t>(uint64_t{lease_ttl_ms} * 20, 300000));
}

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A kSessionClaim reply (see redis_scripts.hpp).
SessionClaim parse_claim(const redisReply* r) {
  using Result = SessionClaim::Result;
  SessionClaim c;
  if (is_error(r) || r->type != REDIS_REPLY_ARRAY || r->elements == 0) return c;
  auto item = [r](std::size_t i) -> std::string_view {
    if (i >= r->elements || r->element[i]->type != REDIS_REPLY_STRING) return {};
    return {r->element[i]->str, r->element[i]->len};
  };
  auto number = [&item](std::size_t i) -> uint64_t {
    const std::string_view t = item(i);
    uint64_t v = 0;
    std::from_chars(t.data(), t.data() + t.size(), v);
    return v;
  };
  const std::string_view tag = item(0);
  c.client_id = std::string(item(1));
  if (tag == "left") {
    c.result = Result::kLeft;
  } else if (tag == "unknown") {
    c.result = Result::kUnknown;
  } else if (tag == "gone") {
    c.result = Result::kGone;
  } else if (tag == "not_covered") {
    c.result = Result::kNotCovered;
  } else if (tag == "ok" && r->elements >= 5) {
    c.result = Result::kResumed;
    c.seq = number(2);
    c.received = number(3);
    c.was_suspended = item(4) == "suspended";
    for (std::size_t i = 5; i < r->elements; ++i) {
      c.replay.push_back(std::make_shared<const std::string>(item(i)));
    }
  }
  return c;
}

int64_t steady_ns() {
  return SteadyClock::now().time_since_epoch().count();
}

}  // namespace

RedisBus::RedisBus(const Config& config, const RedisEndpoint& endpoint,
                   std::shared_ptr<boost::asio::ssl::context> tls, Logger& log,
                   std::optional<SentinelSettings> sentinel, std::vector<HostPort> cluster)
    : config_(config),
      log_(log),
      instance_id_(config.instance_id),
      lease_key_(RedisKeys(!cluster.empty()).lease_prefix() + config.instance_id),
      own_relay_marker_(own_relay_marker(config.instance_id)),
      ioc_owner_(std::make_shared<asio::io_context>(1)),
      ioc_(*ioc_owner_),
      command_(ioc_, endpoint, tls, RedisConnection::Mode::kCommand, "command", log,
               {[this] { on_command_up(); },
                [this](const std::string&) { on_down(true); },
                {},
                {},
                {},
                {}}),
      subscriber_(ioc_, endpoint, tls, RedisConnection::Mode::kSubscriber, "subscriber", log,
                  {[this] { on_subscriber_up(); },
                   [this](const std::string&) { on_down(false); },
                   [this](std::string_view c, std::string_view p) { on_message(c, p); },
                   [this](std::string_view c) { on_subscribed(c); },
                   [this](std::string_view c) {
                     if (c == probe_channel_) return;
                     // A later SUBSCRIBE of the same room is in flight: wait for its answer.
                     if (auto it = channels_.find(RedisKeys::room_of_channel(c));
                         it != channels_.end()) {
                       it->second.confirmed = false;
                     }
                   },
                   {}}),
      lease_timer_(ioc_),
      reconcile_timer_(ioc_),
      tick_period_(sweep_period(config.instance_lease_ttl_ms)),
      probe_channel_("signal:probe:" + config.instance_id),
      keys_(!cluster.empty()),
      bodies_(script_bodies(!cluster.empty())),
      publish_(cluster.empty() ? "PUBLISH" : "SPUBLISH") {
  if (!cluster.empty()) {
    cluster_ = std::make_unique<RedisCluster>(
        ioc_, std::move(cluster), endpoint, std::move(tls), log,
        RedisCluster::Hooks{[this] { on_command_up(); }, [this] { on_down(true); },
                            [this] { on_subscriber_up(); }, [this] { on_down(false); },
                            [this](std::string_view c, std::string_view p) { on_message(c, p); },
                            [this](std::string_view c) { on_subscribed(c); },
                            [this](const std::vector<std::string>& c) { on_channels_moved(c); }},
        std::vector<std::string>(bodies_.begin(), bodies_.end()));
    for (std::size_t i = 0; i < bodies_.size(); ++i) shas_[i] = sha1_hex(bodies_[i]);
    return;
  }
  if (!sentinel) return;
  sentinel_ = std::make_unique<SentinelClient>(ioc_, std::move(*sentinel), log);
  // Both connections ask the sentinels before every attempt, and use only a node whose ROLE is
  // master.
  auto locate = [this](const RedisConnection::Located& done) {
    sentinel_->locate([this, done](const SentinelAnswer& a) {
      const std::string& master = sentinel_->settings().master;
      switch (a.kind) {
        case SentinelAnswer::Kind::kAddress:
          done(a.address, {});
          return;
        case SentinelAnswer::Kind::kUnknownMaster:
          done(std::nullopt,
               "the sentinels know no master named '" + master + "' (REDIS_SENTINEL_MASTER)");
          return;
        case SentinelAnswer::Kind::kAuthFailed:
          done(std::nullopt,
               "the sentinels refused the password (REDIS_SENTINEL_PASSWORD): " + a.detail);
          return;
        case SentinelAnswer::Kind::kUnreachable:
          done(std::nullopt, "no sentinel answered (REDIS_SENTINELS): " + a.detail);
          return;
      }
    });
  };
  command_.set_locator(locate, true);
  subscriber_.set_locator(locate, true);
}

// Member destructors (io_context, sockets) are what the check cannot prove silent.
// NOLINTNEXTLINE(bugprone-exception-escape)
RedisBus::~RedisBus() {
  stop(std::chrono::milliseconds(0));
}

void RedisBus::start(BusListener& listener) {
  listener_ = &listener;
  metrics().redis_up.set(0);
  started_ = true;
  // Runs once the server runs its loop 0 (this loop).
  asio::post(ioc_, [this] {
    if (cluster_) {
      cluster_->start();
    } else {
      command_.start();
      subscriber_.start();
    }
    if (sentinel_) {
      sentinel_->watch([this](const HostPort& to) { on_master_switched(to); },
                       [this] { check_master(); });
    }
    tick();
  });
}

void RedisBus::stop(std::chrono::milliseconds flush_budget) {
  if (!started_) return;
  started_ = false;
  ioc_.restart();
  asio::post(ioc_, [this, flush_budget] {
    ready_ = false;
    lease_timer_.cancel();
    // The last hits counted here still count for the fleet's windows.
    reconcile_timer_.cancel();
    reconcile();
    // Our members are gone (the drain closed them); let the lease go with them, and leave the
    // registry, so that no instance takes this clean exit for a crash. Unless sessions were
    // handed over: they wait suspended for a resume elsewhere, and the lease, left to lapse, is
    // what releases (as after a crash) those that never come back.
    if (!keep_lease_) {
      redis({"DEL", lease_key_}, [](const redisReply*) {});
      redis({"ZREM", keys_.registry(), instance_id_}, [](const redisReply*) {});
    }
    auto deadline = SteadyClock::now() + flush_budget;
    auto timer = std::make_shared<asio::steady_timer>(ioc_);
    auto wait = std::make_shared<std::function<void()>>();
    *wait = [this, deadline, timer, wait] {
      const std::size_t pending = cluster_ ? cluster_->pending() : command_.pending();
      if (pending == 0 || !commands_up() || SteadyClock::now() >= deadline) {
        if (cluster_) cluster_->stop();
        command_.stop();
        subscriber_.stop();
        if (sentinel_) sentinel_->stop();
        // Joins still waiting for a SUBSCRIBE answer hold their sessions: answer them now, so
        // that nothing of a session outlives the server that owns it.
        for (auto& [room, ch] : channels_) {
          auto waiters = std::move(ch.waiters);
          for (auto& w : waiters) w(false);
        }
        channels_.clear();
        ioc_.stop();
        *wait = nullptr;  // break the self-reference
        return;
      }
      timer->expires_after(std::chrono::milliseconds(5));
      timer->async_wait([wait](boost::system::error_code) {
        if (*wait) (*wait)();
      });
    };
    (*wait)();
  });
  ioc_.run();  // returns at the ioc_.stop() above
}

bool RedisBus::breaker_open() const {
  return steady_ns() < breaker_open_until_ns_.load(std::memory_order_relaxed);
}

// ---- connection state (bus loop) ----

void RedisBus::on_command_up() {
  scripts_loaded_ = false;
  members_resynced_ = false;
  if (cluster_) {
    // Named by their SHA1, computed here; the cluster loads them on every master as it connects
    // (a master that still lacks one answers NOSCRIPT and gets the body, see eval()).
    scripts_loaded_ = true;
    refresh_lease();
    resync_members();
    return;
  }
  auto loaded = std::make_shared<std::size_t>(0);
  for (std::size_t i = 0; i < bodies_.size(); ++i) {
    const auto started = SteadyClock::now();
    command_.command({"SCRIPT", "LOAD", bodies_[i]},
                     [this, i, loaded, started](const redisReply* r) {
                       const bool ok = !is_error(r) && r->type == REDIS_REPLY_STRING;
                       record(RedisOp::kScriptLoad, ok, started);
                       if (!ok) {
                         // An error reply (an ACL without EVAL, say) leaves the connection up but
                         // useless: drop it, so the reconnect tries again and readiness says why it
                         // is 503.
                         if (r != nullptr) {
                           log_.error("Redis refused SCRIPT LOAD", {{"err", reply_text(r)}});
                           command_.drop("SCRIPT LOAD refused");
                         }
                         return;  // on_command_up runs again when the connection is back
                       }
                       shas_[i] = std::string(reply_text(r));
                       if (++*loaded == bodies_.size()) {
                         scripts_loaded_ = true;
                         refresh_lease();
                         resync_members();
                       }
                     });
  }
}

void RedisBus::resync_members() {
  // Re-add every member connected here (Redis may have restarted empty), and retry the
  // leaves Redis missed while it was away. Ready only once all of it is answered.
  members_epoch_.fetch_add(1);
  auto members = listener_->local_members();
  auto leaves = std::vector<std::pair<std::string, std::string>>(failed_leaves_.begin(),
                                                                 failed_leaves_.end());
  auto outstanding = std::make_shared<std::size_t>(members.size() + leaves.size());
  auto finish_one = [this, outstanding] {
    if (--*outstanding == 0) {
      members_resynced_ = true;
      update_readiness();
    }
  };
  if (*outstanding == 0) {
    members_resynced_ = true;
    update_readiness();
    return;
  }
  for (auto& [room, client] : leaves) {
    eval(kLeaveScript,
         {keys_.room(room), keys_.owners(room), keys_.room_sessions(room), client,
          std::to_string(config_.room_ttl_seconds)},
         3, RedisOp::kLeave, [this, room = room, client = client, finish_one](const redisReply* r) {
           if (!is_error(r)) failed_leaves_.erase({room, client});
           finish_one();
         });
  }
  for (auto& [room, client] : members) {
    eval(kRejoinScript, {keys_.room(room), keys_.owners(room), client, instance_id_}, 2,
         RedisOp::kRejoin, [finish_one](const redisReply*) { finish_one(); });
  }
  if (!members.empty()) {
    log_.info("Re-asserted local room membership in Redis", {{"members", members.size()}});
  }
}

void RedisBus::on_subscriber_up() {
  subscriptions_resynced_ = false;
  resubscribes_outstanding_ = 0;
  for (auto& [room, ch] : channels_) {
    if (ch.refs == 0) continue;
    ch.confirmed = false;
    ch.awaiting = 0;
    ch.resync = true;
    send_subscribe(room, ch);
    ++resubscribes_outstanding_;
  }
  if (resubscribes_outstanding_ == 0) subscriptions_resynced_ = true;
  if (sentinel_) {
    probe_subscribed_ = false;
    probe_sent_.reset();
    subscriber_.send({"SUBSCRIBE", probe_channel_});
  }
  update_readiness();
}

void RedisBus::on_down(bool command_side) {
  // A probe in flight proves nothing either way once a connection it went through is gone.
  probe_sent_.reset();
  if (command_side) {
    scripts_loaded_ = false;
    members_resynced_ = false;
  } else {
    probe_subscribed_ = false;
    subscriptions_resynced_ = false;
    resubscribes_outstanding_ = 0;
    // Joins waiting for a SUBSCRIBE answer fail (1011); their references go with them.
    for (auto it = channels_.begin(); it != channels_.end();) {
      Channel& ch = it->second;
      ch.confirmed = false;
      ch.resync = false;
      ch.awaiting = 0;
      auto waiters = std::move(ch.waiters);
      ch.waiters.clear();
      ch.refs -= static_cast<unsigned>(std::min<std::size_t>(ch.refs, waiters.size()));
      for (auto& w : waiters) w(false);
      if (ch.refs > 0) {
        ++it;
        continue;
      }
      // A cluster keeps the subscriptions on the masters still up: drop this room's there.
      if (cluster_) listen(it->first, false);
      it = channels_.erase(it);
    }
  }
  update_readiness();
}

void RedisBus::update_readiness() {
  const bool connected = commands_up() && subscribers_up();
  metrics().redis_up.set(connected ? 1 : 0);
  const bool probed = !sentinel_ || (probe_subscribed_ && !probe_failing_);
  const bool ready =
      connected && scripts_loaded_ && members_resynced_ && subscriptions_resynced_ && probed;
  if (ready_.exchange(ready) != ready) {
    if (ready) {
      log_.info("Redis bus ready", {{"channels", channels_.size()}});
      if (gap_since_) end_gap();
      ever_ready_ = true;
    } else {
      log_.warn("Redis bus not ready");
      if (ever_ready_ && !gap_since_) gap_since_ = SteadyClock::now();
    }
  }
}

void RedisBus::on_master_switched(const HostPort& to) {
  metrics().redis_master_switches.inc();
  log_.warn("Sentinel failover: following the new master",
            {{"master", sentinel_->settings().master}, {"address", to_string(to)}});
  // Both connections go to the new master (a connection already there stays); the reconnect
  // re-asserts membership and resubscribes, and resumable sessions resync across the gap.
  for (RedisConnection* c : {&command_, &subscriber_}) {
    const RedisEndpoint& ep = c->endpoint();
    if (c->up() && ep.host == to.host && ep.port == to.port) continue;
    c->redirect("master switched to " + to_string(to));
  }
}

void RedisBus::check_master() {
  // The watch was down (or just started): a failover may have gone unheard.
  sentinel_->locate([this](const SentinelAnswer& a) {
    if (a.kind != SentinelAnswer::Kind::kAddress) return;
    for (RedisConnection* c : {&command_, &subscriber_}) {
      const RedisEndpoint& ep = c->endpoint();
      if (c->up() && (ep.host != a.address.host || ep.port != a.address.port)) {
        c->redirect("the sentinels name another master: " + to_string(a.address));
      }
    }
  });
}

void RedisBus::probe_delivery() {
  if (!sentinel_ || !command_.up() || !subscriber_.up() || !probe_subscribed_) return;
  const auto now = SteadyClock::now();
  if (probe_sent_) {
    if (now - *probe_sent_ >= kProbeDeadline) probe_failed("the probe did not come back in time");
    return;
  }
  if (now - last_delivery_proof_ < kProbeIdle) return;
  probe_token_ = std::to_string(++probes_sent_);
  probe_sent_ = now;
  command_.command({"PUBLISH", probe_channel_, probe_token_},
                   [this, token = probe_token_](const redisReply* r) {
                     if (!probe_sent_ || token != probe_token_) return;
                     if (r == nullptr) {
                       probe_sent_.reset();  // the command connection went: nothing proven
                     } else if (r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
                       // Our subscriber is not on the node we publish to: no need to wait.
                       probe_failed("no subscriber on the master got the probe");
                     }
                   });
}

void RedisBus::probe_failed(const std::string& why) {
  probe_sent_.reset();
  metrics().redis_delivery_probe_failures.inc();
  const RedisEndpoint& sub = subscriber_.endpoint();
  const RedisEndpoint& cmd = command_.endpoint();
  log_.warn("Redis delivery probe failed: reconnecting the subscriber",
            {{"why", why},
             {"subscriber", to_string(HostPort{sub.host, sub.port})},
             {"command", to_string(HostPort{cmd.host, cmd.port})}});
  probe_failing_ = true;
  subscriber_.redirect("delivery probe failed");
  // The command connection may be the one on the wrong node (a switch went unheard while the old
  // master kept answering): ask the sentinels, and move it too if they name another master.
  check_master();
  update_readiness();
}

void RedisBus::end_gap() {
  // While either connection was down, what other instances published did not reach this one,
  // and Redis may have restarted empty. Plain members cannot get it back: the gap is counted
  // and logged. Resumable sessions are asked to resume: the replay from the session log fills
  // the gap, or says recovered:false if Redis lost it.
  const auto gap = SteadyClock::now() - *gap_since_;
  gap_since_.reset();
  Metrics& m = metrics();
  m.bus_gaps.inc();
  m.bus_gap_ms.inc(
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(gap).count()));
  log_.warn("Redis bus was unavailable: messages published meanwhile did not reach members here",
            {{"gapMs", std::chrono::duration_cast<std::chrono::milliseconds>(gap).count()},
             {"rooms", channels_.size()}});
  listener_->sessions_resync(nullptr);
}

// ---- commands (bus loop) ----

void RedisBus::record(RedisOp op, bool ok, SteadyClock::time_point started) {
  Metrics& m = metrics();
  if (ok) {
    m.redis_op(op).observe(std::chrono::duration<double>(SteadyClock::now() - started).count());
    consecutive_failures_ = 0;
    if (breaker_open_until_ns_.exchange(0) != 0) {
      m.circuit_breaker_open.set(0);
      if (auto n = breaker_log_due()) log_.info("Circuit breaker closed", {{"changes", *n}});
    }
    return;
  }
  m.redis_error(op).inc();
  if (++consecutive_failures_ >= config_.cb_error_threshold && !breaker_open()) {
    breaker_open_until_ns_ = steady_ns() + int64_t{config_.cb_open_ms} * 1000000;
    m.circuit_breaker_open.set(1);
    if (auto n = breaker_log_due()) {
      log_.warn(
          "Circuit breaker opened: refusing new connections",
          {{"failures", consecutive_failures_}, {"openMs", config_.cb_open_ms}, {"changes", *n}});
    }
  }
}

std::optional<uint64_t> RedisBus::breaker_log_due() {
  // A partial outage (one cluster master down, the others answering) opens and closes the breaker
  // in turn, every few commands: the state and its gauge follow each change, the log at most one
  // line per CB_OPEN_MS, which says how many changes it stands for.
  ++breaker_changes_;
  const auto now = SteadyClock::now();
  if (breaker_logged_at_ &&
      now - *breaker_logged_at_ < std::chrono::milliseconds(config_.cb_open_ms)) {
    return std::nullopt;
  }
  breaker_logged_at_ = now;
  return std::exchange(breaker_changes_, 0);
}

void RedisBus::eval(Script script, std::vector<std::string> keys_and_args, std::size_t nkeys,
                    RedisOp op, RedisConnection::Callback done) {
  const auto started = SteadyClock::now();
  if (!scripts_loaded_) {
    record(op, false, started);
    done(nullptr);
    return;
  }
  auto args = std::make_shared<std::vector<std::string>>(std::move(keys_and_args));
  // EVALSHA normally; EVAL with the body when the server lost its scripts (restart, SCRIPT FLUSH).
  auto send = [this, script, args, nkeys](bool by_body, RedisConnection::Callback cb) {
    const std::string n = std::to_string(nkeys);
    std::vector<std::string_view> argv;
    argv.reserve(args->size() + 3);
    argv.emplace_back(by_body ? "EVAL" : "EVALSHA");
    argv.push_back(by_body ? std::string_view(bodies_[script]) : std::string_view(shas_[script]));
    argv.push_back(n);
    for (const auto& a : *args) argv.push_back(a);
    redis(argv, std::move(cb));
  };
  const uint64_t ticket = next_eval_++;
  send(false, [this, send, op, started, ticket,
               done = std::move(done)](const redisReply* r) mutable {
    if (r && r->type == REDIS_REPLY_ERROR && reply_text(r).rfind("NOSCRIPT", 0) == 0) {
      // The retry goes to the back of the pipeline; until it is answered, the answers of every
      // later eval are held, so callers still get them in the order they asked.
      evals_retrying_.insert(ticket);
      send(true, [this, op, started, ticket, done = std::move(done)](const redisReply* r2) mutable {
        record(op, !is_error(r2), started);
        evals_retrying_.erase(ticket);
        complete_eval(ticket, r2, done);
        release_held_evals();
      });
      return;
    }
    record(op, !is_error(r), started);
    complete_eval(ticket, r, done);
  });
}

void RedisBus::complete_eval(uint64_t ticket, const redisReply* r,
                             RedisConnection::Callback& done) {
  if (evals_retrying_.empty() || ticket < *evals_retrying_.begin()) {
    done(r);
    return;
  }
  // An earlier eval is being retried: this answer waits for it (a copy: `r` is freed on return).
  evals_held_.emplace(ticket, HeldEval{std::move(done), r ? copy_reply(*r) : nullptr});
}

void RedisBus::release_held_evals() {
  while (!evals_held_.empty() &&
         (evals_retrying_.empty() || evals_held_.begin()->first < *evals_retrying_.begin())) {
    auto held = std::move(evals_held_.begin()->second);
    evals_held_.erase(evals_held_.begin());
    held.done(held.reply.get());
  }
}

void RedisBus::subscribe(const std::string& room_id, std::function<void(bool)> done) {
  Channel& ch = channels_[room_id];
  if (ch.refs++ == 0) {
    ch.key = keys_.room(room_id);
    ch.slot = key_slot(ch.key);
  }
  if (ch.confirmed) {
    done(true);
    return;
  }
  if (!subscribers_up()) {
    if (--ch.refs == 0) channels_.erase(room_id);
    done(false);
    return;
  }
  ch.waiters.push_back(std::move(done));
  if (ch.awaiting == 0) send_subscribe(room_id, ch);
}

void RedisBus::send_subscribe(const std::string& room_id, Channel& ch) {
  listen(room_id, true);
  ch.awaiting += 2;
}

void RedisBus::release(const std::string& room_id) {
  auto it = channels_.find(room_id);
  if (it == channels_.end()) return;
  if (--it->second.refs > 0) return;
  const bool was_resyncing = it->second.resync;
  channels_.erase(it);
  if (was_resyncing) resync_done_one();
  listen(room_id, false);
}

void RedisBus::on_subscribed(std::string_view channel) {
  if (channel == probe_channel_) {
    probe_subscribed_ = true;
    last_delivery_proof_ = {};  // probe at the next tick: readiness waits for it after a failure
    update_readiness();
    return;
  }
  auto it = channels_.find(RedisKeys::room_of_channel(channel));
  if (it == channels_.end()) return;  // released meanwhile; its UNSUBSCRIBE follows
  Channel& ch = it->second;
  if (ch.awaiting == 0 || --ch.awaiting > 0) return;  // the room's other channel is still to come
  ch.confirmed = true;
  const bool was_resyncing = ch.resync;
  ch.resync = false;
  auto waiters = std::move(ch.waiters);
  ch.waiters.clear();
  for (auto& w : waiters) w(true);
  if (was_resyncing) resync_done_one();
}

void RedisBus::resync_done_one() {
  if (resubscribes_outstanding_ > 0 && --resubscribes_outstanding_ == 0) {
    subscriptions_resynced_ = true;
    update_readiness();
  }
}

void RedisBus::on_message(std::string_view channel, std::string_view payload) {
  if (channel.rfind("presence:", 0) == 0) {
    auto p = parse_presence(payload);
    if (!p) return;
    const std::string room = RedisKeys::room_of_channel(channel);
    if (p->resumable || (p->event != PresenceEvent::kJoined && p->event != PresenceEvent::kProbe)) {
      if (auto it = channels_.find(room); it != channels_.end()) it->second.resumable = true;
    }
    // Numbered notices come from whichever instance owns the session, this one included.
    if (p->event == PresenceEvent::kNumbered) {
      auto text = std::make_shared<const std::string>(std::move(p->data));
      if (auto it = channels_.find(room); it != channels_.end()) {
        note_numbered(it->second, p->client_id, p->seq, text, true);
      }
      listener_->deliver_numbered(room, p->client_id, p->seq, text);
      return;
    }
    if (p->origin_server_id != instance_id_) {
      listener_->presence_remote(room, p->client_id, p->event);
    }
    return;
  }
  if (channel.rfind("room:", 0) != 0) {
    if (channel == probe_channel_ && probe_sent_ && payload == probe_token_) {
      probe_sent_.reset();
      last_delivery_proof_ = SteadyClock::now();
      if (probe_failing_) {
        probe_failing_ = false;
        log_.info("Redis delivery probe came back: the subscriber receives from the master");
        update_readiness();
      }
    }
    return;
  }
  // Our own relays were delivered locally already (the common case: skip them unparsed). One
  // coming back also proves that the subscriber hears the node the command connection is on.
  if (is_own_relay(payload, own_relay_marker_)) {
    if (sentinel_) last_delivery_proof_ = SteadyClock::now();
    return;
  }
  auto env = parse_bus_envelope(payload);
  if (!env) {
    log_.warn("Ignoring malformed bus message", {{"channel", channel}});
    return;
  }
  const std::string room = RedisKeys::room_of_channel(channel);
  auto data = std::make_shared<const std::string>(std::move(env->data));
  if (!env->seqs.empty()) {
    if (auto it = channels_.find(room); it != channels_.end()) {
      it->second.resumable = true;
      for (const auto& [client, seq] : env->seqs)
        note_numbered(it->second, client, seq, data, false);
    }
  }
  // Our own relays were delivered locally already, but for the resumable members they were
  // numbered for; so were our departure notices.
  const bool from_here =
      env->origin_server_id == instance_id_ || env->source_instance == instance_id_;
  if (from_here) {
    if (!env->seqs.empty()) {
      listener_->deliver_remote(room, env->sender_id, data, env->seqs, true);
    }
    return;
  }
  Metrics& m = metrics();
  if (env->sent_at_us) {
    const int64_t lag = now_us() - *env->sent_at_us;
    if (lag >= 0) m.cross_instance_relay.observe(static_cast<double>(lag) / 1e6);
  }
  m.bus_messages_received.inc();
  listener_->deliver_remote(room, env->sender_id, data, env->seqs, false);
}

void RedisBus::note_numbered(Channel& ch, const std::string& client_id, uint64_t seq,
                             const SharedText& data, bool has_seq) {
  if (ch.claims == 0 || ch.numbered_during_claims.size() >= config_.resume_buffer_messages) return;
  ch.numbered_during_claims.push_back(Channel::Numbered{client_id, seq, data, has_seq});
}

void RedisBus::complete_claim(Channel& ch, SessionClaim& c) {
  if (c.result == SessionClaim::Result::kResumed) {
    // In the order read, which is the order numbered; a hole ends it (the next message after it
    // is a gap for the member, and its resync replays from Redis).
    for (const auto& n : ch.numbered_during_claims) {
      if (n.client_id != c.client_id || n.seq != c.seq + 1) continue;
      c.replay.push_back(n.has_seq ? n.data
                                   : std::make_shared<const std::string>(with_seq(*n.data, n.seq)));
      c.seq = n.seq;
    }
  }
  if (ch.claims > 0 && --ch.claims == 0) ch.numbered_during_claims.clear();
}

void RedisBus::tick() {
  // Every tick_period_: keeps the breaker gauge true once its open period lapses, refreshes the
  // lease every third of its TTL (well inside it), and sweeps the registry for crashed instances.
  metrics().circuit_breaker_open.set(breaker_open() ? 1 : 0);
  probe_delivery();
  if (SteadyClock::now() - last_lease_refresh_ >=
      std::chrono::milliseconds(config_.instance_lease_ttl_ms / 3)) {
    refresh_lease();
  }
  sweep();
  lease_timer_.expires_after(tick_period_);
  lease_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) tick();
  });
}

void RedisBus::refresh_lease() {
  if (!commands_up() || !scripts_loaded_) return;  // on_command_up sets it once they are loaded
  last_lease_refresh_ = SteadyClock::now();
  eval(kLeaseScript,
       {lease_key_, keys_.registry(), instance_id_, std::to_string(config_.instance_lease_ttl_ms)},
       2, RedisOp::kLease, [this](const redisReply* r) {
         if (is_error(r) || r->type != REDIS_REPLY_INTEGER) return;
         if (r->integer == 1 && lease_held_) {
           // We were late refreshing (a stall, or Redis unreachable for longer than the TTL) and
           // other instances may have released our members as crashed: put them back (after a
           // reconnect, on_command_up's resync, queued behind this refresh, is doing it).
           log_.warn("Instance lease had expired; re-asserting local room membership",
                     {{"leaseTtlMs", config_.instance_lease_ttl_ms}});
           if (members_resynced_) resync_members();
         }
         lease_held_ = true;
       });
}

void RedisBus::sweep() {
  if (sweep_in_flight_ || !commands_up() || !scripts_loaded_) return;
  sweep_in_flight_ = true;
  eval(kSweepScript, {keys_.registry(), forget_after_ms(config_.instance_lease_ttl_ms)}, 1,
       RedisOp::kLease, [this](const redisReply* r) {
         sweep_in_flight_ = false;
         if (is_error(r) || r->type != REDIS_REPLY_ARRAY) return;
         std::set<std::string> expired;
         std::vector<std::string> fresh;
         for (std::size_t i = 0; i < r->elements; ++i) {
           std::string id(reply_text(r->element[i]));
           if (id == instance_id_) continue;  // late ourselves: refresh_lease deals with it
           if (!dead_seen_.contains(id)) fresh.push_back(id);
           expired.insert(std::move(id));
         }
         dead_seen_ = std::move(expired);
         if (!fresh.empty()) reap(fresh);
       });
}

// One pass over this instance's rooms after new deaths were seen.
struct RedisBus::ReapJob {
  std::vector<std::string> dead;   // the instances whose expiry started the pass
  std::vector<std::string> rooms;  // this instance's rooms when it started
  std::size_t next = 0;
  std::size_t in_flight = 0;
  bool pumping = false;
  bool failed = false;
  bool finished = false;
  std::unordered_map<std::string, std::size_t> released;  // by owner instance
};

void RedisBus::reap(const std::vector<std::string>& dead) {
  auto job = std::make_shared<ReapJob>();
  job->dead = dead;
  std::set<std::string> rooms;
  for (auto& [room, client] : listener_->local_members()) rooms.insert(room);
  job->rooms.assign(rooms.begin(), rooms.end());
  pump_reaps(job);
}

void RedisBus::pump_reaps(const std::shared_ptr<ReapJob>& job) {
  // A reply that comes at once (connection down) lands inside the loop below: the loop goes on.
  if (job->pumping) return;
  job->pumping = true;
  while (!job->failed && job->in_flight < kMaxReapsInFlight && job->next < job->rooms.size()) {
    const std::string& room = job->rooms[job->next++];
    ++job->in_flight;
    // Recorded as leaves: each release is one (RedisOp has no series of its own for it).
    std::vector<std::string> args{keys_.room(room),
                                  keys_.owners(room),
                                  keys_.room_sessions(room),
                                  lease_check_prefix(),
                                  std::to_string(config_.room_ttl_seconds),
                                  instance_id_,
                                  std::to_string(now_us())};
    append_dead(args);
    eval(kReapScript, std::move(args), 3, RedisOp::kLeave, [this, job, room](const redisReply* r) {
      --job->in_flight;
      if (is_error(r) || r->type != REDIS_REPLY_ARRAY) {
        job->failed = true;  // the rest waits for the retry (see finish_reaps)
      } else {
        announce_released(room, r, 0, &job->released);
      }
      pump_reaps(job);
    });
  }
  job->pumping = false;
  if (job->in_flight == 0 && (job->failed || job->next == job->rooms.size()) && !job->finished) {
    job->finished = true;
    finish_reaps(*job);
  }
}

void RedisBus::finish_reaps(const ReapJob& job) {
  // With no rooms here (an instance just started, say) there was nothing to do or to say.
  if (!job.rooms.empty()) {
    for (const std::string& id : job.dead) {
      const auto it = job.released.find(id);
      log_.info("Instance lease expired: released its members from this instance's rooms",
                {{"deadInstance", id},
                 {"released", it == job.released.end() ? 0 : it->second},
                 {"rooms", job.rooms.size()}});
    }
  }
  // Owners that were not in the registry (forgotten long ago, or from before it existed).
  for (const auto& [owner, n] : job.released) {
    if (std::find(job.dead.begin(), job.dead.end(), owner) != job.dead.end()) continue;
    log_.info("Released members of an instance whose lease is gone",
              {{"deadInstance", owner}, {"released", n}});
  }
  if (job.failed) {
    // Forget them, so that the next sweep, which still lists them, runs the pass again (it is
    // idempotent: members already released are not in the rooms any more).
    for (const std::string& id : job.dead) dead_seen_.erase(id);
    log_.warn("Releasing members of crashed instances failed in some rooms; retrying",
              {{"deadInstances", job.dead.size()}});
  }
}

std::size_t RedisBus::announce_released(const std::string& room_id, const redisReply* released,
                                        std::size_t first,
                                        std::unordered_map<std::string, std::size_t>* by_owner) {
  std::size_t n = 0;
  for (std::size_t i = first; i + 1 < released->elements; i += 2) {
    const std::string_view member = reply_text(released->element[i]);
    // The script published the departure for the other instances (and Node ones); ours skip it
    // (sourceInstance), so our own members hear it here.
    listener_->deliver_remote(room_id, member, peer_disconnected_message(), {}, false);
    if (by_owner) ++(*by_owner)[std::string(reply_text(released->element[i + 1]))];
    ++n;
  }
  metrics().crashed_members_released.inc(n);
  return n;
}

// ---- Bus interface (any thread) ----

void RedisBus::join(const std::string& room_id, const std::string& client_id, unsigned capacity,
                    JoinCallback done) {
  asio::post(ioc_, [this, room_id, client_id, capacity, done = std::move(done)]() mutable {
    // Listen on the room before joining it, so nothing published after the join is missed.
    subscribe(
        room_id, [this, room_id, client_id, capacity, done = std::move(done)](bool ok) mutable {
          if (!ok) {
            record(RedisOp::kSubscribe, false, SteadyClock::now());
            done(JoinResult{JoinResult::Status::kError, 0});
            return;
          }
          // Whether the room already has resumable sessions (joined before we listened):
          // asked in the same pipeline, so the join waits for nothing more.
          redis({"EXISTS", keys_.room_sessions(room_id)}, [this, room_id](const redisReply* r) {
            if (r && r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
              auto it = channels_.find(room_id);
              if (it != channels_.end()) it->second.resumable = true;
            }
          });
          std::vector<std::string> args{
              keys_.room(room_id),      keys_.owners(room_id), client_id,
              std::to_string(capacity), instance_id_,          lease_check_prefix(),
              std::to_string(now_us())};
          append_dead(args);
          eval(kJoinScript, std::move(args), 2, RedisOp::kJoin,
               [this, room_id, client_id, done = std::move(done)](const redisReply* r) {
                 if (is_error(r) || r->type != REDIS_REPLY_ARRAY || r->elements == 0 ||
                     r->element[0]->type != REDIS_REPLY_INTEGER) {
                   // No reply at all: the script may have run before the connection dropped.
                   // The leave is idempotent, so queue one to be sure the refused client
                   // holds no seat.
                   if (r == nullptr) remember_failed_leave(room_id, client_id);
                   release(room_id);
                   done(JoinResult{JoinResult::Status::kError, 0});
                   return;
                 }
                 // Members of crashed instances the join dropped to make room: our members
                 // hear of them before this client is attached to the room, so it never does.
                 if (r->elements > 1) {
                   const std::size_t n = announce_released(room_id, r, 1, nullptr);
                   log_.info("Join released members of instances whose lease is gone",
                             {{"roomId", room_id}, {"released", n}});
                 }
                 const long long size = r->element[0]->integer;
                 if (size < 0) {
                   release(room_id);
                   done(JoinResult{JoinResult::Status::kFull, 0});
                   return;
                 }
                 done(JoinResult{JoinResult::Status::kJoined, static_cast<std::size_t>(size),
                                 members_epoch_.load()});
               });
        });
  });
}

void RedisBus::leave(const std::string& room_id, const std::string& client_id) {
  asio::post(ioc_, [this, room_id, client_id] {
    send_leave(room_id, client_id);
    release(room_id);
  });
}

void RedisBus::release_seat(const std::string& room_id, const std::string& client_id) {
  asio::post(ioc_, [this, room_id, client_id] { send_leave(room_id, client_id); });
}

void RedisBus::send_leave(const std::string& room_id, const std::string& client_id) {
  eval(kLeaveScript,
       {keys_.room(room_id), keys_.owners(room_id), keys_.room_sessions(room_id), client_id,
        std::to_string(config_.room_ttl_seconds)},
       3, RedisOp::kLeave, [this, room_id, client_id](const redisReply* r) {
         if (is_error(r)) remember_failed_leave(room_id, client_id);
       });
}

void RedisBus::remember_failed_leave(const std::string& room_id, const std::string& client_id) {
  if (failed_leaves_.size() < kMaxFailedLeaves) {
    failed_leaves_.insert({room_id, client_id});
    return;
  }
  metrics().redis_leaves_abandoned.inc();
  if (metrics().redis_leaves_abandoned.value() == 1) {
    log_.warn("Too many leaves waiting for Redis; further ones are not retried",
              {{"max", kMaxFailedLeaves}});
  }
}

void RedisBus::publish_on(std::string channel, std::string body) {
  asio::post(ioc_, [this, channel = std::move(channel), body = std::move(body)] {
    const auto started = SteadyClock::now();
    redis({publish_, channel, body}, [this, started](const redisReply* r) {
      record(RedisOp::kPublish, !is_error(r), started);
    });
  });
}

void RedisBus::publish(const std::string& room_id, const std::string& sender_id,
                       const std::string& sender_session, const SharedText& data,
                       bool count_forwarded) {
  // Serialized on the sender's loop; the bus loop only queues the bytes.
  std::string envelope = relay_envelope_marked(sender_id, *data, own_relay_marker_, now_us());
  if (on_bus_loop()) {
    publish_here(room_id, sender_session, *data, count_forwarded, std::move(envelope));
    return;
  }
  asio::post(ioc_, [this, room_id, sender_session, data, count_forwarded,
                    envelope = std::move(envelope)]() mutable {
    publish_here(room_id, sender_session, *data, count_forwarded, std::move(envelope));
  });
}

void RedisBus::publish_here(const std::string& room_id, const std::string& sender_session,
                            const std::string& data, bool count_forwarded, std::string envelope) {
  const auto started = SteadyClock::now();
  auto it = channels_.find(room_id);
  if (sender_session.empty() && (it == channels_.end() || !it->second.resumable)) {
    // `this` and one word (the start time, count_forwarded in its low bit): std::function keeps
    // a callback that small inline instead of allocating one per message.
    const auto tag = static_cast<uint64_t>(started.time_since_epoch().count()) << 1 |
                     static_cast<uint64_t>(count_forwarded);
    auto done = [this, tag](const redisReply* r) {
      const SteadyClock::time_point at{SteadyClock::duration(static_cast<int64_t>(tag >> 1))};
      record(RedisOp::kPublish, !is_error(r), at);
      if ((tag & 1) != 0 && !is_error(r)) metrics().messages_forwarded.inc();
    };
    // A sender is a member, so its room is listened to: the channel's name and slot are kept.
    if (it != channels_.end()) {
      redis(it->second, {publish_, it->second.key, envelope}, std::move(done));
    } else {
      redis({publish_, keys_.room(room_id), envelope}, std::move(done));
    }
    return;
  }
  eval(kRelayScript,
       {keys_.room_sessions(room_id), keys_.room(room_id),
        sender_session.empty() ? keys_.room_sessions(room_id)
                               : keys_.session(room_id, sender_session),
        std::move(envelope), data,
        sender_session.empty() ? std::string() : keys_.stored_sid(room_id, sender_session),
        instance_id_, std::to_string(config_.resume_buffer_messages),
        std::to_string(config_.resume_buffer_bytes),
        std::to_string(std::chrono::milliseconds(kSessionTtl).count())},
       3, RedisOp::kPublish,
       [this, room_id, count_forwarded,
        resumable_sender = !sender_session.empty()](const redisReply* r) {
         if (r && r->type == REDIS_REPLY_INTEGER && r->integer < 0) {
           // Its session was resumed elsewhere: the client re-sends it there.
           log_.debug("Relay from a session resumed elsewhere not sent", {{"roomId", room_id}});
           return;
         }
         if (r && r->type == REDIS_REPLY_ERROR && resumable_sender) {
           // Refused with the connection up (a cluster slot split mid-migration past its
           // retries, say): neither relayed nor counted as received. The room's resumable
           // sessions here resume, and the sender's client re-sends from `received`. (A lost
           // connection is a gap, which resyncs every session once Redis is back.)
           // Logged at most once a second: while it lasts, every relay of the room is refused.
           const auto now = SteadyClock::now();
           ++relays_refused_;
           if (!refused_logged_at_ || now - *refused_logged_at_ >= std::chrono::seconds(1)) {
             log_.warn("Relay refused by Redis; resyncing the room's resumable sessions",
                       {{"roomId", room_id},
                        {"err", reply_text(r)},
                        {"refused", std::exchange(relays_refused_, 0)}});
             refused_logged_at_ = now;
           }
           const std::set<std::string> rooms{room_id};
           listener_->sessions_resync(&rooms);
           return;
         }
         if (count_forwarded && !is_error(r)) metrics().messages_forwarded.inc();
       });
}

// ---- resumable sessions (bus loop) ----

void RedisBus::session_open(const SessionRef& s, std::function<void(bool ok)> done) {
  asio::post(ioc_, [this, s, done = std::move(done)] {
    if (auto it = channels_.find(s.room_id); it != channels_.end()) it->second.resumable = true;
    eval(kSessionOpenScript,
         {keys_.session(s.room_id, s.session_id), keys_.room_sessions(s.room_id), s.room_id,
          s.client_id, instance_id_, std::to_string(std::chrono::milliseconds(kSessionTtl).count()),
          keys_.stored_sid(s.room_id, s.session_id)},
         2, RedisOp::kSession, [done](const redisReply* r) { done(!is_error(r)); });
  });
}

void RedisBus::session_append(const SessionRef& s, const SharedText& text) {
  asio::post(ioc_, [this, s, text] {
    eval(kSessionAppendScript,
         {keys_.session(s.room_id, s.session_id), keys_.presence(s.room_id), *text, instance_id_,
          std::to_string(config_.resume_buffer_messages),
          std::to_string(config_.resume_buffer_bytes),
          std::to_string(std::chrono::milliseconds(kSessionTtl).count()),
          keys_.stored_sid(s.room_id, s.session_id), s.client_id},
         2, RedisOp::kSession, [](const redisReply*) {});
  });
}

void RedisBus::session_count(const SessionRef& s) {
  // Run the way publish() runs (now on the bus loop, else posted): a sender's counted and
  // relayed messages reach Redis in the order it sent them.
  auto count = [this, key = keys_.session(s.room_id, s.session_id)] {
    eval(kSessionCountScript, {key, instance_id_}, 1, RedisOp::kSession, [](const redisReply*) {});
  };
  if (on_bus_loop()) {
    count();
  } else {
    asio::post(ioc_, std::move(count));
  }
}

void RedisBus::session_suspended(const SessionRef& s) {
  // Kept a little past the window: the owner's timer ends the session, or, should the owner
  // die, the crash reaper releases the member and the keys expire on their own.
  const auto ttl = std::chrono::milliseconds(config_.resume_window_ms) + std::chrono::seconds(10);
  asio::post(ioc_, [this, s, ttl] {
    eval(kSessionStateScript,
         {keys_.session(s.room_id, s.session_id), keys_.session_log(s.room_id, s.session_id),
          instance_id_, "suspended", std::to_string(ttl.count())},
         2, RedisOp::kSession, [](const redisReply*) {});
  });
}

void RedisBus::session_end(const SessionRef& s, bool tombstone) {
  asio::post(ioc_, [this, s, tombstone] {
    eval(kSessionEndScript,
         {keys_.session(s.room_id, s.session_id), keys_.session_log(s.room_id, s.session_id),
          keys_.room_sessions(s.room_id), keys_.session_left(s.room_id, s.session_id), instance_id_,
          keys_.stored_sid(s.room_id, s.session_id),
          tombstone ? std::to_string(config_.resume_window_ms) : "0", "0"},
         4, RedisOp::kSession, [](const redisReply*) {});
  });
}

void RedisBus::session_claim(const std::string& room_id, const std::string& session_id,
                             uint64_t last_seq, std::function<void(SessionClaim)> done) {
  asio::post(ioc_, [this, room_id, session_id, last_seq, done = std::move(done)]() mutable {
    // Listen first: whatever is numbered for the session after the claim arrives here.
    subscribe(
        room_id, [this, room_id, session_id, last_seq, done = std::move(done)](bool ok) mutable {
          if (!ok) {
            record(RedisOp::kSubscribe, false, SteadyClock::now());
            done(SessionClaim{});
            return;
          }
          Channel& ch = channels_[room_id];
          ch.resumable = true;
          ++ch.claims;
          eval(kSessionClaimScript,
               {keys_.session(room_id, session_id), keys_.session_log(room_id, session_id),
                keys_.room(room_id), keys_.owners(room_id), keys_.session_left(room_id, session_id),
                keys_.room_sessions(room_id), room_id, instance_id_, std::to_string(last_seq),
                std::to_string(std::chrono::milliseconds(kSessionTtl).count()),
                keys_.stored_sid(room_id, session_id)},
               6, RedisOp::kSession, [this, room_id, done = std::move(done)](const redisReply* r) {
                 if (r != nullptr && r->type == REDIS_REPLY_ERROR) {
                   log_.warn("Session claim refused by Redis; the client joins afresh",
                             {{"roomId", room_id}, {"err", reply_text(r)}});
                 }
                 SessionClaim c = parse_claim(r);
                 // Subscribed (held by this claim): the room's channel is still here.
                 if (auto it = channels_.find(room_id); it != channels_.end()) {
                   complete_claim(it->second, c);
                 }
                 if (c.result != SessionClaim::Result::kResumed) release(room_id);
                 done(std::move(c));
               });
        });
  });
}

void RedisBus::joined_locally(const std::string& room_id, const std::string& client_id,
                              uint64_t join_epoch) {
  if (members_epoch_.load() == join_epoch) return;  // no re-assertion missed it
  // Ahead of any leave of this member: both are posted from its session's loop, in order.
  asio::post(ioc_, [this, room_id, client_id] {
    eval(kRejoinScript, {keys_.room(room_id), keys_.owners(room_id), client_id, instance_id_}, 2,
         RedisOp::kRejoin, [](const redisReply*) {});
  });
}

void RedisBus::release_room(const std::string& room_id) {
  asio::post(ioc_, [this, room_id] { release(room_id); });
}

void RedisBus::publish_presence(const std::string& room_id, const std::string& client_id,
                                PresenceEvent event, bool resumable) {
  publish_on(keys_.presence(room_id), presence_message(client_id, instance_id_, event, resumable));
}

void RedisBus::publish_departure(const std::string& room_id, const std::string& client_id) {
  publish_on(keys_.room(room_id), departure_envelope(client_id, instance_id_, now_us()));
}

void RedisBus::on_channels_moved(const std::vector<std::string>& channels) {
  // Published on the slot's new master before this instance listened there: lost for plain
  // members (logged); resumable sessions of those rooms resume, and their replay fills the gap.
  std::set<std::string> rooms;
  for (const auto& c : channels) rooms.insert(RedisKeys::room_of_channel(c));
  log_.warn(
      "Redis Cluster slot moved: messages published meanwhile may not have reached members "
      "here",
      {{"rooms", rooms.size()}});
  listener_->sessions_resync(&rooms);
}

void RedisBus::redis(std::span<const std::string_view> args, RedisConnection::Callback done) {
  redis(args, cluster_ ? key_slot(RedisCluster::routing_key(args)) : uint16_t{0}, std::move(done));
}

void RedisBus::redis(std::span<const std::string_view> args, uint16_t slot,
                     RedisConnection::Callback done) {
  if (cluster_) {
    cluster_->command(args, slot, std::move(done));
  } else {
    command_.command(args, std::move(done));
  }
}

void RedisBus::listen(const std::string& room_id, bool on) {
  if (cluster_) {
    const std::array<std::string, 2> channels{keys_.room(room_id), keys_.presence(room_id)};
    if (on) {
      cluster_->subscribe(channels);
    } else {
      cluster_->unsubscribe(channels);
    }
    return;
  }
  subscriber_.send(
      {on ? "SUBSCRIBE" : "UNSUBSCRIBE", keys_.room(room_id), keys_.presence(room_id)});
}

std::string RedisBus::lease_check_prefix() const {
  return cluster_ ? std::string() : keys_.lease_prefix();
}

void RedisBus::append_dead(std::vector<std::string>& args) const {
  if (cluster_) args.insert(args.end(), dead_seen_.begin(), dead_seen_.end());
}

MessageWindows RedisBus::message_windows(std::string_view ip, std::string_view room_id) const {
  return {keys_.window("msg-ip", ip), keys_.window("msg-room", room_id)};
}

MessageVerdict RedisBus::message_verdict(const MessageWindows& windows, MessageLimits limits) {
  const auto now = Clock::now();
  bool flush = false;
  MessageVerdict v = MessageVerdict::kAllowed;
  // In turn, as the Redis limit script does: a message refused per IP is not counted per room.
  if (!windows_.hit(windows.ip_key(), limits.per_ip, now, &flush)) {
    v = MessageVerdict::kIpLimited;
  } else if (!windows_.hit(windows.room_key(), limits.per_room, now, &flush)) {
    v = MessageVerdict::kRoomLimited;
  }
  if (flush) {
    asio::post(ioc_, [this] {
      reconcile_timer_.expires_after(kReconcilePeriod);
      reconcile_timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) reconcile();
      });
    });
  }
  return v;
}

void RedisBus::reconcile() {
  auto deltas = std::make_shared<std::vector<ReconciledWindows::Delta>>(windows_.take_unsent());
  // A script touches one slot on a cluster: the batch goes out one call per slot.
  std::vector<uint16_t> slots;
  if (cluster_) {
    std::vector<std::pair<uint16_t, ReconciledWindows::Delta>> by_slot;
    by_slot.reserve(deltas->size());
    for (const auto& d : *deltas) by_slot.emplace_back(key_slot(d.key), d);
    std::sort(by_slot.begin(), by_slot.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    for (std::size_t i = 0; i < by_slot.size(); ++i) {
      slots.push_back(by_slot[i].first);
      (*deltas)[i] = by_slot[i].second;
    }
  }
  for (std::size_t first = 0, last = 0; first < deltas->size(); first = last) {
    last = std::min(deltas->size(), first + kReconcileKeysPerCall);
    if (cluster_) {
      last = static_cast<std::size_t>(
          std::find_if(slots.begin() + static_cast<std::ptrdiff_t>(first + 1),
                       slots.begin() + static_cast<std::ptrdiff_t>(last),
                       [&](uint16_t s) { return s != slots[first]; }) -
          slots.begin());
    }
    std::vector<std::string> args;
    args.reserve(2 * (last - first) + 1);
    for (std::size_t i = first; i < last; ++i) args.emplace_back((*deltas)[i].key);
    for (std::size_t i = first; i < last; ++i) args.push_back(std::to_string((*deltas)[i].count));
    args.push_back(std::to_string(std::chrono::milliseconds(ReconciledWindows::kWindow).count()));
    eval(kWindowAddScript, std::move(args), last - first, RedisOp::kRateLimit,
         [this, deltas, first, last](const redisReply* r) {
           const bool ok =
               !is_error(r) && r->type == REDIS_REPLY_ARRAY && r->elements == 2 * (last - first);
           const auto now = Clock::now();
           uint64_t confirmed = 0;
           uint64_t failed = 0;
           for (std::size_t i = first; i < last; ++i) {
             const auto& d = (*deltas)[i];
             const redisReply* total = ok ? r->element[2 * (i - first)] : nullptr;
             const redisReply* ttl = ok ? r->element[2 * (i - first) + 1] : nullptr;
             if (!total || total->type != REDIS_REPLY_INTEGER || ttl->type != REDIS_REPLY_INTEGER) {
               windows_.failed(d.key, d.count);
               failed += d.count;
               continue;
             }
             windows_.confirm(d.key, d.count, static_cast<uint64_t>(std::max(0LL, total->integer)),
                              std::chrono::milliseconds(std::max(0LL, ttl->integer)), now);
             confirmed += d.count;
           }
           metrics().window_hits_reconciled.inc(confirmed);
           if (failed != 0) {
             fail_open(failed);
           } else {
             fail_open_logged_ = false;
           }
         });
  }
}

void RedisBus::fail_open(uint64_t hits) {
  // Fail open, as the contract says: a Redis outage must not silence every room. Messages are
  // still limited by this instance's own count.
  metrics().rate_limit_fail_open.inc(hits);
  if (!fail_open_logged_) {
    log_.warn("Rate limit check failed; letting traffic through while Redis is unavailable");
    fail_open_logged_ = true;
  }
}

void RedisBus::check_connection(std::string_view ip, uint32_t limit, AllowCallback done) {
  asio::post(ioc_, [this, key = keys_.window("conn", ip), limit, done = std::move(done)]() mutable {
    eval(kLimitScript, {std::move(key), "10", std::to_string(limit)}, 1, RedisOp::kRateLimit,
         [this, done = std::move(done)](const redisReply* r) {
           if (is_error(r) || r->type != REDIS_REPLY_INTEGER) {
             fail_open(1);
             done(true);
             return;
           }
           fail_open_logged_ = false;
           done(r->integer == 0);
         });
  });
}

}  // namespace sigsrv
