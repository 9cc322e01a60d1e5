// Evidence capture as a building block of other commands (`isolate --capture-first`), and
// the typed evidence summary read back as the document its text rendering takes.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "bulkhead/v1/operator.pb.h"
#include "cli/operator_client.h"

namespace bulkhead::cli {

struct CaptureSpec {
  std::string host;
  std::string reason;
  uint32_t wait_ms = 300'000;
  uint32_t collector_time_limit_ms = 0;  // 0 = collector defaults
  uint64_t max_binary_bytes = 0;         // 0 = agent default
};

struct CaptureCallResult {
  int code = kOk;             // kOk, kFailed or kUsage (see `bulkhead capture`)
  v1::EvidenceRecord record;  // when code == kOk
  std::string error;          // one line naming the host and the reason, without "\n"
};

// One progress event as a line: "capture h1: collecting 3/10 processes ok 120 ms", "capture h1:
// packing 1.5/8.0 MiB". An older agent's progress has no stage: "capture h1: 3/10 ...".
std::string captureProgressLine(const std::string& host, const v1::CommandProgress& p);

// Runs one Capture call. Every progress event is rendered as one line ("capture h1:
// collecting 3/10 processes ok 120 ms") and passed to `progress` (on the calling thread).
CaptureCallResult captureHost(OperatorClient& client, const CaptureSpec& spec,
                              const std::function<void(const std::string&)>& progress);

// The document evidence::renderSummary() reads (evidence/README.md, "Summary") from the typed
// summary: an unset optional field is null, a finding's comm / exe appear only when listed, a
// connection's note and a login's current only when set, `omitted` only naming lists cut
// short. The inverse of the controller's conversion, so `evidence show` prints what it printed
// when the summary came as JSON.
nlohmann::json summaryDocument(const v1::EvidenceSummary& summary);

}  // namespace bulkhead::cli
