// What the controller does with an agent's evidence upload, apart from its transport: the
// header checked against the capture the controller requested for the uploading host, the
// limits on uploads in progress, the bytes written to a part file with a running SHA-256, and
// at the end the hash checked, the file linked to its content address, the bundle verified
// (evidence::verifyBundle against the fleet CA and the host id) and stored with its custody
// record and audit rows. A front door (rpc/'s EvidenceHub) reads the messages, hands them to an
// IncomingUpload, and answers with what it returns.
//
// Threading: EvidenceIntake is thread-safe. One IncomingUpload is used by one call at a time:
// its front door runs its steps in order and hands it from thread to thread with a
// happens-before (a posted task, a started read). The steps marked "I/O thread" block on the
// store and the disk; setHeader() and append() do not and may run on a receiving thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bulkhead/v1/agent.pb.h"
#include "controller/core/clock.h"
#include "controller/service/audit.h"
#include "controller/store/evidence_files.h"
#include "controller/store/store.h"

namespace bulkhead::controller {

// Bounds on the header's fields (the agent's text, bounded before anything echoes or stores
// it).
inline constexpr size_t kMaxUploadCaptureId = 256;
inline constexpr size_t kMaxUploadCommandId = 256;
inline constexpr size_t kMaxUploadFileName = 255;

// What an upload announces before its bytes: all of it the agent's claim.
struct UploadHeader {
  std::string capture_id;
  std::string command_id;  // bounded, otherwise unused: progress names the recorded command
  std::string file_name;
  std::string sha256;  // hex SHA-256 of the bytes that follow
  uint64_t size = 0;   // how many bytes follow
};

// The header's own checks, before the store is asked: INVALID_ARGUMENT naming the field (a
// capture id that is empty or over kMaxUploadCaptureId, a command id or file name over its
// bound, a sha256 that is not 64 lowercase hex digits, a size of 0), RESOURCE_EXHAUSTED for a
// size above `max_bytes` (--max-evidence-bytes).
absl::Status checkUploadHeader(const UploadHeader& header, uint64_t max_bytes);

// Limits on uploads; a refused upload ends with RESOURCE_EXHAUSTED (before any byte is
// written) and an audit row, and its agent keeps the bundle and retries later.
struct EvidenceIntakeOptions {
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
};

// What the agent is told once its bundle is stored and recorded (it deletes its copy then).
struct UploadReceipt {
  std::string evidence_id;      // hex SHA-256 of the bundle
  bool already_stored = false;  // these bytes were recorded before (a retried upload)
};

class IncomingUpload;

class EvidenceIntake {
 public:
  // Progress of an upload, for the capture command the controller recorded; `host` is the
  // uploading host. Called on the thread of the step that reports it; must not block.
  using ProgressFn =
      std::function<void(const std::string& host, const bulkhead::v1::CommandProgress&)>;

  // `store` and `files` (not owned) must outlive this and every upload it opened.
  EvidenceIntake(const Clock& clock, Store& store, EvidenceFiles& files,
                 EvidenceIntakeOptions options, ProgressFn progress);
  EvidenceIntake(const EvidenceIntake&) = delete;
  EvidenceIntake& operator=(const EvidenceIntake&) = delete;

  // An upload from `host` (the certificate's host id, already authenticated) of `tenant` (its
  // audit rows'). Must not outlive this.
  std::unique_ptr<IncomingUpload> receive(std::string host, std::string tenant);

  const EvidenceIntakeOptions& options() const { return options_; }

 private:
  friend class IncomingUpload;

  // Uploads in progress (admitted, not finished), of one host or of all.
  struct InFlight {
    uint32_t uploads = 0;
    uint64_t bytes = 0;
  };
  // Admits an upload of `size` bytes from `host` past the limits of the options, or says
  // which one refuses it (RESOURCE_EXHAUSTED naming the flag; INTERNAL if the store cannot
  // tell). Blocks on the store and statvfs. A success must be paired with release().
  absl::Status admit(const std::string& host, uint64_t size);
  void release(const std::string& host, uint64_t size);

