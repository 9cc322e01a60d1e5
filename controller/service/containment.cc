#include "controller/service/containment.h"

#include <spdlog/spdlog.h>

#include <set>

#include "common/format.h"
#include "common/saturating.h"
#include "controller/core/containment.h"
#include "controller/core/validate.h"
#include "controller/service/audit.h"
#include "controller/service/tenancy.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

namespace {

std::string joined(const std::vector<std::string>& items, const char* sep = ",") {
  std::string out;
  for (const auto& i : items) {
    if (!out.empty()) out += sep;
    out += i;
  }
  return out;
}

std::string targetText(const std::vector<std::string>& hosts, const std::string& selector) {
  if (!selector.empty()) return fmt::format("selector {}", selector);
  return joined(hosts);
}

std::string blockTargetText(bool all, const std::vector<std::string>& hosts,
                            const std::string& selector) {
  if (all) return "all";
  return targetText(hosts, selector);
}

const char* stateName(v1::HostOutcome::State s) {
  switch (s) {
    case v1::HostOutcome::STATE_ENFORCED: return "enforced";
    case v1::HostOutcome::STATE_PENDING: return "pending";
    case v1::HostOutcome::STATE_FAILED: return "failed";
    case v1::HostOutcome::STATE_DRY_RUN: return "dry-run";
    default: return "unknown";
  }
}

}  // namespace

std::string auditTarget(const IsolateRequest& req) { return targetText(req.hosts, req.selector); }
std::string auditTarget(const ReleaseRequest& req) { return targetText(req.hosts, req.selector); }
std::string auditTarget(const BlockRequest& req) {
  return blockTargetText(req.all, req.hosts, req.selector);
}
std::string auditTarget(const UnblockRequest& req) {
  return blockTargetText(req.all, req.hosts, req.selector);
}
std::string auditTarget(const ListBlocksRequest& req) {
  return req.host.empty() ? "all" : req.host;
}

Containment::Containment(const Clock& clock, Store& store, FleetControl& fleet, Policies& policies,
                         const NameCache& names, ContainmentOptions options)
    : clock_(clock),
      store_(store),
      fleet_(fleet),
      policies_(policies),
      names_(names),
      options_(std::move(options)),
      thread_("bh-contain") {
  fleet_.setOpReadyHandler([this](std::shared_ptr<PendingOp> op) {
    // Under the Fleet's lock: only hand over to the containment thread. If it is stopping,
    // shutdown() settles the op.
    thread_.post([this, op] { complete(op, false); });
  });
  loadFleetBlocks();
  // Another controller on the database changed fleet-wide blocks: read them again, so hosts
  // joining later get them from whichever controller runs the singletons.
  fleet_.setFleetBlocksListener([this] { thread_.post([this] { loadFleetBlocks(); }); });
  thread_.every(options_.expiry_interval, [this] {
    if (options_.runs_singletons && !options_.runs_singletons()) return;
    expireIsolations();
    propagateFleetBlocks();
  });
}

void Containment::loadFleetBlocks() {
  auto stored = store_.loadDesiredStates();
  if (!stored.ok()) {
    spdlog::error("fleet-wide blocks not loaded: {}", stored.status());
    return;
  }
  fleet_blocks_.clear();
  fleet_generation_ = 0;
  for (const auto& [key, state] : *stored) {
    const auto tenant = tenantOfFleetStateKey(key);
    if (!tenant) continue;
    fleet_blocks_[*tenant] = TenantBlocks{.blocks = {state.blocks().begin(), state.blocks().end()},
                                          .generation = state.generation()};
    fleet_generation_ += state.generation();
  }
}

Containment::~Containment() { shutdown(); }

void Containment::shutdown() {
  if (stopped_.exchange(true)) return;
  fleet_.setOpReadyHandler(nullptr);
  fleet_.setFleetBlocksListener(nullptr);
  thread_.post([this] {
    for (auto& op : fleet_.pendingOps()) complete(op, true);
  });
  thread_.stop();
  // Anything that became pending while the thread stopped.
  for (auto& op : fleet_.pendingOps()) complete(op, true);
}

