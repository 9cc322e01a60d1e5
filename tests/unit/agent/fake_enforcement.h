// Fakes of the agent's kernel interfaces for unit tests: an in-memory table and a list of
// live flows.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "agent/linux/firewall.h"
#include "agent/linux/flow_killer.h"

namespace bulkhead::agent {

class FakeFirewall final : public Firewall {
 public:
  absl::Status check(const std::string& ruleset) override {
    ++checks;
    checked.push_back(ruleset);
    return check_error;
  }
  // Like NftablesFirewall: validates (check) first, then commits; either failure changes nothing.
  absl::Status apply(const std::string& ruleset) override {
    ++applies;
    if (auto s = check(ruleset); !s.ok()) return s;
    if (!apply_error.ok()) return apply_error;
    table = ruleset;
    present = true;
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> readBack() override {
    ++reads;
    if (on_read_back) on_read_back();
    if (!read_error.ok()) return read_error;
    if (!present) return absl::NotFoundError("no table inet bulkhead");
    return "read back: " + table;
  }
  absl::Status remove() override {
    ++removes;
    present = false;
    table.clear();
    return absl::OkStatus();
  }

  // Incremental batches (blocks): appended to the table text, so the read-back hash changes.
  absl::Status update(const std::string& batch) override {
    ++updates;
    if (!present) return absl::NotFoundError("no table inet bulkhead");
    if (!update_error.ok()) return update_error;
    batches.push_back(batch);
    table += batch;
    return absl::OkStatus();
  }

  // Someone else's `nft flush ruleset`.
  void tamperDelete() {
    present = false;
    table.clear();
  }

  absl::Status check_error = absl::OkStatus();
  absl::Status apply_error = absl::OkStatus();
  absl::Status read_error = absl::OkStatus();  // readBack() fails with it
  std::function<void()> on_read_back;          // called at the start of each readBack()
  bool present = false;
  std::string table;
  std::vector<std::string> checked;
  int checks = 0, applies = 0, reads = 0, removes = 0, updates = 0;
  absl::Status update_error = absl::OkStatus();
  std::vector<std::string> batches;
};

class FakeFlowKiller final : public FlowKiller {
 public:
  absl::StatusOr<CutReport> cut(const FlowSelector& selector, bool dry_run) override {
    ++calls;
    last_dry_run = dry_run;
    if (on_cut) on_cut();
    if (!error.ok()) return error;
    CutReport r;
    std::vector<Flow> alive;
    for (const auto& f : flows) {
      if (selector(f)) {
        r.sockets_destroyed.push_back(f);
        if (dry_run) alive.push_back(f);
      } else {
        r.sockets_kept.push_back(f);
        alive.push_back(f);
      }
    }
    flows = alive;
    return r;
  }

  std::vector<Flow> flows;
  absl::Status error = absl::OkStatus();
  std::function<void()> on_cut;  // called at the start of each cut()
  int calls = 0;
  bool last_dry_run = false;
};

}  // namespace bulkhead::agent
