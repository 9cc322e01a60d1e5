#include "controller/rpc/operator_service.h"

#include <spdlog/spdlog.h>

#include "common/format.h"
#include "common/parse.h"
#include "common/tls.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

namespace {

constexpr uint32_t kDefaultAuditLimit = 100;
constexpr uint32_t kMaxAuditLimit = 10000;

grpc::Status toGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

std::string outcomeOf(const grpc::Status& s) {
  if (s.ok()) return "ok";
  if (s.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
      s.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
    return "denied";
  }
  return fmt::format("error: {}", s.error_message());
}

}  // namespace

OperatorService::OperatorService(const Clock& clock, Store& store, Fleet& fleet)
    : clock_(clock), store_(store), fleet_(fleet) {}

OperatorService::Caller OperatorService::identify(const grpc::CallbackServerContext& ctx) {
  Caller c;
  auto auth = ctx.auth_context();
  auto id = auth ? peerIdentity(*auth) : absl::UnauthenticatedError("no client certificate");
  if (!id.ok()) {
    c.audit_name = "unauthenticated";
    c.refusal = grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                             fmt::format("{}", id.status()));
    return c;
  }
  c.audit_name = id->name;
  if (id->kind != PeerKind::kOperator) {
    c.audit_name = fmt::format("{}:{}", peerKindName(id->kind), id->name);
    c.refusal = grpc::Status(
        grpc::StatusCode::PERMISSION_DENIED,
        fmt::format("certificate OU={} is not an operator identity", peerKindName(id->kind)));
    return c;
  }
  c.is_operator = true;
  c.role = id->role;
  return c;
}

grpc::Status OperatorService::authorize(const Caller& caller, bool write) {
  if (!caller.refusal.ok()) return caller.refusal;
  if (write && caller.role == Role::kViewer) {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        fmt::format("operator \"{}\" has role viewer: read only",
                                    caller.audit_name));
  }
  return grpc::Status::OK;
}

grpc::Status OperatorService::audit(const Caller& caller, const std::string& action,
                                    const std::string& target, const std::string& reason,
                                    const grpc::Status& result, const std::string& detail) {
  AuditEntry e;
  e.at_unix_ms = clock_.nowUnixMs();
  e.operator_name = caller.audit_name;
  e.action = action;
  e.target = target;
  e.reason = reason;
  e.outcome = outcomeOf(result);
  e.detail = detail;
  if (e.detail.empty() && !result.ok() && e.outcome == "denied") e.detail = result.error_message();
  auto row = store_.appendAudit(e);
  if (!row.ok()) {
    spdlog::error("audit: cannot record {} by {}: {}", action, caller.audit_name, row.status());
    return grpc::Status(grpc::StatusCode::INTERNAL,
                        fmt::format("audit trail unavailable, call refused: {}", row.status()));
  }
  if (!result.ok()) {
    spdlog::info("operator {}: {} {} -> {}", caller.audit_name, action, target, e.outcome);
  }
  return result;
}

grpc::ServerUnaryReactor* OperatorService::ListHosts(grpc::CallbackServerContext* ctx,
                                                     const v1::ListHostsRequest* req,
                                                     v1::ListHostsResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  Caller caller = identify(*ctx);
  grpc::Status status = authorize(caller, false);
  if (status.ok()) {
    Labels selector;
    if (!req->selector().empty()) {
      auto parsed = parseSelector("selector", req->selector());
      if (!parsed.ok()) status = toGrpc(parsed.status());
      else selector = *parsed;
    }
    if (status.ok()) {
      for (auto& h : fleet_.listHosts(selector)) *resp->add_hosts() = std::move(h);
    }
  }
  reactor->Finish(audit(caller, "hosts", req->selector().empty() ? "*" : req->selector(), "",
                        status, status.ok() ? fmt::format("{} hosts", resp->hosts_size()) : ""));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::GetHost(grpc::CallbackServerContext* ctx,
                                                   const v1::GetHostRequest* req,
                                                   v1::HostStatus* resp) {
  auto* reactor = ctx->DefaultReactor();
  Caller caller = identify(*ctx);
  grpc::Status status = authorize(caller, false);
  if (status.ok()) {
    auto host = fleet_.getHost(req->host());
    if (!host) {
      status = grpc::Status(grpc::StatusCode::NOT_FOUND,
                            fmt::format("unknown host \"{}\"", req->host()));
    } else {
      *resp = *std::move(host);
    }
  }
  reactor->Finish(audit(caller, "status", req->host(), "", status));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::Isolate(grpc::CallbackServerContext* ctx,
                                                   const v1::IsolateRequest* req,
                                                   v1::ContainmentResponse* /*resp*/) {
  auto* reactor = ctx->DefaultReactor();
  Caller caller = identify(*ctx);
  grpc::Status status = authorize(caller, true);
  if (status.ok()) {
    status = grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "isolate: not available yet");
  }
  reactor->Finish(audit(caller, "isolate", req->selector(), req->reason(), status));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::Release(grpc::CallbackServerContext* ctx,
                                                   const v1::ReleaseRequest* req,
                                                   v1::ContainmentResponse* /*resp*/) {
  auto* reactor = ctx->DefaultReactor();
  Caller caller = identify(*ctx);
  grpc::Status status = authorize(caller, true);
  if (status.ok()) {
    status = grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "release: not available yet");
  }
  reactor->Finish(audit(caller, "release", req->selector(), req->reason(), status));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::ListAudit(grpc::CallbackServerContext* ctx,
                                                     const v1::ListAuditRequest* req,
                                                     v1::ListAuditResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  Caller caller = identify(*ctx);
  grpc::Status status = authorize(caller, false);
  uint32_t limit = req->limit() == 0 ? kDefaultAuditLimit : std::min(req->limit(), kMaxAuditLimit);
  if (status.ok()) {
    auto rows = store_.listAudit(limit);
    if (!rows.ok()) {
      status = toGrpc(rows.status());
    } else {
      for (const auto& e : *rows) {
        auto* r = resp->add_records();
        r->set_id(e.id);
        r->set_at_unix_ms(e.at_unix_ms);
        r->set_operator_(e.operator_name);
        r->set_action(e.action);
        r->set_target(e.target);
        r->set_reason(e.reason);
        r->set_outcome(e.outcome);
        r->set_detail(e.detail);
        r->set_prev_hash(e.prev_hash);
        r->set_hash(e.hash);
      }
    }
  }
  reactor->Finish(audit(caller, "audit", fmt::format("limit={}", limit), "", status));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::VerifyAudit(grpc::CallbackServerContext* ctx,
                                                       const v1::VerifyAuditRequest* /*req*/,
                                                       v1::VerifyAuditResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  Caller caller = identify(*ctx);
  grpc::Status status = authorize(caller, false);
  std::string detail;
  if (status.ok()) {
    auto v = store_.verifyAudit();
    if (!v.ok()) {
      status = toGrpc(v.status());
    } else {
      resp->set_ok(v->ok);
      resp->set_rows(v->rows);
      resp->set_first_bad_id(v->first_bad_id);
      resp->set_problem(v->problem);
      detail = v->ok ? fmt::format("chain intact, {} rows", v->rows)
                     : fmt::format("chain broken at row {}: {}", v->first_bad_id, v->problem);
      if (!v->ok) spdlog::error("audit verify: {}", detail);
    }
  }
  reactor->Finish(audit(caller, "audit-verify", "audit", "", status, detail));
  return reactor;
}

}  // namespace bulkhead::controller
