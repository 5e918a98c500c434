// Redis bus: rooms, relay and windows shared by every instance on one Redis (PROTOCOL.md s. 4).
#pragma once

#include <array>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "bus/bus.hpp"
#include "bus/redis_cluster.hpp"
#include "bus/redis_connection.hpp"
#include "bus/redis_keys.hpp"
#include "bus/sentinel_client.hpp"
#include "config/config.hpp"
#include "limits/reconciled_windows.hpp"
#include "obs/metrics.hpp"

namespace sigsrv {

// Owns the event loop the server runs as its loop 0, with the command and the subscriber
// connection on it. Every Bus call may come from any session loop: it is posted here, and
// results are handed back through the callbacks (the sessions post them to their own loops).
class RedisBus final : public Bus {
 public:
  // Leaves Redis missed (it was down) kept for a retry when it is back; see failed_leaves_.
  static constexpr std::size_t kMaxFailedLeaves = 100000;

  // How long the subscriber may go without proof that it receives what the command connection
  // publishes before a probe is sent, and how long the probe may take to come back (Sentinel).
  static constexpr std::chrono::milliseconds kProbeIdle{2000};
  static constexpr std::chrono::milliseconds kProbeDeadline{2000};

  // `tls` is the rediss:// client context (null for redis://). With `cluster` (seed nodes), the
  // bus runs on Redis Cluster (PROTOCOL.md section 10): the endpoint gives only the credentials.
  // With `sentinel`, the endpoint's
  // host and port are asked of the sentinels before every connection (its credentials stay), the
  // bus follows failovers, and a delivery probe watches the subscriber.
  RedisBus(const Config& config, const RedisEndpoint& endpoint,
           std::shared_ptr<boost::asio::ssl::context> tls, Logger& log,
           std::optional<SentinelSettings> sentinel = std::nullopt,
           std::vector<HostPort> cluster = {});
  ~RedisBus() override;  // NOLINT(bugprone-exception-escape)

  std::string_view name() const override { return "redis"; }
  std::shared_ptr<boost::asio::io_context> loop_context() override { return ioc_owner_; }
  void start(BusListener& listener) override;
  // Lets queued commands (leaves of a drain) finish, up to a short deadline, then disconnects.
  // Runs the loop itself: the server has stopped running it by then.
  void stop(std::chrono::milliseconds flush_budget) override;
  bool ready() const override { return ready_.load(std::memory_order_relaxed); }
  bool breaker_open() const override;

  void join(const std::string& room_id, const std::string& client_id, unsigned capacity,
            JoinCallback done) override;
  void leave(const std::string& room_id, const std::string& client_id) override;
  void joined_locally(const std::string& room_id, const std::string& client_id,
                      uint64_t join_epoch) override;
  void release_seat(const std::string& room_id, const std::string& client_id) override;
  void publish(const std::string& room_id, const std::string& sender_id,
               const std::string& sender_session, const SharedText& data,
               bool count_forwarded) override;
  bool shares_sessions() const override { return true; }
  void session_open(const SessionRef& s, std::function<void(bool ok)> done) override;
  void session_append(const SessionRef& s, const SharedText& text) override;
  void session_count(const SessionRef& s) override;
  void session_suspended(const SessionRef& s) override;
  void session_end(const SessionRef& s, bool tombstone) override;
  void session_claim(const std::string& room_id, const std::string& session_id, uint64_t last_seq,
                     std::function<void(SessionClaim)> done) override;
  void release_room(const std::string& room_id) override;
  void keep_lease_on_stop() override { keep_lease_ = true; }
  void publish_presence(const std::string& room_id, const std::string& client_id,
                        PresenceEvent event, bool resumable) override;
  void publish_departure(const std::string& room_id, const std::string& client_id) override;
  // Counted here at once; reconciled with Redis every kReconcilePeriod (see reconcile()).
  MessageWindows message_windows(std::string_view ip, std::string_view room_id) const override;
  MessageVerdict message_verdict(const MessageWindows& windows, MessageLimits limits) override;
  // A connection's verdict waits for Redis: its join does anyway.
  std::optional<bool> connection_allowed_now(std::string_view, uint32_t) override {
    return std::nullopt;
  }
  void check_connection(std::string_view ip, uint32_t limit, AllowCallback done) override;

