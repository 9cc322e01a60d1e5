// The operator calls on evidence: capture (a command to the host's agent, its progress, the
// stored record at the end), list, get (the stored bundle opened for download), verify and
// show. Each authorises the caller (controller/service/authorization.h), checks the request
// and records the call in the audit trail, refusals included, before it answers; get, show
// and verify are first appended to the bundle's custody record. Capture is audited as
// accepted before its command is sent, and its answer as "capture.result".
//
// Roles: capture, get and show (they collect or read sensitive host data) need responder or
// admin; list and verify (records and hashes only) are open to viewers too.
//
// Threading: capture's `done` runs on HostActions' thread, verify's and show's on the
// evidence I/O thread; a refusal is answered on the calling thread. Progress runs on the
// backend's thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controller/core/clock.h"
#include "controller/core/requests.h"
#include "controller/service/audit.h"
#include "controller/service/authorization.h"
#include "controller/service/evidence_backend.h"
#include "controller/service/host_actions.h"
#include "controller/service/host_directory.h"
#include "controller/store/store.h"

namespace bulkhead::controller {

// "cap-20261123T170102Z-web-03-3f2a": the request time (UTC), the host and 4 random hex digits.
// The id of every capture: an operator's, and the one a capture-first kill takes.
std::string newCaptureId(int64_t now_ms, const std::string& host);

// A stored bundle's record with its custody events.
struct StoredEvidence {
  EvidenceRow row;
  std::vector<CustodyEntry> custody;
};

// One page of records, in the store's order; `next_offset` asks for the rest.
struct EvidencePage {
  std::vector<EvidenceRow> evidence;
  std::optional<uint32_t> next_offset;
};

// One problem a verification found: the file (or "record", "custody") and what is wrong.
struct BundleProblem {
  std::string file;
  std::string problem;
};

struct EvidenceVerification {
  bool ok = false;  // no problems
  uint32_t files_checked = 0;
  std::vector<BundleProblem> problems;
  StoredEvidence evidence;  // with the custody event of this verification
};

// Its implicit moves are its members' (nlohmann::json, strings, vectors), all noexcept;
// clang-tidy 14 reports nlohmann::json's move as throwing.
// NOLINTNEXTLINE(bugprone-exception-escape)
struct ShownEvidence {
  nlohmann::json summary;   // evidence::summarize() of the bundle
  StoredEvidence evidence;  // with the custody event of this reading
};

// A stored bundle opened for reading, its "get" custody event already recorded. Owns `fd`:
// closed on destruction unless released.
class OpenedBundle {
 public:
  OpenedBundle(int fd, std::string path, StoredEvidence evidence);
  ~OpenedBundle();
  OpenedBundle(OpenedBundle&& other) noexcept;
  OpenedBundle& operator=(OpenedBundle&&) = delete;
  OpenedBundle(const OpenedBundle&) = delete;
  OpenedBundle& operator=(const OpenedBundle&) = delete;

  // The descriptor (open for reading); the caller closes it.
  int releaseFd();
  const std::string& path() const { return path_; }
  const StoredEvidence& evidence() const { return evidence_; }

 private:
  int fd_;
  std::string path_;
  StoredEvidence evidence_;
};

// Receives a capture's end, exactly once: `status` OK with the stored bundle, or why not.
using CaptureDone =
    std::function<void(const absl::Status& status, std::optional<StoredEvidence> evidence)>;
// How many bytes `row` takes in the listing's answer; a page stops before kMaxResponseBytes
// (controller/service/audit.h), and holds at least one record when there is one.
using EvidenceBytes = std::function<size_t(const EvidenceRow& row)>;
using VerifyDone = std::function<void(const absl::Status& status, EvidenceVerification result)>;
// How many bytes the answer of a show takes; above kMaxResponseBytes the show fails.
using ShownBytes = std::function<size_t(const ShownEvidence& shown)>;
using ShowDone = std::function<void(const absl::Status& status, ShownEvidence result)>;

class EvidenceService {
 public:
  // `hosts` and `actions` must outlive this; `evidence` (not owned) may be nullptr: every
  // call then fails UNAVAILABLE.
  EvidenceService(const Clock& clock, Store& store, HostDirectory& hosts, HostActions& actions,
                  EvidenceBackend* evidence);

  // Records the capture, audits it as accepted and sends the command to the host's agent;
  // progress goes to `progress` until the end. `done` gets the stored record, or why there is
  // none (the host is unknown or offline, the agent failed, no answer in time).
  void capture(const Caller& caller, const CaptureRequest& req,
               EvidenceBackend::ProgressFn progress, CaptureDone done);
  absl::StatusOr<EvidencePage> list(const Caller& caller, const ListEvidenceRequest& req,
                                    const EvidenceBytes& record_bytes);
  // The bundle `id` (an evidence id or a unique prefix of one), opened by its content address
  // (never by a path read from the database) with its custody event "get" recorded.
  absl::StatusOr<OpenedBundle> get(const Caller& caller, const std::string& id);
  // Where bundle `id` is stored (EvidenceFiles::bundlePath), for a caller that has checked its
  // access already (an incident's report); UNAVAILABLE without evidence storage.
  absl::StatusOr<std::filesystem::path> bundlePath(const std::string& id) const;
  // Checks the stored bundle against its id and signed manifest, its signer and its custody
  // chain, on the I/O thread; records the outcome as a custody event "verify".
  void verify(const Caller& caller, const std::string& id, VerifyDone done);
  // Reads the bundle's summary on the I/O thread; records a custody event "show".
  void show(const Caller& caller, const std::string& id, ShownBytes answer_bytes, ShowDone done);

 private:
  // For the calls on one stored bundle: the caller's refusal, no evidence store, or why `id`
  // names no single bundle; else the bundle's row.
  // Whether `caller` holds `action`'s role on `host_id` (tenancy.h); a host the fleet no
  // longer knows counts as tenant default's, without labels.
  bool reaches(const Caller& caller, OperatorAction action, const std::string& host_id);
  absl::StatusOr<EvidenceRow> find(const Caller& caller, OperatorAction action,
                                   const std::string& id);
  // Appends `action`'s custody event to `row`'s bundle and reads the record back with it.
  absl::StatusOr<StoredEvidence> withCustody(const Caller& caller, const EvidenceRow& row,
                                             const std::string& action, const std::string& detail);
  // Who a row about a bundle or capture of `host_id` (a host the caller reaches) is by: in the
  // host's tenant (a host the fleet no longer knows: "default", as its bundles).
  AuditActor actorOn(const Caller& caller, const std::string& host_id);
  // The tenant of `host_id`; "default" for a host the fleet no longer knows.
  std::string tenantOfHost(const std::string& host_id);
  absl::Status audit(const AuditActor& actor, const std::string& action, const std::string& target,
                     const std::string& reason, const absl::Status& result,
                     const std::string& detail = "");
  absl::Status audit(const AuditActor& actor, OperatorAction action, const std::string& target,
                     const std::string& reason, const absl::Status& result,
                     const std::string& detail = "");

  const Clock& clock_;
  Store& store_;
  HostDirectory& hosts_;
  HostActions& actions_;
  EvidenceBackend* const evidence_;
};

}  // namespace bulkhead::controller