  const Clock& clock_;
  Store& store_;
  EvidenceFiles& files_;
  const EvidenceIntakeOptions options_;
  const ProgressFn progress_;
  std::mutex mu_;
  std::map<std::string, InFlight> inflight_;  // by host; GUARDED_BY(mu_)
  InFlight inflight_total_;                   // GUARDED_BY(mu_)
};

// One upload, from its header to its receipt or refusal. Its steps, in order:
//   setHeader   the header's own checks (checkUploadHeader);
//   begin       (I/O thread) the capture must have been requested for this host and have no
//               bundle yet (the same bytes again are answered at once with a receipt), and the
//               upload must fit the limits; then the part file is created;
//   append      each chunk, in order;
//   endOfData   the sender is done: every announced byte must have come;
//   complete    (I/O thread) fsync, hash check, content address, verification, store;
//   refuse      (I/O thread) after any step that failed: the refusal is audited;
//   release     once, when the call ends, whatever the outcome.
class IncomingUpload {
 public:
  IncomingUpload(EvidenceIntake& intake, std::string host, std::string tenant);
  ~IncomingUpload();  // removes a part file not committed
  IncomingUpload(const IncomingUpload&) = delete;
  IncomingUpload& operator=(const IncomingUpload&) = delete;

  // Keeps `header` (refusals name its capture id from then on) and checks it.
  absl::Status setHeader(UploadHeader header);
  // I/O thread. nullopt: send the bytes (an UPLOADING progress of 0 was reported). A receipt:
  // these bytes are stored already for this capture (a retry after a lost receipt; a custody
  // event and an audit row recorded), nothing to receive. Errors: the capture's lookup
  // (NOT_FOUND for an unknown one), PERMISSION_DENIED for a capture of another host,
  // ALREADY_EXISTS for a capture that has a different bundle, RESOURCE_EXHAUSTED over a limit,
  // INTERNAL when the store or the disk fails.
  absl::StatusOr<std::optional<UploadReceipt>> begin();
  // One chunk, appended to the part file (progress reported every progress_every bytes and at
  // the last one). INVALID_ARGUMENT when it passes the header's size, INTERNAL on a write
  // error. REQUIRES: begin() returned nullopt.
  absl::Status append(std::string_view data);
  // INVALID_ARGUMENT unless every byte the header announced was appended.
  absl::Status endOfData() const;
  // I/O thread. The receipt once the bundle is stored (fsynced, linked to its content address)
  // and recorded: its row, its first custody events (requested, collected, received with the
  // verification's outcome) and an `evidence-received` audit row; a bundle that fails
  // verification is stored all the same with signature_ok=false. `already_stored` when the
  // same bytes were recorded meanwhile. Errors: DATA_LOSS when the bytes do not hash to the
  // header's sha256 (nothing stored), ALREADY_EXISTS when a different bundle of the capture
  // was stored meanwhile, INTERNAL when the disk or the store fails. REQUIRES: endOfData() ok.
  absl::StatusOr<UploadReceipt> complete();
  // I/O thread. Removes the part file, logs and audits the refusal `why` (an
  // `evidence-received` row naming the header's capture id) and returns the status to answer
  // with: `why`, or INTERNAL when the row cannot be written.
  absl::Status refuse(const absl::Status& why);
  // Gives back the upload's place among the uploads in progress, if begin() took one. Call
  // once, when the call ends.
  void release();

  const std::string& host() const { return host_; }
  const UploadHeader& header() const { return header_; }
  uint64_t received() const;  // bytes appended so far

 private:
  absl::StatusOr<UploadReceipt> alreadyStored(const std::string& sha, int64_t now);
  absl::Status differentBundle(const std::string& stored_id) const;
  bulkhead::v1::CommandProgress progress(bulkhead::v1::CaptureStage stage,
                                         const std::string& detail, uint64_t done,
                                         uint64_t total) const;

  EvidenceIntake& intake_;
  const std::string host_;
  const AuditActor actor_;  // "agent:HOST", in the host's tenant
  UploadHeader header_;
  CaptureRow capture_;
  std::unique_ptr<PartFile> part_;
  bool admitted_ = false;  // counted among the uploads in progress until release()
  uint64_t next_progress_ = 0;
};

}  // namespace bulkhead::controller
