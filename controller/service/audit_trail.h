// The operator calls on the audit trail itself that need no listing: verify the chain and
// export it signed. Each authorises the caller (controller/service/authorization.h), checks
// the request and records the call, refusals included, before it answers.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "controller/core/clock.h"
#include "controller/service/authorization.h"
#include "controller/store/store.h"
#include "evidence/signing.h"

namespace bulkhead::controller {

// A signed export: `text` (store/audit_export.h) and a DER ECDSA signature over it by the
// controller's key, whose certificate is `certificate_pem`.
struct AuditExport {
  std::string text;
  std::string signature;
  std::string certificate_pem;
};

class AuditTrail {
 public:
  // `signer` (not owned) signs exports; nullptr: export fails UNAVAILABLE.
  AuditTrail(const Clock& clock, Store& store, const evidence::Signer* signer);

  // Checks every hash, link and MAC; with `checkpoint_id` > 0 also that row `checkpoint_id`
  // is present with `checkpoint_hash`. A negative id is INVALID_ARGUMENT.
  absl::StatusOr<AuditVerification> verify(const Caller& caller, int64_t checkpoint_id,
                                           const std::string& checkpoint_hash);
  // Every row from `since_id` (0: all; negative: INVALID_ARGUMENT), signed.
  absl::StatusOr<AuditExport> exportFrom(const Caller& caller, int64_t since_id);

 private:
  const Clock& clock_;
  Store& store_;
  const evidence::Signer* const signer_;
};

}  // namespace bulkhead::controller
