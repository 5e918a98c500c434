// Resumable sessions' pure core: lastSeq, tokens, the numbered log, the member lifecycle.
#include "signaling/resume.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>

namespace sigsrv {
namespace {

using namespace std::chrono_literals;
using Clock = MemberLifecycle::Clock;

TEST(ResumeLastSeq, AbsentIsZeroDigitsParseAnythingElseIsRefused) {
  EXPECT_EQ(parse_last_seq(std::nullopt), 0u);
  EXPECT_EQ(parse_last_seq(std::string("0")), 0u);
  EXPECT_EQ(parse_last_seq(std::string("42")), 42u);
  EXPECT_EQ(parse_last_seq(std::string("18446744073709551615")), UINT64_MAX);
  for (const char* bad : {"", "-1", "+1", "1.5", "1e3", " 1", "0x10", "abc", "18446744073709551616",
                          "999999999999999999999"}) {
    EXPECT_FALSE(parse_last_seq(std::string(bad))) << bad;
  }
}

TEST(ResumeToken, VerifiesForItsRoomAndKeyOnly) {
  const std::string id = random_session_id();
  ASSERT_EQ(id.size(), 32u);
  EXPECT_NE(id, random_session_id());
  const std::string token = mint_resume_token("fleet-key", "room-a", id);
  EXPECT_EQ(verify_resume_token("fleet-key", token, "room-a"), id);
  EXPECT_FALSE(verify_resume_token("fleet-key", token, "room-b")) << "foreign room";
  EXPECT_FALSE(verify_resume_token("other-key", token, "room-a")) << "another fleet's key";
}

TEST(ResumeToken, ForgedOrMangledTokensAreRefused) {
  const std::string id = random_session_id();
  const std::string token = mint_resume_token("k", "r", id);
  std::string flipped = token;
  flipped.back() = flipped.back() == '0' ? '1' : '0';
  EXPECT_FALSE(verify_resume_token("k", flipped, "r"));
  std::string other_session = token;
  other_session[0] = other_session[0] == 'a' ? 'b' : 'a';
  EXPECT_FALSE(verify_resume_token("k", other_session, "r"));
  EXPECT_FALSE(verify_resume_token("k", token.substr(1), "r"));
  EXPECT_FALSE(verify_resume_token("k", token + "0", "r"));
  EXPECT_FALSE(verify_resume_token("k", "", "r"));
  EXPECT_FALSE(verify_resume_token("k", "1", "r"));
  std::string upper = token;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_FALSE(verify_resume_token("k", upper, "r"));
}

TEST(ResumeMessages, SeqIsTheLastMemberOfTheObject) {
  EXPECT_EQ(with_seq(R"({"type":"offer","sdp":"x"})", 7), R"({"type":"offer","sdp":"x","seq":7})");
  EXPECT_EQ(with_seq("{}", 1), R"({"seq":1})");
  const auto v = boost::json::parse(with_seq(peer_suspended_message("c:1"), 3));
  EXPECT_EQ(v.at("action").as_string(), "peer-suspended");
  EXPECT_EQ(v.at("payload").at("clientId").as_string(), "c:1");
  EXPECT_EQ(v.at("seq").as_int64(), 3);
  EXPECT_EQ(resumed_message(true, 5),
            R"({"type":"control","action":"resumed","payload":{"recovered":true,"received":5}})");
  EXPECT_EQ(resumed_message(false, 5),
            R"({"type":"control","action":"resumed","payload":{"recovered":false}})");
  const auto w = boost::json::parse(resumable_welcome_message("c:1", "r", 1, "s", "t", 20000));
  EXPECT_EQ(w.at("payload").at("sessionId").as_string(), "s");
  EXPECT_EQ(w.at("payload").at("resumeToken").as_string(), "t");
  EXPECT_EQ(w.at("payload").at("resumeWindowMs").as_int64(), 20000);
  EXPECT_EQ(w.at("payload").at("peers").as_int64(), 1);
}

TEST(SessionLog, NumbersGapFreeAndReplaysExactlyTheRest) {
  SessionLog log({256, 1 << 20});
  for (int i = 1; i <= 5; ++i) {
    auto text = log.append(R"({"type":"offer","sdp":"m)" + std::to_string(i) + R"("})");
    EXPECT_EQ(boost::json::parse(*text).at("seq").as_int64(), i);
  }
  EXPECT_EQ(log.last_seq(), 5u);
  auto rest = log.replay_after(2);
  ASSERT_TRUE(rest);
  ASSERT_EQ(rest->size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(boost::json::parse(*(*rest)[i]).at("seq").as_int64(), static_cast<int64_t>(i + 3));
  }
  auto none = log.replay_after(5);
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
  auto all = log.replay_after(0);
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 5u);
  EXPECT_FALSE(log.replay_after(6)) << "a seq never sent cannot have been received";
}

TEST(SessionLog, MessagesLostBeforeNumberingMakeEveryReplayIncomplete) {
  SessionLog log({256, 1 << 20});
  log.append(R"({"type":"offer","sdp":"m1"})");
  ASSERT_TRUE(log.replay_after(1));
  log.mark_lost();
  EXPECT_FALSE(log.replay_after(1)) << "even with nothing numbered since: something was dropped";
  EXPECT_FALSE(log.replay_after(0));
}

TEST(SessionLog, CountOverflowDropsOldestAndThenRefusesTheGap) {
  SessionLog log({3, 1 << 20});
  for (int i = 0; i < 5; ++i) log.append(R"({"type":"control","action":"x"})");
  EXPECT_EQ(log.kept(), 3u);
  EXPECT_FALSE(log.replay_after(0)) << "seqs 1-2 were dropped: no partial replay";
  EXPECT_FALSE(log.replay_after(1));
  auto rest = log.replay_after(2);
  ASSERT_TRUE(rest);
  EXPECT_EQ(rest->size(), 3u);
}

TEST(SessionLog, ByteOverflowKeepsTheNewestEvenWhenItAloneIsOver) {
  const std::string big = R"({"type":"offer","sdp":")" + std::string(100, 'x') + R"("})";
  SessionLog log({256, 300});  // each numbered message is 133 bytes
  log.append(big);
  log.append(big);
  EXPECT_EQ(log.kept(), 2u);
  log.append(big);
  EXPECT_EQ(log.kept(), 2u);
  EXPECT_LE(log.kept_bytes(), 300u);
  SessionLog tiny({256, 10});
  tiny.append(big);
  tiny.append(big);
  EXPECT_EQ(tiny.kept(), 1u);
  EXPECT_TRUE(tiny.replay_after(1));
  EXPECT_FALSE(tiny.replay_after(0));
}

TEST(MemberLifecycle, LostSocketSuspendsAndAResumeInsideTheWindowRejoins) {
  MemberLifecycle m(1000ms);
  const auto t0 = Clock::time_point{} + 1h;
  EXPECT_EQ(m.state(), MemberLifecycle::State::kAdmitted);
  m.joined();
  EXPECT_TRUE(m.socket_ended(MemberLifecycle::SocketEnd::kLost, t0));
  EXPECT_EQ(m.state(), MemberLifecycle::State::kSuspended);
  EXPECT_EQ(m.deadline(), t0 + 1000ms);
  EXPECT_FALSE(m.expire(t0 + 999ms));
  EXPECT_TRUE(m.resume(t0 + 999ms));
  EXPECT_EQ(m.state(), MemberLifecycle::State::kJoined);
  EXPECT_EQ(m.resumes(), 1u);
  EXPECT_FALSE(m.expire(t0 + 5s)) << "joined again: the old deadline no longer applies";
}

TEST(MemberLifecycle, WindowPassingEndsTheMemberAndNoResumeRevivesIt) {
  MemberLifecycle m(1000ms);
  const auto t0 = Clock::time_point{} + 1h;
  m.joined();
  ASSERT_TRUE(m.socket_ended(MemberLifecycle::SocketEnd::kLost, t0));
  EXPECT_FALSE(m.resume(t0 + 1000ms)) << "the window is over at the deadline";
  EXPECT_TRUE(m.expire(t0 + 1000ms));
  EXPECT_EQ(m.state(), MemberLifecycle::State::kLeft);
  EXPECT_FALSE(m.expire(t0 + 2000ms)) << "ends once";
  EXPECT_FALSE(m.resume(t0 + 1001ms));
}

TEST(MemberLifecycle, CloseFrameMeansLeftAndTakeoverOfALiveSocketIsAResume) {
  const auto t0 = Clock::time_point{} + 1h;
  MemberLifecycle closed(1000ms);
  closed.joined();
  EXPECT_FALSE(closed.socket_ended(MemberLifecycle::SocketEnd::kClientClosed, t0));
  EXPECT_EQ(closed.state(), MemberLifecycle::State::kLeft);
  EXPECT_FALSE(closed.resume(t0));

  MemberLifecycle live(1000ms);
  live.joined();
  EXPECT_TRUE(live.resume(t0)) << "the old socket has not been seen dead yet";
  EXPECT_EQ(live.state(), MemberLifecycle::State::kJoined);

  MemberLifecycle never_joined(1000ms);
  EXPECT_FALSE(never_joined.socket_ended(MemberLifecycle::SocketEnd::kLost, t0));
  EXPECT_EQ(never_joined.state(), MemberLifecycle::State::kLeft);
}

}  // namespace
}  // namespace sigsrv
