// Operator service: notification channels (ListNotifyChannels, TestNotify), translated for
// NotificationService (controller/service/notifications.h), which checks and audits.
#include "controller/rpc/audit.h"
#include "controller/rpc/operator_service.h"
#include "controller/rpc/translate.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

grpc::ServerUnaryReactor* OperatorService::ListNotifyChannels(
    grpc::CallbackServerContext* ctx, const v1::ListNotifyChannelsRequest* /*req*/,
    v1::ListNotifyChannelsResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto channels = notifications_.channels(identify(*ctx));
  if (channels.ok()) {
    for (const ChannelSummary& c : *channels) *resp->add_channels() = toProto(c);
  }
  reactor->Finish(toGrpcStatus(channels.status()));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::TestNotify(grpc::CallbackServerContext* ctx,
                                                      const v1::TestNotifyRequest* req,
                                                      v1::TestNotifyResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto sent = notifications_.test(identify(*ctx), req->channel());
  if (sent.ok()) *resp->mutable_channel() = toProto(*sent);
  reactor->Finish(toGrpcStatus(sent.status()));
  return reactor;
}

}  // namespace bulkhead::controller
