#include "controller/service/signals.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>
#include <optional>
#include <utility>

#include "common/format.h"
#include "common/text.h"
#include "controller/playbook/tenant_automation.h"
#include "controller/service/audit.h"
#include "controller/service/record_text.h"
#include "controller/service/tenancy.h"
#include "evidence/json_read.h"

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;

// One tenant's hosts, as the engine sees them.
class TenantFleet final : public FleetView {
 public:
  void add(FleetHost host, const std::string& hostname) {
    by_name_.emplace(hostname, host.id);
    hosts_.push_back(std::move(host));
  }
  std::optional<FleetHost> host(const std::string& id_or_name) const override {
    for (const FleetHost& h : hosts_) {
      if (h.id == id_or_name) return h;
    }
    auto it = by_name_.find(id_or_name);
    if (it == by_name_.end() || by_name_.count(id_or_name) != 1) return std::nullopt;
    return host(it->second);
  }
  std::vector<FleetHost> hosts() const override { return hosts_; }

 private:
  std::vector<FleetHost> hosts_;
  std::multimap<std::string, std::string> by_name_;  // hostname -> id (ambiguous names: none)
};

// The host directory's snapshot, split by tenant: a tenant's playbooks see its hosts only.
class FleetSnapshot {
 public:
  explicit FleetSnapshot(HostDirectory& hosts) {
    for (const v1::HostSummary& h : hosts.listHosts({})) {
      const std::string tenant = tenantOrDefault(h.tenant());
      tenants_.emplace(h.host_id(), tenant);
      FleetHost host;
      host.id = h.host_id();
      host.labels = Labels(h.labels().begin(), h.labels().end());
      host.addresses.assign(h.addresses().begin(), h.addresses().end());
      fleets_[tenant].add(std::move(host), h.hostname());
    }
  }
  // The hosts of `tenant` (none for a tenant without hosts).
  const FleetView& of(const std::string& tenant) const {
    static const TenantFleet kNoHosts;
    const auto it = fleets_.find(tenant);
    return it == fleets_.end() ? kNoHosts : it->second;
  }
  // The tenant of host `id` ("default" when unknown).
  std::string tenantOf(const std::string& id) const {
    const auto it = tenants_.find(id);
    return it == tenants_.end() ? kDefaultTenant : it->second;
  }

 private:
  std::map<std::string, TenantFleet> fleets_;
  std::map<std::string, std::string> tenants_;  // host id -> tenant
};

// The caller a playbook of `tenant` acts as: a responder on every host of that tenant, and of
// no other.
Caller playbookCaller(const std::string& playbook, const std::string& tenant) {
  return Caller{.audit_name = "playbook:" + playbook,
                .is_operator = true,
                .role = Role::kResponder,
                .grants = {Grant{.tenant = tenant, .role = Role::kResponder}},
                .tenants = {tenant}};
}

// "fail2ban sshd 203.0.113.7 on h1", for audit targets and reasons.
std::string describe(const v1::Signal& s) {
  std::string out(signalSourceName(s.source()));
  if (!s.integration().empty()) out += "/" + s.integration();
  if (!s.rule().empty()) out += " " + s.rule();
  for (const std::string& a : s.addresses()) out += " " + a;
  if (!s.host().empty()) out += " on " + s.host();
  if (s.resolved()) out += " (resolved)";
  return out;
}

// `approval_id`: the approval a waiting action waits for ("awaiting approval ID: why").
v1::SignalAction toRecord(const PlannedAction& a, const std::string& approval_id = "") {
  v1::SignalAction out;
  out.set_playbook(a.playbook);
  out.set_action(std::string(actionKindName(a.kind)));
  out.set_target(a.target());
  out.set_detail(a.detail());
  std::string outcome(verdictName(a.verdict));
  if (!approval_id.empty()) outcome += " " + approval_id;
  if (!a.why.empty()) outcome += ": " + a.why;
  out.set_outcome(outcome);
  out.set_kind(readSignalActionKind(actionKindName(a.kind)));
  out.set_state(readSignalActionState(verdictName(a.verdict)));
  return out;
}

// "isolate h2 (exempt ir-jump-host for 3600 s) of playbook db, signal sig-1-2"
std::string describeApproval(const v1::Approval& a) {
  return fmt::format("{} {} ({}) of playbook {}, signal {}", a.action().action(),
                     a.action().target(), a.action().detail(), a.playbook(), a.signal_id());
}

// OK when the caller holds the approver role on every host the approval's action touches
// (`fleet`: its tenant's hosts), or on every host of `tenant` for a tenant-wide action.
absl::Status approverCovers(const Caller& caller, const std::string& tenant,
                            const v1::Approval& approval, const FleetView& fleet) {
  const std::string& target = approval.action().target();
  if (target == "all" || target.empty()) {
    if (holdsOnEveryHost(caller, tenant, Role::kApprover)) return absl::OkStatus();
    return absl::PermissionDeniedError(
        fmt::format("operator \"{}\" is not an approver on every host of tenant {}: approval {} "
                    "acts on all of them",
                    caller.audit_name, tenant, approval.approval_id()));
  }
  // The host ids, joined by commas (PlannedAction::target).
  for (size_t start = 0; start <= target.size();) {
    const size_t end = std::min(target.find(',', start), target.size());
    const std::string id = target.substr(start, end - start);
    start = end + 1;
    const std::optional<FleetHost> host = fleet.host(id);
    if (!host || roleOn(caller, tenant, host->labels) < Role::kApprover) {
      return absl::PermissionDeniedError(
          fmt::format("operator \"{}\" is not an approver on host {} of approval {}",
                      caller.audit_name, id, approval.approval_id()));
    }
  }
  return absl::OkStatus();
}

