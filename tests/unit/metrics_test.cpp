// Tests histogram buckets and the Prometheus exposition of every spec metric.
#include "obs/metrics.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace sigsrv {
namespace {

// Sample lines ("name{labels} value") of an exposition, by series.
std::map<std::string, double> Samples(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto space = line.rfind(' ');
    EXPECT_NE(space, std::string::npos) << line;
    if (space == std::string::npos) continue;
    const std::string series = line.substr(0, space);
    EXPECT_EQ(out.count(series), 0u) << "duplicate series " << series;
    out[series] = std::strtod(line.c_str() + space + 1, nullptr);
  }
  return out;
}

TEST(HistogramTest, BucketsAreCumulativeAndInfEqualsCount) {
  Histogram h;
  h.observe(0.000001);  // below the first bound
  h.observe(0.00001);   // exactly the first bound: le is inclusive
  h.observe(0.003);     // 0.005 bucket
  h.observe(0.5);       // 1 bucket
  h.observe(5.0);       // only +Inf
  EXPECT_EQ(h.count(), 5u);
  std::string out;
  h.render(out, "x_seconds", "");
  const auto s = Samples(out);
  EXPECT_EQ(s.at("x_seconds_bucket{le=\"1e-05\"}"), 2);
  EXPECT_EQ(s.at("x_seconds_bucket{le=\"0.0025\"}"), 2);
  EXPECT_EQ(s.at("x_seconds_bucket{le=\"0.005\"}"), 3);
  EXPECT_EQ(s.at("x_seconds_bucket{le=\"0.1\"}"), 3);
  EXPECT_EQ(s.at("x_seconds_bucket{le=\"1\"}"), 4);
  EXPECT_EQ(s.at("x_seconds_bucket{le=\"+Inf\"}"), 5);
  EXPECT_EQ(s.at("x_seconds_count"), 5);
  EXPECT_NEAR(s.at("x_seconds_sum"), 5.503011, 1e-6);
  // Every bound has a bucket line and counts never decrease.
  double previous = 0;
  std::size_t buckets = 0;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("x_seconds_bucket", 0) != 0) continue;
    const double v = std::strtod(line.c_str() + line.rfind(' ') + 1, nullptr);
    EXPECT_GE(v, previous) << line;
    previous = v;
    ++buckets;
  }
  EXPECT_EQ(buckets, Histogram::kBounds.size() + 1);
}

TEST(HistogramTest, EmptyHistogram) {
  Histogram h;
  std::string out;
  h.render(out, "y", "");
  const auto s = Samples(out);
  EXPECT_EQ(s.at("y_bucket{le=\"+Inf\"}"), 0);
  EXPECT_EQ(s.at("y_count"), 0);
  EXPECT_EQ(s.at("y_sum"), 0);
}

TEST(HistogramTest, LabelsComeBeforeLe) {
  Histogram h;
  h.observe(0.002);
  std::string out;
  h.render(out, "op_seconds", "op=\"join\"");
  const auto s = Samples(out);
  EXPECT_EQ(s.at("op_seconds_bucket{op=\"join\",le=\"0.001\"}"), 0);
  EXPECT_EQ(s.at("op_seconds_bucket{op=\"join\",le=\"0.0025\"}"), 1);
  EXPECT_EQ(s.at("op_seconds_bucket{op=\"join\",le=\"+Inf\"}"), 1);
  EXPECT_EQ(s.at("op_seconds_count{op=\"join\"}"), 1);
  EXPECT_EQ(s.count("op_seconds_sum{op=\"join\"}"), 1u);
}

TEST(MetricsTest, RenderHasEverySpecMetric) {
  Metrics m;
  const std::string text = m.render();
  const std::pair<const char*, const char*> families[] = {
      {"cloudgaming_active_connections", "gauge"},
      {"cloudgaming_local_rooms", "gauge"},
      {"cloudgaming_redis_up", "gauge"},
      {"cloudgaming_circuit_breaker_open", "gauge"},
      {"cloudgaming_messages_forwarded_total", "counter"},
      {"cloudgaming_schema_rejects_total", "counter"},
      {"cloudgaming_rate_limit_drops_total", "counter"},
      {"cloudgaming_backpressure_closes_total", "counter"},
      {"cloudgaming_redis_operation_duration_seconds", "histogram"},
      {"cloudgaming_fanout_duration_seconds", "histogram"},
      {"process_resident_memory_bytes", "gauge"},
      {"process_cpu_seconds_total", "counter"},
      {"process_open_fds", "gauge"},
      {"process_start_time_seconds", "gauge"},
  };
  for (const auto& [name, type] : families) {
    const std::string type_line = std::string("# TYPE ") + name + " " + type + "\n";
    EXPECT_NE(text.find(type_line), std::string::npos) << type_line;
    EXPECT_NE(text.find(std::string("# HELP ") + name + " "), std::string::npos) << name;
    // Declared once only.
    EXPECT_EQ(text.find(type_line), text.rfind(type_line)) << name;
  }
}

