#include "controller/playbook/engine.h"

#include <re2/re2.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>

#include "absl/status/status.h"
#include "common/format.h"
#include "common/yaml_doc.h"
#include "evidence/hash.h"

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;
using std::chrono::milliseconds;

constexpr int kMaxAddresses = 64;
constexpr size_t kMaxRuleBytes = 256;
constexpr int kMaxLabels = 64;
constexpr size_t kMaxLabelBytes = 1024;
constexpr auto kWindow = std::chrono::minutes(1);

bool actsOnAddresses(ActionKind kind) {
  return kind == ActionKind::kBlock || kind == ActionKind::kKillConnections ||
         kind == ActionKind::kKillSessions || kind == ActionKind::kStopCaptureKill;
}

// Actions that disturb the hosts they touch: the blast radius and protected hosts apply.
bool disturbsHosts(ActionKind kind) {
  return kind == ActionKind::kKillSessions || kind == ActionKind::kStopCaptureKill ||
         kind == ActionKind::kCapture || kind == ActionKind::kIsolate ||
         kind == ActionKind::kCaptureThenIsolate;
}

bool isolates(ActionKind kind) {
  return kind == ActionKind::kIsolate || kind == ActionKind::kCaptureThenIsolate;
}

std::string selectorText(const Labels& labels) {
  std::string out;
  for (const auto& [k, v] : labels) {
    if (!out.empty()) out += ',';
    out.append(k).append("=").append(v);
  }
  return out;
}

// The selector among `selectors` that `labels` match, if any.
const Labels* matchingSelector(const std::vector<Labels>& selectors, const Labels& labels) {
  for (const Labels& s : selectors) {
    if (selectorMatches(s, labels)) return &s;
  }
  return nullptr;
}

bool matches(const PlaybookMatch& match, const v1::Signal& signal,
             const std::optional<FleetHost>& reporting, const std::optional<FleetHost>& affected) {
  if (!match.sources.empty() && match.sources.count(signal.source()) == 0) return false;
  if (!match.integration.empty() && match.integration != signal.integration()) return false;
  if (match.rule && !RE2::PartialMatch(signal.rule(), *match.rule)) return false;
  v1::Severity severity =
      signal.severity() == v1::SEVERITY_UNSPECIFIED ? v1::SEVERITY_MEDIUM : signal.severity();
  if (severity < match.min_severity) return false;
  if (match.reporting_host &&
      (!reporting || !selectorMatches(*match.reporting_host, reporting->labels))) {
    return false;
  }
  if (match.affected_host &&
      (!affected || !selectorMatches(*match.affected_host, affected->labels))) {
    return false;
  }
  return true;
}

// Why blocking `cidr` is not allowed for automation, or empty: loopback, a controller address,
// a protected CIDR, a prefix wider than the confirm limit (automation never confirms), or an
// address of a protected host.
std::string protectedAddress(const Cidr& cidr, const AutomationGuardrails& guardrails,
                             const std::vector<FleetHost>& fleet) {
  BlockMatch match;
  match.cidr = cidr;
  if (absl::Status s = checkBlockGuardrails(match, guardrails.blocks, /*yes=*/false); !s.ok()) {
    return std::string(s.message());
  }
  for (const FleetHost& host : fleet) {
    const Labels* selector = matchingSelector(guardrails.protected_hosts, host.labels);
    if (selector == nullptr) continue;
    for (const std::string& address : host.addresses) {
      auto host_cidr = parseCidr("address", address);
      if (host_cidr.ok() && cidr.contains(*host_cidr)) {
        return fmt::format("{} holds {}, an address of protected host {} ({})", cidr.toString(),
                           address, host.id, selectorText(*selector));
      }
    }
  }
  return {};
}

}  // namespace

std::string_view verdictName(Verdict verdict) {
  switch (verdict) {
    case Verdict::kStart: return "started";
    case Verdict::kSimulated: return "simulated";
    case Verdict::kSuppressed: return "suppressed";
    case Verdict::kNeedsApproval: return "awaiting approval";
    case Verdict::kSkipped: return "skipped";
  }
  return "unknown";
}

