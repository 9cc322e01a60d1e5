#include "controller/service/host_operations.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <utility>

#include "common/format.h"
#include "common/parse.h"
#include "controller/core/legacy_result.h"
#include "controller/core/validate.h"
#include "controller/service/audit.h"
#include "controller/service/evidence_service.h"
#include "controller/service/tenancy.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

namespace {

constexpr size_t kMaxAuditDetail = 8192;
// A capture-first kill waits for the capture, the kill and the upload (as a capture does).
constexpr std::chrono::milliseconds kDefaultCaptureFirstWait{300000};

// "killed 3: 1201 bhtest (sleep 1000), ...; spared 1: 1 root (holder) [pid 1]"; "" when the
// agent sent no result.
std::string summarize(const std::string& action, const v1::CommandResult& r) {
  if (r.result_case() == v1::CommandResult::RESULT_NOT_SET) return "";
  if (action == "sessions") {
    const v1::ListSessionsResult& l = r.list_sessions();
    return fmt::format("{} sessions (source {})", l.sessions_size(), l.source());
  }
  const v1::KillProcessesResult& k = r.kill_processes();  // the default one when not set
  auto list = [](const char* key, const auto& items, bool with_why) {
    std::string out = fmt::format("{} {}", key, items.size());
    const char* sep = ": ";
    for (const v1::ProcessEntry& p : items) {
      out += fmt::format("{}{} {} ({})", sep, p.pid(), p.user(), p.cmdline());
      if (with_why) out += fmt::format(" [{}]", p.why());
      sep = ", ";
    }
    return out;
  };
  std::string s;
  if (r.has_kill_processes() && action == "kill-sessions") {
    s += fmt::format("sessions {}", k.sessions_size());
    const char* sep = ": ";
    for (const v1::SessionRecord& x : k.sessions()) {
      s += fmt::format("{}{} {} from {}", sep, x.id(), x.user(),
                       x.remote().empty() ? x.tty() : x.remote());
      sep = ", ";
    }
    s += "; ";
  }
  s += list("killed", k.killed(), false) + "; " + list("spared", k.spared(), true);
  if (k.frozen()) {
    s += fmt::format("; frozen ({}), {} records",
                     k.freeze_method() == v1::FREEZE_METHOD_SIGSTOP ? "sigstop" : "?",
                     k.records_size());
  }
  if (!k.capture_id().empty()) {
    s += k.has_capture()
             ? fmt::format("; captured first: capture {}, evidence {}, stopped {} ms",
                           k.capture_id(), k.capture().evidence_id(), k.stopped_for_capture_ms())
             : fmt::format("; capture {} FAILED (killed anyway): {}", k.capture_id(),
                           k.capture_error());
  }
  s += fmt::format("; connections cut {}", r.has_kill_connections()
                                               ? r.kill_connections().connections_cut()
                                               : k.connections_cut());
  if (s.size() > kMaxAuditDetail) s = s.substr(0, kMaxAuditDetail) + "...";
  return s;
}

// The audit detail of an agent's (not refused) result.
std::string summarizeResult(const std::string& action, const v1::CommandResult& r) {
  std::string detail = summarize(action, r);
  if (!r.ok()) detail = fmt::format("FAILED: {}; {}", r.error(), detail);
  return detail;
}

// An agent one version behind answers with a JSON document instead of the typed result: read
// it into the typed result. A document that does not read leaves no result and makes `r` a
// failure whose error says so (the agent did act: only its report is lost).
void convertOlderAgentResult(const std::string& host, const std::string& action,
                             v1::CommandResult& r) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  if (r.result_case() != v1::CommandResult::RESULT_NOT_SET || r.result_json().empty()) return;
  std::string document = std::move(*r.mutable_result_json());
  r.clear_result_json();
#pragma GCC diagnostic pop
  if (absl::Status s = convertLegacyResult(action, document, &r); !s.ok()) {
    std::string why = fmt::format("{}: the result of an older agent could not be read: {}", host,
                                  s.message());
    r.set_ok(false);
    r.set_error(r.error().empty() ? why : fmt::format("{}; {}", r.error(), why));
  }
}

absl::Status unknownHost(const std::string& host) {
  return absl::NotFoundError(fmt::format("unknown host \"{}\"", host));
}