constexpr uint32_t kDefaultListLimit = 100;
constexpr uint32_t kMaxListLimit = 10000;

}  // namespace

SignalService::SignalService(const Clock& clock, Store& store, HostDirectory& hosts,
                             SignalActuator& actuator, SignalServiceOptions options)
    : clock_(clock),
      store_(store),
      hosts_(hosts),
      actuator_(actuator),
      options_(std::move(options)),
      worker_("bh-signals") {
  engines_.try_emplace(kDefaultTenant, PlaybookSet{},
                       AutomationGuardrails{.blocks = options_.blocks});
  if (options_.approval_check_period.count() > 0) {
    worker_.every(options_.approval_check_period, [this] { (void)expireApprovals(); });
  }
}

SignalService::~SignalService() { shutdown(); }

absl::Status SignalService::reload() {
  if (options_.policy_dir.empty()) return absl::OkStatus();
  auto loaded = loadTenantAutomation(options_.policy_dir, options_.blocks);
  if (!loaded.ok()) return loaded.status();
  std::lock_guard lock(mu_);
  std::erase_if(engines_, [&](const auto& e) { return !loaded->contains(e.first); });
  for (auto& [tenant, automation] : *loaded) {
    // A tenant's rate windows stay across reloads.
    if (auto it = engines_.find(tenant); it != engines_.end()) {
      it->second.replace(std::move(automation.playbooks), std::move(automation.guardrails));
    } else {
      engines_.try_emplace(tenant, std::move(automation.playbooks),
                           std::move(automation.guardrails));
    }
  }
  return absl::OkStatus();
}

size_t SignalService::playbookCount() const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& [tenant, engine] : engines_) n += engine.playbooks().playbooks.size();
  return n;
}

std::string SignalService::tenantRequiringIncident(const std::vector<std::string>& tenants) const {
  std::lock_guard lock(mu_);
  const auto install = engines_.find(kDefaultTenant);
  for (const std::string& tenant : tenants) {
    auto it = engines_.find(tenant);
    if (it == engines_.end()) it = install;
    if (it != engines_.end() && it->second.guardrails().require_incident) return tenant;
  }
  return "";
}

PlaybookEngine* SignalService::engineFor(const std::string& tenant) {
  const auto it = engines_.find(tenant);
  return it == engines_.end() ? nullptr : &it->second;
}

void SignalService::submitAsOperator(const Caller& caller, v1::Signal signal, SignalDone done) {
  absl::Status allowed = authorize(caller, OperatorAction::kSubmitSignal);
  absl::StatusOr<std::string> tenant =
      allowed.ok() ? singleCallTenant(caller, "a signal") : allowed;
  if (!tenant.ok()) {
    done(recordCall(store_, clock_, auditActor(caller), auditAction(OperatorAction::kSubmitSignal),
                    describe(signal), "", tenant.status()));
    return;
  }
  submit(SignalDelivery{.delivered_by = "operator:" + caller.audit_name, .tenant = *tenant},
         std::move(signal), std::move(done));
}

void SignalService::submit(SignalDelivery from, v1::Signal signal, SignalDone done) {
  if (!from.reporting_host.empty()) signal.set_host(from.reporting_host);
  if (absl::Status valid = validateSignal(signal); !valid.ok()) {
    // (An agent's refused signal is recorded in tenant default: its host's tenant is looked up
    // on the signals thread only.)
    done(recordCall(store_, clock_,
                    AuditActor{.name = from.delivered_by, .tenant = tenantOrDefault(from.tenant)},
                    auditAction(OperatorAction::kSubmitSignal), describe(signal), "", valid));
    return;
  }
  bool post = false;
  {
    std::lock_guard lock(queue_mu_);
    if (!closed_) {
      queue_.push_back(Queued{std::move(from), std::move(signal), std::move(done)});
      post = !std::exchange(drain_posted_, true);
      done = nullptr;
    }
  }
  if (done) {
    done(absl::UnavailableError("the controller is shutting down: not recorded"));
    return;
  }
  // A failed post means shutdown() began: it answers what is queued.
  if (post) (void)worker_.post([this] { drain(); });
}

void SignalService::shutdown() {
  {
    std::lock_guard lock(queue_mu_);
    closed_ = true;
  }
  // Runs a drain already posted (recording those signals), then stops.
  worker_.stop();
  std::deque<Queued> left;
  {
    std::lock_guard lock(queue_mu_);
    left.swap(queue_);
  }
  for (Queued& q : left) {
    q.done(absl::UnavailableError("the controller is shutting down: not recorded"));
  }
}

void SignalService::drain() {
  std::vector<Queued> batch;
  {
    std::lock_guard lock(queue_mu_);
    const size_t n = std::min(queue_.size(), kMaxBatch);
    batch.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
  }
  processBatch(batch);
  {
    std::lock_guard lock(queue_mu_);
    if (queue_.empty()) {
      drain_posted_ = false;
      return;
    }
  }
  // Fails only once shutdown() began: it answers what is still queued.
  (void)worker_.post([this] { drain(); });
}

