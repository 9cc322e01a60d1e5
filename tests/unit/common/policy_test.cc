#include "common/policy.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/format.h"

namespace bulkhead {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
namespace v1 = bulkhead::v1;

std::string errorOf(std::string_view yaml) {
  auto set = parsePolicy("p.yaml", yaml);
  EXPECT_FALSE(set.ok()) << "parsed but should not have:\n" << yaml;
  return set.ok() ? "" : std::string(set.status().message());
}

TEST(ParsePolicy, GoodFileWithEveryField) {
  auto set = parsePolicy("pg.yaml", R"(# replication
name: postgres-replication
description: Streaming replication
selector: role=db,env=prod
rules:
  - direction: in
    proto: tcp
    remote: 10.77.0.50/32
    port: 5432
  - direction: out
    proto: udp
    remote: "fd77::/16"
    port: "6000-6010"
  - direction: out
    proto: icmp
    remote: db1.corp.example
  - direction: in
    proto: any
    remote: 10.77.0.0/16
)");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->name, "postgres-replication");
  EXPECT_EQ(set->description, "Streaming replication");
  EXPECT_EQ(set->file, "pg.yaml");
  EXPECT_EQ(set->name_line, 2);
  ASSERT_TRUE(set->selector.has_value());
  EXPECT_EQ(*set->selector, (Labels{{"role", "db"}, {"env", "prod"}}));
  EXPECT_FALSE(set->all_hosts);
  ASSERT_EQ(set->rules.size(), 4u);

  const PolicyRule& r0 = set->rules[0];
  EXPECT_EQ(r0.direction, v1::DIRECTION_IN);
  EXPECT_EQ(r0.protocol, v1::PROTOCOL_TCP);
  ASSERT_TRUE(r0.remote_cidr.has_value());
  EXPECT_EQ(r0.remote_cidr->toString(), "10.77.0.50/32");
  EXPECT_EQ(r0.port_first, 5432);
  EXPECT_EQ(r0.port_last, 5432);
  EXPECT_EQ(r0.line, 6);

  const PolicyRule& r1 = set->rules[1];
  EXPECT_EQ(r1.direction, v1::DIRECTION_OUT);
  EXPECT_EQ(r1.protocol, v1::PROTOCOL_UDP);
  EXPECT_EQ(r1.remote_cidr->toString(), "fd77::/16");
  EXPECT_EQ(r1.port_first, 6000);
  EXPECT_EQ(r1.port_last, 6010);

  const PolicyRule& r2 = set->rules[2];
  EXPECT_EQ(r2.protocol, v1::PROTOCOL_ICMP);
  EXPECT_FALSE(r2.remote_cidr.has_value());
  EXPECT_EQ(r2.remote, "db1.corp.example");
  EXPECT_EQ(r2.port_first, 0);
  EXPECT_EQ(r2.port_last, 0);

  EXPECT_EQ(set->rules[3].protocol, v1::PROTOCOL_ANY);
  EXPECT_EQ(set->rules[3].line, 17);
}

TEST(ParsePolicy, UnquotedIpv6AndStarSelector) {
  auto set = parsePolicy("j.yaml", R"(name: jump
description: responders
selector: "*"
rules:
  - {direction: in, proto: tcp, remote: fd77::40, port: 22}
)");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_TRUE(set->all_hosts);
  EXPECT_FALSE(set->selector.has_value());
  EXPECT_EQ(set->rules[0].remote_cidr->toString(), "fd77::40/128");
}

struct ErrorCase {
  const char* what;
  const char* yaml;
  const char* error;  // the whole message
};

class ParsePolicyError : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ParsePolicyError, NamesFileLineAndField) {
  EXPECT_EQ(errorOf(GetParam().yaml), GetParam().error) << GetParam().what;
}

constexpr const char* kHead = "name: x\ndescription: d\nrules:\n";

std::string withRule(const std::string& rule) { return std::string(kHead) + rule; }

