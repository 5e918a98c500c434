// Tests the ordered connect checks (PROTOCOL.md section 1) and the auth rows 8-10.
#include "signaling/admission.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace sigsrv {

// Readable failure messages for Rejection.
void PrintTo(const Rejection& r, std::ostream* os) {
  *os << r.code << " \"" << r.reason << "\"";
}

namespace {

class AdmissionTest : public ::testing::Test {
 protected:
  AdmissionTest() : origins_({"https://game.example.com"}) {
    good_params_.room_id = "room-1";
    // Facts of a request that passes every check under the strict policy below.
    ok_.has_host = true;
    ok_.params = &good_params_;
    ok_.is_tls = true;
    ok_.origin = "https://game.example.com";
    ok_.subprotocol_offered = true;
    strict_.shutdown_close_code = 1012;
    strict_.require_wss = true;
    strict_.origins = &origins_;
    strict_.subprotocol_required = true;
  }

  // Facts where every check from row 1 onward fails.
  ConnectFacts AllFailing() const {
    ConnectFacts f;
    f.draining = true;
    f.breaker_open = true;
    f.over_max_connections = true;
    f.has_host = false;
    f.params = &bad_params_;
    f.is_tls = false;
    f.forwarded_proto = "http";
    f.origin = "https://evil.example.org";
    f.subprotocol_offered = false;
    return f;
  }

  OriginMatcher origins_;
  ConnectParams good_params_;
  ConnectParams bad_params_;  // no valid room id
  ConnectFacts ok_;
  AdmissionPolicy strict_;
};

TEST_F(AdmissionTest, AllChecksPass) {
  EXPECT_EQ(check_before_auth(strict_, ok_), std::nullopt);
}

TEST_F(AdmissionTest, DefaultPolicyOnlyNeedsHostAndRoom) {
  ConnectFacts f;
  f.has_host = true;
  f.params = &good_params_;
  f.origin = "https://anything.example";
  EXPECT_EQ(check_before_auth(AdmissionPolicy{}, f), std::nullopt);
}

TEST_F(AdmissionTest, RowsFailIndividually) {
  {
    ConnectFacts f = ok_;
    f.draining = true;
    EXPECT_EQ(check_before_auth(strict_, f), (Rejection{1012, "Server draining"}));
  }
  {
    ConnectFacts f = ok_;
    f.breaker_open = true;
    EXPECT_EQ(check_before_auth(strict_, f), (Rejection{1013, "Service unavailable"}));
  }
  {
    ConnectFacts f = ok_;
    f.over_max_connections = true;
    EXPECT_EQ(check_before_auth(strict_, f), kAtCapacity);
  }
  {
    ConnectFacts f = ok_;
    f.has_host = false;
    EXPECT_EQ(check_before_auth(strict_, f), (Rejection{1008, "Malformed request"}));
  }
  {
    ConnectFacts f = ok_;
    f.params = &bad_params_;
    EXPECT_EQ(check_before_auth(strict_, f), (Rejection{1008, "Invalid roomId"}));
  }
  {
    ConnectFacts f = ok_;
    f.params = nullptr;
    EXPECT_EQ(check_before_auth(strict_, f), (Rejection{1008, "Invalid roomId"}));
  }
  {
    ConnectFacts f = ok_;
    f.is_tls = false;
    EXPECT_EQ(check_before_auth(strict_, f), (Rejection{1008, "WSS required"}));
  }
  {
    ConnectFacts f = ok_;
    f.origin = "https://evil.example.org";
    EXPECT_EQ(check_before_auth(strict_, f), (Rejection{1008, "Origin not allowed"}));
  }
  {
    ConnectFacts f = ok_;
    f.subprotocol_offered = false;
    EXPECT_EQ(check_before_auth(strict_, f), (Rejection{1008, "Subprotocol required"}));
  }
}

TEST_F(AdmissionTest, FirstFailingRowInContractOrderWins) {
  // Fix the failing rows one at a time, in contract order; the next row must then decide.
  ConnectFacts f = AllFailing();
  const std::vector<Rejection> expected = {{1012, "Server draining"},
                                           kBreakerOpen,
                                           kAtCapacity,
                                           kMalformed,
                                           kInvalidRoom,
                                           kWssRequired,
                                           kOriginNotAllowed,
                                           kSubprotocolRequired};
  std::vector<Rejection> seen;
  for (int step = 0; step < 9; ++step) {
    const auto r = check_before_auth(strict_, f);
    if (!r) break;
    seen.push_back(*r);
    switch (step) {
      case 0:
        f.draining = false;
        break;
      case 1:
        f.breaker_open = false;
        break;
      case 2:
        f.over_max_connections = false;
        break;
      case 3:
        f.has_host = true;
        break;
      case 4:
        f.params = &good_params_;
        break;
      case 5:
        f.forwarded_proto = "https";
        break;
      case 6:
        f.origin = "https://game.example.com";
        break;
      case 7:
        f.subprotocol_offered = true;
        break;
    }
  }
  EXPECT_EQ(seen, expected);
  EXPECT_EQ(check_before_auth(strict_, f), std::nullopt);
}

TEST_F(AdmissionTest, DrainingUsesConfiguredShutdownCode) {
  AdmissionPolicy p = strict_;
  p.shutdown_close_code = 4001;
  const auto r = check_before_auth(p, AllFailing());
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->code, 4001);
  EXPECT_EQ(r->reason, "Server draining");
  EXPECT_EQ(draining_rejection(1001), (Rejection{1001, "Server draining"}));
}

