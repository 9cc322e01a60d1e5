// Times every operator call for the metrics: a gRPC server interceptor that reports the call's
// method, status code and duration (its creation at the call's start to the status being sent)
// to a Metrics. Agent streams and evidence uploads (the AgentChannel service) are not timed:
// they last as long as the connection.
#pragma once

#include <grpcpp/support/server_interceptor.h>

#include <memory>

#include "controller/service/metrics.h"

namespace bulkhead::controller {

class CallMetricsFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CallMetricsFactory(Metrics& metrics) : metrics_(metrics) {}  // not owned
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  Metrics& metrics_;
};

}  // namespace bulkhead::controller
