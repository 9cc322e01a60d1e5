#include "controller/rpc/evidence.h"

#include <spdlog/spdlog.h>

#include "common/callback_order.h"
#include "common/format.h"
#include "common/tls/tls.h"
#include "controller/rpc/audit.h"
#include "controller/service/record_text.h"
#include "evidence/bundle.h"
#include "evidence/json_read.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

namespace {

// Header fields are the agent's text: bounded before anything echoes or stores them.
constexpr size_t kMaxHeaderCaptureId = 256;
constexpr size_t kMaxHeaderCommandId = 256;
constexpr size_t kMaxHeaderFileName = 255;
// Custody details the controller writes from a bundle's verification.
constexpr size_t kMaxCustodyDetail = 8192;
// What a record carries when it is sent: custody events up to this many bytes (the first
// kKeptFirstCustody and then the newest), collector errors up to kMaxRecordCollectorErrors.
constexpr size_t kMaxRecordCustodyBytes = 1 << 20;
constexpr size_t kKeptFirstCustody = 3;
constexpr size_t kMaxRecordCollectorErrors = evidence::kMaxCollectorErrors + 1;
constexpr size_t kMaxRecordText = 8192;

bool isSha256Hex(const std::string& s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// Agent text as kept or echoed: clipped, control characters and invalid UTF-8 escaped.
std::string shown(const std::string& text, size_t max) { return evidence::boundedText(text, max); }
// Stored text as sent: clipped, kept valid UTF-8, otherwise as stored.
std::string clipped(const std::string& text, size_t max) {
  return evidence::boundedText(text, max, false);
}

}  // namespace

// One upload: header, then chunks appended to a part file; the header check and the final
// steps (fsync, hash check, rename, verification, store) run on the hub's I/O thread. Owns
// itself (self_) until OnDone; work posted to the I/O thread holds a reference too.
class EvidenceHub::Upload final : public grpc::ServerReadReactor<v1::EvidenceUpload>,
                                  public std::enable_shared_from_this<Upload> {
 public:
  Upload(EvidenceHub* hub, grpc::CallbackServerContext* ctx, v1::EvidenceReceipt* receipt)
      : hub_(hub), ctx_(ctx), receipt_(receipt) {}

  void start(std::shared_ptr<Upload> self) {
    const ReactorTurn turn(this);
    self_ = std::move(self);
    if (!hub_->enabled()) {
      finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "this controller has no evidence store (--data-dir)"));
      return;
    }
    auto auth = ctx_->auth_context();
    auto id = auth ? peerIdentity(*auth) : absl::UnauthenticatedError("no client certificate");
    if (!id.ok()) {
      finish(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, fmt::format("{}", id.status())));
      return;
    }
    if (id->kind != PeerKind::kAgent) {
      finish(grpc::Status(
          grpc::StatusCode::PERMISSION_DENIED,
          fmt::format("certificate OU={} is not an agent identity", peerKindName(id->kind))));
      return;
    }
    if (PeerGate* gate = hub_->fleet_.gate(); gate != nullptr) {
      if (auto admitted = gate->admit(*id); !admitted.ok()) {
        finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, std::string(admitted.message())));
        return;
      }
    }
    host_ = id->name;
    readNext();
    watchIdle(hub_->options_.idle_timeout);
  }

  void OnReadDone(bool ok) override {
    const ReactorTurn turn(this);
    operationDone(&in_);
    reading_ = false;
    if (!ok && stalled_) {
      failSoon(grpc::Status(
          grpc::StatusCode::DEADLINE_EXCEEDED,
          fmt::format("upload of capture {} stalled: nothing received for {} ms after {} of {} "
                      "bytes (--evidence-idle-timeout); cancelled, nothing stored",
                      shown(header_.capture_id(), kMaxHeaderCaptureId),
                      hub_->options_.idle_timeout.count(), part_ ? part_->size() : 0,
                      header_.size())));
      return;
    }
    if (!have_header_) {
      onHeader(ok);
      return;
    }
    const uint64_t expected = header_.size();
    if (!ok) {
      if (part_->size() != expected) {
        failSoon(
            grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                         fmt::format("upload of capture {} ended after {} of {} bytes; nothing "
                                     "stored",
                                     header_.capture_id(), part_->size(), expected)));
        return;
      }
      auto self = shared_from_this();
      if (!hub_->postIo([self] { self->guarded(&Upload::complete); })) finish(shuttingDown());
      return;
    }
    if (!in_.has_data()) {
      failSoon(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "an upload has one header, then data messages only"));
      return;
    }
    const std::string& data = in_.data();
    if (data.size() > expected - part_->size()) {
      failSoon(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                       fmt::format("upload of capture {}: more bytes than the header's size {}; "
                                   "nothing stored",
                                   header_.capture_id(), expected)));
      return;
    }
    if (auto s = part_->write(data); !s.ok()) {
      failSoon(grpc::Status(grpc::StatusCode::INTERNAL, fmt::format("evidence store: {}", s)));
      return;
    }
    if (part_->size() >= next_progress_ || part_->size() == expected) {
      next_progress_ = part_->size() + hub_->options_.progress_every;
      hub_->publish(host_, progress(v1::CAPTURE_STAGE_UPLOADING, "", part_->size(), expected));
    }
    readNext();
  }

  void OnDone() override {
    afterEveryTurn(this);
    // The last reference held on behalf of gRPC: may delete this.
    std::shared_ptr<Upload> self = std::move(self_);
  }

 private:
  static grpc::Status shuttingDown() {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "controller shutting down");
  }

  v1::CommandProgress progress(v1::CaptureStage stage, const std::string& detail, uint64_t done,
                               uint64_t total) const {
    v1::CommandProgress p;
    // The command the controller created for this capture, never the header's claim.
    p.set_command_id(capture_.command_id);
    p.set_capture_stage(stage);
    p.set_detail(detail);
    p.set_done(done);
    p.set_total(total);
    return p;
  }

  void onHeader(bool ok) {
    if (!ok) {
      failSoon(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "upload ended before its header"));
      return;
    }
    if (!in_.has_header()) {
      failSoon(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "the first message of an upload must be its header"));
      return;
    }
    header_ = in_.header();
    have_header_ = true;
    grpc::Status bad;
    if (header_.capture_id().empty()) {
      bad = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "header.capture_id: required");
    } else if (header_.capture_id().size() > kMaxHeaderCaptureId) {
      bad = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                         fmt::format("header.capture_id: {} bytes, more than {}",
                                     header_.capture_id().size(), kMaxHeaderCaptureId));
    } else if (header_.command_id().size() > kMaxHeaderCommandId) {
      bad = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                         fmt::format("header.command_id: {} bytes, more than {}",
                                     header_.command_id().size(), kMaxHeaderCommandId));
    } else if (header_.file_name().size() > kMaxHeaderFileName) {
      bad = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                         fmt::format("header.file_name: {} bytes, more than {}",
                                     header_.file_name().size(), kMaxHeaderFileName));
    } else if (!isSha256Hex(header_.sha256())) {
      bad = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                         fmt::format("header.sha256: \"{}\" is not 64 lowercase hex digits",
                                     shown(header_.sha256(), 80)));
    } else if (header_.size() == 0) {
      bad = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "header.size: 0 (an empty bundle)");
    } else if (header_.size() > hub_->options_.max_bytes) {
      bad =
          grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                       fmt::format("bundle of capture {} is {} bytes, above this controller's "
                                   "limit of {} bytes (--max-evidence-bytes)",
                                   header_.capture_id(), header_.size(), hub_->options_.max_bytes));
    }
    if (!bad.ok()) {
      failSoon(bad);
      return;
    }
    auto self = shared_from_this();
    if (!hub_->postIo([self] { self->guarded(&Upload::checkHeader); })) finish(shuttingDown());
  }

  // Any thread: the next message into in_. The I/O thread starts reads too, so the hand-off is
  // told to TSan (common/callback_order.h).
  void readNext() {
    read_started_ms_ = steadyMs();
    reading_ = true;
    operationStarts(&in_);
    StartRead(&in_);
  }

  // Cancels the call if a read has been outstanding for the idle timeout; checks again later
  // otherwise. The check runs on the hub's event thread and holds the upload only weakly; the
  // cancel itself runs on the I/O thread, where this upload's finish() runs, so the call is
  // never cancelled after it was finished (its context is gone after OnDone).
  void watchIdle(std::chrono::milliseconds delay) {
    std::weak_ptr<Upload> weak = weak_from_this();
    hub_->events_.after(delay, [weak] {
      if (auto self = weak.lock()) self->checkIdle();
    });
  }
  int64_t idleFor() const { return reading_ ? steadyMs() - read_started_ms_ : 0; }
  void checkIdle() {
    if (finished_) return;
    const int64_t idle = hub_->options_.idle_timeout.count();
    const int64_t waited = idleFor();
    if (waited < idle) {
      watchIdle(std::chrono::milliseconds(idle - waited));
      return;
    }
    auto self = shared_from_this();
    hub_->postIo([self, idle] {
      if (self->finished_) return;
      if (self->idleFor() < idle) {  // a message came meanwhile
        self->watchIdle(std::chrono::milliseconds(idle));
        return;
      }
      self->stalled_ = true;
      spdlog::warn("evidence upload from {}: nothing received for {} ms, cancelling",
                   self->host_, self->idleFor());
      self->ctx_->TryCancel();
    });
  }
  static int64_t steadyMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

  // I/O thread: runs one step; an exception ends the call with INTERNAL and an audit row.
  void guarded(void (Upload::*step)()) {
    const ReactorTurn turn(this);
    try {
      (this->*step)();
    } catch (const std::exception& e) {
      fail(grpc::Status(grpc::StatusCode::INTERNAL,
                        fmt::format("upload of capture {}: internal error: {}",
                                    shown(header_.capture_id(), kMaxHeaderCaptureId), e.what())));
    } catch (...) {
      fail(grpc::Status(grpc::StatusCode::INTERNAL,
                        fmt::format("upload of capture {}: internal error",
                                    shown(header_.capture_id(), kMaxHeaderCaptureId))));
    }
  }

  // I/O thread: the capture must have been requested for this host and have no bundle yet
  // (the same bundle again is answered at once: already stored), and the upload must fit the
  // hub's limits.
  void checkHeader() {
    auto capture = hub_->store_.getCapture(header_.capture_id());
    if (!capture.ok()) {
      fail(toGrpcStatus(capture.status()));
      return;
    }
    if (capture->host_id != host_) {
      fail(grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        fmt::format("capture {} was requested for host {}, not for {}",
                                    header_.capture_id(), capture->host_id, host_)));
      return;
    }
    capture_ = *std::move(capture);
    auto prior = hub_->store_.evidenceForCapture(capture_.capture_id);
    if (!prior.ok()) {
      fail(grpc::Status(grpc::StatusCode::INTERNAL,
                        fmt::format("evidence store: {}", prior.status())));
      return;
    }
    if (prior->has_value()) {
      if ((*prior)->id == header_.sha256()) {
        // A retry after a lost receipt: the stored bytes are the ones announced.
        alreadyStored(header_.sha256(), hub_->clock_.nowUnixMs(), fmt::format("agent:{}", host_));
      } else {
        fail(differentBundle((*prior)->id));
      }
      return;
    }
    if (grpc::Status admitted = hub_->admit(host_, header_.size()); !admitted.ok()) {
      fail(admitted);
      return;
    }
    admitted_ = true;
    auto part = hub_->files_.createPart(header_.capture_id());
    if (!part.ok()) {
      fail(grpc::Status(grpc::StatusCode::INTERNAL,
                        fmt::format("evidence store: {}", part.status())));
      return;
    }
    part_ = *std::move(part);
    hub_->publish(host_, progress(v1::CAPTURE_STAGE_UPLOADING, "", 0, header_.size()));
    readNext();
  }

  // I/O thread: every byte is in the part file.
  void complete() {
    const std::string sha = part_->finishHash();
    if (auto s = part_->syncAndClose(); !s.ok()) {
      fail(grpc::Status(grpc::StatusCode::INTERNAL, fmt::format("evidence store: {}", s)));
      return;
    }
    if (sha != header_.sha256()) {
      fail(grpc::Status(grpc::StatusCode::DATA_LOSS,
                        fmt::format("upload of capture {}: sha256 mismatch: the header says {}, "
                                    "the {} bytes received hash to {}; nothing stored",
                                    header_.capture_id(), header_.sha256(), part_->size(), sha)));
      return;
    }
    // Another upload of this capture may have been stored while this one was receiving.
    auto prior = hub_->store_.evidenceForCapture(capture_.capture_id);
    if (!prior.ok()) {
      fail(grpc::Status(grpc::StatusCode::INTERNAL,
                        fmt::format("evidence store: {}", prior.status())));
      return;
    }
    if (prior->has_value()) {
      part_->remove();
      if ((*prior)->id == sha) {
        alreadyStored(sha, hub_->clock_.nowUnixMs(), fmt::format("agent:{}", host_));
      } else {
        fail(differentBundle((*prior)->id));
      }
      return;
    }
    bool file_existed = false;
    if (auto s = hub_->files_.commit(*part_, sha, &file_existed); !s.ok()) {
      fail(grpc::Status(grpc::StatusCode::INTERNAL, fmt::format("evidence store: {}", s)));
      return;
    }
    const int64_t now = hub_->clock_.nowUnixMs();
    const std::string actor = fmt::format("agent:{}", host_);
    auto existing = hub_->store_.getEvidence(sha);
    if (existing.ok()) {
      alreadyStored(sha, now, actor);
      return;
    }
    if (existing.status().code() != absl::StatusCode::kNotFound) {
      fail(grpc::Status(grpc::StatusCode::INTERNAL,
                        fmt::format("evidence store: {}", existing.status())));
      return;
    }
    const std::filesystem::path stored = hub_->files_.absolute(EvidenceFiles::relativePath(sha));
    EvidenceRow row;
    row.id = sha;
    row.capture_id = capture_.capture_id;
    row.host_id = host_;
    row.requested_by = capture_.requested_by;
    row.reason = capture_.reason;
    row.requested_at_unix_ms = capture_.requested_at_unix_ms;
    row.received_at_unix_ms = now;
    row.size = part_->size();
    row.file_name = shown(header_.file_name(), kMaxHeaderFileName);
    row.path = EvidenceFiles::relativePath(sha);
    std::string check;  // the verification's outcome, for the custody record and the audit
    auto v = evidence::verifyBundle(
        stored,
        {.expected_sha256 = sha, .ca_pem = hub_->options_.ca_pem, .expected_host_id = host_});
    if (!v.ok()) {
      check = fmt::format("NOT CHECKED: {}", v.status());
    } else {
      row.signature_ok = v->signature_ok;
      row.collected_at_unix_ms = evidence::jsonIntOr(v->manifest, "finished_at_unix_ms");
      row.clock_offset_ms = evidence::jsonIntOr(v->manifest, "clock_offset_ms");
      row.files = v->files_checked;
      row.manifest_sha256 = v->manifest_sha256;
      row.collector_errors = v->collector_errors;
      check = v->ok() ? "bundle verified, signature ok" : "PROBLEMS:";
      for (const auto& p : v->problems) check += fmt::format(" {}: {};", p.file, p.problem);
    }
    if (!row.signature_ok) {
      spdlog::warn("evidence {} from {} stored without a valid signature: {}", sha, host_, check);
    }
    std::vector<CustodyEntry> events(3);
    events[0].at_unix_ms = capture_.requested_at_unix_ms;
    events[0].actor = capture_.requested_by;
    events[0].action = kCustodyRequested;
    events[0].detail =
        fmt::format("capture {} of {}: {}", capture_.capture_id, host_, capture_.reason);
    events[1].at_unix_ms = row.collected_at_unix_ms;
    events[1].actor = actor;
    events[1].action = kCustodyCollected;
    events[1].detail = fmt::format("{} files, manifest sha256 {}, clock offset {} ms", row.files,
                                   row.manifest_sha256.empty() ? "unknown" : row.manifest_sha256,
                                   row.clock_offset_ms);
    events[2].at_unix_ms = now;
    events[2].actor = actor;
    events[2].action = kCustodyReceived;
    events[2].detail = shown(fmt::format("{} bytes, sha256 {}, signature {}; {}", row.size, sha,
                                         row.signature_ok ? "ok" : "NOT OK", check),
                             kMaxCustodyDetail);
    auto added = hub_->store_.addEvidence(row, events);
    if (!added.ok() && added.status().code() == absl::StatusCode::kAlreadyExists) {
      alreadyStored(sha, now, actor);  // the same bundle raced in on another upload
      return;
    }
    if (!added.ok()) {
      // The file is stored; the agent keeps its copy and uploads again, which records it.
      fail(grpc::Status(grpc::StatusCode::INTERNAL,
                        fmt::format("evidence store: cannot record {}: {}", sha, added.status())));
      return;
    }
    grpc::Status status =
        recordCall(hub_->store_, hub_->clock_, actor, kEvidenceReceivedAction, sha, capture_.reason,
                   grpc::Status::OK,
                   fmt::format("capture {}, {} bytes, signature {}; {}", capture_.capture_id,
                               row.size, row.signature_ok ? "ok" : "NOT OK", check));
    if (!status.ok()) {
      fail(status);
      return;
    }
    hub_->publish(host_, progress(v1::CAPTURE_STAGE_STORED, sha, row.size, row.size));
    receipt_->set_evidence_id(sha);
    spdlog::info("evidence {} stored: capture {} of {}, {} bytes", sha, capture_.capture_id, host_,
                 row.size);
    finish(grpc::Status::OK);
  }

  // I/O thread: a bundle already recorded arrived again (a retried upload): noted in its
  // custody record.
  void alreadyStored(const std::string& sha, int64_t now, const std::string& actor) {
    CustodyEntry e;
    e.evidence_id = sha;
    e.at_unix_ms = now;
    e.actor = actor;
    e.action = kCustodyReceived;
    e.detail = fmt::format("again (capture {}): same sha256 as the stored copy, which is kept",
                           header_.capture_id());
    if (auto row = hub_->store_.appendCustody(e); !row.ok()) {
      fail(grpc::Status(grpc::StatusCode::INTERNAL,
                        fmt::format("evidence store: custody of {}: {}", sha, row.status())));
      return;
    }
    grpc::Status status = recordCall(
        hub_->store_, hub_->clock_, actor, kEvidenceReceivedAction, sha, capture_.reason,
        grpc::Status::OK, fmt::format("capture {}: already stored", header_.capture_id()));
    if (!status.ok()) {
      fail(status);
      return;
    }
    hub_->publish(host_, progress(v1::CAPTURE_STAGE_STORED, sha, header_.size(), header_.size()));
    receipt_->set_evidence_id(sha);
    receipt_->set_already_stored(true);
    finish(grpc::Status::OK);
  }

  grpc::Status differentBundle(const std::string& stored_id) const {
    return grpc::Status(
        grpc::StatusCode::ALREADY_EXISTS,
        fmt::format("capture {} already has its bundle (evidence {}); a different bundle (sha256 "
                    "{}) for it is refused",
                    capture_.capture_id, stored_id, header_.sha256()));
  }

  // fail() on the I/O thread (it writes the audit trail). REQUIRES: no read outstanding.
  void failSoon(const grpc::Status& status) {
    auto self = shared_from_this();
    if (!hub_->postIo([self, status] { self->fail(status); })) finish(status);
  }

  // I/O thread: removes the part file, audits the refusal and ends the call.
  void fail(const grpc::Status& status) {
    if (part_) part_->remove();
    spdlog::warn("evidence upload from {} refused: {}", host_.empty() ? ctx_->peer() : host_,
                 status.error_message());
    grpc::Status sent = recordCall(hub_->store_, hub_->clock_, fmt::format("agent:{}", host_),
                                   kEvidenceReceivedAction, header_.capture_id(), "", status);
    finish(sent);
  }

  void finish(const grpc::Status& status) {
    if (finished_.exchange(true)) return;
    if (admitted_) hub_->release(host_, header_.size());
    Finish(status);
  }

  EvidenceHub* const hub_;
  grpc::CallbackServerContext* const ctx_;
  v1::EvidenceReceipt* const receipt_;
  std::shared_ptr<Upload> self_;
  std::string host_;
  v1::EvidenceUpload in_;
  bool have_header_ = false;
  v1::EvidenceHeader header_;
  CaptureRow capture_;
  std::unique_ptr<PartFile> part_;
  bool admitted_ = false;  // counted in the hub's uploads in progress until finish()
  uint64_t next_progress_ = 0;
  std::atomic<bool> finished_{false};
  std::atomic<bool> reading_{false};          // a read is outstanding (the client's turn)
  std::atomic<int64_t> read_started_ms_{0};   // steady clock, when it was started
  std::atomic<bool> stalled_{false};          // cancelled by checkIdle()
};