std::chrono::milliseconds Containment::waitFor(uint32_t wait_ms) const {
  if (wait_ms == 0) return options_.default_wait;
  return std::min(std::chrono::milliseconds(wait_ms), options_.max_wait);
}

std::shared_ptr<PendingOp> Containment::newOp(OperatorAction action, const AuditActor& actor,
                                              const std::string& target, const std::string& reason,
                                              uint32_t wait_ms, ContainmentDone done) {
  auto op = std::make_shared<PendingOp>();
  op->id = next_op_++;
  op->done = std::move(done);
  op->operator_name = actor.name;
  op->tenant = actor.tenant;
  op->incident = actor.incident;
  op->action = auditAction(action);
  op->target = target;
  op->reason = reason;
  op->wait = waitFor(wait_ms);
  return op;
}

std::map<std::string, std::string> Containment::hostTenants(
    const std::map<std::string, TargetHost>& known, const std::vector<std::string>& hosts) {
  std::map<std::string, std::string> tenants;
  for (const auto& h : hosts) {
    if (auto it = known.find(h); it != known.end()) tenants[h] = it->second.tenant;
  }
  return tenants;
}

AuditActor Containment::actorFor(const Caller& caller,
                                 const std::map<std::string, TargetHost>& known,
                                 const std::vector<std::string>& targets,
                                 const std::vector<std::string>& fleet_tenants) {
  AuditActor actor = auditActor(caller);
  std::set<std::string> tenants(fleet_tenants.begin(), fleet_tenants.end());
  for (const auto& h : targets) {
    if (auto it = known.find(h); it != known.end()) tenants.insert(it->second.tenant);
  }
  if (tenants.size() == 1) actor.tenant = *tenants.begin();
  if (tenants.size() > 1) actor.tenant = kEveryTenant;
  return actor;
}

void Containment::postOrRefuse(const AuditActor& actor, OperatorAction action,
                               const std::string& target, const std::string& reason,
                               const std::function<void(const absl::Status&)>& refused,
                               std::function<void()> work) {
  if (!stopped_ && thread_.post(std::move(work))) return;
  refused(recordCall(store_, clock_, actor, auditAction(action), target, reason,
                     absl::UnavailableError("controller shutting down, nothing applied")));
}

void Containment::isolate(const Caller& caller, IsolateRequest req, ContainmentDone done) {
  submit(OperatorAction::kIsolate, caller, std::move(req), std::move(done),
         &Containment::doIsolate);
}

void Containment::release(const Caller& caller, ReleaseRequest req, ContainmentDone done) {
  submit(OperatorAction::kRelease, caller, std::move(req), std::move(done),
         &Containment::doRelease);
}

