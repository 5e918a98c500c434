// RFC 6455 conformance against a raw-socket client: fragmentation, control frames between
// fragments, UTF-8 validation, reserved bits and opcodes, masking, control frame limits, close
// codes and arbitrary TCP segmentation. A client that breaks the protocol is failed with the code
// RFC 6455 calls for (section 7.4.1), leaves its room like any departing member, and nobody else
// notices.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "harness.hpp"
#include "raw_ws.hpp"
#include "ws_client.hpp"

using namespace testing_support;

namespace {

constexpr uint8_t kFin = RawWs::kFin;
constexpr uint8_t kRsv1 = 0x40, kRsv2 = 0x20, kRsv3 = 0x10;

std::unique_ptr<RawWs> raw_join(uint16_t port, const std::string& room) {
  auto c = RawWs::connect(port, "/?roomId=" + room);
  EXPECT_TRUE(c) << "raw upgrade failed";
  return c;
}

std::string offer(const std::string& sdp) {
  return R"({"type":"offer","sdp":")" + sdp + R"("})";
}

// The server stays up for everyone else: a fresh pair in another room relays.
void expect_server_serves_others(ServerProcess& server, const std::string& room) {
  auto a = join(server.port(), room);
  auto b = join(server.port(), room);
  ASSERT_TRUE(a && b);
  a->send(offer("still-up"));
  EXPECT_EQ(b->recv(), offer("still-up"));
  EXPECT_TRUE(server.running());
}

// Joins `room` as a well-behaved peer and as a raw client (checked to relay), sends `bytes` from
// the raw client (one byte per send() when `bytewise`), and expects the server to fail it with
// `code`: a close frame, then the end of the TCP connection. The raw client then closes its
// socket, as a client does once the server has closed. Its peer hears it left, its seat is free
// again, and another room is unaffected.
void expect_failed_with(ServerProcess& server, const std::string& room, const std::string& bytes,
                        int code, bool bytewise = false) {
  SCOPED_TRACE("room " + room);
  auto peer = join(server.port(), room);
  auto raw = raw_join(server.port(), room);
  ASSERT_TRUE(peer && raw);
  ASSERT_TRUE(raw->send_frame(kFin | RawWs::kText, offer("before")));
  ASSERT_EQ(peer->recv(), offer("before")) << "the raw client must be a working member first";

  if (bytewise) {
    // The server may fail the connection, and close it, before the last byte is out.
    raw->send_bytewise(bytes);
  } else {
    ASSERT_TRUE(raw->send_all(bytes));
  }
  auto close = raw->next_close();
  ASSERT_TRUE(close) << "no close frame from the server";
  EXPECT_EQ(close->close_code(), code);
  EXPECT_TRUE(close->fin);
  EXPECT_EQ(close->rsv, 0);
  EXPECT_TRUE(raw->wait_eof()) << "the server kept the TCP connection open after failing it";
  raw->close_socket();

  EXPECT_EQ(peer->recv(5s), R"({"type":"peer-disconnected"})");
  auto next = join(server.port(), room);  // the seat is free again
  ASSERT_TRUE(next);
  next->send(offer("after"));
  EXPECT_EQ(peer->recv(), offer("after"));
  expect_server_serves_others(server, room + "-others");
}

}  // namespace

