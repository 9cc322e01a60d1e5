#include "cli/operator_client.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "absl/strings/str_split.h"
#include "cli/output.h"
#include "common/certificate.h"
#include "common/format.h"
#include "common/parse.h"
#include "common/pki/pki.h"
#include "common/text.h"
#include "common/tls/tls.h"

namespace bulkhead::cli {

namespace {

namespace fs = std::filesystem;

// How long the CLI waits for one of several controllers to connect before it tries the next.
constexpr std::chrono::milliseconds kReplicaConnectBudget{3000};

// The controller's address: --controller, or the identity directory's controller file.
std::string controllerAddress(const GlobalOptions& options) {
  if (!options.controller.empty() || options.identity.empty()) return options.controller;
  auto text = readFile(fs::path(options.identity) / kControllerAddressFile);
  if (!text.ok()) return {};
  return text->substr(0, text->find('\n'));
}

struct ControllerTarget {
  std::string address;  // as the user wrote it: for messages
  std::string target;   // for gRPC
};

// "ADDR:PORT[,ADDR:PORT...]": every entry must parse; the error names the one that does not.
absl::StatusOr<std::vector<ControllerTarget>> controllerTargets(const std::string& text) {
  std::vector<ControllerTarget> out;
  for (const std::string& address : std::vector<std::string>(absl::StrSplit(text, ','))) {
    auto hp = parseHostPort("--controller", address);
    if (!hp.ok()) return hp.status();
    out.push_back({address, hp->host.find(':') != std::string::npos
                                ? fmt::format("ipv6:[{}]:{}", hp->host, hp->port)
                                : fmt::format("{}:{}", hp->host, hp->port)});
  }
  return out;
}

std::shared_ptr<grpc::Channel> channelFor(const std::string& target, const IdentityFiles& id,
                                          const std::string& controller_name) {
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(controller_name);
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(target, clientCredentials(id), args);
}

// True once `channel` is connected (TLS handshake done); false as soon as an attempt failed
// (refused, reset, handshake refused) or when `budget` runs out first (no answer at all).
bool connects(grpc::Channel& channel, std::chrono::milliseconds budget) {
  const auto deadline = std::chrono::system_clock::now() + budget;
  grpc_connectivity_state state = channel.GetState(/*try_to_connect=*/true);
  while (state != GRPC_CHANNEL_READY) {
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN) return false;
    if (!channel.WaitForStateChange(state, deadline)) return false;
    state = channel.GetState(/*try_to_connect=*/false);
  }
  return true;
}

// Renews when the certificate has run two thirds of its time (renewCertificate); answers the
// identity to use: on any failure the current one, after one line on standard error (none
// when the controller answered a moment ago).
IdentityFiles renewIfDue(v1::Operator::Stub& stub, const fs::path& dir, IdentityFiles id,
                         std::chrono::milliseconds timeout) {
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  const int64_t lifetime = id.self.not_after_unix - id.self.not_before_unix;
  if (lifetime <= 0 || id.self.not_after_unix - now > lifetime / 3) return id;
  auto renewed = renewCertificate(stub, dir, id, timeout);
  if (renewed.ok()) return *std::move(renewed);
  if (!absl::IsResourceExhausted(renewed.status())) {
    std::cerr << fmt::format("bulkhead: certificate {} ends at {}: not renewed: {}\n",
                             id.self.serial, utcTime(id.self.not_after_unix * 1000),
                             renewed.status().message());
  }
  return id;
}

}  // namespace

absl::StatusOr<IdentityFiles> renewCertificate(v1::Operator::Stub& stub,
                                               const std::filesystem::path& dir,
                                               const IdentityFiles& id,
                                               std::chrono::milliseconds timeout) {
  auto csr = createCsrForKey(id.key_pem, id.self.name);
  if (!csr.ok()) return csr.status();
  v1::RenewOperatorCertificateRequest req;
  req.set_csr_pem(*csr);
  v1::RenewOperatorCertificateResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  const grpc::Status st = stub.RenewOperatorCertificate(&ctx, req, &resp);
  if (!st.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(st.error_code()),
                        escapeNonPrintable(st.error_message()));
  }
  auto fresh = identityFromCertPem(resp.cert_pem());
  absl::Status check = fresh.status();
  if (check.ok() && (fresh->kind != PeerKind::kOperator || fresh->name != id.self.name)) {
    check = absl::InvalidArgumentError("the controller issued a certificate for another identity");
  }
  if (check.ok()) check = checkIdentityFiles(id.ca_pem, resp.cert_pem(), id.key_pem);
  if (check.ok() && fresh->not_after_unix < id.self.not_after_unix) {
    check = absl::InvalidArgumentError("the new certificate ends before the current one");
  }
  if (check.ok()) check = writeFileAtomic(dir / "tls.crt", resp.cert_pem(), 0644);
  if (!check.ok()) return check;
  IdentityFiles out = id;
  out.cert_pem = resp.cert_pem();
  out.self = *std::move(fresh);
  return out;
}

