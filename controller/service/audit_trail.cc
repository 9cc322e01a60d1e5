#include "controller/service/audit_trail.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>

#include "common/certificate.h"
#include "common/format.h"
#include "common/identity.h"
#include "controller/service/audit.h"
#include "controller/store/audit_export.h"
#include "evidence/hash.h"

namespace bulkhead::controller {

AuditTrail::AuditTrail(const Clock& clock, Store& store, const evidence::Signer* signer)
    : clock_(clock), store_(store), signer_(signer) {}

absl::StatusOr<AuditVerification> AuditTrail::verify(const Caller& caller, int64_t checkpoint_id,
                                                     const std::string& checkpoint_hash) {
  absl::Status status = authorize(caller, OperatorAction::kVerifyAudit);
  std::optional<AuditCheckpoint> checkpoint;
  if (status.ok() && checkpoint_id < 0) {
    status = absl::InvalidArgumentError(fmt::format(
        "checkpoint_id: invalid value {}: must be a row id (>= 1) or 0 for none", checkpoint_id));
  } else if (status.ok() && checkpoint_id > 0) {
    checkpoint = AuditCheckpoint{checkpoint_id, checkpoint_hash};
  }
  std::string detail;
  absl::StatusOr<AuditVerification> v = absl::UnknownError("not verified");
  if (!status.ok()) {
    v = status;
  } else {
    v = store_.verifyAudit(checkpoint);
    if (v.ok()) {
      detail = v->ok ? fmt::format("chain intact, {} rows{}", v->rows,
                                   checkpoint ? fmt::format(", checkpoint row {} present",
                                                            checkpoint->last_id)
                                              : "")
                     : fmt::format("chain broken at row {}: {}", v->first_bad_id, v->problem);
      if (!v->ok) spdlog::error("audit verify: {}", detail);
    }
  }
  status = recordCall(store_, clock_, caller.audit_name,
                      std::string(actionName(OperatorAction::kVerifyAudit)), "audit", "",
                      v.status(), detail);
  if (!status.ok()) return status;
  return v;
}

absl::StatusOr<AuditExport> AuditTrail::exportFrom(const Caller& caller, int64_t since_id) {
  absl::Status status = authorize(caller, OperatorAction::kExportAudit);
  const int64_t since = std::max<int64_t>(since_id, 1);
  if (status.ok() && since_id < 0) {
    status = absl::InvalidArgumentError(fmt::format(
        "since_id: invalid value {}: must be a row id (>= 1) or 0 for all rows", since_id));
  } else if (status.ok() && signer_ == nullptr) {
    status = absl::UnavailableError("this controller has no signing key for audit exports");
  }
  AuditExport out;
  std::string detail;
  if (status.ok()) {
    auto rows = store_.listAuditFrom(since);
    if (!rows.ok()) {
      status = rows.status();
    } else {
      auto self = identityFromCertPem(signer_->certPem());
      AuditExportHeader header{.controller = self.ok() ? self->name : std::string(),
                               .exported_at_unix_ms = clock_.nowUnixMs(),
                               .since_id = since};
      out.text = auditExportText(header, *rows);
      auto signature = signer_->sign(out.text);
      if (!signature.ok()) {
        status = signature.status();
      } else {
        out.signature = *std::move(signature);
        out.certificate_pem = signer_->certPem();
        detail = rows->empty() ? "no rows"
                               : fmt::format("rows {} to {}, head hash {}, file sha256 {}",
                                             rows->front().id, rows->back().id, rows->back().hash,
                                             evidence::sha256Hex(out.text));
      }
    }
  }
  status = recordCall(store_, clock_, caller.audit_name,
                      std::string(actionName(OperatorAction::kExportAudit)),
                      fmt::format("since={}", since), "", status, detail);
  if (!status.ok()) return status;
  return out;
}

}  // namespace bulkhead::controller
