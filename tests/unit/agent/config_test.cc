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