void Containment::doIsolate(const Caller& caller, const IsolateRequest& req,
                            ContainmentDone& done) {
  const std::string& operator_name = caller.audit_name;
  const std::string target = auditTarget(req);
  auto refuse = [&](const absl::Status& status) {
    done(recordCall(store_, clock_, auditActor(caller), auditAction(OperatorAction::kIsolate),
                    target, req.reason, status, req.dry_run ? "dry run" : ""),
         {});
  };
  if (isBlank(req.reason)) return refuse(absl::InvalidArgumentError("reason: required"));
  if (req.ttl_ms < 0) {
    return refuse(absl::InvalidArgumentError(
        fmt::format("ttl_ms: invalid value {}: must not be negative", req.ttl_ms)));
  }
  if (options_.endpoints.empty()) {
    return refuse(absl::FailedPreconditionError(
        "no controller endpoint an isolated host could still reach: start the controller with "
        "--advertise IP:PORT, --listen on an IP address, or a certificate that names its IP "
        "addresses (pki init --controller-ip)"));
  }
  auto known = targetsFor(caller, OperatorAction::kIsolate);
  auto targets = resolveTargets(known, TargetRequest{req.hosts, req.selector, req.yes},
                                options_.selector_limit);
  if (!targets.ok()) return refuse(targets.status());

  // Guardrails decided per host: a host that fails one gets a FAILED outcome of its own and
  // the request goes on for the others.
  std::vector<v1::HostOutcome> refused;
  std::vector<std::string> allowed;
  for (const auto& h : *targets) {
    if (auto ip = controllerAddressOf(known.at(h).addresses, options_.endpoints)) {
      v1::HostOutcome o;
      o.set_host_id(h);
      o.set_state(v1::HostOutcome::STATE_FAILED);
      o.set_error(fmt::format(
          "reports the controller's address {} as its own: refusing to isolate what may be the "
          "controller's host (the fleet would lose its controller); host left open",
          *ip));
      refused.push_back(std::move(o));
    } else {
      allowed.push_back(h);
    }
  }

  // Exemption sets per host, as IP literals: DNS names from the cache (never resolved here).
  auto library = policies_.current();
  NameCache::Lookup lookup = names_.lookup();
  const std::vector<std::string>& requested = req.exempt_sets;
  std::map<std::string, std::vector<v1::ExemptionRule>> resolved_by_sets;
  std::map<std::string, std::vector<std::string>> set_names;
  std::map<std::string, v1::DesiredState> states;
  const auto current = fleet_.desiredStates(allowed);
  const int64_t now = clock_.nowUnixMs();
  for (const auto& h : allowed) {
    // The host's tenant's sets only: another tenant's are unknown here.
    auto sets = exemptionSetsFor(library->of(known.at(h).tenant), known.at(h).labels, requested,
                                 req.no_default_exemptions);
    if (!sets.ok()) return refuse(sets.status());
    std::vector<std::string> names;
    for (const auto* s : *sets) names.push_back(s->name);
    // Per tenant: two tenants' sets may share a name.
    const std::string key = known.at(h).tenant + "/" + joined(names);
    auto cached = resolved_by_sets.find(key);
    if (cached == resolved_by_sets.end()) {
      auto rules = resolveExemptions(*sets, lookup);
      if (!rules.ok()) {
        return refuse(absl::FailedPreconditionError(fmt::format("{}", rules.status())));
      }
      cached = resolved_by_sets.emplace(key, *std::move(rules)).first;
    }
    IsolationSpec spec;
    spec.set_names = names;
    spec.rules = cached->second;
    spec.expires_at_unix_ms = req.ttl_ms > 0 ? saturatingAdd(now, req.ttl_ms) : 0;
    spec.reason = req.reason;
    spec.requested_by = operator_name;
    states[h] = isolatedState(current.at(h), spec, options_.endpoints);
    set_names[h] = std::move(names);
  }

  auto op = newOp(OperatorAction::kIsolate, actorFor(caller, known, *targets), target, req.reason,
                  req.wait_ms, std::move(done));
  op->host_tenants = hostTenants(known, *targets);
  op->dry_run = req.dry_run;
  for (auto& o : refused) op->result.outcomes.push_back(std::move(o));
  for (const auto& w : lookup.warnings()) op->result.warnings.push_back(w);

  if (req.dry_run) {
    for (auto& [h, s] : states) s.set_generation(current.at(h).generation());   // not a change
    if (fleet_.preview(op, allowed, states, set_names)) {
      complete(op, false);
    } else if (!thread_.after(op->wait, [this, op] { complete(op, false); })) {
      complete(op, true);
    }
    return;
  }
  std::string detail = fmt::format("hosts {}", allowed.empty() ? "none" : joined(allowed));
  for (const auto& o : op->result.outcomes) {
    detail += fmt::format("; refused {} ({})", o.host_id(), o.error());
  }
  if (req.ttl_ms > 0) detail += fmt::format("; ttl {} ms", req.ttl_ms);
  if (req.no_default_exemptions) detail += "; no default exemptions";
  for (const auto& w : lookup.warnings()) detail += fmt::format("; {}", w);
  std::set<std::string> all_sets;
  for (const auto& [h, n] : set_names) all_sets.insert(n.begin(), n.end());
  detail += fmt::format("; exemptions {}",
                        all_sets.empty() ? "none"
                                         : joined(std::vector<std::string>(all_sets.begin(),
                                                                           all_sets.end())));
  commitAndWait(op, allowed, states, set_names, detail);
}