 private:
  enum Script {
    kJoinScript,
    kLeaveScript,
    kRejoinScript,
    kLimitScript,
    kLeaseScript,
    kSweepScript,
    kReapScript,
    kSessionOpenScript,
    kRelayScript,
    kSessionAppendScript,
    kSessionCountScript,
    kSessionStateScript,
    kSessionEndScript,
    kSessionClaimScript,
    kWindowAddScript,
    kScriptCount
  };
  // A room this instance listens to while it has local members there: its relay channel
  // room:{id} (shared with the Node instances) and its presence channel presence:{id} (ours
  // only, so that clients that did not opt in never see presence events).
  struct Channel {
    std::string key;    // the room's relay channel (room:R, room:{R} on a cluster): built once
    uint16_t slot = 0;  // its cluster slot
    unsigned refs = 0;
    unsigned awaiting = 0;   // SUBSCRIBE acknowledgements still to come (two per request)
    bool confirmed = false;  // both channels acknowledged
    bool resync = false;     // resubscribed after a reconnect; readiness waits for it
    // A resumable session was seen in the room (opened here, or numbered, suspended, resumed
    // or joined elsewhere): relays go through kRelay to be numbered for it. Until then a plain
    // PUBLISH, so rooms without one pay nothing; a relay that misses a session by a race is
    // numbered by the session's owner on arrival (session_append).
    bool resumable = false;
    std::vector<std::function<void(bool)>> waiters;
    // Session claims in flight for this room, and what was numbered meanwhile. The claim's reply
    // (command connection) and the room's traffic (subscriber connection) have no order between
    // them: a message numbered just after the claim can be read before its reply, and would then
    // miss both the replay and the resumed socket. Kept until the last claim is answered, at
    // most resume_buffer_messages entries; past that the newest are not kept, which shows up as
    // a gap (a resync, never a hole).
    unsigned claims = 0;
    struct Numbered {
      std::string client_id;
      uint64_t seq;
      SharedText data;
      bool has_seq;  // a numbered notice's text carries its seq; a relay's gets it per recipient
    };
    std::vector<Numbered> numbered_during_claims;
  };
  // Records a numbered message for the claims in flight in `ch`, if any.
  void note_numbered(Channel& ch, const std::string& client_id, uint64_t seq,
                     const SharedText& data, bool has_seq);
  // Appends to a resumed claim what the subscriber read before its reply, from lastSeq on.
  void complete_claim(Channel& ch, SessionClaim& c);

