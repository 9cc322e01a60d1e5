// Webhook payloads to signals (controller/webhook/formats.h): the recorded samples of
// testdata/webhook/ (SOURCES.md says where each comes from), and every malformed case answered
// with one line naming the field, with no signal.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "controller/webhook/formats.h"
#include "evidence/hash.h"

namespace bulkhead::controller::webhook {
namespace {

namespace v1 = bulkhead::v1;
using ::testing::StartsWith;

std::string sample(const std::string& name) {
  std::ifstream in(std::filesystem::path(BULKHEAD_WEBHOOK_TESTDATA) / name);
  EXPECT_TRUE(in) << name;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

FormatConfig configOf(Format format, const std::string& json = "") {
  auto c = parseFormatConfig(format, json);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : FormatConfig{};
}

// The error of decoding `body`, which must fail INVALID_ARGUMENT.
std::string refusal(const FormatConfig& config, const std::string& body) {
  auto s = decode(config, "it", body);
  EXPECT_FALSE(s.ok()) << body;
  if (s.ok()) return "";
  EXPECT_TRUE(absl::IsInvalidArgument(s.status())) << s.status();
  EXPECT_EQ(s.status().message().find('\n'), std::string_view::npos) << s.status();
  return std::string(s.status().message());
}

TEST(WebhookFormats, NamesRoundTrip) {
  for (Format f : {Format::kAlertmanager, Format::kFalco, Format::kGeneric}) {
    EXPECT_EQ(*parseFormat(formatName(f)), f);
  }
  EXPECT_THAT(std::string(parseFormat("splunk").status().message()), StartsWith("format: "));
}

TEST(Alertmanager, FiringGroupBecomesOneSignalPerAlert) {
  const std::string body = sample("alertmanager_firing.json");
  auto signals = decode(configOf(Format::kAlertmanager), "am", body);
  ASSERT_TRUE(signals.ok()) << signals.status();
  ASSERT_EQ(signals->size(), 2U);
  const v1::Signal& a = (*signals)[0];
  EXPECT_EQ(a.source(), v1::SIGNAL_SOURCE_ALERTMANAGER);
  EXPECT_EQ(a.integration(), "am");
  EXPECT_EQ(a.rule(), "SSHBruteForce");
  EXPECT_EQ(a.host(), "h2");  // the `host` label before `instance`
  EXPECT_THAT(a.addresses(), ::testing::ElementsAre("10.77.0.66"));
  EXPECT_EQ(a.severity(), v1::SEVERITY_CRITICAL);
  EXPECT_FALSE(a.resolved());
  EXPECT_EQ(a.idempotency_key(), "a9d1e4c6b5f0e2d3/firing/2026-12-04T02:40:00.123Z");
  EXPECT_EQ(a.payload_sha256(), evidence::sha256Hex(body));
  EXPECT_EQ(a.labels().at("job"), "node");
  const v1::Signal& b = (*signals)[1];
  EXPECT_EQ(b.rule(), "NodeDown");
  EXPECT_EQ(b.host(), "fd77::3");  // instance's host part
  EXPECT_TRUE(b.addresses().empty());
  EXPECT_EQ(b.severity(), v1::SEVERITY_MEDIUM);
}

TEST(Alertmanager, ResolvedHasItsOwnKeyForTheSameFingerprint) {
  auto firing = decode(configOf(Format::kAlertmanager), "am", sample("alertmanager_firing.json"));
  auto resolved =
      decode(configOf(Format::kAlertmanager), "am", sample("alertmanager_resolved.json"));
  ASSERT_TRUE(firing.ok() && resolved.ok());
  ASSERT_EQ(resolved->size(), 1U);
  EXPECT_TRUE((*resolved)[0].resolved());
  EXPECT_NE((*resolved)[0].idempotency_key(), (*firing)[0].idempotency_key());
  EXPECT_THAT((*resolved)[0].idempotency_key(), StartsWith("a9d1e4c6b5f0e2d3/"));
}

TEST(Alertmanager, ConfiguredLabels) {
  auto c = configOf(Format::kAlertmanager,
                    R"({"host_labels":["instance"],"address_labels":["attacker"]})");
  auto s = decode(c, "am", R"({"version":"4","alerts":[{"status":"firing","fingerprint":"f",
      "labels":{"alertname":"X","host":"ignored","instance":"web-1:9100",
      "attacker":"198.51.100.7, 198.51.100.0/24"}}]})");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)[0].host(), "web-1");
  EXPECT_THAT((*s)[0].addresses(), ::testing::ElementsAre("198.51.100.7", "198.51.100.0/24"));
}

