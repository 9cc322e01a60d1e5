// The Store on a SQL database, whichever engine holds it (sql_db.h): the tables of
// sql_tables.h, one lock, the transactions that span tables. SqliteStore (the embedded
// default) and PostgresStore (several controllers on one database) are this with their engine,
// their schema and their write probe. Every method is thread-safe and blocks on I/O, so callers
// on latency-sensitive threads (stream reactors) must not call it.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "controller/store/sql_tables.h"
#include "controller/store/store.h"

namespace bulkhead::controller {

class SqlStore : public Store {
 public:
  ~SqlStore() override;
  SqlStore(const SqlStore&) = delete;
  SqlStore& operator=(const SqlStore&) = delete;

  absl::Status saveHosts(const std::vector<HostInfo>& hosts,
                         const std::vector<TamperRecord>& tamper,
                         const std::vector<AuditEntry>& audit) override;
  absl::StatusOr<std::vector<HostInfo>> loadHosts() override;
  absl::StatusOr<AuditEntry> appendAudit(const AuditEntry& entry) override;
  absl::StatusOr<std::vector<AuditEntry>> listAudit(size_t limit) override;
  using Store::listAuditPage;
  absl::StatusOr<std::vector<AuditEntry>> listAuditPage(int64_t before_id, size_t limit,
                                                        const AuditScope& scope) override;
  using Store::listAuditFrom;
  absl::StatusOr<std::vector<AuditEntry>> listAuditFrom(int64_t first_id,
                                                        const AuditScope& scope) override;
  using Store::verifyAudit;
  absl::StatusOr<AuditVerification> verifyAudit(
      const std::optional<AuditCheckpoint>& checkpoint) override;
  absl::Status saveDesiredState(const std::string& host_id,
                                const bulkhead::v1::DesiredState& state) override;
  absl::StatusOr<std::map<std::string, bulkhead::v1::DesiredState>> loadDesiredStates() override;
  absl::StatusOr<std::map<std::string, bulkhead::v1::DesiredState>> loadDesiredStatesOf(
      const std::vector<std::string>& hosts) override;
  absl::StatusOr<AuditEntry> commitChange(
      const std::map<std::string, bulkhead::v1::DesiredState>& states,
      const AuditEntry& entry) override;
  absl::Status addCapture(const CaptureRow& capture) override;
  absl::StatusOr<CaptureRow> getCapture(const std::string& capture_id) override;
  absl::Status setCaptureState(const std::string& capture_id, const std::string& state) override;
  absl::StatusOr<std::vector<CustodyEntry>> addEvidence(
      const EvidenceRow& row, const std::vector<CustodyEntry>& events) override;
  absl::StatusOr<CustodyEntry> appendCustody(const CustodyEntry& event) override;
  absl::StatusOr<std::vector<EvidenceRow>> listEvidence(const std::string& host_id) override;
  absl::StatusOr<EvidenceRow> getEvidence(const std::string& id_or_prefix) override;
  absl::StatusOr<uint64_t> evidenceBytesOfHost(const std::string& host_id) override;
  absl::StatusOr<std::optional<EvidenceRow>> evidenceForCapture(
      const std::string& capture_id) override;
  absl::StatusOr<std::vector<CustodyEntry>> listCustody(const std::string& evidence_id) override;
  absl::StatusOr<CustodyVerification> verifyCustody(const std::string& evidence_id) override;
  absl::StatusOr<std::vector<std::optional<SignalRow>>> addSignals(
      const std::vector<SignalWrite>& writes, int64_t dedupe_since_unix_ms) override;
  absl::StatusOr<std::optional<SignalRow>> findSignal(const std::string& idempotency_key,
                                                      int64_t since_unix_ms) override;
  absl::Status updateSignal(const SignalRow& row) override;
  using Store::listSignals;
  absl::StatusOr<std::vector<SignalRow>> listSignals(
      int64_t since_unix_ms, size_t limit, const std::vector<std::string>& tenants) override;
  absl::StatusOr<SignalRow> getSignal(const std::string& signal_id) override;
  absl::StatusOr<bulkhead::v1::Approval> getApproval(const std::string& approval_id) override;
  using Store::listApprovals;
  absl::StatusOr<std::vector<bulkhead::v1::Approval>> listApprovals(
      bool pending_only, size_t limit, const std::vector<std::string>& tenants) override;
  absl::StatusOr<std::vector<bulkhead::v1::Approval>> listExpiredApprovals(int64_t now_unix_ms,
                                                                           size_t limit) override;
  absl::Status decideApproval(const bulkhead::v1::Approval& decided,
                              const AuditEntry& audit) override;
  absl::Status updateApproval(const bulkhead::v1::Approval& approval) override;
  absl::Status addIntegration(const IntegrationRow& row, const AuditEntry& audit) override;
  absl::Status updateIntegration(const IntegrationRow& row, const AuditEntry& audit) override;
  absl::StatusOr<std::optional<IntegrationRow>> findIntegration(const std::string& name) override;
  absl::StatusOr<std::vector<IntegrationRow>> listIntegrations() override;
  absl::Status addTenant(const bulkhead::v1::Tenant& tenant, const AuditEntry& audit) override;
  absl::StatusOr<std::vector<bulkhead::v1::Tenant>> listTenants() override;
  absl::Status addRoleBinding(const bulkhead::v1::RoleBinding& binding,
                              const AuditEntry& audit) override;
  absl::StatusOr<bulkhead::v1::RoleBinding> removeRoleBinding(const std::string& binding_id,
                                                              const AuditEntry& audit) override;
  absl::StatusOr<std::vector<bulkhead::v1::RoleBinding>> listRoleBindings(
      const std::string& operator_name) override;
  absl::Status setHostLabels(const HostLabelsRow& row, const AuditEntry& audit) override;
  absl::StatusOr<std::optional<HostLabelsRow>> findHostLabels(const std::string& host_id) override;
  absl::Status addIncident(const bulkhead::v1::Incident& incident,
                           const AuditEntry& audit) override;
  absl::Status updateIncident(const bulkhead::v1::Incident& incident,
                              const AuditEntry& audit) override;
  absl::StatusOr<bulkhead::v1::Incident> getIncident(const std::string& tenant,
                                                     const std::string& id) override;
  absl::StatusOr<std::vector<bulkhead::v1::Incident>> listIncidents(
      const std::vector<std::string>& tenants) override;
  absl::StatusOr<std::vector<AuditEntry>> listIncidentAudit(const std::string& tenant,
                                                            const std::string& id) override;
  absl::StatusOr<std::vector<EvidenceRow>> listIncidentEvidence(const std::string& tenant,
                                                                const std::string& id) override;
  absl::Status addJoinToken(const JoinTokenRow& row, const AuditEntry& audit) override;
  absl::Status updateJoinToken(const JoinTokenRow& row, const AuditEntry& audit) override;
  absl::StatusOr<std::optional<JoinTokenRow>> findJoinToken(const std::string& token_id) override;
  absl::StatusOr<std::vector<JoinTokenRow>> listJoinTokens() override;
  absl::StatusOr<JoinTokenRow> redeemJoinToken(const EnrollmentRow& enrollment,
                                               const RedeemCheck& check,
                                               const AuditEntry& audit) override;
  absl::StatusOr<JoinTokenRow> redeemOperatorToken(const OperatorEnrollmentRow& enrollment,
                                                   const RedeemCheck& check,
                                                   const AuditEntry& audit) override;
  absl::StatusOr<std::optional<EnrollmentRow>> findEnrollment(const std::string& host_id) override;
  absl::StatusOr<std::vector<AuditEntry>> listAuditAfter(int64_t after_id, size_t limit) override;
  absl::StatusOr<std::optional<int64_t>> notifyCursor() override;
  absl::Status queueNotifications(const std::vector<NotificationRow>& rows,
                                  int64_t cursor) override;
  absl::StatusOr<std::vector<NotificationRow>> dueNotifications(int64_t now_unix_ms,
                                                                size_t limit) override;
  absl::Status updateNotification(const NotificationRow& row,
                                  const std::optional<AuditEntry>& audit) override;
  absl::StatusOr<std::vector<NotificationCount>> countNotifications() override;
  absl::StatusOr<StoreFigures> figures(int64_t audit_after_id) override;
  absl::Status probeWrite() override;

