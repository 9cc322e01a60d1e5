#include "controller/service/evidence_service.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <exception>
#include <filesystem>
#include <random>
#include <utility>

#include "common/format.h"
#include "common/identity.h"
#include "controller/core/validate.h"
#include "controller/service/audit.h"
#include "controller/service/record_text.h"
#include "controller/service/tenancy.h"
#include "evidence/bundle.h"
#include "evidence/json_read.h"
#include "evidence/summary.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

namespace {

constexpr std::chrono::milliseconds kDefaultCaptureWait{300000};
constexpr size_t kMaxListedEvidence = 1000;  // records per page
constexpr size_t kMaxVerifyOutcome = 8192;   // verify's custody detail

absl::Status noEvidenceStore() {
  return absl::UnavailableError("this controller has no evidence store (--data-dir)");
}

absl::Status internalError(const std::string& id, const std::exception& e) {
  return absl::InternalError(fmt::format("evidence {}: internal error: {}", id, e.what()));
}

absl::Status shuttingDown() { return absl::UnavailableError("controller shutting down"); }

// The checks of one stored bundle: the file against its id and signed manifest, the signer,
// and the custody chain. Blocks on disk.
void verifyStored(EvidenceBackend& backend, Store& store, const EvidenceRow& row,
                  EvidenceVerification* out) {
  auto problem = [out](const std::string& file, const std::string& what) {
    out->problems.push_back(BundleProblem{.file = file, .problem = what});
  };
  auto stored = backend.files().bundlePath(row.id);
  const std::filesystem::path path = stored.ok() ? *stored : std::filesystem::path();
  std::error_code ec;
  if (!stored.ok()) {
    problem("record", std::string(stored.status().message()));
  } else if (!std::filesystem::exists(path, ec)) {
    problem(path.string(), "the stored bundle is missing");
  } else {
    auto v = evidence::verifyBundle(
        path,
        {.expected_sha256 = row.id, .ca_pem = backend.caPem(), .expected_host_id = row.host_id});
    if (!v.ok()) {
      problem(path.string(), fmt::format("cannot be checked: {}", v.status()));
    } else {
      // A problem of the whole archive may come without a file: name the stored bundle.
      for (const auto& p : v->problems) problem(p.file.empty() ? path.string() : p.file, p.problem);
      out->files_checked = v->files_checked;
    }
  }
  auto chain = store.verifyCustody(row.id);
  if (!chain.ok()) {
    problem("custody", fmt::format("cannot be checked: {}", chain.status()));
  } else if (!chain->ok) {
    problem("custody", chain->problem);
  }
  out->ok = out->problems.empty();
}

}  // namespace