// (1) A text message in fragments, with a ping between them, arrives whole at the peer; the ping
// is answered at once with its own payload.
TEST(WsConformance, FragmentedTextWithPingBetweenIsRelayedWholeAndPingAnswered) {
  auto server = ServerProcess::start(relaxed_limits());
  ASSERT_TRUE(server);
  auto peer = join(server->port(), "frag");
  auto raw = raw_join(server->port(), "frag");
  ASSERT_TRUE(peer && raw);

  ASSERT_TRUE(raw->send_frame(RawWs::kText, R"({"type":"offer",)"));
  ASSERT_TRUE(raw->send_frame(kFin | RawWs::kPing, "mid-ping"));
  auto pong = raw->next();
  ASSERT_TRUE(pong) << "no pong while a fragmented message is open";
  EXPECT_EQ(pong->opcode, RawWs::kPong);
  EXPECT_TRUE(pong->fin);
  EXPECT_EQ(pong->payload, "mid-ping");
  // Nothing reaches the peer before the last fragment: its next message is the whole one.

  // An unsolicited pong and an empty fragment are legal between fragments too. "é" is split
  // between two fragments: UTF-8 is checked across frame boundaries, not per frame.
  ASSERT_TRUE(raw->send_frame(kFin | RawWs::kPong, "unsolicited"));
  ASSERT_TRUE(raw->send_frame(RawWs::kCont, ""));
  ASSERT_TRUE(raw->send_frame(RawWs::kCont, "\"sdp\":\"v=0 fragmented \xC3"));
  ASSERT_TRUE(raw->send_frame(kFin | RawWs::kCont, "\xA9\"}"));
  EXPECT_EQ(peer->recv(), offer("v=0 fragmented \xC3\xA9"));

  // The next message starts clean; a 125-byte ping (the largest allowed) is answered whole.
  ASSERT_TRUE(raw->send_frame(kFin | RawWs::kText, offer("next")));
  EXPECT_EQ(peer->recv(), offer("next"));
  const std::string big_ping(125, 'p');
  ASSERT_TRUE(raw->send_frame(kFin | RawWs::kPing, big_ping));
  pong = raw->next();
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->opcode, RawWs::kPong);
  EXPECT_EQ(pong->payload, big_ping);

  // Binary frames are read as text (PROTOCOL.md section 2), fragmented ones too.
  ASSERT_TRUE(raw->send_frame(RawWs::kBinary, R"({"type":"answer",)"));
  ASSERT_TRUE(raw->send_frame(kFin | RawWs::kCont, R"("sdp":"bin"})"));
  EXPECT_EQ(peer->recv(), R"({"type":"answer","sdp":"bin"})");
  EXPECT_TRUE(raw->send_frame(kFin | RawWs::kClose, RawWs::close_body(1000)));
  auto close = raw->next_close();
  ASSERT_TRUE(close);
  EXPECT_EQ(close->close_code(), 1000);
}

// (2) Text that is not UTF-8 fails the connection with 1007.
TEST(WsConformance, InvalidUtf8InTextClosesWith1007) {
  auto server = ServerProcess::start(relaxed_limits());
  ASSERT_TRUE(server);
  const std::string bad_char = offer("x\xC3\x28y");  // a lead byte followed by a non-continuation
  expect_failed_with(*server, "utf8-single", RawWs::frame(kFin | RawWs::kText, bad_char), 1007);
  expect_failed_with(*server, "utf8-overlong", RawWs::frame(kFin | RawWs::kText, offer("\xC0\xAF")),
                     1007);
  expect_failed_with(*server, "utf8-surrogate",
                     RawWs::frame(kFin | RawWs::kText, offer("\xED\xA0\x80")), 1007);
  expect_failed_with(*server, "utf8-above-max",
                     RawWs::frame(kFin | RawWs::kText, offer("\xF4\x90\x80\x80")), 1007);
  // In a later fragment, and a sequence cut short by the end of the message.
  expect_failed_with(*server, "utf8-fragment",
                     RawWs::frame(RawWs::kText, R"({"type":"offer",)") +
                         RawWs::frame(kFin | RawWs::kCont, "\"sdp\":\"\xFF\"}"),
                     1007);
  expect_failed_with(*server, "utf8-truncated",
                     RawWs::frame(RawWs::kText, R"({"type":"offer","sdp":"x"})") +
                         RawWs::frame(kFin | RawWs::kCont, "\xE2\x82"),
                     1007);
}

