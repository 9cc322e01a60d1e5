#include "controller/service/incidents.h"

#include <spdlog/spdlog.h>

#include "common/certificate.h"
#include "common/format.h"
#include "common/identity.h"
#include "common/text.h"
#include "controller/core/validate.h"
#include "controller/service/audit.h"
#include "controller/service/tenancy.h"
#include "evidence/bundle.h"
#include "evidence/hash.h"
#include "evidence/report_manifest.h"

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;

// The longest title, note or summary kept (bytes).
constexpr size_t kMaxIncidentText = 4096;
// How far in the future a detection time may lie (clock skew between the operator's machine
// and the controller).
constexpr int64_t kDetectionSkewMs = int64_t{5} * 60 * 1000;

absl::Status checkId(const std::string& id) {
  if (id.empty()) return absl::InvalidArgumentError("incident id: required (e.g. INC-42)");
  if (!isValidName(id)) {
    return absl::InvalidArgumentError(fmt::format(
        "incident id: invalid value \"{}\": 1-63 characters of [A-Za-z0-9._-], e.g. INC-42",
        escapeNonPrintable(id.substr(0, 64))));
  }
  return absl::OkStatus();
}

std::string severityText(v1::IncidentSeverity severity) {
  switch (severity) {
    case v1::INCIDENT_SEVERITY_LOW: return "low";
    case v1::INCIDENT_SEVERITY_MEDIUM: return "medium";
    case v1::INCIDENT_SEVERITY_HIGH: return "high";
    case v1::INCIDENT_SEVERITY_CRITICAL: return "critical";
    default: return "unspecified";
  }
}

absl::Status checkRequiredText(std::string_view field, const std::string& text) {
  if (isBlank(text)) return absl::InvalidArgumentError(fmt::format("{}: required", field));
  return checkText(field, text, kMaxIncidentText);
}

// The SHA-256 of each recovered binary of a bundle (its manifest's files "binaries/<sha256>");
// An error saying why when the bundle or its manifest cannot be read.
absl::StatusOr<std::vector<std::string>> recoveredBinaries(const BundlePath& bundle_path,
                                                           const std::string& id) {
  if (!bundle_path) return absl::UnavailableError("this controller stores no evidence");
  auto bundle = bundle_path(id);
  if (!bundle.ok()) return bundle.status();
  auto text = evidence::readMember(*bundle, "manifest.json", 64 << 20);
  if (!text.ok()) return text.status();
  const nlohmann::json manifest = nlohmann::json::parse(*text, nullptr, false);
  if (!manifest.is_object() || !manifest.contains("files") || !manifest["files"].is_array()) {
    return absl::DataLossError("manifest.json lists no files");
  }
  std::vector<std::string> out;
  for (const auto& f : manifest["files"]) {
    if (!f.is_object() || !f.contains("path") || !f["path"].is_string()) continue;
    const std::string path = f["path"].get<std::string>();
    if (path.starts_with("binaries/")) out.push_back(path.substr(9));
  }
  return out;
}

}  // namespace

IncidentService::IncidentService(const Clock& clock, Store& store, const evidence::Signer* signer,
                                 const PdfRenderer* pdf, BundlePath bundle_path)
    : clock_(clock),
      store_(store),
      signer_(signer),
      pdf_(pdf),
      bundle_path_(std::move(bundle_path)) {}

void IncidentService::scopeCaller(Caller& caller, std::string_view requested) {
  // A caller refused already, or without a tenant, is refused with that whatever it names.
  if (requested.empty() || !caller.refusal.ok() || !caller.tenant_refusal.ok()) return;
  const std::string id(requested);
  absl::Status refusal = checkId(id);
  absl::StatusOr<std::string> tenant = std::string();
  if (refusal.ok()) {
    tenant = singleCallTenant(caller, "an incident");
    refusal = tenant.status();
  }
  if (refusal.ok()) {
    auto incident = store_.getIncident(*tenant, id);
    if (!incident.ok()) {
      refusal = incident.status();
    } else if (incident->state() != v1::INCIDENT_STATE_OPEN) {
      refusal = absl::FailedPreconditionError(
          fmt::format("incident {} is closed: open a new one, or act without --incident", id));
    }
  }
  if (!refusal.ok()) {
    caller.refusal = absl::Status(refusal.code(), fmt::format("--incident: {}", refusal.message()));
    return;
  }
  caller.incident = id;
}

