#include "controller/rpc/enrollment_server.h"

#include "controller/rpc/audit.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

grpc::ServerUnaryReactor* EnrollmentRpc::GetCaCertificate(grpc::CallbackServerContext* ctx,
                                                          const v1::GetCaCertificateRequest*,
                                                          v1::GetCaCertificateResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  resp->set_ca_pem(service_.caPem());
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* EnrollmentRpc::Enroll(grpc::CallbackServerContext* ctx,
                                                const v1::EnrollRequest* req,
                                                v1::EnrollResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto enrolled = service_.enroll(req->token(), req->host_id(), req->csr_pem(), ctx->peer());
  if (!enrolled.ok()) {
    reactor->Finish(toGrpcStatus(enrolled.status()));
    return reactor;
  }
  *resp = *std::move(enrolled);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace bulkhead::controller