  // From now on every commitChange also sends, when it commits, the ids of the hosts it changed
  // on kDesiredChannel to the controllers listening on the database (none on SQLite): payloads
  // of "REPLICA HOST HOST ..." (several when long), REPLICA naming this controller.
  void announceChangesAs(std::string replica);
  static constexpr const char* kDesiredChannel = "bulkhead_desired";

  // Test hook: runs raw SQL (used to simulate tampering).
  absl::Status execForTest(const std::string& sql);

 protected:
  // `db` open and migrated to the newest schema.
  SqlStore(std::unique_ptr<sql::Db> db, std::string audit_key);
  // With an audit key, a table whose last row has no MAC gets the "audit-keyed" marker row.
  absl::Status startKeyedChain();
  // A write transaction that rewrites the schema version with its own value: probeWrite().
  // REQUIRES: the lock held.
  virtual absl::Status rewriteSchemaVersion() = 0;

  std::mutex mu_;  // guards the database and every table below
  const std::unique_ptr<sql::Db> db_;

 private:
  absl::StatusOr<JoinTokenRow> useJoinToken(const std::string& token_id,
                                            const std::string& enrolled, bool known,
                                            const RedeemCheck& check);

  std::string replica_;  // GUARDED_BY(mu_); empty: commitChange announces nothing
  SqlHosts hosts_;
  SqlDesiredStates desired_states_;
  SqlAudit audit_;
  SqlCaptures captures_;
  SqlEvidence evidence_;
  SqlCustody custody_;
  SqlSignals signals_;
  SqlApprovals approvals_;
  SqlIntegrations integrations_;
  SqlJoinTokens join_tokens_;
  SqlTenants tenants_;
  SqlIncidents incidents_;
  SqlNotifications notifications_;
};

}  // namespace bulkhead::controller
