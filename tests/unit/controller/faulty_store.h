// A Store that forwards every call to a real one, and fails the calls a test arms, in the
// spirit of LevelDB's fault-injection Env: the server under test sees a store that returns an
// error (or throws) exactly where the test says, and nothing reaches the real store for that
// call. Failures inside a transaction, after part of it was written, are made in the real
// database instead (a trigger that raises, SqliteStore::execForTest), so the rollback is real.
#pragma once

#include <map>
#include <mutex>
#include <stdexcept>
#include <string>

#include "controller/store/store.h"

namespace bulkhead::controller::testing {

class FaultyStore final : public Store {
 public:
  explicit FaultyStore(Store& real) : real_(real) {}

  // The next call of `method` (a Store method's name) returns `status` without reaching the
  // real store.
  void failNext(const std::string& method,
                absl::Status status = absl::UnavailableError("injected fault: disk I/O error")) {
    std::lock_guard lock(mu_);
    faults_[method] = Fault{std::move(status), false};
  }
  // The next call of `method` throws std::runtime_error, as a bug in a store would.
  void throwNext(const std::string& method) {
    std::lock_guard lock(mu_);
    faults_[method] = Fault{absl::OkStatus(), true};
  }
  // How many times `method` was called (failed calls too).
  int calls(const std::string& method) {
    std::lock_guard lock(mu_);
    auto it = calls_.find(method);
    return it == calls_.end() ? 0 : it->second;
  }
  // True until the armed fault of `method` has fired.
  bool armed(const std::string& method) {
    std::lock_guard lock(mu_);
    return faults_.contains(method);
  }