void Containment::doRelease(const Caller& caller, const ReleaseRequest& req,
                            ContainmentDone& done) {
  const std::string& operator_name = caller.audit_name;
  const std::string target = auditTarget(req);
  auto refuse = [&](const absl::Status& status) {
    done(recordCall(store_, clock_, auditActor(caller), auditAction(OperatorAction::kRelease),
                    target, req.reason, status),
         {});
  };
  if (isBlank(req.reason)) return refuse(absl::InvalidArgumentError("reason: required"));
  const auto known = targetsFor(caller, OperatorAction::kRelease);
  auto targets = resolveTargets(known, TargetRequest{req.hosts, req.selector, req.yes},
                                options_.selector_limit);
  if (!targets.ok()) return refuse(targets.status());
  const auto current = fleet_.desiredStates(*targets);
  std::map<std::string, v1::DesiredState> states;
  for (const auto& h : *targets) {
    states[h] = releasedState(current.at(h), req.reason, operator_name, options_.endpoints);
  }
  auto op = newOp(OperatorAction::kRelease, actorFor(caller, known, *targets), target, req.reason,
                  req.wait_ms, std::move(done));
  op->host_tenants = hostTenants(known, *targets);
  commitAndWait(op, *targets, states, {}, fmt::format("hosts {}", joined(*targets)));
}

bool Containment::commitAndWait(const std::shared_ptr<PendingOp>& op,
                                const std::vector<std::string>& order,
                                const std::map<std::string, v1::DesiredState>& states,
                                const std::map<std::string, std::vector<std::string>>& sets,
                                const std::string& detail,
                                const std::map<std::string, v1::DesiredState>& persist_only) {
  std::string gens;
  for (const auto& h : order) {
    gens += fmt::format("{}{}={}", gens.empty() ? "" : ",", h, states.at(h).generation());
  }
  AuditEntry e;
  e.at_unix_ms = clock_.nowUnixMs();
  e.operator_name = op->operator_name;
  e.tenant = op->tenant;
  e.incident = op->incident;
  e.action = op->action;
  e.target = op->target;
  e.reason = op->reason;
  e.outcome = "ok";
  e.detail = fmt::format("{}; generations {}", detail, gens);
  std::map<std::string, v1::DesiredState> persisted = states;
  persisted.insert(persist_only.begin(), persist_only.end());
  auto row = store_.commitChange(persisted, e);
  if (!row.ok()) {
    spdlog::error("{} {}: cannot persist: {}", op->action, op->target, row.status());
    absl::Status status = absl::InternalError(
        fmt::format("store unavailable, nothing applied: {}", row.status()));
    if (absl::IsAborted(row.status())) {
      // Another controller on the database changed a host first: its state is read again, so
      // the same command, run again, builds on it.
      std::vector<std::string> hosts;
      hosts.reserve(persisted.size());
      for (const auto& [h, state] : persisted) hosts.push_back(h);
      fleet_.reloadDesiredStates(hosts);
      loadFleetBlocks();
      status = absl::AbortedError(
          fmt::format("{}: nothing applied; run the command again", row.status().message()));
    }
    op->done(recordCall(store_, clock_, AuditActor{op->operator_name, op->tenant, op->incident},
                        op->action, op->target, op->reason, status),
             {});
    return false;
  }
  spdlog::info("operator {}: {} {} ({}) generations {}", op->operator_name, op->action,
               op->target, op->reason, gens);
  if (fleet_.publish(op, order, states, sets)) {
    complete(op, false);
  } else if (!thread_.after(op->wait, [this, op] { complete(op, false); })) {
    complete(op, true);
  }
  return true;
}

