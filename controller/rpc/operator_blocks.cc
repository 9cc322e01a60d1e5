// Operator service: Block, Unblock, ListBlocks and KillConnections, translated for
// Containment and HostOperations (controller/service/), which check, audit and finish the call.
#include "controller/rpc/operator_service.h"
#include "controller/rpc/translate.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

grpc::ServerUnaryReactor* OperatorService::Block(grpc::CallbackServerContext* ctx,
                                                 const v1::BlockRequest* req,
                                                 v1::ContainmentResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  containment_.block(identify(*ctx), fromProto(*req), finishWith(resp, reactor));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::Unblock(grpc::CallbackServerContext* ctx,
                                                   const v1::UnblockRequest* req,
                                                   v1::ContainmentResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  containment_.unblock(identify(*ctx), fromProto(*req), finishWith(resp, reactor));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::ListBlocks(grpc::CallbackServerContext* ctx,
                                                      const v1::ListBlocksRequest* req,
                                                      v1::ListBlocksResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  containment_.listBlocks(identify(*ctx), fromProto(*req), finishWith(resp, reactor));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::KillConnections(grpc::CallbackServerContext* ctx,
                                                           const v1::KillConnectionsRequest* req,
                                                           v1::HostActionResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  host_operations_.killConnections(identify(*ctx), fromProto(*req), finishWith(resp, reactor));
  return reactor;
}

}  // namespace bulkhead::controller
