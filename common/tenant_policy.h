// Exemption sets per tenant, from one policy directory:
//   DIR/*.yaml               tenant default's sets, and the shared library
//   DIR/tenants/NAME/*.yaml  tenant NAME's own sets
//   DIR/tenants/NAME.yaml    the shared sets (and playbooks, controller/playbook) tenant NAME
//                            opts into:
//                              shared: [ntp, dns-to-internal-resolvers]   (or: shared: all)
//                              playbooks: [ssh-brute-force]               (or: playbooks: all)
// A tenant uses its own sets and the shared ones it opted into, nothing else; a tenant with
// neither isolates with none (its hosts keep only the controller). buildTenantPolicies() is
// pure; loadTenantPolicies() is it plus reading the directory.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/policy.h"

namespace bulkhead {

struct TenantPolicies {
  PolicyLibrary shared;                          // DIR's own sets: tenant default's
  std::map<std::string, PolicyLibrary> tenants;  // the others': own sets and opted-in shared ones

  // The sets `tenant`'s hosts isolate with: `shared` for "default", else the tenant's (an
  // empty library for a tenant the directory does not name).
  const PolicyLibrary& of(std::string_view tenant) const;
  // Every set of every tenant, shared ones once.
  std::vector<const ExemptionSet*> all() const;
};

class YamlErrors;

// What an opt-in file (DIR/tenants/NAME.yaml) chooses from the shared library: a mapping with
// `shared:` (exemption sets) and/or `playbooks:`, each `all` or a list of names.
struct TenantOptIn {
  std::vector<std::string> sets;
  std::vector<std::string> playbooks;
};
// Parses an opt-in file's `text` ("" chooses nothing). `all` stands for every name of the
// shared library given, each name listed must be in it; a null library checks nothing and
// reads `all` as the one name "all". Problems go to `errors` ("FILE:LINE: field: problem").
TenantOptIn parseTenantOptIn(const std::string& text, const std::vector<std::string>* shared_sets,
                             const std::vector<std::string>* shared_playbooks, YamlErrors& errors);

// (file name, content) pairs, names relative to the policy directory.
using PolicyFiles = std::vector<std::pair<std::string, std::string>>;

// One tenant's files: its own sets (names "tenants/NAME/FILE") and its opt-in file (name
// "tenants/NAME.yaml", empty content when there is none).
struct TenantPolicyFiles {
  PolicyFiles sets;
  std::pair<std::string, std::string> opt_in;
};

// The libraries of `shared` and of each tenant. InvalidArgument, one line per problem
// ("FILE:LINE: field: problem"): a set's own errors, a tenant name that is not a name, an
// opt-in file other than `shared: all` or a list of names, an opt-in of a set the shared
// library lacks, and a tenant's set named like a shared set it opts into.
absl::StatusOr<TenantPolicies> buildTenantPolicies(
    const PolicyFiles& shared, const std::map<std::string, TenantPolicyFiles>& tenants);

// Reads DIR as above (DIR/tenants is optional) and builds the libraries.
absl::StatusOr<TenantPolicies> loadTenantPolicies(const std::string& dir);

}  // namespace bulkhead
