// Tenants as the service layer sees them: which tenants a call is for, the caller's role there
// and on each host, and the hosts a call may reach. Pure: the front door reads the caller's
// bindings and the tenants from the store and hands them in.
//
// The rules, in one place:
// - A caller's grants are its certificate's role in tenant "default" on every host (none for a
//   `--role none` certificate) and its role bindings. An admin in "default" on every host is
//   the install's admin: admin in every tenant.
// - The call's tenants (chooseTenants): the one named (it must be one the caller holds a role
//   in, or any for an install admin; an unknown tenant reads the same as one without a role),
//   or "*" for all of the caller's, or, unnamed, the caller's only tenant. A caller with roles
//   in several tenants must name one: no tenant is guessed.
// - A host is reached only in the call's tenants, and only with the caller's role on it (the
//   highest of the grants of its tenant whose selector matches its labels). A host out of
//   reach is answered exactly like an unknown one.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bulkhead/v1/operator.pb.h"
#include "common/identity.h"
#include "common/parse.h"
#include "controller/core/containment.h"
#include "controller/service/authorization.h"

namespace bulkhead::controller {

// The caller's grants, with the certificate-only form (Caller::role) spelled out.
std::vector<Grant> grantsOf(const Caller& caller);
// Admin in tenant "default" on every host.
bool isInstallAdmin(const Caller& caller);
// The tenants the caller holds any role in, sorted (an install admin: `existing`).
std::vector<std::string> tenantsOf(const Caller& caller, const std::vector<std::string>& existing);

// Sets `caller.tenants` (and `all_tenants`) from the tenant it asked for (`requested`: a name,
// "*", or empty) and the tenants that exist; or sets `caller.tenant_refusal`: PERMISSION_DENIED
// when it has no role in the tenant named (or in any), FAILED_PRECONDITION listing its tenants when
// it named none and holds roles in several.
void chooseTenants(Caller& caller, std::string_view requested,
                   const std::vector<std::string>& existing);

// The call's tenants: `caller.tenants`, or "default" alone.
std::vector<std::string> callTenants(const Caller& caller);
// "tenant acme", "tenants acme, beta" or "default" (the single-team case), for messages.
std::string tenantsText(const Caller& caller);
bool inCallTenants(const Caller& caller, std::string_view tenant);

// The caller's highest role in the call's tenants: over every grant, or with `every_host`
// over those on every host of their tenant only. kNone when it holds none.
Role roleInCallTenants(const Caller& caller, bool every_host);
// The caller's role on a host of `tenant` with `labels`; kNone when the host is out of the
// call's tenants or no grant's selector matches.
Role roleOn(const Caller& caller, std::string_view tenant, const Labels& labels);

// roleOn for a host as the fleet lists it (an empty tenant reads "default").
Role roleOnHost(const Caller& caller, const bulkhead::v1::HostSummary& host);

// Whether the caller holds at least `min_role` on every host of `tenant`, present and future
// (an install admin, or a grant there without a selector), and `tenant` is one of the call's.
bool holdsOnEveryHost(const Caller& caller, std::string_view tenant, Role min_role);

// The tenants whose own records (signals, approvals, integrations) the caller lists: for an
// install admin's `--tenant '*'` every tenant (empty); else those of the call's tenants where
// it holds a role on every host (empty when none: then nothing is listed).
std::vector<std::string> tenantsReadWhole(const Caller& caller);
// True when tenantsReadWhole()'s empty answer means every tenant.
bool readsEveryTenant(const Caller& caller);

// The one tenant of a call that creates a record belonging to one tenant (`what`: "a signal",
// "an integration"); INVALID_ARGUMENT for a call across tenants.
absl::StatusOr<std::string> singleCallTenant(const Caller& caller, std::string_view what);

// The hosts of `known` the caller reaches with at least `min_role`.
std::map<std::string, TargetHost> hostsInScope(const Caller& caller, Role min_role,
                                               std::map<std::string, TargetHost> known);

}  // namespace bulkhead::controller