// (3) Reserved bits without a negotiated extension, and reserved opcodes, fail with 1002.
TEST(WsConformance, ReservedBitsAndUnknownOpcodesCloseWith1002) {
  auto server = ServerProcess::start(relaxed_limits());
  ASSERT_TRUE(server);
  expect_failed_with(*server, "rsv1", RawWs::frame(kFin | kRsv1 | RawWs::kText, offer("rsv")),
                     1002);
  expect_failed_with(*server, "rsv2", RawWs::frame(kFin | kRsv2 | RawWs::kText, offer("rsv")),
                     1002);
  expect_failed_with(*server, "rsv3", RawWs::frame(kFin | kRsv3 | RawWs::kText, offer("rsv")),
                     1002);
  expect_failed_with(*server, "rsv-ping", RawWs::frame(kFin | kRsv1 | RawWs::kPing, "p"), 1002);
  for (uint8_t op : {0x3, 0x7, 0xB, 0xF}) {
    expect_failed_with(*server, "opcode-" + std::to_string(op), RawWs::frame(kFin | op, "x"), 1002);
  }
}

// Frames out of sequence fail with 1002: a continuation with no message open, a new data frame
// while one is open.
TEST(WsConformance, FramesOutOfSequenceCloseWith1002) {
  auto server = ServerProcess::start(relaxed_limits());
  ASSERT_TRUE(server);
  expect_failed_with(*server, "lone-cont", RawWs::frame(kFin | RawWs::kCont, offer("c")), 1002);
  expect_failed_with(
      *server, "text-in-text",
      RawWs::frame(RawWs::kText, R"({"type":)") + RawWs::frame(kFin | RawWs::kText, offer("again")),
      1002);
}

// (4) A client frame without a mask fails with 1002 (RFC 6455 section 5.1).
TEST(WsConformance, UnmaskedClientFrameClosesWith1002) {
  auto server = ServerProcess::start(relaxed_limits());
  ASSERT_TRUE(server);
  expect_failed_with(*server, "unmasked-text",
                     RawWs::frame(kFin | RawWs::kText, offer("plain"), false), 1002);
  expect_failed_with(*server, "unmasked-ping", RawWs::frame(kFin | RawWs::kPing, "p", false), 1002);
  expect_failed_with(*server, "unmasked-close",
                     RawWs::frame(kFin | RawWs::kClose, RawWs::close_body(1000), false), 1002);
}

// (5) Control frames carry at most 125 bytes and are never fragmented (RFC 6455 section 5.5).
TEST(WsConformance, OversizeOrFragmentedControlFrameClosesWith1002) {
  auto server = ServerProcess::start(relaxed_limits());
  ASSERT_TRUE(server);
  expect_failed_with(*server, "ping-126", RawWs::frame(kFin | RawWs::kPing, std::string(126, 'p')),
                     1002);
  expect_failed_with(*server, "pong-126", RawWs::frame(kFin | RawWs::kPong, std::string(126, 'p')),
                     1002);
  expect_failed_with(
      *server, "close-126",
      RawWs::frame(kFin | RawWs::kClose, RawWs::close_body(1000, std::string(124, 'r'))), 1002);
  expect_failed_with(*server, "ping-no-fin", RawWs::frame(RawWs::kPing, "p"), 1002);
}

// (6) A close frame with a code RFC 6455 does not allow on the wire fails with 1002 (section
// 7.4: 0-999 unused, 1004-1006 and 1015 reserved or never sent, 1016-2999 reserved for the
// protocol, nothing defined above 4999), and so does a one-byte body. A valid code is echoed.
TEST(WsConformance, CloseFrameWithInvalidCodeClosesWith1002) {
  auto server = ServerProcess::start(relaxed_limits());
  ASSERT_TRUE(server);
  for (int code : {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535}) {
    expect_failed_with(*server, "close-" + std::to_string(code),
                       RawWs::frame(kFin | RawWs::kClose, RawWs::close_body(code, "bye")), 1002);
  }
  expect_failed_with(*server, "close-one-byte", RawWs::frame(kFin | RawWs::kClose, "\x03"), 1002);
}

