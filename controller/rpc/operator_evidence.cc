// Operator RPCs on evidence: Capture (a command to the host's agent, its progress
// streamed back, the stored record at the end), ListEvidence, GetEvidence (streamed in 1 MiB
// chunks, read from disk one chunk per completed write), VerifyEvidence and ShowEvidence (run
// on the evidence I/O thread). get, show and verify are appended to the bundle's custody record
// before the call answers; every call is audited.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <optional>
#include <random>

#include "common/callback_order.h"
#include "common/format.h"
#include "controller/rpc/audit.h"
#include "controller/rpc/operator_service.h"
#include "evidence/bundle.h"
#include "evidence/json_read.h"
#include "evidence/summary.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

namespace {

constexpr std::chrono::milliseconds kDefaultCaptureWait{300000};
constexpr size_t kDownloadChunk = 1 << 20;
constexpr int kMaxListedEvidence = 1000;    // records per ListEvidence page
constexpr size_t kMaxVerifyOutcome = 8192;  // verify's custody detail

grpc::Status noEvidenceStore() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      "this controller has no evidence store (--data-dir)");
}

// "cap-20261123T170102Z-web-03-3f2a": the request time (UTC), the host and 4 random hex digits.
std::string newCaptureId(int64_t now_ms, const std::string& host) {
  std::time_t secs = static_cast<std::time_t>(now_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  std::random_device rd;
  return fmt::format("cap-{}-{}-{:04x}", stamp, host, rd() & 0xffff);
}

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

grpc::Status internalError(const std::string& id, const std::exception& e) {
  return grpc::Status(grpc::StatusCode::INTERNAL,
                      fmt::format("evidence {}: internal error: {}", id, e.what()));
}

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

grpc::Status OperatorService::auditAccepted(const Caller& caller, OperatorAction action,
                                            const std::string& host, const std::string& reason,
                                            const std::string& detail) {
  return toGrpcStatus(recordAccepted(store_, clock_, caller.audit_name,
                                     std::string(actionName(action)), host, reason, detail));
}

grpc::Status OperatorService::findEvidence(const Caller& caller, OperatorAction action,
                                           const std::string& id, EvidenceRow* row) {
  grpc::Status status = authorized(caller, action);
  if (!status.ok()) return status;
  if (auto s = checkText("id", id, kMaxIdBytes); !s.ok()) return toGrpcStatus(s);
  if (evidence_ == nullptr || !evidence_->enabled()) return noEvidenceStore();
  if (id.empty()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "id: required");
  auto found = store_.getEvidence(id);
  if (!found.ok()) return toGrpcStatus(found.status());
  *row = *std::move(found);
  return grpc::Status::OK;
}

grpc::ServerWriteReactor<v1::CaptureEvent>* OperatorService::Capture(
    grpc::CallbackServerContext* ctx, const v1::CaptureRequest* req) {
  Caller caller = identify(*ctx);
  grpc::Status result = validated(authorized(caller, OperatorAction::kCapture), *req);
  const std::string host = req->host();
  if (result.ok() && (evidence_ == nullptr || !evidence_->enabled())) result = noEvidenceStore();
  if (result.ok() && isBlank(req->reason())) {
    result = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "--reason is required");
  } else if (result.ok() && host.empty()) {
    result = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "host: required");
  } else if (result.ok() && !fleet_.getHost(host)) {
    result = grpc::Status(grpc::StatusCode::NOT_FOUND, fmt::format("unknown host \"{}\"", host));
  } else if (result.ok() && !fleet_.online(host)) {
    result = grpc::Status(grpc::StatusCode::UNAVAILABLE, fmt::format("host {} is offline", host));
  }
  const int64_t now = clock_.nowUnixMs();
  CaptureRow row{.capture_id = newCaptureId(now, host),
                 .host_id = host,
                 .requested_by = caller.audit_name,
                 .reason = req->reason(),
                 .requested_at_unix_ms = now};
  row.command_id = fmt::format("capture-{}", row.capture_id);
  if (result.ok()) {
    if (auto s = store_.addCapture(row); !s.ok()) {
      result =
          grpc::Status(grpc::StatusCode::INTERNAL, fmt::format("recording the capture: {}", s));
    }
  }
  auto call = CaptureCall::create();
  if (!result.ok()) {
    call->end(audit(caller, OperatorAction::kCapture, host, req->reason(), result));
    return call.get();
  }
  if (auto s = auditAccepted(caller, OperatorAction::kCapture, host, req->reason(),
                             fmt::format("capture {}", row.capture_id));
      !s.ok()) {
    if (auto st = store_.setCaptureState(row.capture_id, "failed"); !st.ok()) {
      spdlog::error("capture {}: cannot record state failed: {}", row.capture_id, st);
    }
    call->end(s);
    return call.get();
  }
  std::weak_ptr<CaptureCall> weak = call;
  evidence_->watch(row.command_id, row.host_id, [weak](const v1::CommandProgress& p) {
    if (auto c = weak.lock()) c->progress(p);
  });
  v1::Command command;
  command.set_id(row.command_id);
  command.set_reason(row.reason);
  command.set_requested_by(row.requested_by);
  auto* cap = command.mutable_capture();
  cap->set_capture_id(row.capture_id);
  cap->set_controller_time_unix_ms(now);
  cap->set_collector_time_limit_ms(req->collector_time_limit_ms());
  cap->set_max_binary_bytes(req->max_binary_bytes());
  const auto wait =
      req->wait_ms() == 0 ? kDefaultCaptureWait : std::chrono::milliseconds(req->wait_ms());
  host_actions_->runFor(
      host, std::move(command), wait,
      [this, call, caller, row, wait](const HostActions::Answer& a) {
        evidence_->unwatch(row.command_id);
        grpc::Status answer;
        std::string detail = fmt::format("capture {}", row.capture_id);
        std::string state;
        std::optional<v1::EvidenceRecord> done;
        switch (a.kind) {
          case HostActions::Answer::Kind::kOffline:
            answer = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                  fmt::format("host {} is offline", row.host_id));
            state = "failed";
            break;
          case HostActions::Answer::Kind::kTimeout:
            answer = grpc::Status(
                grpc::StatusCode::DEADLINE_EXCEEDED,
                fmt::format("no answer within {} s; the bundle will be stored when it arrives",
                            (wait.count() + 999) / 1000));
            state = "timeout";
            break;
          case HostActions::Answer::Kind::kShutdown:
            answer = grpc::Status(grpc::StatusCode::UNAVAILABLE, a.error);
            break;
          case HostActions::Answer::Kind::kDone: {
            const auto& r = a.result;
            if (!r.ok()) {
              answer = grpc::Status(
                  r.refused() ? grpc::StatusCode::FAILED_PRECONDITION : grpc::StatusCode::ABORTED,
                  fmt::format("{}: capture failed: {}", row.host_id,
                              r.error().empty() ? "no error given" : r.error()));
              state = "failed";
              break;
            }
            auto ev = store_.evidenceForCapture(row.capture_id);
            absl::StatusOr<std::vector<CustodyEntry>> custody = std::vector<CustodyEntry>();
            if (ev.ok() && ev->has_value()) custody = store_.listCustody((*ev)->id);
            if (!ev.ok() || !custody.ok()) {
              answer = toGrpcStatus(!ev.ok() ? ev.status() : custody.status());
            } else if (!ev->has_value()) {
              answer = grpc::Status(
                  grpc::StatusCode::INTERNAL,
                  fmt::format("the agent reported capture {} done but no bundle is stored for it",
                              row.capture_id));
            } else {
              const EvidenceRow& e = **ev;
              done.emplace();
              EvidenceHub::toProto(e, &*custody, &*done);
              detail = fmt::format("capture {}: evidence {}, {} bytes, {} files, signature {}",
                                   row.capture_id, e.id, e.size, e.files,
                                   e.signature_ok ? "ok" : "NOT OK");
            }
            break;
          }
        }
        if (!state.empty()) {
          if (auto s = store_.setCaptureState(row.capture_id, state); !s.ok()) {
            spdlog::error("capture {}: cannot record state {}: {}", row.capture_id, state, s);
          }
        }
        call->end(audit(caller, "capture.result", row.host_id, row.reason, answer, detail),
                  std::move(done));
      });
  return call.get();
}

