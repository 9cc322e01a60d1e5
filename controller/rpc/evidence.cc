#include "controller/rpc/evidence.h"

#include <spdlog/spdlog.h>

#include "common/format.h"
#include "common/tls.h"
#include "controller/rpc/audit.h"
#include "evidence/bundle.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

namespace {

bool isSha256Hex(const std::string& s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

int64_t jsonInt(const nlohmann::json& doc, const char* key) {
  if (!doc.is_object() || !doc.contains(key) || !doc[key].is_number()) return 0;
  return doc[key].get<int64_t>();
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
    host_ = id->name;
    StartRead(&in_);
  }

  void OnReadDone(bool ok) override {
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
      if (!hub_->postIo([self] { self->complete(); })) finish(shuttingDown());
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
      hub_->publish(progress("uploading", "", part_->size(), expected));
    }
    StartRead(&in_);
  }

  void OnDone() override {
    // The last reference held on behalf of gRPC: may delete this.
    std::shared_ptr<Upload> self = std::move(self_);
  }

 private:
  static grpc::Status shuttingDown() {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "controller shutting down");
  }

  v1::CommandProgress progress(const std::string& stage, const std::string& detail, uint64_t done,
                               uint64_t total) const {
    v1::CommandProgress p;
    p.set_command_id(header_.command_id());
    p.set_stage(stage);
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
    } else if (!isSha256Hex(header_.sha256())) {
      bad = grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          fmt::format("header.sha256: \"{}\" is not 64 lowercase hex digits", header_.sha256()));
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
    if (!hub_->postIo([self] { self->checkHeader(); })) finish(shuttingDown());
  }

  // I/O thread: the capture must have been requested for this host.
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
    auto part = hub_->files_.createPart(header_.capture_id());
    if (!part.ok()) {
      fail(grpc::Status(grpc::StatusCode::INTERNAL,
                        fmt::format("evidence store: {}", part.status())));
      return;
    }
    part_ = *std::move(part);
    hub_->publish(progress("uploading", "", 0, header_.size()));
    StartRead(&in_);
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
    row.file_name = header_.file_name();
    row.path = EvidenceFiles::relativePath(sha);
    std::string check;  // the verification's outcome, for the custody record and the audit
    auto v = evidence::verifyBundle(
        stored,
        {.expected_sha256 = sha, .ca_pem = hub_->options_.ca_pem, .expected_host_id = host_});
    if (!v.ok()) {
      check = fmt::format("NOT CHECKED: {}", v.status());
    } else {
      row.signature_ok = v->signature_ok;
      row.collected_at_unix_ms = jsonInt(v->manifest, "finished_at_unix_ms");
      row.clock_offset_ms = jsonInt(v->manifest, "clock_offset_ms");
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
    events[0].action = "requested";
    events[0].detail =
        fmt::format("capture {} of {}: {}", capture_.capture_id, host_, capture_.reason);
    events[1].at_unix_ms = row.collected_at_unix_ms;
    events[1].actor = actor;
    events[1].action = "collected";
    events[1].detail = fmt::format("{} files, manifest sha256 {}, clock offset {} ms", row.files,
                                   row.manifest_sha256.empty() ? "unknown" : row.manifest_sha256,
                                   row.clock_offset_ms);
    events[2].at_unix_ms = now;
    events[2].actor = actor;
    events[2].action = "received";
    events[2].detail = fmt::format("{} bytes, sha256 {}, signature {}; {}", row.size, sha,
                                   row.signature_ok ? "ok" : "NOT OK", check);
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
        recordCall(hub_->store_, hub_->clock_, actor, "evidence-received", sha, capture_.reason,
                   grpc::Status::OK,
                   fmt::format("capture {}, {} bytes, signature {}; {}", capture_.capture_id,
                               row.size, row.signature_ok ? "ok" : "NOT OK", check));
    if (!status.ok()) {
      fail(status);
      return;
    }
    hub_->publish(progress("stored", sha, row.size, row.size));
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
    e.action = "received";
    e.detail = fmt::format("again (capture {}): identical to the stored copy, which is kept",
                           header_.capture_id());
    if (auto row = hub_->store_.appendCustody(e); !row.ok()) {
      fail(grpc::Status(grpc::StatusCode::INTERNAL,
                        fmt::format("evidence store: custody of {}: {}", sha, row.status())));
      return;
    }
    grpc::Status status = recordCall(
        hub_->store_, hub_->clock_, actor, "evidence-received", sha, capture_.reason,
        grpc::Status::OK, fmt::format("capture {}: already stored", header_.capture_id()));
    if (!status.ok()) {
      fail(status);
      return;
    }
    hub_->publish(progress("stored", sha, header_.size(), header_.size()));
    receipt_->set_evidence_id(sha);
    receipt_->set_already_stored(true);
    finish(grpc::Status::OK);
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
                                   "evidence-received", header_.capture_id(), "", status);
    finish(sent);
  }

  void finish(const grpc::Status& status) {
    if (finished_.exchange(true)) return;
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
  uint64_t next_progress_ = 0;
  std::atomic<bool> finished_{false};
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
      [this](const std::string&, const v1::CommandProgress& p) { publish(p); });
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

void EvidenceHub::watch(const std::string& command_id, ProgressFn fn) {
  std::lock_guard lock(mu_);
  if (!stopped_) watchers_[command_id] = std::move(fn);
}

void EvidenceHub::unwatch(const std::string& command_id) {
  std::lock_guard lock(mu_);
  watchers_.erase(command_id);
}

void EvidenceHub::publish(const v1::CommandProgress& p) {
  if (p.command_id().empty()) return;
  {
    std::lock_guard lock(mu_);
    if (!watchers_.contains(p.command_id())) return;
  }
  events_.post([this, p] {
    ProgressFn fn;
    {
      std::lock_guard lock(mu_);
      auto it = watchers_.find(p.command_id());
      if (it == watchers_.end()) return;
      fn = it->second;
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
  for (const auto& e : r.collector_errors) out->add_collector_errors(e);
  out->set_file_name(r.file_name);
  out->set_clock_offset_ms(r.clock_offset_ms);
  if (custody == nullptr) return;
  for (const auto& e : *custody) {
    auto* c = out->add_custody();
    c->set_at_unix_ms(e.at_unix_ms);
    c->set_actor(e.actor);
    c->set_action(e.action);
    c->set_detail(e.detail);
    c->set_prev_hash(e.prev_hash);
    c->set_hash(e.hash);
  }
}

}  // namespace bulkhead::controller
