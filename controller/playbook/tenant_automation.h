// Playbooks and automation guardrails per tenant, from one policy directory:
//   DIR/playbooks/*.yaml                         tenant default's, and the shared library
//   DIR/guardrails/automation.yaml               tenant default's guardrails, and every
//                                                tenant's defaults
//   DIR/tenants/NAME/playbooks/*.yaml            tenant NAME's own playbooks
//   DIR/tenants/NAME/guardrails/automation.yaml  its guardrails: the fields it names replace
//                                                the install's (the others stay)
//   DIR/tenants/NAME.yaml                        `playbooks: [ssh-brute-force]` (or `all`):
//                                                the shared playbooks it opts into
// A tenant runs its own playbooks and the shared ones it opted into, nothing else, under its
// own rate caps (one tenant's burst never uses up another's). The block guardrails (controller
// addresses, protected CIDRs) are the install's and hold for every tenant.
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "controller/playbook/engine.h"
#include "controller/playbook/playbook.h"

namespace bulkhead::controller {

struct TenantAutomation {
  PlaybookSet playbooks;
  AutomationGuardrails guardrails;
};

// Every tenant the directory names (and "default", always), by name. Every directory and file
// is optional. InvalidArgument, one line per problem ("FILE:LINE: field: problem", file names
// relative to DIR): a playbook's or guardrail file's own errors, a tenant folder that is not a
// tenant name, an opt-in of a playbook the shared library lacks, and a tenant's own playbook
// named like a shared one it opts into.
absl::StatusOr<std::map<std::string, TenantAutomation>> loadTenantAutomation(
    const std::string& dir, const BlockGuardrails& blocks);

}  // namespace bulkhead::controller