std::string SignalService::incidentFor(const std::string& tenant, const std::string& playbook,
                                       const PlaybookIncident& config, const std::string& signal_id,
                                       int64_t now_ms, std::string& why) {
  if (!config.id.empty()) {
    auto incident = store_.getIncident(tenant, config.id);
    if (incident.ok() && incident->state() == v1::INCIDENT_STATE_OPEN) return config.id;
    why = incident.ok() ? fmt::format("incident {} is closed: actions not attached", config.id)
                        : fmt::format("incident {}: {}: actions not attached", config.id,
                                      incident.status().message());
    spdlog::warn("playbook {} (tenant {}): {}", playbook, tenant, why);
    return "";
  }
  const std::string opener = "playbook:" + playbook;
  auto listed = store_.listIncidents({tenant});
  if (!listed.ok()) {
    why = fmt::format("incidents not read ({}): actions not attached", listed.status().message());
    spdlog::warn("playbook {} (tenant {}): {}", playbook, tenant, why);
    return "";
  }
  for (const v1::Incident& i : *listed) {  // newest opened first
    if (i.state() == v1::INCIDENT_STATE_OPEN && i.opened_by() == opener) return i.incident_id();
  }
  // "ssh-brute-force-20261206-091200": the playbook's name (cut to leave room) and the time.
  const std::string base = fmt::format("{}-{:%Y%m%d-%H%M%S}", playbook.substr(0, 40),
                                       fmt::gmtime(static_cast<std::time_t>(now_ms / 1000)));
  v1::Incident incident;
  incident.set_tenant(tenant);
  incident.set_title(config.open);
  incident.set_severity(config.severity);
  incident.set_state(v1::INCIDENT_STATE_OPEN);
  incident.set_opened_by(opener);
  incident.set_opened_unix_ms(now_ms);
  incident.set_detected_unix_ms(now_ms);
  absl::Status added;
  for (int n = 1; n <= 9; ++n) {
    incident.set_incident_id(n == 1 ? base : fmt::format("{}-{}", base, n));
    const AuditEntry row = callEntry(
        now_ms, AuditActor{.name = opener, .tenant = tenant, .incident = incident.incident_id()},
        auditAction(OperatorAction::kOpenIncident), incident.incident_id(), config.open,
        absl::OkStatus(),
        fmt::format("opened by its playbook for signal {}; detected {}", signal_id,
                    utcTimeText(now_ms)));
    added = store_.addIncident(incident, row);
    if (added.code() != absl::StatusCode::kAlreadyExists) break;
  }
  if (!added.ok()) {
    why = fmt::format("no incident opened ({}): actions not attached", added.message());
    spdlog::error("playbook {} (tenant {}): {}", playbook, tenant, why);
    return "";
  }
  spdlog::info("incident {} opened in tenant {} by playbook {} (signal {})", incident.incident_id(),
               tenant, playbook, signal_id);
  return incident.incident_id();
}

