// The controller's persistent state behind one interface: the host registry, the audit trail
// (hash-chained) and the desired containment state of every host. SqliteStore is the embedded
// implementation, PostgresStore the one several controllers share (both SqlStore: sql_store.h).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bulkhead/v1/containment.pb.h"
#include "bulkhead/v1/enrollment.pb.h"
#include "bulkhead/v1/incidents.pb.h"
#include "bulkhead/v1/signals.pb.h"
#include "bulkhead/v1/tenants.pb.h"
#include "common/identity.h"
#include "controller/core/registry.h"

namespace bulkhead::controller {

// One audit row. `id`, `prev_hash`, `hash` and `mac` are assigned by the store on append.
//
// Two chains run over the rows. `hash` is an unkeyed SHA-256 chain anyone can recompute (an
// exported file is checked with it); `mac` is HMAC-SHA256 under the controller's audit key
// (kept outside the data directory) over `hash`, so a row edited and every later hash
// recomputed cannot be given valid MACs without the key. Rows written before keyed chaining
// started (an older controller) have an empty `mac`; the store appends an "audit-keyed" marker
// row when it first opens such a table with a key, and from there on every row carries one.
struct AuditEntry {
  int64_t id = 0;
  int64_t at_unix_ms = 0;
  std::string operator_name;   // from the caller's certificate, or "unauthenticated"
  std::string action;          // "hosts", "status", "isolate", ...
  std::string target;
  std::string reason;
  std::string outcome;         // "ok", "accepted", "denied", "error: ..."
  std::string detail;
  // The tenant the row belongs to: the call's tenant, or kEveryTenant ("*") for a call across
  // tenants. Rows written before tenants read "default".
  std::string tenant = kDefaultTenant;
  // The incident the call was part of (`--incident ID`, of `tenant`); "" for none.
  std::string incident;
  std::string prev_hash;       // hex SHA-256 of the previous row ("" chain start: 64 zeros)
  std::string hash;            // hex SHA-256 over prev_hash and this row's fields
  std::string mac;             // hex HMAC-SHA256(audit key, hash); "" before keyed chaining
};

// The action of the row that marks where keyed chaining starts in a table migrated from
// unkeyed rows.
inline constexpr char kAuditKeyedAction[] = "audit-keyed";

// The last row of an earlier view of the chain (an export's head): the table must still hold
// row `last_id` with this hash, else rows were removed or replaced at the tail.
struct AuditCheckpoint {
  int64_t last_id = 0;
  std::string last_hash;
};

// Which audit rows a listing or an export holds: every row (`tenants` empty), or the rows of
// `tenants` and, of the rows of calls across tenants ("*"), every one with
// `every_cross_tenant_row`, else those of `cross_tenant_operator` ("": none).
struct AuditScope {
  std::vector<std::string> tenants;
  bool every_cross_tenant_row = false;
  std::string cross_tenant_operator;
};

// The hash-chain genesis value: the prev_hash of the first row.
inline constexpr char kAuditGenesisHash[] =
    "0000000000000000000000000000000000000000000000000000000000000000";

// The row's canonical bytes as its chain hashes them (ChainRecord, core/hash_chain.h): id,
// at_unix_ms, operator, action, target, reason, outcome, detail, and then the tenant unless it
// is "default" (so the rows written before tenants keep their hashes; the fields are
// length-prefixed, so a ninth field never reads as part of the eighth).
std::string auditRecord(const AuditEntry& e);

// SHA-256 (hex) over prev_hash and every field of the row, each length-prefixed so that no two
// different rows encode alike. Includes the id, so renumbering is detected too.
std::string auditRowHash(const AuditEntry& e);

// HMAC-SHA256 (hex) of a row's hash under the audit key.
std::string auditRowMac(std::string_view key, const AuditEntry& e);

struct AuditVerification {
  bool ok = true;
  int64_t rows = 0;            // rows checked
  int64_t first_bad_id = 0;    // 0 when ok
  std::string problem;         // what is wrong with the first bad row
  int64_t unkeyed_rows = 0;    // rows before keyed chaining started (hash chain only)
  bool keyed = false;          // MACs were checked (the store has an audit key)
  int64_t last_id = 0;         // the newest row checked, and its hash
  std::string last_hash;
};

// One capture an operator requested. `state`: "requested" until its bundle is
// stored ("received"); "failed" or "timeout" when the Capture call ended without one (a bundle
// arriving later is still accepted and moves it to "received").
struct CaptureRow {
  std::string capture_id;
  std::string host_id;
  std::string requested_by;
  std::string reason;
  int64_t requested_at_unix_ms = 0;
  std::string command_id;
  std::string state = "requested";
  // The incident it was taken for, and that incident's tenant ("" for none).
  std::string incident;
  std::string incident_tenant;
};

// One stored evidence bundle. `id` is the hex SHA-256 of the bundle (its content address);
// `path` is relative to the evidence directory ("ab/ab12....tar.gz").
struct EvidenceRow {
  std::string id;
  std::string capture_id;
  std::string host_id;
  std::string requested_by;
  std::string reason;
  int64_t requested_at_unix_ms = 0;
  int64_t collected_at_unix_ms = 0;    // agent clock (manifest finished_at_unix_ms)
  int64_t received_at_unix_ms = 0;
  uint64_t size = 0;
  std::string manifest_sha256;
  uint32_t files = 0;
  bool signature_ok = false;
  std::vector<std::string> collector_errors;
  std::string file_name;
  int64_t clock_offset_ms = 0;
  std::string path;
  // The tenant of the bundle's host. The store keeps none (a bundle belongs to its host's
  // tenant): EvidenceService fills it on the rows it answers with, else empty.
  std::string tenant;
};

// One event of a bundle's custody record. `id` (global, increasing), `prev_hash` and `hash`
// are assigned by the store on append.
struct CustodyEntry {
  int64_t id = 0;
  std::string evidence_id;
  int64_t at_unix_ms = 0;
  std::string actor;     // operator name, or "agent:<host>"
  std::string action;    // requested, collected, received, get, show, verify
  std::string detail;
  std::string prev_hash; // the previous event's hash; the evidence id for the first event
  std::string hash;
};

// SHA-256 (hex) over the length-prefixed fields, in this order: prev_hash, evidence_id,
// at_unix_ms (decimal), actor, action, detail; each encoded as "<byte length>:<bytes>;" (the
// audit rows' encoding), so no two different events encode alike. The store's row id is not
// included: the chain is per bundle and `prev_hash` already fixes the order.
std::string custodyEventHash(const CustodyEntry& e);
// The event's canonical bytes (ChainRecord): evidence_id, at_unix_ms, actor, action, detail.
std::string custodyRecord(const CustodyEntry& e);

struct CustodyVerification {
  bool ok = true;
  int64_t events = 0;          // events checked
  int64_t first_bad_id = 0;    // 0 when ok
  std::string problem;         // what is wrong with the first bad event
};

// One recorded signal (controller/service/signals.h): what `bulkhead signals` shows.
struct SignalRow {
  std::string idempotency_key;  // scoped by source and integration; unique per dedupe window
  bulkhead::v1::SignalRecord record;  // id, time, deliverer, signal, disposition, actions
};

// One signal to record with what is written with it (Store::addSignals).
struct SignalWrite {
  std::optional<SignalRow> row;  // none: only the audit rows (a duplicate's answer)
  std::vector<bulkhead::v1::Approval> approvals;  // PENDING: the signal's waiting actions
  std::vector<AuditEntry> audit;                  // the signal's row first, then its actions'
};

// One webhook integration (controller/service/integrations.h): its bearer token's SHA-256
// (hex; the token itself is never stored) and its record.
struct IntegrationRow {
  std::string token_sha256;
  bulkhead::v1::Integration record;  // name, format, config, creation, revocation
};

// One join token (controller/service/enrollment.h): its secret's SHA-256 (hex; the secret is
// never stored) and its record.
struct JoinTokenRow {
  std::string secret_sha256;
  bulkhead::v1::JoinToken record;
};

// JoinToken.enrolled_hosts keeps the latest this many host ids.
inline constexpr size_t kMaxEnrolledHostsListed = 100;

// A host enrolled with a join token: what the controller knows of it from the token.
struct EnrollmentRow {
  std::string host_id;
  std::string token_id;
  std::string serial;  // its certificate's, as PeerIdentity::serial
  std::map<std::string, std::string> labels;
  int64_t enrolled_unix_ms = 0;
  std::string tenant = "default";  // the token's
};

// An operator enrolled with an operator token: its name (the certificate's CN) and the role
// binding the token gave it.
struct OperatorEnrollmentRow {
  std::string name;
  std::string token_id;
  std::string serial;
  int64_t enrolled_unix_ms = 0;
  bulkhead::v1::RoleBinding binding;  // its tenant is the token's
};

// The labels an admin set on a host (`bulkhead label`): the controller's truth for it.
struct HostLabelsRow {
  std::string host_id;
  std::map<std::string, std::string> labels;
  std::string set_by;
  int64_t set_unix_ms = 0;
};

// Decides whether a join token may be redeemed now (Store::redeemJoinToken): OK, or the
// refusal. `host_known`: the host id is enrolled already or known to the registry.
using RedeemCheck = std::function<absl::Status(const JoinTokenRow& token, bool host_known)>;

// Audit rows of one action with one outcome, counted (Store::figures).
struct AuditTally {
  std::string action;   // as stored ("isolate", "isolate.result")
  std::string outcome;  // as stored, except that every "error: <text>" reads "error: "
  uint64_t rows = 0;
};

// What the metrics read of the store at a scrape (controller/metrics/).
struct StoreFigures {
  // The rows with ids in (asked id, last_audit_id], grouped: at most kAuditTallyIds ids a call,
  // so the store's lock is never held for long; call again while last_audit_id < newest.
  static constexpr int64_t kAuditTallyIds = 50'000;
  std::vector<AuditTally> audit;
  int64_t last_audit_id = 0;    // where the tally ended (the asked id when none is newer)
  int64_t newest_audit_id = 0;  // the table's newest row
  uint64_t evidence_bundles = 0;
  uint64_t evidence_bytes = 0;  // sum of the stored bundles' sizes
};

// One delivery of one event (an audit row) to one notification channel.
struct NotificationRow {
  int64_t id = 0;
  std::string channel;
  std::string event_id;  // unique per event: "audit-<row id>" or "test-<...>"
  std::string tenant;
  std::string kind;      // "isolate", "enforcement-failure", ... (notify/events.h)
  std::string severity;  // "info", "warning", "critical"
  std::string event;     // the event as JSON, what each channel's message is made from
  std::string state;     // "pending", "delivered", "failed"
  int attempts = 0;
  int64_t created_unix_ms = 0;
  int64_t next_attempt_unix_ms = 0;
  std::string last_error;  // the last failed attempt's error; "" none
};

struct NotificationCount {
  std::string channel;
  std::string state;
  int64_t count = 0;
};

class Store {
 public:
  virtual ~Store() = default;

