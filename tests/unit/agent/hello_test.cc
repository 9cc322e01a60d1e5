#include "agent/core/hello.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

namespace bulkhead::agent {
namespace {

InterfaceAddress addr(const char* ifname, const char* ip, int prefix, bool lo = false) {
  InterfaceAddress a;
  a.ifname = ifname;
  a.prefix_len = prefix;
  a.loopback_interface = lo;
  if (inet_pton(AF_INET, ip, a.addr.data()) == 1) {
    a.family = AF_INET;
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, ip, a.addr.data()), 1) << ip;
    a.family = AF_INET6;
  }
  return a;
}

TEST(Hello, GlobalAddressFilter) {
  EXPECT_TRUE(isGlobalAddress(addr("eth0", "10.77.1.11", 24)));
  EXPECT_TRUE(isGlobalAddress(addr("eth0", "203.0.113.5", 24)));
  EXPECT_TRUE(isGlobalAddress(addr("eth0", "fd77::11", 64)));
  EXPECT_TRUE(isGlobalAddress(addr("eth0", "2001:db8::1", 64)));
  EXPECT_FALSE(isGlobalAddress(addr("lo", "127.0.0.1", 8, true)));
  EXPECT_FALSE(isGlobalAddress(addr("lo", "::1", 128, true)));
  EXPECT_FALSE(isGlobalAddress(addr("dummy0", "10.0.0.1", 8, true)));  // on a loopback iface
  EXPECT_FALSE(isGlobalAddress(addr("eth0", "169.254.3.4", 16)));
  EXPECT_FALSE(isGlobalAddress(addr("eth0", "fe80::1", 64)));
  EXPECT_FALSE(isGlobalAddress(addr("eth0", "ff02::1", 128)));
  EXPECT_FALSE(isGlobalAddress(addr("eth0", "224.0.0.1", 32)));
  EXPECT_FALSE(isGlobalAddress(addr("eth0", "::ffff:10.0.0.1", 128)));
}

TEST(Hello, OsReleaseParsing) {
  EXPECT_EQ(prettyNameFromOsRelease("NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 "
                                    "(bookworm)\"\nVERSION_ID=\"12\"\n"),
            "Debian GNU/Linux 12 (bookworm)");
  EXPECT_EQ(prettyNameFromOsRelease("PRETTY_NAME='Alpine Linux v3.19'\n"), "Alpine Linux v3.19");
  EXPECT_EQ(prettyNameFromOsRelease("PRETTY_NAME=\"Say \\\"hi\\\"\"\n"), "Say \"hi\"");
  EXPECT_EQ(prettyNameFromOsRelease("NAME=Fedora\nVERSION=\"39 (Server)\"\n"), "Fedora 39 (Server)");
  EXPECT_EQ(prettyNameFromOsRelease("NOT_PRETTY_NAME=x\n"), "Linux");
  EXPECT_EQ(prettyNameFromOsRelease(""), "Linux");
}

TEST(Hello, BuiltFromFakeFacts) {
  HelloInputs in;
  in.host_id = "web-03";
  in.facts.hostname = "web-03.example";
  in.facts.addresses = {addr("lo", "127.0.0.1", 8, true), addr("eth0", "10.77.1.11", 24),
                        addr("eth0", "fe80::1", 64), addr("eth0", "fd77::1:11", 64),
                        addr("eth1", "10.77.1.11", 24)};
  in.facts.os_release = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
  in.facts.kernel_release = "6.1.0-18-amd64";
  in.labels = {{"role", "web"}, {"env", "prod"}};
  in.agent_version = "0.1.0";
  in.enforced_generation = 42;
  in.ruleset_hash = "abc123";
  in.now_unix_ms = 1700000000000;
  auto h = buildHello(in);
  EXPECT_EQ(h.host_id(), "web-03");
  EXPECT_EQ(h.hostname(), "web-03.example");
  ASSERT_EQ(h.addresses_size(), 2);
  EXPECT_EQ(h.addresses(0), "10.77.1.11/24");
  EXPECT_EQ(h.addresses(1), "fd77::1:11/64");
  EXPECT_EQ(h.labels().at("role"), "web");
  EXPECT_EQ(h.labels().at("env"), "prod");
  EXPECT_EQ(h.os(), "Debian GNU/Linux 12 (bookworm), kernel 6.1.0-18-amd64");
  EXPECT_EQ(h.agent_version(), "0.1.0");
  EXPECT_EQ(h.enforced_generation(), 42u);
  EXPECT_EQ(h.ruleset_hash(), "abc123");
  EXPECT_EQ(h.sent_at_unix_ms(), 1700000000000);
}

TEST(Hello, HostnameAndOsAreSentAsBoundedPrintableAscii) {
  HelloInputs in;
  in.host_id = "web-03";
  in.facts.hostname = "web 03\x1b[2J\xc3\xa9";
  in.facts.os_release = "PRETTY_NAME=\"Caf\xc3\xa9 OS\tX\"\n";
  auto h = buildHello(in);
  EXPECT_EQ(h.hostname(), "web?03?[2J??");
  EXPECT_EQ(h.os(), "Caf?? OS?X");
  in.facts.hostname = std::string(300, 'h');
  in.facts.os_release = "PRETTY_NAME=" + std::string(300, 'o') + "\n";
  h = buildHello(in);
  EXPECT_EQ(h.hostname().size(), 253u);
  EXPECT_EQ(h.os().size(), 256u);
}

}  // namespace
}  // namespace bulkhead::agent
