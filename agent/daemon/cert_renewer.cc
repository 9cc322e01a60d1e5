#include "agent/daemon/cert_renewer.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/certificate.h"
#include "common/format.h"
#include "common/pki/pki.h"
#include "common/tls/tls.h"

namespace bulkhead::agent {

namespace v1 = bulkhead::v1;

CertRenewer::CertRenewer(Options options, Deps deps)
    : options_(std::move(options)), deps_(std::move(deps)) {}

std::chrono::seconds CertRenewer::retryInterval() const {
  return std::min<std::chrono::seconds>(std::chrono::minutes(10), options_.renew_before / 4);
}

bool CertRenewer::onConnected() {
  {
    std::lock_guard lock(mu_);
    pending_.reset();  // a request on an earlier stream gets no answer on this one
    refused_at_unix_ = 0;
  }
  return askIfDue();
}

bool CertRenewer::onHeartbeat() {
  {
    std::lock_guard lock(mu_);
    const int64_t now = deps_.now_unix();
    if (pending_.has_value() || not_after_unix_ == 0) return false;
    if (not_after_unix_ - now > options_.renew_before.count()) return false;
    if (refused_at_unix_ != 0 && now - refused_at_unix_ < retryInterval().count()) return false;
  }
  return askIfDue();
}

bool CertRenewer::askIfDue() {
  auto id = loadIdentity(options_.identity_dir);
  if (!id.ok()) {
    spdlog::warn("certificate renewal: cannot read the identity: {}", id.status());
    return false;
  }
  {
    std::lock_guard lock(mu_);
    not_after_unix_ = id->self.not_after_unix;
  }
  const int64_t left = id->self.not_after_unix - deps_.now_unix();
  if (left > options_.renew_before.count()) return false;
  auto csr = createCsrForKey(id->key_pem, options_.host_id);
  if (!csr.ok()) {
    spdlog::error("certificate renewal: cannot make the request: {}", csr.status());
    return false;
  }
  v1::AgentMessage m;
  uint64_t request_id = 0;
  {
    std::lock_guard lock(mu_);
    request_id = next_id_++;
    pending_ = request_id;
  }
  m.mutable_renew()->set_request_id(request_id);
  m.mutable_renew()->set_csr_pem(*std::move(csr));
  if (!deps_.send(m)) {
    std::lock_guard lock(mu_);
    pending_.reset();
    return false;
  }
  spdlog::info("certificate (serial {}) ends in {} s: asked the controller to renew it",
               id->self.serial, left);
  return true;
}

bool CertRenewer::onRenewal(const v1::CertificateRenewal& renewal) {
  {
    std::lock_guard lock(mu_);
    if (!pending_ || *pending_ != renewal.request_id()) return false;  // stale or unasked
    pending_.reset();
  }
  if (!renewal.error().empty()) {
    spdlog::warn("certificate renewal refused by the controller: {}", renewal.error());
    std::lock_guard lock(mu_);
    refused_at_unix_ = deps_.now_unix();
    return false;
  }
  auto id = loadIdentity(options_.identity_dir);
  if (!id.ok()) {
    spdlog::error("certificate renewal: cannot read the identity: {}", id.status());
    return false;
  }
  // This host, this key, the fleet CA, and later than what it replaces: else nothing written.
  auto fresh = identityFromCertPem(renewal.cert_pem());
  absl::Status check = fresh.status();
  if (check.ok() && (fresh->kind != PeerKind::kAgent || fresh->name != options_.host_id)) {
    check = absl::InvalidArgumentError(
        fmt::format("it names {} \"{}\"", peerKindName(fresh->kind), fresh->name));
  }
  if (check.ok()) check = checkIdentityFiles(id->ca_pem, renewal.cert_pem(), id->key_pem);
  if (check.ok() && fresh->not_after_unix <= id->self.not_after_unix) {
    check = absl::InvalidArgumentError("it ends no later than the current one");
  }
  if (!check.ok()) {
    spdlog::error(
        "certificate renewal: the new certificate does not check out, kept the "
        "current one: {}",
        check.message());
    std::lock_guard lock(mu_);
    refused_at_unix_ = deps_.now_unix();
    return false;
  }
  if (auto s = writeFileAtomic(options_.identity_dir / "tls.crt", renewal.cert_pem(), 0644);
      !s.ok()) {
    spdlog::error("certificate renewal: {}", s);
    std::lock_guard lock(mu_);
    refused_at_unix_ = deps_.now_unix();
    return false;
  }
  {
    std::lock_guard lock(mu_);
    not_after_unix_ = fresh->not_after_unix;
  }
  spdlog::info(
      "certificate renewed: serial {} -> {}, valid until {} (unix); reconnecting with "
      "it",
      id->self.serial, fresh->serial, fresh->not_after_unix);
  deps_.reconnect("reconnecting with the renewed certificate");
  return true;
}

}  // namespace bulkhead::agent
