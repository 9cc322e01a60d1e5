// The incident report's facts and renderings (controller/report/incident_report.h) and the
// signed manifest's text (evidence/report_manifest.h). Pure: rows and bundles made here.
#include "controller/report/incident_report.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/format.h"
#include "evidence/report_manifest.h"

namespace bulkhead::controller {
namespace {

using nlohmann::json;

constexpr int64_t kT0 = 1'764'979'200'000;  // 2025-12-06T00:00:00Z
constexpr int64_t kMinute = 60'000;
constexpr char kBinary[] = "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f";
constexpr char kBundle[] = "ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12";

AuditEntry row(int64_t id, int64_t at, std::string who, std::string action, std::string target,
               std::string outcome, std::string detail, std::string reason = "INC-42") {
  return AuditEntry{.id = id,
                    .at_unix_ms = at,
                    .operator_name = std::move(who),
                    .action = std::move(action),
                    .target = std::move(target),
                    .reason = std::move(reason),
                    .outcome = std::move(outcome),
                    .detail = std::move(detail),
                    .tenant = "acme",
                    .incident = "INC-42",
                    .hash = fmt::format("{:064x}", id)};
}

ReportInput scriptedIncident() {
  ReportInput in;
  in.incident.set_incident_id("INC-42");
  in.incident.set_tenant("acme");
  in.incident.set_title("ransomware on web-01 <script>alert(1)</script>");
  in.incident.set_severity(bulkhead::v1::INCIDENT_SEVERITY_HIGH);
  in.incident.set_state(bulkhead::v1::INCIDENT_STATE_OPEN);
  in.incident.set_opened_by("alice");
  in.incident.set_opened_unix_ms(kT0 + kMinute);
  in.incident.set_detected_unix_ms(kT0);
  in.records = {
      row(10, kT0 + kMinute, "alice", "incident-open", "INC-42", "ok", "severity high"),
      row(11, kT0 + 2 * kMinute, "alice", "isolate", "web-01,web-02", "accepted", ""),
      row(12, kT0 + 2 * kMinute + 40, "alice", "isolate.result", "web-01,web-02",
          "error: 1 enforced: web-01; 1 pending: web-02 (no acknowledgement within 5000 ms: "
          "will apply, later)",
          "1 enforced: web-01 (12 flows cut); 1 pending: web-02 (no acknowledgement within "
          "5000 ms: will apply, later)"),
      row(13, kT0 + 3 * kMinute, "playbook:c2-beacon", "block", "all", "accepted",
          "block 10.77.0.9/32 (blk-1); hosts web-01,web-02"),
      row(14, kT0 + 4 * kMinute, "bob", "kill-sessions", "web-01", "accepted", ""),
      row(15, kT0 + 4 * kMinute + 90, "bob", "kill-sessions.result", "web-01", "ok",
          "sessions 2: 7 mallory from 10.77.0.9, 9 svc-backup from 10.77.0.9; killed 2: 401 "
          "mallory (bash), 402 svc-backup (sh); spared 0"),
      row(16, kT0 + 5 * kMinute, "carol", "incident-note", "INC-42", "ok", "",
          "next: rotate the VPN credentials | then rebuild web-01"),
      row(17, kT0 + 62 * kMinute, "alice", "release.result", "web-01", "ok", "1 enforced: web-01"),
  };
  ReportEvidence e;
  e.row = EvidenceRow{.id = kBundle,
                      .capture_id = "cap-1",
                      .host_id = "web-01",
                      .requested_by = "alice",
                      .reason = "INC-42",
                      .requested_at_unix_ms = kT0 + 2 * kMinute,
                      .collected_at_unix_ms = kT0 + 3 * kMinute,
                      .received_at_unix_ms = kT0 + 3 * kMinute,
                      .size = 4096,
                      .manifest_sha256 = std::string(64, 'c'),
                      .signature_ok = true};
  e.custody = {CustodyEntry{.id = 1,
                            .evidence_id = kBundle,
                            .at_unix_ms = kT0 + 2 * kMinute,
                            .actor = "alice",
                            .action = "requested",
                            .hash = std::string(64, 'd')},
               CustodyEntry{.id = 2,
                            .evidence_id = kBundle,
                            .at_unix_ms = kT0 + 3 * kMinute,
                            .actor = "agent:web-01",
                            .action = "collected",
                            .hash = std::string(64, 'e')}};
  e.binaries = {kBinary};
  in.evidence = {e};
  in.generated_at_unix_ms = kT0 + 80 * kMinute;
  in.controller = "controller";
  in.regulator_deadline_ms = int64_t{72} * 60 * kMinute;
  return in;
}

std::vector<std::string> strings(const json& list) {
  std::vector<std::string> out;
  for (const auto& v : list) out.push_back(v.get<std::string>());
  return out;
}

TEST(IncidentReport, ContainmentIsEachHostsLastIsolationAndEveryFlowItsIsolationsCut) {
  const std::vector<AuditEntry> rows = {
      row(1, 1000, "a", "release.result", "db", "ok", "1 enforced: db"),
      row(2, 2000, "a", "isolate.result", "web,app", "ok",
          "2 enforced: app (3 flows cut), web (1 flows cut)"),
      row(3, 5000, "a", "release.result", "app", "ok", "1 enforced: app"),
      row(4, 9000, "a", "isolate.result", "app", "error: 1 failed: app (nft: x)",
          "1 failed: app (nft: 2 flows cut)"),
      row(5, 10000, "a", "isolate.result", "app", "ok", "1 enforced: app (2 flows cut)"),
  };
  const std::vector<HostContainment> hosts = containmentOf(rows);
  ASSERT_EQ(hosts.size(), 2u);  // db was only released in this incident
  EXPECT_EQ(hosts[0].host, "app");
  EXPECT_EQ(hosts[0].isolated_at_unix_ms, 10000);  // isolated again after its release
  EXPECT_EQ(hosts[0].released_at_unix_ms, 0);
  EXPECT_EQ(hosts[0].flows_cut, 5u);  // the failed attempt's text counts for nothing
  EXPECT_EQ(hosts[0].isolatedMs(12000), 2000);
  EXPECT_EQ(hosts[1].host, "web");
  EXPECT_EQ(hosts[1].flows_cut, 1u);
  EXPECT_EQ(hosts[1].isolatedMs(12000), 10000);
}

TEST(IncidentReport, TheTimelineIsEveryRowOfTheIncidentInOrderAndNothingElse) {
  const ReportInput in = scriptedIncident();
  const json doc = reportDocument(in);
  ASSERT_EQ(doc["timeline"].size(), in.records.size());
  for (size_t i = 0; i < in.records.size(); ++i) {
    EXPECT_EQ(doc["timeline"][i]["id"], in.records[i].id);
    EXPECT_EQ(doc["timeline"][i]["action"], in.records[i].action);
    EXPECT_EQ(doc["timeline"][i]["hash"], in.records[i].hash);
  }
  EXPECT_EQ(doc["format"], kReportFormatName);
  EXPECT_EQ(doc["incident"]["status"], "open");
  EXPECT_EQ(doc["incident"]["severity"], "high");
  EXPECT_EQ(doc["incident"]["detected_at"], "2025-12-06T00:00:00Z");
  EXPECT_EQ(doc["incident"]["summary"], kToComplete);
  EXPECT_EQ(doc["regulator_clock"]["deadline"], "2025-12-09T00:00:00Z");
  EXPECT_EQ(doc["regulator_clock"]["hours_since_detection"], 1);
  EXPECT_FALSE(doc["regulator_clock"]["deadline_passed"].get<bool>());
}

TEST(IncidentReport, IndicatorsHostsAndActorsAreReadFromTheRowsAndBundles) {
  const json doc = reportDocument(scriptedIncident());
  EXPECT_EQ(strings(doc["indicators"]["blocked"]), std::vector<std::string>{"10.77.0.9/32"});
  EXPECT_EQ(strings(doc["indicators"]["accounts"]),
            (std::vector<std::string>{"mallory", "svc-backup"}));
  EXPECT_EQ(strings(doc["indicators"]["binaries_sha256"]), std::vector<std::string>{kBinary});
  // web-01 isolated at row 12, released at row 17; web-02 (pending: will apply) still is.
  ASSERT_EQ(doc["hosts"].size(), 2u);
  EXPECT_EQ(doc["hosts"][0]["host"], "web-01");
  EXPECT_EQ(doc["hosts"][0]["isolated_seconds"], (60 * kMinute - 40) / 1000);
  EXPECT_FALSE(doc["hosts"][0]["still_isolated"].get<bool>());
  EXPECT_EQ(doc["hosts"][1]["host"], "web-02");
  EXPECT_TRUE(doc["hosts"][1]["still_isolated"].get<bool>());
  EXPECT_TRUE(doc["hosts"][1]["released_at"].is_null());
  EXPECT_EQ(doc["hosts"][0]["flows_cut"], 12);
  EXPECT_EQ(doc["hosts"][1]["flows_cut"], 0);
  ASSERT_EQ(doc["actors"].size(), 4u);
  EXPECT_EQ(doc["actors"][0]["name"], "alice");
  EXPECT_EQ(doc["actors"][0]["actions"], 4);
  EXPECT_EQ(doc["actors"][1]["name"], "playbook:c2-beacon");
  ASSERT_EQ(doc["notes"].size(), 1u);
  EXPECT_EQ(doc["notes"][0]["text"], "next: rotate the VPN credentials | then rebuild web-01");
  ASSERT_EQ(doc["evidence"].size(), 1u);
  EXPECT_EQ(doc["evidence"][0]["sha256"], kBundle);
  EXPECT_EQ(doc["evidence"][0]["custody"].size(), 2u);
  // What only a person knows is marked, in both regulators' lists.
  int to_complete = 0;
  for (const char* key : {"nist_sp_800_61", "gdpr_article_33_3"}) {
    for (const auto& f : doc[key]) to_complete += f["value"] == kToComplete;
  }
  EXPECT_GE(to_complete, 8);
}

TEST(IncidentReport, HostsInStatesReadsNamesOutsideParentheses) {
  EXPECT_EQ(hostsInStates("2 enforced: a, b; 1 failed: c (x, y: z); 1 pending: d (p, q)",
                          {"enforced", "pending"}),
            (std::vector<std::string>{"a", "b", "d"}));
  EXPECT_TRUE(hostsInStates("dry run; 1 dry-run: a", {"enforced"}).empty());
  EXPECT_TRUE(hostsInStates("", {"enforced"}).empty());
}

TEST(IncidentReport, MarkdownAndHtmlCarryEveryRowAndEveryHashEscaped) {
  const ReportInput in = scriptedIncident();
  const json doc = reportDocument(in);
  const std::string md = renderMarkdownReport(doc);
  const std::string html = renderHtmlReport(doc);
  for (const std::string* out : {&md, &html}) {
    EXPECT_NE(out->find(kBundle), std::string::npos);
    EXPECT_NE(out->find(kBinary), std::string::npos);
    EXPECT_NE(out->find("10.77.0.9/32"), std::string::npos);
    EXPECT_NE(out->find("svc-backup"), std::string::npos);
    EXPECT_NE(out->find(kToComplete), std::string::npos);
    for (const AuditEntry& r : in.records) {
      EXPECT_NE(out->find(r.action), std::string::npos) << r.action;
      EXPECT_NE(out->find(utcTimeText(r.at_unix_ms)), std::string::npos) << r.id;
    }
  }
  // Markdown: a '|' in a note does not break its table row.
  EXPECT_NE(md.find("credentials \\| then"), std::string::npos);
  // HTML: the title is text, not markup; nothing is fetched from anywhere.
  EXPECT_EQ(html.find("<script>"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(html.find("Content-Security-Policy\" content=\"default-src 'none'"), std::string::npos);
  for (const char* fetch : {"src=", "href=", "url(", "@import", "http://", "https://"}) {
    EXPECT_EQ(html.find(fetch), std::string::npos) << fetch;
  }
  // JSON: the document itself.
  EXPECT_EQ(json::parse(renderJsonReport(doc)), doc);
}

TEST(IncidentReport, FormatsAreNamedAndOthersRefused) {
  for (const char* name : {"json", "md", "html", "pdf"}) {
    auto f = parseReportFormat(name);
    ASSERT_TRUE(f.ok()) << name;
    EXPECT_EQ(reportFormatName(*f), name);
  }
  auto bad = parseReportFormat("docx");
  EXPECT_EQ(bad.status().message(), "format: \"docx\" is not one of html, pdf, json, md");
}

TEST(ReportManifest, RoundTripsAndRefusesForgedOrBrokenLines) {
  const evidence::ReportManifest m{.incident = "INC-42",
                                   .tenant = "acme",
                                   .format = "pdf",
                                   .size = 48213,
                                   .sha256 = std::string(64, 'a'),
                                   .generated = "2026-12-06T01:00:00Z",
                                   .controller = "controller"};
  const std::string text = evidence::reportManifestText(m);
  EXPECT_EQ(text,
            "bulkhead-incident-report-manifest/1\nincident: INC-42\ntenant: acme\nformat: pdf\n"
            "size: 48213\nsha256: " +
                std::string(64, 'a') +
                "\ngenerated: 2026-12-06T01:00:00Z\ncontroller: controller\n");
  auto back = evidence::parseReportManifest(text);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->size, 48213u);
  EXPECT_EQ(back->sha256, m.sha256);
  EXPECT_EQ(back->tenant, "acme");
  // A newline in a value cannot add a line.
  evidence::ReportManifest forged = m;
  forged.incident = "INC-42\nsha256: " + std::string(64, 'b');
  auto read = evidence::parseReportManifest(evidence::reportManifestText(forged));
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->sha256, m.sha256);
  auto expectBad = [](const std::string& t, const std::string& why) {
    auto r = evidence::parseReportManifest(t);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().message(), why);
  };
  expectBad("", "manifest: does not end with a newline");
  expectBad("hello\n", "manifest: the first line is not \"bulkhead-incident-report-manifest/1\"");
  std::string no_size = text;
  no_size.replace(no_size.find("size: 48213"), 11, "size: 4x");
  expectBad(no_size, "manifest: size: not a whole number");
  std::string swapped = text;
  swapped.replace(swapped.find("tenant:"), 7, "tenent:");
  expectBad(swapped, "manifest: line 3 is not \"tenant: ...\"");
}

}  // namespace
}  // namespace bulkhead::controller
