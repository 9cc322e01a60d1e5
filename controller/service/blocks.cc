// Containment's block operations: block, unblock, list, and the propagation of fleet-wide
// blocks to hosts that join or reconnect later. All of it runs on the containment thread.
#include "controller/core/blocks.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "common/format.h"
#include "common/saturating.h"
#include "controller/core/validate.h"
#include "controller/service/audit.h"
#include "controller/service/containment.h"
#include "controller/service/tenancy.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

namespace {

std::string joinedHosts(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ",") + i;
  return out;
}

}  // namespace

BlockGuardrails Containment::blockGuardrails() const {
  BlockGuardrails g;
  for (const auto& e : options_.endpoints) g.controller_ips.push_back(e.ip());
  g.protected_cidrs = options_.protected_cidrs;
  g.confirm_prefix_v4 = options_.block_confirm_prefix_v4;
  g.confirm_prefix_v6 = options_.block_confirm_prefix_v6;
  return g;
}

void Containment::block(const Caller& caller, BlockRequest req, ContainmentDone done) {
  submit(OperatorAction::kBlock, caller, std::move(req), std::move(done), &Containment::doBlock);
}

void Containment::unblock(const Caller& caller, UnblockRequest req, ContainmentDone done) {
  submit(OperatorAction::kUnblock, caller, std::move(req), std::move(done), &Containment::doUnblock);
}

void Containment::listBlocks(const Caller& caller, ListBlocksRequest req, BlocksDone done) {
  submit(OperatorAction::kListBlocks, caller, std::move(req), std::move(done),
         &Containment::doListBlocks);
}

std::map<std::string, TargetHost> Containment::targetsFor(const Caller& caller,
                                                          OperatorAction action) {
  return hostsInScope(caller, ruleFor(action).min_role, fleet_.targets());
}

absl::StatusOr<std::vector<std::string>> Containment::blockTargets(
    const Caller& caller, OperatorAction action, bool all, const std::vector<std::string>& hosts,
    const std::string& selector, bool yes) {
  auto known = targetsFor(caller, action);
  if (!all) {
    return resolveTargets(known, TargetRequest{hosts, selector, yes}, options_.selector_limit);
  }
  if (!hosts.empty() || !selector.empty()) {
    return absl::InvalidArgumentError("all: cannot be combined with hosts or a selector");
  }
  std::vector<std::string> targets;
  for (const auto& [h, t] : known) targets.push_back(h);
  return targets;
}