  // Upserts the host rows, appends the tamper events and the audit rows that tell of them (and
  // of hosts going offline), in one transaction. Tamper events beyond kMaxTamperEvents per
  // host are pruned.
  virtual absl::Status saveHosts(const std::vector<HostInfo>& hosts,
                                 const std::vector<TamperRecord>& tamper,
                                 const std::vector<AuditEntry>& audit) = 0;
  // Every host with its last kMaxTamperEvents tamper events, ordered by host id. The
  // connection fields (connected_since) are not persisted and read back as 0.
  virtual absl::StatusOr<std::vector<HostInfo>> loadHosts() = 0;

  // Appends a row to the audit chain (durable when this returns) and returns it with id and
  // hashes filled in. Thread-safe; appends are serialised.
  virtual absl::StatusOr<AuditEntry> appendAudit(const AuditEntry& entry) = 0;
  // The newest `limit` rows (all if 0), oldest first.
  virtual absl::StatusOr<std::vector<AuditEntry>> listAudit(size_t limit) = 0;
  // One page, newest first in selection: the newest `limit` rows of `scope` whose id is below
  // `before_id` (0: no bound), returned oldest first.
  virtual absl::StatusOr<std::vector<AuditEntry>> listAuditPage(int64_t before_id, size_t limit,
                                                                const AuditScope& scope) = 0;
  absl::StatusOr<std::vector<AuditEntry>> listAuditPage(int64_t before_id, size_t limit) {
    return listAuditPage(before_id, limit, AuditScope{});
  }
  // Every row of `scope` with id >= first_id, oldest first.
  virtual absl::StatusOr<std::vector<AuditEntry>> listAuditFrom(int64_t first_id,
                                                                const AuditScope& scope) = 0;
  absl::StatusOr<std::vector<AuditEntry>> listAuditFrom(int64_t first_id) {
    return listAuditFrom(first_id, AuditScope{});
  }
  // Recomputes the whole chain; reports the first row whose hash, link or MAC does not match.
  // With an audit key, the table must end in a keyed row and no unkeyed row may follow a keyed
  // one. With `checkpoint`, row checkpoint->last_id must still be there with that hash.
  virtual absl::StatusOr<AuditVerification> verifyAudit(
      const std::optional<AuditCheckpoint>& checkpoint) = 0;
  absl::StatusOr<AuditVerification> verifyAudit() { return verifyAudit(std::nullopt); }

