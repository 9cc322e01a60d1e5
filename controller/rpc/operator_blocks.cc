// Operator service: Block, Unblock, ListBlocks. Authorises the caller, then hands the call to
// Containment (its thread serialises every change of a desired state and finishes the call).
#include "common/format.h"
#include "common/parse.h"
#include "controller/rpc/audit.h"
#include "controller/rpc/operator_service.h"
#include "controller/rpc/translate.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

grpc::ServerUnaryReactor* OperatorService::Block(grpc::CallbackServerContext* ctx,
                                                 const v1::BlockRequest* req,
                                                 v1::ContainmentResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  Caller caller = identify(*ctx);
  BlockRequest request = fromProto(*req);
  if (grpc::Status status = validated(authorized(caller, OperatorAction::kBlock), *req);
      !status.ok()) {
    reactor->Finish(
        audit(caller, OperatorAction::kBlock, auditTarget(request), request.reason, status));
    return reactor;
  }
  containment_.block(caller.audit_name, std::move(request), finishWith(resp, reactor));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::Unblock(grpc::CallbackServerContext* ctx,
                                                   const v1::UnblockRequest* req,
                                                   v1::ContainmentResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  Caller caller = identify(*ctx);
  UnblockRequest request = fromProto(*req);
  if (grpc::Status status = validated(authorized(caller, OperatorAction::kUnblock), *req);
      !status.ok()) {
    reactor->Finish(
        audit(caller, OperatorAction::kUnblock, auditTarget(request), request.reason, status));
    return reactor;
  }
  containment_.unblock(caller.audit_name, std::move(request), finishWith(resp, reactor));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::ListBlocks(grpc::CallbackServerContext* ctx,
                                                      const v1::ListBlocksRequest* req,
                                                      v1::ListBlocksResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  Caller caller = identify(*ctx);
  ListBlocksRequest request = fromProto(*req);
  if (grpc::Status status = validated(authorized(caller, OperatorAction::kListBlocks), *req);
      !status.ok()) {
    reactor->Finish(audit(caller, OperatorAction::kListBlocks, auditTarget(request), "", status));
    return reactor;
  }
  containment_.listBlocks(caller.audit_name, std::move(request), finishWith(resp, reactor));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::KillConnections(
    grpc::CallbackServerContext* ctx, const v1::KillConnectionsRequest* req,
    v1::HostActionResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  Caller caller = identify(*ctx);
  grpc::Status status = validated(authorized(caller, OperatorAction::kKillConnections), *req);
  if (!status.ok()) {
    reactor->Finish(audit(caller, OperatorAction::kKillConnections, req->host(), req->reason(),
                          status, fmt::format("remote {}", req->remote_cidr())));
    return reactor;
  }
  host_operations_->killConnections(caller.audit_name, fromProto(*req),
                                    finishWith(resp, reactor));
  return reactor;
}

}  // namespace bulkhead::controller