void Containment::doBlock(const Caller& caller, const BlockRequest& req, ContainmentDone& done) {
  const std::string& operator_name = caller.audit_name;
  const std::string target = auditTarget(req);
  auto refuse = [&](const absl::Status& status) {
    done(recordCall(store_, clock_, auditActor(caller), auditAction(OperatorAction::kBlock), target,
                    req.reason, status, fmt::format("cidr {}", req.remote_cidr)),
         {});
  };
  if (isBlank(req.reason)) return refuse(absl::InvalidArgumentError("reason: required"));
  if (req.ttl_ms < 0) {
    return refuse(absl::InvalidArgumentError(
        fmt::format("ttl_ms: invalid value {}: must not be negative", req.ttl_ms)));
  }
  auto match = parseBlockMatch(req.remote_cidr, req.protocol, req.port, req.direction);
  if (!match.ok()) return refuse(match.status());
  if (auto s = checkBlockGuardrails(*match, blockGuardrails(), req.yes); !s.ok()) {
    return refuse(s);
  }
  auto resolved =
      blockTargets(caller, OperatorAction::kBlock, req.all, req.hosts, req.selector, req.yes);
  if (!resolved.ok()) return refuse(resolved.status());
  const std::vector<std::string> targets = *std::move(resolved);
  const int64_t now = clock_.nowUnixMs();
  const int64_t expires = req.ttl_ms > 0 ? saturatingAdd(now, req.ttl_ms) : 0;
  const v1::Block block = makeBlock(*match, fmt::format("blk-{}-{}", now, next_block_++), expires,
                                    req.reason, operator_name, now);
  const auto current = fleet_.desiredStates(targets);
  std::map<std::string, v1::DesiredState> states;
  for (const auto& h : targets) states[h] = withBlock(current.at(h), block, now, options_.endpoints);
  // `all`: fleet-wide in each of the call's tenants where the caller holds the role on every
  // host (hosts joining later get it too); elsewhere only the hosts it reaches now.
  std::map<std::string, v1::DesiredState> fleet_state;
  std::vector<std::string> fleet_tenants;  // the tenants whose fleet-wide blocks change
  std::vector<std::string> partial_tenants;
  if (req.all) {
    for (const std::string& tenant : callTenants(caller)) {
      if (!holdsOnEveryHost(caller, tenant, ruleFor(OperatorAction::kBlock).min_role)) {
        partial_tenants.push_back(tenant);
        continue;
      }
      v1::DesiredState f;
      const TenantBlocks& existing = fleet_blocks_[tenant];
      for (const auto& b : existing.blocks) *f.add_blocks() = b;
      f.set_generation(existing.generation);
      fleet_state[fleetStateKey(tenant)] = withBlock(f, block, now, {});
      fleet_tenants.push_back(tenant);
    }
  }

  const auto known = targetsFor(caller, OperatorAction::kBlock);
  const AuditActor actor = actorFor(caller, known, targets, fleet_tenants);
  auto op = newOp(OperatorAction::kBlock, actor, target, req.reason, req.wait_ms, std::move(done));
  op->host_tenants = hostTenants(known, targets);
  for (const auto& tenant : partial_tenants) {
    op->result.warnings.push_back(fmt::format(
        "your role does not cover every host of tenant {}: the block is on the hosts you reach "
        "now, and hosts joining it later do not get it",
        tenant));
  }
  std::string detail = fmt::format("block {} ({}); hosts {}", match->describe(), block.id(),
                                   targets.empty() ? "none yet" : joinedHosts(targets));
  if (req.ttl_ms > 0) detail += fmt::format("; ttl {} ms", req.ttl_ms);
  for (const auto& [key, state] : fleet_state) {
    const std::string tenant = *tenantOfFleetStateKey(key);
    detail += tenant == kDefaultTenant
                  ? std::string("; fleet-wide (hosts joining later get it too)")
                  : fmt::format("; tenant-wide in {} (hosts joining later get it too)", tenant);
  }
  // commitAndWait persists the fleet rows with the hosts' states and the audit row,
  // atomically; the in-memory fleet lists follow only what was persisted.
  if (commitAndWait(op, targets, states, {}, detail, fleet_state)) adoptFleetState(fleet_state);
}

void Containment::adoptFleetState(const std::map<std::string, v1::DesiredState>& fleet_state) {
  for (const auto& [key, state] : fleet_state) {
    TenantBlocks& t = fleet_blocks_[*tenantOfFleetStateKey(key)];
    fleet_generation_ += state.generation() - t.generation;
    t.blocks.assign(state.blocks().begin(), state.blocks().end());
    t.generation = state.generation();
  }
}