  // Replaces a host's desired state (durable when this returns).
  virtual absl::Status saveDesiredState(const std::string& host_id,
                                        const bulkhead::v1::DesiredState& state) = 0;
  virtual absl::StatusOr<std::map<std::string, bulkhead::v1::DesiredState>>
  loadDesiredStates() = 0;
  // The desired states of `hosts` that have one.
  virtual absl::StatusOr<std::map<std::string, bulkhead::v1::DesiredState>> loadDesiredStatesOf(
      const std::vector<std::string>& hosts) {
    auto all = loadDesiredStates();
    if (!all.ok()) return all.status();
    std::map<std::string, bulkhead::v1::DesiredState> out;
    for (const auto& h : hosts) {
      if (auto it = all->find(h); it != all->end()) out.insert(*it);
    }
    return out;
  }

  // Replaces the desired states of several hosts and appends the audit row recording the
  // change, in one transaction: either all of it is durable or none. Returns the audit row.
  // Each state's generation must be above the stored one: Aborted, nothing written, when
  // another controller on the database changed one of the hosts first (SqlStore).
  virtual absl::StatusOr<AuditEntry> commitChange(
      const std::map<std::string, bulkhead::v1::DesiredState>& states, const AuditEntry& entry) = 0;

  // --- evidence ---
  // Records a requested capture (durable when this returns). AlreadyExists if the id is taken.
  virtual absl::Status addCapture(const CaptureRow& capture) = 0;
  // NotFound "no capture ..." if unknown.
  virtual absl::StatusOr<CaptureRow> getCapture(const std::string& capture_id) = 0;
  virtual absl::Status setCaptureState(const std::string& capture_id, const std::string& state) = 0;
  // Adds the bundle's row and its first custody events (chained in the given order, the first
  // linked to the evidence id), and marks its capture "received", in one transaction. Returns
  // the events as stored. AlreadyExists if a bundle with this id is stored.
  virtual absl::StatusOr<std::vector<CustodyEntry>> addEvidence(
      const EvidenceRow& row, const std::vector<CustodyEntry>& events) = 0;
  // Appends one event to the bundle's custody chain (durable when this returns). NotFound if
  // the bundle is unknown.
  virtual absl::StatusOr<CustodyEntry> appendCustody(const CustodyEntry& event) = 0;
  // Every bundle (of `host_id`, or all when empty), oldest received first.
  virtual absl::StatusOr<std::vector<EvidenceRow>> listEvidence(const std::string& host_id) = 0;
  // By full id or a unique prefix of at least 8 hex digits (case-insensitive).
  // InvalidArgument for a malformed or ambiguous id, NotFound "no evidence with id ...".
  virtual absl::StatusOr<EvidenceRow> getEvidence(const std::string& id_or_prefix) = 0;
  // Total size of the bundles stored for `host_id`.
  virtual absl::StatusOr<uint64_t> evidenceBytesOfHost(const std::string& host_id) = 0;
  // The bundle stored for a capture, if any.
  virtual absl::StatusOr<std::optional<EvidenceRow>> evidenceForCapture(
      const std::string& capture_id) = 0;
  // The bundle's custody events, oldest first.
  virtual absl::StatusOr<std::vector<CustodyEntry>> listCustody(const std::string& evidence_id) = 0;
  // Recomputes the bundle's custody chain; reports the first event that does not match.
  virtual absl::StatusOr<CustodyVerification> verifyCustody(const std::string& evidence_id) = 0;

