// Evidence captures on the agent: the capture command is run on a thread of its own (a
// Scheduler: one capture at a time, others queued in order with the uploads; never on the
// reconcile worker or a gRPC thread), the
// bundle is spooled, uploaded, and deleted only once the controller has acknowledged it.
//
// Spool directory contract: a bundle "<capture_id>.tar.gz" is accepted once its sidecar
// "<capture_id>.json" exists (written right after the capture, before the first upload). Every
// bundle with a sidecar is uploaded until acknowledged: right after the capture, on every
// (re)connect, 60 s after the last retry, and at start-up, oldest first. A bundle without a sidecar is the
// remnant of a capture that never finished and is left alone.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/capture/capture.h"
#include "agent/collect/collector.h"
#include "agent/daemon/stopped_capture.h"
#include "bulkhead/v1/agent.pb.h"
#include "common/scheduler.h"
#include "evidence/signing.h"

namespace bulkhead::agent {

// One accepted bundle waiting for the controller's receipt.
struct SpooledBundle {
  std::filesystem::path bundle;   // spool_dir / header.file_name()
  std::filesystem::path sidecar;  // spool_dir / (capture_id + ".json")
  v1::EvidenceHeader header;
  int64_t spooled_at_unix_ms = 0;
};

// The sidecar document: the header's fields and when the bundle was spooled.
std::string sidecarJson(const v1::EvidenceHeader& header, int64_t spooled_at_unix_ms);
// Parses a sidecar; errors name the field at fault. The file name must be a plain name (no
// '/', not "." or "..") so a sidecar can never point outside the spool directory.
absl::StatusOr<SpooledBundle> parseSidecar(const std::filesystem::path& spool_dir,
                                           const std::string& json);
// Writes the sidecar (atomically, 0600).
absl::Status writeSidecar(const std::filesystem::path& spool_dir, const SpooledBundle& spooled);
// Every accepted bundle in `spool_dir`, oldest first (then by capture id). Unreadable sidecars
// and sidecars whose bundle is missing are reported in `problems` and skipped.
std::vector<SpooledBundle> pendingUploads(const std::filesystem::path& spool_dir,
                                          std::vector<std::string>* problems);
// Removes the bundle and its sidecar (the sidecar last: a crash in between leaves a sidecar
// whose bundle is gone, which pendingUploads() reports and skips).
void removeSpooled(const SpooledBundle& spooled);

// The result of a successful capture. `collectors` is the collection log (an array of the
// collectors' log lines); a line's unknown status reads as COLLECTOR_STATUS_UNSPECIFIED.
v1::CaptureResult captureResult(const v1::EvidenceHeader& header,
                                const v1::EvidenceReceipt& receipt, int64_t duration_ms,
                                const nlohmann::json& collectors);
// CommandResult.error when the upload failed: the bundle stays on the host.
std::string keptOnHostError(const std::filesystem::path& bundle, const std::string& why);

// A collector that sleeps an hour ignoring stopped(): only the engine's time limit cuts it
// (--test-hang-collector; default time limit 15 s).
std::unique_ptr<collect::Collector> makeTestHangCollector();

struct CaptureWorkerOptions {
  std::filesystem::path spool_dir;
  std::string host_id;
  std::string hostname;
  std::string agent_version;
  bool test_hang_collector = false;
  std::chrono::milliseconds retry_every{60'000};
};

// Also the capture engine of capture-first kills (StoppedCapture): their collection runs on a
// thread of its own ("bh-capfirst"), so stopped processes never wait behind an ordinary
// capture or an upload retry; their upload runs on the capture thread, in order with the
// others.
class CaptureWorker final : public StoppedCapture {
 public:
  // The capture engine (agent::runCapture in the daemon; a fake in tests).
  using RunCapture = std::function<absl::StatusOr<CaptureOutcome>(
      const CaptureOptions&, std::vector<std::unique_ptr<collect::Collector>>,
      const evidence::Signer&, const CaptureProgress&)>;
  using MakeCollectors = std::function<std::vector<std::unique_ptr<collect::Collector>>()>;
  // Uploads one bundle (EvidenceUploader::upload in the daemon); `progress` gets bytes.
  using Upload = std::function<absl::StatusOr<v1::EvidenceReceipt>(
      const std::filesystem::path& bundle, const v1::EvidenceHeader& header,
      const std::function<void(uint64_t done, uint64_t total)>& progress)>;
  // Best effort: progress and results for the Connect stream (dropped when not connected).
  using Send = std::function<void(const v1::AgentMessage&)>;

