// Helpers shared by the resumable-session tests: JSON reads of a test client, resume URLs.
#pragma once

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "ws_client.hpp"

namespace testing_support {

// Connects with `query` (after "/?"); null and a test failure when the upgrade fails.
inline std::unique_ptr<WsClient> connect_to(uint16_t port, const std::string& query) {
  std::string err;
  auto c = WsClient::connect(port, "/?" + query, {}, &err);
  EXPECT_TRUE(c) << query << ": " << err;
  return c;
}

inline std::string offer(const std::string& sdp) {
  return R"({"type":"offer","sdp":")" + sdp + R"("})";
}

// The next message as JSON (null on timeout or close).
inline boost::json::value next(WsClient& c, std::chrono::milliseconds timeout = 3000ms) {
  auto text = c.recv(timeout);
  if (!text) return nullptr;
  return boost::json::parse(*text);
}

inline std::string action_of(const boost::json::value& v) {
  if (!v.is_object() || !v.as_object().contains("action")) return {};
  return std::string(v.at("action").as_string());
}

// -1 when the message carries no seq.
inline int64_t seq_of(const boost::json::value& v) {
  return v.is_object() && v.as_object().contains("seq") ? v.at("seq").as_int64() : -1;
}

inline std::string sdp_of(const boost::json::value& v) {
  return v.is_object() && v.as_object().contains("sdp") ? std::string(v.at("sdp").as_string())
                                                        : std::string();
}

inline std::string resume_query(const std::string& room, const std::string& token,
                                int64_t last_seq) {
  return "roomId=" + room + "&resume=" + token + "&lastSeq=" + std::to_string(last_seq);
}

// A resumable session as its client knows it after the welcome.
struct ResumableClient {
  std::unique_ptr<WsClient> ws;
  std::string client_id;
  std::string token;
};

// Joins `room` with resume=1 and reads the welcome (which carries no seq).
inline ResumableClient open_session(uint16_t port, const std::string& room) {
  ResumableClient s;
  s.ws = connect_to(port, "roomId=" + room + "&resume=1");
  if (!s.ws) return s;
  const auto welcome = next(*s.ws);
  EXPECT_EQ(action_of(welcome), "welcome") << boost::json::serialize(welcome);
  if (action_of(welcome) != "welcome") return s;
  const auto& p = welcome.at("payload");
  s.client_id = std::string(p.at("clientId").as_string());
  s.token = std::string(p.at("resumeToken").as_string());
  EXPECT_EQ(seq_of(welcome), -1) << "the welcome itself is not numbered";
  return s;
}

}  // namespace testing_support