std::string newCaptureId(int64_t now_ms, const std::string& host) {
  std::time_t secs = static_cast<std::time_t>(now_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  std::random_device rd;
  return fmt::format("cap-{}-{}-{:04x}", stamp, host, rd() & 0xffff);
}

OpenedBundle::OpenedBundle(int fd, std::string path, StoredEvidence evidence)
    : fd_(fd), path_(std::move(path)), evidence_(std::move(evidence)) {}

OpenedBundle::~OpenedBundle() {
  if (fd_ >= 0) ::close(fd_);
}

OpenedBundle::OpenedBundle(OpenedBundle&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      path_(std::move(other.path_)),
      evidence_(std::move(other.evidence_)) {}

int OpenedBundle::releaseFd() { return std::exchange(fd_, -1); }

EvidenceService::EvidenceService(const Clock& clock, Store& store, HostDirectory& hosts,
                                 HostActions& actions, EvidenceBackend* evidence)
    : clock_(clock), store_(store), hosts_(hosts), actions_(actions), evidence_(evidence) {}

absl::StatusOr<std::filesystem::path> EvidenceService::bundlePath(const std::string& id) const {
  if (evidence_ == nullptr) return absl::UnavailableError("this controller stores no evidence");
  return evidence_->files().bundlePath(id);
}

AuditActor EvidenceService::actorOn(const Caller& caller, const std::string& host_id) {
  return auditActorOn(caller, tenantOfHost(host_id));
}

std::string EvidenceService::tenantOfHost(const std::string& host_id) {
  const auto host = hosts_.getHost(host_id);
  return tenantOrDefault(host ? host->host().tenant() : std::string());
}

absl::Status EvidenceService::audit(const AuditActor& actor, const std::string& action,
                                    const std::string& target, const std::string& reason,
                                    const absl::Status& result, const std::string& detail) {
  return recordCall(store_, clock_, actor, action, target, reason, result, detail);
}

absl::Status EvidenceService::audit(const AuditActor& actor, OperatorAction action,
                                    const std::string& target, const std::string& reason,
                                    const absl::Status& result, const std::string& detail) {
  return audit(actor, auditAction(action), target, reason, result, detail);
}

absl::StatusOr<EvidenceRow> EvidenceService::find(const Caller& caller, OperatorAction action,
                                                  const std::string& id) {
  if (auto s = authorize(caller, action); !s.ok()) return s;
  if (auto s = checkText("id", id, kMaxIdBytes); !s.ok()) return s;
  if (evidence_ == nullptr || !evidence_->enabled()) return noEvidenceStore();
  if (id.empty()) return absl::InvalidArgumentError("id: required");
  auto row = store_.getEvidence(id);
  if (row.ok() && !reaches(caller, action, row->host_id)) {
    // Another tenant's bundle, or one of a host out of reach, reads exactly as an unknown id
    // (the store's own words for one).
    std::string want = id;
    for (char& ch : want) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return absl::NotFoundError(fmt::format("no evidence with id {}", want));
  }
  if (row.ok()) row->tenant = tenantOfHost(row->host_id);
  return row;
}

bool EvidenceService::reaches(const Caller& caller, OperatorAction action,
                              const std::string& host_id) {
  const Role needed = ruleFor(action).min_role;
  if (auto host = hosts_.getHost(host_id)) return roleOnHost(caller, host->host()) >= needed;
  // A host the fleet no longer knows: its bundles stay with tenant default.
  v1::HostSummary gone;
  gone.set_host_id(host_id);
  return roleOnHost(caller, gone) >= needed;
}

absl::StatusOr<StoredEvidence> EvidenceService::withCustody(const Caller& caller,
                                                            const EvidenceRow& row,
                                                            const std::string& action,
                                                            const std::string& detail) {
  CustodyEntry e{.evidence_id = row.id,
                 .at_unix_ms = clock_.nowUnixMs(),
                 .actor = caller.audit_name,
                 .action = action,
                 .detail = detail};
  if (auto added = store_.appendCustody(e); !added.ok()) return added.status();
  auto custody = store_.listCustody(row.id);
  if (!custody.ok()) return custody.status();
  return StoredEvidence{.row = row, .custody = *std::move(custody)};
}

void EvidenceService::capture(const Caller& caller, const CaptureRequest& req,
                              EvidenceBackend::ProgressFn progress, CaptureDone done) {
  absl::Status result = authorize(caller, OperatorAction::kCapture);
  if (result.ok()) result = validateRequest(req);
  const std::string& host = req.host;
  if (result.ok() && (evidence_ == nullptr || !evidence_->enabled())) result = noEvidenceStore();
  // A capture of a host the caller reaches is a row of the host's tenant; a refused one is
  // the call's (an unknown host tells nothing of its tenant).
  AuditActor actor = auditActor(caller);
  if (result.ok() && isBlank(req.reason)) {
    result = absl::InvalidArgumentError("--reason is required");
  } else if (result.ok() && host.empty()) {
    result = absl::InvalidArgumentError("host: required");
  } else if (auto found = result.ok() ? hosts_.getHost(host) : std::nullopt;
             result.ok() && (!found || roleOnHost(caller, found->host()) <
                                           ruleFor(OperatorAction::kCapture).min_role)) {
    // Another tenant's host, or one out of the caller's reach, reads exactly as unknown.
    result = absl::NotFoundError(fmt::format("unknown host \"{}\"", host));
  } else if (result.ok()) {
    actor = auditActorOn(caller, found->host().tenant());
    if (!hosts_.online(host)) {
      result = absl::UnavailableError(fmt::format("host {} is offline", host));
    }
  }
  const int64_t now = clock_.nowUnixMs();
  CaptureRow row{.capture_id = newCaptureId(now, host),
                 .host_id = host,
                 .requested_by = caller.audit_name,
                 .reason = req.reason,
                 .requested_at_unix_ms = now,
                 .incident = actor.incident,
                 .incident_tenant = actor.incident.empty() ? "" : actor.tenant};
  row.command_id = fmt::format("capture-{}", row.capture_id);
  if (result.ok()) {
    if (auto s = store_.addCapture(row); !s.ok()) {
      result = absl::InternalError(fmt::format("recording the capture: {}", s));
    }
  }
  if (!result.ok()) {
    done(audit(actor, OperatorAction::kCapture, host, req.reason, result), std::nullopt);
    return;
  }
  if (auto s = recordAccepted(store_, clock_, actor, auditAction(OperatorAction::kCapture), host,
                              req.reason, fmt::format("capture {}", row.capture_id));
      !s.ok()) {
    if (auto st = store_.setCaptureState(row.capture_id, "failed"); !st.ok()) {
      spdlog::error("capture {}: cannot record state failed: {}", row.capture_id, st);
    }
    done(s, std::nullopt);
    return;
  }
  evidence_->watch(row.command_id, row.host_id, std::move(progress));
  v1::Command command;
  command.set_id(row.command_id);
  command.set_reason(row.reason);
  command.set_requested_by(row.requested_by);
  auto* cap = command.mutable_capture();
  cap->set_capture_id(row.capture_id);
  cap->set_controller_time_unix_ms(now);
  cap->set_collector_time_limit_ms(req.collector_time_limit_ms);
  cap->set_max_binary_bytes(req.max_binary_bytes);
  const auto wait = req.wait_ms == 0 ? kDefaultCaptureWait : std::chrono::milliseconds(req.wait_ms);
  actions_.runFor(
      host, std::move(command), wait,
      [this, done = std::move(done), caller, actor, row, wait](const HostActions::Answer& a) {
        evidence_->unwatch(row.command_id);
        absl::Status answer;
        std::string detail = fmt::format("capture {}", row.capture_id);
        std::string state;
        std::optional<StoredEvidence> stored;
        switch (a.kind) {
          case HostActions::Answer::Kind::kOffline:
            answer = absl::UnavailableError(fmt::format("host {} is offline", row.host_id));
            state = "failed";
            break;
          case HostActions::Answer::Kind::kTimeout:
            answer = absl::DeadlineExceededError(
                fmt::format("no answer within {} s; the bundle will be stored when it arrives",
                            (wait.count() + 999) / 1000));
            state = "timeout";
            break;
          case HostActions::Answer::Kind::kShutdown:
            answer = absl::UnavailableError(a.error);
            break;
          case HostActions::Answer::Kind::kDone: {
            const auto& r = a.result;
            if (!r.ok()) {
              const std::string why = fmt::format("{}: capture failed: {}", row.host_id,
                                                  r.error().empty() ? "no error given" : r.error());
              answer = r.refused() ? absl::FailedPreconditionError(why) : absl::AbortedError(why);
              state = "failed";
              break;
            }
            auto ev = store_.evidenceForCapture(row.capture_id);
            absl::StatusOr<std::vector<CustodyEntry>> custody = std::vector<CustodyEntry>();
            if (ev.ok() && ev->has_value()) custody = store_.listCustody((*ev)->id);
            if (!ev.ok() || !custody.ok()) {
              answer = !ev.ok() ? ev.status() : custody.status();
            } else if (!ev->has_value()) {
              answer = absl::InternalError(
                  fmt::format("the agent reported capture {} done but no bundle is stored for it",
                              row.capture_id));
            } else {
              const EvidenceRow& e = **ev;
              detail = fmt::format("capture {}: evidence {}, {} bytes, {} files, signature {}",
                                   row.capture_id, e.id, e.size, e.files,
                                   e.signature_ok ? "ok" : "NOT OK");
              stored = StoredEvidence{.row = e, .custody = *std::move(custody)};
              stored->row.tenant = actor.tenant;
            }
            break;
          }
        }
        if (!state.empty()) {
          if (auto s = store_.setCaptureState(row.capture_id, state); !s.ok()) {
            spdlog::error("capture {}: cannot record state {}: {}", row.capture_id, state, s);
          }
        }
        absl::Status status =
            audit(actor, "capture.result", row.host_id, row.reason, answer, detail);
        if (!status.ok()) stored.reset();
        done(status, std::move(stored));
      });
}

absl::StatusOr<EvidencePage> EvidenceService::list(const Caller& caller,
                                                   const ListEvidenceRequest& req,
                                                   const EvidenceBytes& record_bytes) {
  absl::Status status = authorize(caller, OperatorAction::kListEvidence);
  if (status.ok()) status = validateRequest(req);
  if (status.ok() && (evidence_ == nullptr || !evidence_->enabled())) status = noEvidenceStore();
  EvidencePage page;
  if (status.ok()) {
    auto rows = store_.listEvidence(req.host);
    if (!rows.ok()) {
      status = rows.status();
    } else {
      // Only the bundles of hosts the caller reaches.
      std::erase_if(*rows, [&](const EvidenceRow& r) {
        return !reaches(caller, OperatorAction::kListEvidence, r.host_id);
      });
      size_t bytes = 0;
      size_t i = req.offset;
      for (; i < rows->size() && page.evidence.size() < kMaxListedEvidence; ++i) {
        (*rows)[i].tenant = tenantOfHost((*rows)[i].host_id);
        const size_t size = record_bytes((*rows)[i]);
        if (!page.evidence.empty() && bytes + size > kMaxResponseBytes) break;
        bytes += size;
        page.evidence.push_back((*rows)[i]);
      }
      if (i < rows->size()) page.next_offset = static_cast<uint32_t>(i);
    }
  }
  status =
      audit(auditActor(caller), OperatorAction::kListEvidence, req.host.empty() ? "*" : req.host,
            "", status, status.ok() ? fmt::format("{} bundles", page.evidence.size()) : "");
  if (!status.ok()) return status;
  return page;
}

absl::StatusOr<OpenedBundle> EvidenceService::get(const Caller& caller, const std::string& id) {
  absl::StatusOr<EvidenceRow> row = find(caller, OperatorAction::kGetEvidence, id);
  absl::Status status = row.status();
  int fd = -1;
  std::string path;
  if (status.ok()) {
    // The file is found by its content address, never by a path read from the database.
    auto stored = evidence_->files().bundlePath(row->id);
    if (!stored.ok()) {
      status = absl::DataLossError(fmt::format("evidence record {}", stored.status().message()));
    } else {
      path = stored->string();
      fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    }
    if (status.ok() && fd < 0) {
      status = absl::DataLossError(fmt::format("evidence {}: stored bundle {} cannot be read: {}",
                                               row->id, path, std::strerror(errno)));
    }
  }
  // Owns fd from here: closed on every failure below.
  OpenedBundle opened(fd, path, StoredEvidence{});
  const std::string target = row.ok() ? row->id : id;
  absl::StatusOr<StoredEvidence> evidence = absl::UnknownError("not looked up");
  if (status.ok()) {
    evidence =
        withCustody(caller, *row, kCustodyGet, fmt::format("download of {} bytes", row->size));
    status = evidence.status();
  }
  status = audit(row.ok() ? actorOn(caller, row->host_id) : auditActor(caller),
                 OperatorAction::kGetEvidence, target, "", status,
                 status.ok() ? fmt::format("{} bytes", row->size) : "");
  if (!status.ok()) return status;
  return OpenedBundle(opened.releaseFd(), path, *std::move(evidence));
}

void EvidenceService::verify(const Caller& caller, const std::string& id, VerifyDone done) {
  auto row = find(caller, OperatorAction::kVerifyEvidence, id);
  if (!row.ok()) {
    done(audit(auditActor(caller), OperatorAction::kVerifyEvidence, id, "", row.status()), {});
    return;
  }
  // `done` is moved into the work; kept here too in case the work is dropped.
  auto shared_done = std::make_shared<VerifyDone>(std::move(done));
  const AuditActor actor = actorOn(caller, row->host_id);
  bool posted = evidence_->postIo([this, caller, actor, row = *row, shared_done] {
    const VerifyDone& answer = *shared_done;
    try {
      EvidenceVerification result;
      verifyStored(*evidence_, store_, row, &result);
      std::string outcome =
          result.ok ? fmt::format("ok: bundle, {} files, signature and custody chain intact",
                                  result.files_checked)
                    : fmt::format("FAILED: {} problems", result.problems.size());
      for (const auto& p : result.problems) outcome += fmt::format("; {}: {}", p.file, p.problem);
      outcome = evidence::boundedText(outcome, kMaxVerifyOutcome, false);
      auto stored = withCustody(caller, row, kCustodyVerify, outcome);
      const absl::Status custody = stored.status();
      if (stored.ok()) result.evidence = *std::move(stored);
      if (!result.ok) spdlog::error("evidence verify {}: {}", row.id, outcome);
      absl::Status status =
          audit(actor, OperatorAction::kVerifyEvidence, row.id, "", custody, outcome);
      answer(status, status.ok() ? std::move(result) : EvidenceVerification{});
    } catch (const std::exception& e) {
      answer(audit(actor, OperatorAction::kVerifyEvidence, row.id, "", internalError(row.id, e)),
             {});
    }
  });
  if (!posted) {
    (*shared_done)(audit(actor, OperatorAction::kVerifyEvidence, row->id, "", shuttingDown()), {});
  }
}

void EvidenceService::show(const Caller& caller, const std::string& id, ShownBytes answer_bytes,
                           ShowDone done) {
  auto row = find(caller, OperatorAction::kShowEvidence, id);
  if (!row.ok()) {
    done(audit(auditActor(caller), OperatorAction::kShowEvidence, id, "", row.status()), {});
    return;
  }
  auto shared_done = std::make_shared<ShowDone>(std::move(done));
  const AuditActor actor = actorOn(caller, row->host_id);
  bool posted = evidence_->postIo([this, caller, actor, row = *row,
                                   answer_bytes = std::move(answer_bytes), shared_done] {
    const ShowDone& answer = *shared_done;
    try {
      auto stored = evidence_->files().bundlePath(row.id);
      const std::filesystem::path path = stored.ok() ? *stored : std::filesystem::path();
      absl::Status result;
      std::error_code ec;
      ShownEvidence shown;
      absl::StatusOr<nlohmann::json> summary = absl::NotFoundError("");
      if (!stored.ok()) {
        result = absl::DataLossError(fmt::format("evidence record {}", stored.status().message()));
      } else if (!std::filesystem::exists(path, ec)) {
        result = absl::DataLossError(
            fmt::format("evidence {}: stored bundle {} is missing", row.id, path.string()));
      } else if (summary = evidence::summarize(path); !summary.ok()) {
        result = absl::FailedPreconditionError(
            fmt::format("evidence {}: no summary: {}", row.id, summary.status()));
      } else {
        shown.summary = *std::move(summary);
        auto custody = withCustody(caller, row, kCustodyShow, "summary read");
        if (!custody.ok()) {
          result = custody.status();
        } else {
          shown.evidence = *std::move(custody);
        }
      }
      if (result.ok() && answer_bytes(shown) > kMaxResponseBytes) {
        shown = ShownEvidence{};
        result = absl::ResourceExhaustedError(fmt::format(
            "evidence {}: the summary is larger than {} bytes", row.id, kMaxResponseBytes));
      }
      absl::Status status = audit(actor, OperatorAction::kShowEvidence, row.id, "", result);
      answer(status, status.ok() ? std::move(shown) : ShownEvidence{});
    } catch (const std::exception& e) {
      answer(audit(actor, OperatorAction::kShowEvidence, row.id, "", internalError(row.id, e)), {});
    }
  });
  if (!posted) {
    (*shared_done)(audit(actor, OperatorAction::kShowEvidence, row->id, "", shuttingDown()), {});
  }
}

}  // namespace bulkhead::controller
