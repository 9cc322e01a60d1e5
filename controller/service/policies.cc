#include "controller/service/policies.h"

namespace bulkhead::controller {

absl::Status Policies::reload() {
  if (dir_.empty()) return absl::OkStatus();
  auto lib = loadTenantPolicies(dir_);
  if (!lib.ok()) return lib.status();
  std::lock_guard lock(mu_);
  library_ = std::make_shared<TenantPolicies>(*std::move(lib));
  return absl::OkStatus();
}

std::shared_ptr<const TenantPolicies> Policies::current() const {
  std::lock_guard lock(mu_);
  return library_;
}

}  // namespace bulkhead::controller