absl::StatusOr<v1::Incident> IncidentService::open(const Caller& caller,
                                                   const v1::OpenIncidentRequest& req) {
  const std::string action = auditAction(OperatorAction::kOpenIncident);
  const int64_t now = clock_.nowUnixMs();
  absl::Status check = authorize(caller, OperatorAction::kOpenIncident);
  absl::StatusOr<std::string> tenant =
      check.ok() ? singleCallTenant(caller, "an incident") : absl::StatusOr<std::string>(check);
  check = tenant.status();
  if (check.ok()) check = checkId(req.incident_id());
  if (check.ok()) check = checkRequiredText("title", req.title());
  if (check.ok() && !v1::IncidentSeverity_IsValid(req.severity())) {
    check = absl::InvalidArgumentError(
        fmt::format("severity: unknown value {}", static_cast<int>(req.severity())));
  }
  if (check.ok() && req.detected_unix_ms() < 0) {
    check = absl::InvalidArgumentError("detected at: must not be negative");
  }
  if (check.ok() && req.detected_unix_ms() > now + kDetectionSkewMs) {
    check = absl::InvalidArgumentError(
        fmt::format("detected at: {} is in the future (the controller's time is {})",
                    utcTimeText(req.detected_unix_ms()), utcTimeText(now)));
  }
  AuditActor actor = auditActor(caller);
  if (!check.ok()) return recordCall(store_, clock_, actor, action, req.incident_id(), "", check);

  v1::Incident incident;
  incident.set_incident_id(req.incident_id());
  incident.set_tenant(*tenant);
  incident.set_title(req.title());
  incident.set_severity(req.severity() == v1::INCIDENT_SEVERITY_UNSPECIFIED
                            ? v1::INCIDENT_SEVERITY_MEDIUM
                            : req.severity());
  incident.set_state(v1::INCIDENT_STATE_OPEN);
  incident.set_opened_by(caller.audit_name);
  incident.set_opened_unix_ms(now);
  incident.set_detected_unix_ms(req.detected_unix_ms() == 0 ? now : req.detected_unix_ms());
  actor.tenant = *tenant;
  actor.incident = req.incident_id();  // the opening is the incident's first row
  AuditEntry row =
      callEntry(now, actor, action, req.incident_id(), req.title(), absl::OkStatus(),
                fmt::format("severity {}; detected {}", severityText(incident.severity()),
                            utcTimeText(incident.detected_unix_ms())));
  if (auto s = store_.addIncident(incident, row); !s.ok()) {
    // Nothing was written (one transaction): record the refusal on its own.
    return recordCall(store_, clock_, auditActor(caller), action, req.incident_id(), "", s);
  }
  spdlog::info("incident {} opened in tenant {} by {}", incident.incident_id(), *tenant,
               caller.audit_name);
  return incident;
}

absl::StatusOr<std::vector<v1::Incident>> IncidentService::list(const Caller& caller) {
  absl::Status status = authorize(caller, OperatorAction::kListIncidents);
  std::vector<v1::Incident> incidents;
  if (status.ok()) {
    auto listed = store_.listIncidents(callTenants(caller));
    status = listed.status();
    if (listed.ok()) incidents = *std::move(listed);
  }
  status =
      recordCall(store_, clock_, auditActor(caller), auditAction(OperatorAction::kListIncidents),
                 "*", "", status, status.ok() ? fmt::format("{} incidents", incidents.size()) : "");
  if (!status.ok()) return status;
  return incidents;
}