absl::StatusOr<std::unique_ptr<OperatorClient>> OperatorClient::create(const GlobalOptions& options,
                                                                       bool renew_when_due) {
  const std::string controllers = controllerAddress(options);
  if (controllers.empty()) {
    return absl::InvalidArgumentError(
        "--controller: required (ADDR:PORT, or set BULKHEAD_CONTROLLER)");
  }
  auto targets = controllerTargets(controllers);
  if (!targets.ok()) return targets.status();
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
  const std::string name = options.controller_name_given || id->controller_name.empty()
                               ? options.controller_name
                               : id->controller_name;
  // Several controllers serving one database: the first that connects takes the call. Each
  // one skipped is a line on standard error; the last is used without waiting, so that when
  // none answers the call fails as with one controller, naming the last.
  const ControllerTarget* chosen = &targets->back();
  std::shared_ptr<grpc::Channel> channel;
  const auto budget = std::min(options.timeout, kReplicaConnectBudget);
  for (size_t i = 0; i + 1 < targets->size(); ++i) {
    channel = channelFor((*targets)[i].target, *id, name);
    if (connects(*channel, budget)) {
      chosen = &(*targets)[i];
      break;
    }
    *options.notes << fmt::format(
        "bulkhead: controller {} did not connect (refused, or no answer within {} ms); trying "
        "{}\n",
        (*targets)[i].address, budget.count(), (*targets)[i + 1].address);
    channel.reset();
  }
  if (!channel) channel = channelFor(chosen->target, *id, name);
  auto stub = v1::Operator::NewStub(channel);
  IdentityFiles current =
      renew_when_due ? renewIfDue(*stub, options.identity, *id, options.timeout) : *id;
  if (current.cert_pem != id->cert_pem) {
    stub = v1::Operator::NewStub(channelFor(chosen->target, current, name));
  }
  auto client = std::unique_ptr<OperatorClient>(new OperatorClient(
      chosen->address, options.tenant, options.incident, options.timeout, std::move(stub)));
  client->identity_ = std::move(current);
  client->identity_dir_ = options.identity;
  return client;
}

std::unique_ptr<grpc::ClientContext> OperatorClient::context(
    std::chrono::milliseconds timeout) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::max(timeout, timeout_));
  if (!tenant_.empty()) ctx->AddMetadata("bulkhead-tenant", tenant_);
  if (!incident_.empty()) ctx->AddMetadata("bulkhead-incident", incident_);
  return ctx;
}

std::unique_ptr<OperatorClient> connectClient(const std::string& command,
                                              const GlobalOptions& options, std::ostream& err,
                                              bool renew_when_due) {
  auto client = OperatorClient::create(options, renew_when_due);
  if (!client.ok()) {
    err << "bulkhead " << command << ": " << client.status().message() << "\n";
    return nullptr;
  }
  return *std::move(client);
}

absl::StatusOr<v1::OperatorRole> parseGrantableRole(const std::string& flag,
                                                    const std::string& text) {
  static constexpr v1::OperatorRole kWire[] = {v1::OPERATOR_ROLE_NONE, v1::OPERATOR_ROLE_VIEWER,
                                               v1::OPERATOR_ROLE_RESPONDER,
                                               v1::OPERATOR_ROLE_APPROVER, v1::OPERATOR_ROLE_ADMIN};
  if (text.empty()) {
    return absl::InvalidArgumentError(
        fmt::format("{}: required (viewer, responder, approver or admin)", flag));
  }
  auto role = parseRole(text);
  if (!role.ok() || *role == Role::kNone) {
    return absl::InvalidArgumentError(
        fmt::format("{}: invalid value \"{}\": expected viewer, responder, approver or admin", flag,
                    escapeNonPrintable(text.substr(0, 64))));
  }
  return kWire[static_cast<size_t>(*role)];
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
