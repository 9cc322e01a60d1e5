// The engine: what a signal causes under the guardrails. A fleet of plain structs, time passed in.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "controller/playbook/engine.h"

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;
using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class FakeFleet : public FleetView {
 public:
  std::vector<FleetHost> all;
  std::optional<FleetHost> host(const std::string& id) const override {
    for (const FleetHost& h : all) {
      if (h.id == id) return h;
    }
    return std::nullopt;
  }
  std::vector<FleetHost> hosts() const override { return all; }
};

FakeFleet labFleet() {
  FakeFleet f;
  f.all = {{"h1", {{"role", "web"}}, {"10.77.0.11"}},
           {"h2", {{"role", "web"}}, {"10.77.0.12"}},
           {"h3", {{"role", "db"}}, {"10.77.0.13"}},
           {"jump", {{"role", "jump"}}, {"10.77.0.40"}}};
  return f;
}

PlaybookSet playbooks(std::initializer_list<std::string_view> yamls) {
  std::vector<std::pair<std::string, std::string>> files;
  int i = 0;
  for (std::string_view y : yamls) files.emplace_back("p" + std::to_string(i++) + ".yaml", y);
  auto set = buildPlaybookSet(files);
  EXPECT_TRUE(set.ok()) << set.status();
  return set.ok() ? *set : PlaybookSet{};
}

AutomationGuardrails guardrails() {
  AutomationGuardrails g;
  g.blocks.controller_ips = {"10.77.0.1"};
  auto cidr = parseCidr("cidr", "10.77.0.50/32");
  g.blocks.protected_cidrs.push_back({*cidr, "backup server", 3});
  g.protected_hosts = {{{"role", "jump"}}};
  g.approval_for_isolate = {{{"role", "db"}}};
  g.blast_radius = 2;
  g.rate_per_minute = 100;
  return g;
}

v1::Signal fail2ban(const std::string& ip, uint32_t ttl = 600) {
  v1::Signal s;
  s.set_source(v1::SIGNAL_SOURCE_FAIL2BAN);
  s.set_rule("sshd");
  s.add_addresses(ip);
  s.set_ttl_seconds(ttl);
  return s;
}

constexpr char kFleetBlock[] = R"(name: ssh
description: d
match: {source: fail2ban, rule: ^sshd$}
actions:
  - action: block
  - action: kill-connections
)";

const auto kT0 = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);

TEST(PlaybookEngine, Fail2banBanBlocksFleetWideForTheBantime) {
  FakeFleet fleet = labFleet();
  PlaybookEngine engine(playbooks({kFleetBlock}), guardrails());
  Decision d = engine.decide(fail2ban("203.0.113.7"), "h1", fleet, kT0);
  EXPECT_EQ(d.disposition, v1::SIGNAL_DISPOSITION_ACTED);
  EXPECT_THAT(d.matched, ElementsAre("ssh"));
  ASSERT_EQ(d.actions.size(), 2u);
  EXPECT_EQ(d.actions[0].kind, ActionKind::kBlock);
  EXPECT_EQ(d.actions[0].verdict, Verdict::kStart);
  EXPECT_TRUE(d.actions[0].fleet_wide);
  EXPECT_EQ(d.actions[0].target(), "all");
  EXPECT_EQ(d.actions[0].detail(), "203.0.113.7/32 for 600 s");
  EXPECT_EQ(d.actions[1].kind, ActionKind::kKillConnections);
  EXPECT_EQ(d.actions[1].verdict, Verdict::kStart);
}

