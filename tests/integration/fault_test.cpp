// The exception boundaries: a throw in a session's handler closes that session alone with 1011
// (counted, logged) and its loop goes on; a throw outside any session stops the process with a
// fatal log and exit code 70. Faults are injected by markers compiled into test builds only
// (CMake SIGNAL_FAULT_INJECTION, on in scripts/test.sh).
#include <gtest/gtest.h>

#include "admission.hpp"
#include "harness.hpp"
#include "ws_client.hpp"

using namespace testing_support;

namespace {

#ifndef SIGNAL_FAULT_INJECTION
#define SKIP_WITHOUT_INJECTION() \
  GTEST_SKIP() << "configure with -DSIGNAL_FAULT_INJECTION=ON (scripts/test.sh does)"
#else
#define SKIP_WITHOUT_INJECTION() (void)0
#endif

TEST(Fault, AThrowInASessionClosesItWith1011AndTheLoopGoesOn) {
  SKIP_WITHOUT_INJECTION();
  // One loop: the faulting session shares it with everyone else here.
  auto server = ServerProcess::start(relaxed_limits({{"THREADS", "1"}}));
  ASSERT_TRUE(server);
  auto a = join(server->port(), "f1");
  auto b = join(server->port(), "f1");
  auto c = join(server->port(), "f2");
  auto d = join(server->port(), "f2");
  ASSERT_TRUE(a && b && c && d);
  ASSERT_EQ(admission(*d), "admitted");
  a->send(R"({"type":"offer","sdp":"fault-inject:session"})");
  auto closed = a->wait_close();
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->code, 1011);
  EXPECT_EQ(closed->reason, "Internal error");
  EXPECT_EQ(b->recv(), R"({"type":"peer-disconnected"})") << "its peer hears it left";
  EXPECT_EQ(scrape(server->port(), "cloudgaming_session_faults_total"), 1.0);
  EXPECT_TRUE(server->wait_for_output("injected session fault"));
  EXPECT_NE(server->output().find("Closing a connection whose handling failed"), std::string::npos);
  // The loop goes on: other rooms relay, and newcomers join the faulted one.
  c->send(R"({"type":"answer","sdp":"still here"})");
  EXPECT_EQ(d->recv(), R"({"type":"answer","sdp":"still here"})");
  auto e = join(server->port(), "f1");
  ASSERT_TRUE(e);
  ASSERT_EQ(admission(*e), "admitted");
  e->send(R"({"type":"offer","sdp":"after"})");
  EXPECT_EQ(b->recv(), R"({"type":"offer","sdp":"after"})");
  EXPECT_TRUE(server->running());
}

TEST(Fault, AThrowOutsideAnySessionStopsTheProcessWithAFatalLog) {
  SKIP_WITHOUT_INJECTION();
  auto server = ServerProcess::start(relaxed_limits());
  ASSERT_TRUE(server);
  auto a = join(server->port(), "f3");
  ASSERT_TRUE(a);
  a->send(R"({"type":"offer","sdp":"fault-inject:loop"})");
  // Signal 0 only checks that it exists: this waits for the process to exit on its own.
  EXPECT_EQ(server->stop(0, 5000ms), 70);
  const std::string out = server->output();
  EXPECT_NE(out.find("Unhandled failure on an event loop; exiting"), std::string::npos) << out;
  EXPECT_NE(out.find("injected loop fault"), std::string::npos) << out;
}

}  // namespace
