#include "agent/core/config.h"

#include <gtest/gtest.h>

namespace bulkhead::agent {
namespace {

absl::StatusOr<AgentConfig> parse(std::vector<std::string> args) { return parseAgentArgs(args); }

void expectError(std::vector<std::string> args, const std::string& needle) {
  auto c = parse(args);
  ASSERT_FALSE(c.ok()) << "accepted: " << ::testing::PrintToString(args);
  EXPECT_NE(std::string(c.status().message()).find(needle), std::string::npos)
      << c.status().message();
}

TEST(AgentConfig, ParsesRunMode) {
  auto c = parse({"--controller", "10.77.0.2:7443", "--identity", "/etc/bulkhead/agent",
                  "--state-dir", "/var/lib/bulkhead", "--label", "role=web", "--label",
                  "env=prod", "--log-format", "json", "--log-level", "debug"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->mode, AgentMode::kRun);
  EXPECT_EQ(c->controller.host, "10.77.0.2");
  EXPECT_EQ(c->controller.port, 7443);
  EXPECT_EQ(c->identity_dir, "/etc/bulkhead/agent");
  EXPECT_EQ(c->state_dir, "/var/lib/bulkhead");
  EXPECT_EQ(c->labels.at("role"), "web");
  EXPECT_EQ(c->labels.at("env"), "prod");
  EXPECT_EQ(c->controller_name, "bulkhead-controller");
  EXPECT_EQ(c->log_format, "json");
  EXPECT_EQ(c->log_level, "debug");
  EXPECT_FALSE(c->allow_root_netns);
}

TEST(AgentConfig, ControllerNameAndV6Endpoint) {
  auto c = parse({"--controller", "[fd77::2]:7443", "--identity", "i", "--state-dir", "s",
                  "--controller-name", "ctl.example.org", "--allow-root-netns"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->controller.host, "fd77::2");
  EXPECT_EQ(c->controller_name, "ctl.example.org");
  EXPECT_TRUE(c->allow_root_netns);
}

TEST(AgentConfig, OneControllerIsTheOnlyReplica) {
  auto c = parse({"--controller", "ctl.example:7443", "--identity", "i", "--state-dir", "s"});
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->controllers.size(), 1u);
  EXPECT_EQ(c->controllers[0].host, "ctl.example");
  EXPECT_EQ(c->controllers[0].port, 7443);
  EXPECT_EQ(c->controller.host, "ctl.example");
  EXPECT_EQ(c->controller.port, 7443);
}

TEST(AgentConfig, SeveralControllersKeepTheirOrder) {
  auto c = parse({"--controller", "ctl-b.example:7443", "--identity", "i", "--controller",
                  "10.77.0.3:7443", "--state-dir", "s", "--controller", "[fd77::4]:8443",
                  "--controller", "ctl-b.example:8443"});
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->controllers.size(), 4u);
  EXPECT_EQ(c->controllers[0].host, "ctl-b.example");
  EXPECT_EQ(c->controllers[1].host, "10.77.0.3");
  EXPECT_EQ(c->controllers[2].host, "fd77::4");
  EXPECT_EQ(c->controllers[2].port, 8443);
  EXPECT_EQ(c->controllers[3].host, "ctl-b.example");  // another port: another controller
  EXPECT_EQ(c->controllers[3].port, 8443);
  EXPECT_EQ(c->controller.host, "ctl-b.example");  // the first, for single-controller code
  EXPECT_EQ(c->controller.port, 7443);
  EXPECT_NE(agentUsage().find("[--controller ADDR:PORT]..."), std::string::npos);
  EXPECT_NE(agentUsage().find("repeatable"), std::string::npos);
}

TEST(AgentConfig, TheSameControllerTwiceIsRefusedNamingBoth) {
  auto dup = [](const std::string& a, const std::string& b) {
    return parse({"--controller", a, "--controller", "other:1", "--controller", b, "--identity",
                  "i", "--state-dir", "s"});
  };
  auto c = dup("ctl.example:7443", "ctl.example:7443");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.status().message(),
            "--controller: invalid value \"ctl.example:7443\": the same controller as "
            "\"ctl.example:7443\", given before");
  // Names without case, IP literals by address.
  auto upper = dup("ctl.example:7443", "CTL.Example:7443");
  ASSERT_FALSE(upper.ok());
  EXPECT_NE(std::string(upper.status().message()).find("\"CTL.Example:7443\""), std::string::npos)
      << upper.status();
  EXPECT_FALSE(dup("[fd77::2]:7443", "[fd77:0::2]:7443").ok());
  EXPECT_FALSE(dup("10.77.0.2:7443", "10.77.0.2:7443").ok());
  EXPECT_TRUE(dup("10.77.0.2:7443", "10.77.0.3:7443").ok());
  EXPECT_TRUE(dup("[fd77::2]:7443", "[fd77::3]:7443").ok());
}

TEST(AgentConfig, RejectsBadInputNamingTheFlag) {
  expectError({"--identity", "i", "--state-dir", "s"}, "--controller");
  expectError({"--controller", "10.77.0.2", "--identity", "i", "--state-dir", "s"}, "--controller");
  expectError({"--controller", "10.77.0.2:70000", "--identity", "i", "--state-dir", "s"},
              "--controller");
  expectError({"--controller", "c:1", "--state-dir", "s"}, "--identity");
  expectError({"--controller", "c:1", "--identity", "i"}, "--state-dir");
  expectError({"--controller", "c:1", "--identity", "i", "--state-dir", "s", "--label", "role"},
              "--label");
  expectError({"--controller", "c:1", "--identity", "i", "--state-dir", "s", "--label", "a=1",
               "--label", "a=2"},
              "given twice");
  expectError({"--controller", "c:1", "--identity", "i", "--state-dir", "s", "--log-format", "xml"},
              "--log-format");
  expectError({"--controller", "c:1", "--identity", "i", "--state-dir", "s", "--log-level", "loud"},
              "--log-level");
  expectError({"--controller", "c:1", "--identity", "i", "--state-dir", "s", "--controller-name",
               "bad name"},
              "--controller-name");
  expectError({"--controller", "c:1", "--identity", "i", "--state-dir", "s", "--bogus"}, "bogus");
  expectError({"--controller", "c:1", "--identity", "i", "--state-dir", "s", "stray"}, "stray");
  expectError({"--controller"}, "controller");
}

TEST(AgentConfig, StatusAndRestoreModes) {
  auto s = parse({"status", "--state-dir", "/var/lib/bulkhead"});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->mode, AgentMode::kStatus);
  auto s2 = parse({"--status", "--state-dir", "x"});
  ASSERT_TRUE(s2.ok());
  EXPECT_EQ(s2->mode, AgentMode::kStatus);
  auto r = parse({"--restore", "--state-dir", "x"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->mode, AgentMode::kRestore);
  expectError({"status"}, "--state-dir");
  expectError({"--restore", "--state-dir", "x", "--controller", "c:1"}, "--restore");
  expectError({"--restore", "--status", "--state-dir", "x"}, "exclusive");
}

TEST(AgentConfig, HelpAndVersion) {
  EXPECT_EQ(parse({"--help"})->mode, AgentMode::kHelp);
  EXPECT_EQ(parse({"--version"})->mode, AgentMode::kVersion);
  EXPECT_NE(agentUsage().find("--state-dir"), std::string::npos);
}

TEST(AgentConfig, ResidentPagesAreGivenBackUnlessKept) {
  auto d = parse({"--controller", "c:1", "--identity", "i", "--state-dir", "s"});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_FALSE(d->keep_resident_pages);
  auto k = parse(
      {"--controller", "c:1", "--identity", "i", "--state-dir", "s", "--keep-resident-pages"});
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_TRUE(k->keep_resident_pages);
}

TEST(AgentConfig, CaptureFlags) {
  auto d = parse({"--controller", "c:1", "--identity", "i", "--state-dir", "/var/lib/bh"});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->capture_spool_dir, "/var/lib/bh/evidence");
  EXPECT_FALSE(d->test_hang_collector);
  auto c = parse({"--controller", "c:1", "--identity", "i", "--state-dir", "s",
                  "--capture-spool-dir", "/spool", "--test-hang-collector"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->capture_spool_dir, "/spool");
  EXPECT_TRUE(c->test_hang_collector);
  expectError({"--controller", "c:1", "--identity", "i", "--state-dir", "s",
               "--capture-spool-dir", ""},
              "--capture-spool-dir");
  expectError({"--restore", "--state-dir", "x", "--capture-spool-dir", "/spool"},
              "--capture-spool-dir");
  std::string usage = agentUsage();
  EXPECT_NE(usage.find("--capture-spool-dir"), std::string::npos);
  EXPECT_NE(usage.find("testing only: adds a collector that never returns"), std::string::npos);
}

}  // namespace
}  // namespace bulkhead::agent