// Storage for the composed YAML strings (ErrorCase holds pointers).
const std::vector<std::string>& composed() {
  static const std::vector<std::string> v = {
      withRule("  - direction: in\n    proto: tcp\n    remote: 10.0.0.1\n    port: abc\n"),
      withRule("  - direction: in\n    proto: tcp\n    remote: 10.0.0.1\n    port: [1, 2]\n"),
      withRule("  - direction: in\n    proto: tcp\n    remote: 10.0.0.1\n    port: 0\n"),
      withRule("  - direction: in\n    proto: tcp\n    remote: 10.0.0.1\n    port: 70000\n"),
      withRule("  - direction: in\n    proto: tcp\n    remote: 10.0.0.1\n    port: 6010-6000\n"),
      withRule("  - direction: in\n    proto: tcp\n    remote: 10.0.0.1\n    port: 1-x\n"),
      withRule("  - direction: sideways\n    proto: tcp\n    remote: 10.0.0.1\n"),
      withRule("  - direction: in\n    proto: sctp\n    remote: 10.0.0.1\n"),
      withRule("  - direction: in\n    proto: icmp\n    remote: 10.0.0.1\n    port: 8\n"),
      withRule("  - direction: in\n    proto: tcp\n"),
      withRule("  - direction: in\n    proto: tcp\n    remote: 10.77.0.300\n"),
      withRule("  - direction: in\n    proto: tcp\n    remote: 10.77.0.1/16\n"),
      withRule("  - direction: in\n    proto: tcp\n    remote: fd77::1/129\n"),
      withRule("  - direction: in\n    proto: tcp\n    remote: bad_name!\n"),
      withRule("  - direction: in\n    proto: tcp\n    remote: 10.0.0.1\n    ports: 22\n"),
      withRule("  - direction: in\n    proto: tcp\n    remote: 10.0.0.1\n    proto: udp\n"),
      withRule("  - just a string\n"),
      withRule("  - direction: in\n    proto: tcp\n    remote: {a: b}\n"),
  };
  return v;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ParsePolicyError,
    ::testing::Values(
        ErrorCase{"port not a number", composed()[0].c_str(),
                  "p.yaml:7: port: invalid value \"abc\": port must be a number from 1 to 65535"},
        ErrorCase{"list where a scalar belongs", composed()[1].c_str(),
                  "p.yaml:7: port: expected a port (5432) or a range (\"6000-6010\"), found a "
                  "list"},
        ErrorCase{"port zero", composed()[2].c_str(),
                  "p.yaml:7: port: invalid value \"0\": port must be a number from 1 to 65535"},
        ErrorCase{"port too big", composed()[3].c_str(),
                  "p.yaml:7: port: invalid value \"70000\": port must be a number from 1 to "
                  "65535"},
        ErrorCase{"backwards range", composed()[4].c_str(),
                  "p.yaml:7: port: invalid value \"6010-6000\": range is backwards"},
        ErrorCase{"bad range", composed()[5].c_str(),
                  "p.yaml:7: port: invalid value \"1-x\": a range is FIRST-LAST, each 1 to "
                  "65535"},
        ErrorCase{"bad direction", composed()[6].c_str(),
                  "p.yaml:4: direction: invalid value \"sideways\": expected in or out"},
        ErrorCase{"bad proto", composed()[7].c_str(),
                  "p.yaml:5: proto: invalid value \"sctp\": expected tcp, udp, icmp or any"},
        ErrorCase{"icmp with a port", composed()[8].c_str(),
                  "p.yaml:7: port: not allowed with proto icmp (ICMP has no ports)"},
        ErrorCase{"missing remote", composed()[9].c_str(),
                  "p.yaml:4: remote: missing (required: CIDR, address or DNS name)"},
        ErrorCase{"bad IPv4", composed()[10].c_str(),
                  "p.yaml:6: remote: invalid value \"10.77.0.300\": not an IPv4/IPv6 address, "
                  "CIDR or DNS name"},
        ErrorCase{"host bits set", composed()[11].c_str(),
                  "p.yaml:6: remote: invalid value \"10.77.0.1/16\": not an IPv4/IPv6 "
                  "address, CIDR or DNS name"},
        ErrorCase{"prefix too long", composed()[12].c_str(),
                  "p.yaml:6: remote: invalid value \"fd77::1/129\": not an IPv4/IPv6 address, "
                  "CIDR or DNS name"},
        ErrorCase{"not a name", composed()[13].c_str(),
                  "p.yaml:6: remote: invalid value \"bad_name!\": not an IPv4/IPv6 address, "
                  "CIDR or DNS name"},
        ErrorCase{"unknown rule field", composed()[14].c_str(),
                  "p.yaml:7: ports: unknown field (expected direction, proto, remote, port)"},
        ErrorCase{"field twice", composed()[15].c_str(), "p.yaml:7: proto: field given twice"},
        ErrorCase{"rule not a mapping", composed()[16].c_str(),
                  "p.yaml:4: rules: each rule must be a mapping (direction, proto, remote, "
                  "port), found a scalar"},
        ErrorCase{"mapping where a scalar belongs", composed()[17].c_str(),
                  "p.yaml:6: remote: expected a CIDR, an IP address or a DNS name, found a "
                  "mapping"},
        ErrorCase{"unknown top-level field",
                  "name: x\ndescription: d\nowner: me\nrules:\n"
                  "  - {direction: in, proto: tcp, remote: 10.0.0.1}\n",
                  "p.yaml:3: owner: unknown field (expected name, description, selector, "
                  "rules)"},
        ErrorCase{"bad name",
                  "name: Bad_Name\ndescription: d\nrules:\n"
                  "  - {direction: in, proto: tcp, remote: 10.0.0.1}\n",
                  "p.yaml:1: name: invalid value \"Bad_Name\": must be 1-63 characters of "
                  "[a-z0-9-]"},
        ErrorCase{"name is a list",
                  "name: [a]\ndescription: d\nrules:\n"
                  "  - {direction: in, proto: tcp, remote: 10.0.0.1}\n",
                  "p.yaml:1: name: expected a set name, found a list"},
        ErrorCase{"empty rules", "name: x\ndescription: d\nrules: []\n",
                  "p.yaml:3: rules: must hold at least one rule"},
        ErrorCase{"rules not a list", "name: x\ndescription: d\nrules: tcp 22\n",
                  "p.yaml:3: rules: expected a list of rules, found a scalar"},
        ErrorCase{"missing everything", "selector: role=db\n",
                  "p.yaml:1: name: missing (required)\n"
                  "p.yaml:1: description: missing (required)\n"
                  "p.yaml:1: rules: missing (required: a list of rules)"},
        ErrorCase{"bad selector",
                  "name: x\ndescription: d\nselector: role\nrules:\n"
                  "  - {direction: in, proto: tcp, remote: 10.0.0.1}\n",
                  "p.yaml:3: selector: invalid value \"role\": expected KEY=VALUE"},
        ErrorCase{"empty file", "",
                  "p.yaml:1: yaml: empty file: expected a mapping with name, "
                  "description, rules"},
        ErrorCase{"top level is a list", "- a\n- b\n",
                  "p.yaml:1: yaml: expected a mapping with name, description, rules, found a "
                  "list"},
        ErrorCase{"two documents",
                  "name: x\ndescription: d\nrules:\n"
                  "  - {direction: in, proto: tcp, remote: 10.0.0.1}\n---\nname: y\n",
                  "p.yaml:6: yaml: more than one document: one exemption set per file"},
        // yaml-cpp 0.7's LoadAll never returns on this (found by fuzz/policy_fuzz).
        ErrorCase{"only a comma", ",",
                  "p.yaml:1: yaml: not YAML the parser can read past (a stray \",\"?)"}));

