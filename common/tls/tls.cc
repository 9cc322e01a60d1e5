#include "common/tls/tls.h"

#include <fcntl.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "common/certificate.h"
#include "common/format.h"
#include "common/pki/pki.h"

namespace bulkhead {

namespace fs = std::filesystem;

absl::StatusOr<std::string> readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        fmt::format("cannot read {}: {}", path.string(), std::strerror(errno)));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status writeFileAtomic(const fs::path& path, const std::string& data, mode_t mode) {
  fs::path tmp = path;
  tmp += ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    return absl::PermissionDeniedError(
        fmt::format("cannot write {}: {}", tmp.string(), std::strerror(errno)));
  }
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return absl::InternalError(fmt::format("write {}: {}", tmp.string(), std::strerror(err)));
    }
    off += static_cast<size_t>(n);
  }
  if (::fchmod(fd, mode) != 0 || ::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    return absl::InternalError(fmt::format("fsync {}: {}", tmp.string(), std::strerror(err)));
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(
        fmt::format("rename to {}: {}", path.string(), std::strerror(errno)));
  }
  fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return absl::OkStatus();
}

absl::StatusOr<IdentityFiles> loadIdentity(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(fmt::format(
        "identity: {} is not a directory (create one with `bulkhead pki`)", dir.string()));
  }
  IdentityFiles id;
  for (auto [name, target] : {std::pair{"ca.crt", &id.ca_pem}, std::pair{"tls.crt", &id.cert_pem},
                              std::pair{"tls.key", &id.key_pem}}) {
    auto data = readFile(dir / name);
    if (!data.ok())
      return absl::NotFoundError(fmt::format("identity: {}", data.status().message()));
    *target = *std::move(data);
  }
  auto self = identityFromCertPem(id.cert_pem);
  if (!self.ok()) {
    return absl::InvalidArgumentError(
        fmt::format("identity: {}: {}", (dir / "tls.crt").string(), self.status().message()));
  }
  id.self = *self;
  if (fs::exists(dir / kControllerNameFile, ec)) {
    auto name = readFile(dir / kControllerNameFile);
    if (!name.ok()) {
      return absl::NotFoundError(fmt::format("identity: {}", name.status().message()));
    }
    std::string text = *name;
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
      text.pop_back();
    }
    if (!isValidDnsName(text)) {
      return absl::InvalidArgumentError(
          fmt::format("identity: {}: invalid value \"{}\": expected a DNS name",
                      (dir / kControllerNameFile).string(), text));
    }
    id.controller_name = text;
  }
  return id;
}

absl::Status writeIdentity(const fs::path& dir, const std::string& ca_pem,
                           const std::string& cert_pem, const std::string& key_pem,
                           bool overwrite) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    return absl::PermissionDeniedError(
        fmt::format("cannot create {}: {}", dir.string(), ec.message()));
  ::chmod(dir.c_str(), 0700);
  if (!overwrite && fs::exists(dir / "tls.key")) {
    return absl::AlreadyExistsError(
        fmt::format("{} already holds an identity (tls.key); refusing to overwrite", dir.string()));
  }
  if (auto s = writeFileAtomic(dir / "ca.crt", ca_pem, 0644); !s.ok()) return s;
  if (auto s = writeFileAtomic(dir / "tls.key", key_pem, 0600); !s.ok()) return s;
  return writeFileAtomic(dir / "tls.crt", cert_pem, 0644);
}

std::shared_ptr<grpc::ServerCredentials> serverCredentials(const IdentityFiles& id) {
  grpc::SslServerCredentialsOptions opts(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  opts.pem_root_certs = id.ca_pem;
  opts.pem_key_cert_pairs.push_back({id.key_pem, id.cert_pem});
  return grpc::SslServerCredentials(opts);
}

std::shared_ptr<grpc::ChannelCredentials> clientCredentials(const IdentityFiles& id) {
  grpc::SslCredentialsOptions opts;
  opts.pem_root_certs = id.ca_pem;
  opts.pem_private_key = id.key_pem;
  opts.pem_cert_chain = id.cert_pem;
  return grpc::SslCredentials(opts);
}

namespace {

// OpenSSL's CRYPTO_EX_new: `parent` is the SSL being created.
void releaseBuffersOfNewSsl(void* parent, void* /*ptr*/, CRYPTO_EX_DATA* /*ad*/, int /*idx*/,
                            long /*argl*/, void* /*argp*/) {  // NOLINT(google-runtime-int)
  SSL_set_mode(static_cast<SSL*>(parent), SSL_MODE_RELEASE_BUFFERS);
}

}  // namespace

absl::Status releaseIdleTlsBuffersProcessWide() {
  // The index is registered once per process: OpenSSL runs every registered new_func for each
  // SSL object, so a second registration would only repeat the same call.
  static const int index = CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL, 0, nullptr,
                                                   &releaseBuffersOfNewSsl, nullptr, nullptr);
  if (index < 0) {
    return absl::InternalError(
        "OpenSSL refused an ex_data index for SSL objects: idle TLS buffers are kept");
  }
  return absl::OkStatus();
}

