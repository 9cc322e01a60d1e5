#include "cli/operator_client.h"

#include <fmt/format.h>

#include "common/format.h"
#include "common/parse.h"
#include "common/text.h"
#include "common/tls/tls.h"

namespace bulkhead::cli {

absl::StatusOr<std::unique_ptr<OperatorClient>> OperatorClient::create(
    const GlobalOptions& options) {
  if (options.controller.empty()) {
    return absl::InvalidArgumentError(
        "--controller: required (ADDR:PORT, or set BULKHEAD_CONTROLLER)");
  }
  auto hp = parseHostPort("--controller", options.controller);
  if (!hp.ok()) return hp.status();
  if (options.identity.empty()) {
    return absl::InvalidArgumentError(
        "--identity: required (an operator identity directory, or set BULKHEAD_IDENTITY)");
  }
  auto id = loadIdentity(options.identity);
  if (!id.ok()) return id.status();
  if (id->self.kind != PeerKind::kOperator) {
    return absl::InvalidArgumentError(fmt::format(
        "--identity: {} holds a {} identity, not an operator one", options.identity,
        peerKindName(id->self.kind)));
  }
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(options.controller_name_given || id->controller_name.empty()
                                    ? options.controller_name
                                    : id->controller_name);
  args.SetMaxReceiveMessageSize(64 << 20);
  std::string target = hp->host.find(':') != std::string::npos
                           ? fmt::format("ipv6:[{}]:{}", hp->host, hp->port)
                           : fmt::format("{}:{}", hp->host, hp->port);
  auto channel = grpc::CreateCustomChannel(target, clientCredentials(*id), args);
  return std::unique_ptr<OperatorClient>(new OperatorClient(
      options.controller, options.tenant, options.timeout, v1::Operator::NewStub(channel)));
}

std::unique_ptr<grpc::ClientContext> OperatorClient::context(
    std::chrono::milliseconds timeout) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::max(timeout, timeout_));
  if (!tenant_.empty()) ctx->AddMetadata("bulkhead-tenant", tenant_);
  return ctx;
}

std::unique_ptr<OperatorClient> connectClient(const std::string& command,
                                              const GlobalOptions& options, std::ostream& err) {
  auto client = OperatorClient::create(options);
  if (!client.ok()) {
    err << "bulkhead " << command << ": " << client.status().message() << "\n";
    return nullptr;
  }
  return *std::move(client);
}

int reportRpcError(const std::string& command, const std::string& controller,
                   const grpc::Status& rpc_status, std::ostream& err) {
  // The controller's message may carry a host's or an operator's text: shown escaped.
  const grpc::Status status(rpc_status.error_code(),
                            escapeNonPrintable(rpc_status.error_message()));
  switch (status.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::OUT_OF_RANGE:
      err << "bulkhead " << command << ": " << status.error_message() << "\n";
      return kUsage;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      if (status.error_message().find("andshake") != std::string::npos ||
          status.error_message().find("certificate") != std::string::npos) {
        err << "bulkhead " << command << ": TLS with the controller at " << controller
            << " failed (certificates from different CAs, a revoked or wrong-kind identity, or"
               " a wrong --controller-name): "
            << status.error_message() << "\n";
        return kFailed;
      }
      err << "bulkhead " << command << ": cannot reach the controller at " << controller << ": "
          << status.error_message() << "\n";
      return kFailed;
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
      err << "bulkhead " << command << ": refused by the controller: " << status.error_message()
          << "\n";
      return kFailed;
    case grpc::StatusCode::UNIMPLEMENTED:
      err << "bulkhead " << command << ": " << controller
          << " does not serve this call (UNIMPLEMENTED): an older controller, or not the "
             "controller's operator port (its enrollment port serves enrollment only)"
          << (status.error_message().empty() ? "" : ": " + status.error_message()) << "\n";
      return kFailed;
    default:
      err << "bulkhead " << command << ": " << status.error_message() << "\n";
      return kFailed;
  }
}

bulkhead::v1::Targets targetsOf(const std::vector<std::string>& hosts,
                                const std::string& selector, bool all) {
  bulkhead::v1::Targets t;
  if (all) {
    t.set_all(true);
  } else if (!selector.empty()) {
    t.set_selector(selector);
  } else {
    for (const auto& h : hosts) t.mutable_hosts()->add_ids(h);
  }
  return t;
}

}  // namespace bulkhead::cli
