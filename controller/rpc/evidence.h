// Evidence on the controller: receives bundles from agents (AgentChannel
// .UploadEvidence) and hands them to the EvidenceIntake (controller/service/evidence_intake.h),
// which stores them content-addressed (EvidenceFiles) with their custody record (Store) and
// checks them on receipt (evidence::verifyBundle); routes the progress of capture commands
// (agent progress, upload bytes) to the Capture calls waiting for them.
//
// Threading: upload reactions run on gRPC threads and only write the received chunk to its
// part file; store reads and writes, fsync and verification run on the hub's I/O thread.
// Progress is delivered to watchers on the hub's events thread (never under the Fleet's lock).
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "bulkhead/v1/agent.pb.h"
#include "bulkhead/v1/operator.pb.h"
#include "common/scheduler.h"
#include "controller/core/clock.h"
#include "controller/rpc/fleet.h"
#include "controller/service/evidence_backend.h"
#include "controller/service/evidence_intake.h"
#include "controller/store/evidence_files.h"
#include "controller/store/store.h"

namespace bulkhead::controller {

// The evidence store's directory, the limits on uploads (EvidenceIntakeOptions) and the
// transport's own limit.
struct EvidenceOptions : EvidenceIntakeOptions {
  std::filesystem::path dir;  // <data-dir>/evidence; empty: evidence disabled
  // An upload whose next message does not come within this is cancelled (audited, nothing
  // stored), so a stalled agent cannot hold a place among the uploads in progress.
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(60)};
};

class EvidenceHub final : public EvidenceBackend {
 public:
  EvidenceHub(const Clock& clock, Store& store, Fleet& fleet, EvidenceOptions options);
  ~EvidenceHub();  // shutdown()
  EvidenceHub(const EvidenceHub&) = delete;
  EvidenceHub& operator=(const EvidenceHub&) = delete;

  // Prepares the evidence directory and hooks the Fleet's progress listener. A no-op when
  // evidence is disabled.
  absl::Status init();
  bool enabled() const override { return !options_.dir.empty(); }

  // AgentChannel.UploadEvidence: the reactor for one upload (see agent.proto). It answers
  // only once the bytes are stored (fsynced, renamed) and recorded with their custody events.
  grpc::ServerReadReactor<bulkhead::v1::EvidenceUpload>* upload(
      grpc::CallbackServerContext* ctx, bulkhead::v1::EvidenceReceipt* receipt);

  // (EvidenceBackend) Progress of command `command_id`, sent to `host` (the agent's and the
  // upload's), goes to `fn`, on the events thread, until unwatch(). One watcher per command.
  void watch(const std::string& command_id, const std::string& host, ProgressFn fn) override;
  void unwatch(const std::string& command_id) override;
  // Thread-safe, never blocks: hands `p`, which came from `host`, to its command's watcher if
  // the command was sent to that host; progress naming another host's command is dropped.
  void publish(const std::string& host, const bulkhead::v1::CommandProgress& p);

  // Runs `fn` on the I/O thread (disk-heavy work: verification, summaries). False (fn
  // dropped) after shutdown.
  bool postIo(std::function<void()> fn) override { return io_.post(std::move(fn)); }

  Store& store() { return store_; }
  const Clock& clock() const { return clock_; }
  const EvidenceOptions& options() const { return options_; }
  EvidenceFiles& files() override { return files_; }
  const std::string& caPem() const override { return options_.ca_pem; }

  // Unhooks from the Fleet and stops the threads (running what is due). Call after the gRPC
  // server has stopped. Idempotent.
  void shutdown();

  // The wire form of a stored bundle; with `custody` when given.
  static void toProto(const EvidenceRow& row, const std::vector<CustodyEntry>* custody,
                      bulkhead::v1::EvidenceRecord* out);

 private:
  class Upload;

  const Clock& clock_;
  Store& store_;
  Fleet& fleet_;
  const EvidenceOptions options_;
  EvidenceFiles files_;
  EvidenceIntake intake_;  // the uploads' logic; its progress goes to publish()
  std::mutex mu_;
  struct Watcher {
    std::string host;
    ProgressFn fn;
  };
  std::map<std::string, Watcher> watchers_;     // GUARDED_BY(mu_); by command id
  bool stopped_ = false;                        // GUARDED_BY(mu_)
  Scheduler events_{"bh-ev-events"};
  Scheduler io_{"bh-evidence"};
};

}  // namespace bulkhead::controller