TEST(ParsePolicy, CollectsEveryErrorOfAFile) {
  EXPECT_EQ(errorOf("name: x\ndescription: d\nrules:\n"
                    "  - direction: up\n    proto: tcp\n    remote: 10.0.0.1\n    port: abc\n"
                    "  - direction: in\n    proto: icmp\n    remote: 10.0.0.1\n    port: 22\n"),
            "p.yaml:4: direction: invalid value \"up\": expected in or out\n"
            "p.yaml:7: port: invalid value \"abc\": port must be a number from 1 to 65535\n"
            "p.yaml:11: port: not allowed with proto icmp (ICMP has no ports)");
}

TEST(ParsePolicy, YamlSyntaxErrorNamesItsLine) {
  std::string err = errorOf(
      "name: x\ndescription: d\nrules:\n  - direction: in\n"
      "    proto: tcp\n   remote: 10.0.0.1\n");
  EXPECT_THAT(err, ::testing::StartsWith("p.yaml:6: yaml: ")) << err;
}

TEST(ParsePolicy, BareStarSelectorGetsAHint) {
  std::string err = errorOf(
      "name: x\ndescription: d\nselector: *\nrules:\n"
      "  - {direction: in, proto: tcp, remote: 10.0.0.1}\n");
  EXPECT_THAT(err, ::testing::StartsWith("p.yaml:3: yaml: ")) << err;
  EXPECT_THAT(err, HasSubstr("write selector: \"*\" with quotes")) << err;
}

