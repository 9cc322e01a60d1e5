// Renews the agent's certificate over its stream before it expires (proto RenewCertificate).
// At each connection, when the certificate in the identity directory ends within
// `renew_before`, it asks once for a new certificate for the same key. A renewal that checks
// out (this host id, this key, the fleet CA in the directory, a later expiry) replaces tls.crt
// atomically (the key never changes, so the directory is never a mismatched pair), and the
// session reconnects to use it at once. A long-lived stream renews too: each heartbeat asks
// when a renewal is due, none is waiting for its answer, and the last refusal is older than
// retryInterval(). A refusal is logged; `bulkhead hosts` flags the certificate as expiring
// meanwhile.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "bulkhead/v1/agent.pb.h"

namespace bulkhead::agent {

class CertRenewer {
 public:
  struct Options {
    std::filesystem::path identity_dir;
    std::string host_id;
    std::chrono::seconds renew_before{std::chrono::hours(24 * 30)};
  };
  struct Deps {
    std::function<bool(const bulkhead::v1::AgentMessage&)> send;  // false: not sent
    std::function<void(const std::string& reason)> reconnect;
    std::function<int64_t()> now_unix;  // seconds since the epoch
  };
  CertRenewer(Options options, Deps deps);

  // The stream is up: asks for a renewal when one is due. Returns whether it asked.
  bool onConnected();
  // A heartbeat goes out: asks when a renewal is due (the expiry is read at connection and
  // after a renewal, so this reads no file until then), none is waiting for its answer, and
  // the last refusal is at least retryInterval() old. Returns whether it asked.
  bool onHeartbeat();
  // A quarter of renew_before, at most ten minutes.
  std::chrono::seconds retryInterval() const;
  // The controller's answer. Returns whether tls.crt was replaced.
  bool onRenewal(const bulkhead::v1::CertificateRenewal& renewal);

 private:
  Options options_;
  Deps deps_;
  std::mutex mu_;
  uint64_t next_id_ = 1;             // GUARDED_BY(mu_)
  std::optional<uint64_t> pending_;  // GUARDED_BY(mu_): the request waiting for its answer
  int64_t not_after_unix_ = 0;       // GUARDED_BY(mu_): the current certificate's; 0 unread
  int64_t refused_at_unix_ = 0;      // GUARDED_BY(mu_): the last refusal's time

  // Reads the identity and asks when its certificate ends within renew_before.
  bool askIfDue();
};

}  // namespace bulkhead::agent