TEST(MetricsTest, EveryTypeIsDeclaredOnce) {
  Metrics m;
  std::istringstream in(m.render());
  std::string line;
  std::map<std::string, int> types;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) == 0) ++types[line.substr(7, line.find(' ', 7) - 7)];
  }
  EXPECT_GT(types.size(), 20u);
  for (const auto& [name, n] : types) EXPECT_EQ(n, 1) << name;
}

TEST(MetricsTest, RenderShowsValues) {
  Metrics m;
  m.active_connections.set(42);
  m.local_rooms.inc();
  m.local_rooms.inc();
  m.local_rooms.dec();
  m.redis_up.set(1);
  m.messages_forwarded.inc(12543);
  m.schema_rejects.inc(7);
  m.drops(RateScope::kConnection).inc(2);
  m.drops(RateScope::kIp).inc(3);
  m.drops(RateScope::kRoom).inc(4);
  m.drops(RateScope::kConnectIp).inc(5);
  m.backpressure_closes.inc();
  m.redis_op(RedisOp::kPublish).observe(0.0004);
  m.fanout_duration.observe(0.00002);
  m.fanout_duration.observe(0.00003);
  m.rejected(RejectReason::kRoomFull).inc(9);
  m.crashed_members_released.inc(3);
  const auto s = Samples(m.render());
  EXPECT_EQ(s.at("cloudgaming_active_connections"), 42);
  EXPECT_EQ(s.at("cloudgaming_local_rooms"), 1);
  EXPECT_EQ(s.at("cloudgaming_redis_up"), 1);
  EXPECT_EQ(s.at("cloudgaming_circuit_breaker_open"), 0);
  EXPECT_EQ(s.at("cloudgaming_messages_forwarded_total"), 12543);
  EXPECT_EQ(s.at("cloudgaming_schema_rejects_total"), 7);
  EXPECT_EQ(s.at("cloudgaming_rate_limit_drops_total{scope=\"connection\"}"), 2);
  EXPECT_EQ(s.at("cloudgaming_rate_limit_drops_total{scope=\"ip\"}"), 3);
  EXPECT_EQ(s.at("cloudgaming_rate_limit_drops_total{scope=\"room\"}"), 4);
  EXPECT_EQ(s.at("cloudgaming_rate_limit_drops_total{scope=\"connect_ip\"}"), 5);
  EXPECT_EQ(s.at("cloudgaming_backpressure_closes_total"), 1);
  EXPECT_EQ(s.at("cloudgaming_redis_operation_duration_seconds_count{op=\"publish\"}"), 1);
  EXPECT_EQ(s.at("cloudgaming_redis_operation_duration_seconds_count{op=\"join\"}"), 0);
  EXPECT_EQ(
      s.at("cloudgaming_redis_operation_duration_seconds_bucket{op=\"publish\",le=\"0.0005\"}"), 1);
  EXPECT_EQ(s.at("cloudgaming_fanout_duration_seconds_bucket{le=\"2.5e-05\"}"), 1);
  EXPECT_EQ(s.at("cloudgaming_fanout_duration_seconds_bucket{le=\"5e-05\"}"), 2);
  EXPECT_EQ(s.at("cloudgaming_fanout_duration_seconds_count"), 2);
  EXPECT_EQ(s.at("cloudgaming_connections_rejected_total{reason=\"room_full\"}"), 9);
  EXPECT_EQ(s.at("cloudgaming_connections_rejected_total{reason=\"draining\"}"), 0);
  EXPECT_EQ(s.at("cloudgaming_crashed_members_released_total"), 3);
}

