// The operator reads of the fleet: the host listing and one host's status. Each authorises the
// caller (controller/service/authorization.h), checks the request and records the call,
// refusals included, before it answers.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bulkhead/v1/operator.pb.h"
#include "controller/core/clock.h"
#include "controller/core/requests.h"
#include "controller/service/authorization.h"
#include "controller/service/host_directory.h"
#include "controller/store/store.h"

namespace bulkhead::controller {

class HostInventory {
 public:
  // `hosts` (not owned) must outlive this.
  HostInventory(const Clock& clock, Store& store, HostDirectory& hosts);

  // The hosts matching the selector; audited with the selector ("*" for none) and the count.
  absl::StatusOr<std::vector<bulkhead::v1::HostSummary>> listHosts(const Caller& caller,
                                                                   const ListHostsRequest& req);
  // One host's status; NOT_FOUND naming an unknown host.
  absl::StatusOr<bulkhead::v1::HostStatus> getHost(const Caller& caller, const GetHostRequest& req);
  // Sets the controller's labels of a host (admins of its tenant): `set` then `remove` applied
  // to its labels, stored with the audit row, then applied at once. INVALID_ARGUMENT naming a
  // bad label, key or missing reason; NOT_FOUND for a host unknown or out of reach. Answers
  // the host as listed.
  absl::StatusOr<bulkhead::v1::HostSummary> setLabels(const Caller& caller,
                                                      const SetHostLabelsRequest& req);

 private:
  const Clock& clock_;
  Store& store_;
  HostDirectory& hosts_;
};

}  // namespace bulkhead::controller
