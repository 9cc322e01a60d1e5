// Operator service: signals (SubmitSignal, ListSignals, PreviewSignal) and approvals
// (ListApprovals, Approve, Reject), translated for SignalService
// (controller/service/signals.h), which checks, records, decides and audits; and the webhook
// integrations, for IntegrationService (controller/service/integrations.h); join tokens, for
// EnrollmentService (controller/service/enrollment.h).
#include <optional>

#include "controller/rpc/audit.h"
#include "controller/rpc/operator_service.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

grpc::ServerUnaryReactor* OperatorService::SubmitSignal(grpc::CallbackServerContext* ctx,
                                                        const v1::SubmitSignalRequest* req,
                                                        v1::SubmitSignalResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  signals_.submitAsOperator(identify(*ctx), req->signal(),
                            [resp, reactor](absl::StatusOr<SignalOutcome> outcome) {
                              if (!outcome.ok()) {
                                reactor->Finish(toGrpcStatus(outcome.status()));
                                return;
                              }
                              resp->set_signal_id(outcome->signal_id);
                              resp->set_tenant(outcome->tenant);
                              resp->set_disposition(outcome->disposition);
                              for (auto& a : outcome->actions) *resp->add_actions() = std::move(a);
                              reactor->Finish(grpc::Status::OK);
                            });
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::ListSignals(grpc::CallbackServerContext* ctx,
                                                       const v1::ListSignalsRequest* req,
                                                       v1::ListSignalsResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto records = signals_.list(identify(*ctx), req->since_unix_ms(), req->limit());
  if (!records.ok()) {
    reactor->Finish(toGrpcStatus(records.status()));
    return reactor;
  }
  for (auto& r : *records) *resp->add_signals() = std::move(r);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::PreviewSignal(grpc::CallbackServerContext* ctx,
                                                         const v1::PreviewSignalRequest* req,
                                                         v1::SubmitSignalResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto outcome = signals_.preview(identify(*ctx), req->signal(), req->reporting_host());
  if (!outcome.ok()) {
    reactor->Finish(toGrpcStatus(outcome.status()));
    return reactor;
  }
  resp->set_disposition(outcome->disposition);
  resp->set_tenant(outcome->tenant);
  for (auto& a : outcome->actions) *resp->add_actions() = std::move(a);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::ListApprovals(grpc::CallbackServerContext* ctx,
                                                         const v1::ListApprovalsRequest* req,
                                                         v1::ListApprovalsResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto approvals = signals_.listApprovals(identify(*ctx), req->all(), req->limit());
  if (!approvals.ok()) {
    reactor->Finish(toGrpcStatus(approvals.status()));
    return reactor;
  }
  for (auto& a : *approvals) *resp->add_approvals() = std::move(a);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::Approve(grpc::CallbackServerContext* ctx,
                                                   const v1::DecideApprovalRequest* req,
                                                   v1::Approval* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto decided = signals_.approve(identify(*ctx), req->approval_id(), req->reason());
  if (!decided.ok()) {
    reactor->Finish(toGrpcStatus(decided.status()));
    return reactor;
  }
  *resp = *std::move(decided);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::Reject(grpc::CallbackServerContext* ctx,
                                                  const v1::DecideApprovalRequest* req,
                                                  v1::Approval* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto decided = signals_.reject(identify(*ctx), req->approval_id(), req->reason());
  if (!decided.ok()) {
    reactor->Finish(toGrpcStatus(decided.status()));
    return reactor;
  }
  *resp = *std::move(decided);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::CreateIntegration(
    grpc::CallbackServerContext* ctx, const v1::CreateIntegrationRequest* req,
    v1::CreateIntegrationResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto created = integrations_.create(identify(*ctx), req->name(), req->format(),
                                      req->format_type(), req->config_json());
  if (!created.ok()) {
    reactor->Finish(toGrpcStatus(created.status()));
    return reactor;
  }
  *resp->mutable_integration() = std::move(created->integration);
  resp->set_token(std::move(created->token));
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::ListIntegrations(
    grpc::CallbackServerContext* ctx, const v1::ListIntegrationsRequest* /*req*/,
    v1::ListIntegrationsResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto list = integrations_.list(identify(*ctx));
  if (!list.ok()) {
    reactor->Finish(toGrpcStatus(list.status()));
    return reactor;
  }
  for (auto& i : *list) *resp->add_integrations() = std::move(i);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::RevokeIntegration(
    grpc::CallbackServerContext* ctx, const v1::RevokeIntegrationRequest* req,
    v1::Integration* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto revoked = integrations_.revoke(identify(*ctx), req->name(), req->reason());
  if (!revoked.ok()) {
    reactor->Finish(toGrpcStatus(revoked.status()));
    return reactor;
  }
  *resp = std::move(*revoked);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::CreateJoinToken(grpc::CallbackServerContext* ctx,
                                                           const v1::CreateJoinTokenRequest* req,
                                                           v1::CreateJoinTokenResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  std::map<std::string, std::string> labels(req->labels().begin(), req->labels().end());
  std::optional<OperatorTokenSpec> op;
  if (!req->operator_name().empty() || req->operator_role() != v1::OPERATOR_ROLE_UNSPECIFIED) {
    op = OperatorTokenSpec{
        .name = req->operator_name(), .role = req->operator_role(), .hosts = req->operator_hosts()};
  }
  auto created = enrollment_.createToken(identify(*ctx), labels, req->ttl_seconds(),
                                         req->max_uses(), req->reason(), op);
  if (!created.ok()) {
    reactor->Finish(toGrpcStatus(created.status()));
    return reactor;
  }
  *resp->mutable_token() = std::move(created->token);
  resp->set_token_text(std::move(created->text));
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::RenewOperatorCertificate(
    grpc::CallbackServerContext* ctx, const v1::RenewOperatorCertificateRequest* req,
    v1::RenewOperatorCertificateResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto cert = enrollment_.renewOperator(identify(*ctx), req->csr_pem());
  const absl::Status status = cert.status();
  if (cert.ok()) {
    resp->set_cert_pem(*std::move(cert));
    resp->set_ca_pem(enrollment_.caPem());
  }
  reactor->Finish(toGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::ListJoinTokens(grpc::CallbackServerContext* ctx,
                                                          const v1::ListJoinTokensRequest*,
                                                          v1::ListJoinTokensResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto tokens = enrollment_.listTokens(identify(*ctx));
  if (!tokens.ok()) {
    reactor->Finish(toGrpcStatus(tokens.status()));
    return reactor;
  }
  for (auto& t : *tokens) *resp->add_tokens() = std::move(t);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::RevokeJoinToken(grpc::CallbackServerContext* ctx,
                                                           const v1::RevokeJoinTokenRequest* req,
                                                           v1::JoinToken* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto revoked = enrollment_.revokeToken(identify(*ctx), req->token_id(), req->reason());
  if (!revoked.ok()) {
    reactor->Finish(toGrpcStatus(revoked.status()));
    return reactor;
  }
  *resp = *std::move(revoked);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace bulkhead::controller