void SignalService::processBatch(std::vector<Queued>& batch) {
  if (batch.empty()) return;
  const int64_t now_ms = clock_.nowUnixMs();
  const int64_t dedupe_since = now_ms - options_.dedupe_window.count();
  // What each signal of the batch became before the commit.
  struct Planned {
    std::string key;
    std::string tenant;
    std::string signal_id;  // the duplicate's first signal, or the new one's
    bool duplicate = false;
    Decision decision;
    std::vector<std::string> approval_ids;  // per action: the approval it waits for, or ""
    std::vector<std::string> incidents;     // per action: its playbook's incident, or ""
  };
  std::vector<Planned> planned(batch.size());
  std::vector<SignalWrite> writes;
  writes.reserve(batch.size());
  std::map<std::string, std::string> keys_in_batch;  // idempotency key -> its signal's id
  const FleetSnapshot fleet(hosts_);                 // one snapshot of the fleet for the batch
  // (tenant, playbook) -> the incident its actions take in this batch, and why none.
  std::map<std::pair<std::string, std::string>, std::pair<std::string, std::string>> incidents;
  std::map<std::string, PlaybookEngine::Rates> rates_before;  // put back if not recorded
  {
    std::lock_guard lock(mu_);
    for (const auto& [tenant, engine] : engines_) rates_before.emplace(tenant, engine.rates());
  }

  for (size_t n = 0; n < batch.size(); ++n) {
    const Queued& q = batch[n];
    const v1::Signal& signal = q.signal;
    Planned& p = planned[n];
    // An agent's signal belongs to its host's tenant; the others to their front door's.
    const std::string tenant = q.from.reporting_host.empty()
                                   ? tenantOrDefault(q.from.tenant)
                                   : fleet.tenantOf(q.from.reporting_host);
    p.tenant = tenant;
    p.key =
        signal.idempotency_key().empty() ? derivedIdempotencyKey(signal) : signal.idempotency_key();
    p.key = fmt::format("{}/{}/{}", signalSourceName(signal.source()), signal.integration(), p.key);
    // Keys are per tenant: another tenant's signal with the same key is not a duplicate (and
    // its answer never names this one). Tenant default's keep their form from before tenants.
    if (tenant != kDefaultTenant) p.key = tenant + ":" + p.key;
    const std::string target = describe(signal);
    const AuditActor deliverer{.name = q.from.delivered_by, .tenant = tenant};

    // A duplicate is answered before the engine sees it: it counts against no rate cap.
    if (auto it = keys_in_batch.find(p.key); it != keys_in_batch.end()) {
      p.duplicate = true;
      p.signal_id = it->second;
    } else if (auto earlier = store_.findSignal(p.key, dedupe_since);
               earlier.ok() && earlier->has_value()) {
      p.duplicate = true;
      p.signal_id = (*earlier)->record.signal_id();
    }
    if (p.duplicate) {
      SignalWrite write;
      write.audit.push_back(callEntry(now_ms, deliverer, auditAction(OperatorAction::kSubmitSignal),
                                      target, p.signal_id, absl::OkStatus(),
                                      "duplicate: idempotency key seen before, nothing done"));
      writes.push_back(std::move(write));
      continue;
    }

    std::string not_acted;
    std::map<std::string, PlaybookIncident> incident_configs;  // playbook -> its incident:
    {
      std::lock_guard lock(mu_);
      // The tenant's own playbooks decide, on its own hosts only: another tenant's signal
      // cannot make them block or isolate anything of this one.
      if (PlaybookEngine* engine = engineFor(tenant)) {
        p.decision = engine->decide(signal, q.from.reporting_host, fleet.of(tenant),
                                    std::chrono::steady_clock::now());
      } else {
        p.decision = Decision{};
        not_acted = fmt::format("tenant {} has no playbooks", tenant);
      }
      p.signal_id = fmt::format("sig-{}-{}", now_ms, ++sequence_);
      for (const PlannedAction& a : p.decision.actions) {
        p.approval_ids.push_back(a.verdict == Verdict::kNeedsApproval
                                     ? fmt::format("apr-{}-{}", now_ms, ++sequence_)
                                     : std::string());
        const PlaybookEngine* engine = engineFor(tenant);
        const Playbook* playbook = engine ? engine->playbooks().find(a.playbook) : nullptr;
        if (playbook != nullptr && playbook->incident.any()) {
          incident_configs.emplace(a.playbook, playbook->incident);
        }
      }
    }
    keys_in_batch.emplace(p.key, p.signal_id);
    const Decision& decision = p.decision;
    // The incident of each action that starts now: its playbook's (opened now when it says
    // open). A simulated, suppressed or waiting action opens none (an approved one takes it
    // when it starts: decide()).
    std::string incident_notes;
    std::string signal_incident;
    for (const PlannedAction& a : decision.actions) {
      std::string id;
      if (auto c = incident_configs.find(a.playbook);
          a.verdict == Verdict::kStart && c != incident_configs.end()) {
        auto [it, fresh] = incidents.try_emplace({tenant, a.playbook});
        if (fresh) {
          it->second.first =
              incidentFor(tenant, a.playbook, c->second, p.signal_id, now_ms, it->second.second);
          if (!it->second.second.empty()) {
            incident_notes += fmt::format("; {}: {}", a.playbook, it->second.second);
          }
        }
        id = it->second.first;
      }
      if (signal_incident.empty()) signal_incident = id;
      p.incidents.push_back(std::move(id));
    }

    SignalWrite write;
    SignalRow& row = write.row.emplace();
    row.idempotency_key = p.key;
    v1::SignalRecord& record = row.record;
    record.set_signal_id(p.signal_id);
    record.set_received_unix_ms(now_ms);
    record.set_delivered_by(q.from.delivered_by);
    record.set_tenant(tenant);
    *record.mutable_signal() = signal;
    record.set_disposition(decision.disposition);
    std::string summary;
    for (size_t i = 0; i < decision.actions.size(); ++i) {
      const PlannedAction& a = decision.actions[i];
      *record.add_actions() = toRecord(a, p.approval_ids[i]);
      summary += fmt::format("{}{} {} {}: {}", summary.empty() ? "" : "; ", a.playbook,
                             actionKindName(a.kind), a.target(), verdictName(a.verdict));
    }
    write.audit.push_back(AuditEntry{
        .at_unix_ms = now_ms,
        .operator_name = q.from.delivered_by,
        .action = auditAction(OperatorAction::kSubmitSignal),
        .target = escapeNonPrintable(target),
        .reason = p.signal_id,
        .outcome = std::string(dispositionText(decision.disposition)),
        .detail = escapeNonPrintable((summary.empty() ? not_acted : summary) + incident_notes),
        .tenant = tenant,
        .incident = signal_incident});
    // One row per action that did not start (suppressed, simulated, waiting), each naming the
    // playbook and the signal; a waiting action's approval is written with them.
    for (size_t i = 0; i < decision.actions.size(); ++i) {
      const PlannedAction& a = decision.actions[i];
      if (a.verdict == Verdict::kStart) continue;
      const std::string what = a.verdict == Verdict::kNeedsApproval
                                   ? std::string(verdictName(a.verdict)) + " " + p.approval_ids[i]
                                   : std::string(verdictName(a.verdict));
      const std::string detail = fmt::format("{} {}: {}{}", actionKindName(a.kind), a.detail(),
                                             what, a.why.empty() ? "" : " (" + a.why + ")");
      write.audit.push_back(callEntry(
          now_ms,
          AuditActor{
              .name = "playbook:" + a.playbook, .tenant = tenant, .incident = p.incidents[i]},
          kSignalActionAuditAction, a.target().empty() ? target : a.target(), p.signal_id,
          absl::OkStatus(), detail));
      if (a.verdict != Verdict::kNeedsApproval) continue;
      v1::Approval& approval = write.approvals.emplace_back();
      approval.set_approval_id(p.approval_ids[i]);
      approval.set_signal_id(p.signal_id);
      approval.set_playbook(a.playbook);
      *approval.mutable_action() = record.actions(static_cast<int>(i));
      approval.set_requested_by(q.from.delivered_by);
      approval.set_requested_unix_ms(now_ms);
      approval.set_expires_unix_ms(now_ms + options_.approval_expiry.count());
      approval.set_state(v1::APPROVAL_STATE_PENDING);
      approval.set_action_index(static_cast<uint32_t>(i));
      approval.set_reporting_host(q.from.reporting_host);
      approval.set_tenant(tenant);
    }
    // And one when a rate cap starts suppressing.
    if (decision.rate_cap_reached) {
      spdlog::warn("signals: a rate cap started suppressing automatic actions (signal {})",
                   p.signal_id);
      write.audit.push_back(callEntry(
          now_ms, AuditActor{.name = "controller", .tenant = tenant}, kSignalRateCapAuditAction,
          target, p.signal_id, absl::OkStatus(), "automatic actions suppressed from here on"));
    }
    writes.push_back(std::move(write));
  }

  auto recorded = store_.addSignals(writes, dedupe_since);
  if (!recorded.ok()) {
    {
      std::lock_guard lock(mu_);
      for (auto& [tenant, rates] : rates_before) {
        if (PlaybookEngine* engine = engineFor(tenant)) engine->restoreRates(std::move(rates));
      }
    }
    if (batch.size() > 1) {
      spdlog::warn("signals: a batch of {} was not recorded ({}): taking them one by one",
                   batch.size(), recorded.status());
      for (Queued& q : batch) {
        std::vector<Queued> one;
        one.push_back(std::move(q));
        processBatch(one);
      }
      return;
    }
    spdlog::error("signal {} from {} not recorded: {}", describe(batch[0].signal),
                  batch[0].from.delivered_by, recorded.status());
    batch[0].done(absl::UnavailableError(
        fmt::format("the signal could not be recorded, nothing done: {}", recorded.status())));
    return;
  }

  for (size_t n = 0; n < batch.size(); ++n) {
    Queued& q = batch[n];
    const Planned& p = planned[n];
    const std::optional<SignalRow>& earlier = (*recorded)[n];
    if (p.duplicate || earlier.has_value()) {
      // (earlier: another controller recorded the same key meanwhile.)
      q.done(SignalOutcome{.signal_id = earlier ? earlier->record.signal_id() : p.signal_id,
                           .tenant = p.tenant,
                           .disposition = v1::SIGNAL_DISPOSITION_DUPLICATE});
      continue;
    }
    const SignalRow& row = *writes[n].row;
    const Decision& decision = p.decision;
    SignalOutcome outcome{.signal_id = p.signal_id,
                          .tenant = p.tenant,
                          .disposition = decision.disposition,
                          .actions = {row.record.actions().begin(), row.record.actions().end()}};
    // The actions start before the answer goes out: enforcement never waits on the caller,
    // and a caller that has its answer knows the actions were handed to the fleet.
    const std::string target = describe(q.signal);
    for (size_t i = 0; i < decision.actions.size(); ++i) {
      const PlannedAction& a = decision.actions[i];
      if (a.verdict != Verdict::kStart) continue;
      InFlight& flight = in_flight_[p.signal_id];
      flight.row = row;
      ++flight.running;
      Caller caller = playbookCaller(a.playbook, row.record.tenant());
      caller.incident = p.incidents[i];
      const std::string reason = fmt::format("signal {}: {}", p.signal_id, target);
      actuator_.start(caller, a, reason,
                      [this, signal_id = p.signal_id, i](const absl::Status& status,
                                                         const std::string& result) {
                        worker_.post([this, signal_id, i, status, result] {
                          actionEnded(signal_id, i, status, result);
                        });
                      });
    }
    q.done(std::move(outcome));
  }
}

