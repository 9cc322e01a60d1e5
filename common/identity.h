// Who a peer is: kind, name, role. Identities are bound to certificates, never to message
// fields (common/certificate.h reads them from one). Subject layout, set by
// `bulkhead pki`: O=bulkhead, OU=<kind>, CN=<name>, title=<role> (operators only).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace bulkhead {

enum class PeerKind { kController, kAgent, kOperator };

std::string_view peerKindName(PeerKind kind);

// The tenant every install has and a single team never leaves; the name a call uses to span
// all of its caller's tenants.
inline constexpr char kDefaultTenant[] = "default";
inline constexpr char kEveryTenant[] = "*";

// A record's tenant field as a name: "default" for a record written before tenants (empty).
inline std::string tenantOrDefault(std::string_view tenant) {
  return tenant.empty() ? std::string(kDefaultTenant) : std::string(tenant);
}

// Operator roles, weakest first. none: nothing of its own (a certificate for someone whose
// roles are all bindings, controller/service/tenancy.h); viewer: read only; responder:
// containment actions; approver: also approves automatic actions waiting for a person; admin:
// everything. A certificate's role is its holder's role in tenant "default" on every host.
enum class Role { kNone, kViewer, kResponder, kApprover, kAdmin };

absl::StatusOr<Role> parseRole(std::string_view text);
std::string_view roleName(Role role);

struct PeerIdentity {
  PeerKind kind = PeerKind::kAgent;
  std::string name;           // host id for agents, operator name for operators
  Role role = Role::kViewer;  // operators only
  std::string serial;         // certificate serial, upper-case hex as `openssl x509 -serial`
  int64_t not_before_unix = 0;  // certificate start (seconds since the epoch)
  int64_t not_after_unix = 0;   // certificate expiry (seconds since the epoch)
};

// Host ids and operator names: 1-63 characters of [A-Za-z0-9._-], not starting with '.' or '-'.
bool isValidName(std::string_view name);

// An operator's name: a name as above, or "NAME@TENANT" (two such names, 64 characters at
// most), as an operator token outside tenant "default" issues it, so no tenant's admin can
// make a name another tenant knows.
bool isValidOperatorName(std::string_view name);

// The name an operator token of `tenant` gives operator `name`: "NAME@TENANT", or `name`
// alone in tenant "default".
std::string operatorNameInTenant(std::string_view name, std::string_view tenant);

// A DNS name as a certificate's subjectAltName carries it: dot-separated labels of 1-63
// characters of [A-Za-z0-9-], not starting or ending with '-', 253 characters at most.
bool isValidDnsName(std::string_view name);

}  // namespace bulkhead
