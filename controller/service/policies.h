// The exemption sets the controller isolates with, per tenant (common/tenant_policy.h): loaded
// from --policy-dir at start and on SIGHUP. A reload that fails keeps the sets in force.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "common/tenant_policy.h"

namespace bulkhead::controller {

class Policies {
 public:
  // `dir` empty: no policy directory, an empty library.
  explicit Policies(std::string dir)
      : dir_(std::move(dir)), library_(std::make_shared<TenantPolicies>()) {}
  // Test and embedding hooks: fixed sets (`library` tenant default's alone).
  explicit Policies(PolicyLibrary library)
      : library_(std::make_shared<TenantPolicies>(TenantPolicies{.shared = std::move(library)})) {}
  explicit Policies(TenantPolicies policies)
      : library_(std::make_shared<TenantPolicies>(std::move(policies))) {}

  // Loads the directory; on error (every problem, one per line) the old sets stay.
  absl::Status reload();
  // The sets in force. Thread-safe; the returned sets never change.
  std::shared_ptr<const TenantPolicies> current() const;
  const std::string& dir() const { return dir_; }

 private:
  const std::string dir_;
  mutable std::mutex mu_;
  std::shared_ptr<const TenantPolicies> library_;  // GUARDED_BY(mu_)
};

}  // namespace bulkhead::controller
