// The pure side of local signal reporting: the subcommands' arguments, the signal socket's
// request/response lines, the default idempotency key, sshguard's backend lines and Wazuh's
// active response messages (samples in testdata/wazuh, see its README).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "agent/core/signal.h"
#include "agent/core/signal_args.h"
#include "agent/core/sshguard.h"
#include "agent/core/wazuh.h"

namespace bulkhead::agent {
namespace {

namespace v1 = bulkhead::v1;
using namespace std::chrono_literals;

std::vector<std::string> argv(std::initializer_list<std::string> words) { return words; }

std::string errorOf(const absl::Status& s) { return std::string(s.message()); }

// ---- bulkhead-agent signal ----

TEST(SignalArgs, FullCommandLine) {
  auto c = parseReportCommand(
      argv({"signal",      "--source", "fail2ban",      "--rule",     "sshd",      "--ip",
            "203.0.113.7", "--ip",     "2001:db8::/64", "--severity", "high",      "--ttl",
            "600s",        "--key",    "f2b-sshd-1",    "--label",    "jail=sshd", "--timeout",
            "3s",          "--json",   "--state-dir",   "/tmp/st"}));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->mode, ReportMode::kSignal);
  EXPECT_TRUE(c->json);
  EXPECT_EQ(c->state_dir, "/tmp/st");
  EXPECT_EQ(c->timeout, 3s);
  const v1::Signal& s = c->signal;
  EXPECT_EQ(s.source(), v1::SIGNAL_SOURCE_FAIL2BAN);
  EXPECT_EQ(s.rule(), "sshd");
  ASSERT_EQ(s.addresses_size(), 2);
  EXPECT_EQ(s.addresses(0), "203.0.113.7/32");
  EXPECT_EQ(s.addresses(1), "2001:db8::/64");
  EXPECT_EQ(s.severity(), v1::SEVERITY_HIGH);
  EXPECT_EQ(s.ttl_seconds(), 600u);
  EXPECT_EQ(s.idempotency_key(), "f2b-sshd-1");
  EXPECT_EQ(s.labels().at("jail"), "sshd");
  EXPECT_FALSE(s.resolved());
}

TEST(SignalArgs, Defaults) {
  auto c =
      parseReportCommand(argv({"signal", "--source", "cli", "--rule", "manual", "--resolved"}));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->state_dir, "/var/lib/bulkhead-agent");
  EXPECT_EQ(c->timeout, 5s);
  EXPECT_FALSE(c->json);
  EXPECT_TRUE(c->signal.resolved());
  EXPECT_EQ(c->signal.addresses_size(), 0);
  EXPECT_EQ(c->signal.ttl_seconds(), 0u);
  EXPECT_EQ(c->signal.idempotency_key(), "");  // the agent derives one
  EXPECT_EQ(c->signal.severity(), v1::SEVERITY_UNSPECIFIED);
}

TEST(SignalArgs, BadInputNamesTheField) {
  struct Case {
    std::vector<std::string> args;
    std::string error;
  };
  std::vector<Case> cases = {
      {{"signal", "--source", "fail2ban", "--rule", "sshd", "--ip", "300.1.2.3"}, "--ip"},
      {{"signal", "--source", "fail2ban", "--rule", "sshd", "--ip", "10.0.0.1/8"}, "--ip"},
      {{"signal", "--source", "crowdsec", "--rule", "x"}, "--source: unknown source \"crowdsec\""},
      {{"signal", "--rule", "x"}, "--source: required"},
      {{"signal", "--source", "cli"}, "--rule: required"},
      {{"signal", "--source", "cli", "--rule", std::string(257, 'r')}, "--rule"},
      {{"signal", "--source", "cli", "--rule", "x", "--severity", "urgent"}, "--severity"},
      {{"signal", "--source", "cli", "--rule", "x", "--ttl", "10"}, "--ttl"},
      {{"signal", "--source", "cli", "--rule", "x", "--timeout", "6m"}, "--timeout"},
      {{"signal", "--source", "cli", "--rule", "x", "--label", "a=b", "--label", "a=c"}, "--label"},
      {{"signal", "--source", "cli", "--rule", "x", "--label", "novalue"}, "--label"},
      {{"signal", "--source", "cli", "--rule", "x", "--key", ""}, "--key"},
      {{"signal", "--source", "cli", "--rule", "x", "stray"}, "unexpected argument \"stray\""},
      {{"wazuh-active-response", "--ip", "10.0.0.1"}, "--ip"},
  };
  for (const auto& c : cases) {
    auto r = parseReportCommand(c.args);
    ASSERT_FALSE(r.ok()) << c.args[2];
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(errorOf(r.status()).find(c.error), std::string::npos) << errorOf(r.status());
  }
}