std::string PlannedAction::target() const {
  if (fleet_wide) return "all";
  std::string out;
  for (const std::string& h : hosts) {
    if (!out.empty()) out += ',';
    out += h;
  }
  return out;
}

std::string PlannedAction::detail() const {
  std::string out;
  for (const Cidr& c : addresses) {
    if (!out.empty()) out += ' ';
    out += c.toString();
  }
  if (!exempt_sets.empty()) {
    if (!out.empty()) out += ' ';
    out += "exempt ";
    for (size_t i = 0; i < exempt_sets.size(); ++i) out += (i == 0 ? "" : ",") + exempt_sets[i];
  }
  if (ttl.count() > 0) {
    if (!out.empty()) out += ' ';
    out += fmt::format("for {} s", (ttl.count() + 999) / 1000);
  }
  return out;
}

absl::Status validateSignal(const v1::Signal& signal) {
  if (signal.source() == v1::SIGNAL_SOURCE_UNSPECIFIED ||
      signalSourceName(signal.source()) == "unspecified") {
    return absl::InvalidArgumentError(
        "source: required: fail2ban, crowdsec, alertmanager, falco, wazuh, sshguard, webhook "
        "or cli");
  }
  if (signal.source() == v1::SIGNAL_SOURCE_WEBHOOK && signal.integration().empty()) {
    return absl::InvalidArgumentError("integration: required for a webhook signal");
  }
  if (signal.rule().size() > kMaxRuleBytes) {
    return absl::InvalidArgumentError(
        fmt::format("rule: {} bytes, at most {}", signal.rule().size(), kMaxRuleBytes));
  }
  if (signal.addresses_size() > kMaxAddresses) {
    return absl::InvalidArgumentError(
        fmt::format("addresses: {} given, at most {}", signal.addresses_size(), kMaxAddresses));
  }
  for (const std::string& a : signal.addresses()) {
    if (auto c = parseCidr("address", a); !c.ok()) return c.status();
  }
  if (signal.labels_size() > kMaxLabels) {
    return absl::InvalidArgumentError(
        fmt::format("labels: {} given, at most {}", signal.labels_size(), kMaxLabels));
  }
  for (const auto& [k, v] : signal.labels()) {
    if (k.size() + v.size() > kMaxLabelBytes) {
      return absl::InvalidArgumentError(
          fmt::format("labels: \"{}\" is longer than {} bytes", k.substr(0, 64), kMaxLabelBytes));
    }
  }
  if (signal.host().size() > 253) {
    return absl::InvalidArgumentError("host: longer than 253 bytes");
  }
  if (signal.idempotency_key().size() > 256) {
    return absl::InvalidArgumentError("idempotency_key: longer than 256 bytes");
  }
  return absl::OkStatus();
}

std::string derivedIdempotencyKey(const v1::Signal& signal) {
  std::vector<std::string> addresses;
  for (const std::string& a : signal.addresses()) {
    auto c = parseCidr("address", a);
    addresses.push_back(c.ok() ? c->toString() : a);
  }
  std::sort(addresses.begin(), addresses.end());
  std::string canonical =
      fmt::format("{}\n{}\n{}\n{}\n{}\n", signalSourceName(signal.source()), signal.integration(),
                  signal.rule(), signal.host(), signal.resolved() ? "resolved" : "firing");
  for (const std::string& a : addresses) canonical += a + "\n";
  return "derived:" + evidence::sha256Hex(canonical);
}

