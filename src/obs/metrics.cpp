// Prometheus text exposition of the metrics declared in metrics.hpp.
#include "obs/metrics.hpp"

#include <cstdio>

#include "obs/process_stats.hpp"

namespace sigsrv {
namespace {

constexpr const char* kRateScopes[] = {"connection", "ip", "room", "connect_ip"};
constexpr const char* kRejectReasons[] = {
    "draining",     "breaker_open",       "at_capacity",          "malformed",     "invalid_room",
    "wss_required", "origin_not_allowed", "subprotocol_required", "unauthorized",  "forbidden",
    "rate_limited", "room_full",          "internal_error",       "invalid_resume"};
constexpr const char* kRedisOps[] = {"join",      "leave", "publish", "rate_limit",  "ping",
                                     "subscribe", "lease", "rejoin",  "script_load", "session"};

void header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n# TYPE ").append(name);
  out.append(" ").append(type).append("\n");
}

void sample(std::string& out, std::string_view name, std::string_view labels, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  out.append(name);
  if (!labels.empty()) out.append("{").append(labels).append("}");
  out.append(" ").append(buf).append("\n");
}

void gauge(std::string& out, std::string_view name, std::string_view help, double v) {
  header(out, name, "gauge", help);
  sample(out, name, {}, v);
}

void counter(std::string& out, std::string_view name, std::string_view help, double v) {
  header(out, name, "counter", help);
  sample(out, name, {}, v);
}

}  // namespace

void Histogram::observe(double seconds) {
  std::size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<uint64_t>(seconds * 1e9), std::memory_order_relaxed);
}

void Histogram::render(std::string& out, std::string_view name, std::string_view labels) const {
  const std::string bucket = std::string(name) + "_bucket";
  const std::string prefix = labels.empty() ? std::string() : std::string(labels) + ",";
  uint64_t cumulative = 0;
  char le[48];
  for (std::size_t i = 0; i <= kBounds.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    if (i < kBounds.size()) {
      std::snprintf(le, sizeof(le), "le=\"%g\"", kBounds[i]);
    } else {
      std::snprintf(le, sizeof(le), "le=\"+Inf\"");
    }
    sample(out, bucket, prefix + le, static_cast<double>(cumulative));
  }
  sample(out, std::string(name) + "_sum", labels, static_cast<double>(sum_ns_.load()) / 1e9);
  sample(out, std::string(name) + "_count", labels, static_cast<double>(count_.load()));
}

void Histogram::render(std::string& out, std::string_view name, std::string_view labels,
                       std::span<const double> bounds) const {
  const std::string bucket = std::string(name) + "_bucket";
  const std::string prefix = labels.empty() ? std::string() : std::string(labels) + ",";
  uint64_t cumulative = 0;
  char le[48];
  std::size_t next = 0;  // the next of `bounds` to emit
  for (std::size_t i = 0; i < kBounds.size() && next < bounds.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    if (kBounds[i] != bounds[next]) continue;
    std::snprintf(le, sizeof(le), "le=\"%g\"", bounds[next++]);
    sample(out, bucket, prefix + le, static_cast<double>(cumulative));
  }
  std::snprintf(le, sizeof(le), "le=\"+Inf\"");
  sample(out, bucket, prefix + le, static_cast<double>(count_.load()));
  sample(out, std::string(name) + "_sum", labels, static_cast<double>(sum_ns_.load()) / 1e9);
  sample(out, std::string(name) + "_count", labels, static_cast<double>(count_.load()));
}

void Histogram::add_to(Histogram& into) const {
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    into.buckets_[i].fetch_add(buckets_[i].load(std::memory_order_relaxed),
                               std::memory_order_relaxed);
  }
  into.count_.fetch_add(count_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  into.sum_ns_.fetch_add(sum_ns_.load(std::memory_order_relaxed), std::memory_order_relaxed);
}