TEST(MetricsTest, SignalingNamesCarryTheSameValuesWithTheDeployedServersBuckets) {
  Metrics m;
  m.active_connections.set(42);
  m.local_rooms.set(3);
  m.redis_up.set(1);
  m.messages_forwarded.inc(12543);
  m.schema_rejects.inc(7);
  m.drops(RateScope::kConnection).inc(2);
  m.drops(RateScope::kIp).inc(3);
  m.drops(RateScope::kRoom).inc(4);
  m.drops(RateScope::kConnectIp).inc(5);  // refused connections, not messages
  m.backpressure_closes.inc();
  m.redis_op(RedisOp::kPublish).observe(0.0004);
  m.redis_op(RedisOp::kJoin).observe(0.003);
  m.redis_op(RedisOp::kJoin).observe(2.0);
  m.fanout_duration.observe(0.00002);
  m.fanout_duration.observe(0.0008);
  m.fanout_duration.observe(0.2);
  const auto s = Samples(m.render(MetricNames::kBoth));
  for (const char* name : {"active_connections", "local_rooms", "redis_up", "circuit_breaker_open",
                           "messages_forwarded_total", "backpressure_closes_total"}) {
    EXPECT_EQ(s.at(std::string("signaling_") + name), s.at(std::string("cloudgaming_") + name))
        << name;
  }
  EXPECT_EQ(s.at("signaling_schema_rejections_total"), 7);
  EXPECT_EQ(s.at("signaling_rate_limit_drops_total"), 2 + 3 + 4);
  // One Redis histogram over every operation, buckets 0.001..1.
  EXPECT_EQ(s.at("signaling_redis_cmd_latency_seconds_bucket{le=\"0.001\"}"), 1);
  EXPECT_EQ(s.at("signaling_redis_cmd_latency_seconds_bucket{le=\"0.005\"}"), 2);
  EXPECT_EQ(s.at("signaling_redis_cmd_latency_seconds_bucket{le=\"1\"}"), 2);
  EXPECT_EQ(s.at("signaling_redis_cmd_latency_seconds_bucket{le=\"+Inf\"}"), 3);
  EXPECT_EQ(s.at("signaling_redis_cmd_latency_seconds_count"), 3);
  EXPECT_NEAR(s.at("signaling_redis_cmd_latency_seconds_sum"), 2.0034, 1e-6);
  EXPECT_EQ(s.count("signaling_redis_cmd_latency_seconds_bucket{le=\"1e-05\"}"), 0u);
  // Fan-out, buckets 0.0005..0.05.
  EXPECT_EQ(s.at("signaling_fanout_latency_seconds_bucket{le=\"0.0005\"}"), 1);
  EXPECT_EQ(s.at("signaling_fanout_latency_seconds_bucket{le=\"0.001\"}"), 2);
  EXPECT_EQ(s.at("signaling_fanout_latency_seconds_bucket{le=\"0.05\"}"), 2);
  EXPECT_EQ(s.at("signaling_fanout_latency_seconds_bucket{le=\"+Inf\"}"), 3);
  EXPECT_EQ(s.at("signaling_fanout_latency_seconds_count"), 3);
}

TEST(MetricsTest, MetricsNamesPicksTheSpecsNamesTheDeployedOnesOrBoth) {
  Metrics m;
  const auto cloud = Samples(m.render(MetricNames::kCloudgaming));
  const auto sig = Samples(m.render(MetricNames::kSignaling));
  EXPECT_EQ(cloud.count("cloudgaming_active_connections"), 1u);
  EXPECT_EQ(cloud.count("signaling_active_connections"), 0u);
  EXPECT_EQ(sig.count("signaling_active_connections"), 1u);
  EXPECT_EQ(sig.count("cloudgaming_active_connections"), 0u);
  // Metrics the deployed server never had keep their one name either way.
  EXPECT_EQ(sig.count("cloudgaming_resume_resyncs_total"), 1u);
  EXPECT_EQ(sig.count("process_resident_memory_bytes"), 1u);
}

TEST(MetricsTest, EveryRedisOpHasItsSeries) {
  Metrics m;
  const auto s = Samples(m.render());
  for (const char* op : {"join", "leave", "publish", "rate_limit", "ping", "subscribe"}) {
    EXPECT_EQ(s.count(std::string("cloudgaming_redis_operation_duration_seconds_count{op=\"") + op +
                      "\"}"),
              1u)
        << op;
  }
}

TEST(MetricsTest, ProcessGaugesHaveRealValues) {
  Metrics m;
  const auto s = Samples(m.render());
  EXPECT_GT(s.at("process_resident_memory_bytes"), 0);
  EXPECT_GT(s.at("process_virtual_memory_bytes"), 0);
  EXPECT_GT(s.at("process_open_fds"), 0);
  EXPECT_GT(s.at("process_max_fds"), 0);
  EXPECT_GE(s.at("process_cpu_seconds_total"), 0);
  EXPECT_GT(s.at("process_start_time_seconds"), 1.6e9);  // seconds since epoch, after 2020
}

TEST(MetricsTest, GlobalInstanceIsShared) {
  EXPECT_EQ(&metrics(), &metrics());
}

}  // namespace
}  // namespace sigsrv
