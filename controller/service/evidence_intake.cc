#include "controller/service/evidence_intake.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <utility>
#include <vector>

#include "common/format.h"
#include "controller/service/audit.h"
#include "controller/service/record_text.h"
#include "evidence/bundle.h"
#include "evidence/json_read.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

namespace {

// Custody details the controller writes from a bundle's verification.
constexpr size_t kMaxCustodyDetail = 8192;

bool isSha256Hex(const std::string& s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// Agent text as kept or echoed: clipped, control characters and invalid UTF-8 escaped.
std::string shown(const std::string& text, size_t max) { return evidence::boundedText(text, max); }

absl::Status storeError(const absl::Status& s) {
  return absl::InternalError(fmt::format("evidence store: {}", s));
}

}  // namespace

absl::Status checkUploadHeader(const UploadHeader& header, uint64_t max_bytes) {
  if (header.capture_id.empty()) return absl::InvalidArgumentError("header.capture_id: required");
  if (header.capture_id.size() > kMaxUploadCaptureId) {
    return absl::InvalidArgumentError(fmt::format("header.capture_id: {} bytes, more than {}",
                                                  header.capture_id.size(), kMaxUploadCaptureId));
  }
  if (header.command_id.size() > kMaxUploadCommandId) {
    return absl::InvalidArgumentError(fmt::format("header.command_id: {} bytes, more than {}",
                                                  header.command_id.size(), kMaxUploadCommandId));
  }
  if (header.file_name.size() > kMaxUploadFileName) {
    return absl::InvalidArgumentError(fmt::format("header.file_name: {} bytes, more than {}",
                                                  header.file_name.size(), kMaxUploadFileName));
  }
  if (!isSha256Hex(header.sha256)) {
    return absl::InvalidArgumentError(fmt::format(
        "header.sha256: \"{}\" is not 64 lowercase hex digits", shown(header.sha256, 80)));
  }
  if (header.size == 0) return absl::InvalidArgumentError("header.size: 0 (an empty bundle)");
  if (header.size > max_bytes) {
    return absl::ResourceExhaustedError(
        fmt::format("bundle of capture {} is {} bytes, above this controller's limit of {} bytes "
                    "(--max-evidence-bytes)",
                    header.capture_id, header.size, max_bytes));
  }
  return absl::OkStatus();
}

EvidenceIntake::EvidenceIntake(const Clock& clock, Store& store, EvidenceFiles& files,
                               EvidenceIntakeOptions options, ProgressFn progress)
    : clock_(clock),
      store_(store),
      files_(files),
      options_(std::move(options)),
      progress_(std::move(progress)) {}

std::unique_ptr<IncomingUpload> EvidenceIntake::receive(std::string host, std::string tenant) {
  return std::make_unique<IncomingUpload>(*this, std::move(host), std::move(tenant));
}

absl::Status EvidenceIntake::admit(const std::string& host, uint64_t size) {
  auto stored = store_.evidenceBytesOfHost(host);
  if (!stored.ok()) return storeError(stored.status());
  auto available = files_.availableBytes();
  if (!available.ok()) return storeError(available.status());
  std::lock_guard lock(mu_);
  InFlight& mine = inflight_[host];
  auto refuse = [&](const std::string& why) {
    if (mine.uploads == 0) inflight_.erase(host);
    return absl::ResourceExhaustedError(why);
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
  return absl::OkStatus();
}

void EvidenceIntake::release(const std::string& host, uint64_t size) {
  std::lock_guard lock(mu_);
  auto it = inflight_.find(host);
  if (it != inflight_.end()) {
    --it->second.uploads;
    it->second.bytes -= size;
    if (it->second.uploads == 0) inflight_.erase(it);
  }
  --inflight_total_.uploads;
  inflight_total_.bytes -= size;
}

IncomingUpload::IncomingUpload(EvidenceIntake& intake, std::string host, std::string tenant)
    : intake_(intake),
      host_(std::move(host)),
      actor_{.name = fmt::format("agent:{}", host_), .tenant = std::move(tenant)} {}

IncomingUpload::~IncomingUpload() = default;

uint64_t IncomingUpload::received() const { return part_ ? part_->size() : 0; }

v1::CommandProgress IncomingUpload::progress(v1::CaptureStage stage, const std::string& detail,
                                             uint64_t done, uint64_t total) const {
  v1::CommandProgress p;
  // The command the controller created for this capture, never the header's claim.
  p.set_command_id(capture_.command_id);
  p.set_capture_stage(stage);
  p.set_detail(detail);
  p.set_done(done);
  p.set_total(total);
  return p;
}

absl::Status IncomingUpload::setHeader(UploadHeader header) {
  header_ = std::move(header);
  return checkUploadHeader(header_, intake_.options_.max_bytes);
}

absl::StatusOr<std::optional<UploadReceipt>> IncomingUpload::begin() {
  Store& store = intake_.store_;
  auto capture = store.getCapture(header_.capture_id);
  if (!capture.ok()) return capture.status();
  if (capture->host_id != host_) {
    return absl::PermissionDeniedError(
        fmt::format("capture {} was requested for host {}, not for {}", header_.capture_id,
                    capture->host_id, host_));
  }
  capture_ = *std::move(capture);
  auto prior = store.evidenceForCapture(capture_.capture_id);
  if (!prior.ok()) return storeError(prior.status());
  if (prior->has_value()) {
    if ((*prior)->id != header_.sha256) return differentBundle((*prior)->id);
    // A retry after a lost receipt: the stored bytes are the ones announced.
    return alreadyStored(header_.sha256, intake_.clock_.nowUnixMs());
  }
  if (auto admitted = intake_.admit(host_, header_.size); !admitted.ok()) return admitted;
  admitted_ = true;
  auto part = intake_.files_.createPart(header_.capture_id);
  if (!part.ok()) return storeError(part.status());
  part_ = *std::move(part);
  intake_.progress_(host_, progress(v1::CAPTURE_STAGE_UPLOADING, "", 0, header_.size));
  return std::nullopt;
}

absl::Status IncomingUpload::append(std::string_view data) {
  const uint64_t expected = header_.size;
  if (data.size() > expected - part_->size()) {
    return absl::InvalidArgumentError(
        fmt::format("upload of capture {}: more bytes than the header's size {}; nothing stored",
                    header_.capture_id, expected));
  }
  if (auto s = part_->write(data); !s.ok()) return storeError(s);
  if (part_->size() >= next_progress_ || part_->size() == expected) {
    next_progress_ = part_->size() + intake_.options_.progress_every;
    intake_.progress_(host_, progress(v1::CAPTURE_STAGE_UPLOADING, "", part_->size(), expected));
  }
  return absl::OkStatus();
}

absl::Status IncomingUpload::endOfData() const {
  if (received() == header_.size) return absl::OkStatus();
  return absl::InvalidArgumentError(
      fmt::format("upload of capture {} ended after {} of {} bytes; nothing stored",
                  header_.capture_id, received(), header_.size));
}

absl::StatusOr<UploadReceipt> IncomingUpload::complete() {
  Store& store = intake_.store_;
  EvidenceFiles& files = intake_.files_;
  const std::string sha = part_->finishHash();
  if (auto s = part_->syncAndClose(); !s.ok()) return storeError(s);
  if (sha != header_.sha256) {
    return absl::DataLossError(
        fmt::format("upload of capture {}: sha256 mismatch: the header says {}, the {} bytes "
                    "received hash to {}; nothing stored",
                    header_.capture_id, header_.sha256, part_->size(), sha));
  }
  // Another upload of this capture may have been stored while this one was receiving.
  auto prior = store.evidenceForCapture(capture_.capture_id);
  if (!prior.ok()) return storeError(prior.status());
  if (prior->has_value()) {
    part_->remove();
    if ((*prior)->id != sha) return differentBundle((*prior)->id);
    return alreadyStored(sha, intake_.clock_.nowUnixMs());
  }
  bool file_existed = false;
  if (auto s = files.commit(*part_, sha, &file_existed); !s.ok()) return storeError(s);
  const int64_t now = intake_.clock_.nowUnixMs();
  auto existing = store.getEvidence(sha);
  if (existing.ok()) return alreadyStored(sha, now);
  if (existing.status().code() != absl::StatusCode::kNotFound) {
    return storeError(existing.status());
  }
  EvidenceRow row;
  row.id = sha;
  row.capture_id = capture_.capture_id;
  row.host_id = host_;
  row.requested_by = capture_.requested_by;
  row.reason = capture_.reason;
  row.requested_at_unix_ms = capture_.requested_at_unix_ms;
  row.received_at_unix_ms = now;
  row.size = part_->size();
  row.file_name = shown(header_.file_name, kMaxUploadFileName);
  row.path = EvidenceFiles::relativePath(sha);
  std::string check;  // the verification's outcome, for the custody record and the audit
  auto v = evidence::verifyBundle(
      files.absolute(row.path),
      {.expected_sha256 = sha, .ca_pem = intake_.options_.ca_pem, .expected_host_id = host_});
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
  events[1].actor = actor_.name;
  events[1].action = kCustodyCollected;
  events[1].detail = fmt::format("{} files, manifest sha256 {}, clock offset {} ms", row.files,
                                 row.manifest_sha256.empty() ? "unknown" : row.manifest_sha256,
                                 row.clock_offset_ms);
  events[2].at_unix_ms = now;
  events[2].actor = actor_.name;
  events[2].action = kCustodyReceived;
  events[2].detail = shown(fmt::format("{} bytes, sha256 {}, signature {}; {}", row.size, sha,
                                       row.signature_ok ? "ok" : "NOT OK", check),
                           kMaxCustodyDetail);
  auto added = store.addEvidence(row, events);
  if (!added.ok() && added.status().code() == absl::StatusCode::kAlreadyExists) {
    return alreadyStored(sha, now);  // the same bundle raced in on another upload
  }
  if (!added.ok()) {
    // The file is stored; the agent keeps its copy and uploads again, which records it.
    return absl::InternalError(
        fmt::format("evidence store: cannot record {}: {}", sha, added.status()));
  }
  if (auto s = recordCall(store, intake_.clock_, actor_, kEvidenceReceivedAction, sha,
                          capture_.reason, absl::OkStatus(),
                          fmt::format("capture {}, {} bytes, signature {}; {}", capture_.capture_id,
                                      row.size, row.signature_ok ? "ok" : "NOT OK", check));
      !s.ok()) {
    return s;
  }
  intake_.progress_(host_, progress(v1::CAPTURE_STAGE_STORED, sha, row.size, row.size));
  spdlog::info("evidence {} stored: capture {} of {}, {} bytes", sha, capture_.capture_id, host_,
               row.size);
  return UploadReceipt{.evidence_id = sha};
}

// A bundle already recorded arrived again (a retried upload): noted in its custody record.
absl::StatusOr<UploadReceipt> IncomingUpload::alreadyStored(const std::string& sha, int64_t now) {
  Store& store = intake_.store_;
  CustodyEntry e;
  e.evidence_id = sha;
  e.at_unix_ms = now;
  e.actor = actor_.name;
  e.action = kCustodyReceived;
  e.detail = fmt::format("again (capture {}): same sha256 as the stored copy, which is kept",
                         header_.capture_id);
  if (auto row = store.appendCustody(e); !row.ok()) {
    return absl::InternalError(fmt::format("evidence store: custody of {}: {}", sha, row.status()));
  }
  if (auto s = recordCall(store, intake_.clock_, actor_, kEvidenceReceivedAction, sha,
                          capture_.reason, absl::OkStatus(),
                          fmt::format("capture {}: already stored", header_.capture_id));
      !s.ok()) {
    return s;
  }
  intake_.progress_(host_, progress(v1::CAPTURE_STAGE_STORED, sha, header_.size, header_.size));
  return UploadReceipt{.evidence_id = sha, .already_stored = true};
}

absl::Status IncomingUpload::differentBundle(const std::string& stored_id) const {
  return absl::AlreadyExistsError(
      fmt::format("capture {} already has its bundle (evidence {}); a different bundle (sha256 "
                  "{}) for it is refused",
                  capture_.capture_id, stored_id, header_.sha256));
}

absl::Status IncomingUpload::refuse(const absl::Status& why) {
  if (part_) part_->remove();
  spdlog::warn("evidence upload from {} refused: {}", host_, why.message());
  return recordCall(intake_.store_, intake_.clock_, actor_, kEvidenceReceivedAction,
                    header_.capture_id, "", why);
}

void IncomingUpload::release() {
  if (!admitted_) return;
  admitted_ = false;
  intake_.release(host_, header_.size);
}

}  // namespace bulkhead::controller