TEST_F(AdmissionTest, FixedRowsMatchTheContract) {
  EXPECT_EQ(kBreakerOpen, (Rejection{1013, "Service unavailable"}));
  EXPECT_EQ(kMalformed, (Rejection{1008, "Malformed request"}));
  EXPECT_EQ(kInvalidRoom, (Rejection{1008, "Invalid roomId"}));
  EXPECT_EQ(kWssRequired, (Rejection{1008, "WSS required"}));
  EXPECT_EQ(kOriginNotAllowed, (Rejection{1008, "Origin not allowed"}));
  EXPECT_EQ(kSubprotocolRequired, (Rejection{1008, "Subprotocol required"}));
  EXPECT_EQ(kUnauthorized, (Rejection{1008, "Unauthorized"}));
  EXPECT_EQ(kForbidden, (Rejection{1008, "Forbidden"}));
  EXPECT_EQ(kRateLimited, (Rejection{1013, "Rate limited"}));
  EXPECT_EQ(kRoomFull, (Rejection{1000, "Room is full"}));
  EXPECT_EQ(kInternalError, (Rejection{1011, "Internal error"}));
  EXPECT_EQ(kOverloaded, (Rejection{1013, "Server overloaded"}));
}

TEST_F(AdmissionTest, ForwardedProtoSatisfiesRequireWss) {
  const char* accepted[] = {"https",       "HTTPS",   "Https",       "https,http",
                            "https, http", " https ", "HTTPS , http"};
  for (const char* proto : accepted) {
    ConnectFacts f = ok_;
    f.is_tls = false;
    f.forwarded_proto = proto;
    EXPECT_EQ(check_before_auth(strict_, f), std::nullopt) << "X-Forwarded-Proto: " << proto;
  }
  const char* refused[] = {"", "http", "wss", "http, https", "httpsx", "http,https", "ws"};
  for (const char* proto : refused) {
    ConnectFacts f = ok_;
    f.is_tls = false;
    f.forwarded_proto = proto;
    EXPECT_EQ(check_before_auth(strict_, f), kWssRequired) << "X-Forwarded-Proto: " << proto;
  }
}

TEST_F(AdmissionTest, TlsConnectionSatisfiesRequireWssWhateverTheHeader) {
  ConnectFacts f = ok_;
  f.is_tls = true;
  f.forwarded_proto = "http";
  EXPECT_EQ(check_before_auth(strict_, f), std::nullopt);
}

TEST_F(AdmissionTest, RequireWssOffIgnoresScheme) {
  AdmissionPolicy p = strict_;
  p.require_wss = false;
  ConnectFacts f = ok_;
  f.is_tls = false;
  f.forwarded_proto = "http";
  EXPECT_EQ(check_before_auth(p, f), std::nullopt);
}

TEST_F(AdmissionTest, NoOriginHeaderPasses) {
  ConnectFacts f = ok_;
  f.origin = std::nullopt;
  EXPECT_EQ(check_before_auth(strict_, f), std::nullopt);
}

TEST_F(AdmissionTest, OriginsUnsetAllowsEveryOrigin) {
  const OriginMatcher none({});
  AdmissionPolicy p = strict_;
  p.origins = &none;
  ConnectFacts f = ok_;
  f.origin = "https://evil.example.org";
  EXPECT_EQ(check_before_auth(p, f), std::nullopt);
  p.origins = nullptr;
  EXPECT_EQ(check_before_auth(p, f), std::nullopt);
}

TEST_F(AdmissionTest, SubprotocolNotRequiredPassesWithoutOffer) {
  AdmissionPolicy p = strict_;
  p.subprotocol_required = false;
  ConnectFacts f = ok_;
  f.subprotocol_offered = false;
  EXPECT_EQ(check_before_auth(p, f), std::nullopt);
}

TEST(CheckAuthTest, AuthDisabledAdmitsEverything) {
  for (bool has_token : {false, true}) {
    for (auto outcome :
         {TokenOutcome::kValid, TokenOutcome::kInvalid, TokenOutcome::kRoomNotAllowed}) {
      EXPECT_EQ(check_auth(false, has_token, outcome), std::nullopt);
    }
  }
}

TEST(CheckAuthTest, MissingTokenIsUnauthorized) {
  for (auto outcome :
       {TokenOutcome::kValid, TokenOutcome::kInvalid, TokenOutcome::kRoomNotAllowed}) {
    EXPECT_EQ(check_auth(true, false, outcome), (Rejection{1008, "Unauthorized"}));
  }
}

TEST(CheckAuthTest, TokenOutcomes) {
  EXPECT_EQ(check_auth(true, true, TokenOutcome::kValid), std::nullopt);
  EXPECT_EQ(check_auth(true, true, TokenOutcome::kInvalid), (Rejection{1008, "Unauthorized"}));
  EXPECT_EQ(check_auth(true, true, TokenOutcome::kRoomNotAllowed), (Rejection{1008, "Forbidden"}));
}

}  // namespace
}  // namespace sigsrv
