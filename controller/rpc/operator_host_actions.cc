// Operator RPCs on one host's sessions and processes, translated for HostOperations
// (controller/service/), which checks, audits, sends the command and answers.
#include "controller/rpc/operator_service.h"
#include "controller/rpc/translate.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

grpc::ServerUnaryReactor* OperatorService::ListSessions(grpc::CallbackServerContext* ctx,
                                                        const v1::ListSessionsRequest* req,
                                                        v1::HostActionResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  host_operations_.listSessions(identify(*ctx), fromProto(*req), finishWith(resp, reactor));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::KillSessions(grpc::CallbackServerContext* ctx,
                                                        const v1::KillSessionsRequest* req,
                                                        v1::HostActionResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  host_operations_.killSessions(identify(*ctx), fromProto(*req), finishWith(resp, reactor));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::KillProcess(grpc::CallbackServerContext* ctx,
                                                       const v1::KillProcessRequest* req,
                                                       v1::HostActionResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  host_operations_.killProcess(identify(*ctx), fromProto(*req), finishWith(resp, reactor));
  return reactor;
}

}  // namespace bulkhead::controller
