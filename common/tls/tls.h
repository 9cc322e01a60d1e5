// Identity directories and gRPC mTLS credentials.
//
// An identity directory holds ca.crt (the fleet CA), tls.crt and tls.key (mode 0600), and
// optionally controller-name (the name in the controller's certificate, one line), as
// written by `bulkhead pki`. Every bulkhead program takes one with --identity DIR.
#pragma once

#include <grpcpp/security/auth_context.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>

#include <chrono>
#include <cstdint>
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
// The file of an operator identity directory naming the controller's address ("IP:PORT"), as
// `bulkhead enroll` writes it: the CLI's --controller when none is given.
inline constexpr const char* kControllerAddressFile = "controller";

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

// Makes every TLS connection this process opens from now on give back its OpenSSL record
// buffers while idle (SSL_MODE_RELEASE_BUFFERS, as nginx does): on the controller, with tens of
// thousands of idle agent streams, about 7 KiB less per connection with glibc's allocator and
// with tcmalloc alike (bench/connect_bench.sh). gRPC creates its SSL objects itself and
// has no hook for their mode, so the mode is set from OpenSSL's documented creation callback
// for SSL objects (an ex_data index's new_func), which SSL_new runs after copying its
// context's mode. Process-wide and for every later SSL object, gRPC's and any other; calling it
// again adds nothing. INTERNAL when OpenSSL refuses the index.
absl::Status releaseIdleTlsBuffersProcessWide();

// The verified peer identity of an mTLS call (from the peer certificate's subject).
absl::StatusOr<PeerIdentity> peerIdentity(const grpc::AuthContext& auth);

// Reads a whole small file; the error names the path.
absl::StatusOr<std::string> readFile(const std::filesystem::path& path);

// Atomically replaces `path`: temp file, fsync, rename, fsync of the directory.
absl::Status writeFileAtomic(const std::filesystem::path& path, const std::string& data,
                             mode_t mode);

// The controller's server credentials, whose own certificate and key can be replaced while it
// serves. gRPC reads the live identity from `live_dir` (FileWatcherCertificateProvider, every
// `refresh`); replace() checks a new identity and swaps it in there atomically (a generation
// directory and a `current` symlink renamed over the old one), so connections made after the
// next refresh present the new certificate and open ones keep theirs. The fleet CA and the
// certificate's name cannot change this way (agents verify the controller by both): that needs
// a restart. `live_dir` holds a copy of the private key: keep it private (0700, on tmpfs such as
// systemd's RuntimeDirectory).
class RotatingServerCredentials {
 public:
  // Writes `id` into `live_dir` (created 0700; stale generations of an earlier run removed).
  // Errors name the directory or file that could not be written, or what is wrong with `id`.
  static absl::StatusOr<std::unique_ptr<RotatingServerCredentials>> create(
      const IdentityFiles& id, std::filesystem::path live_dir,
      std::chrono::seconds refresh = std::chrono::seconds(1));

  // Require and verify a client certificate from the fleet CA, as serverCredentials() does.
  std::shared_ptr<grpc::ServerCredentials> credentials() const { return credentials_; }
  // The same live identity, asking no client certificate: for the enrollment listener, which
  // so presents a renewed or replaced certificate as soon as the mTLS port does.
  std::shared_ptr<grpc::ServerCredentials> credentialsWithoutClientCertificates() const {
    return credentials_without_client_certificates_;
  }
  const PeerIdentity& current() const { return current_.self; }
  // The live identity whole, its key included (a renewal reissues its certificate).
  const IdentityFiles& currentIdentity() const { return current_; }

  // Makes `next` the live identity. True when it differs from the current one, false when it
  // is the same certificate and key (nothing written). INVALID_ARGUMENT, and nothing changes,
  // when its key does not match its certificate, the certificate is not signed by the current
  // CA or has expired, the CA differs, or the certificate is not a controller certificate of
  // the same name.
  absl::StatusOr<bool> replace(const IdentityFiles& next);

 private:
  RotatingServerCredentials() = default;
  absl::Status writeGeneration(const IdentityFiles& id);

  std::filesystem::path live_dir_;
  uint64_t generation_ = 0;
  IdentityFiles current_;
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> provider_;
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> open_provider_;
  std::shared_ptr<grpc::ServerCredentials> credentials_;
  std::shared_ptr<grpc::ServerCredentials> credentials_without_client_certificates_;
};

}  // namespace bulkhead
