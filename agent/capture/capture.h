// The capture engine: runs collectors, each on its own thread with a time limit and a
// size cap, and packs what they wrote into one signed bundle (evidence/bundle.h). A collector
// that hangs is cut at its limit (its thread is abandoned, its output up to then kept and
// marked "timeout") and the capture completes without it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/collect/collector.h"
#include "bulkhead/v1/agent.pb.h"
#include "evidence/signing.h"

namespace bulkhead::agent {

struct CaptureOptions {
  collect::CollectContext context;
  // 0 = each collector's timeLimit().
  std::chrono::milliseconds collector_time_limit{0};
  // All recovered binaries together (ArtifactSink::copy beyond this fails with a warning).
  uint64_t max_binaries_total = 1024 * collect::kMiB;
  // Bundle written to spool_dir / (capture_id + ".tar.gz"); the collectors' work files go to
  // spool_dir / (capture_id + ".work") and are removed when the bundle is finished.
  std::filesystem::path spool_dir;
  // Optional: set to true to cancel. Running collectors are cut, none is started any more, no
  // bundle is written and runCapture returns Cancelled.
  std::shared_ptr<const std::atomic<bool>> cancel;
};

// Its implicit moves are its members' (paths, strings, nlohmann::json), all noexcept; clang-tidy
// 14 reports nlohmann::json's move as throwing.
// NOLINTNEXTLINE(bugprone-exception-escape)
struct CaptureOutcome {
  std::filesystem::path bundle;
  std::string file_name;  // bundle.filename()
  std::string sha256;     // hex, of the .tar.gz
  uint64_t size = 0;
  std::string manifest_sha256;
  uint32_t files = 0;
  int64_t duration_ms = 0;
  nlohmann::json collectors;  // the collection log's lines, as an array
};

// stage: CAPTURE_STAGE_COLLECTING (after each collector: done/total = collectors
// finished/all; detail "processes ok 120 ms"), CAPTURE_STAGE_PACKING (done/total = bytes).
// Called from the engine's threads, never concurrently.
using CaptureProgress = std::function<void(v1::CaptureStage stage, const std::string& detail,
                                           uint64_t done, uint64_t total)>;

// Fails only if the bundle cannot be written or signed; collector failures are in the log.
absl::StatusOr<CaptureOutcome> runCapture(
    const CaptureOptions& options, std::vector<std::unique_ptr<collect::Collector>> collectors,
    const evidence::Signer& signer, const CaptureProgress& progress);

}  // namespace bulkhead::agent