  struct Deps {
    RunCapture run_capture;
    MakeCollectors collectors;
    Upload upload;
    Send send;
    std::function<int64_t()> now_unix_ms;
  };

  // `signer` failing (the agent's key cannot be loaded) makes every capture answer with that
  // error. The thread starts at once and retries the bundles already spooled.
  CaptureWorker(CaptureWorkerOptions options, absl::StatusOr<evidence::Signer> signer, Deps deps);
  // Stops and joins: a capture in progress finishes first (collectors are bounded by their
  // time limits); cancel uploads beforehand (EvidenceUploader::cancel). Queued captures are
  // dropped unanswered (the controller times them out).
  ~CaptureWorker() override;
  CaptureWorker(const CaptureWorker&) = delete;
  CaptureWorker& operator=(const CaptureWorker&) = delete;

  // Queues a capture command (Command.capture). Never blocks.
  void submit(const v1::Command& command);
  // Retries the spooled bundles soon (called on every (re)connect). Never blocks.
  void retryPending();
  // Tests: blocks until the queue is empty and nothing is running.
  void waitIdle();

  // StoppedCapture (called from the process-actions thread). `command` is the kill command;
  // its progress is not sent (the kill's result carries the capture's).
  absl::Status collect(const v1::Command& command, const v1::CaptureState& state,
                       const std::vector<int>& pids, std::chrono::milliseconds limit) override;
  absl::StatusOr<v1::CaptureResult> upload(const v1::Command& command,
                                           const v1::CaptureState& state) override;

 private:
  // A bundle collected and spooled, not yet uploaded.
  struct Collected {
    SpooledBundle spooled;
    CaptureOutcome outcome;
  };
  // Checks the request, prepares the spool directory, runs the capture (with
  // the stopped_processes collector when `pids` is not empty) and writes the sidecar. Errors
  // carry the text the command's answer gives. `progress`: send CommandProgress for `c`.
  absl::StatusOr<Collected> collectBundle(const v1::Command& c, const v1::CaptureState& req,
                                          const std::vector<int>& pids,
                                          std::shared_ptr<const std::atomic<bool>> cancel,
                                          bool send_progress);
  // Queues a retry of every spooled bundle unless one is queued already.
  void queueRetry();
  // The retry `retry_every` after the last one (an earlier one, explicit, supersedes it).
  void armPeriodicRetry();
  // Runs `fn` on the thread, counted for waitIdle(); skipped once stopping.
  void post(std::function<void()> fn);
  void capture(const v1::Command& command);
  void retryAll();
  // Uploads one spooled bundle; on receipt removes it. Returns the receipt or why it failed.
  absl::StatusOr<v1::EvidenceReceipt> uploadSpooled(const SpooledBundle& spooled,
                                                    const std::string& command_id);
  void progress(const std::string& command_id, v1::CaptureStage stage, const std::string& detail,
                uint64_t done, uint64_t total);
  void answer(const v1::CommandResult& result);

  CaptureWorkerOptions options_;
  absl::StatusOr<evidence::Signer> signer_;
  Deps deps_;
  std::mutex mu_;
  std::condition_variable idle_cv_;
  bool stopping_ = false;     // GUARDED_BY(mu_); queued work is skipped once set
  bool retry_queued_ = false; // GUARDED_BY(mu_)
  int pending_ = 0;           // GUARDED_BY(mu_); posted and not yet finished
  uint64_t retry_generation_ = 0;  // touched on the thread only
  // Capture-first bundles collected, by capture id, until upload() takes them.
  std::map<std::string, Collected> collected_;  // GUARDED_BY(mu_)
  Scheduler first_thread_{"bh-capfirst"};       // capture-first collections
  Scheduler thread_{"bh-capture"};  // last: stopped first on destruction
};

}  // namespace bulkhead::agent
