// Playbook files: every field checked, errors "FILE:LINE: field: problem", all at once.
#include "controller/playbook/playbook.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;
using ::testing::HasSubstr;

constexpr char kFleetBlock[] = R"(name: ssh-brute-force
description: fail2ban's sshd bans block the address on every host
match:
  source: [fail2ban, sshguard]
  rule: ^sshd$
  min_severity: low
actions:
  - action: block
    scope: fleet
  - action: kill-connections
rate_per_minute: 30
)";

std::string errorOf(std::string_view yaml, std::string_view file = "p.yaml") {
  auto p = parsePlaybook(file, yaml);
  EXPECT_FALSE(p.ok());
  return p.ok() ? "" : std::string(p.status().message());
}

TEST(PlaybookParse, ReadsEveryField) {
  auto p = parsePlaybook("ssh.yaml", kFleetBlock);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->name, "ssh-brute-force");
  EXPECT_EQ(p->match.sources.size(), 2u);
  EXPECT_TRUE(p->match.sources.count(v1::SIGNAL_SOURCE_SSHGUARD));
  EXPECT_EQ(p->match.rule_text, "^sshd$");
  EXPECT_EQ(p->match.min_severity, v1::SEVERITY_LOW);
  ASSERT_EQ(p->actions.size(), 2u);
  EXPECT_EQ(p->actions[0].kind, ActionKind::kBlock);
  EXPECT_EQ(p->actions[0].scope, Scope::kFleet);
  EXPECT_FALSE(p->actions[0].ttl.has_value());  // the signal's hint, else default_ttl
  EXPECT_EQ(p->actions[1].kind, ActionKind::kKillConnections);
  EXPECT_EQ(p->actions[1].scope, Scope::kFleet);  // the default for address actions
  EXPECT_EQ(p->actions[1].line, 10);
  EXPECT_EQ(p->rate_per_minute, 30u);
  EXPECT_FALSE(p->simulate);
  EXPECT_TRUE(p->unblock_on_resolve);
  EXPECT_FALSE(p->release_on_resolve);
}

TEST(PlaybookParse, IsolationWithExemptionsAndSelectors) {
  auto p = parsePlaybook("iso.yaml", R"(name: implant
description: isolate the host an alert names
match:
  source: alertmanager
  affected_host: role=web
actions:
  - action: capture-then-isolate
    exempt: [ir-jump-host, monitoring]
    ttl: 4h
simulate: true
release_on_resolve: true
default_ttl: 30m
)");
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->actions.size(), 1u);
  EXPECT_EQ(p->actions[0].scope, Scope::kAffectedHost);
  EXPECT_EQ(p->actions[0].exempt_sets, (std::vector<std::string>{"ir-jump-host", "monitoring"}));
  EXPECT_EQ(p->actions[0].ttl, std::chrono::hours(4));
  ASSERT_TRUE(p->match.affected_host.has_value());
  EXPECT_EQ(p->match.affected_host->at("role"), "web");
  EXPECT_TRUE(p->simulate);
  EXPECT_TRUE(p->release_on_resolve);
  EXPECT_EQ(p->default_ttl, std::chrono::minutes(30));
}

TEST(PlaybookParse, StopCaptureKillActsOnTheReportingHostsSessionsFromTheAddresses) {
  auto p = parsePlaybook("sck.yaml", R"(name: implant-session
description: keep the evidence, then end the intruder's sessions
match:
  source: wazuh
actions:
  - action: stop-capture-kill
)");
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->actions.size(), 1u);
  EXPECT_EQ(p->actions[0].kind, ActionKind::kStopCaptureKill);
  EXPECT_EQ(actionKindName(p->actions[0].kind), "stop-capture-kill");
  EXPECT_EQ(p->actions[0].scope, Scope::kReportingHost);
  EXPECT_THAT(errorOf(R"(name: x
description: d
match: {}
actions:
  - action: stop-capture-kill
    ttl: 5m
)"),
              HasSubstr("ttl: not allowed for stop-capture-kill"));
}

