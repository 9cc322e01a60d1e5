// The SQLite store's tables, one class each: the SQL that reads and writes that table and
// nothing else. SqlStore composes them, holding the lock and opening the transactions that
// span several. Internal to controller/store.
//
// Every method REQUIRES the store's lock held. A method that writes more than one statement
// REQUIRES an open transaction (sql::Transaction), so that it is applied whole or not at all.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bulkhead/v1/containment.pb.h"
#include "controller/store/store.h"

namespace bulkhead::controller::sql {
class Db;
}  // namespace bulkhead::controller::sql

namespace bulkhead::controller {

// hosts and tamper_events: the registry's rows.
class SqlHosts {
 public:
  explicit SqlHosts(sql::Db* db) : db_(db) {}
  // Upserts the rows, appends the events and prunes each host's beyond kMaxTamperEvents.
  // REQUIRES: a transaction.
  absl::Status save(const std::vector<HostInfo>& hosts, const std::vector<TamperRecord>& tamper);
  // Every host with its last kMaxTamperEvents tamper events, ordered by host id.
  absl::StatusOr<std::vector<HostInfo>> load();

 private:
  sql::Db* db_;
};

// desired_state: one row per host (and "@fleet").
class SqlDesiredStates {
 public:
  explicit SqlDesiredStates(sql::Db* db) : db_(db) {}
  absl::Status put(const std::string& host_id, const bulkhead::v1::DesiredState& state);
  // Writes each state only over a row of a lower generation (or none), a few hundred rows per
  // statement (one round trip each on PostgreSQL, not one per host): Aborted naming a host
  // and its stored generation when that is not lower (another controller changed the host
  // first); what was written must then be rolled back. REQUIRES: a transaction.
  absl::Status putAllNewer(const std::map<std::string, bulkhead::v1::DesiredState>& states);
  // DataLoss when a row does not parse.
  absl::StatusOr<std::map<std::string, bulkhead::v1::DesiredState>> load();
  // The rows of `hosts` (hosts without one are left out).
  absl::StatusOr<std::map<std::string, bulkhead::v1::DesiredState>> loadOf(
      const std::vector<std::string>& hosts);

 private:
  sql::Db* db_;
};

// audit: the hash-chained (and, with a key, MACed) rows; the chain itself is
// core/hash_chain.h.
class SqlAudit {
 public:
  // `key` empty: rows get no MAC and verification checks the hash chain only.
  SqlAudit(sql::Db* db, std::string key) : db_(db), key_(std::move(key)) {}
  // Appends `entry` after the last row: id, prev_hash, hash and mac assigned. REQUIRES: a
  // transaction.
  absl::StatusOr<AuditEntry> append(const AuditEntry& entry);
  // With a key, when the last row has no MAC: appends the kAuditKeyedAction marker row, dated
  // `now_unix_ms`. REQUIRES: a transaction.
  absl::Status startKeyedChain(int64_t now_unix_ms);
  // As Store::listAudit, listAuditPage, listAuditFrom, verifyAudit.
  absl::StatusOr<std::vector<AuditEntry>> list(size_t limit);
  // As Store::listIncidentAudit.
  absl::StatusOr<std::vector<AuditEntry>> ofIncident(const std::string& tenant,
                                                     const std::string& incident);
  absl::StatusOr<std::vector<AuditEntry>> page(int64_t before_id, size_t limit,
                                               const AuditScope& scope);
  absl::StatusOr<std::vector<AuditEntry>> from(int64_t first_id, const AuditScope& scope);
  // As Store::listAuditAfter.
  absl::StatusOr<std::vector<AuditEntry>> after(int64_t after_id, size_t limit);
  absl::StatusOr<AuditVerification> verify(const std::optional<AuditCheckpoint>& checkpoint);

 private:
  sql::Db* db_;
  const std::string key_;
};

// captures: the captures operators requested.
class SqlCaptures {
 public:
  explicit SqlCaptures(sql::Db* db) : db_(db) {}
  // AlreadyExists if the id is taken.
  absl::Status add(const CaptureRow& capture);
  // NotFound "no capture ..." if unknown.
  absl::StatusOr<CaptureRow> get(const std::string& capture_id);
  // False when there is no such capture.
  absl::StatusOr<bool> setState(const std::string& capture_id, const std::string& state);

