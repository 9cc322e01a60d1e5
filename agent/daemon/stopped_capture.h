// The seam between a capture-first kill (ProcessActions) and the capture engine (CaptureWorker
// in the daemon; a fake in tests).
//
// Why the agent does stop -> capture -> kill as one command: the processes stay stopped only
// for the capture's collection (not for round trips to the controller, which may be slow or
// cut off mid-incident), the kill never waits on the controller, and the order cannot be broken
// by a lost message. The upload comes after the kill: the processes need not stay stopped while
// bytes travel.
#pragma once

#include <chrono>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bulkhead/v1/agent.pb.h"

namespace bulkhead::agent {

class StoppedCapture {
 public:
  virtual ~StoppedCapture() = default;
  // Collects, packs and signs the full capture `state` of the host, with every process of
  // `pids` (held stopped by the caller) recorded in full; blocks at most about `limit`, then
  // cancels the capture (nothing is kept) and answers DeadlineExceeded. OK: the bundle is
  // spooled (kept until acknowledged, like any capture's) and waits for upload().
  virtual absl::Status collect(const v1::Command& command, const v1::CaptureState& state,
                               const std::vector<int>& pids, std::chrono::milliseconds limit) = 0;
  // Uploads the bundle collect() spooled for `state`; its result (with the evidence id). On
  // failure the bundle stays spooled and is retried like any capture's.
  virtual absl::StatusOr<v1::CaptureResult> upload(const v1::Command& command,
                                                   const v1::CaptureState& state) = 0;
};

}  // namespace bulkhead::agent