TEST(PlaybookParse, EveryErrorNamesItsLineAndField) {
  std::string e = errorOf(R"(name: Bad_Name
description: ""
match:
  source: splunk
  rule: "(unclosed"
  min_severity: severe
actions:
  - action: nuke
  - action: isolate
    scope: fleet
  - action: kill-connections
    ttl: 5m
  - action: block
    scope: selector
  - action: capture
    exempt: [x]
colour: blue
)");
  EXPECT_THAT(e, HasSubstr("p.yaml:1: name: invalid value \"Bad_Name\""));
  EXPECT_THAT(e, HasSubstr("p.yaml:2: description: must not be empty"));
  EXPECT_THAT(e, HasSubstr("p.yaml:4: source: unknown source \"splunk\""));
  EXPECT_THAT(e, HasSubstr("p.yaml:5: rule: invalid regular expression \"(unclosed\""));
  EXPECT_THAT(e, HasSubstr("p.yaml:6: min_severity: unknown severity \"severe\""));
  EXPECT_THAT(e, HasSubstr("p.yaml:8: action: unknown action \"nuke\""));
  EXPECT_THAT(e, HasSubstr("p.yaml:10: scope: fleet is not allowed for isolate"));
  EXPECT_THAT(e, HasSubstr("p.yaml:12: ttl: not allowed for kill-connections"));
  EXPECT_THAT(e, HasSubstr("p.yaml:14: selector: missing (required with scope: selector)"));
  EXPECT_THAT(e, HasSubstr("p.yaml:16: exempt: not allowed for capture"));
  EXPECT_THAT(e, HasSubstr("p.yaml:17: colour: unknown field"));
}

TEST(PlaybookParse, MissingFieldsAndWrongShapes) {
  EXPECT_THAT(errorOf("name: x\n"), HasSubstr("p.yaml:1: description: missing"));
  EXPECT_THAT(errorOf("name: x\n"), HasSubstr("p.yaml:1: actions: missing"));
  EXPECT_THAT(errorOf("name: x\n"), HasSubstr("p.yaml:1: match: missing"));
  EXPECT_THAT(errorOf("- a\n- b\n"), HasSubstr("p.yaml:1: yaml: expected a mapping"));
  EXPECT_THAT(errorOf(""), HasSubstr("p.yaml:1: yaml: empty file"));
  EXPECT_THAT(errorOf("name: x\n---\nname: y\n"),
              HasSubstr("yaml: more than one document: one playbook per file"));
  EXPECT_THAT(errorOf("name: x\ndescription: d\nmatch: {}\nactions: []\n"),
              HasSubstr("p.yaml:4: actions: must hold at least one action"));
  EXPECT_THAT(errorOf("name: x\ndescription: d\nmatch: {}\nactions:\n  - block\n"),
              HasSubstr("p.yaml:5: actions: each action must be a mapping"));
  EXPECT_THAT(errorOf("name: x\ndescription: d\nmatch: {}\nactions:\n  - scope: fleet\n"),
              HasSubstr("p.yaml:5: action: missing"));
  EXPECT_THAT(errorOf("name: x\ndescription: d\nmatch: {}\nsimulate: yes\nactions:\n"
                      "  - action: block\n"),
              HasSubstr("p.yaml:4: simulate: invalid value \"yes\": expected true or false"));
  EXPECT_THAT(errorOf("name: x\ndescription: d\nmatch: {}\nrate_per_minute: 0\nactions:\n"
                      "  - action: block\n"),
              HasSubstr("p.yaml:4: rate_per_minute: invalid value \"0\""));
  EXPECT_THAT(errorOf("name: x\nname: y\n"), HasSubstr("p.yaml:2: name: field given twice"));
}

