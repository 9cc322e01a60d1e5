// Operator RPCs on evidence: the caller is identified and the request translated;
// EvidenceService (controller/service/) authorises, checks, records and decides. Here: the
// streams. Capture writes its progress and the stored record at the end; GetEvidence streams
// the opened bundle in 1 MiB chunks, read from disk one chunk per completed write.
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "common/callback_order.h"
#include "common/format.h"
#include "controller/rpc/audit.h"
#include "controller/rpc/operator_service.h"
#include "controller/rpc/translate.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

namespace {

constexpr size_t kDownloadChunk = 1 << 20;

// One Capture call: progress events (the newest one kept while a write is outstanding; older
// ones are dropped) and one final event or error status. Owns itself (self_) until OnDone; the
// host action and the progress watcher hold references.
class CaptureCall final : public grpc::ServerWriteReactor<v1::CaptureEvent>,
                          public std::enable_shared_from_this<CaptureCall> {
 public:
  static std::shared_ptr<CaptureCall> create() {
    auto call = std::make_shared<CaptureCall>();
    call->self_ = call;
    return call;
  }

  // Thread-safe; ignored once the call is ending.
  void progress(const v1::CommandProgress& p) {
    const ReactorTurn turn(this);
    {
      std::lock_guard lock(mu_);
      if (ending_) return;
      pending_.emplace();
      *pending_->mutable_progress() = p;
    }
    pump();
  }
  // Ends the call: with `status` OK, writes `done` first. Thread-safe; the first call wins.
  void end(const grpc::Status& status, std::optional<v1::EvidenceRecord> done = std::nullopt) {
    const ReactorTurn turn(this);
    {
      std::lock_guard lock(mu_);
      if (ending_) return;
      ending_ = true;
      status_ = status;
      if (status.ok() && done) {
        last_.emplace();
        *last_->mutable_done() = *std::move(done);
      }
    }
    pump();
  }

  void OnWriteDone(bool ok) override {
    const ReactorTurn turn(this);
    {
      std::lock_guard lock(mu_);
      writing_ = false;
      if (!ok) {
        pending_.reset();
        last_.reset();
        if (!ending_) {
          ending_ = true;
          status_ = grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
        }
      }
    }
    pump();
  }
  void OnCancel() override { end(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled")); }
  void OnDone() override {
    afterEveryTurn(this);
    // The last reference held on behalf of gRPC: may delete this.
    std::shared_ptr<CaptureCall> self = std::move(self_);
  }

 private:
  // Starts the next write, or finishes once nothing is left to write.
  void pump() {
    bool write = false, finish = false;
    grpc::Status result;
    {
      std::lock_guard lock(mu_);
      if (writing_ || finished_) return;
      if (pending_) {
        current_ = *std::move(pending_);
        pending_.reset();
        write = true;
      } else if (last_) {
        current_ = *std::move(last_);
        last_.reset();
        write = true;
      } else if (ending_) {
        finished_ = true;
        finish = true;
        result = status_;
      }
      writing_ = write;
    }
    if (write) StartWrite(&current_);
    if (finish) Finish(result);
  }

  std::shared_ptr<CaptureCall> self_;
  std::mutex mu_;
  std::optional<v1::CaptureEvent> pending_;  // newest progress not yet written
  std::optional<v1::CaptureEvent> last_;     // the done event
  v1::CaptureEvent current_;                 // being written
  bool writing_ = false;
  bool ending_ = false;
  bool finished_ = false;
  grpc::Status status_;
};

// One GetEvidence call: the record, then the file in chunks, one read per completed write.
class DownloadCall final : public grpc::ServerWriteReactor<v1::EvidenceDownload> {
 public:
  // Takes `fd` (open for reading).
  DownloadCall(int fd, std::string path, v1::EvidenceRecord record)
      : fd_(fd), path_(std::move(path)) {
    const ReactorTurn turn(this);
    *msg_.mutable_record() = std::move(record);
    operationStarts(&msg_);
    StartWrite(&msg_);
  }
  ~DownloadCall() override {
    if (fd_ >= 0) ::close(fd_);
  }
  void OnWriteDone(bool ok) override {
    const ReactorTurn turn(this);
    operationDone(&msg_);   // the last write's OnWriteDone may have run on another thread
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
      return;
    }
    std::string* data = msg_.mutable_data();
    data->resize(kDownloadChunk);
    ssize_t n;
    do {
      n = ::read(fd_, data->data(), data->size());
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      Finish(grpc::Status(grpc::StatusCode::DATA_LOSS,
                          fmt::format("reading {}: {}", path_, std::strerror(errno))));
      return;
    }
    if (n == 0) {
      Finish(grpc::Status::OK);
      return;
    }
    data->resize(static_cast<size_t>(n));
    operationStarts(&msg_);
    StartWrite(&msg_);
  }
  void OnDone() override {
    afterEveryTurn(this);
    delete this;
  }

 private:
  int fd_;
  std::string path_;
  v1::EvidenceDownload msg_;
};

// A finished ServerWriteReactor that only reports `result`.
template <typename T>
class FailedWrite final : public grpc::ServerWriteReactor<T> {
 public:
  explicit FailedWrite(const grpc::Status& result) {
    const ReactorTurn turn(this);
    this->Finish(result);
  }
  void OnDone() override {
    afterEveryTurn(this);
    delete this;
  }
};

}  // namespace

grpc::ServerWriteReactor<v1::CaptureEvent>* OperatorService::Capture(
    grpc::CallbackServerContext* ctx, const v1::CaptureRequest* req) {
  auto call = CaptureCall::create();
  std::weak_ptr<CaptureCall> weak = call;
  evidence_service_.capture(
      identify(*ctx), fromProto(*req),
      [weak](const v1::CommandProgress& p) {
        if (auto c = weak.lock()) c->progress(p);
      },
      [call](const absl::Status& status, std::optional<StoredEvidence> stored) {
        std::optional<v1::EvidenceRecord> done;
        if (stored) done = toProto(*stored);
        call->end(toGrpcStatus(status), std::move(done));
      });
  return call.get();
}

grpc::ServerUnaryReactor* OperatorService::ListEvidence(grpc::CallbackServerContext* ctx,
                                                        const v1::ListEvidenceRequest* req,
                                                        v1::ListEvidenceResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto page = evidence_service_.list(identify(*ctx), fromProto(*req), [](const EvidenceRow& row) {
    return toProto(row).ByteSizeLong();
  });
  if (page.ok()) {
    for (const auto& row : page->evidence) *resp->add_evidence() = toProto(row);
    if (page->next_offset) resp->set_next_offset(*page->next_offset);
  }
  reactor->Finish(toGrpcStatus(page.status()));
  return reactor;
}

grpc::ServerWriteReactor<v1::EvidenceDownload>* OperatorService::GetEvidence(
    grpc::CallbackServerContext* ctx, const v1::GetEvidenceRequest* req) {
  auto opened = evidence_service_.get(identify(*ctx), req->id());
  if (!opened.ok()) return new FailedWrite<v1::EvidenceDownload>(toGrpcStatus(opened.status()));
  v1::EvidenceRecord record = toProto(opened->evidence());
  return new DownloadCall(opened->releaseFd(), opened->path(), std::move(record));
}

grpc::ServerUnaryReactor* OperatorService::VerifyEvidence(grpc::CallbackServerContext* ctx,
                                                          const v1::VerifyEvidenceRequest* req,
                                                          v1::VerifyEvidenceResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  evidence_service_.verify(
      identify(*ctx), req->id(),
      [resp, reactor](const absl::Status& status, const EvidenceVerification& result) {
        if (status.ok()) *resp = toProto(result);
        reactor->Finish(toGrpcStatus(status));
      });
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::ShowEvidence(grpc::CallbackServerContext* ctx,
                                                        const v1::ShowEvidenceRequest* req,
                                                        v1::ShowEvidenceResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  evidence_service_.show(
      identify(*ctx), req->id(),
      [](const ShownEvidence& shown) { return toProto(shown).ByteSizeLong(); },
      [resp, reactor](const absl::Status& status, const ShownEvidence& shown) {
        if (status.ok()) *resp = toProto(shown);
        reactor->Finish(toGrpcStatus(status));
      });
  return reactor;
}

}  // namespace bulkhead::controller
