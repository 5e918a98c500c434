// Admission checks that wait on an answer instead of a quiet window.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "ws_client.hpp"

namespace testing_support {

// A message that fails the schema: the server answers its sender alone with kSchemaError.
inline constexpr char kProbe[] = R"({"type":"probe"})";
inline constexpr char kSchemaError[] = R"({"type":"control","action":"schema-error"})";

// How the server decided on a connection: nullopt when it admitted the client, else how it closed
// it (code -1 with a description when an unexpected message or nothing came).
//
// The server decides before it completes the upgrade and reads a client's messages only once the
// client is admitted; a refused client gets a close frame right after the 101. So the answer to a
// probe tells the two apart without waiting for a close that may never come: schema-error means
// admitted, a close means refused. For a client whose first message is the probe's answer (not
// one with events=1, and not one whose messages a rate limit drops). Counts one schema reject.
inline std::optional<CloseInfo> refusal(WsClient& c, std::chrono::milliseconds timeout = 5000ms) {
  c.send(kProbe);
  const std::optional<std::string> answer = c.recv(timeout);
  if (answer == kSchemaError) return std::nullopt;
  if (answer) return CloseInfo{-1, "a message instead of the probe's answer: " + *answer};
  if (std::optional<CloseInfo> closed = c.wait_close(1000ms)) return closed;
  return CloseInfo{-1, "no answer to the probe"};
}

// refusal() in words: "admitted", "close CODE 'REASON'", or what came instead.
inline std::string admission(WsClient& c, std::chrono::milliseconds timeout = 5000ms) {
  const std::optional<CloseInfo> r = refusal(c, timeout);
  if (!r) return "admitted";
  if (r->code == -1) return r->reason;
  return "close " + std::to_string(r->code) + " '" + r->reason + "'";
}

}  // namespace testing_support
