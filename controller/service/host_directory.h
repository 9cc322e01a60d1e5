// What the service layer reads of the connected fleet for operators: the host listing, one
// host's status, and whether a host is online. rpc/'s Fleet implements it; service tests use a
// fake.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "bulkhead/v1/operator.pb.h"
#include "common/parse.h"

namespace bulkhead::controller {

class HostDirectory {
 public:
  virtual ~HostDirectory() = default;

  // Every known host whose labels match `selector` (empty: all), as one consistent snapshot.
  virtual std::vector<bulkhead::v1::HostSummary> listHosts(const Labels& selector) = 0;
  // `host_id`'s status; nullopt when the host is unknown.
  virtual std::optional<bulkhead::v1::HostStatus> getHost(const std::string& host_id) = 0;
  // Whether `host_id` has a live stream.
  virtual bool online(const std::string& host_id) = 0;
  // Makes `labels` (already persisted) the host's labels at once, set by `set_by`; false for an
  // unknown host.
  virtual bool applyLabels(const std::string& host_id, const Labels& labels,
                           const std::string& set_by) = 0;
};

}  // namespace bulkhead::controller
