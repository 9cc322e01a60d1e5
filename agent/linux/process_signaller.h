// Signals processes through handles that keep naming one process (pidfds), so a pid reused
// after the process exited is never hit. PidfdSignaller (process_killer.h) is the real one;
// unit tests pass a fake.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace bulkhead::agent {

// Implementations must be callable from any one thread at a time.
class ProcessSignaller {
 public:
  virtual ~ProcessSignaller() = default;
  // A handle on the process that holds `pid` now: NotFound when there is none (the message
  // says "already exited"), another error when it cannot be pinned. The caller checks that
  // the pinned process is the one it chose, and releases every handle it got.
  virtual absl::StatusOr<int> pin(int pid) = 0;
  virtual void release(int handle) = 0;
  // Sends `sig`. OK also when the process has already exited.
  virtual absl::Status signal(int handle, int sig) = 0;
  // True once the process has exited.
  virtual bool exited(int handle) = 0;
};

}  // namespace bulkhead::agent