// The spec's metrics whose names differ only by prefix (cloudgaming_ or signaling_).
void Metrics::render_spec_shared(std::string& out, std::string_view prefix) const {
  const auto name = [prefix](std::string_view n) { return std::string(prefix) + std::string(n); };
  gauge(out, name("active_connections"), "Open WebSocket connections on this instance.",
        active_connections.value());
  gauge(out, name("local_rooms"), "Rooms with at least one member on this instance.",
        local_rooms.value());
  gauge(out, name("redis_up"), "1 when Redis answers, 0 when down or not configured.",
        redis_up.value());
  gauge(out, name("circuit_breaker_open"), "1 while the Redis circuit breaker is open.",
        circuit_breaker_open.value());
  counter(out, name("messages_forwarded_total"),
          "Valid client messages that reached someone: delivered to a member here, or accepted by "
          "Redis.",
          messages_forwarded.value());
  counter(out, name("backpressure_closes_total"),
          "Connections closed with 1013 for exceeding the unsent-bytes threshold.",
          backpressure_closes.value());
}

void Metrics::render_spec_cloudgaming(std::string& out) const {
  render_spec_shared(out, "cloudgaming_");
  counter(out, "cloudgaming_schema_rejects_total", "Messages failing schema validation.",
          schema_rejects.value());
  header(out, "cloudgaming_rate_limit_drops_total", "counter",
         "Messages (and connections, scope=connect_ip) dropped by rate limits.");
  for (std::size_t i = 0; i < rate_limit_drops.size(); ++i) {
    sample(out, "cloudgaming_rate_limit_drops_total",
           std::string("scope=\"") + kRateScopes[i] + "\"", rate_limit_drops[i].value());
  }
  header(out, "cloudgaming_redis_operation_duration_seconds", "histogram",
         "Redis round-trip time by operation.");
  for (std::size_t i = 0; i < redis_operation_duration.size(); ++i) {
    redis_operation_duration[i].render(out, "cloudgaming_redis_operation_duration_seconds",
                                       std::string("op=\"") + kRedisOps[i] + "\"");
  }
  header(out, "cloudgaming_fanout_duration_seconds", "histogram",
         "Time to queue a message to every local recipient and publish it on the bus.");
  fanout_duration.render(out, "cloudgaming_fanout_duration_seconds", {});
}

// The deployed Node server's names for the spec's metrics (PROTOCOL.md section 6), from the same
// counters: its rate-limit drops carry no label (the message scopes summed; refused connections
// are counted in connections_rejected), its Redis latency is one histogram over every operation.
void Metrics::render_spec_signaling(std::string& out) const {
  render_spec_shared(out, "signaling_");
  counter(out, "signaling_schema_rejections_total", "Messages failing schema validation.",
          schema_rejects.value());
  double drops = 0;
  for (RateScope s : {RateScope::kConnection, RateScope::kIp, RateScope::kRoom}) {
    drops += static_cast<double>(rate_limit_drops[static_cast<std::size_t>(s)].value());
  }
  counter(out, "signaling_rate_limit_drops_total", "Messages dropped by rate limits.", drops);
  static constexpr std::array<double, 9> kRedisBounds = {0.001, 0.005, 0.01, 0.025, 0.05,
                                                         0.1,   0.25,  0.5,  1.0};
  Histogram redis;
  for (const auto& h : redis_operation_duration) h.add_to(redis);
  header(out, "signaling_redis_cmd_latency_seconds", "histogram",
         "Redis round-trip time, every operation.");
  redis.render(out, "signaling_redis_cmd_latency_seconds", {}, kRedisBounds);
  static constexpr std::array<double, 7> kFanoutBounds = {0.0005, 0.001, 0.0025, 0.005,
                                                          0.01,   0.025, 0.05};
  header(out, "signaling_fanout_latency_seconds", "histogram",
         "Time to queue a message to every local recipient (and publish it, for its sender).");
  fanout_duration.render(out, "signaling_fanout_latency_seconds", {}, kFanoutBounds);
}