 private:
  sql::Db* db_;
};

// evidence: the stored bundles' rows.
class SqlEvidence {
 public:
  explicit SqlEvidence(sql::Db* db) : db_(db) {}
  absl::StatusOr<bool> contains(const std::string& id);
  absl::Status add(const EvidenceRow& row);
  // As Store::listEvidence, getEvidence, evidenceBytesOfHost, evidenceForCapture.
  absl::StatusOr<std::vector<EvidenceRow>> list(const std::string& host_id);
  absl::StatusOr<EvidenceRow> get(const std::string& id_or_prefix);
  absl::StatusOr<uint64_t> bytesOfHost(const std::string& host_id);
  absl::StatusOr<std::optional<EvidenceRow>> forCapture(const std::string& capture_id);
  // As Store::listIncidentEvidence.
  absl::StatusOr<std::vector<EvidenceRow>> ofIncident(const std::string& tenant,
                                                      const std::string& incident);

 private:
  sql::Db* db_;
};

// custody: one hash chain per bundle (core/hash_chain.h), starting at the evidence id.
class SqlCustody {
 public:
  explicit SqlCustody(sql::Db* db) : db_(db) {}
  // Appends `event` to its bundle's chain: id, prev_hash and hash assigned. REQUIRES: a
  // transaction.
  absl::StatusOr<CustodyEntry> append(const CustodyEntry& event);
  // As Store::listCustody, verifyCustody.
  absl::StatusOr<std::vector<CustodyEntry>> list(const std::string& evidence_id);
  absl::StatusOr<CustodyVerification> verify(const std::string& evidence_id);

 private:
  sql::Db* db_;
};

// " AND tenant IN (?N, ?N+1, ...)" for `tenants` bound from parameter `first_parameter` on;
// "" for none (every tenant).
std::string tenantFilter(const std::vector<std::string>& tenants, int first_parameter);

// signals: the detections received, with what each caused (the record is a SignalRecord; its
// tenant also in a column).
class SqlSignals {
 public:
  explicit SqlSignals(sql::Db* db) : db_(db) {}
  // The newest signal with `key` received at or after `since_unix_ms`, if any.
  absl::StatusOr<std::optional<SignalRow>> findByKey(const std::string& key, int64_t since_unix_ms);
  absl::Status add(const SignalRow& row);
  // NotFound when there is no such signal.
  absl::Status update(const SignalRow& row);
  // `tenants` empty: every tenant's.
  absl::StatusOr<std::vector<SignalRow>> list(int64_t since_unix_ms, size_t limit,
                                              const std::vector<std::string>& tenants);
  // NotFound when there is no such signal.
  absl::StatusOr<SignalRow> get(const std::string& signal_id);

 private:
  sql::Db* db_;
};

// Table `approvals`: the Approval message in `record`, its id, signal, times, state and tenant
// in columns for the lookups (sql_approvals.cc).
class SqlApprovals {
 public:
  explicit SqlApprovals(sql::Db* db) : db_(db) {}
  // AlreadyExists if the id is taken.
  absl::Status add(const bulkhead::v1::Approval& approval);
  // NotFound when there is no such approval.
  absl::StatusOr<bulkhead::v1::Approval> get(const std::string& approval_id);
  // `tenants` empty: every tenant's.
  absl::StatusOr<std::vector<bulkhead::v1::Approval>> list(bool pending_only, size_t limit,
                                                           const std::vector<std::string>& tenants);
  absl::StatusOr<std::vector<bulkhead::v1::Approval>> expired(int64_t now_unix_ms, size_t limit);
  // Replaces the row while its state is `expected_state`; FailedPrecondition (naming the
  // stored state and decider) when it is not, NotFound when there is no such approval.
  absl::Status replaceIf(const bulkhead::v1::Approval& approval,
                         bulkhead::v1::ApprovalState expected_state);

