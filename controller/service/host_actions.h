// One-shot actions on one host's agent (list sessions, kill sessions, kill processes): sends a
// Command with a deadline and hands the agent's CommandResult (or a timeout) to a callback.
//
// Threading: results arrive on gRPC threads (through the Fleet's command listener) and are
// handed to `done` on this object's own thread, as are timeouts, so `done` may block briefly
// (an audit write) and never runs under the Fleet's lock.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "bulkhead/v1/agent.pb.h"
#include "bulkhead/v1/operator.pb.h"
#include "controller/core/clock.h"
#include "controller/service/fleet_control.h"
#include "common/scheduler.h"

namespace bulkhead::controller {

struct HostActionsOptions {
  std::chrono::milliseconds default_wait{10000};
  std::chrono::milliseconds max_wait{120000};
};

class HostActions {
 public:
  // What became of a command.
  struct Answer {
    enum class Kind { kDone, kOffline, kTimeout, kShutdown } kind = Kind::kDone;
    bulkhead::v1::CommandResult result;   // kDone
    std::string error;                    // the others
  };
  using Done = std::function<void(const Answer&)>;

  HostActions(const Clock& clock, FleetControl& fleet, HostActionsOptions options);
  ~HostActions();   // shutdown()

  HostActions(const HostActions&) = delete;
  HostActions& operator=(const HostActions&) = delete;

  // Sets the command's id and deadline (now + wait_ms, or the default; capped) and sends it.
  // `done` runs exactly once, on this object's thread.
  void run(const std::string& host, bulkhead::v1::Command command, uint32_t wait_ms, Done done);
  // Like run() with exactly `wait` (no default, no cap), for long commands (a capture). A
  // command that already has an id keeps it (the caller routes its progress by that id; it
  // must be unique).
  void runFor(const std::string& host, bulkhead::v1::Command command,
              std::chrono::milliseconds wait, Done done);
  // Unhooks from the Fleet, stops the thread and answers every waiting command kShutdown (on
  // the calling thread). Later run() calls are answered kShutdown at once. Idempotent.
  void shutdown();

 private:
  void onResult(const std::string& host, const bulkhead::v1::CommandResult& result);
  void answer(const std::string& id, Answer a);

  const Clock& clock_;
  FleetControl& fleet_;
  const HostActionsOptions options_;
  std::mutex mu_;
  uint64_t next_id_ = 1;                                                    // GUARDED_BY(mu_)
  bool stopped_ = false;                                                    // GUARDED_BY(mu_)
  std::map<std::string, std::pair<std::string, Done>> waiting_;             // GUARDED_BY(mu_)
  Scheduler thread_;   // last: stopped first on destruction
};

}  // namespace bulkhead::controller