EvidenceHub::EvidenceHub(const Clock& clock, Store& store, Fleet& fleet, EvidenceOptions options)
    : clock_(clock),
      store_(store),
      fleet_(fleet),
      options_(std::move(options)),
      files_(options_.dir) {}

EvidenceHub::~EvidenceHub() { shutdown(); }

absl::Status EvidenceHub::init() {
  if (!enabled()) return absl::OkStatus();
  if (auto s = files_.init(); !s.ok()) return s;
  fleet_.setProgressListener(
      [this](const std::string& host, const v1::CommandProgress& p) { publish(host, p); });
  return absl::OkStatus();
}

void EvidenceHub::shutdown() {
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    watchers_.clear();
  }
  fleet_.setProgressListener(nullptr);
  io_.stop();
  events_.stop();
}

grpc::ServerReadReactor<v1::EvidenceUpload>* EvidenceHub::upload(grpc::CallbackServerContext* ctx,
                                                                 v1::EvidenceReceipt* receipt) {
  auto upload = std::make_shared<Upload>(this, ctx, receipt);
  Upload* raw = upload.get();
  raw->start(std::move(upload));
  return raw;
}

grpc::Status EvidenceHub::admit(const std::string& host, uint64_t size) {
  auto stored = store_.evidenceBytesOfHost(host);
  if (!stored.ok()) {
    return grpc::Status(grpc::StatusCode::INTERNAL,
                        fmt::format("evidence store: {}", stored.status()));
  }
  auto available = files_.availableBytes();
  if (!available.ok()) {
    return grpc::Status(grpc::StatusCode::INTERNAL,
                        fmt::format("evidence store: {}", available.status()));
  }
  std::lock_guard lock(inflight_mu_);
  InFlight& mine = inflight_[host];
  auto refuse = [&](std::string why) {
    if (mine.uploads == 0) inflight_.erase(host);
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, std::move(why));
  };
  if (inflight_total_.uploads >= options_.max_uploads) {
    return refuse(
        fmt::format("{} evidence uploads are in progress, this controller's limit "
                    "(--max-evidence-uploads); retry later",
                    inflight_total_.uploads));
  }
  if (mine.uploads >= options_.max_uploads_per_host) {
    return refuse(
        fmt::format("host {} has {} evidence uploads in progress, this controller's "
                    "limit per host (--max-evidence-uploads-per-host); retry later",
                    host, mine.uploads));
  }
  if (*stored + mine.bytes + size > options_.host_quota_bytes) {
    return refuse(
        fmt::format("host {} has {} bytes of evidence stored and {} in progress; {} "
                    "more would pass its quota of {} bytes (--evidence-host-quota)",
                    host, *stored, mine.bytes, size, options_.host_quota_bytes));
  }
  const uint64_t needed = inflight_total_.bytes + size;
  if (*available < options_.reserve_bytes || *available - options_.reserve_bytes < needed) {
    return refuse(
        fmt::format("evidence store: {} bytes free; {} bytes for this bundle and {} "
                    "for uploads in progress would leave less than the {} bytes kept "
                    "free (--evidence-reserve)",
                    *available, size, inflight_total_.bytes, options_.reserve_bytes));
  }
  ++mine.uploads;
  mine.bytes += size;
  ++inflight_total_.uploads;
  inflight_total_.bytes += size;
  return grpc::Status::OK;
}