TEST(PlaybookEngine, NoMatchForOtherSourcesRulesAndSeverities) {
  FakeFleet fleet = labFleet();
  PlaybookEngine engine(playbooks({kFleetBlock,
                                   "name: crit\ndescription: d\nmatch: {min_severity: critical}\n"
                                   "actions: [{action: block}]\n"}),
                        guardrails());
  v1::Signal other = fail2ban("203.0.113.7");
  other.set_rule("nginx-http-auth");
  EXPECT_EQ(engine.decide(other, "h1", fleet, kT0).disposition, v1::SIGNAL_DISPOSITION_NO_MATCH);
  other.set_source(v1::SIGNAL_SOURCE_CROWDSEC);
  other.set_rule("sshd");
  EXPECT_EQ(engine.decide(other, "", fleet, kT0).disposition, v1::SIGNAL_DISPOSITION_NO_MATCH);
  other.set_severity(v1::SEVERITY_CRITICAL);
  Decision d = engine.decide(other, "", fleet, kT0);
  EXPECT_THAT(d.matched, ElementsAre("crit"));
}

TEST(PlaybookEngine, ProtectedAddressesAreNeverBlocked) {
  FakeFleet fleet = labFleet();
  PlaybookEngine engine(playbooks({kFleetBlock}), guardrails());
  for (const char* ip :
       {"10.77.0.1", "127.0.0.1", "10.77.0.50", "10.77.0.40", "10.77.0.0/24", "0.0.0.0/0"}) {
    Decision d = engine.decide(fail2ban(ip), "h1", fleet, kT0);
    EXPECT_EQ(d.disposition, v1::SIGNAL_DISPOSITION_SUPPRESSED) << ip;
    ASSERT_FALSE(d.actions.empty());
    EXPECT_EQ(d.actions[0].verdict, Verdict::kSuppressed) << ip;
    EXPECT_THAT(d.actions[0].why, HasSubstr("protected address")) << ip;
  }
  Decision jump = engine.decide(fail2ban("10.77.0.40"), "h1", fleet, kT0);
  EXPECT_THAT(jump.actions[0].why, HasSubstr("protected host jump (role=jump)"));
}

constexpr char kIsolate[] = R"(name: implant
description: d
match: {source: alertmanager}
actions:
  - action: isolate
    exempt: [ir-jump-host]
)";

v1::Signal alert(const std::string& host, bool resolved = false) {
  v1::Signal s;
  s.set_source(v1::SIGNAL_SOURCE_ALERTMANAGER);
  s.set_rule("ImplantBeacon");
  s.set_host(host);
  s.set_resolved(resolved);
  return s;
}

TEST(PlaybookEngine, IsolationsOfSensitiveHostsWaitForApproval) {
  FakeFleet fleet = labFleet();
  PlaybookEngine engine(playbooks({kIsolate}), guardrails());
  Decision web = engine.decide(alert("h1"), "", fleet, kT0);
  EXPECT_EQ(web.disposition, v1::SIGNAL_DISPOSITION_ACTED);
  EXPECT_EQ(web.actions[0].target(), "h1");
  EXPECT_EQ(web.actions[0].detail(), "exempt ir-jump-host for 3600 s");  // default_ttl
  Decision db = engine.decide(alert("h3"), "", fleet, kT0);
  EXPECT_EQ(db.disposition, v1::SIGNAL_DISPOSITION_AWAITING_APPROVAL);
  EXPECT_THAT(db.actions[0].why, HasSubstr("isolating h3 (role=db) needs approval"));
  Decision jump = engine.decide(alert("jump"), "", fleet, kT0);
  EXPECT_EQ(jump.disposition, v1::SIGNAL_DISPOSITION_SUPPRESSED);
  EXPECT_THAT(jump.actions[0].why, HasSubstr("protected host: jump"));
  Decision unknown = engine.decide(alert("nosuch"), "", fleet, kT0);
  EXPECT_EQ(unknown.disposition, v1::SIGNAL_DISPOSITION_NOTHING_TO_DO);
  EXPECT_THAT(unknown.actions[0].why, HasSubstr("affected host \"nosuch\" is not known"));
}

