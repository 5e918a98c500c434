// Every metric of the process, declared in one place with its stable exposition name.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace sigsrv {

class Counter {
 public:
  void inc(uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

class Gauge {
 public:
  void inc(int64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  void dec(int64_t n = 1) { v_.fetch_sub(n, std::memory_order_relaxed); }
  void set(int64_t n) { v_.store(n, std::memory_order_relaxed); }
  int64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

// Fixed buckets in seconds; observations are lock-free.
class Histogram {
 public:
  static constexpr std::array<double, 16> kBounds = {
      0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
      0.005,   0.01,     0.025,   0.05,   0.1,     0.25,   0.5,   1.0};
  void observe(double seconds);
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  void render(std::string& out, std::string_view name, std::string_view labels) const;
  // The same observations with fewer buckets: `bounds` must be some of kBounds, ascending.
  void render(std::string& out, std::string_view name, std::string_view labels,
              std::span<const double> bounds) const;
  // Adds this histogram's counts into `into` (to render several as one).
  void add_to(Histogram& into) const;

 private:
  std::array<std::atomic<uint64_t>, kBounds.size() + 1> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_ns_{0};
};

// Why a message or connection was dropped: the label values of the drop counters.
enum class RateScope { kConnection, kIp, kRoom, kConnectIp };
enum class RejectReason {
  kDraining,
  kBreakerOpen,
  kAtCapacity,
  kMalformed,
  kInvalidRoom,
  kWssRequired,
  kOriginNotAllowed,
  kSubprotocolRequired,
  kUnauthorized,
  kForbidden,
  kRateLimited,
  kRoomFull,
  kInternalError,
  kInvalidResume,  // resume=TOKEN with a bad token or lastSeq (PROTOCOL.md section 8)
  kCount
};
// How a resume attempt ended: replayed, answered recovered:false (a fresh join follows), or
// refused with 1008 (bad token or lastSeq).
enum class ResumeResult { kRecovered, kNotRecovered, kRefused };
enum class RedisOp {
  kJoin,
  kLeave,
  kPublish,
  kRateLimit,
  kPing,
  kSubscribe,
  kLease,
  kRejoin,
  kScriptLoad,
  kSession,  // resumable sessions' bookkeeping (open, notices, claims, ends)
  kCount
};

struct Metrics {
  // Spec metrics (names shared with the Node server).
  Gauge active_connections;    // WebSocket sessions admitted and not yet ended
  Gauge local_rooms;           // rooms with at least one member on this instance
  Gauge redis_up;              // 1 while the Redis bus answers; 0 on the embedded bus
  Gauge circuit_breaker_open;  // 1 while the Redis breaker refuses new connections
  Counter messages_forwarded;  // valid messages delivered here or accepted by Redis (once each)
  Counter schema_rejects;      // objects failing validation (sender got schema-error)
  std::array<Counter, 4> rate_limit_drops;  // by RateScope
  Counter backpressure_closes;              // recipients closed with 1013 for unsent bytes
  std::array<Histogram, static_cast<std::size_t>(RedisOp::kCount)> redis_operation_duration;
  Histogram fanout_duration;  // validation done -> every local recipient queued and bus published

  // Ours.
  Counter connections_accepted;  // TCP connections accepted (HTTP and WebSocket)
  std::array<Counter, static_cast<std::size_t>(RejectReason::kCount)> connections_rejected;
  Counter messages_received;      // WebSocket messages read from clients
  Counter messages_invalid_json;  // not JSON or not an object: dropped silently
  Counter messages_delivered;     // messages queued to a recipient (one per recipient)
  Counter heartbeat_terminations;
  Counter oversize_closes;  // closed with 1009 for a message over MESSAGE_MAX_BYTES
  Counter session_faults;   // closed with 1011: a handler of theirs threw (a bug; see the log)
  Counter handshake_timeouts;
  // Connections in their HTTP phase (TLS handshake, request, response) right now, and those of
  // them closed to make room when there were more than MAX_CONNECTIONS.
  Gauge pending_handshakes;
  Counter handshake_evictions;
  Counter tls_handshake_failures;  // TLS handshakes on the server port that failed (any cause)
  std::array<Counter, static_cast<std::size_t>(RedisOp::kCount)> redis_errors;  // by operation
  Counter rate_limit_fail_open;    // shared-window hits Redis could not count (checks of
                                   // connections let through; messages counted here only)
  Counter window_hits_reconciled;  // message hits added to the shared windows in Redis
  Counter bus_messages_received;   // messages from other instances delivered here
  Histogram cross_instance_relay;  // publish on one instance -> received on this one
  Gauge ready;                     // 1 when /readyz answers 200
  Gauge draining;
  // Members of crashed instances (lease expired) this instance released from their rooms and
  // announced with peer-disconnected: each is counted once, by the one instance that released it.
  Counter crashed_members_released;
  // JWKS_URL fetches by result ([0] error: network, HTTP status, or no usable key; [1] ok), and
  // the keys in the set in use (the last good one after an error; 0 before the first success).
  std::array<Counter, 2> jwks_refresh_total;
  Gauge jwks_keys;
  // Resumable sessions (resume=1): resume attempts by result, suspensions, the sessions held
  // suspended now, windows that passed without a resume, and messages replayed on resumes.
  std::array<Counter, 3> resumes_total;  // by ResumeResult
  Counter sessions_suspended;
  Gauge suspended_sessions;
  Counter resume_windows_expired;
  Counter replayed_messages;
  Counter resume_resyncs;  // sessions asked to resume after a gap in what the bus numbered
  // Periods the Redis bus was unavailable after having been ready, and their total length:
  // messages published meanwhile did not reach members here (resumable ones get them back).
  Counter bus_gaps;
  Counter bus_gap_ms;
  Counter bus_messages_recovered;  // replayed to sessions resuming after such a gap
  // STALE_MEMBER_PROBE_MS: joins that found their room full and asked for a probe, and members
  // released because they did not answer one.
  Counter stale_member_probes;
  Counter stale_members_released;
  // Leaves Redis missed while down and that were past the bound of those kept for a retry.
  Counter redis_leaves_abandoned;
  // Sentinel: failovers followed (+switch-master for our master), and delivery probes that did
  // not come back (the subscriber was reconnected).
  Counter redis_master_switches;
  Counter redis_delivery_probe_failures;
  // Redis Cluster: commands redirected (MOVED: the slot has a new master; ASK: it is migrating),
  // topology reads (CLUSTER SLOTS), and sharded subscriptions moved to a slot's new master.
  Counter redis_cluster_moved;
  Counter redis_cluster_ask;
  Counter redis_cluster_refreshes;
  Counter redis_cluster_resubscribes;
  // Log lines dropped because the log writer could not keep up (its queue was full).
  Counter log_lines_dropped;
  // TURN credentials minted for welcomes and resumed replies (TURN_URLS with a turn: URL).
  Counter turn_credentials_issued;

  Counter& drops(RateScope s) { return rate_limit_drops[static_cast<std::size_t>(s)]; }
  Counter& rejected(RejectReason r) { return connections_rejected[static_cast<std::size_t>(r)]; }
  Histogram& redis_op(RedisOp op) { return redis_operation_duration[static_cast<std::size_t>(op)]; }
  Counter& redis_error(RedisOp op) { return redis_errors[static_cast<std::size_t>(op)]; }
  Counter& jwks_refresh(bool ok) { return jwks_refresh_total[ok ? 1 : 0]; }
  Counter& resumes(ResumeResult r) { return resumes_total[static_cast<std::size_t>(r)]; }

  // Prometheus text exposition, including process_* gauges; the spec's metrics under the names
  // METRICS_NAMES picks.
  std::string render(MetricNames names = MetricNames::kBoth) const;

 private:
  void render_spec_shared(std::string& out, std::string_view prefix) const;
  void render_spec_cloudgaming(std::string& out) const;
  void render_spec_signaling(std::string& out) const;
};

// One per process; sessions, buses and the HTTP routes all count here.
Metrics& metrics();

}  // namespace sigsrv
