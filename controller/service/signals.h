// Signals in, playbooks decide, guardrails cap, everything audited (controller/playbook/).
//
// SignalService is the SignalIntake every front door hands detections to. Signals queue, and
// its own "bh-signals" thread takes them in batches of up to kMaxBatch, in the order they came
// (so the rate caps and the duplicate check see one order). For each signal:
//  1. checks its fields (validateSignal) and, for an agent's report, takes the reporting host
//     from the certificate;
//  2. deduplicates it: the same idempotency key (scoped by source and integration) within the
//     dedupe window is answered DUPLICATE with the first signal's id, and does nothing;
//  3. lets the PlaybookEngine decide under the guardrails;
//  4. records the signal, its decision, its approvals and its audit rows (one for the signal,
//     one per suppressed, simulated or waiting action, one when a rate cap starts suppressing)
//     in one transaction with the rest of its batch (a group commit: one sync to disk per
//     batch, not per signal), and only then starts the actions and answers. Nothing is answered
//     as recorded that was not. When a batch's commit fails, its signals are taken again one
//     by one, so one bad signal or one failed commit costs no other signal its record.
// The actions run through the service layer's own operations (SignalActuator), with the
// playbook as the caller ("playbook:NAME") and the signal's id in the reason, so their own
// audit rows name both. Their ends are written back into the signal's record.
//
// Tenants: every signal belongs to one tenant: its agent's host's, its integration's, or the
// operator's call's (the CrowdSec poller's are tenant default's). Only that tenant's playbooks
// decide it, under its guardrails and rate caps, seeing only its hosts; a playbook acts as a
// responder of that tenant alone, so "fleet" is the tenant's fleet. Idempotency keys, listings,
// approvals and audit rows are per tenant; another tenant's approval reads as unknown.
//
// Approvals: an action a guardrail holds back (Verdict::kNeedsApproval) gets an approval row
// (store, with its audit row) that expires after `approval_expiry`. approve() plans the signal
// again under the guardrails in force (a protected address stays protected) and starts the
// action as the approver; reject() and expiry run nothing. Every decision is a compare-and-set
// from PENDING with its audit row, so of two racing decisions one wins. Approvals live in the
// store only: after a restart the pending ones are still listed, approved and expired.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "bulkhead/v1/signals.pb.h"
#include "common/scheduler.h"
#include "controller/core/clock.h"
#include "controller/playbook/engine.h"
#include "controller/service/authorization.h"
#include "controller/service/host_directory.h"
#include "controller/service/signal_intake.h"
#include "controller/store/store.h"

namespace bulkhead::controller {

// Carries out what playbooks decided. ServiceActuator (signal_actuator.h) does it with
// Containment, HostOperations and EvidenceService; tests use a fake.
class SignalActuator {
 public:
  virtual ~SignalActuator() = default;
  // Starts `action` as `caller` with `reason`; `done` receives how it ended, exactly once, on
  // any thread: OK with a one-line summary, or the error.
  virtual void start(const Caller& caller, const PlannedAction& action, const std::string& reason,
                     std::function<void(const absl::Status&, const std::string& summary)> done) = 0;
};

struct SignalServiceOptions {
  std::string policy_dir;  // playbooks/ and guardrails/ below it; empty: no playbooks
  // The same idempotency key within this window acts once.
  std::chrono::milliseconds dedupe_window{std::chrono::hours(24)};
  // The controller's own addresses and protected CIDRs (never blocked).
  BlockGuardrails blocks;
  // A pending approval nobody decided within this time expires (as rejected).
  std::chrono::milliseconds approval_expiry{std::chrono::hours(1)};
  // How often the signals thread looks for expired approvals; 0: never (tests call
  // expireApprovals() themselves).
  std::chrono::milliseconds approval_check_period{std::chrono::seconds(1)};
};

class SignalService final : public SignalIntake {
 public:
  SignalService(const Clock& clock, Store& store, HostDirectory& hosts, SignalActuator& actuator,
                SignalServiceOptions options);
  ~SignalService() override;  // shutdown()

  // Loads every tenant's playbooks and guardrails (loadTenantAutomation: POLICY_DIR/playbooks,
  // guardrails/automation.yaml, tenants/NAME/...; all optional); on any error, one line per
  // problem, the sets in force stay.
  absl::Status reload();
  // Playbooks in force, every tenant's (for the log).
  size_t playbookCount() const;
  // The first of `tenants` whose guardrails say `require_incident: true` (a tenant the policy
  // directory does not name has the install's guardrails); "" when none does.
  std::string tenantRequiringIncident(const std::vector<std::string>& tenants) const;

  void submit(SignalDelivery from, bulkhead::v1::Signal signal, SignalDone done) override;

  // `bulkhead signal` and `bulkhead signals`: `caller` must be an operator (responder to
  // submit, in one tenant, which the signal belongs to; viewer to list, the signals of the
  // call's tenants where it holds a role on every host); audited like every operator call.
  void submitAsOperator(const Caller& caller, bulkhead::v1::Signal signal, SignalDone done);
  absl::StatusOr<std::vector<bulkhead::v1::SignalRecord>> list(const Caller& caller,
                                                               int64_t since_unix_ms,
                                                               uint32_t limit);