// What each request must say, beyond its fields' formats: the first rule it breaks.
absl::Status required(const KillSessionsRequest& req) {
  const auto& m = req.match;
  const int given = !m.user().empty() + (m.session_id() != 0) + !m.from_cidr().empty() + m.all();
  if (isBlank(req.reason)) return absl::InvalidArgumentError("reason: required");
  if (given != 1) {
    return absl::InvalidArgumentError("match: exactly one of user, session, from, all is required");
  }
  if (!m.from_cidr().empty()) return parseCidr("from", m.from_cidr()).status();
  return absl::OkStatus();
}

absl::Status required(const KillProcessRequest& req) {
  const auto& m = req.match;
  const int given = (m.pid() != 0) + !m.exe().empty() + !m.user().empty();
  if (isBlank(req.reason)) return absl::InvalidArgumentError("reason: required");
  if (given != 1) {
    return absl::InvalidArgumentError("match: exactly one of pid, exe, user is required");
  }
  if (m.pid() < 0) {
    return absl::InvalidArgumentError(fmt::format("pid: {} is not a process id", m.pid()));
  }
  if (!m.exe().empty() && m.exe().front() != '/') {
    return absl::InvalidArgumentError(fmt::format("exe: \"{}\" is not an absolute path", m.exe()));
  }
  return absl::OkStatus();
}

absl::Status required(const KillConnectionsRequest& req) {
  if (isBlank(req.reason)) return absl::InvalidArgumentError("reason: required");
  // The port's range is a field check (validateRequest).
  return parseCidr("remote_cidr", req.remote_cidr).status();
}

}  // namespace

HostOperations::HostOperations(const Clock& clock, Store& store, FleetControl& fleet,
                               HostActions& actions)
    : clock_(clock), store_(store), fleet_(fleet), actions_(actions) {}

template <typename Request>
absl::Status HostOperations::admitted(const Caller& caller, OperatorAction action,
                                      const Request& req) {
  absl::Status status = authorize(caller, action);
  if (status.ok()) status = validateRequest(req);
  return status;
}

std::optional<AuditActor> HostOperations::reaches(const Caller& caller, OperatorAction action,
                                                  const std::string& host) {
  const auto known = fleet_.targets();
  const auto it = known.find(host);
  if (it == known.end() ||
      roleOn(caller, it->second.tenant, it->second.labels) < ruleFor(action).min_role) {
    return std::nullopt;
  }
  return auditActorOn(caller, it->second.tenant);
}

void HostOperations::refuse(const AuditActor& actor, OperatorAction action, const std::string& host,
                            const std::string& reason, const absl::Status& status,
                            HostActionDone& done, const std::string& detail) {
  done(recordCall(store_, clock_, actor, auditAction(action), host, reason, status, detail), {});
}

void HostOperations::listSessions(const Caller& caller, const ListSessionsRequest& req,
                                  HostActionDone done) {
  absl::Status status = admitted(caller, OperatorAction::kListSessions, req);
  std::optional<AuditActor> actor;
  if (status.ok() && !(actor = reaches(caller, OperatorAction::kListSessions, req.host)))
    status = unknownHost(req.host);
  if (!status.ok()) {
    return refuse(auditActor(caller), OperatorAction::kListSessions, req.host, "", status, done);
  }
  v1::Command c;
  c.mutable_list_sessions();
  run(*actor, OperatorAction::kListSessions, req.host, "", std::move(c), req.wait_ms,
      std::move(done));
}

