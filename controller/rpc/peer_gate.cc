#include "controller/rpc/peer_gate.h"

#include <spdlog/spdlog.h>

#include <utility>

#include "common/format.h"

namespace bulkhead::controller {

PeerGate::PeerGate(const Clock& clock, std::chrono::milliseconds expiry_warning)
    : clock_(clock),
      expiry_warning_(expiry_warning),
      revoked_(std::make_shared<const std::set<std::string>>()) {}

void PeerGate::setRevoked(std::set<std::string> serials) {
  auto fresh = std::make_shared<const std::set<std::string>>(std::move(serials));
  std::lock_guard lock(mu_);
  revoked_ = std::move(fresh);
}

size_t PeerGate::revokedCount() const {
  std::lock_guard lock(mu_);
  return revoked_->size();
}

bool PeerGate::isRevoked(const std::string& serial) const {
  std::lock_guard lock(mu_);
  return revoked_->count(serial) != 0;
}

bool PeerGate::expiresSoon(int64_t not_after_unix) const {
  return not_after_unix * 1000 - clock_.nowUnixMs() <= expiry_warning_.count();
}

absl::Status PeerGate::admit(const PeerIdentity& peer) {
  if (isRevoked(peer.serial)) {
    return absl::PermissionDeniedError(
        fmt::format("the {} certificate of \"{}\" (serial {}) is revoked", peerKindName(peer.kind),
                    peer.name, peer.serial));
  }
  if (expiresSoon(peer.not_after_unix)) {
    bool first = false;
    {
      std::lock_guard lock(mu_);
      first = warned_.insert(peer.serial).second;
      if (first && expiring_.size() < kMaxExpiringKept) expiring_.push_back(peer);
    }
    if (first) {
      const int64_t days = (peer.not_after_unix * 1000 - clock_.nowUnixMs()) / 86'400'000;
      spdlog::warn(
          "certificate expiring: {} \"{}\" (serial {}) expires in {} days; issue a new "
          "one with `bulkhead pki issue {} ... --replace`",
          peerKindName(peer.kind), peer.name, peer.serial, days, peerKindName(peer.kind));
    }
  }
  return absl::OkStatus();
}

std::vector<PeerIdentity> PeerGate::takeExpiring() {
  std::lock_guard lock(mu_);
  return std::exchange(expiring_, {});
}

void PeerGate::restoreExpiring(std::vector<PeerIdentity> peers) {
  std::lock_guard lock(mu_);
  for (PeerIdentity& p : peers) {
    if (expiring_.size() < kMaxExpiringKept) expiring_.push_back(std::move(p));
  }
}

}  // namespace bulkhead::controller
