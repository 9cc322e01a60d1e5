#include "controller/rpc/evidence.h"

#include <spdlog/spdlog.h>

#include <functional>

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

// What a record carries when it is sent: custody events up to this many bytes (the first
// kKeptFirstCustody and then the newest), collector errors up to kMaxRecordCollectorErrors.
constexpr size_t kMaxRecordCustodyBytes = 1 << 20;
constexpr size_t kKeptFirstCustody = 3;
constexpr size_t kMaxRecordCollectorErrors = evidence::kMaxCollectorErrors + 1;
constexpr size_t kMaxRecordText = 8192;

// Agent text as kept or echoed: clipped, control characters and invalid UTF-8 escaped.
std::string shown(const std::string& text, size_t max) { return evidence::boundedText(text, max); }
// Stored text as sent: clipped, kept valid UTF-8, otherwise as stored.
std::string clipped(const std::string& text, size_t max) {
  return evidence::boundedText(text, max, false);
}

}  // namespace

// One upload's transport: the header, then chunks, read from the stream and handed to its
// IncomingUpload (controller/service/evidence_intake.h), whose blocking steps (the header
// against the capture, the final fsync, hash check, rename, verification and store) run on the
// hub's I/O thread. Owns itself (self_) until OnDone; work posted to the I/O thread holds a
// reference too.
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
    const auto host = hub_->fleet_.getHost(id->name);
    intake_ = hub_->intake_.receive(
        id->name, host && !host->host().tenant().empty() ? host->host().tenant() : kDefaultTenant);
    readNext();
    watchIdle(hub_->options_.idle_timeout);
  }

  void OnReadDone(bool ok) override {
    const ReactorTurn turn(this);
    operationDone(&in_);
    reading_ = false;
    if (!ok && stalled_) {
      failSoon(absl::DeadlineExceededError(fmt::format(
          "upload of capture {} stalled: nothing received for {} ms after {} of {} "
          "bytes (--evidence-idle-timeout); cancelled, nothing stored",
          shown(intake_->header().capture_id, kMaxUploadCaptureId),
          hub_->options_.idle_timeout.count(), intake_->received(), intake_->header().size)));
      return;
    }
    if (!have_header_) {
      onHeader(ok);
      return;
    }
    if (!ok) {
      if (auto s = intake_->endOfData(); !s.ok()) {
        failSoon(s);
        return;
      }
      auto self = shared_from_this();
      if (!hub_->postIo([self] { self->guarded(&Upload::complete); })) finish(shuttingDown());
      return;
    }
    if (!in_.has_data()) {
      failSoon(absl::InvalidArgumentError("an upload has one header, then data messages only"));
      return;
    }
    if (auto s = intake_->append(in_.data()); !s.ok()) {
      failSoon(s);
      return;
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

  void onHeader(bool ok) {
    if (!ok) {
      failSoon(absl::InvalidArgumentError("upload ended before its header"));
      return;
    }
    if (!in_.has_header()) {
      failSoon(absl::InvalidArgumentError("the first message of an upload must be its header"));
      return;
    }
    const v1::EvidenceHeader& h = in_.header();
    have_header_ = true;
    if (auto s = intake_->setHeader({.capture_id = h.capture_id(),
                                     .command_id = h.command_id(),
                                     .file_name = h.file_name(),
                                     .sha256 = h.sha256(),
                                     .size = h.size()});
        !s.ok()) {
      failSoon(s);
      return;
    }
    auto self = shared_from_this();
    if (!hub_->postIo([self] { self->guarded(&Upload::begin); })) finish(shuttingDown());
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
                   self->intake_->host(), self->idleFor());
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
      fail(absl::InternalError(fmt::format("upload of capture {}: internal error: {}",
                                           shown(intake_->header().capture_id, kMaxUploadCaptureId),
                                           e.what())));
    } catch (...) {
      fail(absl::InternalError(
          fmt::format("upload of capture {}: internal error",
                      shown(intake_->header().capture_id, kMaxUploadCaptureId))));
    }
  }

  // I/O thread: the header against the capture and the limits; then the bytes, or at once
  // the receipt of a bundle already stored.
  void begin() {
    auto begun = intake_->begin();
    if (!begun.ok()) {
      fail(begun.status());
    } else if (begun->has_value()) {
      answer(**begun);
    } else {
      readNext();
    }
  }

  // I/O thread: every byte has come.
  void complete() {
    auto receipt = intake_->complete();
    if (!receipt.ok()) {
      fail(receipt.status());
      return;
    }
    answer(*receipt);
  }

  void answer(const UploadReceipt& receipt) {
    receipt_->set_evidence_id(receipt.evidence_id);
    if (receipt.already_stored) receipt_->set_already_stored(true);
    finish(grpc::Status::OK);
  }

  // fail() on the I/O thread (it writes the audit trail). REQUIRES: no read outstanding.
  void failSoon(const absl::Status& status) {
    auto self = shared_from_this();
    if (!hub_->postIo([self, status] { self->fail(status); })) finish(toGrpcStatus(status));
  }

  // I/O thread: the refusal is audited (the part file removed) and the call ended.
  void fail(const absl::Status& status) { finish(toGrpcStatus(intake_->refuse(status))); }

  void finish(const grpc::Status& status) {
    if (finished_.exchange(true)) return;
    if (intake_) intake_->release();
    Finish(status);
  }

  EvidenceHub* const hub_;
  grpc::CallbackServerContext* const ctx_;
  v1::EvidenceReceipt* const receipt_;
  std::shared_ptr<Upload> self_;
  std::unique_ptr<IncomingUpload> intake_;  // set in start() once the peer is an agent
  v1::EvidenceUpload in_;
  bool have_header_ = false;
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
      files_(options_.dir),
      intake_(clock, store, files_, options_, std::bind_front(&EvidenceHub::publish, this)) {}

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
  out->set_file_name(clipped(r.file_name, kMaxUploadFileName));
  out->set_clock_offset_ms(r.clock_offset_ms);
  out->set_tenant(r.tenant);
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
