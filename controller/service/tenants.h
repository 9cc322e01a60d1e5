// Tenants and role bindings as operator calls (`bulkhead tenants`, `bulkhead access`), and the
// step every front door takes before a call: the caller's grants and the tenant it chose
// (scopeCaller). The rules themselves are tenancy.h's.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "bulkhead/v1/tenants.pb.h"
#include "controller/core/clock.h"
#include "controller/service/authorization.h"
#include "controller/store/store.h"

namespace bulkhead::controller {

class TenantService {
 public:
  TenantService(const Clock& clock, Store& store);

  // Completes an identified operator `caller` (its certificate role in Caller::role): its
  // grants (the certificate's role in "default" on every host, and its bindings) and the
  // call's tenants from `requested` (a name, "*" or empty; tenancy.h chooseTenants). On a
  // store error, or when no tenant can be chosen, sets `caller.refusal` (store) or
  // `caller.tenant_refusal` instead. A caller already refused is left as it is.
  void scopeCaller(Caller& caller, std::string_view requested);

  // The call's tenants, by name.
  absl::StatusOr<std::vector<bulkhead::v1::Tenant>> listTenants(const Caller& caller);
  // Install admins only. INVALID_ARGUMENT for a bad name or no reason; ALREADY_EXISTS.
  absl::StatusOr<bulkhead::v1::Tenant> createTenant(const Caller& caller, const std::string& name,
                                                    const std::string& reason);

  // The bindings in the call's tenants: an admin of the tenant sees all of them, anyone else
  // their own. `operator_name` filters (empty: all).
  absl::StatusOr<std::vector<bulkhead::v1::RoleBinding>> listAccess(
      const Caller& caller, const std::string& operator_name);
  // A binding of `operator_name` in the call's one tenant. INVALID_ARGUMENT for a bad operator
  // name, role, selector or no reason; ALREADY_EXISTS for the same operator, tenant and hosts.
  absl::StatusOr<bulkhead::v1::RoleBinding> grantAccess(const Caller& caller,
                                                        const std::string& operator_name,
                                                        bulkhead::v1::OperatorRole role,
                                                        const std::string& hosts,
                                                        const std::string& reason);
  // NOT_FOUND for an unknown binding, or one of a tenant outside the call's.
  absl::StatusOr<bulkhead::v1::RoleBinding> revokeAccess(const Caller& caller,
                                                         const std::string& binding_id,
                                                         const std::string& reason);

 private:
  const Clock& clock_;
  Store& store_;
};

// The wire enum of a role and back (OPERATOR_ROLE_UNSPECIFIED reads as an error).
bulkhead::v1::OperatorRole toOperatorRole(Role role);

// A new binding of `operator_name` in `tenant`, checked: INVALID_ARGUMENT naming the field for
// a bad operator name, a role that is not viewer .. admin, a bad host selector or a blank
// reason. Pure.
absl::StatusOr<bulkhead::v1::RoleBinding> makeRoleBinding(
    const std::string& operator_name, const std::string& tenant, bulkhead::v1::OperatorRole role,
    const std::string& hosts, const std::string& created_by, const std::string& reason,
    int64_t now_unix_ms);
absl::StatusOr<Role> fromOperatorRole(bulkhead::v1::OperatorRole role);

}  // namespace bulkhead::controller