grpc::ServerUnaryReactor* OperatorService::ListEvidence(grpc::CallbackServerContext* ctx,
                                                        const v1::ListEvidenceRequest* req,
                                                        v1::ListEvidenceResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  Caller caller = identify(*ctx);
  grpc::Status status = validated(authorized(caller, OperatorAction::kListEvidence), *req);
  if (status.ok() && (evidence_ == nullptr || !evidence_->enabled())) status = noEvidenceStore();
  if (status.ok()) {
    auto rows = store_.listEvidence(req->host());
    if (!rows.ok()) {
      status = toGrpcStatus(rows.status());
    } else {
      size_t bytes = 0;
      size_t i = req->offset();
      for (; i < rows->size() && resp->evidence_size() < kMaxListedEvidence; ++i) {
        v1::EvidenceRecord rec;
        EvidenceHub::toProto((*rows)[i], nullptr, &rec);
        if (resp->evidence_size() > 0 && bytes + rec.ByteSizeLong() > kMaxResponseBytes) break;
        bytes += rec.ByteSizeLong();
        *resp->add_evidence() = std::move(rec);
      }
      if (i < rows->size()) resp->set_next_offset(static_cast<uint32_t>(i));
    }
  }
  reactor->Finish(audit(caller, OperatorAction::kListEvidence, req->host().empty() ? "*" : req->host(), "",
                        status,
                        status.ok() ? fmt::format("{} bundles", resp->evidence_size()) : ""));
  return reactor;
}