void HostOperations::killSessions(const Caller& caller, const KillSessionsRequest& req,
                                  HostActionDone done) {
  const auto& m = req.match;
  absl::Status status = admitted(caller, OperatorAction::kKillSessions, req);
  if (status.ok()) status = required(req);
  std::optional<AuditActor> actor;
  if (status.ok() && !(actor = reaches(caller, OperatorAction::kKillSessions, req.host)))
    status = unknownHost(req.host);
  if (!status.ok()) {
    return refuse(auditActor(caller), OperatorAction::kKillSessions, req.host, req.reason, status,
                  done);
  }
  std::string what = m.all()               ? "all sessions"
                     : !m.user().empty()   ? fmt::format("user {}", m.user())
                     : m.session_id() != 0 ? fmt::format("session {}", m.session_id())
                                           : fmt::format("from {}", m.from_cidr());
  if (m.freeze()) what += ", freeze first";
  v1::Command c;
  *c.mutable_kill_sessions() = m;
  std::string capture_id;
  if (m.capture_first()) {
    auto id = recordCaptureFirst(*actor, req.host, req.reason,
                                 c.mutable_kill_sessions()->mutable_capture(), c);
    if (!id.ok()) {
      return refuse(*actor, OperatorAction::kKillSessions, req.host, req.reason, id.status(), done);
    }
    capture_id = *id;
    what += fmt::format(", capture first (capture {})", capture_id);
  } else {
    c.mutable_kill_sessions()->clear_capture();
  }
  run(*actor, OperatorAction::kKillSessions, req.host, req.reason, std::move(c), req.wait_ms,
      std::move(done), what, capture_id);
}

void HostOperations::killProcess(const Caller& caller, const KillProcessRequest& req,
                                 HostActionDone done) {
  const auto& m = req.match;
  absl::Status status = admitted(caller, OperatorAction::kKillProcess, req);
  if (status.ok()) status = required(req);
  std::optional<AuditActor> actor;
  if (status.ok() && !(actor = reaches(caller, OperatorAction::kKillProcess, req.host)))
    status = unknownHost(req.host);
  if (!status.ok()) {
    return refuse(auditActor(caller), OperatorAction::kKillProcess, req.host, req.reason, status,
                  done);
  }
  std::string what = m.pid() != 0       ? fmt::format("pid {}", m.pid())
                     : !m.exe().empty() ? fmt::format("exe {}", m.exe())
                                        : fmt::format("user {}", m.user());
  v1::Command c;
  *c.mutable_kill_process() = m;
  std::string capture_id;
  if (m.capture_first()) {
    auto id = recordCaptureFirst(*actor, req.host, req.reason,
                                 c.mutable_kill_process()->mutable_capture(), c);
    if (!id.ok()) {
      return refuse(*actor, OperatorAction::kKillProcess, req.host, req.reason, id.status(), done);
    }
    capture_id = *id;
    what += fmt::format(", capture first (capture {})", capture_id);
  } else {
    c.mutable_kill_process()->clear_capture();
  }
  run(*actor, OperatorAction::kKillProcess, req.host, req.reason, std::move(c), req.wait_ms,
      std::move(done), what, capture_id);
}

void HostOperations::killConnections(const Caller& caller, const KillConnectionsRequest& req,
                                     HostActionDone done) {
  absl::Status status = admitted(caller, OperatorAction::kKillConnections, req);
  if (status.ok()) status = required(req);
  std::optional<AuditActor> actor;
  if (status.ok() && !(actor = reaches(caller, OperatorAction::kKillConnections, req.host)))
    status = unknownHost(req.host);
  if (!status.ok()) {
    return refuse(auditActor(caller), OperatorAction::kKillConnections, req.host, req.reason,
                  status, done, fmt::format("remote {}", req.remote_cidr));
  }
  v1::Command c;
  c.mutable_kill_connections()->set_remote_cidr(req.remote_cidr);
  c.mutable_kill_connections()->mutable_ports()->set_first(req.port);
  c.mutable_kill_connections()->mutable_ports()->set_last(req.port);
  run(*actor, OperatorAction::kKillConnections, req.host, req.reason, std::move(c), req.wait_ms,
      std::move(done),
      req.port == 0 ? fmt::format("remote {}", req.remote_cidr)
                    : fmt::format("remote {} port {}", req.remote_cidr, req.port));
}

absl::StatusOr<std::string> HostOperations::recordCaptureFirst(const AuditActor& actor,
                                                               const std::string& host,
                                                               const std::string& reason,
                                                               v1::CaptureState* state,
                                                               v1::Command& command) {
  const int64_t now = clock_.nowUnixMs();
  CaptureRow row{.capture_id = newCaptureId(now, host),
                 .host_id = host,
                 .requested_by = actor.name,
                 .reason = reason,
                 .requested_at_unix_ms = now,
                 .incident = actor.incident,
                 .incident_tenant = actor.incident.empty() ? "" : actor.tenant};
  row.command_id = fmt::format("kill-{}", row.capture_id);
  if (auto s = store_.addCapture(row); !s.ok()) {
    return absl::InternalError(fmt::format("recording the capture: {}", s));
  }
  state->Clear();
  state->set_capture_id(row.capture_id);
  state->set_controller_time_unix_ms(now);
  command.set_id(row.command_id);
  return row.capture_id;
}

