// Signals in, playbooks decide, guardrails cap, everything audited (controller/playbook/).
//
// SignalService is the SignalIntake every front door hands detections to. For each signal, on
// its own "bh-signals" thread (so the rate caps and the duplicate check see one order):
//  1. checks its fields (validateSignal) and, for an agent's report, takes the reporting host
//     from the certificate;
//  2. deduplicates it: the same idempotency key (scoped by source and integration) within the
//     dedupe window is answered DUPLICATE with the first signal's id, and does nothing;
//  3. lets the PlaybookEngine decide under the guardrails;
//  4. records the signal, its decision and its audit rows (one for the signal, one per
//     suppressed, simulated or waiting action, one when a rate cap starts suppressing) in one
//     transaction, and only then answers and starts the actions. Nothing is answered as
//     recorded that was not.
// The actions run through the service layer's own operations (SignalActuator), with the
// playbook as the caller ("playbook:NAME") and the signal's id in the reason, so their own
// audit rows name both. Their ends are written back into the signal's record.
#pragma once

#include <chrono>
#include <cstdint>
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
};

class SignalService final : public SignalIntake {
 public:
  SignalService(const Clock& clock, Store& store, HostDirectory& hosts, SignalActuator& actuator,
                SignalServiceOptions options);
  ~SignalService() override;  // shutdown()

  // Loads POLICY_DIR/playbooks/*.yaml and POLICY_DIR/guardrails/automation.yaml (both
  // optional); on any error, one line per problem, the set in force stays.
  absl::Status reload();
  // Playbooks and guardrails in force (counts, for the log).
  size_t playbookCount() const;

  void submit(SignalDelivery from, bulkhead::v1::Signal signal, SignalDone done) override;

  // `bulkhead signal` and `bulkhead signals`: `caller` must be an operator (responder to
  // submit, viewer to list); audited like every operator call.
  void submitAsOperator(const Caller& caller, bulkhead::v1::Signal signal, SignalDone done);
  absl::StatusOr<std::vector<bulkhead::v1::SignalRecord>> list(const Caller& caller,
                                                               int64_t since_unix_ms,
                                                               uint32_t limit);

  // What `signal` would do now, changing nothing (no record, no action, no rate cap
  // counted); audited as signal-preview.
  absl::StatusOr<SignalOutcome> preview(const Caller& caller, bulkhead::v1::Signal signal,
                                        const std::string& reporting_host);

  // Refuses new signals (UNAVAILABLE) and stops the thread. Idempotent.
  void shutdown();

 private:
  void process(const SignalDelivery& from, const bulkhead::v1::Signal& signal, SignalDone& done);
  void actionEnded(const std::string& signal_id, size_t index, const absl::Status& status,
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
  mutable std::mutex mu_;
  PlaybookEngine engine_;  // GUARDED_BY(mu_); used on the signals thread and by preview
  uint64_t sequence_ = 0;  // GUARDED_BY(mu_)
  Scheduler worker_;       // "bh-signals"; last, so it stops before the members it uses go
};

}  // namespace bulkhead::controller