  // What `signal` would do now, changing nothing (no record, no action, no rate cap
  // counted); audited as signal-preview.
  absl::StatusOr<SignalOutcome> preview(const Caller& caller, bulkhead::v1::Signal signal,
                                        const std::string& reporting_host);

  // `bulkhead approvals`: pending ones (oldest expiry first), or with `all` the newest in any
  // state. Viewer; audited as "approvals".
  absl::StatusOr<std::vector<bulkhead::v1::Approval>> listApprovals(const Caller& caller, bool all,
                                                                    uint32_t limit);
  // Decides a pending approval; `reason` is required. The caller must be an approver of the
  // approval's tenant on every host its action touches (on every host of the tenant for a
  // tenant-wide one) and, when a person requested the action (delivered the signal), another
  // person (PERMISSION_DENIED naming why); another tenant's approval is NOT_FOUND, as unknown.
  // FAILED_PRECONDITION when it is no longer pending or has expired, or, for an approval, when the
  // guardrails in force now stop the action or the playbooks no longer plan it (then it stays
  // pending). Approve starts the action; the answer says "started" and the action's end is written
  // into the approval and the signal's record. Audited as "approve" / "reject" (the success row in
  // the same transaction as the decision).
  absl::StatusOr<bulkhead::v1::Approval> approve(const Caller& caller,
                                                 const std::string& approval_id,
                                                 const std::string& reason);
  absl::StatusOr<bulkhead::v1::Approval> reject(const Caller& caller,
                                                const std::string& approval_id,
                                                const std::string& reason);
  // Marks the pending approvals past their expiry EXPIRED, each with an "approval-expired"
  // audit row; at most kMaxExpiriesPerPass per call (the rest on the next). Returns how many.
  // Runs on the signals thread every approval_check_period; thread-safe.
  size_t expireApprovals();
  static constexpr size_t kMaxExpiriesPerPass = 100;

  // Refuses new signals (UNAVAILABLE), records what is queued, stops the thread. Idempotent.
  void shutdown();

  // The most signals one commit records.
  static constexpr size_t kMaxBatch = 512;

 private:
  struct Queued {
    SignalDelivery from;
    bulkhead::v1::Signal signal;
    SignalDone done;
  };
  // Takes up to kMaxBatch queued signals and processes them; posts itself again while more
  // wait (so action ends and expiries run between batches). On the signals thread.
  void drain();
  // Decides, records (one commit) and answers `batch`; on a failed commit, each alone.
  void processBatch(std::vector<Queued>& batch);
  // The incident the actions of `playbook` (`config`, its `incident:`) take for a signal of
  // `tenant`: the named one while it is open; or the newest open one the playbook opened,
  // else a new one, opened now with its audit row ("incident-open" by "playbook:NAME").
  // "" when none applies, with `why` (for the signal's audit row and the log).
  std::string incidentFor(const std::string& tenant, const std::string& playbook,
                          const PlaybookIncident& config, const std::string& signal_id,
                          int64_t now_ms, std::string& why);
  void actionEnded(const std::string& signal_id, size_t index, const absl::Status& status,
                   const std::string& summary);
  // Shared by approve() and reject(): checks, records the decision (compare-and-set).
  absl::StatusOr<bulkhead::v1::Approval> decide(const Caller& caller,
                                                const std::string& approval_id,
                                                const std::string& reason, bool approve);
  // Writes `outcome` (and its `state`) as the outcome of action `index` of signal `signal_id`
  // (on the signals thread, so a record in flight is updated too).
  void setSignalOutcome(const std::string& signal_id, uint32_t index,
                        bulkhead::v1::SignalActionState state, const std::string& outcome);
  void approvedActionEnded(const std::string& approval_id, const absl::Status& status,
                           const std::string& summary);

  const Clock& clock_;
  Store& store_;
  HostDirectory& hosts_;
  SignalActuator& actuator_;
  const SignalServiceOptions options_;
  // Signals whose started actions have not all ended: their record, updated as each ends.
  // Used on the worker thread only.
  struct InFlight {
    SignalRow row;
    int running = 0;
  };
  std::map<std::string, InFlight> in_flight_;
  std::mutex queue_mu_;
  std::deque<Queued> queue_;   // GUARDED_BY(queue_mu_); oldest first
  bool drain_posted_ = false;  // GUARDED_BY(queue_mu_)
  bool closed_ = false;        // GUARDED_BY(queue_mu_); shutdown() began
  // The engine of `tenant`'s playbooks; null for a tenant that runs none. Needs mu_.
  PlaybookEngine* engineFor(const std::string& tenant);

  mutable std::mutex mu_;
  // Per tenant (controller/playbook/tenant_automation.h): "default" always; used on the
  // signals thread and by preview and approve.
  std::map<std::string, PlaybookEngine> engines_;  // GUARDED_BY(mu_)
  uint64_t sequence_ = 0;  // GUARDED_BY(mu_)
  Scheduler worker_;       // "bh-signals"; last, so it stops before the members it uses go
};

}  // namespace bulkhead::controller