TEST(Alertmanager, EveryMalformedPartIsNamed) {
  const FormatConfig c = configOf(Format::kAlertmanager);
  const std::string ok_alert =
      R"({"status":"firing","fingerprint":"f1","labels":{"alertname":"A"}})";
  auto with = [&](const std::string& second) {
    return R"({"version":"4","alerts":[)" + ok_alert + "," + second + "]}";
  };
  EXPECT_EQ(refusal(c, "{"), "body: not valid JSON");
  EXPECT_EQ(refusal(c, "[1]"), "body: must be a JSON object, found an array");
  EXPECT_EQ(refusal(c, R"({"alerts":[]})"), "version: required");
  EXPECT_THAT(refusal(c, R"({"version":"3","alerts":[]})"), StartsWith("version: \"3\""));
  EXPECT_EQ(refusal(c, R"({"version":4})"), "version: must be a string, found a number");
  EXPECT_EQ(refusal(c, R"({"version":"4"})"), "alerts: required");
  EXPECT_EQ(refusal(c, R"({"version":"4","alerts":{}})"),
            "alerts: must be an array, found an object");
  EXPECT_EQ(refusal(c, R"({"version":"4","alerts":[]})"), "alerts: must not be empty");
  EXPECT_EQ(refusal(c, with("7")), "alerts[1]: must be an object, found a number");
  EXPECT_EQ(refusal(c, with(R"({"fingerprint":"f","labels":{"alertname":"A"}})")),
            "alerts[1].status: required");
  EXPECT_EQ(
      refusal(c, with(R"({"status":"pending","fingerprint":"f","labels":{"alertname":"A"}})")),
      "alerts[1].status: must be \"firing\" or \"resolved\"");
  EXPECT_EQ(refusal(c, with(R"({"status":"firing","fingerprint":"f"})")),
            "alerts[1].labels: required");
  EXPECT_EQ(refusal(c, with(R"({"status":"firing","fingerprint":"f","labels":{}})")),
            "alerts[1].labels.alertname: required");
  EXPECT_EQ(refusal(c, with(R"({"status":"firing","fingerprint":"f","labels":{"alertname":1}})")),
            "alerts[1].labels.alertname: must be a string, found a number");
  EXPECT_EQ(refusal(c, with(R"({"status":"firing","labels":{"alertname":"A"}})")),
            "alerts[1].fingerprint: required");
  EXPECT_EQ(refusal(c, with(R"({"status":"firing","fingerprint":"","labels":{"alertname":"A"}})")),
            "alerts[1].fingerprint: must not be empty");
  EXPECT_THAT(refusal(c, with(R"({"status":"firing","fingerprint":"f",
                                  "labels":{"alertname":"A","src_ip":"not-an-ip"}})")),
              StartsWith("alerts[1].address"));
  EXPECT_EQ(refusal(c, with(R"({"status":"firing","fingerprint":"f","startsAt":5,
                                "labels":{"alertname":"A"}})")),
            "alerts[1].startsAt: must be a string, found a number");
}

TEST(Alertmanager, BadConfigIsNamed) {
  EXPECT_THAT(
      std::string(parseFormatConfig(Format::kAlertmanager, R"({"hosts":[]})").status().message()),
      StartsWith("hosts: unknown key"));
  EXPECT_THAT(
      std::string(
          parseFormatConfig(Format::kAlertmanager, R"({"host_labels":"x"})").status().message()),
      StartsWith("host_labels: must be an array"));
  EXPECT_EQ(parseFormatConfig(Format::kAlertmanager, "nope").status().message(),
            "mapping: not valid JSON");
}

