#include "controller/store/store.h"

#include "common/format.h"
#include "controller/core/hash_chain.h"

namespace bulkhead::controller {

std::string auditRecord(const AuditEntry& e) {
  ChainRecord record;
  record.add(e.id)
      .add(e.at_unix_ms)
      .add(e.operator_name)
      .add(e.action)
      .add(e.target)
      .add(e.reason)
      .add(e.outcome)
      .add(e.detail);
  // Fields added later are hashed only when set, so older rows keep their hashes; a row of an
  // incident always hashes its tenant first, so the two can never be mistaken for each other.
  if (e.tenant != kDefaultTenant || !e.incident.empty()) record.add(e.tenant);
  if (!e.incident.empty()) record.add(e.incident);
  return record.bytes();
}

std::string auditRowHash(const AuditEntry& e) { return chainLinkHash(e.prev_hash, auditRecord(e)); }

std::string auditRowMac(std::string_view key, const AuditEntry& e) {
  return chainLinkMac(key, e.hash);
}

std::string custodyRecord(const CustodyEntry& e) {
  return ChainRecord()
      .add(e.evidence_id)
      .add(e.at_unix_ms)
      .add(e.actor)
      .add(e.action)
      .add(e.detail)
      .bytes();
}

std::string custodyEventHash(const CustodyEntry& e) {
  return chainLinkHash(e.prev_hash, custodyRecord(e));
}

absl::Status unknownIncident(const std::string& id) {
  return absl::NotFoundError(fmt::format("unknown incident \"{}\"", id));
}

}  // namespace bulkhead::controller
