#include "controller/service/host_inventory.h"

#include "common/format.h"
#include "common/parse.h"
#include "controller/core/validate.h"
#include "controller/service/audit.h"
#include "controller/service/tenancy.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

namespace {

// As many labels as a join token may carry.
constexpr size_t kMaxHostLabels = 32;

}  // namespace

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
    if (status.ok()) {
      // Only the hosts the caller reaches (tenancy.h): the others are not there for it.
      for (auto& h : hosts_.listHosts(selector)) {
        if (roleOnHost(caller, h) >= Role::kViewer) hosts.push_back(std::move(h));
      }
    }
  }
  status = recordCall(store_, clock_, auditActor(caller), auditAction(OperatorAction::kListHosts),
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
  AuditActor actor = auditActor(caller);
  if (status.ok()) {
    auto found = hosts_.getHost(req.host);
    // Out of reach reads exactly as unknown.
    if (found && roleOnHost(caller, found->host()) < Role::kViewer) found.reset();
    if (!found) {
      status = absl::NotFoundError(fmt::format("unknown host \"{}\"", req.host));
    } else {
      host = *std::move(found);
      actor = auditActorOn(caller, host.host().tenant());
    }
  }
  status = recordCall(store_, clock_, actor, auditAction(OperatorAction::kGetHost), req.host, "",
                      status);
  if (!status.ok()) return status;
  return host;
}

absl::StatusOr<v1::HostSummary> HostInventory::setLabels(const Caller& caller,
                                                         const SetHostLabelsRequest& req) {
  const std::string action = auditAction(OperatorAction::kSetHostLabels);
  absl::Status status = authorize(caller, OperatorAction::kSetHostLabels);
  if (status.ok()) status = validateRequest(req);
  if (status.ok() && isBlank(req.reason)) status = absl::InvalidArgumentError("reason: required");
  if (status.ok() && req.set.empty() && req.remove.empty()) {
    status = absl::InvalidArgumentError("labels: give at least one K=V to set or a key to remove");
  }
  for (const auto& [k, v] : req.set) {
    if (!status.ok()) break;
    status = parseLabel("set", fmt::format("{}={}", k, v)).status();
  }
  for (const auto& k : req.remove) {
    if (!status.ok()) break;
    status = parseLabel("remove", fmt::format("{}=x", k)).status();
  }
  Labels labels;
  AuditActor actor = auditActor(caller);
  if (status.ok()) {
    auto found = hosts_.getHost(req.host);
    // Out of reach reads exactly as unknown.
    if (found &&
        roleOnHost(caller, found->host()) < ruleFor(OperatorAction::kSetHostLabels).min_role) {
      found.reset();
    }
    if (!found) {
      status = absl::NotFoundError(fmt::format("unknown host \"{}\"", req.host));
    } else {
      labels = Labels(found->host().labels().begin(), found->host().labels().end());
      actor = auditActorOn(caller, found->host().tenant());
    }
  }
  for (const auto& [k, v] : req.set) labels[k] = v;
  for (const auto& k : req.remove) labels.erase(k);
  if (status.ok() && labels.size() > kMaxHostLabels) {
    status = absl::InvalidArgumentError(
        fmt::format("labels: {} labels, at most {}", labels.size(), kMaxHostLabels));
  }
  if (!status.ok()) {
    return recordCall(store_, clock_, actor, action, req.host, req.reason, status);
  }
  const int64_t now = clock_.nowUnixMs();
  const AuditEntry audit = callEntry(now, actor, action, req.host, req.reason, absl::OkStatus(),
                                     fmt::format("labels {}", labelsText(labels)));
  if (auto s = store_.setHostLabels(HostLabelsRow{.host_id = req.host,
                                                  .labels = labels,
                                                  .set_by = caller.audit_name,
                                                  .set_unix_ms = now},
                                    audit);
      !s.ok()) {
    return recordCall(store_, clock_, actor, action, req.host, req.reason, s);
  }
  hosts_.applyLabels(req.host, labels, caller.audit_name);
  auto after = hosts_.getHost(req.host);
  if (!after) return absl::NotFoundError(fmt::format("unknown host \"{}\"", req.host));
  return after->host();
}

}  // namespace bulkhead::controller