TEST(WsConformance, CloseFrameWithValidCodeIsEchoed) {
  auto server = ServerProcess::start(relaxed_limits());
  ASSERT_TRUE(server);
  for (int code : {1000, 1001, 1003, 1011, 3000, 4000, 4999}) {
    expect_failed_with(*server, "close-" + std::to_string(code),
                       RawWs::frame(kFin | RawWs::kClose, RawWs::close_body(code, "bye")), code);
  }
  // No body: the server answers 1000 (RFC 6455 section 7.4.1 lets it choose; 1005 may not be
  // sent).
  expect_failed_with(*server, "close-empty", RawWs::frame(kFin | RawWs::kClose, ""), 1000);
}

// (7) Frames may arrive in any segmentation: one byte per send() for headers of every length
// form, for a control frame between fragments, and for a protocol violation.
TEST(WsConformance, FramesSplitOneBytePerSegmentAreReadWhole) {
  auto server = ServerProcess::start(relaxed_limits());
  ASSERT_TRUE(server);
  auto peer = join(server->port(), "bytewise");
  auto raw = raw_join(server->port(), "bytewise");
  ASSERT_TRUE(peer && raw);

  // 7-bit length.
  ASSERT_TRUE(raw->send_bytewise(RawWs::frame(kFin | RawWs::kText, offer("short"))));
  EXPECT_EQ(peer->recv(), offer("short"));
  // 16-bit length, header and payload all one byte per segment.
  const std::string medium = offer(std::string(300, 'm'));
  ASSERT_TRUE(raw->send_bytewise(RawWs::frame(kFin | RawWs::kText, medium)));
  EXPECT_EQ(peer->recv(), medium);
  // 64-bit length: the 14-byte header one byte per segment, then the payload.
  const std::string large = offer(std::string(70000, 'l'));
  const std::string frame = RawWs::frame(kFin | RawWs::kText, large);
  ASSERT_TRUE(raw->send_bytewise(frame.substr(0, 14)));
  ASSERT_TRUE(raw->send_all(frame.substr(14)));
  EXPECT_EQ(peer->recv(), large);
  // Fragments with a ping between them, every byte its own segment.
  ASSERT_TRUE(raw->send_bytewise(RawWs::frame(RawWs::kText, R"({"type":"answer",)") +
                                 RawWs::frame(kFin | RawWs::kPing, "split") +
                                 RawWs::frame(kFin | RawWs::kCont, R"("sdp":"pieces"})")));
  auto pong = raw->next();
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->opcode, RawWs::kPong);
  EXPECT_EQ(pong->payload, "split");
  EXPECT_EQ(peer->recv(), R"({"type":"answer","sdp":"pieces"})");
  // A close frame one byte per segment is answered like any other.
  ASSERT_TRUE(raw->send_bytewise(RawWs::frame(kFin | RawWs::kClose, RawWs::close_body(4000))));
  auto close = raw->next_close();
  ASSERT_TRUE(close);
  EXPECT_EQ(close->close_code(), 4000);
  EXPECT_TRUE(raw->wait_eof());
  raw->close_socket();
  EXPECT_EQ(peer->recv(5s), R"({"type":"peer-disconnected"})");
}