grpc::ServerWriteReactor<v1::EvidenceDownload>* OperatorService::GetEvidence(
    grpc::CallbackServerContext* ctx, const v1::GetEvidenceRequest* req) {
  Caller caller = identify(*ctx);
  std::optional<EvidenceRow> row(std::in_place);
  grpc::Status status = findEvidence(caller, OperatorAction::kGetEvidence, req->id(), &*row);
  if (!status.ok()) row.reset();
  int fd = -1;
  std::string path;
  if (status.ok()) {
    // The file is found by its content address, never by a path read from the database.
    auto stored = evidence_->files().bundlePath(row->id);
    if (!stored.ok()) {
      status = grpc::Status(grpc::StatusCode::DATA_LOSS,
                            fmt::format("evidence record {}", stored.status().message()));
    } else {
      path = stored->string();
      fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    }
    if (status.ok() && fd < 0) {
      status = grpc::Status(grpc::StatusCode::DATA_LOSS,
                            fmt::format("evidence {}: stored bundle {} cannot be read: {}", row->id,
                                        path, std::strerror(errno)));
    }
  }
  std::string target = row ? row->id : req->id();
  absl::StatusOr<std::vector<CustodyEntry>> custody;
  if (status.ok()) {
    CustodyEntry e{.evidence_id = row->id,
                   .at_unix_ms = clock_.nowUnixMs(),
                   .actor = caller.audit_name,
                   .action = "get",
                   .detail = fmt::format("download of {} bytes", row->size)};
    if (auto added = store_.appendCustody(e); !added.ok()) {
      status = toGrpcStatus(added.status());
    } else if (custody = store_.listCustody(row->id); !custody.ok()) {
      status = toGrpcStatus(custody.status());
    }
  }
  status = audit(caller, OperatorAction::kGetEvidence, target, "", status,
                 status.ok() ? fmt::format("{} bytes", row->size) : "");
  if (!status.ok()) {
    if (fd >= 0) ::close(fd);
    return new FailedWrite<v1::EvidenceDownload>(status);
  }
  v1::EvidenceRecord record;
  EvidenceHub::toProto(*row, &*custody, &record);
  return new DownloadCall(fd, path, std::move(record));
}

namespace {

// VerifyEvidence's checks of one stored bundle, on the evidence I/O thread: the file against
// its id and signed manifest, the signer, and the custody chain.
void verifyStored(EvidenceHub& hub, const EvidenceRow& row, v1::VerifyEvidenceResponse* resp) {
  auto problem = [resp](const std::string& file, const std::string& what) {
    auto* p = resp->add_problems();
    p->set_file(file);
    p->set_problem(what);
  };
  auto stored = hub.files().bundlePath(row.id);
  const std::filesystem::path path = stored.ok() ? *stored : std::filesystem::path();
  std::error_code ec;
  if (!stored.ok()) {
    problem("record", std::string(stored.status().message()));
  } else if (!std::filesystem::exists(path, ec)) {
    problem(path.string(), "the stored bundle is missing");
  } else {
    auto v = evidence::verifyBundle(path, {.expected_sha256 = row.id,
                                           .ca_pem = hub.options().ca_pem,
                                           .expected_host_id = row.host_id});
    if (!v.ok()) {
      problem(path.string(), fmt::format("cannot be checked: {}", v.status()));
    } else {
      // A problem of the whole archive may come without a file: name the stored bundle.
      for (const auto& p : v->problems) problem(p.file.empty() ? path.string() : p.file, p.problem);
      resp->set_files_checked(v->files_checked);
    }
  }
  auto chain = hub.store().verifyCustody(row.id);
  if (!chain.ok()) {
    problem("custody", fmt::format("cannot be checked: {}", chain.status()));
  } else if (!chain->ok) {
    problem("custody", chain->problem);
  }
  resp->set_ok(resp->problems_size() == 0);
}

}  // namespace

