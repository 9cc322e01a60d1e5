// The PeerGate: what every call and every agent stream passes after TLS has verified the
// certificate chain. It refuses certificates the fleet CA revoked (the CRL the controller
// loaded, replaced on SIGHUP) and logs certificates close to expiry, once per certificate.
//
// Threading: every method is thread-safe; admit() and isRevoked() never block on I/O.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/identity.h"
#include "controller/core/clock.h"

namespace bulkhead::controller {

class PeerGate {
 public:
  // `expiry_warning`: a certificate expiring within this is "expiring soon".
  PeerGate(const Clock& clock, std::chrono::milliseconds expiry_warning);

  // Replaces the revoked serials (canonical hex, as PeerIdentity::serial).
  void setRevoked(std::set<std::string> serials);
  size_t revokedCount() const;

  // PERMISSION_DENIED naming the certificate when `peer` is revoked; otherwise OK, after
  // logging (once per serial) a certificate that expires soon and keeping it for
  // takeExpiring().
  absl::Status admit(const PeerIdentity& peer);
  // The certificates found expiring soon since the last call (each serial once per run), for
  // their audit rows (Fleet::flush); at most kMaxExpiringKept wait, the rest only logged.
  std::vector<PeerIdentity> takeExpiring();
  // Puts back what a failed flush could not write.
  void restoreExpiring(std::vector<PeerIdentity> peers);
  static constexpr size_t kMaxExpiringKept = 10000;
  bool isRevoked(const std::string& serial) const;
  bool expiresSoon(int64_t not_after_unix) const;

 private:
  const Clock& clock_;
  const std::chrono::milliseconds expiry_warning_;
  mutable std::mutex mu_;
  std::shared_ptr<const std::set<std::string>> revoked_;  // GUARDED_BY(mu_); never null
  std::set<std::string> warned_;                          // GUARDED_BY(mu_)
  std::vector<PeerIdentity> expiring_;                    // GUARDED_BY(mu_)
};

}  // namespace bulkhead::controller
