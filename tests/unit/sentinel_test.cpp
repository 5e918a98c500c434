// REDIS_SENTINELS parsing and the sentinel replies and events the Redis bus reads.
#include "bus/sentinel.hpp"

#include <gtest/gtest.h>

using namespace sigsrv;

namespace {

std::vector<HostPort> ok(std::string_view text) {
  auto r = parse_host_list(text);
  EXPECT_TRUE(std::holds_alternative<std::vector<HostPort>>(r))
      << text << ": " << std::get<std::string>(r);
  return std::holds_alternative<std::vector<HostPort>>(r) ? std::get<std::vector<HostPort>>(r)
                                                          : std::vector<HostPort>{};
}

std::string bad(std::string_view text) {
  auto r = parse_host_list(text);
  EXPECT_TRUE(std::holds_alternative<std::string>(r)) << text;
  return std::holds_alternative<std::string>(r) ? std::get<std::string>(r) : std::string();
}

ReplyPtr parse_resp(const std::string& wire) {
  RespReader reader;
  EXPECT_TRUE(reader.feed(wire.data(), wire.size()));
  bool error = false;
  ReplyPtr r = reader.next(&error);
  EXPECT_FALSE(error);
  return r;
}

}  // namespace

TEST(Sentinels, ParsesAList) {
  EXPECT_EQ(ok("10.0.0.1:26379"), (std::vector<HostPort>{{"10.0.0.1", 26379}}));
  EXPECT_EQ(ok(" s1:26379 , s2.example:26380,[::1]:26381 "),
            (std::vector<HostPort>{{"s1", 26379}, {"s2.example", 26380}, {"::1", 26381}}));
  EXPECT_EQ(to_string(HostPort{"::1", 26381}), "[::1]:26381");
  EXPECT_EQ(to_string(HostPort{"s1", 26379}), "s1:26379");
}

TEST(Sentinels, RefusesBadItemsQuotingThem) {
  EXPECT_NE(bad("").find("empty item"), std::string::npos);
  EXPECT_NE(bad("a:1,,b:2").find("empty item"), std::string::npos);
  EXPECT_NE(bad("a:1,").find("empty item"), std::string::npos);
  EXPECT_NE(bad("sentinel1").find("'sentinel1': expected host:port"), std::string::npos);
  EXPECT_NE(bad("s:0").find("port must be 1-65535"), std::string::npos);
  EXPECT_NE(bad("s:65536").find("port must be 1-65535"), std::string::npos);
  EXPECT_NE(bad("s:26379x").find("port must be 1-65535"), std::string::npos);
  EXPECT_NE(bad(":26379").find("missing host"), std::string::npos);
  EXPECT_NE(bad("::1:26379").find("brackets"), std::string::npos);
  EXPECT_NE(bad("s 1:26379").find("not a host name"), std::string::npos);
  EXPECT_NE(bad("[::1]26379").find("[ipv6]:port"), std::string::npos);
  EXPECT_NE(bad("redis://s:26379").find("not a URL"), std::string::npos);
}

TEST(Sentinels, MasterNameIsOneWord) {
  EXPECT_EQ(check_master_name("mymaster"), "");
  EXPECT_NE(check_master_name("my master"), "");
  EXPECT_NE(check_master_name(""), "");
}

TEST(Sentinels, SwitchMasterNamesTheNewAddressOfOurMasterOnly) {
  EXPECT_EQ(parse_switch_master("mymaster 127.0.0.1 6379 127.0.0.1 6380", "mymaster"),
            (HostPort{"127.0.0.1", 6380}));
  EXPECT_EQ(parse_switch_master("other 127.0.0.1 6379 127.0.0.1 6380", "mymaster"), std::nullopt);
  EXPECT_EQ(parse_switch_master("mymaster2 1.1.1.1 1 2.2.2.2 2", "mymaster"), std::nullopt);
  EXPECT_EQ(parse_switch_master("mymaster 127.0.0.1 6379 127.0.0.1", "mymaster"), std::nullopt);
  EXPECT_EQ(parse_switch_master("mymaster 127.0.0.1 6379 127.0.0.1 0", "mymaster"), std::nullopt);
  EXPECT_EQ(parse_switch_master("mymaster a 1 ::1 6380", "mymaster"), (HostPort{"::1", 6380}));
}

TEST(Sentinels, MasterAddrReply) {
  auto addr = parse_master_addr(parse_resp("*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n").get());
  EXPECT_EQ(addr.kind, MasterAddr::Kind::kAddress);
  EXPECT_EQ(addr.address, (HostPort{"127.0.0.1", 6380}));
  EXPECT_EQ(parse_master_addr(parse_resp("*-1\r\n").get()).kind, MasterAddr::Kind::kUnknownMaster);
  EXPECT_EQ(parse_master_addr(parse_resp("$-1\r\n").get()).kind, MasterAddr::Kind::kUnknownMaster);
  auto err = parse_master_addr(parse_resp("-NOAUTH Authentication required.\r\n").get());
  EXPECT_EQ(err.kind, MasterAddr::Kind::kError);
  EXPECT_EQ(err.detail, "NOAUTH Authentication required.");
  EXPECT_EQ(parse_master_addr(parse_resp("*2\r\n$1\r\nh\r\n$1\r\nx\r\n").get()).kind,
            MasterAddr::Kind::kError);
  EXPECT_EQ(parse_master_addr(nullptr).kind, MasterAddr::Kind::kError);
}

TEST(Sentinels, RoleSaysMaster) {
  EXPECT_TRUE(role_is_master(parse_resp("*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n").get()));
  EXPECT_FALSE(role_is_master(
      parse_resp("*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6379\r\n$9\r\nconnected\r\n:1\r\n")
          .get()));
  EXPECT_FALSE(role_is_master(parse_resp("-ERR unknown command\r\n").get()));
  EXPECT_FALSE(role_is_master(nullptr));
}