  // Everything below runs on the bus loop only.
  void on_command_up();
  void on_subscriber_up();
  void on_down(bool command_side);
  void resync_members();
  void update_readiness();
  // Sentinel: a failover named a new master; a (re)connected watch asks where it is now.
  void on_master_switched(const HostPort& to);
  void check_master();
  // Publishes a probe on probe_channel_ when the subscriber has shown no delivery for a while;
  // one that does not come back in time (or that no subscriber got) reconnects the subscriber.
  void probe_delivery();
  void probe_failed(const std::string& why);
  void end_gap();
  // Runs a script (EVALSHA, or EVAL when Redis lost it). Callers get the answers in the order
  // they asked, retries included: each eval takes a ticket, and an answer that arrives while an
  // earlier ticket is being retried is held until that one is answered.
  void eval(Script script, std::vector<std::string> keys_and_args, std::size_t nkeys, RedisOp op,
            RedisConnection::Callback done);
  void complete_eval(uint64_t ticket, const redisReply* r, RedisConnection::Callback& done);
  void release_held_evals();
  void subscribe(const std::string& room_id, std::function<void(bool)> done);
  void send_subscribe(const std::string& room_id, Channel& ch);
  void release(const std::string& room_id);
  void resync_done_one();
  void publish_on(std::string channel, std::string body);
  // True on the thread that runs the bus loop (loop 0, whose sessions share it). A relay from
  // there is queued for Redis at once instead of through a posted handler: with THREADS=1 that
  // was a handler, its copies of the ids and the envelope, per message (~8% of a Redis-bus
  // relay's instructions). Order is kept: a sender's loop is always the same thread, and a
  // sender's earlier posted calls (its presence, say) ran before the read that brought this
  // message completed.
  bool on_bus_loop() const { return ioc_.get_executor().running_in_this_thread(); }
  // publish(), on the bus loop.
  void publish_here(const std::string& room_id, const std::string& sender_session,
                    const std::string& data, bool count_forwarded, std::string envelope);
  void send_leave(const std::string& room_id, const std::string& client_id);
  void on_message(std::string_view channel, std::string_view payload);
  void on_subscribed(std::string_view channel);
  void record(RedisOp op, bool ok, std::chrono::steady_clock::time_point started);
  // The number of breaker changes a log line stands for, when one is due (see the definition).
  std::optional<uint64_t> breaker_log_due();
  void tick();
  // Sets the lease and the registry entry now: on every (re)connect, since Redis may have come
  // back empty.
  void refresh_lease();
  // Crash notices: asks the registry which instances' leases expired; for any not seen before,
  // releases their members from this instance's rooms (reap) and tells the peers.
  void sweep();
  struct ReapJob;
  void reap(const std::vector<std::string>& dead);
  void pump_reaps(const std::shared_ptr<ReapJob>& job);
  void finish_reaps(const ReapJob& job);
  // Tells local members of `room_id` that each member in `released` (member, owner, ... from
  // element `first` on, as the scripts return them) is gone, and counts them (in `by_owner` too,
  // when given); returns how many there were.
  std::size_t announce_released(const std::string& room_id, const redisReply* released,
                                std::size_t first,
                                std::unordered_map<std::string, std::size_t>* by_owner);
  void reconcile();
  void fail_open(uint64_t hits);
  void on_channels_moved(const std::vector<std::string>& channels);
  // The command and subscriber side, on one Redis or on a cluster.
  void redis(std::span<const std::string_view> args, RedisConnection::Callback done);
  void redis(std::initializer_list<std::string_view> args, RedisConnection::Callback done) {
    redis(std::span<const std::string_view>(args.begin(), args.size()), std::move(done));
  }
  // The same, to the master of `slot` on a cluster (ignored on one Redis).
  void redis(std::span<const std::string_view> args, uint16_t slot, RedisConnection::Callback done);
  // A command routed by `ch`'s channel (a relay), whose slot is known already.
  void redis(const Channel& ch, std::initializer_list<std::string_view> args,
             RedisConnection::Callback done) {
    redis(std::span<const std::string_view>(args.begin(), args.size()), ch.slot, std::move(done));
  }
  bool commands_up() const { return cluster_ ? cluster_->commands_up() : command_.up(); }
  bool subscribers_up() const { return cluster_ ? cluster_->subscribers_up() : subscriber_.up(); }
  // (UN)SUBSCRIBE a room's relay and presence channels (SSUBSCRIBE on a cluster).
  void listen(const std::string& room_id, bool on);
  // The join and reap scripts' liveness arguments (see redis_scripts.hpp, lease_gone): the lease
  // key prefix on one Redis; on a cluster an empty prefix, then the expired instances.
  std::string lease_check_prefix() const;
  void append_dead(std::vector<std::string>& args) const;

  const Config& config_;
  Logger& log_;
  BusListener* listener_ = nullptr;
  const std::string instance_id_;
  const std::string lease_key_;
  const std::string own_relay_marker_;  // see is_own_relay()
  std::shared_ptr<boost::asio::io_context> ioc_owner_;
  boost::asio::io_context& ioc_;
  RedisConnection command_;
  RedisConnection subscriber_;
  boost::asio::steady_timer lease_timer_;
  bool started_ = false;
  bool ever_ready_ = false;
  std::optional<std::chrono::steady_clock::time_point> gap_since_;  // not ready since
  std::atomic<bool> keep_lease_{false};
  std::atomic<bool> ready_{false};
  std::atomic<int64_t> breaker_open_until_ns_{0};

