#include "controller/service/host_operations.h"

#include <exception>
#include <nlohmann/json.hpp>
#include <utility>

#include "common/format.h"
#include "common/json.h"
#include "common/parse.h"
#include "controller/core/validate.h"
#include "controller/service/audit.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

namespace {

constexpr size_t kMaxAuditDetail = 8192;

// "killed 3: 1201 bhtest (sleep 1000), ...; spared 1: 1 root (holder) [pid 1]". The document
// is the agent's: every field is read without trusting its presence or type.
std::string summarize(const std::string& action, const std::string& result_json) {
  auto parsed = parseForeignJson(result_json);
  if (!parsed || !parsed->is_object()) return "";
  const nlohmann::json& doc = *parsed;
  if (action == "sessions") {
    return fmt::format("{} sessions (source {})", jsonArraySize(doc, "sessions"),
                       jsonStringOr(doc, "source", "?"));
  }
  auto list = [&doc](const char* key, bool with_why) {
    const nlohmann::json* items = jsonArray(doc, key);
    if (items == nullptr) return fmt::format("{} 0", key);
    std::string out = fmt::format("{} {}", key, items->size());
    const char* sep = ": ";
    for (const auto& p : *items) {
      out += fmt::format("{}{} {} ({})", sep, jsonIntOr(p, "pid", 0), jsonStringOr(p, "user", ""),
                         jsonStringOr(p, "cmdline", ""));
      if (with_why) out += fmt::format(" [{}]", jsonStringOr(p, "why", ""));
      sep = ", ";
    }
    return out;
  };
  std::string s;
  if (const nlohmann::json* sessions = jsonArray(doc, "sessions");
      sessions != nullptr && action == "kill-sessions") {
    s += fmt::format("sessions {}", sessions->size());
    const char* sep = ": ";
    for (const auto& x : *sessions) {
      std::string remote = jsonStringOr(x, "remote", "");
      s += fmt::format("{}{} {} from {}", sep, jsonUintOr(x, "id", 0), jsonStringOr(x, "user", ""),
                       remote.empty() ? jsonStringOr(x, "tty", "-") : remote);
      sep = ", ";
    }
    s += "; ";
  }
  s += list("killed", false) + "; " + list("spared", true);
  if (jsonBoolOr(doc, "frozen", false)) {
    s += fmt::format("; frozen ({}), {} records", jsonStringOr(doc, "freeze_method", "?"),
                     jsonArraySize(doc, "records"));
  }
  s += fmt::format("; connections cut {}", jsonIntOr(doc, "connections_cut", 0));
  if (s.size() > kMaxAuditDetail) s = s.substr(0, kMaxAuditDetail) + "...";
  return s;
}

// The audit detail of an agent's (not refused) result. Never throws: anything thrown while
// reading the agent's document ends the call with INTERNAL (and the caller audits it).
absl::Status summarizeResult(const std::string& host, const std::string& action,
                             const v1::CommandResult& r, std::string* detail) {
  try {
    *detail = summarize(action, r.result_json());
    if (!r.ok()) *detail = fmt::format("FAILED: {}; {}", r.error(), *detail);
    return absl::OkStatus();
  } catch (const std::exception& e) {
    detail->clear();
    return absl::InternalError(
        fmt::format("{}: the agent's result could not be read: {}", host, e.what()));
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

void HostOperations::refuse(const std::string& operator_name, OperatorAction action,
                            const std::string& host, const std::string& reason,
                            const absl::Status& status, HostActionDone& done,
                            const std::string& detail) {
  done(recordCall(store_, clock_, operator_name, auditAction(action), host, reason,
                  status, detail),
       {});
}

void HostOperations::listSessions(const Caller& caller, const ListSessionsRequest& req,
                                  HostActionDone done) {
  absl::Status status = admitted(caller, OperatorAction::kListSessions, req);
  if (status.ok() && !fleet_.known(req.host)) status = unknownHost(req.host);
  if (!status.ok()) {
    return refuse(caller.audit_name, OperatorAction::kListSessions, req.host, "", status, done);
  }
  v1::Command c;
  c.mutable_list_sessions();
  run(caller.audit_name, OperatorAction::kListSessions, req.host, "", std::move(c), req.wait_ms,
      std::move(done));
}

void HostOperations::killSessions(const Caller& caller, const KillSessionsRequest& req,
                                  HostActionDone done) {
  const auto& m = req.match;
  absl::Status status = admitted(caller, OperatorAction::kKillSessions, req);
  if (status.ok()) status = required(req);
  if (status.ok() && !fleet_.known(req.host)) status = unknownHost(req.host);
  if (!status.ok()) {
    return refuse(caller.audit_name, OperatorAction::kKillSessions, req.host, req.reason, status,
                  done);
  }
  std::string what = m.all()               ? "all sessions"
                     : !m.user().empty()   ? fmt::format("user {}", m.user())
                     : m.session_id() != 0 ? fmt::format("session {}", m.session_id())
                                           : fmt::format("from {}", m.from_cidr());
  if (m.freeze()) what += ", freeze first";
  v1::Command c;
  *c.mutable_kill_sessions() = m;
  run(caller.audit_name, OperatorAction::kKillSessions, req.host, req.reason, std::move(c), req.wait_ms,
      std::move(done), what);
}

void HostOperations::killProcess(const Caller& caller, const KillProcessRequest& req,
                                 HostActionDone done) {
  const auto& m = req.match;
  absl::Status status = admitted(caller, OperatorAction::kKillProcess, req);
  if (status.ok()) status = required(req);
  if (status.ok() && !fleet_.known(req.host)) status = unknownHost(req.host);
  if (!status.ok()) {
    return refuse(caller.audit_name, OperatorAction::kKillProcess, req.host, req.reason, status,
                  done);
  }
  std::string what = m.pid() != 0       ? fmt::format("pid {}", m.pid())
                     : !m.exe().empty() ? fmt::format("exe {}", m.exe())
                                        : fmt::format("user {}", m.user());
  v1::Command c;
  *c.mutable_kill_process() = m;
  run(caller.audit_name, OperatorAction::kKillProcess, req.host, req.reason, std::move(c), req.wait_ms,
      std::move(done), what);
}

void HostOperations::killConnections(const Caller& caller, const KillConnectionsRequest& req,
                                     HostActionDone done) {
  absl::Status status = admitted(caller, OperatorAction::kKillConnections, req);
  if (status.ok()) status = required(req);
  if (status.ok() && !fleet_.known(req.host)) status = unknownHost(req.host);
  if (!status.ok()) {
    return refuse(caller.audit_name, OperatorAction::kKillConnections, req.host, req.reason, status,
                  done, fmt::format("remote {}", req.remote_cidr));
  }
  v1::Command c;
  c.mutable_kill_connections()->set_remote_cidr(req.remote_cidr);
  c.mutable_kill_connections()->mutable_ports()->set_first(req.port);
  c.mutable_kill_connections()->mutable_ports()->set_last(req.port);
  run(caller.audit_name, OperatorAction::kKillConnections, req.host, req.reason, std::move(c),
      req.wait_ms, std::move(done),
      req.port == 0 ? fmt::format("remote {}", req.remote_cidr)
                    : fmt::format("remote {} port {}", req.remote_cidr, req.port));
}

void HostOperations::run(const std::string& operator_name, OperatorAction action_id,
                         const std::string& host, const std::string& reason, v1::Command command,
                         uint32_t wait_ms, HostActionDone done,
                         const std::string& accepted_detail) {
  command.set_reason(reason);
  command.set_requested_by(operator_name);
  const std::string action(actionName(action_id));
  std::string result_action = action;
  if (!accepted_detail.empty()) {
    if (auto s =
            recordAccepted(store_, clock_, operator_name, action, host, reason, accepted_detail);
        !s.ok()) {
      done(s, HostActionResult{.host_id = host});
      return;
    }
    result_action = action + ".result";
  }
  actions_.run(
      host, std::move(command), wait_ms,
      [this, operator_name, action, result_action, host, reason,
       done = std::move(done)](const HostActions::Answer& a) {
        absl::Status status;
        std::string detail;
        HostActionResult result{.host_id = host};
        switch (a.kind) {
          case HostActions::Answer::Kind::kOffline:
            status = absl::UnavailableError(fmt::format("{}: {}", host, a.error));
            break;
          case HostActions::Answer::Kind::kTimeout:
            status = absl::DeadlineExceededError(fmt::format("{}: {}", host, a.error));
            break;
          case HostActions::Answer::Kind::kShutdown:
            status = absl::UnavailableError(a.error);
            break;
          case HostActions::Answer::Kind::kDone: {
            const auto& r = a.result;
            result.ok = r.ok();
            result.refused = r.refused();
            result.error = r.error();
            result.result_json = r.result_json();
            if (r.refused()) {
              // The request is at fault and nothing was done: a precondition the
              // caller broke.
              status = absl::FailedPreconditionError(r.error());
            } else {
              status = summarizeResult(host, action, r, &detail);
            }
            break;
          }
        }
        done(recordCall(store_, clock_, operator_name, result_action, host, reason, status, detail),
             std::move(result));
      });
}

}  // namespace bulkhead::controller