TEST(Falcosidekick, RecordedSample) {
  auto s = decode(configOf(Format::kFalco), "falco", sample("falcosidekick.json"));
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->size(), 1U);
  const v1::Signal& f = (*s)[0];
  EXPECT_EQ(f.source(), v1::SIGNAL_SOURCE_FALCO);
  EXPECT_EQ(f.rule(), "Reverse Shell");
  EXPECT_EQ(f.severity(), v1::SEVERITY_CRITICAL);
  EXPECT_EQ(f.host(), "h2");
  EXPECT_THAT(f.addresses(), ::testing::ElementsAre("10.77.0.66"));  // fd.rip
  EXPECT_EQ(f.idempotency_key(), "3b4e1c6a-0f5d-4d8e-9a61-2c7e5b9f1d02");
  EXPECT_EQ(f.labels().at("proc.cmdline"), "bash -i");
  EXPECT_EQ(f.labels().at("fd.sport"), "4444");
}

TEST(Falcosidekick, NoAddressWhenFalcoHasNone) {
  auto s = decode(configOf(Format::kFalco), "falco",
                  R"({"rule":"Write below binary dir","priority":"Error","output":"x",
                      "output_fields":{"fd.name":"/bin/hack","fd.rip":"<NA>"}})");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE((*s)[0].addresses().empty());
  EXPECT_EQ((*s)[0].severity(), v1::SEVERITY_HIGH);
  EXPECT_TRUE((*s)[0].idempotency_key().empty());  // derived by the controller
}

TEST(Falcosidekick, EveryMalformedPartIsNamed) {
  const FormatConfig c = configOf(Format::kFalco);
  EXPECT_EQ(refusal(c, R"({"priority":"Error"})"), "rule: required");
  EXPECT_EQ(refusal(c, R"({"rule":"R"})"), "priority: required");
  EXPECT_THAT(refusal(c, R"({"rule":"R","priority":"Loud"})"),
              StartsWith("priority: unknown priority \"loud\""));
  EXPECT_EQ(refusal(c, R"({"rule":"R","priority":"Error","output_fields":[]})"),
            "output_fields: must be an object, found an array");
  EXPECT_EQ(refusal(c, R"({"rule":"R","priority":"Error","output_fields":{"fd.rip":7}})"),
            "output_fields.fd.rip: must be a string, found a number");
  EXPECT_THAT(refusal(c, R"({"rule":"R","priority":"Error","output_fields":{"fd.rip":"x"}})"),
              StartsWith("output_fields: address"));
  EXPECT_EQ(refusal(c, R"({"rule":"R","priority":"Error","tags":"a"})"),
            "tags: must be an array, found a string");
  EXPECT_EQ(refusal(c, R"({"rule":"R","priority":"Error","hostname":1})"),
            "hostname: must be a string, found a number");
}

TEST(Generic, SplunkWithItsMapping) {
  auto c = configOf(Format::kGeneric, sample("generic_splunk_mapping.json"));
  auto s = decode(c, "splunk", sample("generic_splunk.json"));
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->size(), 1U);
  const v1::Signal& g = (*s)[0];
  EXPECT_EQ(g.source(), v1::SIGNAL_SOURCE_WEBHOOK);
  EXPECT_EQ(g.integration(), "splunk");
  EXPECT_EQ(g.rule(), "SSH brute force");
  EXPECT_EQ(g.host(), "h3");
  EXPECT_THAT(g.addresses(), ::testing::ElementsAre("10.77.0.66"));
  EXPECT_EQ(g.idempotency_key(), "scheduler__admin__search__RMD5a1f2e3d4c5b6a7_at_1796352000_42");
  EXPECT_EQ(g.labels().at("count"), "38");
  EXPECT_EQ(g.labels().at("app"), "search");
}

