// The kernel firewall as the agent uses it. Implemented by NftablesFirewall (libnftables);
// faked in unit tests.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace bulkhead::agent {

class Firewall {
 public:
  virtual ~Firewall() = default;

  // Validates `ruleset` (nft syntax, a full `table inet bulkhead { ... }` replacement batch) with
  // the kernel without changing anything (nft -c).
  virtual absl::Status check(const std::string& ruleset) = 0;

  // Replaces our table with `ruleset` in one atomic transaction, which the kernel validates
  // as a whole before committing (a separate dry run would check the same batch again). On failure
  // the previous table stays exactly as it was.
  virtual absl::Status apply(const std::string& ruleset) = 0;

  // Reads our table back from the kernel; NotFound if it does not exist. The text is
  // canonical (`nft list table inet bulkhead`) with set elements, without handles, and
  // without dynamic state such as remaining timeouts, so its hash is stable.
  virtual absl::StatusOr<std::string> readBack() = 0;

  // Removes our table (release). Absent table is not an error.
  virtual absl::Status remove() = 0;

  // Runs `batch` (nft commands that touch only our table, e.g. `add element` / `delete
  // element` for incremental block updates) as one atomic transaction, without rebuilding
  // the table. On failure nothing changes. Optional: implementations that
  // do not support it return Unimplemented.
  virtual absl::Status update(const std::string& batch) {
    (void)batch;
    return absl::UnimplementedError("incremental firewall update not supported");
  }
};

}  // namespace bulkhead::agent