absl::StatusOr<v1::Incident> IncidentService::find(const Caller& caller, OperatorAction action,
                                                   const std::string& id) {
  if (auto s = authorize(caller, action); !s.ok()) return s;
  if (auto s = checkId(id); !s.ok()) return s;
  auto tenant = singleCallTenant(caller, "an incident");
  if (!tenant.ok()) return tenant.status();
  return store_.getIncident(*tenant, id);
}

absl::Status IncidentService::readTimeline(const v1::Incident& incident, IncidentTimeline& out) {
  out.incident = incident;
  auto records = store_.listIncidentAudit(incident.tenant(), incident.incident_id());
  if (!records.ok()) return records.status();
  out.records = *std::move(records);
  out.hosts = containmentOf(out.records);
  auto evidence = store_.listIncidentEvidence(incident.tenant(), incident.incident_id());
  if (!evidence.ok()) return evidence.status();
  for (EvidenceRow& row : *evidence) {
    auto custody = store_.listCustody(row.id);
    if (!custody.ok()) return custody.status();
    row.tenant = incident.tenant();
    out.evidence.emplace_back(std::move(row), *std::move(custody));
  }
  return absl::OkStatus();
}

absl::StatusOr<IncidentTimeline> IncidentService::show(const Caller& caller,
                                                       const std::string& id) {
  const std::string action = auditAction(OperatorAction::kShowIncident);
  absl::StatusOr<v1::Incident> incident = find(caller, OperatorAction::kShowIncident, id);
  IncidentTimeline timeline;
  absl::Status status = incident.status();
  if (status.ok()) status = readTimeline(*incident, timeline);
  AuditActor actor = auditActor(caller);
  status = recordCall(store_, clock_, actor, action, id, "", status,
                      status.ok() ? fmt::format("{} records, {} bundles", timeline.records.size(),
                                                timeline.evidence.size())
                                  : "");
  if (!status.ok()) return status;
  timeline.now_unix_ms = clock_.nowUnixMs();
  return timeline;
}