void Containment::complete(const std::shared_ptr<PendingOp>& op, bool shutting_down) {
  std::string open_error;
  v1::HostOutcome::State open_state = v1::HostOutcome::STATE_PENDING;
  if (op->dry_run) {
    open_state = v1::HostOutcome::STATE_FAILED;
    open_error = shutting_down ? "controller shutting down before the agent answered"
                               : fmt::format("no dry-run answer from the agent within {} ms",
                                             op->wait.count());
  } else {
    open_error = shutting_down
                     ? "controller shutting down before the acknowledgement: will apply when "
                       "the agent receives it"
                     : fmt::format("no acknowledgement within {} ms: will apply when the agent "
                                   "acknowledges",
                                   op->wait.count());
  }
  if (!fleet_.settle(op, open_state, open_error)) return;   // already completed
  for (auto& o : op->result.outcomes) {
    if (auto it = op->host_tenants.find(o.host_id()); it != op->host_tenants.end()) {
      o.set_tenant(it->second);
    }
  }

  std::map<std::string, std::vector<std::string>> by_state;
  for (const auto& o : op->result.outcomes) {
    // The flows an enforcement cut ride along in the row (the incident timeline reads them).
    std::string entry = o.host_id();
    if (!o.error().empty()) {
      entry += fmt::format(" ({})", o.error());
    } else if (o.state() == v1::HostOutcome::STATE_ENFORCED && o.report().flows_cut() > 0) {
      entry += fmt::format(" ({} flows cut)", o.report().flows_cut());
    }
    by_state[stateName(o.state())].push_back(std::move(entry));
  }
  std::string summary;
  for (const auto& [state, hosts] : by_state) {
    summary += fmt::format("{}{} {}: {}", summary.empty() ? "" : "; ", hosts.size(), state,
                           joined(hosts, ", "));
  }
  const bool all_good = !by_state.count("failed") && !by_state.count("pending");
  absl::Status status;
  if (op->dry_run) {
    // The only audit row of a dry run: its failure fails the call.
    status = recordCall(store_, clock_, AuditActor{op->operator_name, op->tenant, op->incident},
                        op->action, op->target, op->reason, absl::OkStatus(),
                        fmt::format("dry run; {}", summary));
  } else {
    AuditEntry e;
    e.at_unix_ms = clock_.nowUnixMs();
    e.operator_name = op->operator_name;
    e.tenant = op->tenant;
    e.incident = op->incident;
    e.action = op->action + ".result";
    e.target = op->target;
    e.reason = op->reason;
    e.outcome = all_good ? "ok" : fmt::format("error: {}", summary);
    e.detail = summary;
    if (auto row = store_.appendAudit(e); !row.ok()) {
      spdlog::error("audit: cannot record the result of {} {}: {}", op->action, op->target,
                    row.status());
    }
  }
  spdlog::info("{} {}: {}", op->action, op->target, summary);
  op->done(status, status.ok() ? std::move(op->result) : ContainmentResult{});
}

void Containment::expireIsolations() {
  const int64_t now = clock_.nowUnixMs();
  // One change (and audit row) per tenant, so each tenant's trail holds its own releases.
  std::map<std::string, std::map<std::string, v1::DesiredState>> by_tenant;
  std::map<std::string, std::vector<std::string>> order_by_tenant;
  const auto known = fleet_.targets();
  for (const auto& [host, state] : fleet_.allDesiredStates()) {
    if (!isolationExpired(state, now)) continue;
    const auto it = known.find(host);
    const std::string tenant = it == known.end() ? kDefaultTenant : it->second.tenant;
    by_tenant[tenant][host] = releasedState(
        state, fmt::format("ttl expired (isolated for: {})", state.isolation().reason()),
        "controller", options_.endpoints);
    order_by_tenant[tenant].push_back(host);
  }
  for (const auto& [tenant, states] : by_tenant) {
    const std::vector<std::string>& order = order_by_tenant.at(tenant);
    AuditEntry e;
    e.at_unix_ms = now;
    e.operator_name = "controller";
    e.tenant = tenant;
    e.action = auditAction(OperatorAction::kRelease);
    e.target = joined(order);
    e.reason = "ttl expired";
    e.outcome = "ok";
    std::string gens;
    for (const auto& h : order) {
      gens += fmt::format("{}{}={}", gens.empty() ? "" : ",", h, states.at(h).generation());
    }
    e.detail = fmt::format("automatic release at expiry; generations {}", gens);
    auto row = store_.commitChange(states, e);
    if (!row.ok()) {
      spdlog::error("ttl release of {}: cannot persist (will retry): {}", e.target, row.status());
      if (absl::IsAborted(row.status())) fleet_.reloadDesiredStates(order);
      continue;
    }
    spdlog::info("ttl expired: released {} (generations {})", e.target, gens);
    fleet_.publish(nullptr, order, states, {});
  }
}

}  // namespace bulkhead::controller
