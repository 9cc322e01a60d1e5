#include "controller/service/signals.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "common/format.h"
#include "common/text.h"
#include "controller/service/audit.h"

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;

// The fleet as the engine sees it: the host directory's snapshot.
class DirectoryFleet final : public FleetView {
 public:
  explicit DirectoryFleet(HostDirectory& hosts) {
    for (const v1::HostSummary& h : hosts.listHosts({})) {
      FleetHost host;
      host.id = h.host_id();
      host.labels = Labels(h.labels().begin(), h.labels().end());
      host.addresses.assign(h.addresses().begin(), h.addresses().end());
      by_name_.emplace(h.hostname(), host.id);
      hosts_.push_back(std::move(host));
    }
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

std::string readFile(const std::filesystem::path& path, absl::Status& error) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in.good() && !in.eof()) {
    error = absl::InvalidArgumentError(fmt::format("{}: cannot read", path.string()));
  }
  return text.str();
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

v1::SignalAction toRecord(const PlannedAction& a) {
  v1::SignalAction out;
  out.set_playbook(a.playbook);
  out.set_action(std::string(actionKindName(a.kind)));
  out.set_target(a.target());
  out.set_detail(a.detail());
  std::string outcome(verdictName(a.verdict));
  if (!a.why.empty()) outcome += ": " + a.why;
  out.set_outcome(outcome);
  return out;
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
      engine_(PlaybookSet{}, AutomationGuardrails{.blocks = options_.blocks}),
      worker_("bh-signals") {}

SignalService::~SignalService() { shutdown(); }

void SignalService::shutdown() { worker_.stop(); }

absl::Status SignalService::reload() {
  if (options_.policy_dir.empty()) return absl::OkStatus();
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(options_.policy_dir) / "playbooks";
  PlaybookSet playbooks;
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    auto loaded = loadPlaybookDir(dir.string());
    if (!loaded.ok()) return loaded.status();
    playbooks = *std::move(loaded);
  }
  AutomationGuardrails guardrails{.blocks = options_.blocks};
  const fs::path file = fs::path(options_.policy_dir) / "guardrails" / "automation.yaml";
  if (fs::exists(file, ec)) {
    absl::Status read_error;
    std::string text = readFile(file, read_error);
    if (!read_error.ok()) return read_error;
    auto parsed = parseAutomationGuardrails("guardrails/automation.yaml", text, guardrails);
    if (!parsed.ok()) return parsed.status();
    guardrails = *std::move(parsed);
  }
  std::lock_guard lock(mu_);
  engine_.replace(std::move(playbooks), std::move(guardrails));
  return absl::OkStatus();
}

size_t SignalService::playbookCount() const {
  std::lock_guard lock(mu_);
  return engine_.playbooks().playbooks.size();
}

void SignalService::submitAsOperator(const Caller& caller, v1::Signal signal, SignalDone done) {
  if (absl::Status allowed = authorize(caller, OperatorAction::kSubmitSignal); !allowed.ok()) {
    done(recordCall(store_, clock_, caller.audit_name, auditAction(OperatorAction::kSubmitSignal),
                    describe(signal), "", allowed));
    return;
  }
  submit(SignalDelivery{.delivered_by = "operator:" + caller.audit_name}, std::move(signal),
         std::move(done));
}

void SignalService::submit(SignalDelivery from, v1::Signal signal, SignalDone done) {
  if (!from.reporting_host.empty()) signal.set_host(from.reporting_host);
  if (absl::Status valid = validateSignal(signal); !valid.ok()) {
    done(recordCall(store_, clock_, from.delivered_by, auditAction(OperatorAction::kSubmitSignal),
                    describe(signal), "", valid));
    return;
  }
  auto shared = std::make_shared<SignalDone>(std::move(done));
  // Runs on the worker: `process` and `actionEnded` are the only users of in_flight_.
  const bool posted = worker_.post([this, from = std::move(from), signal = std::move(signal),
                                    shared]() mutable { process(from, signal, *shared); });
  if (!posted) (*shared)(absl::UnavailableError("the controller is shutting down: not recorded"));
}

void SignalService::process(const SignalDelivery& from, const v1::Signal& signal,
                            SignalDone& done) {
  const int64_t now_ms = clock_.nowUnixMs();
  std::string key =
      signal.idempotency_key().empty() ? derivedIdempotencyKey(signal) : signal.idempotency_key();
  key = fmt::format("{}/{}/{}", signalSourceName(signal.source()), signal.integration(), key);

  // A duplicate is answered before the engine sees it: it counts against no rate cap.
  const int64_t dedupe_since = now_ms - options_.dedupe_window.count();
  auto earlier = store_.findSignal(key, dedupe_since);
  if (earlier.ok() && earlier->has_value()) {
    const std::string& first_id = (*earlier)->record.signal_id();
    (void)recordCall(store_, clock_, from.delivered_by, auditAction(OperatorAction::kSubmitSignal),
                     describe(signal), first_id, absl::OkStatus(),
                     "duplicate: idempotency key seen before, nothing done");
    done(SignalOutcome{.signal_id = first_id, .disposition = v1::SIGNAL_DISPOSITION_DUPLICATE});
    return;
  }

  DirectoryFleet fleet(hosts_);
  Decision decision;
  std::string signal_id;
  std::optional<PlaybookEngine::Rates> rates_before;  // put back if the signal is not recorded
  {
    std::lock_guard lock(mu_);
    rates_before = engine_.rates();
    decision = engine_.decide(signal, from.reporting_host, fleet, std::chrono::steady_clock::now());
    signal_id = fmt::format("sig-{}-{}", now_ms, ++sequence_);
  }
  auto giveBackRates = [&] {
    std::lock_guard lock(mu_);
    engine_.restoreRates(*std::move(rates_before));
  };

  SignalRow row;
  row.idempotency_key = key;
  v1::SignalRecord& record = row.record;
  record.set_signal_id(signal_id);
  record.set_received_unix_ms(now_ms);
  record.set_delivered_by(from.delivered_by);
  *record.mutable_signal() = signal;
  record.set_disposition(decision.disposition);
  for (const PlannedAction& a : decision.actions) *record.add_actions() = toRecord(a);

  const std::string target = describe(signal);
  std::vector<AuditEntry> rows;
  std::string summary;
  for (const PlannedAction& a : decision.actions) {
    summary += fmt::format("{}{} {} {}: {}", summary.empty() ? "" : "; ", a.playbook,
                           actionKindName(a.kind), a.target(), verdictName(a.verdict));
  }
  AuditEntry signal_row{.at_unix_ms = now_ms,
                        .operator_name = from.delivered_by,
                        .action = auditAction(OperatorAction::kSubmitSignal),
                        .target = escapeNonPrintable(target),
                        .reason = signal_id,
                        .outcome = std::string(dispositionText(decision.disposition)),
                        .detail = escapeNonPrintable(summary)};
  auto recorded = store_.addSignal(row, dedupe_since, signal_row);
  if (!recorded.ok()) {
    giveBackRates();
    spdlog::error("signal {} from {} not recorded: {}", target, from.delivered_by,
                  recorded.status());
    done(absl::UnavailableError(
        fmt::format("the signal could not be recorded, nothing done: {}", recorded.status())));
    return;
  }
  if (recorded->has_value()) {  // another controller recorded the same key meanwhile
    giveBackRates();
    done(SignalOutcome{.signal_id = (*recorded)->record.signal_id(),
                       .disposition = v1::SIGNAL_DISPOSITION_DUPLICATE});
    return;
  }
  // One row per action that did not start (suppressed, simulated, waiting), and one when a
  // rate cap starts suppressing: each names the playbook and the signal.
  for (const PlannedAction& a : decision.actions) {
    if (a.verdict == Verdict::kStart) continue;
    (void)recordCall(store_, clock_, "playbook:" + a.playbook, kSignalActionAuditAction,
                     a.target().empty() ? target : a.target(), signal_id, absl::OkStatus(),
                     fmt::format("{} {}: {}{}", actionKindName(a.kind), a.detail(),
                                 verdictName(a.verdict), a.why.empty() ? "" : " (" + a.why + ")"));
  }
  if (decision.rate_cap_reached) {
    spdlog::warn("signals: a rate cap started suppressing automatic actions (signal {})",
                 signal_id);
    (void)recordCall(store_, clock_, "controller", kSignalRateCapAuditAction, target, signal_id,
                     absl::OkStatus(), "automatic actions suppressed from here on");
  }

  SignalOutcome outcome{.signal_id = signal_id,
                        .disposition = decision.disposition,
                        .actions = {record.actions().begin(), record.actions().end()}};

  // The actions start before the answer goes out: enforcement never waits on the caller, and
  // a caller that has its answer knows the actions were handed to the fleet.
  for (size_t i = 0; i < decision.actions.size(); ++i) {
    const PlannedAction& a = decision.actions[i];
    if (a.verdict != Verdict::kStart) continue;
    InFlight& flight = in_flight_[signal_id];
    flight.row = row;
    ++flight.running;
    Caller caller{
        .audit_name = "playbook:" + a.playbook, .is_operator = true, .role = Role::kResponder};
    const std::string reason = fmt::format("signal {}: {}", signal_id, target);
    actuator_.start(caller, a, reason,
                    [this, signal_id, i](const absl::Status& status, const std::string& result) {
                      worker_.post([this, signal_id, i, status, result] {
                        actionEnded(signal_id, i, status, result);
                      });
                    });
  }
  done(std::move(outcome));
}

void SignalService::actionEnded(const std::string& signal_id, size_t index,
                                const absl::Status& status, const std::string& summary) {
  auto it = in_flight_.find(signal_id);
  if (it == in_flight_.end()) return;
  InFlight& flight = it->second;
  v1::SignalRecord& record = flight.row.record;
  if (index < static_cast<size_t>(record.actions_size())) {
    record.mutable_actions(static_cast<int>(index))
        ->set_outcome(status.ok() ? "done" + (summary.empty() ? "" : ": " + summary)
                                  : fmt::format("failed: {}", status));
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
    return recordCall(store_, clock_, caller.audit_name, auditAction(OperatorAction::kListSignals),
                      "", "", allowed);
  }
  if (limit == 0) limit = kDefaultListLimit;
  limit = std::min(limit, kMaxListLimit);
  auto rows = store_.listSignals(since_unix_ms, limit);
  absl::Status status = rows.ok() ? absl::OkStatus() : rows.status();
  if (auto s = recordCall(store_, clock_, caller.audit_name,
                          auditAction(OperatorAction::kListSignals), "", "", status);
      !s.ok()) {
    return s;
  }
  std::vector<v1::SignalRecord> out;
  size_t bytes = 0;
  for (SignalRow& row : *rows) {
    bytes += row.record.ByteSizeLong() + 8;
    if (!out.empty() && bytes > kMaxResponseBytes) break;  // the rest: ask with an earlier since
    out.push_back(std::move(row.record));
  }
  return out;
}

absl::StatusOr<SignalOutcome> SignalService::preview(const Caller& caller, v1::Signal signal,
                                                     const std::string& reporting_host) {
  if (!reporting_host.empty()) signal.set_host(reporting_host);
  absl::Status allowed = authorize(caller, OperatorAction::kPreviewSignal);
  if (allowed.ok()) allowed = validateSignal(signal);
  if (!allowed.ok()) {
    return recordCall(store_, clock_, caller.audit_name,
                      auditAction(OperatorAction::kPreviewSignal), describe(signal), "", allowed);
  }
  DirectoryFleet fleet(hosts_);
  Decision decision;
  {
    std::lock_guard lock(mu_);
    decision = engine_.preview(signal, reporting_host, fleet, std::chrono::steady_clock::now());
  }
  if (auto s = recordCall(store_, clock_, caller.audit_name,
                          auditAction(OperatorAction::kPreviewSignal), describe(signal), "",
                          absl::OkStatus(), std::string(dispositionText(decision.disposition)));
      !s.ok()) {
    return s;
  }
  SignalOutcome out{.disposition = decision.disposition};
  for (const PlannedAction& a : decision.actions) out.actions.push_back(toRecord(a));
  return out;
}

}  // namespace bulkhead::controller