std::vector<std::pair<std::string, std::string>> twoFiles(const std::string& name_b) {
  return {{"a.yaml",
           "name: shared\ndescription: d\nrules:\n"
           "  - {direction: in, proto: tcp, remote: 10.0.0.1}\n"},
          {"b.yaml", "# comment\nname: " + name_b +
                         "\ndescription: d\nrules:\n"
                         "  - {direction: out, proto: udp, remote: fd77::50, port: 53}\n"}};
}

TEST(BuildPolicyLibrary, RejectsDuplicateNamesAcrossFiles) {
  auto lib = buildPolicyLibrary(twoFiles("shared"));
  ASSERT_FALSE(lib.ok());
  EXPECT_EQ(lib.status().message(),
            "b.yaml:2: name: duplicate set \"shared\", first defined in a.yaml:1");
}

TEST(BuildPolicyLibrary, IndexesByName) {
  auto lib = buildPolicyLibrary(twoFiles("other"));
  ASSERT_TRUE(lib.ok()) << lib.status();
  ASSERT_NE(lib->find("shared"), nullptr);
  ASSERT_NE(lib->find("other"), nullptr);
  EXPECT_EQ(lib->find("other")->file, "b.yaml");
  EXPECT_EQ(lib->find("missing"), nullptr);
}

TEST(LoadPolicyDir, ShippedPoliciesAreValid) {
  auto lib = loadPolicyDir(BULKHEAD_POLICY_DIR);
  ASSERT_TRUE(lib.ok()) << lib.status();
  std::vector<std::string> names;
  for (const auto& [name, set] : lib->sets) names.push_back(name);
  EXPECT_THAT(names, ElementsAre("backup-server", "dns-to-internal-resolvers", "ir-jump-host",
                                 "monitoring", "ntp", "postgres-replication"));
  for (const auto& [name, set] : lib->sets) {
    EXPECT_EQ(set.file, name + ".yaml") << "one set per file, named after it";
    for (const auto& rule : set.rules) {
      EXPECT_TRUE(rule.remote_cidr.has_value()) << name << ": lab policies use literals";
    }
  }

  const ExemptionSet* jump = lib->find("ir-jump-host");
  EXPECT_TRUE(jump->all_hosts) << "responders' SSH must be kept by default on every host";
  bool ssh_v4 = false, ssh_v6 = false;
  for (const auto& r : jump->rules) {
    if (r.direction == v1::DIRECTION_IN && r.protocol == v1::PROTOCOL_TCP && r.port_first == 22) {
      ssh_v4 |= r.remote_cidr->toString() == "10.77.0.40/32";
      ssh_v6 |= r.remote_cidr->toString() == "fd77::40/128";
    }
  }
  EXPECT_TRUE(ssh_v4 && ssh_v6);

  const ExemptionSet* pg = lib->find("postgres-replication");
  ASSERT_TRUE(pg->selector.has_value());
  EXPECT_EQ(*pg->selector, (Labels{{"role", "db"}}));
  std::set<std::string> seen;
  for (const auto& r : pg->rules) {
    seen.insert(fmt::format("{} {} {}", v1::Direction_Name(r.direction), r.remote_cidr->toString(),
                            r.port_first));
  }
  EXPECT_EQ(seen, (std::set<std::string>{
                      "DIRECTION_IN 10.77.0.50/32 5432", "DIRECTION_IN fd77::50/128 5432",
                      "DIRECTION_OUT 10.77.0.50/32 5432", "DIRECTION_OUT fd77::50/128 5432"}));
}