TEST(PlaybookEngine, BlastRadiusAsksForApproval) {
  FakeFleet fleet = labFleet();
  PlaybookEngine engine(playbooks({"name: web\ndescription: d\nmatch: {}\nactions:\n"
                                   "  - {action: capture, scope: selector, selector: role=web}\n",
                                   "name: all-but-jump\ndescription: d\nmatch: {}\nactions:\n"
                                   "  - {action: kill-sessions, scope: fleet}\n"}),
                        guardrails());
  v1::Signal s = fail2ban("203.0.113.7");
  Decision d = engine.decide(s, "", fleet, kT0);
  ASSERT_EQ(d.actions.size(), 2u);
  // kill-sessions on the fleet: jump is protected and left out; 3 hosts remain, more than 2.
  EXPECT_EQ(d.actions[0].playbook, "all-but-jump");
  EXPECT_EQ(d.actions[0].verdict, Verdict::kNeedsApproval);
  EXPECT_THAT(d.actions[0].why, HasSubstr("touches 3 hosts, more than 2"));
  EXPECT_EQ(d.actions[1].verdict, Verdict::kStart);  // 2 web hosts: within the radius
  EXPECT_EQ(d.actions[1].target(), "h1,h2");
}

TEST(PlaybookEngine, SimulationRecordsWithoutActing) {
  FakeFleet fleet = labFleet();
  PlaybookEngine engine(playbooks({std::string(kFleetBlock) + "simulate: true\n"}), guardrails());
  Decision d = engine.decide(fail2ban("203.0.113.7"), "h1", fleet, kT0);
  EXPECT_EQ(d.disposition, v1::SIGNAL_DISPOSITION_SIMULATED);
  for (const PlannedAction& a : d.actions) {
    EXPECT_EQ(a.verdict, Verdict::kSimulated);
    EXPECT_EQ(a.why, "would start");
  }
}

TEST(PlaybookEngine, RateCapsSuppressTheRestAndFlagTheFirstSuppressionOnce) {
  FakeFleet fleet = labFleet();
  AutomationGuardrails g = guardrails();
  g.rate_per_minute = 1000;
  PlaybookEngine engine(playbooks({"name: ssh\ndescription: d\nmatch: {}\nrate_per_minute: 10\n"
                                   "actions: [{action: block}]\n"}),
                        g);
  int started = 0, suppressed = 0, flagged = 0;
  for (int i = 0; i < 1000; ++i) {
    Decision d = engine.decide(fail2ban("203.0.113." + std::to_string(i % 250)), "h1", fleet,
                               kT0 + std::chrono::milliseconds(i * 50));  // 1000 in 50 s
    started += d.disposition == v1::SIGNAL_DISPOSITION_ACTED;
    suppressed += d.disposition == v1::SIGNAL_DISPOSITION_SUPPRESSED;
    flagged += d.rate_cap_reached;
    if (d.disposition == v1::SIGNAL_DISPOSITION_SUPPRESSED) {
      EXPECT_THAT(d.actions[0].why, HasSubstr("rate cap: 10 actions per minute for playbook ssh"));
    }
  }
  EXPECT_EQ(started, 10);
  EXPECT_EQ(suppressed, 990);
  EXPECT_EQ(flagged, 1);
  // A minute after the first start, the window has room again.
  Decision later = engine.decide(fail2ban("198.51.100.1"), "h1", fleet, kT0 + seconds(61));
  EXPECT_EQ(later.disposition, v1::SIGNAL_DISPOSITION_ACTED);
  EXPECT_FALSE(later.rate_cap_reached);
}

TEST(PlaybookEngine, TheGlobalCapCoversEveryPlaybook) {
  FakeFleet fleet = labFleet();
  AutomationGuardrails g = guardrails();
  g.rate_per_minute = 3;
  PlaybookEngine engine(playbooks({kFleetBlock}), g);  // two actions per signal
  Decision first = engine.decide(fail2ban("203.0.113.1"), "h1", fleet, kT0);
  Decision second = engine.decide(fail2ban("203.0.113.2"), "h1", fleet, kT0);
  EXPECT_EQ(first.actions[1].verdict, Verdict::kStart);
  EXPECT_EQ(second.actions[0].verdict, Verdict::kStart);
  EXPECT_EQ(second.actions[1].verdict, Verdict::kSuppressed);
  EXPECT_THAT(second.actions[1].why, HasSubstr("3 automatic actions per minute, all playbooks"));
  EXPECT_TRUE(second.rate_cap_reached);
}

