// The Enrollment service (proto/bulkhead/v1/enrollment.proto), served alone on the
// enrollment listener: translates for EnrollmentService (controller/service/enrollment.h).
#pragma once

#include <grpcpp/grpcpp.h>

#include "bulkhead/v1/enrollment.grpc.pb.h"
#include "controller/service/enrollment.h"

namespace bulkhead::controller {

class EnrollmentRpc final : public bulkhead::v1::Enrollment::CallbackService {
 public:
  explicit EnrollmentRpc(EnrollmentService& service) : service_(service) {}

  using Base = bulkhead::v1::Enrollment::CallbackService;
  using Base::Enroll;
  using Base::GetCaCertificate;

  grpc::ServerUnaryReactor* GetCaCertificate(grpc::CallbackServerContext* ctx,
                                             const bulkhead::v1::GetCaCertificateRequest* req,
                                             bulkhead::v1::GetCaCertificateResponse* resp) override;
  grpc::ServerUnaryReactor* Enroll(grpc::CallbackServerContext* ctx,
                                   const bulkhead::v1::EnrollRequest* req,
                                   bulkhead::v1::EnrollResponse* resp) override;

 private:
  EnrollmentService& service_;
};

}  // namespace bulkhead::controller