void Containment::doUnblock(const Caller& caller, const UnblockRequest& req,
                            ContainmentDone& done) {
  const std::string target = auditTarget(req);
  auto refuse = [&](const absl::Status& status) {
    done(recordCall(store_, clock_, auditActor(caller), auditAction(OperatorAction::kUnblock),
                    target, req.reason, status, fmt::format("cidr {}", req.remote_cidr)),
         {});
  };
  if (isBlank(req.reason)) return refuse(absl::InvalidArgumentError("reason: required"));
  auto match = parseBlockMatch(req.remote_cidr, req.protocol, req.port, req.direction);
  if (!match.ok()) return refuse(match.status());
  const int64_t now = clock_.nowUnixMs();
  // The call's tenants where the match is a fleet-wide block.
  std::vector<std::string> fleet_wide;
  for (const std::string& tenant : callTenants(caller)) {
    const auto it = fleet_blocks_.find(tenant);
    if (it == fleet_blocks_.end()) continue;
    if (std::any_of(it->second.blocks.begin(), it->second.blocks.end(), [&](const v1::Block& b) {
          return sameMatch(b, *match) &&
                 (b.expires_at_unix_ms() == 0 || b.expires_at_unix_ms() > now);
        })) {
      fleet_wide.push_back(tenant);
    }
  }
  if (!req.all && !fleet_wide.empty()) {
    return refuse(absl::FailedPreconditionError(
        fmt::format("{} is a fleet-wide block: remove it with --all; nothing was changed",
                    match->describe())));
  }
  for (const auto& tenant : fleet_wide) {
    if (!holdsOnEveryHost(caller, tenant, ruleFor(OperatorAction::kUnblock).min_role)) {
      return refuse(absl::PermissionDeniedError(fmt::format(
          "{} is a fleet-wide block of tenant {}: removing it needs your role on every host "
          "of the tenant; nothing was changed",
          match->describe(), tenant)));
    }
  }
  auto resolved =
      blockTargets(caller, OperatorAction::kUnblock, req.all, req.hosts, req.selector, req.yes);
  if (!resolved.ok()) return refuse(resolved.status());
  const std::vector<std::string> targets = *std::move(resolved);
  const auto current = fleet_.desiredStates(targets);
  std::map<std::string, v1::DesiredState> states;
  std::vector<std::string> order;
  for (const auto& h : targets) {
    if (auto next = withoutBlock(current.at(h), *match, now, options_.endpoints)) {
      states[h] = *std::move(next);
      order.push_back(h);
    }
  }
  std::map<std::string, v1::DesiredState> fleet_state;
  std::vector<std::string> fleet_tenants;  // the tenants whose fleet-wide blocks change
  if (req.all) {
    for (const auto& tenant : fleet_wide) {
      const TenantBlocks& existing = fleet_blocks_[tenant];
      v1::DesiredState f;
      for (const auto& b : existing.blocks) *f.add_blocks() = b;
      f.set_generation(existing.generation);
      if (auto next = withoutBlock(f, *match, now, {})) {
        fleet_state[fleetStateKey(tenant)] = *next;
        fleet_tenants.push_back(tenant);
      }
    }
  }
  if (order.empty() && fleet_state.empty()) {
    return refuse(absl::NotFoundError(
        fmt::format("no block {} on {}; nothing was changed", match->describe(), target)));
  }
  const auto known = targetsFor(caller, OperatorAction::kUnblock);
  auto op = newOp(OperatorAction::kUnblock, actorFor(caller, known, order, fleet_tenants), target,
                  req.reason, req.wait_ms, std::move(done));
  op->host_tenants = hostTenants(known, order);
  const bool persisted = commitAndWait(
      op, order, states, {},
      fmt::format("unblock {}; hosts {}{}", match->describe(),
                  order.empty() ? "none" : joinedHosts(order),
                  fleet_state.empty() ? "" : "; fleet-wide"),
      fleet_state);
  if (persisted) adoptFleetState(fleet_state);
}