TEST(SignalArgs, TooManyAddresses) {
  std::vector<std::string> args = {"signal", "--source", "sshguard", "--rule", "sshguard"};
  for (int i = 0; i < 65; ++i) {
    args.emplace_back("--ip");
    args.emplace_back("198.51.100." + std::to_string(i));
  }
  auto r = parseReportCommand(args);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(errorOf(r.status()).find("--ip: 65 addresses, at most 64"), std::string::npos);
  args.resize(args.size() - 2);
  EXPECT_TRUE(parseReportCommand(args).ok());
}

TEST(SignalArgs, ToolSubcommands) {
  auto w = parseReportCommand(argv({"wazuh-active-response", "--timeout", "2s"}));
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->mode, ReportMode::kWazuh);
  EXPECT_EQ(w->timeout, 2s);
  auto s = parseReportCommand(argv({"sshguard-backend", "--severity", "critical"}));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->mode, ReportMode::kSshguard);
  EXPECT_EQ(s->severity, v1::SEVERITY_CRITICAL);
  EXPECT_TRUE(isReportSubcommand("signal"));
  EXPECT_FALSE(isReportSubcommand("status"));
  auto h = parseReportCommand(argv({"signal", "--help"}));
  ASSERT_TRUE(h.ok());
  EXPECT_TRUE(h->help);
}

// ---- the signal socket's lines ----

v1::Signal sampleSignal() {
  v1::Signal s;
  s.set_source(v1::SIGNAL_SOURCE_FAIL2BAN);
  s.set_rule("sshd");
  s.set_severity(v1::SEVERITY_HIGH);
  s.add_addresses("203.0.113.7/32");
  s.set_ttl_seconds(600);
  s.set_idempotency_key("k1");
  s.set_payload_sha256(std::string(64, 'a'));
  (*s.mutable_labels())["jail"] = "sshd";
  return s;
}

TEST(SignalProtocol, RequestRoundTrip) {
  SignalRequest in{sampleSignal(), 1500ms};
  std::string line = encodeSignalRequest(in);
  ASSERT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);  // one line
  auto out = decodeSignalRequest(line);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->timeout, 1500ms);
  EXPECT_EQ(out->signal.SerializeAsString(), in.signal.SerializeAsString());
}