absl::StatusOr<AutomationGuardrails> parseAutomationGuardrails(std::string_view file_name,
                                                               std::string_view yaml,
                                                               AutomationGuardrails defaults) {
  YamlErrors errors(file_name);
  std::optional<YAML::Node> doc = loadOneMapping(
      yaml, "guardrail file",
      "a mapping with protected_hosts, rate_per_minute, blast_radius, approval_for_isolate, "
      "require_incident",
      errors);
  if (!doc) return errors.status();
  AutomationGuardrails out = std::move(defaults);
  auto selectors = [&](const YAML::Node& value, int vline, const std::string& key,
                       std::vector<Labels>& into) {
    if (!value.IsSequence()) {
      return errors.add(vline, key,
                        fmt::format("expected a list of selectors, found {}", kindOf(value)));
    }
    into.clear();
    for (const YAML::Node& item : value) {
      int line = lineOf(item, vline);
      auto text = scalarOf(item, line, key, "a selector k=v[,k=v]", errors);
      if (!text) continue;
      auto selector = parseSelector(key, *text);
      if (!selector.ok()) {
        errors.add(line, selector.status());
      } else {
        into.push_back(*selector);
      }
    }
  };
  auto count = [&](const YAML::Node& value, int vline, const std::string& key, uint32_t& into) {
    auto text = scalarOf(value, vline, key, "a number", errors);
    if (!text) return;
    auto n = parseCount(key, *text);
    if (!n.ok()) return errors.add(vline, n.status());
    into = *n;
  };
  forEachEntry(*doc, 1, errors, [&](const std::string& key, const YAML::Node& value, int key_line) {
    int vline = lineOf(value, key_line);
    if (key == "protected_hosts") {
      selectors(value, vline, key, out.protected_hosts);
    } else if (key == "approval_for_isolate") {
      selectors(value, vline, key, out.approval_for_isolate);
    } else if (key == "rate_per_minute") {
      count(value, vline, key, out.rate_per_minute);
    } else if (key == "blast_radius") {
      count(value, vline, key, out.blast_radius);
    } else if (key == "require_incident") {
      if (auto flag = boolOf(value, vline, key, errors)) out.require_incident = *flag;
    } else {
      errors.add(key_line, key,
                 "unknown field (expected protected_hosts, rate_per_minute, blast_radius, "
                 "approval_for_isolate, require_incident)");
    }
  });
  if (!errors.empty()) return errors.status();
  return out;
}

PlaybookEngine::PlaybookEngine(PlaybookSet playbooks, AutomationGuardrails guardrails)
    : playbooks_(std::move(playbooks)), guardrails_(std::move(guardrails)) {}

void PlaybookEngine::replace(PlaybookSet playbooks, AutomationGuardrails guardrails) {
  playbooks_ = std::move(playbooks);
  guardrails_ = std::move(guardrails);
}

Decision PlaybookEngine::decide(const v1::Signal& signal, const std::string& reporting_host,
                                const FleetView& fleet, std::chrono::steady_clock::time_point now) {
  return evaluate(signal, reporting_host, fleet, now, /*count=*/true);
}

Decision PlaybookEngine::preview(const v1::Signal& signal, const std::string& reporting_host,
                                 const FleetView& fleet,
                                 std::chrono::steady_clock::time_point now) const {
  PlaybookEngine copy = *this;  // the windows as they are; nothing counted in this one
  return copy.evaluate(signal, reporting_host, fleet, now, /*count=*/false);
}

PlaybookEngine::Rates PlaybookEngine::rates() const { return Rates{global_, per_playbook_}; }

void PlaybookEngine::restoreRates(Rates rates) {
  global_ = std::move(rates.global);
  per_playbook_ = std::move(rates.per_playbook);
}

bool PlaybookEngine::admit(Window& window, uint32_t limit,
                           std::chrono::steady_clock::time_point now, bool count) {
  while (!window.starts.empty() && now - window.starts.front() >= kWindow) {
    window.starts.pop_front();
  }
  if (window.starts.size() >= limit) return false;
  if (count) window.starts.push_back(now);
  return true;
}

