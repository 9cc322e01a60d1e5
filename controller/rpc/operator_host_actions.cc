// Operator RPCs on one host's sessions and processes: each is a Command to the
// host's agent, answered with the agent's result document, audited with its summary (every
// process killed and spared, by pid, user and command line).
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/format.h"
#include "common/json.h"
#include "common/parse.h"
#include "common/tls.h"
#include "controller/rpc/audit.h"
#include "controller/rpc/operator_service.h"

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
grpc::Status summarizeResult(const std::string& host, const std::string& action,
                             const v1::CommandResult& r, std::string* detail) {
  try {
    *detail = summarize(action, r.result_json());
    if (!r.ok()) *detail = fmt::format("FAILED: {}; {}", r.error(), *detail);
    return grpc::Status::OK;
  } catch (const std::exception& e) {
    detail->clear();
    return grpc::Status(
        grpc::StatusCode::INTERNAL,
        fmt::format("{}: the agent's result could not be read: {}", host, e.what()));
  }
}

}  // namespace

grpc::Status OperatorService::auditAccepted(const Caller& caller, OperatorAction action,
                                            const std::string& host, const std::string& reason,
                                            const std::string& detail) {
  return toGrpcStatus(recordAccepted(store_, clock_, caller.audit_name,
                                     std::string(actionName(action)), host, reason, detail));
}

void OperatorService::runHostAction(const Caller& caller, OperatorAction action_id,
                                     const std::string& host, const std::string& reason,
                                     v1::Command command, uint32_t wait_ms,
                                     v1::HostActionResponse* resp,
                                     grpc::ServerUnaryReactor* reactor,
                                     const std::string& accepted_detail) {
  resp->set_host_id(host);
  command.set_reason(reason);
  command.set_requested_by(caller.audit_name);
  const std::string action(actionName(action_id));
  std::string result_action = action;
  if (!accepted_detail.empty()) {
    if (auto s = auditAccepted(caller, action_id, host, reason, accepted_detail); !s.ok()) {
      reactor->Finish(s);
      return;
    }
    result_action = action + ".result";
  }
  host_actions_->run(host, std::move(command), wait_ms,
                     [this, caller, action, result_action, host, reason, resp,
                      reactor](const HostActions::Answer& a) {
    grpc::Status status = grpc::Status::OK;
    std::string detail;
    switch (a.kind) {
      case HostActions::Answer::Kind::kOffline:
        status = grpc::Status(grpc::StatusCode::UNAVAILABLE, fmt::format("{}: {}", host, a.error));
        break;
      case HostActions::Answer::Kind::kTimeout:
        status = grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, fmt::format("{}: {}", host, a.error));
        break;
      case HostActions::Answer::Kind::kShutdown:
        status = grpc::Status(grpc::StatusCode::UNAVAILABLE, a.error);
        break;
      case HostActions::Answer::Kind::kDone: {
        const auto& r = a.result;
        resp->set_ok(r.ok());
        resp->set_refused(r.refused());
        resp->set_error(r.error());
        resp->set_result_json(r.result_json());
        if (r.refused()) {
          // The request is at fault and nothing was done: a precondition the caller broke.
          status = grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, r.error());
        } else {
          status = summarizeResult(host, action, r, &detail);
        }
        break;
      }
    }
    reactor->Finish(audit(caller, result_action, host, reason, status, detail));
  });
}

grpc::ServerUnaryReactor* OperatorService::ListSessions(grpc::CallbackServerContext* ctx,
                                                        const v1::ListSessionsRequest* req,
                                                        v1::HostActionResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  Caller caller = identify(*ctx);
  grpc::Status status = validated(authorized(caller, OperatorAction::kListSessions), *req);
  if (status.ok() && !fleet_.getHost(req->host())) {
    status = grpc::Status(grpc::StatusCode::NOT_FOUND, fmt::format("unknown host \"{}\"", req->host()));
  }
  if (!status.ok()) {
    reactor->Finish(audit(caller, OperatorAction::kListSessions, req->host(), "", status));
    return reactor;
  }
  v1::Command c;
  c.mutable_list_sessions();
  runHostAction(caller, OperatorAction::kListSessions, req->host(), "", std::move(c), req->wait_ms(), resp, reactor);
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::KillSessions(grpc::CallbackServerContext* ctx,
                                                        const v1::KillSessionsRequest* req,
                                                        v1::HostActionResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  Caller caller = identify(*ctx);
  grpc::Status status = validated(authorized(caller, OperatorAction::kKillSessions), *req);
  const auto& m = req->match();
  int given = !m.user().empty() + (m.session_id() != 0) + !m.from_cidr().empty() + m.all();
  if (status.ok() && isBlank(req->reason())) {
    status = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "reason: required");
  } else if (status.ok() && given != 1) {
    status = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "match: exactly one of user, session, from, all is required");
  } else if (status.ok() && !m.from_cidr().empty()) {
    if (auto c = parseCidr("from", m.from_cidr()); !c.ok()) status = toGrpcStatus(c.status());
  }
  if (status.ok() && !fleet_.getHost(req->host())) {
    status = grpc::Status(grpc::StatusCode::NOT_FOUND, fmt::format("unknown host \"{}\"", req->host()));
  }
  if (!status.ok()) {
    reactor->Finish(audit(caller, OperatorAction::kKillSessions, req->host(), req->reason(), status));
    return reactor;
  }
  std::string what = m.all()                  ? "all sessions"
                     : !m.user().empty()        ? fmt::format("user {}", m.user())
                     : m.session_id() != 0      ? fmt::format("session {}", m.session_id())
                                                : fmt::format("from {}", m.from_cidr());
  if (m.freeze()) what += ", freeze first";
  v1::Command c;
  *c.mutable_kill_sessions() = m;
  runHostAction(caller, OperatorAction::kKillSessions, req->host(), req->reason(), std::move(c), req->wait_ms(),
                resp, reactor, what);
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::KillProcess(grpc::CallbackServerContext* ctx,
                                                       const v1::KillProcessRequest* req,
                                                       v1::HostActionResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  Caller caller = identify(*ctx);
  grpc::Status status = validated(authorized(caller, OperatorAction::kKillProcess), *req);
  const auto& m = req->match();
  int given = (m.pid() != 0) + !m.exe().empty() + !m.user().empty();
  if (status.ok() && isBlank(req->reason())) {
    status = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "reason: required");
  } else if (status.ok() && given != 1) {
    status = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "match: exactly one of pid, exe, user is required");
  } else if (status.ok() && m.pid() < 0) {
    status = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          fmt::format("pid: {} is not a process id", m.pid()));
  } else if (status.ok() && !m.exe().empty() && m.exe().front() != '/') {
    status = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          fmt::format("exe: \"{}\" is not an absolute path", m.exe()));
  }
  if (status.ok() && !fleet_.getHost(req->host())) {
    status = grpc::Status(grpc::StatusCode::NOT_FOUND, fmt::format("unknown host \"{}\"", req->host()));
  }
  if (!status.ok()) {
    reactor->Finish(audit(caller, OperatorAction::kKillProcess, req->host(), req->reason(), status));
    return reactor;
  }
  std::string what = m.pid() != 0      ? fmt::format("pid {}", m.pid())
                     : !m.exe().empty() ? fmt::format("exe {}", m.exe())
                                        : fmt::format("user {}", m.user());
  v1::Command c;
  *c.mutable_kill_process() = m;
  runHostAction(caller, OperatorAction::kKillProcess, req->host(), req->reason(), std::move(c), req->wait_ms(),
                resp, reactor, what);
  return reactor;
}

}  // namespace bulkhead::controller