std::string Metrics::render(MetricNames names) const {
  std::string out;
  out.reserve(12288);
  if (names != MetricNames::kSignaling) render_spec_cloudgaming(out);
  if (names != MetricNames::kCloudgaming) render_spec_signaling(out);

  counter(out, "cloudgaming_connections_accepted_total", "TCP connections accepted.",
          connections_accepted.value());
  header(out, "cloudgaming_connections_rejected_total", "counter",
         "WebSocket connections closed by a connect check, by reason.");
  for (std::size_t i = 0; i < connections_rejected.size(); ++i) {
    sample(out, "cloudgaming_connections_rejected_total",
           std::string("reason=\"") + kRejectReasons[i] + "\"", connections_rejected[i].value());
  }
  counter(out, "cloudgaming_messages_received_total", "WebSocket messages read from clients.",
          messages_received.value());
  counter(out, "cloudgaming_messages_invalid_json_total",
          "Messages that were not a JSON object (dropped silently).",
          messages_invalid_json.value());
  counter(out, "cloudgaming_messages_delivered_total",
          "Messages queued to a local recipient (one per recipient).", messages_delivered.value());
  counter(out, "cloudgaming_heartbeat_terminations_total",
          "Connections terminated for not answering a ping.", heartbeat_terminations.value());
  counter(out, "cloudgaming_session_faults_total",
          "Connections closed with 1011 because handling them failed unexpectedly (see the "
          "error log).",
          session_faults.value());
  counter(out, "cloudgaming_oversize_closes_total",
          "Connections closed with 1009 for a message over MESSAGE_MAX_BYTES.",
          oversize_closes.value());
  counter(out, "cloudgaming_handshake_timeouts_total",
          "Connections dropped for not completing the upgrade in time.",
          handshake_timeouts.value());
  gauge(out, "cloudgaming_pending_handshakes",
        "Connections still in their TLS handshake or HTTP request (not yet upgraded).",
        pending_handshakes.value());
  counter(out, "cloudgaming_handshake_evictions_total",
          "Connections still in their HTTP request closed to make room (MAX_CONNECTIONS).",
          handshake_evictions.value());
  counter(out, "cloudgaming_tls_handshake_failures_total",
          "TLS handshakes on the server port that failed (bad client, wrong protocol, timeout).",
          tls_handshake_failures.value());
  header(out, "cloudgaming_redis_errors_total", "counter",
         "Redis operations that failed (error reply, timeout or connection down), by operation.");
  for (std::size_t i = 0; i < redis_errors.size(); ++i) {
    sample(out, "cloudgaming_redis_errors_total", std::string("op=\"") + kRedisOps[i] + "\"",
           redis_errors[i].value());
  }
  counter(out, "cloudgaming_rate_limit_fail_open_total",
          "Shared rate-limit hits Redis could not count: connections let through, messages "
          "limited by this instance's own count only.",
          rate_limit_fail_open.value());
  counter(out, "cloudgaming_rate_limit_hits_reconciled_total",
          "Message hits counted here and added to the shared windows in Redis.",
          window_hits_reconciled.value());
  counter(out, "cloudgaming_bus_messages_received_total",
          "Messages from other instances delivered to members here.",
          bus_messages_received.value());
  counter(out, "cloudgaming_crashed_members_released_total",
          "Members of crashed instances (lease expired) released from their rooms by this one.",
          crashed_members_released.value());
  header(out, "cloudgaming_cross_instance_relay_seconds", "histogram",
         "Publish on the sending instance to receipt on this one.");
  cross_instance_relay.render(out, "cloudgaming_cross_instance_relay_seconds", {});
  gauge(out, "cloudgaming_ready", "1 when /readyz answers 200.", ready.value());
  gauge(out, "cloudgaming_draining", "1 once SIGTERM/SIGINT started the drain.", draining.value());
  header(out, "cloudgaming_jwks_refresh_total", "counter",
         "JWKS_URL fetches, by result (error keeps the last good key set).");
  sample(out, "cloudgaming_jwks_refresh_total", "result=\"ok\"", jwks_refresh_total[1].value());
  sample(out, "cloudgaming_jwks_refresh_total", "result=\"error\"", jwks_refresh_total[0].value());
  gauge(out, "cloudgaming_jwks_keys", "Keys in the JWKS key set in use (0 before the first fetch).",
        jwks_keys.value());
  header(out, "cloudgaming_resumes_total", "counter",
         "Resume attempts (resume=TOKEN), by result: recovered (replayed), not_recovered "
         "(recovered:false, fresh join), refused (1008).");
  static constexpr std::array<const char*, 3> kResumeResults = {"recovered", "not_recovered",
                                                                "refused"};
  for (std::size_t i = 0; i < resumes_total.size(); ++i) {
    sample(out, "cloudgaming_resumes_total", std::string("result=\"") + kResumeResults[i] + "\"",
           resumes_total[i].value());
  }
  counter(out, "cloudgaming_sessions_suspended_total",
          "Resumable sessions whose socket ended without a close frame (seat held).",
          sessions_suspended.value());
  gauge(out, "cloudgaming_suspended_sessions", "Resumable sessions suspended right now.",
        suspended_sessions.value());
  counter(out, "cloudgaming_resume_windows_expired_total",
          "Suspended sessions released because RESUME_WINDOW_MS passed without a resume.",
          resume_windows_expired.value());
  counter(out, "cloudgaming_replayed_messages_total",
          "Messages sent again to resumed sessions (those after their lastSeq).",
          replayed_messages.value());
  counter(out, "cloudgaming_resume_resyncs_total",
          "Resumable sessions closed with 1013 to resume after a gap in their numbered messages "
          "(the bus lost some while reconnecting); the replay fills it.",
          resume_resyncs.value());
  counter(out, "cloudgaming_bus_gaps_total",
          "Times the Redis bus was unavailable after being ready: relays published meanwhile "
          "did not reach members here (resumable sessions resume and get them back).",
          bus_gaps.value());
  counter(out, "cloudgaming_bus_gap_seconds_total", "Total length of those periods, in seconds.",
          static_cast<double>(bus_gap_ms.value()) / 1000.0);
  counter(out, "cloudgaming_bus_messages_recovered_total",
          "Messages the Redis bus lost for a resumable session (its subscriber reconnecting) and "
          "its resume replayed from the session log.",
          bus_messages_recovered.value());
  counter(out, "cloudgaming_stale_member_probes_total",
          "Joins that found their room full and had its members pinged.",
          stale_member_probes.value());
  counter(out, "cloudgaming_stale_members_released_total",
          "Members released for not answering such a ping within STALE_MEMBER_PROBE_MS.",
          stale_members_released.value());
  counter(out, "cloudgaming_redis_leaves_abandoned_total",
          "Leaves Redis missed while down that were not kept for a retry (over 100,000 waiting); "
          "their seats stay taken until this instance's lease lapses.",
          redis_leaves_abandoned.value());
  counter(out, "cloudgaming_redis_master_switches_total",
          "Sentinel failovers (+switch-master) this instance followed to a new Redis master.",
          redis_master_switches.value());
  counter(out, "cloudgaming_redis_delivery_probe_failures_total",
          "Sentinel: delivery probes that did not come back to the subscriber connection, which "
          "was then reconnected (it was not on the master).",
          redis_delivery_probe_failures.value());
  header(out, "cloudgaming_redis_cluster_redirects_total", "counter",
         "Redis Cluster: commands redirected to another node (moved: the slot has a new master; "
         "ask: the slot is migrating).");
  sample(out, "cloudgaming_redis_cluster_redirects_total", "kind=\"moved\"",
         static_cast<double>(redis_cluster_moved.value()));
  sample(out, "cloudgaming_redis_cluster_redirects_total", "kind=\"ask\"",
         static_cast<double>(redis_cluster_ask.value()));
  counter(out, "cloudgaming_redis_cluster_refreshes_total",
          "Redis Cluster: topology reads (CLUSTER SLOTS): at start, after a redirect, a lost node "
          "or a moved subscription, and periodically.",
          redis_cluster_refreshes.value());
  counter(out, "cloudgaming_redis_cluster_resubscribes_total",
          "Redis Cluster: room channels subscribed again on a slot's new master (a migration or a "
          "failover moved the slot); what was published between is recovered for resumable "
          "sessions only.",
          redis_cluster_resubscribes.value());
  counter(out, "cloudgaming_log_lines_dropped_total",
          "Log lines dropped because the log writer could not keep up (its queue was full).",
          log_lines_dropped.value());
  counter(out, "cloudgaming_turn_credentials_issued_total",
          "TURN credentials handed out in welcome and resumed messages (TURN_SECRET).",
          turn_credentials_issued.value());

  const ProcessStats ps = read_process_stats();
  gauge(out, "process_resident_memory_bytes", "Resident memory size in bytes.", ps.resident_bytes);
  gauge(out, "process_virtual_memory_bytes", "Virtual memory size in bytes.", ps.virtual_bytes);
  counter(out, "process_cpu_seconds_total", "User and system CPU time in seconds.", ps.cpu_seconds);
  gauge(out, "process_open_fds", "Open file descriptors.", ps.open_fds);
  gauge(out, "process_max_fds", "Maximum open file descriptors.", ps.max_fds);
  gauge(out, "process_start_time_seconds", "Start time since the Unix epoch in seconds.",
        ps.start_time_seconds);
  return out;
}

Metrics& metrics() {
  static Metrics instance;
  return instance;
}

}  // namespace sigsrv
