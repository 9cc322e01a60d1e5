#include "controller/service/host_inventory.h"

#include "common/format.h"
#include "common/parse.h"
#include "controller/core/validate.h"
#include "controller/service/audit.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

HostInventory::HostInventory(const Clock& clock, Store& store, HostDirectory& hosts)
    : clock_(clock), store_(store), hosts_(hosts) {}

absl::StatusOr<std::vector<v1::HostSummary>> HostInventory::listHosts(const Caller& caller,
                                                                      const ListHostsRequest& req) {
  absl::Status status = authorize(caller, OperatorAction::kListHosts);
  if (status.ok()) status = validateRequest(req);
  std::vector<v1::HostSummary> hosts;
  if (status.ok()) {
    Labels selector;
    if (!req.selector.empty()) {
      auto parsed = parseSelector("selector", req.selector);
      if (!parsed.ok()) {
        status = parsed.status();
      } else {
        selector = *std::move(parsed);
      }
    }
    if (status.ok()) hosts = hosts_.listHosts(selector);
  }
  status = recordCall(store_, clock_, caller.audit_name,
                      auditAction(OperatorAction::kListHosts),
                      req.selector.empty() ? "*" : req.selector, "", status,
                      status.ok() ? fmt::format("{} hosts", hosts.size()) : "");
  if (!status.ok()) return status;
  return hosts;
}

absl::StatusOr<v1::HostStatus> HostInventory::getHost(const Caller& caller,
                                                      const GetHostRequest& req) {
  absl::Status status = authorize(caller, OperatorAction::kGetHost);
  if (status.ok()) status = validateRequest(req);
  v1::HostStatus host;
  if (status.ok()) {
    auto found = hosts_.getHost(req.host);
    if (!found) {
      status = absl::NotFoundError(fmt::format("unknown host \"{}\"", req.host));
    } else {
      host = *std::move(found);
    }
  }
  status = recordCall(store_, clock_, caller.audit_name,
                      auditAction(OperatorAction::kGetHost), req.host, "", status);
  if (!status.ok()) return status;
  return host;
}

}  // namespace bulkhead::controller
