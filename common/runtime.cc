#include "common/runtime.h"

#include "absl/synchronization/mutex.h"

namespace bulkhead {

void tuneProcessRuntime() { absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore); }

}  // namespace bulkhead