void EvidenceHub::release(const std::string& host, uint64_t size) {
  std::lock_guard lock(inflight_mu_);
  auto it = inflight_.find(host);
  if (it != inflight_.end()) {
    --it->second.uploads;
    it->second.bytes -= size;
    if (it->second.uploads == 0) inflight_.erase(it);
  }
  --inflight_total_.uploads;
  inflight_total_.bytes -= size;
}

void EvidenceHub::watch(const std::string& command_id, const std::string& host, ProgressFn fn) {
  std::lock_guard lock(mu_);
  if (!stopped_) watchers_[command_id] = Watcher{host, std::move(fn)};
}

void EvidenceHub::unwatch(const std::string& command_id) {
  std::lock_guard lock(mu_);
  watchers_.erase(command_id);
}

void EvidenceHub::publish(const std::string& host, const v1::CommandProgress& p) {
  if (p.command_id().empty()) return;
  {
    std::lock_guard lock(mu_);
    auto it = watchers_.find(p.command_id());
    if (it == watchers_.end()) return;
    if (it->second.host != host) {
      spdlog::warn("progress of command {} from host {} dropped: the command was sent to {}",
                   p.command_id(), host, it->second.host);
      return;
    }
  }
  events_.post([this, p] {
    ProgressFn fn;
    {
      std::lock_guard lock(mu_);
      auto it = watchers_.find(p.command_id());
      if (it == watchers_.end()) return;
      fn = it->second.fn;
    }
    fn(p);
  });
}