void SignalService::actionEnded(const std::string& signal_id, size_t index,
                                const absl::Status& status, const std::string& summary) {
  auto it = in_flight_.find(signal_id);
  if (it == in_flight_.end()) return;
  InFlight& flight = it->second;
  v1::SignalRecord& record = flight.row.record;
  if (index < static_cast<size_t>(record.actions_size())) {
    v1::SignalAction& action = *record.mutable_actions(static_cast<int>(index));
    action.set_outcome(status.ok() ? "done" + (summary.empty() ? "" : ": " + summary)
                                   : fmt::format("failed: {}", status));
    action.set_state(status.ok() ? v1::SIGNAL_ACTION_STATE_DONE : v1::SIGNAL_ACTION_STATE_FAILED);
  }
  if (auto s = store_.updateSignal(flight.row); !s.ok()) {
    spdlog::warn("signal {}: action outcome not recorded: {}", signal_id, s);
  }
  if (--flight.running == 0) in_flight_.erase(it);
}

absl::StatusOr<std::vector<v1::SignalRecord>> SignalService::list(const Caller& caller,
                                                                  int64_t since_unix_ms,
                                                                  uint32_t limit) {
  absl::Status allowed = authorize(caller, OperatorAction::kListSignals);
  if (allowed.ok() && since_unix_ms < 0) {
    allowed = absl::InvalidArgumentError("since: must not be negative");
  }
  if (!allowed.ok()) {
    return recordCall(store_, clock_, auditActor(caller), auditAction(OperatorAction::kListSignals),
                      "", "", allowed);
  }
  if (limit == 0) limit = kDefaultListLimit;
  limit = std::min(limit, kMaxListLimit);
  const std::vector<std::string> tenants = tenantsReadWhole(caller);
  absl::StatusOr<std::vector<SignalRow>> rows = std::vector<SignalRow>{};
  // (No readable tenant: nothing, never "every tenant".)
  if (!tenants.empty() || readsEveryTenant(caller)) {
    rows = store_.listSignals(since_unix_ms, limit, tenants);
  }
  absl::Status status = rows.ok() ? absl::OkStatus() : rows.status();
  if (auto s = recordCall(store_, clock_, auditActor(caller),
                          auditAction(OperatorAction::kListSignals), "", "", status);
      !s.ok()) {
    return s;
  }
  std::vector<v1::SignalRecord> out;
  size_t bytes = 0;
  for (SignalRow& row : *rows) {
    bytes += row.record.ByteSizeLong() + 8;
    if (!out.empty() && bytes > kMaxResponseBytes) break;  // the rest: ask with an earlier since
    fillTypedFields(row.record);
    out.push_back(std::move(row.record));
  }
  return out;
}