TEST(PlaybookEngine, PreviewCountsNothing) {
  FakeFleet fleet = labFleet();
  AutomationGuardrails g = guardrails();
  g.rate_per_minute = 1;
  PlaybookEngine engine(playbooks({"name: one\ndescription: d\nmatch: {}\n"
                                   "actions: [{action: block}]\n"}),
                        g);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(engine.preview(fail2ban("203.0.113.1"), "", fleet, kT0).disposition,
              v1::SIGNAL_DISPOSITION_ACTED);
  }
  EXPECT_EQ(engine.decide(fail2ban("203.0.113.1"), "", fleet, kT0).disposition,
            v1::SIGNAL_DISPOSITION_ACTED);
  EXPECT_EQ(engine.decide(fail2ban("203.0.113.1"), "", fleet, kT0).disposition,
            v1::SIGNAL_DISPOSITION_SUPPRESSED);
}

TEST(PlaybookEngine, AResolvedSignalUndoesOnlyWhatThePlaybookSays) {
  FakeFleet fleet = labFleet();
  PlaybookEngine engine(playbooks({kFleetBlock, kIsolate}), guardrails());
  v1::Signal unban = fail2ban("203.0.113.7");
  unban.set_resolved(true);
  Decision d = engine.decide(unban, "h1", fleet, kT0);
  ASSERT_EQ(d.actions.size(), 1u);  // the block is undone; connection kills are not undone
  EXPECT_EQ(d.actions[0].kind, ActionKind::kUnblock);
  EXPECT_TRUE(d.actions[0].fleet_wide);
  EXPECT_EQ(d.actions[0].verdict, Verdict::kStart);
  // A resolved alert does not release unless the playbook says so.
  Decision resolved = engine.decide(alert("h1", true), "", fleet, kT0);
  EXPECT_TRUE(resolved.actions.empty());
  EXPECT_EQ(resolved.disposition, v1::SIGNAL_DISPOSITION_NOTHING_TO_DO);
  PlaybookEngine releasing(playbooks({std::string(kIsolate) + "release_on_resolve: true\n"}),
                           guardrails());
  Decision release = releasing.decide(alert("h1", true), "", fleet, kT0);
  ASSERT_EQ(release.actions.size(), 1u);
  EXPECT_EQ(release.actions[0].kind, ActionKind::kRelease);
  EXPECT_EQ(release.actions[0].target(), "h1");
}

TEST(PlaybookEngine, ReportingHostScopeNeedsAnAgent) {
  FakeFleet fleet = labFleet();
  PlaybookEngine engine(playbooks({"name: local\ndescription: d\nmatch: {}\n"
                                   "actions: [{action: kill-sessions}]\n"}),
                        guardrails());
  Decision from_agent = engine.decide(fail2ban("203.0.113.7"), "h2", fleet, kT0);
  EXPECT_EQ(from_agent.actions[0].target(), "h2");
  EXPECT_EQ(from_agent.actions[0].verdict, Verdict::kStart);
  Decision from_cli = engine.decide(fail2ban("203.0.113.7"), "", fleet, kT0);
  EXPECT_EQ(from_cli.actions[0].verdict, Verdict::kSkipped);
  EXPECT_THAT(from_cli.actions[0].why, HasSubstr("did not come from an agent"));
}

TEST(SignalValidation, NamesTheFieldAtFault) {
  v1::Signal s = fail2ban("203.0.113.7");
  EXPECT_TRUE(validateSignal(s).ok());
  v1::Signal bad = s;
  bad.set_source(v1::SIGNAL_SOURCE_UNSPECIFIED);
  EXPECT_THAT(std::string(validateSignal(bad).message()), HasSubstr("source: required"));
  bad = s;
  bad.add_addresses("10.0.0.300");
  EXPECT_THAT(std::string(validateSignal(bad).message()), HasSubstr("address"));
  bad = s;
  bad.set_rule(std::string(300, 'r'));
  EXPECT_THAT(std::string(validateSignal(bad).message()), HasSubstr("rule: 300 bytes"));
  bad = s;
  for (int i = 0; i < 64; ++i) bad.add_addresses("198.51.100.1");
  EXPECT_THAT(std::string(validateSignal(bad).message()), HasSubstr("addresses: 65 given"));
  bad = s;
  bad.set_source(v1::SIGNAL_SOURCE_WEBHOOK);
  EXPECT_THAT(std::string(validateSignal(bad).message()), HasSubstr("integration: required"));
}

