// Runs a Reconciler on one thread of its own: desired states from the controller, dry-run
// previews, tamper re-checks and TTL expiry are queued here and handled in order, so the
// nft context is only ever driven from this thread and no gRPC or netlink thread blocks.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "agent/daemon/reconciler.h"

namespace bulkhead::agent {

// Receives the worker's results, on the worker thread. Must not block for long.
class ReconcileSink {
 public:
  virtual ~ReconcileSink() = default;
  virtual void onReport(const bulkhead::v1::StateReport& report, const EnforcedState& state) = 0;
  virtual void onTamper(const bulkhead::v1::TamperEvent& event, const EnforcedState& state) = 0;
  virtual void onCommandResult(const bulkhead::v1::CommandResult& result) = 0;
};

class ReconcileWorker {
 public:
  // `reconciler` and `sink` must outlive the worker. `backstop` > 0: re-check the table that
  // often even without events.
  ReconcileWorker(Reconciler* reconciler, ReconcileSink* sink, std::chrono::milliseconds backstop);
  // Stops and joins; queued work is dropped.
  ~ReconcileWorker();

  ReconcileWorker(const ReconcileWorker&) = delete;
  ReconcileWorker& operator=(const ReconcileWorker&) = delete;

  // Runs `fn` on the worker thread and waits for it (start-up steps such as restore()).
  void runSync(const std::function<void(Reconciler&)>& fn);
  // Queues `fn` to run on the worker thread (one-shot commands such as kill-connections),
  // in order with the rest; does not wait.
  void runAsync(std::function<void(Reconciler&)> fn);

  // Queues the newest desired state; an older one still queued is superseded.
  void desiredState(const bulkhead::v1::DesiredState& state);
  void preview(const std::string& command_id, const bulkhead::v1::DesiredState& state);
  // Coalesced: several events before the worker gets to them make one re-check.
  void recheck(const std::string& what);
  void pinnedController(std::vector<bulkhead::v1::Endpoint> endpoints);

 private:
  void run();

  Reconciler* reconciler_;
  ReconcileSink* sink_;
  const std::chrono::milliseconds backstop_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;                                          // GUARDED_BY(mu_)
  std::optional<bulkhead::v1::DesiredState> desired_;          // GUARDED_BY(mu_)
  std::deque<std::pair<std::string, bulkhead::v1::DesiredState>> previews_;  // GUARDED_BY(mu_)
  std::optional<std::string> recheck_;                         // GUARDED_BY(mu_)
  std::optional<std::vector<bulkhead::v1::Endpoint>> pinned_;  // GUARDED_BY(mu_)
  std::deque<std::function<void()>> sync_;                     // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace bulkhead::agent