void Containment::doListBlocks(const Caller& caller, const ListBlocksRequest& req,
                               BlocksDone& done) {
  const std::string target = auditTarget(req);
  const int64_t now = clock_.nowUnixMs();
  auto known = targetsFor(caller, OperatorAction::kListBlocks);
  std::vector<std::string> hosts;
  if (!req.host.empty()) {
    if (!known.count(req.host)) {
      done(
          recordCall(store_, clock_, auditActor(caller), auditAction(OperatorAction::kListBlocks),
                     target, "", absl::NotFoundError(fmt::format("unknown host \"{}\"", req.host))),
          {});
      return;
    }
    hosts.push_back(req.host);
  } else {
    for (const auto& [h, t] : known) hosts.push_back(h);
  }
  auto remaining = [&](const v1::Block& b) {
    return b.expires_at_unix_ms() == 0 ? int64_t{0} : b.expires_at_unix_ms() - now;
  };
  std::set<std::string> fleet_ids;
  std::vector<BlockEntry> entries;
  for (const std::string& tenant : callTenants(caller)) {
    const auto it = fleet_blocks_.find(tenant);
    if (it == fleet_blocks_.end()) continue;
    for (const auto& b : it->second.blocks) {
      if (b.expires_at_unix_ms() != 0 && b.expires_at_unix_ms() <= now) continue;
      fleet_ids.insert(b.id());
      entries.push_back(BlockEntry{
          .block = b, .fleet_wide = true, .remaining_ms = remaining(b), .tenant = tenant});
    }
  }
  for (const auto& [h, state] : fleet_.desiredStates(hosts)) {
    for (const auto& b : state.blocks()) {
      if (fleet_ids.count(b.id()) ||
          (b.expires_at_unix_ms() != 0 && b.expires_at_unix_ms() <= now)) {
        continue;
      }
      entries.push_back(BlockEntry{
          .block = b, .host_id = h, .remaining_ms = remaining(b), .tenant = known.at(h).tenant});
    }
  }
  absl::Status status =
      recordCall(store_, clock_, auditActor(caller), auditAction(OperatorAction::kListBlocks),
                 target, "", absl::OkStatus(), fmt::format("{} blocks", entries.size()));
  done(status, status.ok() ? std::move(entries) : std::vector<BlockEntry>{});
}

void Containment::propagateFleetBlocks() {
  if (fleet_blocks_.empty()) return;
  const int64_t now = clock_.nowUnixMs();
  const auto targets = fleet_.targets();
  std::vector<std::string> all;
  all.reserve(targets.size());
  for (const auto& [h, t] : targets) all.push_back(h);
  if (all == propagated_hosts_ && fleet_generation_ == propagated_generation_) return;
  const auto current = fleet_.desiredStates(all);
  // One change (and audit row) per tenant, so each tenant's trail holds its own.
  struct Additions {
    std::map<std::string, v1::DesiredState> states;
    std::vector<std::string> order;
    std::string added;
  };
  std::map<std::string, Additions> by_tenant;
  for (const auto& [h, state] : current) {
    // Only the host's own tenant's fleet-wide blocks.
    const std::string& tenant = targets.at(h).tenant;
    const auto tenant_blocks = fleet_blocks_.find(tenant);
    if (tenant_blocks == fleet_blocks_.end()) continue;
    auto missing = missingFleetBlocks(state, tenant_blocks->second.blocks, now);
    if (missing.empty()) continue;
    v1::DesiredState next = state;
    for (const auto& b : missing) next = withBlock(next, b, now, options_.endpoints);
    next.set_generation(state.generation() + 1);
    Additions& a = by_tenant[tenant];
    a.states[h] = std::move(next);
    a.order.push_back(h);
    a.added += fmt::format("{}{}: {} block(s)", a.added.empty() ? "" : "; ", h, missing.size());
  }
  bool all_persisted = true;
  for (const auto& [tenant, a] : by_tenant) {
    AuditEntry e;
    e.at_unix_ms = now;
    e.operator_name = "controller";
    e.tenant = tenant;
    e.action = auditAction(OperatorAction::kBlock);
    e.target = joinedHosts(a.order);
    e.reason = "fleet-wide blocks for a host that joined or reconnected";
    e.outcome = "ok";
    e.detail = a.added;
    if (auto row = store_.commitChange(a.states, e); !row.ok()) {
      spdlog::error("fleet-wide blocks for {}: cannot persist (will retry): {}", e.target,
                    row.status());
      all_persisted = false;
      continue;
    }
    spdlog::info("fleet-wide blocks added to {}", a.added);
    fleet_.publish(nullptr, a.order, a.states, {});
  }
  if (!all_persisted) return;
  propagated_hosts_ = std::move(all);
  propagated_generation_ = fleet_generation_;
}

}  // namespace bulkhead::controller