absl::StatusOr<SignalOutcome> SignalService::preview(const Caller& caller, v1::Signal signal,
                                                     const std::string& reporting_host) {
  if (!reporting_host.empty()) signal.set_host(reporting_host);
  absl::Status allowed = authorize(caller, OperatorAction::kPreviewSignal);
  absl::StatusOr<std::string> tenant =
      allowed.ok() ? singleCallTenant(caller, "a signal") : allowed;
  if (tenant.ok()) allowed = validateSignal(signal);
  if (!tenant.ok() || !allowed.ok()) {
    return recordCall(store_, clock_, auditActor(caller),
                      auditAction(OperatorAction::kPreviewSignal), describe(signal), "",
                      tenant.ok() ? allowed : tenant.status());
  }
  const FleetSnapshot fleet(hosts_);
  Decision decision;
  {
    std::lock_guard lock(mu_);
    if (const PlaybookEngine* engine = engineFor(*tenant)) {
      decision = engine->preview(signal, reporting_host, fleet.of(*tenant),
                                 std::chrono::steady_clock::now());
    }
  }
  if (auto s = recordCall(store_, clock_, auditActor(caller),
                          auditAction(OperatorAction::kPreviewSignal), describe(signal), "",
                          absl::OkStatus(), std::string(dispositionText(decision.disposition)));
      !s.ok()) {
    return s;
  }
  SignalOutcome out{.tenant = *tenant, .disposition = decision.disposition};
  for (const PlannedAction& a : decision.actions) out.actions.push_back(toRecord(a));
  return out;
}

// --- approvals ---

absl::StatusOr<std::vector<v1::Approval>> SignalService::listApprovals(const Caller& caller,
                                                                       bool all, uint32_t limit) {
  const std::string action = auditAction(OperatorAction::kListApprovals);
  if (absl::Status allowed = authorize(caller, OperatorAction::kListApprovals); !allowed.ok()) {
    return recordCall(store_, clock_, auditActor(caller), action, "", "", allowed);
  }
  if (limit == 0) limit = kDefaultListLimit;
  limit = std::min(limit, kMaxListLimit);
  const std::vector<std::string> tenants = tenantsReadWhole(caller);
  absl::StatusOr<std::vector<v1::Approval>> rows = std::vector<v1::Approval>{};
  if (!tenants.empty() || readsEveryTenant(caller)) {
    rows = store_.listApprovals(!all, limit, tenants);
  }
  absl::Status status = rows.ok() ? absl::OkStatus() : rows.status();
  if (auto s = recordCall(store_, clock_, auditActor(caller), action, all ? "all" : "pending", "",
                          status);
      !s.ok()) {
    return s;
  }
  std::vector<v1::Approval> out;
  size_t bytes = 0;
  for (v1::Approval& a : *rows) {
    bytes += a.ByteSizeLong() + 8;
    if (!out.empty() && bytes > kMaxResponseBytes) break;
    fillTypedFields(a);
    out.push_back(std::move(a));
  }
  return out;
}

absl::StatusOr<v1::Approval> SignalService::approve(const Caller& caller,
                                                    const std::string& approval_id,
                                                    const std::string& reason) {
  return decide(caller, approval_id, reason, true);
}

absl::StatusOr<v1::Approval> SignalService::reject(const Caller& caller,
                                                   const std::string& approval_id,
                                                   const std::string& reason) {
  return decide(caller, approval_id, reason, false);
}

