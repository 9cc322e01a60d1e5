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
  if (status.ok() && isBlank(req->reason())) {
    status = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "reason: required");
  }
  if (status.ok()) {
    if (auto c = parseCidr("remote_cidr", req->remote_cidr()); !c.ok()) {
      status = toGrpcStatus(c.status());
    }
  }
  if (status.ok() && req->port() > 65535) {
    status = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          fmt::format("port: invalid value {}: must be 1 to 65535", req->port()));
  }
  if (status.ok() && !fleet_.getHost(req->host())) {
    status = grpc::Status(grpc::StatusCode::NOT_FOUND,
                          fmt::format("unknown host \"{}\"", req->host()));
  }
  if (!status.ok()) {
    reactor->Finish(audit(caller, OperatorAction::kKillConnections, req->host(), req->reason(), status,
                          fmt::format("remote {}", req->remote_cidr())));
    return reactor;
  }
  v1::Command c;
  c.mutable_kill_connections()->set_remote_cidr(req->remote_cidr());
  c.mutable_kill_connections()->mutable_ports()->set_first(req->port());
  c.mutable_kill_connections()->mutable_ports()->set_last(req->port());
  runHostAction(caller, OperatorAction::kKillConnections, req->host(), req->reason(), std::move(c),
                req->wait_ms(), resp, reactor,
                req->port() == 0 ? fmt::format("remote {}", req->remote_cidr())
                                 : fmt::format("remote {} port {}", req->remote_cidr(),
                                               req->port()));
  return reactor;
}

}  // namespace bulkhead::controller