// A pong the heartbeat waits for is taken off the socket between messages; whatever shares its
// segment (messages, another pong) is relayed in order, and a pong alone, or one byte per segment,
// keeps the client alive round after round. The first round's batch is larger than one socket
// read between messages takes, so it is read in several.
TEST(WsConformance, PongsSharingSegmentsWithMessagesKeepTheClientAndLoseNothing) {
  auto server = ServerProcess::start(relaxed_limits({{"HEARTBEAT_INTERVAL_MS", "500"}}));
  ASSERT_TRUE(server);
  auto peer = join(server->port(), "pongs");
  auto raw = raw_join(server->port(), "pongs");
  ASSERT_TRUE(peer && raw);
  const auto pong_for_next_ping = [&raw]() -> std::string {
    auto ping = raw->next(5s);
    if (!ping || ping->opcode != RawWs::kPing) return {};
    return RawWs::frame(kFin | RawWs::kPong, ping->payload);
  };
  const auto text = [](const std::string& sdp) {
    return RawWs::frame(kFin | RawWs::kText, offer(sdp));
  };

  // Round 1: the pong, then 12 messages of about 330 bytes, in one write.
  std::string pong = pong_for_next_ping();
  ASSERT_FALSE(pong.empty()) << "no ping from the server";
  std::string batch = pong;
  for (int i = 0; i < 12; ++i) batch += text(std::to_string(i) + std::string(300, 'c'));
  ASSERT_TRUE(raw->send_all(batch));
  for (int i = 0; i < 12; ++i)
    EXPECT_EQ(peer->recv(), offer(std::to_string(i) + std::string(300, 'c')));
  // Round 2: the pong alone, the message in a later write.
  pong = pong_for_next_ping();
  ASSERT_FALSE(pong.empty()) << "cut after round 1";
  ASSERT_TRUE(raw->send_all(pong));
  ASSERT_TRUE(raw->send_all(text("round-2")));
  EXPECT_EQ(peer->recv(), offer("round-2"));
  // Round 3: the pong one byte per segment.
  pong = pong_for_next_ping();
  ASSERT_FALSE(pong.empty()) << "cut after round 2";
  ASSERT_TRUE(raw->send_bytewise(pong));
  ASSERT_TRUE(raw->send_all(text("round-3")));
  EXPECT_EQ(peer->recv(), offer("round-3"));
  // Round 4: two pongs and a message in one write.
  pong = pong_for_next_ping();
  ASSERT_FALSE(pong.empty()) << "cut after round 3";
  ASSERT_TRUE(raw->send_all(pong + pong + text("round-4")));
  EXPECT_EQ(peer->recv(), offer("round-4"));
  // A fifth ping proves round 4's answer counted.
  pong = pong_for_next_ping();
  ASSERT_FALSE(pong.empty()) << "cut after round 4";
  ASSERT_TRUE(raw->send_all(pong + text("round-5")));
  EXPECT_EQ(peer->recv(), offer("round-5"));
  EXPECT_EQ(scrape(server->port(), "cloudgaming_heartbeat_terminations_total"), 0.0);
  EXPECT_EQ(scrape(server->port(), "cloudgaming_active_connections"), 2.0);
}

TEST(WsConformance, ViolationsSplitOneBytePerSegmentStillFail) {
  auto server = ServerProcess::start(relaxed_limits());
  ASSERT_TRUE(server);
  expect_failed_with(*server, "bytewise-unmasked",
                     RawWs::frame(kFin | RawWs::kText, offer("plain"), false), 1002, true);
  expect_failed_with(*server, "bytewise-utf8", RawWs::frame(kFin | RawWs::kText, offer("\xFE")),
                     1007, true);
  expect_failed_with(*server, "bytewise-close",
                     RawWs::frame(kFin | RawWs::kClose, RawWs::close_body(5000)), 1002, true);
}

// (8) Many bad clients at once, in many rooms, leave the server serving everyone else.
TEST(WsConformance, BadClientsDoNotDisturbOthers) {
  auto server = ServerProcess::start(relaxed_limits());
  ASSERT_TRUE(server);
  auto a = join(server->port(), "bystanders");
  auto b = join(server->port(), "bystanders");
  ASSERT_TRUE(a && b);
  const std::vector<std::string> violations = {
      RawWs::frame(kFin | RawWs::kText, offer("\xC3\x28")),
      RawWs::frame(kFin | kRsv2 | RawWs::kText, offer("x")),
      RawWs::frame(kFin | 0xB, "x"),
      RawWs::frame(kFin | RawWs::kText, offer("x"), false),
      RawWs::frame(kFin | RawWs::kPing, std::string(126, 'p')),
      RawWs::frame(kFin | RawWs::kClose, RawWs::close_body(1005)),
      RawWs::frame(kFin | RawWs::kClose, RawWs::close_body(5000)),
  };
  std::vector<std::unique_ptr<RawWs>> bad;
  for (std::size_t i = 0; i < violations.size(); ++i) {
    bad.push_back(raw_join(server->port(), "bad-" + std::to_string(i)));
    ASSERT_TRUE(bad.back());
  }
  for (std::size_t i = 0; i < violations.size(); ++i) ASSERT_TRUE(bad[i]->send_all(violations[i]));
  for (int round = 0; round < 20; ++round) {
    a->send(offer("r" + std::to_string(round)));
    EXPECT_EQ(b->recv(), offer("r" + std::to_string(round)));
  }
  for (auto& c : bad) {
    auto close = c->next_close();
    ASSERT_TRUE(close);
    EXPECT_TRUE(close->close_code() == 1002 || close->close_code() == 1007) << close->close_code();
  }
  b->send(offer("end"));
  EXPECT_EQ(a->recv(), offer("end"));
  EXPECT_TRUE(server->running());
}