absl::StatusOr<v1::Approval> SignalService::decide(const Caller& caller,
                                                   const std::string& approval_id,
                                                   const std::string& reason, bool approve) {
  const OperatorAction op = approve ? OperatorAction::kApprove : OperatorAction::kReject;
  const std::string action = auditAction(op);
  auto refuse = [&](const absl::Status& why) {
    return recordCall(store_, clock_, auditActor(caller), action, approval_id, reason, why);
  };
  if (absl::Status allowed = authorize(caller, op); !allowed.ok()) return refuse(allowed);
  if (approval_id.empty()) return refuse(absl::InvalidArgumentError("approval id: required"));
  if (reason.empty()) return refuse(absl::InvalidArgumentError("reason: required"));
  auto stored = store_.getApproval(approval_id);
  if (!stored.ok()) return refuse(stored.status());
  v1::Approval approval = *std::move(stored);
  fillTypedFields(approval);
  // Another tenant's approval reads exactly as an unknown one.
  const std::string tenant = tenantOrDefault(approval.tenant());
  if (!inCallTenants(caller, tenant)) {
    return refuse(absl::NotFoundError(fmt::format("no approval \"{}\"", approval_id)));
  }
  const FleetSnapshot fleet(hosts_);
  if (absl::Status covers = approverCovers(caller, tenant, approval, fleet.of(tenant));
      !covers.ok()) {
    return refuse(covers);
  }
  const int64_t now_ms = clock_.nowUnixMs();
  if (approval.state() != v1::APPROVAL_STATE_PENDING) {
    const bool expired = approval.state() == v1::APPROVAL_STATE_EXPIRED;
    return refuse(absl::FailedPreconditionError(
        fmt::format("approval {} is already {}{}", approval_id, approvalStateText(approval.state()),
                    expired ? " (rejected): nothing done" : " by " + approval.decided_by())));
  }
  if (now_ms >= approval.expires_unix_ms()) {
    return refuse(absl::FailedPreconditionError(
        fmt::format("approval {} has expired (rejected): nothing done", approval_id)));
  }
  // Four eyes: a person who asked for the action does not also approve it. (Withdrawing one's
  // own request by rejecting it is allowed.)
  if (approve && approval.requested_by() == "operator:" + caller.audit_name) {
    return refuse(absl::PermissionDeniedError(
        fmt::format("operator \"{}\" requested this action (signal {}): another responder must "
                    "approve it",
                    caller.audit_name, approval.signal_id())));
  }

  // Approving plans the signal again under the playbooks and guardrails in force: the action
  // runs only if they still plan it exactly so and no guardrail now stops it.
  std::optional<PlannedAction> planned;
  if (approve) {
    auto signal = store_.getSignal(approval.signal_id());
    if (!signal.ok()) return refuse(signal.status());
    Decision again;
    {
      std::lock_guard lock(mu_);
      if (const PlaybookEngine* engine = engineFor(tenant)) {
        again = engine->preview(signal->record.signal(), approval.reporting_host(),
                                fleet.of(tenant), std::chrono::steady_clock::now());
      }
    }
    for (const PlannedAction& a : again.actions) {
      if (a.playbook == approval.playbook() &&
          actionKindName(a.kind) == approval.action().action() &&
          a.target() == approval.action().target() && a.detail() == approval.action().detail()) {
        planned = a;
        break;
      }
    }
    if (!planned) {
      return refuse(absl::FailedPreconditionError(fmt::format(
          "the playbooks in force no longer plan {} {} for signal {}: not started (still "
          "pending)",
          approval.action().action(), approval.action().target(), approval.signal_id())));
    }
    if (planned->verdict != Verdict::kStart && planned->verdict != Verdict::kNeedsApproval) {
      return refuse(absl::FailedPreconditionError(fmt::format(
          "a guardrail now stops {} {}: {}{}: not started (still pending)",
          approval.action().action(), approval.action().target(), verdictName(planned->verdict),
          planned->why.empty() ? "" : " " + planned->why)));
    }
  }
  // The action's incident: the approver's (--incident), else its playbook's, opened if need be.
  Caller acting = caller;
  if (approve && acting.incident.empty()) {
    std::optional<PlaybookIncident> config;
    {
      std::lock_guard lock(mu_);
      const PlaybookEngine* engine = engineFor(tenant);
      const Playbook* playbook = engine ? engine->playbooks().find(approval.playbook()) : nullptr;
      if (playbook != nullptr && playbook->incident.any()) config = playbook->incident;
    }
    std::string why;
    if (config) {
      acting.incident =
          incidentFor(tenant, approval.playbook(), *config, approval.signal_id(), now_ms, why);
    }
    if (acting.incident.empty() && !caller.incident_required_by.empty()) {
      return refuse(absl::FailedPreconditionError(fmt::format(
          "--incident: required in tenant {} (its guardrails say require_incident){}: approve "
          "with --incident ID: not started (still pending)",
          caller.incident_required_by, why.empty() ? "" : "; " + why)));
    }
  }

  v1::Approval decided = approval;
  decided.set_state(approve ? v1::APPROVAL_STATE_APPROVED : v1::APPROVAL_STATE_REJECTED);
  decided.set_decided_by(caller.audit_name);
  decided.set_decided_unix_ms(now_ms);
  decided.set_reason(reason);
  decided.set_outcome(approve ? "started" : "not run");
  decided.set_outcome_state(approve ? v1::SIGNAL_ACTION_STATE_STARTED
                                    : v1::SIGNAL_ACTION_STATE_NOT_RUN);
  AuditEntry row{.at_unix_ms = now_ms,
                 .operator_name = caller.audit_name,
                 .action = action,
                 .target = escapeNonPrintable(approval_id),
                 .reason = escapeNonPrintable(reason),
                 .outcome = "ok",
                 .detail = escapeNonPrintable(describeApproval(approval)),
                 .tenant = tenant,
                 .incident = acting.incident};
  if (absl::Status s = store_.decideApproval(decided, row); !s.ok()) {
    // Lost the race (FAILED_PRECONDITION naming the winner) or the commit failed: nothing
    // changed, nothing started.
    return refuse(s);
  }
  const std::string verdict = fmt::format("{} by {} ({})", approve ? "approved" : "rejected",
                                          caller.audit_name, approval_id);
  if (!approve) {
    setSignalOutcome(approval.signal_id(), approval.action_index(), v1::SIGNAL_ACTION_STATE_NOT_RUN,
                     verdict + ": not run");
    return decided;
  }
  setSignalOutcome(approval.signal_id(), approval.action_index(), v1::SIGNAL_ACTION_STATE_STARTED,
                   verdict + ": started");
  // The action runs as the approver, not as the playbook: the person who let it through is the
  // one its own audit rows (isolate, block, ...) name, and the reason ties them to the approval,
  // the signal and the approver's own words, so an auditor reads the whole chain from one row.
  const std::string action_reason =
      fmt::format("approval {} of signal {} (playbook {}): {}", approval_id, approval.signal_id(),
                  approval.playbook(), reason);
  actuator_.start(acting, *planned, action_reason,
                  [this, approval_id](const absl::Status& status, const std::string& summary) {
                    worker_.post([this, approval_id, status, summary] {
                      approvedActionEnded(approval_id, status, summary);
                    });
                  });
  return decided;
}