absl::StatusOr<PeerIdentity> peerIdentity(const grpc::AuthContext& auth) {
  if (!auth.IsPeerAuthenticated()) {
    return absl::UnauthenticatedError("no verified client certificate");
  }
  auto pems = auth.FindPropertyValues("x509_pem_cert");
  if (pems.empty()) return absl::UnauthenticatedError("no client certificate");
  return identityFromCertPem(std::string_view(pems.front().data(), pems.front().size()));
}

namespace {

constexpr const char* kCurrentLink = "current";

absl::Status checkServerIdentity(const IdentityFiles& id) {
  if (auto s = checkIdentityFiles(id.ca_pem, id.cert_pem, id.key_pem); !s.ok()) return s;
  if (id.self.kind != PeerKind::kController) {
    return absl::InvalidArgumentError(
        fmt::format("tls.crt: the certificate of \"{}\" is not a controller certificate",
                    id.self.name));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<RotatingServerCredentials>> RotatingServerCredentials::create(
    const IdentityFiles& id, fs::path live_dir, std::chrono::seconds refresh) {
  if (auto s = checkServerIdentity(id); !s.ok()) {
    return absl::InvalidArgumentError(fmt::format("identity: {}", s.message()));
  }
  std::error_code ec;
  fs::create_directories(live_dir, ec);
  if (ec || ::chmod(live_dir.c_str(), 0700) != 0) {
    return absl::PermissionDeniedError(fmt::format(
        "tls runtime directory: cannot create {} (mode 0700): {}", live_dir.string(),
        ec ? ec.message() : std::strerror(errno)));
  }
  // Generations of an earlier run: only the names this class writes are touched.
  for (const auto& entry : fs::directory_iterator(live_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("gen-", 0) == 0 || name == kCurrentLink || name == "current.tmp") {
      fs::remove_all(entry.path(), ec);
    }
  }
  std::unique_ptr<RotatingServerCredentials> self(new RotatingServerCredentials());
  self->live_dir_ = std::move(live_dir);
  if (auto s = self->writeGeneration(id); !s.ok()) return s;
  self->current_ = id;
  const fs::path current = self->live_dir_ / kCurrentLink;
  auto watch = [&] {
    return std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        (current / "tls.key").string(), (current / "tls.crt").string(),
        (current / "ca.crt").string(), static_cast<unsigned>(refresh.count()));
  };
  self->provider_ = watch();
  grpc::experimental::TlsServerCredentialsOptions opts(self->provider_);
  opts.watch_root_certs();
  opts.watch_identity_key_cert_pairs();
  opts.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  self->credentials_ = grpc::experimental::TlsServerCredentials(opts);
  // A provider of its own: gRPC 1.51's distributor, when a second watcher of the same provider
  // watches the root certificates the first did not, tells the provider the identity is no
  // longer watched, and a renewed certificate is then never presented on either port.
  self->open_provider_ = watch();
  grpc::experimental::TlsServerCredentialsOptions open(self->open_provider_);
  open.watch_identity_key_cert_pairs();
  open.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  self->credentials_without_client_certificates_ = grpc::experimental::TlsServerCredentials(open);
  return self;
}

absl::StatusOr<bool> RotatingServerCredentials::replace(const IdentityFiles& next) {
  if (next.cert_pem == current_.cert_pem && next.key_pem == current_.key_pem &&
      next.ca_pem == current_.ca_pem) {
    return false;
  }
  if (next.ca_pem != current_.ca_pem) {
    return absl::InvalidArgumentError(
        "ca.crt: differs from the fleet CA the controller started with (a new CA needs a "
        "restart, and new agent and operator identities)");
  }
  if (auto s = checkServerIdentity(next); !s.ok()) return s;
  if (next.self.name != current_.self.name) {
    return absl::InvalidArgumentError(fmt::format(
        "tls.crt: names the controller \"{}\", not \"{}\" (agents verify the name; a new name "
        "needs a restart)",
        next.self.name, current_.self.name));
  }
  if (auto s = writeGeneration(next); !s.ok()) return s;
  current_ = next;
  return true;
}

absl::Status RotatingServerCredentials::writeGeneration(const IdentityFiles& id) {
  const uint64_t next = generation_ + 1;
  const fs::path dir = live_dir_ / fmt::format("gen-{}", next);
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (auto s = writeIdentity(dir, id.ca_pem, id.cert_pem, id.key_pem, /*overwrite=*/true);
      !s.ok()) {
    return absl::Status(s.code(), fmt::format("tls runtime directory: {}", s.message()));
  }
  // One rename switches all three files: gRPC never reads a key of one generation with the
  // certificate of another (beyond one refresh, if it reads across the rename).
  const fs::path tmp = live_dir_ / "current.tmp";
  fs::remove(tmp, ec);
  fs::create_directory_symlink(dir.filename(), tmp, ec);
  if (!ec) fs::rename(tmp, live_dir_ / kCurrentLink, ec);
  if (ec) {
    const std::string why = ec.message();
    fs::remove_all(dir, ec);
    return absl::PermissionDeniedError(
        fmt::format("tls runtime directory: cannot switch {} to {}: {}",
                    (live_dir_ / kCurrentLink).string(), dir.string(), why));
  }
  // The generation before the previous one: gRPC may still be reading the previous.
  if (next >= 3) fs::remove_all(live_dir_ / fmt::format("gen-{}", next - 2), ec);
  generation_ = next;
  return absl::OkStatus();
}

}  // namespace bulkhead