TEST(SignalValidation, DerivedKeysIgnoreAddressOrderAndSpelling) {
  v1::Signal a = fail2ban("203.0.113.7");
  a.add_addresses("fd77::66");
  v1::Signal b = fail2ban("fd77:0::66");
  b.add_addresses("203.0.113.7/32");
  EXPECT_EQ(derivedIdempotencyKey(a), derivedIdempotencyKey(b));
  b.set_resolved(true);
  EXPECT_NE(derivedIdempotencyKey(a), derivedIdempotencyKey(b));
}

TEST(AutomationGuardrailsFile, ParsesAndNamesErrors) {
  auto g = parseAutomationGuardrails("automation.yaml",
                                     "protected_hosts: [role=jump]\nrate_per_minute: 60\n"
                                     "blast_radius: 5\napproval_for_isolate: [role=db, tier=0]\n",
                                     AutomationGuardrails{});
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->rate_per_minute, 60u);
  EXPECT_EQ(g->blast_radius, 5u);
  EXPECT_EQ(g->approval_for_isolate.size(), 2u);
  auto bad = parseAutomationGuardrails("automation.yaml",
                                       "protected_hosts: role=jump\nblast_radius: -1\nx: 1\n",
                                       AutomationGuardrails{});
  ASSERT_FALSE(bad.ok());
  std::string e(bad.status().message());
  EXPECT_THAT(e, HasSubstr("automation.yaml:1: protected_hosts: expected a list of selectors"));
  EXPECT_THAT(e, HasSubstr("automation.yaml:2: blast_radius: invalid value \"-1\""));
  EXPECT_THAT(e, HasSubstr("automation.yaml:3: x: unknown field"));
}

// The shipped playbooks act on what the shipped front doors send: fail2ban's action names the
// jail ("sshd"), sshguard's backend names itself ("sshguard"), and both end in a fleet-wide
// block that their unban / release lifts.
TEST(PlaybookEngine, TheShippedPlaybooksActOnWhatTheShippedFrontDoorsSend) {
  auto shipped = loadPlaybookDir(BULKHEAD_PLAYBOOK_DIR);
  ASSERT_TRUE(shipped.ok()) << shipped.status();
  FakeFleet fleet = labFleet();
  for (auto [source, rule] : {std::pair{v1::SIGNAL_SOURCE_FAIL2BAN, "sshd"},
                              std::pair{v1::SIGNAL_SOURCE_SSHGUARD, "sshguard"}}) {
    SCOPED_TRACE(rule);
    PlaybookEngine engine(*shipped, guardrails());
    v1::Signal s = fail2ban("203.0.113.7");
    s.set_source(source);
    s.set_rule(rule);
    Decision ban = engine.decide(s, "h1", fleet, kT0);
    EXPECT_EQ(ban.disposition, v1::SIGNAL_DISPOSITION_ACTED);
    ASSERT_FALSE(ban.actions.empty());
    EXPECT_EQ(ban.actions[0].playbook, "ssh-brute-force");
    EXPECT_EQ(ban.actions[0].kind, ActionKind::kBlock);
    EXPECT_EQ(ban.actions[0].target(), "all");
    s.set_resolved(true);
    Decision release = engine.decide(s, "h1", fleet, kT0);
    ASSERT_EQ(release.actions.size(), 1u);
    EXPECT_EQ(release.actions[0].kind, ActionKind::kUnblock);
  }
}

}  // namespace
}  // namespace bulkhead::controller