absl::StatusOr<SignedReport> IncidentService::report(const Caller& caller, const std::string& id,
                                                     const std::string& format) {
  const std::string action = auditAction(OperatorAction::kReportIncident);
  absl::StatusOr<v1::Incident> incident = find(caller, OperatorAction::kReportIncident, id);
  absl::Status status = incident.status();
  absl::StatusOr<ReportFormat> kind = parseReportFormat(format);
  if (status.ok()) status = kind.status();
  if (status.ok() && signer_ == nullptr) {
    status = absl::UnavailableError("this controller has no signing key for reports");
  }
  if (status.ok() && *kind == ReportFormat::kPdf && pdf_ == nullptr) {
    status = absl::FailedPreconditionError("this controller cannot print PDF; ask for html");
  }
  IncidentTimeline timeline;
  if (status.ok()) status = readTimeline(*incident, timeline);
  SignedReport out;
  std::string detail;
  if (status.ok()) {
    auto self = identityFromCertPem(signer_->certPem());
    ReportInput input{.incident = timeline.incident,
                      .records = std::move(timeline.records),
                      .evidence = {},
                      .generated_at_unix_ms = clock_.nowUnixMs(),
                      .controller = self.ok() ? self->name : std::string(),
                      .regulator_deadline_ms = kRegulatorDeadlineMs};
    for (auto& [row, custody] : timeline.evidence) {
      auto binaries = recoveredBinaries(bundle_path_, row.id);
      ReportEvidence e{.row = row, .custody = std::move(custody)};
      if (binaries.ok()) {
        e.binaries = *std::move(binaries);
      } else {
        e.problem = fmt::format("bundle unreadable: {}", binaries.status().message());
      }
      input.evidence.push_back(std::move(e));
    }
    const nlohmann::json doc = reportDocument(input);
    switch (*kind) {
      case ReportFormat::kJson: out.file = renderJsonReport(doc); break;
      case ReportFormat::kMarkdown: out.file = renderMarkdownReport(doc); break;
      case ReportFormat::kHtml: out.file = renderHtmlReport(doc); break;
      case ReportFormat::kPdf: {
        auto pdf = pdf_->render(renderHtmlReport(doc));
        if (pdf.ok()) {
          out.file = *std::move(pdf);
        } else {
          status = pdf.status();
        }
        break;
      }
    }
    if (status.ok()) {
      out.format = reportFormatName(*kind);
      const std::string sha = evidence::sha256Hex(out.file);
      out.manifest = evidence::reportManifestText(
          evidence::ReportManifest{.incident = incident->incident_id(),
                                   .tenant = incident->tenant(),
                                   .format = out.format,
                                   .size = out.file.size(),
                                   .sha256 = sha,
                                   .generated = utcTimeText(input.generated_at_unix_ms),
                                   .controller = input.controller});
      auto signature = signer_->sign(out.manifest);
      if (signature.ok()) {
        out.signature = *std::move(signature);
        out.certificate_pem = signer_->certPem();
        detail = fmt::format("{} report, {} bytes, sha256 {}; {} records, {} bundles", out.format,
                             out.file.size(), sha, input.records.size(), input.evidence.size());
      } else {
        status = signature.status();
      }
    }
  }
  status = recordCall(store_, clock_, auditActor(caller), action, id, "", status, detail);
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<v1::Incident> IncidentService::note(const Caller& caller,
                                                   const v1::IncidentNoteRequest& req) {
  const std::string action = auditAction(OperatorAction::kNoteIncident);
  absl::StatusOr<v1::Incident> incident =
      find(caller, OperatorAction::kNoteIncident, req.incident_id());
  absl::Status status = incident.status();
  if (status.ok()) status = checkRequiredText("text", req.text());
  if (status.ok() && incident->state() != v1::INCIDENT_STATE_OPEN) {
    status = absl::FailedPreconditionError(
        fmt::format("incident {} is closed: notes go on open incidents", req.incident_id()));
  }
  AuditActor actor = auditActor(caller);
  if (status.ok()) actor.incident = req.incident_id();
  status = recordCall(store_, clock_, actor, action, req.incident_id(), req.text(), status);
  if (!status.ok()) return status;
  return incident;
}

absl::StatusOr<v1::Incident> IncidentService::close(const Caller& caller,
                                                    const v1::CloseIncidentRequest& req) {
  const std::string action = auditAction(OperatorAction::kCloseIncident);
  absl::StatusOr<v1::Incident> incident =
      find(caller, OperatorAction::kCloseIncident, req.incident_id());
  absl::Status status = incident.status();
  if (status.ok()) status = checkRequiredText("summary", req.summary());
  if (status.ok() && incident->state() != v1::INCIDENT_STATE_OPEN) {
    status = absl::FailedPreconditionError(fmt::format("incident {} is closed already, by {}",
                                                       req.incident_id(), incident->closed_by()));
  }
  if (!status.ok()) {
    return recordCall(store_, clock_, auditActor(caller), action, req.incident_id(), "", status);
  }
  const int64_t now = clock_.nowUnixMs();
  incident->set_state(v1::INCIDENT_STATE_CLOSED);
  incident->set_closed_by(caller.audit_name);
  incident->set_closed_unix_ms(now);
  incident->set_summary(req.summary());
  AuditActor actor = auditActor(caller);
  actor.incident = req.incident_id();
  const AuditEntry row =
      callEntry(now, actor, action, req.incident_id(), req.summary(), absl::OkStatus(), "");
  if (auto s = store_.updateIncident(*incident, row); !s.ok()) {
    return recordCall(store_, clock_, auditActor(caller), action, req.incident_id(), "", s);
  }
  return incident;
}

}  // namespace bulkhead::controller
