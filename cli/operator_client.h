// A connection to the controller's Operator service with the operator's mTLS identity.
#pragma once

#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bulkhead/v1/operator.grpc.pb.h"
#include "cli/cli.h"
#include "cli/output.h"
#include "common/tls/tls.h"

namespace bulkhead::cli {

class OperatorClient {
 public:
  // Validates --controller (or the identity's controller file) and loads --identity; errors
  // name the flag or file at fault. Given several controllers (ADDR:PORT,ADDR:PORT...), connects
  // to the first that connects within 3 s (the --timeout if shorter), one line on standard error
  // for each one skipped; the last is used without that wait. Nothing is sent before a
  // controller is chosen, so no call is ever made twice. When `renew_when_due` and the certificate
  // has run two thirds of its time, first renews it (renewCertificate); a failed renewal is one
  // line on standard error and the call goes on with the current certificate.
  static absl::StatusOr<std::unique_ptr<OperatorClient>> create(const GlobalOptions& options,
                                                                bool renew_when_due = true);

  v1::Operator::Stub& stub() { return *stub_; }

  // A fresh context whose deadline is the --timeout (or `timeout` if longer), naming the
  // --tenant in the request metadata "bulkhead-tenant" when one was chosen, and the --incident
  // in "bulkhead-incident".
  std::unique_ptr<grpc::ClientContext> context(std::chrono::milliseconds timeout = {}) const;

  // The address of the controller the calls go to (one of --controller's).
  const std::string& controller() const { return controller_; }
  // The identity the connection uses, and its directory.
  const IdentityFiles& identity() const { return identity_; }
  const std::string& identityDir() const { return identity_dir_; }

 private:
  OperatorClient(std::string controller, std::string tenant, std::string incident,
                 std::chrono::milliseconds timeout, std::unique_ptr<v1::Operator::Stub> stub)
      : controller_(std::move(controller)),
        tenant_(std::move(tenant)),
        incident_(std::move(incident)),
        timeout_(timeout),
        stub_(std::move(stub)) {}

  std::string controller_;
  std::string tenant_;
  std::string incident_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<v1::Operator::Stub> stub_;
  IdentityFiles identity_;
  std::string identity_dir_;
};

// A new certificate for identity `id` (directory `dir`) from the controller, for the same
// key: tls.crt is replaced atomically once the answer checks out (this operator, this key, the
// fleet CA, a later end). The controller's refusal as its status; nothing written on error.
absl::StatusOr<IdentityFiles> renewCertificate(v1::Operator::Stub& stub,
                                               const std::filesystem::path& dir,
                                               const IdentityFiles& id,
                                               std::chrono::milliseconds timeout);

// OperatorClient::create, or nullptr after one line on `err` naming the command and the flag
// or file at fault (exit 2 for the caller).
std::unique_ptr<OperatorClient> connectClient(const std::string& command,
                                              const GlobalOptions& options, std::ostream& err,
                                              bool renew_when_due = true);

// Prints one line for a failed RPC and returns the exit code: 2 for bad input the controller
// rejected (invalid argument, unknown host, precondition), 1 for everything else (controller
// unreachable, refused identity, internal errors).
int reportRpcError(const std::string& command, const std::string& controller,
                   const grpc::Status& status, std::ostream& err);

// The common shape of a command with one unary call: connects (exit 2 with one line on a bad
// flag or identity), runs `call(stub, context, response)` and answers with the response as
// JSON (--json) or as `print(response)` writes it (exit 0), or with reportRpcError's line.
template <typename Response, typename Call, typename Print>
int callAndPrint(const std::string& command, const GlobalOptions& g, Io& io, Call call,
                 Print print) {
  auto client = OperatorClient::create(g);
  if (!client.ok()) {
    io.err << "bulkhead " << command << ": " << client.status().message() << "\n";
    return kUsage;
  }
  Response resp;
  auto ctx = (*client)->context(g.timeout);
  const grpc::Status st = call((*client)->stub(), ctx.get(), &resp);
  if (!st.ok()) return reportRpcError(command, (*client)->controller(), st, io.err);
  if (g.json) {
    printJson(io.out, resp);
  } else {
    print(resp);
  }
  return kOk;
}

// A role to grant, as `--role` gives it: viewer, responder, approver or admin. INVALID_ARGUMENT
// naming `flag` otherwise.
absl::StatusOr<v1::OperatorRole> parseGrantableRole(const std::string& flag,
                                                    const std::string& text);

// The request's targets from the command line: host ids, a selector or all, whichever the
// user gave (the commands check first that exactly one was given).
bulkhead::v1::Targets targetsOf(const std::vector<std::string>& hosts,
                                const std::string& selector, bool all = false);

}  // namespace bulkhead::cli