TEST(Generic, ItemsSeverityResolvedAndTtl) {
  auto c = configOf(Format::kGeneric, R"({"items":"/alerts","rule":"name","severity":"sev",
      "addresses":"ips","resolved":"state","resolved_value":"closed","ttl_seconds":"ttl"})");
  auto s = decode(c, "kibana", R"({"alerts":[
      {"name":"a","sev":"high","ips":["192.0.2.1","192.0.2.2"],"state":"open","ttl":600},
      {"name":"b","sev":2,"ips":"192.0.2.3","state":"closed"}]})");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->size(), 2U);
  EXPECT_EQ((*s)[0].severity(), v1::SEVERITY_HIGH);
  EXPECT_EQ((*s)[0].addresses_size(), 2);
  EXPECT_FALSE((*s)[0].resolved());
  EXPECT_EQ((*s)[0].ttl_seconds(), 600U);
  EXPECT_EQ((*s)[1].severity(), v1::SEVERITY_LOW);
  EXPECT_TRUE((*s)[1].resolved());
}

TEST(Generic, EveryMalformedPartIsNamed) {
  auto c = configOf(Format::kGeneric, R"({"items":"alerts","rule":"name","severity":"sev",
      "addresses":"ips","host":"host","ttl_seconds":"ttl","resolved":"done"})");
  auto one = [](const std::string& item) { return R"({"alerts":[{"name":"ok"},)" + item + "]}"; };
  EXPECT_EQ(refusal(c, R"({"x":1})"), "alerts: required (items)");
  EXPECT_EQ(refusal(c, R"({"alerts":{}})"), "alerts: must be an array, found an object");
  EXPECT_EQ(refusal(c, one("{}")), "alerts[1]: name: required (rule)");
  EXPECT_EQ(refusal(c, one(R"({"name":["x"]})")),
            "alerts[1]: name: must be a non-empty string, found an array");
  EXPECT_THAT(refusal(c, one(R"({"name":"n","sev":"loud"})")),
              StartsWith("alerts[1]: sev: unknown severity"));
  EXPECT_EQ(refusal(c, one(R"({"name":"n","sev":9})")),
            "alerts[1]: sev: a number must be 1 (info) to 5 (critical)");
  EXPECT_EQ(refusal(c, one(R"({"name":"n","ips":[1]})")),
            "alerts[1]: ips: must be an array of strings, found an array");
  EXPECT_EQ(refusal(c, one(R"({"name":"n","ips":{}})")),
            "alerts[1]: ips: must be a string or an array of strings, found an object");
  EXPECT_THAT(refusal(c, one(R"({"name":"n","ips":"nope"})")), StartsWith("alerts[1].address"));
  EXPECT_EQ(refusal(c, one(R"({"name":"n","host":5})")),
            "alerts[1]: host: must be a string, found a number");
  EXPECT_EQ(refusal(c, one(R"({"name":"n","ttl":-1})")),
            "alerts[1]: ttl: must be a whole number of seconds");
  EXPECT_EQ(refusal(c, one(R"({"name":"n","done":3})")),
            "alerts[1]: done: must be a boolean or a string, found a number");
}

TEST(Generic, BadMappingIsNamed) {
  auto msg = [](const std::string& json) {
    return std::string(parseFormatConfig(Format::kGeneric, json).status().message());
  };
  EXPECT_THAT(msg(""), StartsWith("mapping: required"));
  EXPECT_THAT(msg("{}"), StartsWith("rule: required"));
  EXPECT_THAT(msg(R"({"rule":"a","colour":"b"})"), StartsWith("colour: unknown key"));
  EXPECT_THAT(msg(R"({"rule":"a..b"})"), StartsWith("rule: not a dotted path"));
  EXPECT_THAT(msg(R"({"rule":"/a~2"})"), StartsWith("rule: not a JSON pointer"));
  EXPECT_THAT(msg(R"({"rule":"a","labels":{"x":1}})"), StartsWith("labels.x: must be a string"));
  EXPECT_THAT(msg(R"({"rule":7})"), StartsWith("rule: must be a string"));
}

}  // namespace
}  // namespace bulkhead::controller::webhook
