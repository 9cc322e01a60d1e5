// Tenants and role bindings on the Operator service: TenantService checks, stores and audits.
#include "controller/rpc/audit.h"
#include "controller/rpc/operator_service.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

grpc::ServerUnaryReactor* OperatorService::ListTenants(grpc::CallbackServerContext* ctx,
                                                       const v1::ListTenantsRequest*,
                                                       v1::ListTenantsResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto tenants = tenants_.listTenants(identify(*ctx));
  if (tenants.ok()) {
    for (auto& t : *tenants) *resp->add_tenants() = std::move(t);
  }
  reactor->Finish(toGrpcStatus(tenants.status()));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::CreateTenant(grpc::CallbackServerContext* ctx,
                                                        const v1::CreateTenantRequest* req,
                                                        v1::Tenant* resp) {
  return finishUnary(ctx->DefaultReactor(),
                     tenants_.createTenant(identify(*ctx), req->name(), req->reason()), resp);
}

grpc::ServerUnaryReactor* OperatorService::ListAccess(grpc::CallbackServerContext* ctx,
                                                      const v1::ListAccessRequest* req,
                                                      v1::ListAccessResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto bindings = tenants_.listAccess(identify(*ctx), req->operator_name());
  if (bindings.ok()) {
    for (auto& b : *bindings) *resp->add_bindings() = std::move(b);
  }
  reactor->Finish(toGrpcStatus(bindings.status()));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::GrantAccess(grpc::CallbackServerContext* ctx,
                                                       const v1::GrantAccessRequest* req,
                                                       v1::RoleBinding* resp) {
  return finishUnary(ctx->DefaultReactor(),
                     tenants_.grantAccess(identify(*ctx), req->operator_name(), req->role(),
                                          req->hosts(), req->reason()),
                     resp);
}

grpc::ServerUnaryReactor* OperatorService::RevokeAccess(grpc::CallbackServerContext* ctx,
                                                        const v1::RevokeAccessRequest* req,
                                                        v1::RoleBinding* resp) {
  return finishUnary(ctx->DefaultReactor(),
                     tenants_.revokeAccess(identify(*ctx), req->binding_id(), req->reason()), resp);
}

}  // namespace bulkhead::controller