  // Signals, as a group commit: each write in order, all in one transaction (one sync to disk
  // for the lot), or on error none of them. A write with a row records it with its approvals
  // and audit rows, unless a signal with the same idempotency key was received at or after
  // `dedupe_since_unix_ms` (stored, or recorded earlier in this call): then that write writes
  // nothing and its result is the earlier signal. A write without a row writes its audit rows
  // only. The result has one entry per write; nullopt: written.
  virtual absl::StatusOr<std::vector<std::optional<SignalRow>>> addSignals(
      const std::vector<SignalWrite>& writes, int64_t dedupe_since_unix_ms) = 0;
  // The newest signal with `idempotency_key` received at or after `since_unix_ms`, if any.
  virtual absl::StatusOr<std::optional<SignalRow>> findSignal(const std::string& idempotency_key,
                                                              int64_t since_unix_ms) = 0;
  // Replaces the record of signal `row.record.signal_id()` (its actions' outcomes as they end).
  virtual absl::Status updateSignal(const SignalRow& row) = 0;
  // Signals of `tenants` (empty: of every tenant) received at or after `since_unix_ms`,
  // newest first, at most `limit`.
  virtual absl::StatusOr<std::vector<SignalRow>> listSignals(
      int64_t since_unix_ms, size_t limit, const std::vector<std::string>& tenants) = 0;
  absl::StatusOr<std::vector<SignalRow>> listSignals(int64_t since_unix_ms, size_t limit) {
    return listSignals(since_unix_ms, limit, {});
  }
  // The signal with this id; NotFound "no signal ..." if unknown.
  virtual absl::StatusOr<SignalRow> getSignal(const std::string& signal_id) = 0;

