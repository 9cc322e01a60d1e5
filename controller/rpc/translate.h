// The operator service's translations between the wire (bulkhead.v1 messages, a unary
// reactor) and the service layer's plain requests and results (controller/service/). Nothing
// here decides anything.
#pragma once

#include <grpcpp/grpcpp.h>

#include "bulkhead/v1/operator.pb.h"
#include "controller/service/containment.h"
#include "controller/service/host_operations.h"

namespace bulkhead::controller {

IsolateRequest fromProto(const bulkhead::v1::IsolateRequest& req);
ReleaseRequest fromProto(const bulkhead::v1::ReleaseRequest& req);
BlockRequest fromProto(const bulkhead::v1::BlockRequest& req);
UnblockRequest fromProto(const bulkhead::v1::UnblockRequest& req);
ListBlocksRequest fromProto(const bulkhead::v1::ListBlocksRequest& req);
ListSessionsRequest fromProto(const bulkhead::v1::ListSessionsRequest& req);
KillSessionsRequest fromProto(const bulkhead::v1::KillSessionsRequest& req);
KillProcessRequest fromProto(const bulkhead::v1::KillProcessRequest& req);
KillConnectionsRequest fromProto(const bulkhead::v1::KillConnectionsRequest& req);

// Callbacks that fill `resp` with the result and finish `reactor` with the status. `resp` and
// `reactor` belong to gRPC and stay valid until the Finish.
ContainmentDone finishWith(bulkhead::v1::ContainmentResponse* resp,
                           grpc::ServerUnaryReactor* reactor);
BlocksDone finishWith(bulkhead::v1::ListBlocksResponse* resp, grpc::ServerUnaryReactor* reactor);
HostActionDone finishWith(bulkhead::v1::HostActionResponse* resp,
                          grpc::ServerUnaryReactor* reactor);

}  // namespace bulkhead::controller