std::vector<std::string> namesOf(const std::vector<const ExemptionSet*>& sets) {
  std::vector<std::string> out;
  for (const auto* s : sets) out.push_back(s->name);
  return out;
}

TEST(LoadPolicyDir, DefaultSetsFollowSelectors) {
  auto lib = loadPolicyDir(BULKHEAD_POLICY_DIR);
  ASSERT_TRUE(lib.ok()) << lib.status();
  EXPECT_THAT(namesOf(defaultSetsFor(*lib, {{"role", "db"}, {"site", "par"}})),
              ElementsAre("ir-jump-host", "postgres-replication"));
  EXPECT_THAT(namesOf(defaultSetsFor(*lib, {{"role", "web"}})), ElementsAre("ir-jump-host"));
  EXPECT_THAT(namesOf(defaultSetsFor(*lib, {})), ElementsAre("ir-jump-host"));
}

TEST(LoadPolicyDir, CollectsAllErrorsOfAllFiles) {
  auto lib = loadPolicyDir(BULKHEAD_TESTDATA_DIR "/policies-bad");
  ASSERT_FALSE(lib.ok());
  std::string msg(lib.status().message());
  std::vector<std::string> lines = absl::StrSplit(msg, '\n');
  ASSERT_EQ(lines.size(), 6u) << msg;
  EXPECT_EQ(lines[0],
            "b-replication-again.yml:2: name: duplicate set \"replication\", first defined in "
            "a-replication.yaml:1")
      << msg;
  EXPECT_EQ(lines[1],
            "c-type-error.yaml:7: port: invalid value \"abc\": port must be a number from 1 to "
            "65535");
  EXPECT_EQ(lines[2], "c-type-error.yaml:9: proto: expected tcp, udp, icmp or any, found a list");
  EXPECT_EQ(lines[3],
            "d-unknown-field.yaml:5: protocol: unknown field (expected direction, proto, "
            "remote, port)");
  EXPECT_EQ(lines[4], "d-unknown-field.yaml:4: proto: missing (required: tcp, udp, icmp or any)");
  EXPECT_THAT(lines[5], ::testing::StartsWith("e-syntax.yaml:6: yaml: "));
}

TEST(LoadPolicyDir, MissingDirectoryNamesThePath) {
  auto lib = loadPolicyDir("/nonexistent/bulkhead-policies");
  ASSERT_FALSE(lib.ok());
  EXPECT_THAT(std::string(lib.status().message()), HasSubstr("\"/nonexistent/bulkhead-policies\""));
}

TEST(SelectSets, DefaultsPlusRequestedAndUnknownNames) {
  auto lib = loadPolicyDir(BULKHEAD_POLICY_DIR);
  ASSERT_TRUE(lib.ok()) << lib.status();
  Labels db = {{"role", "db"}};
  auto sets = selectSets(*lib, db, {"ntp", "ir-jump-host"}, true);
  ASSERT_TRUE(sets.ok()) << sets.status();
  EXPECT_THAT(namesOf(*sets), ElementsAre("ir-jump-host", "ntp", "postgres-replication"));

  sets = selectSets(*lib, db, {"ntp"}, false);
  ASSERT_TRUE(sets.ok()) << sets.status();
  EXPECT_THAT(namesOf(*sets), ElementsAre("ntp"));

  sets = selectSets(*lib, db, {"ntp", "no-such-set"}, true);
  ASSERT_FALSE(sets.ok());
  EXPECT_THAT(std::string(sets.status().message()),
              ::testing::StartsWith("exempt: unknown exemption set \"no-such-set\" (known: "
                                    "backup-server, dns-to-internal-resolvers"));
}

