// Incidents as operator calls (`bulkhead incident open|list|show|note|close`), and the step
// every front door takes before a call made with `--incident ID` (scopeCaller): the incident
// must be an open one of the call's tenant, and then every audit row of the call names it.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "bulkhead/v1/incidents.pb.h"
#include "controller/core/clock.h"
#include "controller/report/incident_report.h"
#include "controller/report/pdf.h"
#include "controller/service/authorization.h"
#include "controller/store/store.h"
#include "evidence/signing.h"

namespace bulkhead::controller {

// How long after detection a breach must be reported (GDPR article 33: 72 hours).
inline constexpr int64_t kRegulatorDeadlineMs = int64_t{72} * 3600 * 1000;

// What `incident show` answers: the incident, every audit row of its calls (oldest first),
// the evidence captured for it with its custody records, and the controller's time.
struct IncidentTimeline {
  bulkhead::v1::Incident incident;
  std::vector<AuditEntry> records;
  std::vector<std::pair<EvidenceRow, std::vector<CustodyEntry>>> evidence;
  std::vector<HostContainment> hosts;  // from `records` (containmentOf)
  int64_t now_unix_ms = 0;
};

// A signed report (`incident report`): the file, and the manifest (evidence/report_manifest.h)
// naming its SHA-256, signed with the controller's key (DER ECDSA over SHA-256 of the manifest)
// whose certificate is `certificate_pem`.
struct SignedReport {
  std::string format;  // json, md, html, pdf
  std::string file;
  std::string manifest;
  std::string signature;
  std::string certificate_pem;
};

// Where the evidence bundle with this id is stored (EvidenceService::bundlePath).
using BundlePath = std::function<absl::StatusOr<std::filesystem::path>(const std::string& id)>;

class IncidentService {
 public:
  // `signer` signs reports and `pdf` prints them (not owned; nullptr: report fails UNAVAILABLE,
  // or for PDF only, FAILED_PRECONDITION); `bundle_path` finds the bundles a report reads the
  // recovered binaries from (empty: none is read, each is named as unreadable).
  IncidentService(const Clock& clock, Store& store, const evidence::Signer* signer = nullptr,
                  const PdfRenderer* pdf = nullptr, BundlePath bundle_path = {});

  // Sets `caller.incident` from `requested` (empty: none); a caller refused already, or
  // without a tenant, is left as it is. An incident belongs to one tenant,
  // so the call must have one; the incident must exist there and be open. Otherwise sets
  // `caller.refusal` (every call of the caller is refused with it, and audited): a malformed
  // id or a call across tenants is INVALID_ARGUMENT, an unknown id NOT_FOUND (another tenant's
  // reads the same), a closed one FAILED_PRECONDITION. A caller already refused is left as
  // it is.
  void scopeCaller(Caller& caller, std::string_view requested);

  // In the call's one tenant. INVALID_ARGUMENT naming the field (id, title, detected time in
  // the future); ALREADY_EXISTS for an id the tenant has.
  absl::StatusOr<bulkhead::v1::Incident> open(const Caller& caller,
                                              const bulkhead::v1::OpenIncidentRequest& req);
  // The call's tenants' incidents, newest opened first.
  absl::StatusOr<std::vector<bulkhead::v1::Incident>> list(const Caller& caller);
  absl::StatusOr<IncidentTimeline> show(const Caller& caller, const std::string& id);
  // The incident's report in `format` (incident_report.h: json, md, html, pdf), signed. The
  // recovered binaries are read from the evidence bundles' manifests; a bundle that cannot be
  // read is named in the report's evidence row, never left out. Audited as "incident-report"
  // with the file's SHA-256.
  absl::StatusOr<SignedReport> report(const Caller& caller, const std::string& id,
                                      const std::string& format);
  // A note on an open incident, kept as its audit row (action "incident-note").
  absl::StatusOr<bulkhead::v1::Incident> note(const Caller& caller,
                                              const bulkhead::v1::IncidentNoteRequest& req);
  // Closes an open incident with its summary; later calls with `--incident` it are refused.
  absl::StatusOr<bulkhead::v1::Incident> close(const Caller& caller,
                                               const bulkhead::v1::CloseIncidentRequest& req);

 private:
  // The incident `id` of the call's one tenant, for `action`: the caller's refusal, a bad id,
  // or NOT_FOUND.
  absl::StatusOr<bulkhead::v1::Incident> find(const Caller& caller, OperatorAction action,
                                              const std::string& id);

  // The incident's audit rows and its evidence with custody (show and report).
  absl::Status readTimeline(const bulkhead::v1::Incident& incident, IncidentTimeline& out);

  const Clock& clock_;
  Store& store_;
  const evidence::Signer* const signer_;
  const PdfRenderer* const pdf_;
  const BundlePath bundle_path_;
};

}  // namespace bulkhead::controller