 private:
  sql::Db* db_;
};

// integrations: the webhook integrations (the record is an Integration).
class SqlIntegrations {
 public:
  explicit SqlIntegrations(sql::Db* db) : db_(db) {}
  // AlreadyExists when the name or the token hash is taken.
  absl::Status add(const IntegrationRow& row);
  // NotFound when there is no such integration.
  absl::Status update(const IntegrationRow& row);
  absl::StatusOr<std::optional<IntegrationRow>> find(const std::string& name);
  absl::StatusOr<std::vector<IntegrationRow>> list();

 private:
  sql::Db* db_;
};

// join_tokens and enrollments: join tokens (the record is a JoinToken) and the hosts enrolled
// with them.
class SqlJoinTokens {
 public:
  explicit SqlJoinTokens(sql::Db* db) : db_(db) {}
  // AlreadyExists when the id is taken.
  absl::Status add(const JoinTokenRow& row);
  // NotFound when there is no such token.
  absl::Status update(const JoinTokenRow& row);
  absl::StatusOr<std::optional<JoinTokenRow>> find(const std::string& token_id);
  absl::StatusOr<std::vector<JoinTokenRow>> list();
  // Whether `host_id` is enrolled or in the hosts table.
  absl::StatusOr<bool> hostKnown(const std::string& host_id);
  // AlreadyExists when the host is enrolled.
  absl::Status addEnrollment(const EnrollmentRow& row);
  absl::StatusOr<std::optional<EnrollmentRow>> findEnrollment(const std::string& host_id);
  // Whether an operator enrolled as `name` or a role binding names it.
  absl::StatusOr<bool> operatorKnown(const std::string& name);
  // AlreadyExists when an operator enrolled with that name.
  absl::Status addOperatorEnrollment(const OperatorEnrollmentRow& row);

 private:
  sql::Db* db_;
};

// Tenants, operators' role bindings, and the labels admins set on hosts.
class SqlTenants {
 public:
  explicit SqlTenants(sql::Db* db) : db_(db) {}
  // AlreadyExists when the name is taken.
  absl::Status add(const bulkhead::v1::Tenant& tenant);
  absl::StatusOr<std::vector<bulkhead::v1::Tenant>> list();
  // AlreadyExists when the operator has a binding in that tenant with that selector.
  absl::Status addBinding(const bulkhead::v1::RoleBinding& binding);
  // NotFound when there is no such binding.
  absl::StatusOr<bulkhead::v1::RoleBinding> removeBinding(const std::string& binding_id);
  absl::StatusOr<std::vector<bulkhead::v1::RoleBinding>> listBindings(
      const std::string& operator_name);
  absl::Status setHostLabels(const HostLabelsRow& row);
  absl::StatusOr<std::optional<HostLabelsRow>> findHostLabels(const std::string& host_id);

 private:
  sql::Db* db_;
};

// incidents: one row per (tenant, id); the record is an Incident.
class SqlIncidents {
 public:
  explicit SqlIncidents(sql::Db* db) : db_(db) {}
  // As Store::addIncident, updateIncident, getIncident, listIncidents (without the audit row).
  absl::Status add(const bulkhead::v1::Incident& incident);
  absl::Status update(const bulkhead::v1::Incident& incident);
  absl::StatusOr<bulkhead::v1::Incident> find(const std::string& tenant, const std::string& id);
  absl::StatusOr<std::vector<bulkhead::v1::Incident>> list(const std::vector<std::string>& tenants);

 private:
  sql::Db* db_;
};

// notifications and notify_cursor: the deliveries queued for the notification channels.
class SqlNotifications {
 public:
  explicit SqlNotifications(sql::Db* db) : db_(db) {}
  // As Store::notifyCursor, queueNotifications (REQUIRES: a transaction), dueNotifications,
  // updateNotification (without the audit row), countNotifications.
  absl::StatusOr<std::optional<int64_t>> cursor();
  absl::Status queue(const std::vector<NotificationRow>& rows, int64_t cursor);
  absl::StatusOr<std::vector<NotificationRow>> due(int64_t now_unix_ms, size_t limit);
  absl::Status update(const NotificationRow& row);
  absl::StatusOr<std::vector<NotificationCount>> counts();

 private:
  sql::Db* db_;
};

}  // namespace bulkhead::controller