class FakeResolver : public NameResolver {
 public:
  std::map<std::string, std::vector<std::string>> answers;
  std::vector<std::string> asked;
  absl::StatusOr<std::vector<std::string>> resolve(const std::string& name) override {
    asked.push_back(name);
    auto it = answers.find(name);
    if (it == answers.end()) return absl::NotFoundError("no such host");
    return it->second;
  }
};

TEST(ResolveExemptions, NamesBecomeOneHostRuleEachAddress) {
  auto set = parsePolicy("s.yaml", R"(name: svc
description: d
rules:
  - {direction: out, proto: tcp, remote: db.corp.example, port: 5432}
  - {direction: in, proto: any, remote: 10.77.0.0/16}
  - {direction: in, proto: any, remote: 10.77.0.0/16}
)");
  ASSERT_TRUE(set.ok()) << set.status();
  FakeResolver resolver;
  resolver.answers["db.corp.example"] = {"10.77.0.50", "fd77::50"};
  auto rules = resolveExemptions({&*set}, resolver);
  ASSERT_TRUE(rules.ok()) << rules.status();
  ASSERT_EQ(rules->size(), 3u) << "exact duplicates are removed";
  EXPECT_EQ((*rules)[0].remote_cidr(), "10.77.0.50/32");
  EXPECT_EQ((*rules)[1].remote_cidr(), "fd77::50/128");
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ((*rules)[i].direction(), v1::DIRECTION_OUT);
    EXPECT_EQ((*rules)[i].protocol(), v1::PROTOCOL_TCP);
    EXPECT_EQ((*rules)[i].ports().first(), 5432u);
    EXPECT_EQ((*rules)[i].ports().last(), 5432u);
    EXPECT_EQ((*rules)[i].set_name(), "svc");
  }
  EXPECT_EQ((*rules)[2].remote_cidr(), "10.77.0.0/16");
  EXPECT_EQ((*rules)[2].protocol(), v1::PROTOCOL_ANY);
  EXPECT_EQ((*rules)[2].ports().first(), 0u);
  EXPECT_EQ((*rules)[2].ports().last(), 0u);
  EXPECT_THAT(resolver.asked, ElementsAre("db.corp.example")) << "literals are not resolved";
}

TEST(ResolveExemptions, UnresolvableNamesAreErrorsNamingSetAndName) {
  auto set = parsePolicy("s.yaml", R"(name: svc
description: d
rules:
  - {direction: out, proto: tcp, remote: gone.corp.example, port: 5432}
  - {direction: out, proto: tcp, remote: weird.corp.example, port: 5432}
)");
  ASSERT_TRUE(set.ok()) << set.status();
  FakeResolver resolver;
  resolver.answers["weird.corp.example"] = {"10.0.0.0/8"};
  auto rules = resolveExemptions({&*set}, resolver);
  ASSERT_FALSE(rules.ok());
  EXPECT_EQ(rules.status().message(),
            "exemption set \"svc\" (s.yaml:4): remote \"gone.corp.example\": no such host\n"
            "exemption set \"svc\" (s.yaml:5): remote \"weird.corp.example\": resolver "
            "returned \"10.0.0.0/8\", not an IP address");
}

TEST(GetaddrinfoResolver, ResolvesLiteralsWithoutTheNetwork) {
  GetaddrinfoResolver resolver;
  auto addrs = resolver.resolve("127.0.0.1");
  ASSERT_TRUE(addrs.ok()) << addrs.status();
  EXPECT_THAT(*addrs, ElementsAre("127.0.0.1"));
}

}  // namespace
}  // namespace bulkhead