  // Approvals (automatic actions waiting for a responder): written with their signal
  // (addSignals).
  // NotFound "no approval ..." if unknown.
  virtual absl::StatusOr<bulkhead::v1::Approval> getApproval(const std::string& approval_id) = 0;
  // The approvals of `tenants` (empty: of every tenant): pending ones (oldest expiry first)
  // when `pending_only`, else the newest requested first; at most `limit`.
  virtual absl::StatusOr<std::vector<bulkhead::v1::Approval>> listApprovals(
      bool pending_only, size_t limit, const std::vector<std::string>& tenants) = 0;
  absl::StatusOr<std::vector<bulkhead::v1::Approval>> listApprovals(bool pending_only,
                                                                    size_t limit) {
    return listApprovals(pending_only, limit, {});
  }
  // Pending approvals whose expiry is at or before `now_unix_ms`, oldest expiry first, at most
  // `limit`.
  virtual absl::StatusOr<std::vector<bulkhead::v1::Approval>> listExpiredApprovals(
      int64_t now_unix_ms, size_t limit) = 0;
  // Compare-and-set: replaces approval `decided.approval_id()` by `decided` (a decided state)
  // with the decision's audit row, in one transaction, only while the stored one is PENDING.
  // FailedPrecondition naming the state and decider when it is not (someone decided first:
  // nothing written); NotFound if unknown.
  virtual absl::Status decideApproval(const bulkhead::v1::Approval& decided,
                                      const AuditEntry& audit) = 0;
  // Replaces the record of a decided approval (the outcome of its action, as it ends); the
  // state must stay what it is (FailedPrecondition otherwise).
  virtual absl::Status updateApproval(const bulkhead::v1::Approval& approval) = 0;