void HostOperations::run(const AuditActor& actor, OperatorAction action_id, const std::string& host,
                         const std::string& reason, v1::Command command, uint32_t wait_ms,
                         HostActionDone done, const std::string& accepted_detail,
                         const std::string& capture_id) {
  command.set_reason(reason);
  command.set_requested_by(actor.name);
  const std::string action(actionName(action_id));
  std::string result_action = action;
  if (!accepted_detail.empty()) {
    if (auto s = recordAccepted(store_, clock_, actor, action, host, reason, accepted_detail);
        !s.ok()) {
      failCapture(capture_id, "failed");
      done(s, HostActionResult{.host_id = host, .tenant = actor.tenant});
      return;
    }
    result_action = action + ".result";
  }
  HostActions::Done on_answer = [this, actor, action, result_action, host, reason, capture_id,
                                 done = std::move(done)](const HostActions::Answer& a) {
    if (!capture_id.empty()) {
      // The upload marks a stored capture "received"; anything else ends it here.
      const bool stored = a.kind == HostActions::Answer::Kind::kDone &&
                          a.result.has_kill_processes() && a.result.kill_processes().has_capture();
      if (!stored) {
        failCapture(capture_id,
                    a.kind == HostActions::Answer::Kind::kTimeout ? "timeout" : "failed");
      }
    }
    absl::Status status;
    std::string detail;
    HostActionResult result{.host_id = host, .tenant = actor.tenant};
    switch (a.kind) {
      case HostActions::Answer::Kind::kOffline:
        status = absl::UnavailableError(fmt::format("{}: {}", host, a.error));
        break;
      case HostActions::Answer::Kind::kTimeout:
        status = absl::DeadlineExceededError(fmt::format("{}: {}", host, a.error));
        break;
      case HostActions::Answer::Kind::kShutdown: status = absl::UnavailableError(a.error); break;
      case HostActions::Answer::Kind::kDone: {
        v1::CommandResult r = a.result;
        convertOlderAgentResult(host, action, r);
        if (!capture_id.empty() && r.has_kill_processes() &&
            r.kill_processes().capture_id().empty() && r.kill_processes().killed_size() > 0) {
          // An agent that predates capture-first killed without capturing.
          r.set_ok(false);
          r.set_error(
              fmt::format("{}{}the agent does not know --capture-first: the "
                          "processes were killed without a capture",
                          r.error(), r.error().empty() ? "" : "; "));
        }
        result.ok = r.ok();
        result.refused = r.refused();
        result.error = r.error();
        if (r.refused()) {
          // The request is at fault and nothing was done: a precondition the
          // caller broke.
          status = absl::FailedPreconditionError(r.error());
        } else {
          detail = summarizeResult(action, r);
        }
        switch (r.result_case()) {
          case v1::CommandResult::kKillConnections:
            result.output = std::move(*r.mutable_kill_connections());
            break;
          case v1::CommandResult::kListSessions:
            result.output = std::move(*r.mutable_list_sessions());
            break;
          case v1::CommandResult::kKillProcesses:
            result.output = std::move(*r.mutable_kill_processes());
            break;
          default: break;
        }
        break;
      }
    }
    done(recordCall(store_, clock_, actor, result_action, host, reason, status, detail),
         std::move(result));
  };
  if (capture_id.empty()) {
    actions_.run(host, std::move(command), wait_ms, std::move(on_answer));
  } else {
    actions_.runFor(host, std::move(command),
                    wait_ms == 0 ? kDefaultCaptureFirstWait : std::chrono::milliseconds(wait_ms),
                    std::move(on_answer));
  }
}

void HostOperations::failCapture(const std::string& capture_id, const std::string& state) {
  if (capture_id.empty()) return;
  if (auto s = store_.setCaptureState(capture_id, state); !s.ok()) {
    spdlog::error("capture {}: cannot record state {}: {}", capture_id, state, s);
  }
}

}  // namespace bulkhead::controller
