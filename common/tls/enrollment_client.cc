#include "common/tls/enrollment_client.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include "bulkhead/v1/enrollment.grpc.pb.h"
#include "common/format.h"
#include "common/parse.h"
#include "common/pki/pki.h"

namespace bulkhead {
namespace {

namespace v1 = bulkhead::v1;

constexpr int kMaxAnswerBytes = 256 * 1024;

std::string grpcTarget(const HostPort& hp) {
  return hp.host.find(':') != std::string::npos ? fmt::format("ipv6:[{}]:{}", hp.host, hp.port)
                                                : fmt::format("{}:{}", hp.host, hp.port);
}

std::unique_ptr<grpc::ClientContext> deadline(std::chrono::milliseconds timeout) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + timeout);
  return ctx;
}

// TLS without any check of the server: for the CA certificate only, checked by the pin.
std::shared_ptr<grpc::ChannelCredentials> unverifiedTls() {
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_verify_server_certs(false);
  options.set_check_call_host(false);
  options.set_certificate_verifier(std::make_shared<grpc::experimental::NoOpCertificateVerifier>());
  return grpc::experimental::TlsCredentials(options);
}

absl::Status fromGrpc(const std::string& address, const grpc::Status& st) {
  return absl::Status(static_cast<absl::StatusCode>(st.error_code()),
                      fmt::format("{}: {}", address, st.error_message()));
}

}  // namespace

absl::StatusOr<v1::EnrollResponse> enrollWithToken(const JoinTokenText& token,
                                                   const std::string& host_id,
                                                   const std::string& csr_pem,
                                                   std::chrono::milliseconds timeout) {
  absl::Status last = absl::UnavailableError("the token names no enrollment address");
  for (const std::string& address : token.enroll_addresses) {
    auto hp = parseHostPort("enroll", address);
    if (!hp.ok()) return hp.status();
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(kMaxAnswerBytes);

    // 1. The CA, trusted by its pin only.
    auto open =
        v1::Enrollment::NewStub(grpc::CreateCustomChannel(grpcTarget(*hp), unverifiedTls(), args));
    v1::GetCaCertificateResponse ca;
    grpc::Status st =
        open->GetCaCertificate(deadline(timeout).get(), v1::GetCaCertificateRequest(), &ca);
    if (st.error_code() == grpc::StatusCode::UNAVAILABLE ||
        st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      last = fromGrpc(address, st);
      continue;
    }
    if (!st.ok()) return fromGrpc(address, st);
    auto pin = certificateSha256(ca.ca_pem());
    if (!pin.ok() || *pin != token.ca_sha256) {
      return absl::PermissionDeniedError(fmt::format(
          "{}: the CA certificate it sent does not match the token's pin (a wrong address, or "
          "someone in between): nothing sent",
          address));
    }

    // 2. The token and the request, to the controller that CA vouches for.
    grpc::SslCredentialsOptions verified;
    verified.pem_root_certs = ca.ca_pem();
    args.SetSslTargetNameOverride(token.controller_name);
    auto checked = v1::Enrollment::NewStub(
        grpc::CreateCustomChannel(grpcTarget(*hp), grpc::SslCredentials(verified), args));
    v1::EnrollRequest request;
    request.set_token(formatJoinToken(token));
    request.set_host_id(host_id);
    request.set_csr_pem(csr_pem);
    v1::EnrollResponse answer;
    st = checked->Enroll(deadline(timeout).get(), request, &answer);
    if (st.error_code() == grpc::StatusCode::UNAVAILABLE) {
      last = fromGrpc(address, st);
      continue;
    }
    if (!st.ok()) return fromGrpc(address, st);
    if (answer.ca_pem() != ca.ca_pem()) {
      return absl::DataLossError(fmt::format("{}: the answer names another CA", address));
    }
    return answer;
  }
  return last;
}

}  // namespace bulkhead