  // Webhook integrations. Adds `row` with its audit row, in one transaction; AlreadyExists
  // when the name (or the token's hash) is taken: then nothing is written.
  virtual absl::Status addIntegration(const IntegrationRow& row, const AuditEntry& audit) = 0;
  // Replaces the record of integration `row.record.name()` (its revocation) with its audit
  // row, in one transaction; NotFound when there is no such integration.
  virtual absl::Status updateIntegration(const IntegrationRow& row, const AuditEntry& audit) = 0;
  // By name, revoked or not.
  virtual absl::StatusOr<std::optional<IntegrationRow>> findIntegration(
      const std::string& name) = 0;
  // Every integration, revoked ones too, ordered by name.
  virtual absl::StatusOr<std::vector<IntegrationRow>> listIntegrations() = 0;

  // Join tokens. Adds `row` with its audit row, in one transaction; AlreadyExists when the id
  // is taken.
  virtual absl::Status addJoinToken(const JoinTokenRow& row, const AuditEntry& audit) = 0;
  // Replaces the record of token `row.record.token_id()` (its revocation) with its audit row,
  // in one transaction; NotFound when there is no such token.
  virtual absl::Status updateJoinToken(const JoinTokenRow& row, const AuditEntry& audit) = 0;
  virtual absl::StatusOr<std::optional<JoinTokenRow>> findJoinToken(
      const std::string& token_id) = 0;
  // Every token, revoked and used-up ones too, newest first.
  virtual absl::StatusOr<std::vector<JoinTokenRow>> listJoinTokens() = 0;
  // In one transaction: reads token `enrollment.token_id` (NotFound if unknown) and whether
  // `enrollment.host_id` is known, asks `check`, and only if it says OK counts one use of the
  // token, adds the host to its enrolled hosts, records `enrollment` and appends `audit`.
  // Answers the token as updated; `check`'s refusal (nothing written) otherwise.
  virtual absl::StatusOr<JoinTokenRow> redeemJoinToken(const EnrollmentRow& enrollment,
                                                       const RedeemCheck& check,
                                                       const AuditEntry& audit) = 0;
  // As redeemJoinToken, for an operator token: `check` is told the name is known when an
  // operator enrolled with it or a role binding names it; on OK, records `enrollment` and adds
  // its binding, in the same transaction.
  virtual absl::StatusOr<JoinTokenRow> redeemOperatorToken(const OperatorEnrollmentRow& enrollment,
                                                           const RedeemCheck& check,
                                                           const AuditEntry& audit) = 0;
  // The enrollment of `host_id`, if it enrolled with a token.
  virtual absl::StatusOr<std::optional<EnrollmentRow>> findEnrollment(
      const std::string& host_id) = 0;

  // Tenants. Adds `tenant` with its audit row, in one transaction; AlreadyExists when the name
  // is taken (nothing written).
  virtual absl::Status addTenant(const bulkhead::v1::Tenant& tenant, const AuditEntry& audit) = 0;
  // Every tenant by name; "default" is always there.
  virtual absl::StatusOr<std::vector<bulkhead::v1::Tenant>> listTenants() = 0;
  // Role bindings. Adds `binding` with its audit row, in one transaction; AlreadyExists when the
  // operator has one in that tenant with the same host selector (nothing written).
  virtual absl::Status addRoleBinding(const bulkhead::v1::RoleBinding& binding,
                                      const AuditEntry& audit) = 0;
  // Removes binding `binding_id` with its audit row, in one transaction, answering it as it
  // was; NotFound when there is no such binding.
  virtual absl::StatusOr<bulkhead::v1::RoleBinding> removeRoleBinding(const std::string& binding_id,
                                                                      const AuditEntry& audit) = 0;
  // The bindings of `operator_name` (empty: of every operator), by tenant, operator and id.
  virtual absl::StatusOr<std::vector<bulkhead::v1::RoleBinding>> listRoleBindings(
      const std::string& operator_name) = 0;

