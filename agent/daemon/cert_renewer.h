// Renews the agent's certificate over its stream before it expires (proto RenewCertificate).
// At each connection, when the certificate in the identity directory ends within
// `renew_before`, it asks once for a new certificate for the same key. A renewal that checks
// out (this host id, this key, the fleet CA in the directory, a later expiry) replaces tls.crt
// atomically (the key never changes, so the directory is never a mismatched pair), and the
// session reconnects to use it at once. A refusal is logged; the agent asks again at its next
// connection, and `bulkhead hosts` flags the certificate as expiring meanwhile.
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
  // The controller's answer. Returns whether tls.crt was replaced.
  bool onRenewal(const bulkhead::v1::CertificateRenewal& renewal);

 private:
  Options options_;
  Deps deps_;
  std::mutex mu_;
  uint64_t next_id_ = 1;             // GUARDED_BY(mu_)
  std::optional<uint64_t> pending_;  // GUARDED_BY(mu_): the request waiting for its answer
};

}  // namespace bulkhead::agent