  unsigned consecutive_failures_ = 0;
  std::optional<std::chrono::steady_clock::time_point> breaker_logged_at_;
  uint64_t breaker_changes_ = 0;  // breaker changes since its last log line
  // Relays Redis refused (with the connection up) since the last line saying so.
  std::optional<std::chrono::steady_clock::time_point> refused_logged_at_;
  uint64_t relays_refused_ = 0;
  std::array<std::string, kScriptCount> shas_;
  bool scripts_loaded_ = false;
  bool members_resynced_ = false;
  // Bumped when a re-assertion of local membership starts: a join that completed before it and
  // was attached after it read local_members() is re-asserted by joined_locally().
  std::atomic<uint64_t> members_epoch_{0};
  std::size_t resubscribes_outstanding_ = 0;
  bool subscriptions_resynced_ = false;
  std::unordered_map<std::string, Channel> channels_;  // by room id
  // Eval tickets (see eval()). Bounded by the command pipeline (RedisConnection::kMaxPending):
  // every held answer belongs to a command that was in it.
  uint64_t next_eval_ = 0;
  std::set<uint64_t> evals_retrying_;
  struct HeldEval {
    RedisConnection::Callback done;
    ReplyPtr reply;  // null: the command failed
  };
  std::map<uint64_t, HeldEval> evals_held_;
  // Leaves that Redis did not take (it was down): retried when it is back, so a member that
  // left during an outage does not hold its room's slot. Bounded: past kMaxFailedLeaves a leave
  // is not kept (counted, logged): its seat stays taken until this instance's lease lapses (a
  // restart), when the crash reaper of another instance releases it.
  std::set<std::pair<std::string, std::string>> failed_leaves_;
  void remember_failed_leave(const std::string& room_id, const std::string& client_id);
  bool fail_open_logged_ = false;
  // Message windows: counted on the loops, added to Redis by reconcile() one period after the
  // first hit not yet sent (so at most one batch per period, none while idle).
  ReconciledWindows windows_;
  boost::asio::steady_timer reconcile_timer_;
  std::chrono::steady_clock::time_point last_lease_refresh_{};
  bool lease_held_ = false;  // a lease refresh succeeded in this process
  // The tick period: the sweep's, a fraction of the lease TTL (250-500 ms), so a crash is
  // noticed within the TTL plus one period.
  const std::chrono::milliseconds tick_period_;
  bool sweep_in_flight_ = false;
  // Expired instances the last sweep returned: each is reaped once, when it first appears. An id
  // that stops appearing (forgotten, or back alive) is dropped, so it counts as new if it dies
  // again.
  std::set<std::string> dead_seen_;

  // Sentinel mode only (null otherwise).
  std::unique_ptr<SentinelClient> sentinel_;
  // The delivery probe: a channel only this instance subscribes to. A subscriber left on a node
  // that is no longer the master (a failover it did not notice) stops getting what the command
  // connection publishes; the probe notices, and readiness is false until one comes back.
  const std::string probe_channel_;
  bool probe_subscribed_ = false;
  bool probe_failing_ = false;
  std::optional<std::chrono::steady_clock::time_point> probe_sent_;
  std::string probe_token_;
  uint64_t probes_sent_ = 0;
  std::chrono::steady_clock::time_point last_delivery_proof_{};

  // Key names, script texts (with the mode's prelude) and the relay command for this mode; and,
  // on Redis Cluster, the client that replaces command_ and subscriber_ (which then stay idle).
  const RedisKeys keys_;
  const std::array<std::string, kScriptCount> bodies_;
  const char* const publish_;
  std::unique_ptr<RedisCluster> cluster_;
};

}  // namespace sigsrv
