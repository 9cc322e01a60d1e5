#include "controller/store/sql_store.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "common/format.h"
#include "controller/store/sql_db.h"

namespace bulkhead::controller {

using sql::inTransaction;
namespace v1 = bulkhead::v1;

SqlStore::SqlStore(std::unique_ptr<sql::Db> db, std::string audit_key)
    : db_(std::move(db)),
      hosts_(db_.get()),
      desired_states_(db_.get()),
      audit_(db_.get(), std::move(audit_key)),
      captures_(db_.get()),
      evidence_(db_.get()),
      custody_(db_.get()),
      signals_(db_.get()),
      approvals_(db_.get()),
      integrations_(db_.get()),
      join_tokens_(db_.get()),
      tenants_(db_.get()),
      incidents_(db_.get()),
      notifications_(db_.get()) {}

SqlStore::~SqlStore() = default;

absl::Status SqlStore::startKeyedChain() {
  const int64_t now_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  std::lock_guard lock(mu_);
  return inTransaction(db_.get(),
                       [this, now_unix_ms] { return audit_.startKeyedChain(now_unix_ms); });
}

absl::Status SqlStore::execForTest(const std::string& sql) {
  std::lock_guard lock(mu_);
  return db_->exec(sql);
}

// --- hosts, desired states ---

absl::Status SqlStore::saveHosts(const std::vector<HostInfo>& hosts,
                                 const std::vector<TamperRecord>& tamper,
                                 const std::vector<AuditEntry>& audit) {
  if (hosts.empty() && tamper.empty() && audit.empty()) return absl::OkStatus();
  std::lock_guard lock(mu_);
  return inTransaction(db_.get(), [&]() -> absl::Status {
    if (auto s = hosts_.save(hosts, tamper); !s.ok()) return s;
    for (const AuditEntry& e : audit) {
      if (auto row = audit_.append(e); !row.ok()) return row.status();
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<HostInfo>> SqlStore::loadHosts() {
  std::lock_guard lock(mu_);
  return hosts_.load();
}

absl::Status SqlStore::saveDesiredState(const std::string& host_id,
                                        const bulkhead::v1::DesiredState& state) {
  std::lock_guard lock(mu_);
  return desired_states_.put(host_id, state);
}

absl::StatusOr<std::map<std::string, bulkhead::v1::DesiredState>> SqlStore::loadDesiredStates() {
  std::lock_guard lock(mu_);
  return desired_states_.load();
}

absl::StatusOr<AuditEntry> SqlStore::commitChange(
    const std::map<std::string, bulkhead::v1::DesiredState>& states, const AuditEntry& entry) {
  std::lock_guard lock(mu_);
  return inTransaction(db_.get(), [&]() -> absl::StatusOr<AuditEntry> {
    if (auto s = desired_states_.putAllNewer(states); !s.ok()) return s;
    if (!replica_.empty()) {
      // NOTIFY payloads must stay under 8000 bytes.
      constexpr size_t kPayloadLimit = 7000;
      std::string payload = replica_;
      for (auto it = states.begin(); it != states.end(); ++it) {
        payload += ' ';
        payload += it->first;
        if (payload.size() >= kPayloadLimit || std::next(it) == states.end()) {
          if (auto s = db_->notify(kDesiredChannel, payload); !s.ok()) return s;
          payload = replica_;
        }
      }
    }
    return audit_.append(entry);
  });
}

absl::StatusOr<std::map<std::string, v1::DesiredState>> SqlStore::loadDesiredStatesOf(
    const std::vector<std::string>& hosts) {
  std::lock_guard lock(mu_);
  return desired_states_.loadOf(hosts);
}

void SqlStore::announceChangesAs(std::string replica) {
  std::lock_guard lock(mu_);
  replica_ = std::move(replica);
}

// --- audit ---

absl::StatusOr<AuditEntry> SqlStore::appendAudit(const AuditEntry& entry) {
  std::lock_guard lock(mu_);
  return inTransaction(db_.get(), [&] { return audit_.append(entry); });
}

absl::StatusOr<std::vector<AuditEntry>> SqlStore::listAudit(size_t limit) {
  std::lock_guard lock(mu_);
  return audit_.list(limit);
}

absl::StatusOr<std::vector<AuditEntry>> SqlStore::listAuditPage(int64_t before_id, size_t limit,
                                                                const AuditScope& scope) {
  std::lock_guard lock(mu_);
  return audit_.page(before_id, limit, scope);
}

absl::StatusOr<std::vector<AuditEntry>> SqlStore::listAuditFrom(int64_t first_id,
                                                                const AuditScope& scope) {
  std::lock_guard lock(mu_);
  return audit_.from(first_id, scope);
}

absl::StatusOr<AuditVerification> SqlStore::verifyAudit(
    const std::optional<AuditCheckpoint>& checkpoint) {
  std::lock_guard lock(mu_);
  return audit_.verify(checkpoint);
}

// --- evidence ---

absl::Status SqlStore::addCapture(const CaptureRow& capture) {
  std::lock_guard lock(mu_);
  return captures_.add(capture);
}

absl::StatusOr<CaptureRow> SqlStore::getCapture(const std::string& capture_id) {
  std::lock_guard lock(mu_);
  return captures_.get(capture_id);
}

absl::Status SqlStore::setCaptureState(const std::string& capture_id, const std::string& state) {
  std::lock_guard lock(mu_);
  auto found = captures_.setState(capture_id, state);
  if (!found.ok()) return found.status();
  if (!*found) {
    return absl::NotFoundError(fmt::format("no capture \"{}\" was requested", capture_id));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<CustodyEntry>> SqlStore::addEvidence(
    const EvidenceRow& row, const std::vector<CustodyEntry>& events) {
  std::lock_guard lock(mu_);
  return inTransaction(db_.get(), [&]() -> absl::StatusOr<std::vector<CustodyEntry>> {
    auto stored = evidence_.contains(row.id);
    if (!stored.ok()) return stored.status();
    if (*stored)
      return absl::AlreadyExistsError(fmt::format("evidence {} is already stored", row.id));
    if (auto s = evidence_.add(row); !s.ok()) return s;
    std::vector<CustodyEntry> out;
    for (CustodyEntry e : events) {
      e.evidence_id = row.id;
      auto appended = custody_.append(e);
      if (!appended.ok()) return appended.status();
      out.push_back(*std::move(appended));
    }
    // A bundle is stored even for a capture this store does not know.
    if (auto s = captures_.setState(row.capture_id, "received"); !s.ok()) return s.status();
    return out;
  });
}

absl::StatusOr<CustodyEntry> SqlStore::appendCustody(const CustodyEntry& event) {
  std::lock_guard lock(mu_);
  return inTransaction(db_.get(), [&]() -> absl::StatusOr<CustodyEntry> {
    auto stored = evidence_.contains(event.evidence_id);
    if (!stored.ok()) return stored.status();
    if (!*stored)
      return absl::NotFoundError(fmt::format("no evidence with id {}", event.evidence_id));
    return custody_.append(event);
  });
}

absl::StatusOr<std::vector<EvidenceRow>> SqlStore::listEvidence(const std::string& host_id) {
  std::lock_guard lock(mu_);
  return evidence_.list(host_id);
}

absl::StatusOr<EvidenceRow> SqlStore::getEvidence(const std::string& id_or_prefix) {
  std::lock_guard lock(mu_);
  return evidence_.get(id_or_prefix);
}

absl::StatusOr<uint64_t> SqlStore::evidenceBytesOfHost(const std::string& host_id) {
  std::lock_guard lock(mu_);
  return evidence_.bytesOfHost(host_id);
}

absl::StatusOr<std::optional<EvidenceRow>> SqlStore::evidenceForCapture(
    const std::string& capture_id) {
  std::lock_guard lock(mu_);
  return evidence_.forCapture(capture_id);
}

absl::StatusOr<std::vector<CustodyEntry>> SqlStore::listCustody(const std::string& evidence_id) {
  std::lock_guard lock(mu_);
  return custody_.list(evidence_id);
}

absl::StatusOr<CustodyVerification> SqlStore::verifyCustody(const std::string& evidence_id) {
  std::lock_guard lock(mu_);
  return custody_.verify(evidence_id);
}

// --- signals ---

absl::StatusOr<std::vector<std::optional<SignalRow>>> SqlStore::addSignals(
    const std::vector<SignalWrite>& writes, int64_t dedupe_since_unix_ms) {
  std::lock_guard lock(mu_);
  using Results = std::vector<std::optional<SignalRow>>;
  return inTransaction(db_.get(), [&]() -> absl::StatusOr<Results> {
    Results out;
    out.reserve(writes.size());
    for (const SignalWrite& write : writes) {
      if (write.row) {
        auto earlier = signals_.findByKey(write.row->idempotency_key, dedupe_since_unix_ms);
        if (!earlier.ok()) return earlier.status();
        if (earlier->has_value()) {
          out.push_back(*std::move(earlier));
          continue;
        }
        if (auto s = signals_.add(*write.row); !s.ok()) return s;
        for (const v1::Approval& approval : write.approvals) {
          if (auto s = approvals_.add(approval); !s.ok()) return s;
        }
      }
      for (const AuditEntry& entry : write.audit) {
        if (auto appended = audit_.append(entry); !appended.ok()) return appended.status();
      }
      out.emplace_back();
    }
    return out;
  });
}

absl::StatusOr<std::optional<SignalRow>> SqlStore::findSignal(const std::string& idempotency_key,
                                                              int64_t since_unix_ms) {
  std::lock_guard lock(mu_);
  return signals_.findByKey(idempotency_key, since_unix_ms);
}

absl::Status SqlStore::updateSignal(const SignalRow& row) {
  std::lock_guard lock(mu_);
  return signals_.update(row);
}

absl::StatusOr<std::vector<SignalRow>> SqlStore::listSignals(
    int64_t since_unix_ms, size_t limit, const std::vector<std::string>& tenants) {
  std::lock_guard lock(mu_);
  return signals_.list(since_unix_ms, limit, tenants);
}

absl::StatusOr<SignalRow> SqlStore::getSignal(const std::string& signal_id) {
  std::lock_guard lock(mu_);
  return signals_.get(signal_id);
}

// --- approvals ---

absl::StatusOr<v1::Approval> SqlStore::getApproval(const std::string& approval_id) {
  std::lock_guard lock(mu_);
  return approvals_.get(approval_id);
}

absl::StatusOr<std::vector<v1::Approval>> SqlStore::listApprovals(
    bool pending_only, size_t limit, const std::vector<std::string>& tenants) {
  std::lock_guard lock(mu_);
  return approvals_.list(pending_only, limit, tenants);
}

absl::StatusOr<std::vector<v1::Approval>> SqlStore::listExpiredApprovals(int64_t now_unix_ms,
                                                                         size_t limit) {
  std::lock_guard lock(mu_);
  return approvals_.expired(now_unix_ms, limit);
}

absl::Status SqlStore::decideApproval(const v1::Approval& decided, const AuditEntry& audit) {
  std::lock_guard lock(mu_);
  return inTransaction(db_.get(), [&]() -> absl::Status {
    if (auto s = approvals_.replaceIf(decided, v1::APPROVAL_STATE_PENDING); !s.ok()) return s;
    return audit_.append(audit).status();
  });
}

absl::Status SqlStore::updateApproval(const v1::Approval& approval) {
  std::lock_guard lock(mu_);
  return approvals_.replaceIf(approval, approval.state());
}

// --- integrations ---

absl::Status SqlStore::addIntegration(const IntegrationRow& row, const AuditEntry& audit) {
  std::lock_guard lock(mu_);
  return inTransaction(db_.get(), [&]() -> absl::Status {
    if (auto s = integrations_.add(row); !s.ok()) return s;
    return audit_.append(audit).status();
  });
}

absl::Status SqlStore::updateIntegration(const IntegrationRow& row, const AuditEntry& audit) {
  std::lock_guard lock(mu_);
  return inTransaction(db_.get(), [&]() -> absl::Status {
    if (auto s = integrations_.update(row); !s.ok()) return s;
    return audit_.append(audit).status();
  });
}

absl::Status SqlStore::addTenant(const v1::Tenant& tenant, const AuditEntry& audit) {
  std::lock_guard lock(mu_);
  return inTransaction(db_.get(), [&]() -> absl::Status {
    if (auto s = tenants_.add(tenant); !s.ok()) return s;
    return audit_.append(audit).status();
  });
}

absl::StatusOr<std::vector<v1::Tenant>> SqlStore::listTenants() {
  std::lock_guard lock(mu_);
  return tenants_.list();
}

absl::Status SqlStore::addRoleBinding(const v1::RoleBinding& binding, const AuditEntry& audit) {
  std::lock_guard lock(mu_);
  return inTransaction(db_.get(), [&]() -> absl::Status {
    if (auto s = tenants_.addBinding(binding); !s.ok()) return s;
    return audit_.append(audit).status();
  });
}

absl::StatusOr<v1::RoleBinding> SqlStore::removeRoleBinding(const std::string& binding_id,
                                                            const AuditEntry& audit) {
  std::lock_guard lock(mu_);
  return inTransaction(db_.get(), [&]() -> absl::StatusOr<v1::RoleBinding> {
    auto removed = tenants_.removeBinding(binding_id);
    if (!removed.ok()) return removed.status();
    if (auto row = audit_.append(audit); !row.ok()) return row.status();
    return removed;
  });
}

absl::StatusOr<std::vector<v1::RoleBinding>> SqlStore::listRoleBindings(
    const std::string& operator_name) {
  std::lock_guard lock(mu_);
  return tenants_.listBindings(operator_name);
}

absl::Status SqlStore::setHostLabels(const HostLabelsRow& row, const AuditEntry& audit) {
  std::lock_guard lock(mu_);
  return inTransaction(db_.get(), [&]() -> absl::Status {
    if (auto s = tenants_.setHostLabels(row); !s.ok()) return s;
    return audit_.append(audit).status();
  });
}

absl::StatusOr<std::optional<HostLabelsRow>> SqlStore::findHostLabels(const std::string& host_id) {
  std::lock_guard lock(mu_);
  return tenants_.findHostLabels(host_id);
}

absl::Status SqlStore::addIncident(const v1::Incident& incident, const AuditEntry& audit) {
  std::lock_guard lock(mu_);
  return inTransaction(db_.get(), [&]() -> absl::Status {
    if (auto s = incidents_.add(incident); !s.ok()) return s;
    return audit_.append(audit).status();
  });
}

absl::Status SqlStore::updateIncident(const v1::Incident& incident, const AuditEntry& audit) {
  std::lock_guard lock(mu_);
  return inTransaction(db_.get(), [&]() -> absl::Status {
    if (auto s = incidents_.update(incident); !s.ok()) return s;
    return audit_.append(audit).status();
  });
}

// --- notifications ---

absl::StatusOr<std::vector<AuditEntry>> SqlStore::listAuditAfter(int64_t after_id, size_t limit) {
  std::lock_guard lock(mu_);
  return audit_.after(after_id, limit);
}

absl::StatusOr<std::optional<int64_t>> SqlStore::notifyCursor() {
  std::lock_guard lock(mu_);
  return notifications_.cursor();
}

absl::Status SqlStore::queueNotifications(const std::vector<NotificationRow>& rows,
                                          int64_t cursor) {
  std::lock_guard lock(mu_);
  return inTransaction(db_.get(), [&] { return notifications_.queue(rows, cursor); });
}

absl::StatusOr<std::vector<NotificationRow>> SqlStore::dueNotifications(int64_t now_unix_ms,
                                                                        size_t limit) {
  std::lock_guard lock(mu_);
  return notifications_.due(now_unix_ms, limit);
}

absl::Status SqlStore::updateNotification(const NotificationRow& row,
                                          const std::optional<AuditEntry>& audit) {
  std::lock_guard lock(mu_);
  return inTransaction(db_.get(), [&]() -> absl::Status {
    if (auto s = notifications_.update(row); !s.ok()) return s;
    if (!audit) return absl::OkStatus();
    return audit_.append(*audit).status();
  });
}

absl::StatusOr<std::vector<NotificationCount>> SqlStore::countNotifications() {
  std::lock_guard lock(mu_);
  return notifications_.counts();
}

absl::StatusOr<v1::Incident> SqlStore::getIncident(const std::string& tenant,
                                                   const std::string& id) {
  std::lock_guard lock(mu_);
  return incidents_.find(tenant, id);
}

absl::StatusOr<std::vector<v1::Incident>> SqlStore::listIncidents(
    const std::vector<std::string>& tenants) {
  std::lock_guard lock(mu_);
  return incidents_.list(tenants);
}

absl::StatusOr<std::vector<AuditEntry>> SqlStore::listIncidentAudit(const std::string& tenant,
                                                                    const std::string& id) {
  std::lock_guard lock(mu_);
  return audit_.ofIncident(tenant, id);
}

absl::StatusOr<std::vector<EvidenceRow>> SqlStore::listIncidentEvidence(const std::string& tenant,
                                                                        const std::string& id) {
  std::lock_guard lock(mu_);
  return evidence_.ofIncident(tenant, id);
}

absl::Status SqlStore::addJoinToken(const JoinTokenRow& row, const AuditEntry& audit) {
  std::lock_guard lock(mu_);
  return inTransaction(db_.get(), [&]() -> absl::Status {
    if (auto s = join_tokens_.add(row); !s.ok()) return s;
    return audit_.append(audit).status();
  });
}

absl::Status SqlStore::updateJoinToken(const JoinTokenRow& row, const AuditEntry& audit) {
  std::lock_guard lock(mu_);
  return inTransaction(db_.get(), [&]() -> absl::Status {
    if (auto s = join_tokens_.update(row); !s.ok()) return s;
    return audit_.append(audit).status();
  });
}

absl::StatusOr<std::optional<JoinTokenRow>> SqlStore::findJoinToken(const std::string& token_id) {
  std::lock_guard lock(mu_);
  return join_tokens_.find(token_id);
}

absl::StatusOr<std::vector<JoinTokenRow>> SqlStore::listJoinTokens() {
  std::lock_guard lock(mu_);
  return join_tokens_.list();
}

// One use of join token `token_id` by `enrolled` (a host id or an operator name; `known`:
// whether the controller knows that name): `check`'s refusal, or the token as counted and
// written. Inside the caller's transaction.
absl::StatusOr<JoinTokenRow> SqlStore::useJoinToken(const std::string& token_id,
                                                    const std::string& enrolled, bool known,
                                                    const RedeemCheck& check) {
  auto found = join_tokens_.find(token_id);
  if (!found.ok()) return found.status();
  if (!found->has_value()) {
    return absl::NotFoundError(fmt::format("no join token \"{}\"", token_id));
  }
  JoinTokenRow row = **std::move(found);
  if (auto s = check(row, known); !s.ok()) return s;
  row.record.set_uses(row.record.uses() + 1);
  row.record.add_enrolled_hosts(enrolled);
  // The record keeps the latest names only (the enrollments tables have every one), so a
  // token of many uses is not rewritten whole and ever larger at each use.
  auto* names = row.record.mutable_enrolled_hosts();
  if (static_cast<size_t>(names->size()) > kMaxEnrolledHostsListed) {
    names->DeleteSubrange(0, names->size() - static_cast<int>(kMaxEnrolledHostsListed));
  }
  if (auto s = join_tokens_.update(row); !s.ok()) return s;
  return row;
}

absl::StatusOr<JoinTokenRow> SqlStore::redeemJoinToken(const EnrollmentRow& enrollment,
                                                       const RedeemCheck& check,
                                                       const AuditEntry& audit) {
  std::lock_guard lock(mu_);
  return inTransaction(db_.get(), [&]() -> absl::StatusOr<JoinTokenRow> {
    auto known = join_tokens_.hostKnown(enrollment.host_id);
    if (!known.ok()) return known.status();
    auto row = useJoinToken(enrollment.token_id, enrollment.host_id, *known, check);
    if (!row.ok()) return row.status();
    if (auto s = join_tokens_.addEnrollment(enrollment); !s.ok()) return s;
    if (auto s = audit_.append(audit); !s.ok()) return s.status();
    return row;
  });
}

absl::StatusOr<JoinTokenRow> SqlStore::redeemOperatorToken(const OperatorEnrollmentRow& enrollment,
                                                           const RedeemCheck& check,
                                                           const AuditEntry& audit) {
  std::lock_guard lock(mu_);
  return inTransaction(db_.get(), [&]() -> absl::StatusOr<JoinTokenRow> {
    auto known = join_tokens_.operatorKnown(enrollment.name);
    if (!known.ok()) return known.status();
    auto row = useJoinToken(enrollment.token_id, enrollment.name, *known, check);
    if (!row.ok()) return row.status();
    if (auto s = join_tokens_.addOperatorEnrollment(enrollment); !s.ok()) return s;
    if (auto s = tenants_.addBinding(enrollment.binding); !s.ok()) return s;
    if (auto s = audit_.append(audit); !s.ok()) return s.status();
    return row;
  });
}

absl::StatusOr<std::optional<EnrollmentRow>> SqlStore::findEnrollment(const std::string& host_id) {
  std::lock_guard lock(mu_);
  return join_tokens_.findEnrollment(host_id);
}

absl::StatusOr<std::optional<IntegrationRow>> SqlStore::findIntegration(const std::string& name) {
  std::lock_guard lock(mu_);
  return integrations_.find(name);
}

absl::StatusOr<std::vector<IntegrationRow>> SqlStore::listIntegrations() {
  std::lock_guard lock(mu_);
  return integrations_.list();
}

absl::StatusOr<StoreFigures> SqlStore::figures(int64_t audit_after_id) {
  std::lock_guard lock(mu_);
  StoreFigures out;
  // Counts of the whole audit table would scan it (0.2 s a million rows): the caller sums the
  // tallies instead. MAX(id) and the evidence counts are cheap (rowid, a small table).
  sql::Stmt count(db_.get(),
                  "SELECT (SELECT COALESCE(MAX(id), 0) FROM audit), (SELECT COUNT(*) FROM "
                  "evidence), (SELECT COALESCE(SUM(size), 0) FROM evidence)");
  if (auto s = count.prepared(); !s.ok()) return s;
  if (count.step() != sql::kRow) return sql::error(db_.get(), "store figures");
  out.newest_audit_id = count.i64(0);
  out.evidence_bundles = static_cast<uint64_t>(count.i64(1));
  out.evidence_bytes = static_cast<uint64_t>(count.i64(2));
  out.last_audit_id = std::max(
      audit_after_id, std::min(out.newest_audit_id, audit_after_id + StoreFigures::kAuditTallyIds));
  // "error: <text>" rows are grouped as one outcome: the text varies, the kind does not.
  sql::Stmt st(db_.get(),
               "SELECT action, CASE WHEN substr(outcome, 1, 7) = 'error: ' THEN 'error: ' "
               "ELSE outcome END, COUNT(*) FROM audit WHERE id > ?1 AND id <= ?2 "
               "GROUP BY 1, 2");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, audit_after_id);
  st.bind(2, out.last_audit_id);
  auto rows = st.collect(
      [](sql::Stmt& r) {
        return AuditTally{r.text(0), r.text(1), static_cast<uint64_t>(r.i64(2))};
      },
      "audit tally");
  if (!rows.ok()) return rows.status();
  out.audit = *std::move(rows);
  return out;
}

absl::Status SqlStore::probeWrite() {
  std::lock_guard lock(mu_);
  return rewriteSchemaVersion();
}

}  // namespace bulkhead::controller
