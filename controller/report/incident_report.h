// An incident's report (`bulkhead incident report`): the facts of one incident read from its
// audit rows and its evidence, as one JSON document (reportDocument), and that document
// rendered as JSON, Markdown or self-contained HTML. Pure: the caller reads the store and the
// bundles; PDF is the HTML printed by a browser engine (pdf.h). Every format holds the same
// facts: the timeline has every audit row of the incident, in order, and nothing else.
//
// What is read from the rows (their stored text, controller/service/*.cc):
//   blocked addresses   "block" rows' detail "block MATCH (ID); hosts ..." -> MATCH
//   accounts            "kill-sessions.result" rows' detail "sessions N: ID USER from X, ..."
//   isolated hosts      "isolate.result" / "release.result" rows' detail
//                       "N enforced: h1, h2; N pending: h3 (why)" (enforced or pending hosts)
//   binaries            the evidence bundles' manifests: files "binaries/<sha256>"
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "bulkhead/v1/incidents.pb.h"
#include "controller/store/store.h"

namespace bulkhead::controller {

inline constexpr char kReportFormatName[] = "bulkhead-incident-report/1";
// What the report says where only a person knows the answer.
inline constexpr char kToComplete[] = "to complete";

enum class ReportFormat { kJson, kMarkdown, kHtml, kPdf };

// "json", "md", "html", "pdf"; INVALID_ARGUMENT naming the accepted ones otherwise (and for
// none).
absl::StatusOr<ReportFormat> parseReportFormat(std::string_view text);
std::string reportFormatName(ReportFormat format);

struct ReportEvidence {
  EvidenceRow row;
  std::vector<CustodyEntry> custody;  // oldest first
  // SHA-256 of each recovered binary in the bundle (manifest files "binaries/<sha256>").
  std::vector<std::string> binaries;
  std::string problem;  // why the bundle could not be read ("" when it could)
};

struct ReportInput {
  bulkhead::v1::Incident incident;
  std::vector<AuditEntry> records;  // every audit row of the incident, oldest first
  std::vector<ReportEvidence> evidence;
  int64_t generated_at_unix_ms = 0;
  std::string controller;             // the name in the controller's certificate
  int64_t regulator_deadline_ms = 0;  // after detection (GDPR article 33: 72 h)
};

// The report's facts (format kReportFormatName; fields in controller/report/README.md).
nlohmann::json reportDocument(const ReportInput& input);

// The document rendered; kPdf is not rendered here (pdf.h prints the HTML).
std::string renderJsonReport(const nlohmann::json& doc);
std::string renderMarkdownReport(const nlohmann::json& doc);
// One file with its style inline and a Content-Security-Policy forbidding every fetch; laid
// out for A4 paper (landscape: the timeline is wide) as well as the screen; times and hashes
// are never broken across lines.
std::string renderHtmlReport(const nlohmann::json& doc);

// How one host of an incident was contained, from the incident's "isolate.result" and
// "release.result" rows: its last isolation (a host isolated again after a release starts a
// new span), and the flows its isolations cut ("h1 (12 flows cut)" in the results' detail).
struct HostContainment {
  std::string host;
  int64_t isolated_at_unix_ms = 0;
  int64_t released_at_unix_ms = 0;  // 0: still isolated (as far as this incident says)
  uint64_t flows_cut = 0;           // over every isolation of the host in the incident
  // Milliseconds isolated up to its release, or up to `now` while still isolated.
  int64_t isolatedMs(int64_t now_unix_ms) const {
    return (released_at_unix_ms != 0 ? released_at_unix_ms : now_unix_ms) - isolated_at_unix_ms;
  }
};
// In the order the hosts first appear in `records` (oldest first).
std::vector<HostContainment> containmentOf(const std::vector<AuditEntry>& records);

// The hosts named in a containment result's detail ("2 enforced: h1, h2; 1 pending: h3
// (why)") in the given states, in the order they appear.
std::vector<std::string> hostsInStates(std::string_view detail,
                                       const std::vector<std::string_view>& states);

}  // namespace bulkhead::controller