void EvidenceHub::toProto(const EvidenceRow& r, const std::vector<CustodyEntry>* custody,
                          v1::EvidenceRecord* out) {
  out->set_evidence_id(r.id);
  out->set_capture_id(r.capture_id);
  out->set_host_id(r.host_id);
  out->set_requested_by(r.requested_by);
  out->set_reason(r.reason);
  out->set_requested_at_unix_ms(r.requested_at_unix_ms);
  out->set_collected_at_unix_ms(r.collected_at_unix_ms);
  out->set_received_at_unix_ms(r.received_at_unix_ms);
  out->set_size(r.size);
  out->set_manifest_sha256(r.manifest_sha256);
  out->set_files(r.files);
  out->set_signature_ok(r.signature_ok);
  for (size_t i = 0; i < r.collector_errors.size() && i < kMaxRecordCollectorErrors; ++i) {
    out->add_collector_errors(clipped(r.collector_errors[i], kMaxRecordText));
  }
  out->set_file_name(clipped(r.file_name, kMaxHeaderFileName));
  out->set_clock_offset_ms(r.clock_offset_ms);
  if (custody == nullptr) return;
  auto toEvent = [](const CustodyEntry& e) {
    v1::CustodyEvent c;
    c.set_at_unix_ms(e.at_unix_ms);
    c.set_actor(clipped(e.actor, kMaxRecordText));
    c.set_action(clipped(e.action, kMaxRecordText));
    c.set_action_type(readCustodyAction(e.action));
    c.set_detail(clipped(e.detail, kMaxRecordText));
    c.set_prev_hash(e.prev_hash);
    c.set_hash(e.hash);
    return c;
  };
  // The first events (request, collection, receipt), then as many of the newest as fit.
  const size_t first = std::min(custody->size(), kKeptFirstCustody);
  size_t bytes = 0;
  for (size_t i = 0; i < first; ++i) {
    *out->add_custody() = toEvent((*custody)[i]);
    bytes += out->custody(static_cast<int>(i)).ByteSizeLong();
  }
  std::vector<v1::CustodyEvent> newest;
  for (size_t i = custody->size(); i > first; --i) {
    v1::CustodyEvent c = toEvent((*custody)[i - 1]);
    if (bytes + c.ByteSizeLong() > kMaxRecordCustodyBytes) break;
    bytes += c.ByteSizeLong();
    newest.push_back(std::move(c));
  }
  out->set_custody_omitted(static_cast<uint32_t>(custody->size() - first - newest.size()));
  for (auto it = newest.rbegin(); it != newest.rend(); ++it) *out->add_custody() = std::move(*it);
}

}  // namespace bulkhead::controller