  // Replaces the labels an admin set on `row.host_id` with `row`, with its audit row, in one
  // transaction.
  virtual absl::Status setHostLabels(const HostLabelsRow& row, const AuditEntry& audit) = 0;
  // The labels an admin set on `host_id`, if any.
  virtual absl::StatusOr<std::optional<HostLabelsRow>> findHostLabels(
      const std::string& host_id) = 0;

  // Incidents, by (tenant, id). Adds `incident` with its audit row, in one transaction;
  // AlreadyExists when the tenant has that id (nothing written).
  virtual absl::Status addIncident(const bulkhead::v1::Incident& incident,
                                   const AuditEntry& audit) = 0;
  // Replaces the record of an existing incident, with its audit row, in one transaction;
  // NotFound (unknownIncident) when there is none.
  virtual absl::Status updateIncident(const bulkhead::v1::Incident& incident,
                                      const AuditEntry& audit) = 0;
  // NotFound (unknownIncident) when `tenant` has no incident `id`.
  virtual absl::StatusOr<bulkhead::v1::Incident> getIncident(const std::string& tenant,
                                                             const std::string& id) = 0;
  // The incidents of `tenants`, newest opened first.
  virtual absl::StatusOr<std::vector<bulkhead::v1::Incident>> listIncidents(
      const std::vector<std::string>& tenants) = 0;
  // The audit rows of incident `id` of `tenant`, oldest first.
  virtual absl::StatusOr<std::vector<AuditEntry>> listIncidentAudit(const std::string& tenant,
                                                                    const std::string& id) = 0;
  // The bundles of the captures taken for incident `id` of `tenant`, oldest received first.
  virtual absl::StatusOr<std::vector<EvidenceRow>> listIncidentEvidence(const std::string& tenant,
                                                                        const std::string& id) = 0;

  // Notifications (controller/notify/): the rows after the audit cursor are routed to channels
  // and queued; a queued delivery is tried until it is delivered or finally fails.
  // At most `limit` audit rows with id > `after_id`, oldest first.
  virtual absl::StatusOr<std::vector<AuditEntry>> listAuditAfter(int64_t after_id,
                                                                 size_t limit) = 0;
  // The id of the last audit row routed; nullopt before the first routing.
  virtual absl::StatusOr<std::optional<int64_t>> notifyCursor() = 0;
  // Queues `rows` (their id, state and attempts are assigned: pending, 0) and moves the cursor
  // to `cursor`, in one transaction. A row whose (channel, event_id) is already queued is
  // skipped: each event reaches each channel once.
  virtual absl::Status queueNotifications(const std::vector<NotificationRow>& rows,
                                          int64_t cursor) = 0;
  // The pending deliveries due at `now_unix_ms` (next_attempt_unix_ms <= now), oldest first,
  // at most `limit`.
  virtual absl::StatusOr<std::vector<NotificationRow>> dueNotifications(int64_t now_unix_ms,
                                                                        size_t limit) = 0;
  // Replaces the state, attempts, next attempt and last error of delivery `row.id`; with
  // `audit`, appends that row in the same transaction (a delivery's end is audited).
  virtual absl::Status updateNotification(const NotificationRow& row,
                                          const std::optional<AuditEntry>& audit) = 0;
  // How many deliveries are in each state, by channel.
  virtual absl::StatusOr<std::vector<NotificationCount>> countNotifications() = 0;

  // The counts the metrics expose; the audit rows after `audit_after_id` tallied (a range of
  // the primary key), so a caller that keeps the running sums reads each row once.
  virtual absl::StatusOr<StoreFigures> figures(int64_t audit_after_id) = 0;
  // Proves the store takes a durable write now: a write transaction that rewrites the schema
  // version with its own value, committed (and synced) like every change. Changes nothing.
  virtual absl::Status probeWrite() = 0;
};

// NOT_FOUND "unknown incident \"ID\"": every store's words for an incident it lacks.
absl::Status unknownIncident(const std::string& id);

}  // namespace bulkhead::controller