TEST(PlaybookParse, AnIncidentToAttachToOrToOpen) {
  auto none = parsePlaybook("p.yaml", kFleetBlock);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->incident.any());
  auto attach = parsePlaybook("p.yaml", std::string(kFleetBlock) + "incident: {id: INC-42}\n");
  ASSERT_TRUE(attach.ok()) << attach.status();
  EXPECT_EQ(attach->incident.id, "INC-42");
  EXPECT_EQ(attach->incident.open, "");
  auto open = parsePlaybook("p.yaml", std::string(kFleetBlock) +
                                          "incident:\n  open: SSH brute force\n  severity: high\n");
  ASSERT_TRUE(open.ok()) << open.status();
  EXPECT_EQ(open->incident.open, "SSH brute force");
  EXPECT_EQ(open->incident.severity, v1::INCIDENT_SEVERITY_HIGH);

  const std::string base(kFleetBlock);  // 11 lines
  EXPECT_THAT(errorOf(base + "incident: INC-42\n"),
              HasSubstr("p.yaml:12: incident: expected a mapping with id, or open and severity, "
                        "found a scalar"));
  EXPECT_THAT(errorOf(base + "incident: {id: INC-42, open: x}\n"),
              HasSubstr("p.yaml:12: incident: id and open: give one"));
  EXPECT_THAT(errorOf(base + "incident: {id: 'INC 42'}\n"),
              HasSubstr("p.yaml:12: incident.id: invalid value \"INC 42\""));
  EXPECT_THAT(errorOf(base + "incident: {open: x, severity: urgent}\n"),
              HasSubstr("p.yaml:12: incident.severity: unknown severity \"urgent\""));
  EXPECT_THAT(errorOf(base + "incident: {id: INC-1, severity: high}\n"),
              HasSubstr("p.yaml:12: incident.severity: only with open"));
  EXPECT_THAT(errorOf(base + "incident: {title: x}\n"),
              HasSubstr("p.yaml:12: incident.title: unknown field (expected id, or open and "
                        "severity)"));
  EXPECT_THAT(errorOf(base + "incident: {}\n"),
              HasSubstr("p.yaml:12: incident: missing id or open"));
}

TEST(PlaybookSet, DuplicateNamesAndEveryFileReported) {
  auto set = buildPlaybookSet(
      {{"a.yaml", kFleetBlock}, {"b.yaml", kFleetBlock}, {"c.yaml", "name: [x]\n"}});
  ASSERT_FALSE(set.ok());
  std::string e(set.status().message());
  EXPECT_THAT(e, HasSubstr("b.yaml:1: name: duplicate playbook \"ssh-brute-force\", first "
                           "defined in a.yaml:1"));
  EXPECT_THAT(e, HasSubstr("c.yaml:1: name: expected a playbook name, found a list"));
}

TEST(PlaybookSet, LoadsADirectoryInNameOrder) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("bh-playbooks-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "z.yaml") << kFleetBlock;
  std::ofstream(dir / "a.yml") << "name: alpha\ndescription: d\nmatch: {}\nactions:\n"
                                  "  - action: capture\n";
  std::ofstream(dir / "README.md") << "not a playbook";
  std::ofstream(dir / ".hidden.yaml") << "not: [valid";
  auto set = loadPlaybookDir(dir.string());
  fs::remove_all(dir);
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ(set->playbooks.size(), 2u);
  EXPECT_EQ(set->playbooks[0].name, "alpha");
  EXPECT_EQ(set->playbooks[1].name, "ssh-brute-force");
  EXPECT_THAT(std::string(loadPlaybookDir("/nonexistent/playbooks").status().message()),
              HasSubstr("playbook-dir: \"/nonexistent/playbooks\" is not a readable directory"));
}

TEST(PlaybookSet, TheShippedPlaybooksParse) {
  auto set = loadPlaybookDir(BULKHEAD_PLAYBOOK_DIR);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_FALSE(set->playbooks.empty());
}

}  // namespace
}  // namespace bulkhead::controller
