// Operator RPCs on one host's sessions and processes: the caller is identified and
// authorised, the request checked and translated; HostOperations (controller/service/) audits,
// sends the command and answers.
#include "controller/rpc/audit.h"
#include "controller/rpc/operator_service.h"
#include "controller/rpc/translate.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

grpc::ServerUnaryReactor* OperatorService::ListSessions(grpc::CallbackServerContext* ctx,
                                                        const v1::ListSessionsRequest* req,
                                                        v1::HostActionResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  Caller caller = identify(*ctx);
  grpc::Status status = validated(authorized(caller, OperatorAction::kListSessions), *req);
  if (!status.ok()) {
    reactor->Finish(audit(caller, OperatorAction::kListSessions, req->host(), "", status));
    return reactor;
  }
  host_operations_->listSessions(caller.audit_name, fromProto(*req), finishWith(resp, reactor));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::KillSessions(grpc::CallbackServerContext* ctx,
                                                        const v1::KillSessionsRequest* req,
                                                        v1::HostActionResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  Caller caller = identify(*ctx);
  grpc::Status status = validated(authorized(caller, OperatorAction::kKillSessions), *req);
  if (!status.ok()) {
    reactor->Finish(
        audit(caller, OperatorAction::kKillSessions, req->host(), req->reason(), status));
    return reactor;
  }
  host_operations_->killSessions(caller.audit_name, fromProto(*req), finishWith(resp, reactor));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::KillProcess(grpc::CallbackServerContext* ctx,
                                                       const v1::KillProcessRequest* req,
                                                       v1::HostActionResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  Caller caller = identify(*ctx);
  grpc::Status status = validated(authorized(caller, OperatorAction::kKillProcess), *req);
  if (!status.ok()) {
    reactor->Finish(
        audit(caller, OperatorAction::kKillProcess, req->host(), req->reason(), status));
    return reactor;
  }
  host_operations_->killProcess(caller.audit_name, fromProto(*req), finishWith(resp, reactor));
  return reactor;
}

}  // namespace bulkhead::controller
