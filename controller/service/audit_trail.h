// The operator calls on the audit trail itself: list a page, verify the chain and export it
// signed. Each authorises the caller (controller/service/authorization.h), checks the request
// and records the call, refusals included, before it answers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "controller/core/clock.h"
#include "controller/core/requests.h"
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

// One page of the trail, oldest first. Text fields are clipped for listing (the stored rows
// and their hashes are intact). `next_before_id` (0: none) asks for the older rest.
struct AuditPage {
  std::vector<AuditEntry> records;
  int64_t next_before_id = 0;
};

// How many bytes `row` takes in the answer; a page stops before kMaxResponseBytes
// (controller/service/audit.h), and always holds at least one row when there is one.
using ListedBytes = std::function<size_t(const AuditEntry& row)>;

class AuditTrail {
 public:
  // `signer` (not owned) signs exports; nullptr: export fails UNAVAILABLE.
  AuditTrail(const Clock& clock, Store& store, const evidence::Signer* signer);

  // The newest `req.limit` rows older than `req.before_id`, as many as fit one answer.
  absl::StatusOr<AuditPage> list(const Caller& caller, const ListAuditRequest& req,
                                 const ListedBytes& listed_bytes);
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