Decision PlaybookEngine::evaluate(const v1::Signal& signal, const std::string& reporting_host,
                                  const FleetView& fleet, std::chrono::steady_clock::time_point now,
                                  bool count) {
  Decision decision;
  std::optional<FleetHost> reporting;
  if (!reporting_host.empty()) reporting = fleet.host(reporting_host);
  std::optional<FleetHost> affected;
  if (!signal.host().empty()) affected = fleet.host(signal.host());
  std::vector<Cidr> addresses;
  for (const std::string& a : signal.addresses()) {
    if (auto c = parseCidr("address", a); c.ok()) addresses.push_back(*c);
  }
  const std::vector<FleetHost> all = fleet.hosts();

  for (const Playbook& playbook : playbooks_.playbooks) {
    if (!matches(playbook.match, signal, reporting, affected)) continue;
    decision.matched.push_back(playbook.name);
    for (const PlaybookAction& action : playbook.actions) {
      PlannedAction planned;
      planned.playbook = playbook.name;
      planned.kind = action.kind;
      planned.exempt_sets = action.exempt_sets;
      if (signal.resolved()) {
        // The end of the detection: undo what the playbook says, nothing else.
        if (action.kind == ActionKind::kBlock && playbook.unblock_on_resolve) {
          planned.kind = ActionKind::kUnblock;
        } else if (isolates(action.kind) && playbook.release_on_resolve) {
          planned.kind = ActionKind::kRelease;
          planned.exempt_sets.clear();
        } else {
          continue;
        }
      } else if (action.kind == ActionKind::kBlock || isolates(action.kind)) {
        planned.ttl = action.ttl ? *action.ttl
                      : signal.ttl_seconds() > 0
                          ? milliseconds(int64_t{signal.ttl_seconds()} * 1000)
                          : playbook.default_ttl;
      }
      if (actsOnAddresses(action.kind)) planned.addresses = addresses;

      // Targets.
      std::vector<const FleetHost*> targets;
      switch (action.scope) {
        case Scope::kFleet:
          planned.fleet_wide = true;
          for (const FleetHost& h : all) targets.push_back(&h);
          break;
        case Scope::kReportingHost:
          if (!reporting) {
            planned.verdict = Verdict::kSkipped;
            planned.why = reporting_host.empty()
                              ? "no reporting host: the signal did not come from an agent"
                              : fmt::format("reporting host {} is not known", reporting_host);
          } else {
            targets.push_back(&*reporting);
          }
          break;
        case Scope::kAffectedHost:
          if (!affected) {
            planned.verdict = Verdict::kSkipped;
            planned.why = signal.host().empty()
                              ? "the signal names no affected host"
                              : fmt::format("affected host \"{}\" is not known", signal.host());
          } else {
            targets.push_back(&*affected);
          }
          break;
        case Scope::kSelector:
          for (const FleetHost& h : all) {
            if (selectorMatches(action.selector, h.labels)) targets.push_back(&h);
          }
          if (targets.empty()) {
            planned.verdict = Verdict::kSkipped;
            planned.why = fmt::format("no host matches selector {}", selectorText(action.selector));
          }
          break;
      }
      for (const FleetHost* h : targets) planned.hosts.push_back(h->id);
      if (planned.verdict == Verdict::kStart && actsOnAddresses(action.kind) && addresses.empty()) {
        planned.verdict = Verdict::kSkipped;
        planned.why = "the signal carries no address";
      }
      const bool undo =
          planned.kind == ActionKind::kUnblock || planned.kind == ActionKind::kRelease;

      // Guardrails: protected addresses and hosts.
      if (planned.verdict == Verdict::kStart && !undo && actsOnAddresses(action.kind)) {
        for (const Cidr& c : addresses) {
          if (std::string why = protectedAddress(c, guardrails_, all); !why.empty()) {
            planned.verdict = Verdict::kSuppressed;
            planned.why = "protected address: " + why;
            break;
          }
        }
      }
      if (planned.verdict == Verdict::kStart && !undo && disturbsHosts(action.kind)) {
        std::vector<std::string> kept;
        std::string spared;
        for (const FleetHost* h : targets) {
          if (const Labels* s = matchingSelector(guardrails_.protected_hosts, h->labels)) {
            if (spared.empty()) spared = fmt::format("{} ({})", h->id, selectorText(*s));
          } else {
            kept.push_back(h->id);
          }
        }
        if (!spared.empty() && kept.empty()) {
          planned.verdict = Verdict::kSuppressed;
          planned.why = "protected host: " + spared;
        } else if (!spared.empty()) {
          planned.hosts = kept;
          planned.fleet_wide = false;
          planned.why = "left out protected host " + spared;
        }
      }
      // Approvals: blast radius, isolations of sensitive hosts.
      if (planned.verdict == Verdict::kStart && !undo && disturbsHosts(action.kind)) {
        if (planned.hosts.size() > guardrails_.blast_radius) {
          planned.verdict = Verdict::kNeedsApproval;
          planned.why = fmt::format("blast radius: touches {} hosts, more than {}",
                                    planned.hosts.size(), guardrails_.blast_radius);
        } else if (isolates(action.kind)) {
          for (const FleetHost* h : targets) {
            const Labels* s = matchingSelector(guardrails_.approval_for_isolate, h->labels);
            if (s != nullptr) {
              planned.verdict = Verdict::kNeedsApproval;
              planned.why =
                  fmt::format("isolating {} ({}) needs approval", h->id, selectorText(*s));
              break;
            }
          }
        }
      }
      // Simulation: what it would have done, recorded.
      if (playbook.simulate &&
          (planned.verdict == Verdict::kStart || planned.verdict == Verdict::kNeedsApproval)) {
        planned.why = planned.verdict == Verdict::kStart
                          ? "would start"
                          : "would wait for approval: " + planned.why;
        planned.verdict = Verdict::kSimulated;
      }
      // Rate caps (undoing is never capped).
      if (planned.verdict == Verdict::kStart && !undo) {
        Window& own = per_playbook_[playbook.name];
        const bool own_ok = playbook.rate_per_minute == 0 ||
                            admit(own, playbook.rate_per_minute, now, /*count=*/false);
        const bool global_ok = admit(global_, guardrails_.rate_per_minute, now, /*count=*/false);
        if (own_ok && global_ok) {
          if (playbook.rate_per_minute != 0) admit(own, playbook.rate_per_minute, now, count);
          admit(global_, guardrails_.rate_per_minute, now, count);
          if (count) own.suppressing = global_.suppressing = false;
        } else {
          Window& capped = own_ok ? global_ : own;
          planned.verdict = Verdict::kSuppressed;
          planned.why = own_ok ? fmt::format(
                                     "rate cap: {} automatic actions per minute, all "
                                     "playbooks",
                                     guardrails_.rate_per_minute)
                               : fmt::format("rate cap: {} actions per minute for playbook {}",
                                             playbook.rate_per_minute, playbook.name);
          if (!capped.suppressing) decision.rate_cap_reached = true;
          if (count) capped.suppressing = true;
        }
      }
      decision.actions.push_back(std::move(planned));
    }
  }

  auto any = [&](Verdict v) {
    return std::any_of(decision.actions.begin(), decision.actions.end(),
                       [v](const PlannedAction& a) { return a.verdict == v; });
  };
  if (decision.matched.empty()) {
    decision.disposition = v1::SIGNAL_DISPOSITION_NO_MATCH;
  } else if (any(Verdict::kStart)) {
    decision.disposition = v1::SIGNAL_DISPOSITION_ACTED;
  } else if (any(Verdict::kNeedsApproval)) {
    decision.disposition = v1::SIGNAL_DISPOSITION_AWAITING_APPROVAL;
  } else if (any(Verdict::kSimulated)) {
    decision.disposition = v1::SIGNAL_DISPOSITION_SIMULATED;
  } else if (any(Verdict::kSuppressed)) {
    decision.disposition = v1::SIGNAL_DISPOSITION_SUPPRESSED;
  } else {
    decision.disposition = v1::SIGNAL_DISPOSITION_NOTHING_TO_DO;
  }
  return decision;
}

}  // namespace bulkhead::controller