TEST(SignalProtocol, RequestIsCheckedAndCanonicalised) {
  auto r = decodeSignalRequest(
      R"({"signal":{"source":"sshguard","rule":"sshguard","addresses":["192.0.2.1","2001:db8::1"]}})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->timeout, kDefaultSignalTimeout);
  EXPECT_EQ(r->signal.addresses(0), "192.0.2.1/32");
  EXPECT_EQ(r->signal.addresses(1), "2001:db8::1/128");

  struct Case {
    std::string line, error;
  };
  std::vector<Case> cases = {
      {"not json", "request: not a JSON object"},
      {R"({"timeout_ms":5000})", "signal: required"},
      {R"({"signal":{"source":"crowdsec","rule":"r"}})", "signal.source"},
      {R"({"signal":{"source":"cli","rule":""}})", "signal.rule: required"},
      {R"({"signal":{"source":"cli","rule":"r","addresses":["192.0.2.1","nope"]}})",
       "signal.addresses[1]"},
      {R"({"signal":{"source":"cli","rule":"r","addresses":"192.0.2.1"}})", "signal.addresses"},
      {R"({"signal":{"source":"cli","rule":"r","host":"db-01"}})", ""},  // host ignored: below
      {R"({"signal":{"source":"cli","rule":"r","severity":"urgent"}})", "signal.severity"},
      {R"({"timeout_ms":300001,"signal":{"source":"cli","rule":"r"}})", "timeout_ms"},
      {R"({"signal":{"source":"cli","rule":"r","labels":{"a":1}}})", "signal.labels[a]"},
  };
  for (const auto& c : cases) {
    auto d = decodeSignalRequest(c.line);
    if (c.error.empty()) {
      ASSERT_TRUE(d.ok()) << c.line;
      EXPECT_EQ(d->signal.host(), "");  // not a field of the protocol: never read
      continue;
    }
    ASSERT_FALSE(d.ok()) << c.line;
    EXPECT_NE(errorOf(d.status()).find(c.error), std::string::npos) << errorOf(d.status());
  }
  std::string huge = R"({"signal":{"source":"cli","rule":")" + std::string(70'000, 'x') + "\"}}";
  EXPECT_FALSE(decodeSignalRequest(huge).ok());
}

TEST(SignalProtocol, ResponsesRoundTrip) {
  for (auto result : {SignalResult::kRecorded, SignalResult::kRefused, SignalResult::kInvalid,
                      SignalResult::kNotDelivered}) {
    SignalResponse in;
    in.result = result;
    if (result == SignalResult::kRecorded) {
      in.signal_id = "sig-9";
      in.disposition = v1::SIGNAL_DISPOSITION_SUPPRESSED;
    } else {
      in.error = "why";
    }
    auto out = decodeSignalResponse(encodeSignalResponse(in));
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->result, result);
    EXPECT_EQ(out->signal_id, in.signal_id);
    EXPECT_EQ(out->disposition, in.disposition);
    EXPECT_EQ(out->error, in.error);
  }
  EXPECT_EQ(encodeSignalResponse({SignalResult::kRecorded, "s1", v1::SIGNAL_DISPOSITION_ACTED, ""}),
            "{\"disposition\":\"acted\",\"result\":\"recorded\",\"signal_id\":\"s1\"}\n");
  // A root-only refusal of the status socket's kind still decodes to a failure.
  auto refusal = decodeSignalResponse("{\"error\":\"permission denied\"}\n");
  ASSERT_TRUE(refusal.ok());
  EXPECT_EQ(refusal->result, SignalResult::kNotDelivered);
  EXPECT_FALSE(decodeSignalResponse("{\"result\":\"recorded\"}").ok());  // no signal id
  EXPECT_FALSE(decodeSignalResponse("garbage").ok());
}

TEST(SignalProtocol, DefaultIdempotencyKey) {
  v1::Signal a = sampleSignal();
  a.add_addresses("198.51.100.1/32");
  v1::Signal b = a;
  b.clear_addresses();
  b.add_addresses("198.51.100.1/32");
  b.add_addresses("203.0.113.7/32");
  b.set_ttl_seconds(1);  // not part of the key
  std::string key = defaultIdempotencyKey(a, 100);
  EXPECT_EQ(key.rfind("agent:fail2ban:start:", 0), 0u) << key;
  EXPECT_EQ(key.size(), std::string("agent:fail2ban:start:").size() + 32);
  EXPECT_EQ(defaultIdempotencyKey(b, 100), key);  // address order does not matter
  EXPECT_NE(defaultIdempotencyKey(a, 101), key);  // a later minute: a new signal
  v1::Signal ended = a;
  ended.set_resolved(true);
  EXPECT_EQ(defaultIdempotencyKey(ended, 100).rfind("agent:fail2ban:end:", 0), 0u);
  v1::Signal other_rule = a;
  other_rule.set_rule("recidive");
  EXPECT_NE(defaultIdempotencyKey(other_rule, 100), key);
}

