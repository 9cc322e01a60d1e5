#include "controller/rpc/call_metrics.h"

#include <chrono>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "bulkhead/v1/operator.grpc.pb.h"

namespace bulkhead::controller {

namespace {

class CallTimer final : public grpc::experimental::Interceptor {
 public:
  CallTimer(Metrics& metrics, std::string method)
      : metrics_(metrics), method_(std::move(method)), start_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      const auto code = static_cast<absl::StatusCode>(methods->GetSendStatus().error_code());
      const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start_;
      metrics_.operatorCall(method_, absl::StatusCodeToString(code), took.count());
    }
    methods->Proceed();
  }

 private:
  Metrics& metrics_;
  const std::string method_;
  const std::chrono::steady_clock::time_point start_;
};

}  // namespace

grpc::experimental::Interceptor* CallMetricsFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  static const std::string kPrefix =
      "/" + std::string(bulkhead::v1::Operator::service_full_name()) + "/";
  std::string_view method = info->method() != nullptr ? info->method() : "";
  if (!method.starts_with(kPrefix)) return nullptr;  // gRPC: no interceptor for this call
  return new CallTimer(metrics_, std::string(method.substr(kPrefix.size())));
}

}  // namespace bulkhead::controller
