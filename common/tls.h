// Identity directories and gRPC mTLS credentials.
//
// An identity directory holds ca.crt (the fleet CA), tls.crt and tls.key (mode 0600), and
// optionally controller-name (the name in the controller's certificate, one line), as
// written by `bulkhead pki`. Every bulkhead program takes one with --identity DIR.
#pragma once

#include <grpcpp/security/auth_context.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/identity.h"

namespace bulkhead {

struct IdentityFiles {
  std::string ca_pem;
  std::string cert_pem;
  std::string key_pem;
  PeerIdentity self;  // read from cert_pem
  std::string controller_name;  // from the controller-name file; empty when there is none
};

// The file of an identity directory naming the controller's certificate name.
inline constexpr const char* kControllerNameFile = "controller-name";

// Reads DIR/{ca.crt,tls.crt,tls.key} and DIR/controller-name if present. Errors name the
// missing or unreadable file, or a controller-name that is not a DNS name.
absl::StatusOr<IdentityFiles> loadIdentity(const std::filesystem::path& dir);

// Writes an identity directory (created 0700 if missing; key 0600). Refuses to overwrite an
// existing tls.key unless `overwrite`.
absl::Status writeIdentity(const std::filesystem::path& dir, const std::string& ca_pem,
                           const std::string& cert_pem, const std::string& key_pem, bool overwrite);

// Server credentials that require and verify a client certificate from the same CA.
std::shared_ptr<grpc::ServerCredentials> serverCredentials(const IdentityFiles& id);

// Client credentials presenting our certificate and verifying the server against the CA.
std::shared_ptr<grpc::ChannelCredentials> clientCredentials(const IdentityFiles& id);

// The verified peer identity of an mTLS call (from the peer certificate's subject).
absl::StatusOr<PeerIdentity> peerIdentity(const grpc::AuthContext& auth);

// Reads a whole small file; the error names the path.
absl::StatusOr<std::string> readFile(const std::filesystem::path& path);

// Atomically replaces `path`: temp file, fsync, rename, fsync of the directory.
absl::Status writeFileAtomic(const std::filesystem::path& path, const std::string& data,
                             mode_t mode);

}  // namespace bulkhead