TEST(SignalProtocol, Sha256) {
  EXPECT_EQ(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

// ---- sshguard ----

TEST(Sshguard, Lines) {
  auto b = parseSshguardLine("block 192.0.2.77 4 32\n");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->kind, SshguardCommand::Kind::kBlock);
  EXPECT_EQ(b->cidr, "192.0.2.77/32");
  auto subnet = parseSshguardLine("block 192.0.2.77 4 24");
  ASSERT_TRUE(subnet.ok());
  EXPECT_EQ(subnet->cidr, "192.0.2.0/24");  // host bits cleared
  auto v6 = parseSshguardLine("release 2001:db8::1:2 6 64");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->kind, SshguardCommand::Kind::kRelease);
  EXPECT_EQ(v6->cidr, "2001:db8::/64");
  auto f = parseSshguardLine("flush");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->kind, SshguardCommand::Kind::kFlush);

  for (const char* bad :
       {"", "block", "block 192.0.2.1 4", "block 192.0.2.1 6 32", "block 2001:db8::1 4 32",
        "block 192.0.2.1 4 0", "block 192.0.2.1 4 33", "block 192.0.2.1 5 32", "block nope 4 32",
        "block 192.0.2.0/24 4 24", "unblock 192.0.2.1 4 32", "flush now", "block 192.0.2.1 4 3x"}) {
    auto r = parseSshguardLine(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(errorOf(r.status()).find("sshguard line"), std::string::npos);
    }
  }
}

// ---- Wazuh ----

std::string sample(const std::string& name) {
  std::ifstream in(std::string(BULKHEAD_AGENT_TESTDATA) + "/wazuh/" + name);
  EXPECT_TRUE(in.good()) << name;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(Wazuh, V4AddWithFullAlert) {
  auto m = parseWazuhMessage(sample("v4_add_shellshock.json"), v1::SEVERITY_UNSPECIFIED);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->format, 4);
  EXPECT_EQ(m->command, "add");
  EXPECT_FALSE(m->resolved);
  EXPECT_EQ(m->program, "/var/ossec/active-response/bin/bulkhead-ar");
  const v1::Signal& s = m->signal;
  EXPECT_EQ(s.source(), v1::SIGNAL_SOURCE_WAZUH);
  EXPECT_EQ(s.rule(), "31168");
  ASSERT_EQ(s.addresses_size(), 1);
  EXPECT_EQ(s.addresses(0), "192.0.2.223/32");
  EXPECT_EQ(s.severity(), v1::SEVERITY_CRITICAL);  // level 15
  EXPECT_EQ(s.labels().at("rule_description"), "Shellshock attack detected");
  EXPECT_EQ(s.labels().at("rule_level"), "15");
  EXPECT_EQ(s.labels().at("rule_groups"), "web,accesslog,attack");
  EXPECT_EQ(s.labels().at("agent_name"), "wazuh-server");
  EXPECT_EQ(s.idempotency_key(), "wazuh:1612213124.1394:31168:start");
  EXPECT_FALSE(s.resolved());
  EXPECT_TRUE(needsCheckKeys(*m));
  EXPECT_EQ(checkKeysMessage(*m),
            "{\"command\":\"check_keys\",\"origin\":{\"module\":\"active-response\",\"name\":"
            "\"/var/ossec/active-response/bin/bulkhead-ar\"},\"parameters\":{\"keys\":["
            "\"192.0.2.223\"]},\"version\":1}\n");
  v1::Signal checked = s;
  EXPECT_TRUE(checkLocalSignal(checked).ok());
}

TEST(Wazuh, V4DeleteIsResolvedAndNeedsNoHandshake) {
  auto m = parseWazuhMessage(sample("v4_delete_sshd.json"), v1::SEVERITY_LOW);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->resolved);
  EXPECT_TRUE(m->signal.resolved());
  EXPECT_FALSE(needsCheckKeys(*m));
  EXPECT_EQ(m->signal.rule(), "5712");
  EXPECT_EQ(m->signal.addresses(0), "2001:db8::77/128");
  EXPECT_EQ(m->signal.severity(), v1::SEVERITY_LOW);  // given: overrides level 10
  EXPECT_EQ(m->signal.labels().at("dstuser"), "admin");
  EXPECT_EQ(m->signal.idempotency_key(), "wazuh:1714990272.88412:5712:end");
}