void SignalService::approvedActionEnded(const std::string& approval_id, const absl::Status& status,
                                        const std::string& summary) {
  auto stored = store_.getApproval(approval_id);
  if (!stored.ok()) {
    spdlog::warn("approval {}: outcome not recorded: {}", approval_id, stored.status());
    return;
  }
  v1::Approval approval = *std::move(stored);
  const std::string outcome = status.ok() ? "done" + (summary.empty() ? "" : ": " + summary)
                                          : fmt::format("failed: {}", status);
  const v1::SignalActionState state =
      status.ok() ? v1::SIGNAL_ACTION_STATE_DONE : v1::SIGNAL_ACTION_STATE_FAILED;
  approval.set_outcome(outcome);
  approval.set_outcome_state(state);
  if (auto s = store_.updateApproval(approval); !s.ok()) {
    spdlog::warn("approval {}: outcome not recorded: {}", approval_id, s);
  }
  setSignalOutcome(
      approval.signal_id(), approval.action_index(), state,
      fmt::format("approved by {} ({}): {}", approval.decided_by(), approval_id, outcome));
}

void SignalService::setSignalOutcome(const std::string& signal_id, uint32_t index,
                                     v1::SignalActionState state, const std::string& outcome) {
  worker_.post([this, signal_id, index, state, outcome] {
    auto write = [&](v1::SignalRecord& record) {
      if (index < static_cast<uint32_t>(record.actions_size())) {
        v1::SignalAction& action = *record.mutable_actions(static_cast<int>(index));
        action.set_outcome(outcome);
        action.set_state(state);
      }
    };
    // A record in flight (other actions of the signal still running) is rewritten whole as
    // each ends: update that copy too, or it would put the old outcome back.
    if (auto it = in_flight_.find(signal_id); it != in_flight_.end()) {
      write(it->second.row.record);
    }
    auto row = store_.getSignal(signal_id);
    if (!row.ok()) {
      spdlog::warn("signal {}: action outcome not recorded: {}", signal_id, row.status());
      return;
    }
    write(row->record);
    if (auto s = store_.updateSignal(*row); !s.ok()) {
      spdlog::warn("signal {}: action outcome not recorded: {}", signal_id, s);
    }
  });
}

size_t SignalService::expireApprovals() {
  const int64_t now_ms = clock_.nowUnixMs();
  auto due = store_.listExpiredApprovals(now_ms, kMaxExpiriesPerPass);
  if (!due.ok()) {
    spdlog::warn("approvals: expiry check failed (retried): {}", due.status());
    return 0;
  }
  size_t expired = 0;
  for (const v1::Approval& approval : *due) {
    v1::Approval decided = approval;
    decided.set_state(v1::APPROVAL_STATE_EXPIRED);
    decided.set_decided_by("controller");
    decided.set_decided_unix_ms(now_ms);
    decided.set_reason("nobody decided before it expired: rejected");
    decided.set_outcome("not run");
    decided.set_outcome_state(v1::SIGNAL_ACTION_STATE_NOT_RUN);
    AuditEntry row{.at_unix_ms = now_ms,
                   .operator_name = "controller",
                   .action = kApprovalExpiredAuditAction,
                   .target = escapeNonPrintable(approval.approval_id()),
                   .reason = approval.signal_id(),
                   .outcome = "ok",
                   .detail = escapeNonPrintable("rejected, not run: " + describeApproval(approval)),
                   .tenant = tenantOrDefault(approval.tenant())};
    // FAILED_PRECONDITION: a responder decided it meanwhile, which stands.
    if (absl::Status s = store_.decideApproval(decided, row); !s.ok()) {
      if (!absl::IsFailedPrecondition(s)) {
        spdlog::warn("approval {}: expiry not recorded (retried): {}", approval.approval_id(), s);
      }
      continue;
    }
    ++expired;
    spdlog::info("approval {} expired: {} not run", approval.approval_id(),
                 describeApproval(approval));
    setSignalOutcome(approval.signal_id(), approval.action_index(), v1::SIGNAL_ACTION_STATE_NOT_RUN,
                     fmt::format("expired ({}): rejected, not run", approval.approval_id()));
  }
  return expired;
}

}  // namespace bulkhead::controller