// (8) A client failed by the server, or one that sent its close frame, but keeps its socket open
// has left all the same: its peer hears at once, and the socket is cut after HANDSHAKE_TIMEOUT_MS
// (it does not hold a seat until the heartbeat notices).
TEST(WsConformance, ClientThatKeepsItsSocketAfterTheCloseLeavesAtOnceAndIsCut) {
  auto server = ServerProcess::start(relaxed_limits({{"HANDSHAKE_TIMEOUT_MS", "2500"}}));
  ASSERT_TRUE(server);
  const std::vector<std::pair<std::string, int>> cases = {
      {RawWs::frame(kFin | RawWs::kText, offer("x"), false), 1002},
      {RawWs::frame(kFin | RawWs::kText, offer("\xC3\x28")), 1007},
      {RawWs::frame(kFin | RawWs::kClose, RawWs::close_body(5000)), 1002},
      {RawWs::frame(kFin | RawWs::kClose, RawWs::close_body(1000)), 1000},
  };
  std::vector<std::unique_ptr<WsClient>> peers;
  std::vector<std::unique_ptr<RawWs>> lingering;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const std::string room = "linger-" + std::to_string(i);
    peers.push_back(join(server->port(), room));
    lingering.push_back(raw_join(server->port(), room));
    ASSERT_TRUE(peers.back() && lingering.back());
  }
  for (std::size_t i = 0; i < cases.size(); ++i) {
    ASSERT_TRUE(lingering[i]->send_all(cases[i].first));
  }
  for (std::size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i));
    auto close = lingering[i]->next_close();
    ASSERT_TRUE(close);
    EXPECT_EQ(close->close_code(), cases[i].second);
    EXPECT_EQ(peers[i]->recv(1500ms), R"({"type":"peer-disconnected"})")
        << "the member must leave when the server sends its close, not when the socket ends";
  }
  // Only the peers remain once the deadline has cut the lingering sockets.
  EXPECT_TRUE(wait_until(
      [&] {
        return scrape(server->port(), "cloudgaming_active_connections") ==
               static_cast<double>(peers.size());
      },
      6000ms));
  expect_server_serves_others(*server, "linger-others");
}

// After its close frame the server sends nothing more (RFC 6455 section 5.5.1), even while a
// peer's messages keep arriving for the closing client.
TEST(WsConformance, NoFrameFollowsTheServersCloseFrame) {
  auto server = ServerProcess::start(relaxed_limits(), {"--threads", "2"});
  ASSERT_TRUE(server);
  for (int round = 0; round < 20; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const std::string room = "after-close-" + std::to_string(round);
    auto peer = join(server->port(), room);
    auto raw = raw_join(server->port(), room);
    ASSERT_TRUE(peer && raw);
    std::vector<std::string> burst;
    for (int i = 0; i < 300; ++i) burst.push_back(offer("m" + std::to_string(i)));
    peer->send_all(burst);
    // Closes once the relays are flowing, while more are on their way.
    auto first = raw->next();
    ASSERT_TRUE(first);
    ASSERT_TRUE(raw->send_frame(kFin | RawWs::kClose, RawWs::close_body(1000)));
    bool closed = false;
    int after_close = 0;
    while (auto f = raw->next(3s)) {
      if (closed) ++after_close;
      if (f->opcode == RawWs::kClose) closed = true;
    }
    EXPECT_TRUE(closed);
    EXPECT_TRUE(raw->eof());
    EXPECT_EQ(after_close, 0) << "frames after the close frame";
  }
}