  absl::Status saveHosts(const std::vector<HostInfo>& hosts,
                         const std::vector<TamperRecord>& tamper,
                         const std::vector<AuditEntry>& audit) override {
    if (auto s = fault("saveHosts"); !s.ok()) return s;
    return real_.saveHosts(hosts, tamper, audit);
  }
  absl::StatusOr<std::vector<HostInfo>> loadHosts() override {
    if (auto s = fault("loadHosts"); !s.ok()) return s;
    return real_.loadHosts();
  }
  absl::StatusOr<AuditEntry> appendAudit(const AuditEntry& entry) override {
    if (auto s = fault("appendAudit"); !s.ok()) return s;
    return real_.appendAudit(entry);
  }
  absl::StatusOr<std::vector<AuditEntry>> listAudit(size_t limit) override {
    if (auto s = fault("listAudit"); !s.ok()) return s;
    return real_.listAudit(limit);
  }
  using Store::listAuditPage;
  absl::StatusOr<std::vector<AuditEntry>> listAuditPage(int64_t before_id, size_t limit,
                                                        const AuditScope& scope) override {
    if (auto s = fault("listAuditPage"); !s.ok()) return s;
    return real_.listAuditPage(before_id, limit, scope);
  }
  using Store::listAuditFrom;
  absl::StatusOr<std::vector<AuditEntry>> listAuditFrom(int64_t first_id,
                                                        const AuditScope& scope) override {
    if (auto s = fault("listAuditFrom"); !s.ok()) return s;
    return real_.listAuditFrom(first_id, scope);
  }
  using Store::verifyAudit;
  absl::StatusOr<AuditVerification> verifyAudit(
      const std::optional<AuditCheckpoint>& checkpoint) override {
    if (auto s = fault("verifyAudit"); !s.ok()) return s;
    return real_.verifyAudit(checkpoint);
  }
  absl::Status saveDesiredState(const std::string& host_id,
                                const bulkhead::v1::DesiredState& state) override {
    if (auto s = fault("saveDesiredState"); !s.ok()) return s;
    return real_.saveDesiredState(host_id, state);
  }
  absl::StatusOr<std::map<std::string, bulkhead::v1::DesiredState>> loadDesiredStates() override {
    if (auto s = fault("loadDesiredStates"); !s.ok()) return s;
    return real_.loadDesiredStates();
  }
  absl::StatusOr<AuditEntry> commitChange(
      const std::map<std::string, bulkhead::v1::DesiredState>& states,
      const AuditEntry& entry) override {
    if (auto s = fault("commitChange"); !s.ok()) return s;
    return real_.commitChange(states, entry);
  }
  absl::Status addCapture(const CaptureRow& capture) override {
    if (auto s = fault("addCapture"); !s.ok()) return s;
    return real_.addCapture(capture);
  }
  absl::StatusOr<CaptureRow> getCapture(const std::string& capture_id) override {
    if (auto s = fault("getCapture"); !s.ok()) return s;
    return real_.getCapture(capture_id);
  }
  absl::Status setCaptureState(const std::string& capture_id, const std::string& state) override {
    if (auto s = fault("setCaptureState"); !s.ok()) return s;
    return real_.setCaptureState(capture_id, state);
  }
  absl::StatusOr<std::vector<CustodyEntry>> addEvidence(
      const EvidenceRow& row, const std::vector<CustodyEntry>& events) override {
    if (auto s = fault("addEvidence"); !s.ok()) return s;
    return real_.addEvidence(row, events);
  }
  absl::StatusOr<CustodyEntry> appendCustody(const CustodyEntry& event) override {
    if (auto s = fault("appendCustody"); !s.ok()) return s;
    return real_.appendCustody(event);
  }
  absl::StatusOr<std::vector<EvidenceRow>> listEvidence(const std::string& host_id) override {
    if (auto s = fault("listEvidence"); !s.ok()) return s;
    return real_.listEvidence(host_id);
  }
  absl::StatusOr<EvidenceRow> getEvidence(const std::string& id_or_prefix) override {
    if (auto s = fault("getEvidence"); !s.ok()) return s;
    return real_.getEvidence(id_or_prefix);
  }
  absl::StatusOr<uint64_t> evidenceBytesOfHost(const std::string& host_id) override {
    if (auto s = fault("evidenceBytesOfHost"); !s.ok()) return s;
    return real_.evidenceBytesOfHost(host_id);
  }
  absl::StatusOr<std::optional<EvidenceRow>> evidenceForCapture(
      const std::string& capture_id) override {
    if (auto s = fault("evidenceForCapture"); !s.ok()) return s;
    return real_.evidenceForCapture(capture_id);
  }
  absl::StatusOr<std::vector<CustodyEntry>> listCustody(const std::string& evidence_id) override {
    if (auto s = fault("listCustody"); !s.ok()) return s;
    return real_.listCustody(evidence_id);
  }
  absl::StatusOr<CustodyVerification> verifyCustody(const std::string& evidence_id) override {
    if (auto s = fault("verifyCustody"); !s.ok()) return s;
    return real_.verifyCustody(evidence_id);
  }
  absl::StatusOr<std::vector<std::optional<SignalRow>>> addSignals(
      const std::vector<SignalWrite>& writes, int64_t dedupe_since_unix_ms) override {
    if (auto s = fault("addSignals"); !s.ok()) return s;
    return real_.addSignals(writes, dedupe_since_unix_ms);
  }
  absl::StatusOr<std::optional<SignalRow>> findSignal(const std::string& idempotency_key,
                                                      int64_t since_unix_ms) override {
    if (auto s = fault("findSignal"); !s.ok()) return s;
    return real_.findSignal(idempotency_key, since_unix_ms);
  }
  absl::Status updateSignal(const SignalRow& row) override {
    if (auto s = fault("updateSignal"); !s.ok()) return s;
    return real_.updateSignal(row);
  }
  using Store::listSignals;
  absl::StatusOr<std::vector<SignalRow>> listSignals(
      int64_t since_unix_ms, size_t limit, const std::vector<std::string>& tenants) override {
    if (auto s = fault("listSignals"); !s.ok()) return s;
    return real_.listSignals(since_unix_ms, limit, tenants);
  }
  absl::StatusOr<SignalRow> getSignal(const std::string& signal_id) override {
    if (auto s = fault("getSignal"); !s.ok()) return s;
    return real_.getSignal(signal_id);
  }
  absl::StatusOr<bulkhead::v1::Approval> getApproval(const std::string& approval_id) override {
    if (auto s = fault("getApproval"); !s.ok()) return s;
    return real_.getApproval(approval_id);
  }
  using Store::listApprovals;
  absl::StatusOr<std::vector<bulkhead::v1::Approval>> listApprovals(
      bool pending_only, size_t limit, const std::vector<std::string>& tenants) override {
    if (auto s = fault("listApprovals"); !s.ok()) return s;
    return real_.listApprovals(pending_only, limit, tenants);
  }
  absl::StatusOr<std::vector<bulkhead::v1::Approval>> listExpiredApprovals(int64_t now_unix_ms,
                                                                           size_t limit) override {
    if (auto s = fault("listExpiredApprovals"); !s.ok()) return s;
    return real_.listExpiredApprovals(now_unix_ms, limit);
  }
  absl::Status decideApproval(const bulkhead::v1::Approval& decided,
                              const AuditEntry& audit) override {
    if (auto s = fault("decideApproval"); !s.ok()) return s;
    return real_.decideApproval(decided, audit);
  }
  absl::Status updateApproval(const bulkhead::v1::Approval& approval) override {
    if (auto s = fault("updateApproval"); !s.ok()) return s;
    return real_.updateApproval(approval);
  }
  absl::Status addIntegration(const IntegrationRow& row, const AuditEntry& audit) override {
    if (auto s = fault("addIntegration"); !s.ok()) return s;
    return real_.addIntegration(row, audit);
  }
  absl::Status updateIntegration(const IntegrationRow& row, const AuditEntry& audit) override {
    if (auto s = fault("updateIntegration"); !s.ok()) return s;
    return real_.updateIntegration(row, audit);
  }
  absl::StatusOr<std::optional<IntegrationRow>> findIntegration(const std::string& name) override {
    if (auto s = fault("findIntegration"); !s.ok()) return s;
    return real_.findIntegration(name);
  }
  absl::StatusOr<std::vector<IntegrationRow>> listIntegrations() override {
    if (auto s = fault("listIntegrations"); !s.ok()) return s;
    return real_.listIntegrations();
  }
  absl::Status addJoinToken(const JoinTokenRow& row, const AuditEntry& audit) override {
    if (auto s = fault("addJoinToken"); !s.ok()) return s;
    return real_.addJoinToken(row, audit);
  }
  absl::Status updateJoinToken(const JoinTokenRow& row, const AuditEntry& audit) override {
    if (auto s = fault("updateJoinToken"); !s.ok()) return s;
    return real_.updateJoinToken(row, audit);
  }
  absl::StatusOr<std::optional<JoinTokenRow>> findJoinToken(const std::string& id) override {
    if (auto s = fault("findJoinToken"); !s.ok()) return s;
    return real_.findJoinToken(id);
  }
  absl::StatusOr<std::vector<JoinTokenRow>> listJoinTokens() override {
    if (auto s = fault("listJoinTokens"); !s.ok()) return s;
    return real_.listJoinTokens();
  }
  absl::StatusOr<JoinTokenRow> redeemJoinToken(const EnrollmentRow& enrollment,
                                               const RedeemCheck& check,
                                               const AuditEntry& audit) override {
    if (auto s = fault("redeemJoinToken"); !s.ok()) return s;
    return real_.redeemJoinToken(enrollment, check, audit);
  }
  absl::StatusOr<JoinTokenRow> redeemOperatorToken(const OperatorEnrollmentRow& enrollment,
                                                   const RedeemCheck& check,
                                                   const AuditEntry& audit) override {
    if (auto s = fault("redeemOperatorToken"); !s.ok()) return s;
    return real_.redeemOperatorToken(enrollment, check, audit);
  }
  absl::StatusOr<std::optional<EnrollmentRow>> findEnrollment(const std::string& host_id) override {
    if (auto s = fault("findEnrollment"); !s.ok()) return s;
    return real_.findEnrollment(host_id);
  }
  absl::Status addTenant(const bulkhead::v1::Tenant& tenant, const AuditEntry& audit) override {
    if (auto s = fault("addTenant"); !s.ok()) return s;
    return real_.addTenant(tenant, audit);
  }
  absl::StatusOr<std::vector<bulkhead::v1::Tenant>> listTenants() override {
    if (auto s = fault("listTenants"); !s.ok()) return s;
    return real_.listTenants();
  }
  absl::Status addRoleBinding(const bulkhead::v1::RoleBinding& binding,
                              const AuditEntry& audit) override {
    if (auto s = fault("addRoleBinding"); !s.ok()) return s;
    return real_.addRoleBinding(binding, audit);
  }
  absl::StatusOr<bulkhead::v1::RoleBinding> removeRoleBinding(const std::string& binding_id,
                                                              const AuditEntry& audit) override {
    if (auto s = fault("removeRoleBinding"); !s.ok()) return s;
    return real_.removeRoleBinding(binding_id, audit);
  }
  absl::StatusOr<std::vector<bulkhead::v1::RoleBinding>> listRoleBindings(
      const std::string& operator_name) override {
    if (auto s = fault("listRoleBindings"); !s.ok()) return s;
    return real_.listRoleBindings(operator_name);
  }
  absl::Status setHostLabels(const HostLabelsRow& row, const AuditEntry& audit) override {
    if (auto s = fault("setHostLabels"); !s.ok()) return s;
    return real_.setHostLabels(row, audit);
  }
  absl::Status addIncident(const bulkhead::v1::Incident& incident,
                           const AuditEntry& audit) override {
    if (auto s = fault("addIncident"); !s.ok()) return s;
    return real_.addIncident(incident, audit);
  }
  absl::Status updateIncident(const bulkhead::v1::Incident& incident,
                              const AuditEntry& audit) override {
    if (auto s = fault("updateIncident"); !s.ok()) return s;
    return real_.updateIncident(incident, audit);
  }
  absl::StatusOr<bulkhead::v1::Incident> getIncident(const std::string& tenant,
                                                     const std::string& id) override {
    if (auto s = fault("getIncident"); !s.ok()) return s;
    return real_.getIncident(tenant, id);
  }
  absl::StatusOr<std::vector<bulkhead::v1::Incident>> listIncidents(
      const std::vector<std::string>& tenants) override {
    if (auto s = fault("listIncidents"); !s.ok()) return s;
    return real_.listIncidents(tenants);
  }
  absl::StatusOr<std::vector<AuditEntry>> listIncidentAudit(const std::string& tenant,
                                                            const std::string& id) override {
    if (auto s = fault("listIncidentAudit"); !s.ok()) return s;
    return real_.listIncidentAudit(tenant, id);
  }
  absl::StatusOr<std::vector<EvidenceRow>> listIncidentEvidence(const std::string& tenant,
                                                                const std::string& id) override {
    if (auto s = fault("listIncidentEvidence"); !s.ok()) return s;
    return real_.listIncidentEvidence(tenant, id);
  }
  absl::StatusOr<std::optional<HostLabelsRow>> findHostLabels(const std::string& host_id) override {
    if (auto s = fault("findHostLabels"); !s.ok()) return s;
    return real_.findHostLabels(host_id);
  }
  absl::StatusOr<std::vector<AuditEntry>> listAuditAfter(int64_t after_id, size_t limit) override {
    if (auto s = fault("listAuditAfter"); !s.ok()) return s;
    return real_.listAuditAfter(after_id, limit);
  }
  absl::StatusOr<std::optional<int64_t>> notifyCursor() override {
    if (auto s = fault("notifyCursor"); !s.ok()) return s;
    return real_.notifyCursor();
  }
  absl::Status queueNotifications(const std::vector<NotificationRow>& rows,
                                  int64_t cursor) override {
    if (auto s = fault("queueNotifications"); !s.ok()) return s;
    return real_.queueNotifications(rows, cursor);
  }
  absl::StatusOr<std::vector<NotificationRow>> dueNotifications(int64_t now_unix_ms,
                                                                size_t limit) override {
    if (auto s = fault("dueNotifications"); !s.ok()) return s;
    return real_.dueNotifications(now_unix_ms, limit);
  }
  absl::Status updateNotification(const NotificationRow& row,
                                  const std::optional<AuditEntry>& audit) override {
    if (auto s = fault("updateNotification"); !s.ok()) return s;
    return real_.updateNotification(row, audit);
  }
  absl::StatusOr<std::vector<NotificationCount>> countNotifications() override {
    if (auto s = fault("countNotifications"); !s.ok()) return s;
    return real_.countNotifications();
  }
  absl::StatusOr<StoreFigures> figures(int64_t audit_after_id) override {
    if (auto s = fault("figures"); !s.ok()) return s;
    return real_.figures(audit_after_id);
  }
  absl::Status probeWrite() override {
    if (auto s = fault("probeWrite"); !s.ok()) return s;
    return real_.probeWrite();
  }

 private:
  struct Fault {
    absl::Status status;
    bool throws = false;
  };
  // The armed fault of `method`, disarmed as it fires: its status, or a throw.
  absl::Status fault(const std::string& method) {
    Fault f;
    {
      std::lock_guard lock(mu_);
      ++calls_[method];
      auto it = faults_.find(method);
      if (it == faults_.end()) return absl::OkStatus();
      f = std::move(it->second);
      faults_.erase(it);
    }
    if (f.throws) throw std::runtime_error("injected fault: " + method + " threw");
    return f.status;
  }

  Store& real_;
  std::mutex mu_;
  std::map<std::string, Fault> faults_;  // GUARDED_BY(mu_)
  std::map<std::string, int> calls_;     // GUARDED_BY(mu_)
};

}  // namespace bulkhead::controller::testing