TEST(Wazuh, V4WithoutAddressKeysOnTheRule) {
  auto m = parseWazuhMessage(sample("v4_add_no_srcip.json"), v1::SEVERITY_UNSPECIFIED);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->signal.addresses_size(), 0);
  EXPECT_EQ(m->signal.rule(), "510");
  EXPECT_EQ(m->signal.severity(), v1::SEVERITY_MEDIUM);  // level 7
  EXPECT_NE(checkKeysMessage(*m).find("\"keys\":[\"510\"]"), std::string::npos);
}

TEST(Wazuh, V4BadAddressIsRefused) {
  auto m = parseWazuhMessage(sample("v4_add_bad_srcip.json"), v1::SEVERITY_UNSPECIFIED);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(errorOf(m.status()).find("parameters.alert.data.srcip"), std::string::npos)
      << m.status();
}

TEST(Wazuh, V5EnableAndDisable) {
  auto on = parseWazuhMessage(sample("v5_enable_block_ip.json"), v1::SEVERITY_UNSPECIFIED);
  ASSERT_TRUE(on.ok()) << on.status();
  EXPECT_EQ(on->format, 5);
  EXPECT_FALSE(on->resolved);
  EXPECT_FALSE(needsCheckKeys(*on));
  EXPECT_EQ(on->signal.rule(), "block-ip");
  EXPECT_EQ(on->signal.addresses(0), "198.51.100.100/32");
  EXPECT_EQ(on->signal.ttl_seconds(), 600u);
  EXPECT_EQ(on->signal.labels().at("agent_name"), "test-agent");
  EXPECT_EQ(on->signal.labels().at("user"), "username");
  EXPECT_EQ(on->signal.severity(), v1::SEVERITY_MEDIUM);
  EXPECT_EQ(on->signal.idempotency_key(), "");  // no alert id: the agent derives one
  auto off = parseWazuhMessage(sample("v5_disable_block_ip.json"), v1::SEVERITY_UNSPECIFIED);
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_TRUE(off->resolved);
  EXPECT_TRUE(off->signal.resolved());
}

TEST(Wazuh, MalformedMessages) {
  for (const char* bad : {"", "[]", "{}", R"({"version":1,"command":"restart","parameters":{}})",
                          R"({"version":1,"command":"add"})", R"({"wazuh":{},"command":"add"})",
                          R"({"wazuh":{},"source":{"ip":"x"},"command":"enable"})"}) {
    EXPECT_FALSE(parseWazuhMessage(bad, v1::SEVERITY_UNSPECIFIED).ok()) << bad;
  }
}

TEST(Wazuh, ControlAnswers) {
  EXPECT_EQ(*parseWazuhControl(R"({"version":1,"origin":{},"command":"continue"})"),
            WazuhControl::kContinue);
  EXPECT_EQ(*parseWazuhControl(R"({"command":"abort"})"), WazuhControl::kAbort);
  EXPECT_FALSE(parseWazuhControl(R"({"command":"maybe"})").ok());
  EXPECT_FALSE(parseWazuhControl("continue").ok());
}

TEST(Wazuh, SeverityFromLevel) {
  EXPECT_EQ(severityForWazuhLevel(-1), v1::SEVERITY_MEDIUM);
  EXPECT_EQ(severityForWazuhLevel(3), v1::SEVERITY_INFO);
  EXPECT_EQ(severityForWazuhLevel(4), v1::SEVERITY_LOW);
  EXPECT_EQ(severityForWazuhLevel(9), v1::SEVERITY_MEDIUM);
  EXPECT_EQ(severityForWazuhLevel(10), v1::SEVERITY_HIGH);
  EXPECT_EQ(severityForWazuhLevel(12), v1::SEVERITY_CRITICAL);
}

}  // namespace
}  // namespace bulkhead::agent
