// The controller's persistent state behind one interface: the host registry, the audit trail
// (hash-chained) and the desired containment state of every host. SqliteStore is the embedded
// implementation; a PostgreSQL one can follow for HA.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bulkhead/v1/containment.pb.h"
#include "controller/core/registry.h"

namespace bulkhead::controller {

// One audit row. `id`, `prev_hash` and `hash` are assigned by the store on append.
struct AuditEntry {
  int64_t id = 0;
  int64_t at_unix_ms = 0;
  std::string operator_name;   // from the caller's certificate, or "unauthenticated"
  std::string action;          // "hosts", "status", "isolate", ...
  std::string target;
  std::string reason;
  std::string outcome;         // "ok", "denied", "error: ..."
  std::string detail;
  std::string prev_hash;       // hex SHA-256 of the previous row ("" chain start: 64 zeros)
  std::string hash;            // hex SHA-256 over prev_hash and this row's fields
};

// The hash-chain genesis value: the prev_hash of the first row.
inline constexpr char kAuditGenesisHash[] =
    "0000000000000000000000000000000000000000000000000000000000000000";

// SHA-256 (hex) over prev_hash and every field of the row, each length-prefixed so that no two
// different rows encode alike. Includes the id, so renumbering is detected too.
std::string auditRowHash(const AuditEntry& e);

struct AuditVerification {
  bool ok = true;
  int64_t rows = 0;            // rows checked
  int64_t first_bad_id = 0;    // 0 when ok
  std::string problem;         // what is wrong with the first bad row
};

class Store {
 public:
  virtual ~Store() = default;

  // Upserts the host rows and appends the tamper events, in one transaction. Tamper events
  // beyond kMaxTamperEvents per host are pruned.
  virtual absl::Status saveHosts(const std::vector<HostInfo>& hosts,
                                 const std::vector<TamperRecord>& tamper) = 0;
  // Every host with its last kMaxTamperEvents tamper events, ordered by host id. The
  // connection fields (connected_since) are not persisted and read back as 0.
  virtual absl::StatusOr<std::vector<HostInfo>> loadHosts() = 0;

  // Appends a row to the audit chain (durable when this returns) and returns it with id and
  // hashes filled in. Thread-safe; appends are serialised.
  virtual absl::StatusOr<AuditEntry> appendAudit(const AuditEntry& entry) = 0;
  // The newest `limit` rows (all if 0), oldest first.
  virtual absl::StatusOr<std::vector<AuditEntry>> listAudit(size_t limit) = 0;
  // Recomputes the whole chain; reports the first row whose hash or link does not match.
  virtual absl::StatusOr<AuditVerification> verifyAudit() = 0;

  // Replaces a host's desired state (durable when this returns).
  virtual absl::Status saveDesiredState(const std::string& host_id,
                                        const bulkhead::v1::DesiredState& state) = 0;
  virtual absl::StatusOr<std::map<std::string, bulkhead::v1::DesiredState>>
  loadDesiredStates() = 0;

  // Replaces the desired states of several hosts and appends the audit row recording the
  // change, in one transaction: either all of it is durable or none. Returns the audit row.
  virtual absl::StatusOr<AuditEntry> commitChange(
      const std::map<std::string, bulkhead::v1::DesiredState>& states, const AuditEntry& entry) = 0;
};

}  // namespace bulkhead::controller
