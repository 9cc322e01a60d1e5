#include "common/parse.h"

#include <sys/socket.h>

#include <gtest/gtest.h>

namespace bulkhead {
namespace {

using std::chrono::milliseconds;

TEST(ParseDuration, AcceptsUnitsAndCombinations) {
  EXPECT_EQ(*parseDuration("--ttl", "500ms"), milliseconds(500));
  EXPECT_EQ(*parseDuration("--ttl", "3s"), milliseconds(3000));
  EXPECT_EQ(*parseDuration("--ttl", "1h30m"), milliseconds(5'400'000));
  EXPECT_EQ(*parseDuration("--ttl", "2d"), milliseconds(172'800'000));
}

TEST(ParseDuration, RejectsGarbageWithFieldName) {
  for (const char* bad : {"", "3", "s", "3x", "-3s", "0s", "1.5h", "400d"}) {
    auto d = parseDuration("--ttl", bad);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_NE(d.status().message().find("--ttl"), std::string::npos);
  }
}

TEST(ParseHostPort, ParsesNamesV4AndBracketedV6) {
  auto a = parseHostPort("--controller", "ctl.example:7443");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "ctl.example");
  EXPECT_EQ(a->port, 7443);
  auto b = parseHostPort("--controller", "[fd77::1]:443");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "fd77::1");
  for (const char* bad : {"nohost", ":80", "h:0", "h:70000", "fd77::1:443", "[fd77::1]443"}) {
    EXPECT_FALSE(parseHostPort("--controller", bad).ok()) << bad;
  }
}

TEST(ParseLabel, ValidatesKeyAndValue) {
  auto l = parseLabel("--label", "role=db");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->first, "role");
  EXPECT_EQ(l->second, "db");
  for (const char* bad : {"role", "=db", "role=", "ro le=db", "role=d b"}) {
    EXPECT_FALSE(parseLabel("--label", bad).ok()) << bad;
  }
}

TEST(Selector, MatchesAllPairs) {
  auto s = parseSelector("--selector", "role=db,env=prod");
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(selectorMatches(*s, {{"role", "db"}, {"env", "prod"}, {"x", "y"}}));
  EXPECT_FALSE(selectorMatches(*s, {{"role", "db"}}));
  EXPECT_FALSE(parseSelector("--selector", "").ok());
}

TEST(ParseCidr, V4AndV6) {
  auto a = parseCidr("cidr", "10.77.0.0/16");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->family, AF_INET);
  EXPECT_EQ(a->toString(), "10.77.0.0/16");
  auto h = parseCidr("cidr", "10.77.0.5");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->prefix_len, 32);
  EXPECT_TRUE(a->contains(*h));
  auto v6 = parseCidr("cidr", "fd77::/16");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->family, AF_INET6);
  EXPECT_EQ(v6->toString(), "fd77::/16");
  EXPECT_FALSE(v6->contains(*h));
}

TEST(ParseCidr, RejectsBadInput) {
  for (const char* bad : {"10.77.0.0/33", "10.77.0.1/16", "300.1.1.1", "fd77::/129", "abc",
                          "10.77.0.0/", "10.77.0.0/x"}) {
    auto c = parseCidr("cidr", bad);
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_NE(c.status().message().find(bad), std::string::npos);
  }
}

TEST(ParsePort, Range) {
  EXPECT_EQ(*parsePort("--port", "22"), 22);
  EXPECT_FALSE(parsePort("--port", "0").ok());
  EXPECT_FALSE(parsePort("--port", "70000").ok());
  EXPECT_FALSE(parsePort("--port", "ssh").ok());
}

TEST(LabelsText, KeyOrderedPairsAndEmptyForNone) {
  EXPECT_EQ(labelsText({}), "");
  EXPECT_EQ(labelsText({{"role", "web"}, {"env", "prod"}}), "env=prod,role=web");
  EXPECT_EQ(*parseSelector("s", labelsText({{"a", "1"}, {"b", "2"}})),
            (Labels{{"a", "1"}, {"b", "2"}}));
}

}  // namespace
}  // namespace bulkhead
