// PLACEHOLDER (lead): replaced by the engineer who owns the capture engine.
#include "agent/capture/capture.h"

namespace bulkhead::agent {

absl::StatusOr<CaptureOutcome> runCapture(const CaptureOptions&,
                                          std::vector<std::unique_ptr<collect::Collector>>,
                                          const evidence::Signer&, const CaptureProgress&) {
  return absl::UnimplementedError("capture engine not built yet");
}

}  // namespace bulkhead::agent
