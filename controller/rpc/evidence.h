// Evidence on the controller: receives bundles from agents (AgentChannel
// .UploadEvidence), stores them content-addressed (EvidenceFiles) with their custody record
// (Store), checks them on receipt (evidence::verifyBundle), and routes the progress of capture
// commands (agent progress, upload bytes) to the Capture calls waiting for them.
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
#include "controller/core/clock.h"
#include "controller/rpc/fleet.h"
#include "common/scheduler.h"
#include "controller/service/evidence_backend.h"
#include "controller/store/evidence_files.h"
#include "controller/store/store.h"

namespace bulkhead::controller {

// Limits on uploads; a refused upload ends with RESOURCE_EXHAUSTED (before any byte is
// written) and an audit row, and its agent keeps the bundle and retries later.
struct EvidenceOptions {
  std::filesystem::path dir;               // <data-dir>/evidence; empty: evidence disabled
  std::string ca_pem;                      // fleet CA, checks the signer of each bundle
  uint64_t max_bytes = uint64_t{8} << 30;  // bigger uploads are refused before any byte
  uint64_t progress_every = 4 << 20;       // upload progress is reported every this many bytes
  // Bytes stored for one host plus its uploads in progress may not pass this.
  uint64_t host_quota_bytes = uint64_t{32} << 30;
  // An upload is refused unless the evidence file system keeps this much free after it (and
  // after every upload in progress).
  uint64_t reserve_bytes = uint64_t{1} << 30;
  uint32_t max_uploads = 16;          // uploads in progress at once, all hosts
  uint32_t max_uploads_per_host = 2;  // uploads in progress at once, one host
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

  // Uploads in progress (admitted, not finished), of one host or of all.
  struct InFlight {
    uint32_t uploads = 0;
    uint64_t bytes = 0;
  };
  // Admits an upload of `size` bytes from `host` past the limits of EvidenceOptions, or says
  // which one refuses it (RESOURCE_EXHAUSTED; INTERNAL if the store cannot tell). Blocks on
  // the store and statvfs: I/O thread. A success must be paired with release().
  grpc::Status admit(const std::string& host, uint64_t size);
  void release(const std::string& host, uint64_t size);  // thread-safe

  const Clock& clock_;
  Store& store_;
  Fleet& fleet_;
  const EvidenceOptions options_;
  EvidenceFiles files_;
  std::mutex mu_;
  struct Watcher {
    std::string host;
    ProgressFn fn;
  };
  std::map<std::string, Watcher> watchers_;     // GUARDED_BY(mu_); by command id
  bool stopped_ = false;                        // GUARDED_BY(mu_)
  std::mutex inflight_mu_;
  std::map<std::string, InFlight> inflight_;  // by host; GUARDED_BY(inflight_mu_)
  InFlight inflight_total_;                   // GUARDED_BY(inflight_mu_)
  Scheduler events_{"bh-ev-events"};
  Scheduler io_{"bh-evidence"};
};

}  // namespace bulkhead::controller
