#include "controller/service/audit_trail.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <iterator>
#include <optional>

#include "common/certificate.h"
#include "common/format.h"
#include "common/identity.h"
#include "controller/core/validate.h"
#include "controller/service/audit.h"
#include "controller/service/tenancy.h"
#include "controller/store/audit_export.h"
#include "evidence/hash.h"
#include "evidence/json_read.h"

namespace bulkhead::controller {

namespace {

constexpr uint32_t kDefaultAuditLimit = 100;
constexpr uint32_t kMaxAuditLimit = 10000;
// A listed audit field beyond this is clipped (the stored row and its hash are intact).
constexpr size_t kMaxListedAuditField = 16384;

// The rows a caller reads (tenancy.h): an install admin asking for every tenant reads every
// row; anyone else the rows of the call's tenants, and, asking for every tenant of its own,
// its own calls across tenants too.
AuditScope scopeOf(const Caller& caller) {
  if (readsEveryTenant(caller)) return {};
  // Only the tenants where the caller holds a role on every host (with '*', a tenant where it
  // holds a role on some hosts only stays out); authorize() let it through, so there is one.
  AuditScope scope{.tenants = tenantsReadWhole(caller)};
  if (scope.tenants.empty()) scope.tenants.emplace_back();  // no row: a tenant is never ""
  if (caller.all_tenants) scope.cross_tenant_operator = caller.audit_name;
  return scope;
}

}  // namespace

AuditTrail::AuditTrail(const Clock& clock, Store& store, const evidence::Signer* signer)
    : clock_(clock), store_(store), signer_(signer) {}

absl::StatusOr<AuditPage> AuditTrail::list(const Caller& caller, const ListAuditRequest& req,
                                           const ListedBytes& listed_bytes) {
  absl::Status status = authorize(caller, OperatorAction::kListAudit);
  if (status.ok()) status = validateRequest(req);
  const uint32_t limit = req.limit == 0 ? kDefaultAuditLimit : std::min(req.limit, kMaxAuditLimit);
  AuditPage page;
  if (status.ok()) {
    auto rows = store_.listAuditPage(req.before_id, limit, scopeOf(caller));
    if (!rows.ok()) {
      status = rows.status();
    } else {
      // Newest first until the page is full; then answered oldest first.
      auto clip = [](const std::string& text) {
        return evidence::boundedText(text, kMaxListedAuditField, false);
      };
      std::vector<AuditEntry> newest;
      size_t bytes = 0;
      for (size_t i = rows->size(); i-- > 0;) {
        const AuditEntry& row = (*rows)[i];
        AuditEntry r = row;
        r.operator_name = clip(row.operator_name);
        r.action = clip(row.action);
        r.target = clip(row.target);
        r.reason = clip(row.reason);
        r.outcome = clip(row.outcome);
        r.detail = clip(row.detail);
        const size_t size = listed_bytes(r);
        if (!newest.empty() && bytes + size > kMaxResponseBytes) break;
        bytes += size;
        newest.push_back(std::move(r));
      }
      const bool more = newest.size() < rows->size() || rows->size() == limit;
      if (more && !newest.empty()) page.next_before_id = newest.back().id;
      page.records.assign(std::make_move_iterator(newest.rbegin()),
                          std::make_move_iterator(newest.rend()));
    }
  }
  status = recordCall(store_, clock_, auditActor(caller), auditAction(OperatorAction::kListAudit),
                      req.before_id > 0 ? fmt::format("limit={} before={}", limit, req.before_id)
                                        : fmt::format("limit={}", limit),
                      "", status);
  if (!status.ok()) return status;
  return page;
}

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
  status = recordCall(store_, clock_, auditActor(caller), auditAction(OperatorAction::kVerifyAudit),
                      "audit", "", v.status(), detail);
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
    const AuditScope scope = scopeOf(caller);
    auto rows = store_.listAuditFrom(since, scope);
    if (!rows.ok()) {
      status = rows.status();
    } else {
      auto self = identityFromCertPem(signer_->certPem());
      AuditExportHeader header{.controller = self.ok() ? self->name : std::string(),
                               .exported_at_unix_ms = clock_.nowUnixMs(),
                               .since_id = since,
                               .tenants = scope.tenants};
      out.text = auditExportText(header, *rows);
      auto signature = signer_->sign(out.text);
      if (!signature.ok()) {
        status = signature.status();
      } else {
        out.signature = *std::move(signature);
        out.certificate_pem = signer_->certPem();
        detail = rows->empty() ? "no rows"
                               : fmt::format("{} rows from {} to {}, head hash {}, file sha256 {}",
                                             rows->size(), rows->front().id, rows->back().id,
                                             rows->back().hash, evidence::sha256Hex(out.text));
        if (!scope.tenants.empty()) detail += fmt::format("; {}", tenantsText(caller));
      }
    }
  }
  status = recordCall(store_, clock_, auditActor(caller), auditAction(OperatorAction::kExportAudit),
                      fmt::format("since={}", since), "", status, detail);
  if (!status.ok()) return status;
  return out;
}

}  // namespace bulkhead::controller