grpc::ServerUnaryReactor* OperatorService::VerifyEvidence(grpc::CallbackServerContext* ctx,
                                                          const v1::VerifyEvidenceRequest* req,
                                                          v1::VerifyEvidenceResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  Caller caller = identify(*ctx);
  EvidenceRow row;
  grpc::Status status = findEvidence(caller, OperatorAction::kVerifyEvidence, req->id(), &row);
  if (!status.ok()) {
    reactor->Finish(audit(caller, OperatorAction::kVerifyEvidence, req->id(), "", status));
    return reactor;
  }
  bool posted = evidence_->postIo([this, caller, row, resp, reactor] {
    try {
      verifyStored(*evidence_, row, resp);
      std::string outcome =
          resp->ok() ? fmt::format("ok: bundle, {} files, signature and custody chain intact",
                                   resp->files_checked())
                     : fmt::format("FAILED: {} problems", resp->problems_size());
      for (const auto& p : resp->problems())
        outcome += fmt::format("; {}: {}", p.file(), p.problem());
      outcome = evidence::boundedText(outcome, kMaxVerifyOutcome, false);
      grpc::Status result;
      CustodyEntry e{.evidence_id = row.id,
                     .at_unix_ms = clock_.nowUnixMs(),
                     .actor = caller.audit_name,
                     .action = "verify",
                     .detail = outcome};
      if (auto added = store_.appendCustody(e); !added.ok()) result = toGrpcStatus(added.status());
      auto custody = store_.listCustody(row.id);
      if (result.ok() && !custody.ok()) result = toGrpcStatus(custody.status());
      if (result.ok()) EvidenceHub::toProto(row, &*custody, resp->mutable_record());
      if (!resp->ok()) spdlog::error("evidence verify {}: {}", row.id, outcome);
      reactor->Finish(audit(caller, OperatorAction::kVerifyEvidence, row.id, "", result, outcome));
    } catch (const std::exception& e) {
      resp->Clear();
      reactor->Finish(audit(caller, OperatorAction::kVerifyEvidence, row.id, "", internalError(row.id, e)));
    }
  });
  if (!posted) {
    reactor->Finish(audit(caller, OperatorAction::kVerifyEvidence, row.id, "",
                          grpc::Status(grpc::StatusCode::UNAVAILABLE, "controller shutting down")));
  }
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::ShowEvidence(grpc::CallbackServerContext* ctx,
                                                        const v1::ShowEvidenceRequest* req,
                                                        v1::ShowEvidenceResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  Caller caller = identify(*ctx);
  EvidenceRow row;
  grpc::Status status = findEvidence(caller, OperatorAction::kShowEvidence, req->id(), &row);
  if (!status.ok()) {
    reactor->Finish(audit(caller, OperatorAction::kShowEvidence, req->id(), "", status));
    return reactor;
  }
  bool posted = evidence_->postIo([this, caller, row, resp, reactor] {
    try {
      auto stored = evidence_->files().bundlePath(row.id);
      const std::filesystem::path path = stored.ok() ? *stored : std::filesystem::path();
      grpc::Status result;
      std::error_code ec;
      absl::StatusOr<nlohmann::json> summary = absl::NotFoundError("");
      if (!stored.ok()) {
        result = grpc::Status(grpc::StatusCode::DATA_LOSS,
                              fmt::format("evidence record {}", stored.status().message()));
      } else if (!std::filesystem::exists(path, ec)) {
        result = grpc::Status(
            grpc::StatusCode::DATA_LOSS,
            fmt::format("evidence {}: stored bundle {} is missing", row.id, path.string()));
      } else if (summary = evidence::summarize(path); !summary.ok()) {
        result = grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                              fmt::format("evidence {}: no summary: {}", row.id, summary.status()));
      } else {
        resp->set_summary_json(
            summary->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
        CustodyEntry e{.evidence_id = row.id,
                       .at_unix_ms = clock_.nowUnixMs(),
                       .actor = caller.audit_name,
                       .action = "show",
                       .detail = "summary read"};
        auto added = store_.appendCustody(e);
        auto custody = added.ok() ? store_.listCustody(row.id)
                                  : absl::StatusOr<std::vector<CustodyEntry>>(added.status());
        if (!custody.ok()) {
          result = toGrpcStatus(custody.status());
        } else {
          EvidenceHub::toProto(row, &*custody, resp->mutable_record());
        }
      }
      if (result.ok() && resp->ByteSizeLong() > kMaxResponseBytes) {
        resp->Clear();
        result = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                              fmt::format("evidence {}: the summary is larger than {} bytes",
                                          row.id, kMaxResponseBytes));
      }
      reactor->Finish(audit(caller, OperatorAction::kShowEvidence, row.id, "", result));
    } catch (const std::exception& e) {
      resp->Clear();
      reactor->Finish(audit(caller, OperatorAction::kShowEvidence, row.id, "", internalError(row.id, e)));
    }
  });
  if (!posted) {
    reactor->Finish(audit(caller, OperatorAction::kShowEvidence, row.id, "",
                          grpc::Status(grpc::StatusCode::UNAVAILABLE, "controller shutting down")));
  }
  return reactor;
}

}  // namespace bulkhead::controller
