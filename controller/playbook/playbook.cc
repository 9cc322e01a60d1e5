#include "controller/playbook/playbook.h"

#include <re2/re2.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <charconv>

#include "absl/status/status.h"
#include "common/format.h"
#include "common/identity.h"
#include "common/text.h"
#include "common/yaml_doc.h"
#include "controller/core/validate.h"

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;

constexpr std::array<std::pair<v1::SignalSource, std::string_view>, 8> kSources = {{
    {v1::SIGNAL_SOURCE_FAIL2BAN, "fail2ban"},
    {v1::SIGNAL_SOURCE_CROWDSEC, "crowdsec"},
    {v1::SIGNAL_SOURCE_ALERTMANAGER, "alertmanager"},
    {v1::SIGNAL_SOURCE_FALCO, "falco"},
    {v1::SIGNAL_SOURCE_WAZUH, "wazuh"},
    {v1::SIGNAL_SOURCE_SSHGUARD, "sshguard"},
    {v1::SIGNAL_SOURCE_WEBHOOK, "webhook"},
    {v1::SIGNAL_SOURCE_CLI, "cli"},
}};

constexpr std::array<std::pair<v1::Severity, std::string_view>, 5> kSeverities = {{
    {v1::SEVERITY_INFO, "info"},
    {v1::SEVERITY_LOW, "low"},
    {v1::SEVERITY_MEDIUM, "medium"},
    {v1::SEVERITY_HIGH, "high"},
    {v1::SEVERITY_CRITICAL, "critical"},
}};

// The kinds a playbook may name, in the order the error message lists them.
constexpr std::array<std::pair<ActionKind, std::string_view>, 7> kWritableActions = {{
    {ActionKind::kBlock, "block"},
    {ActionKind::kKillConnections, "kill-connections"},
    {ActionKind::kKillSessions, "kill-sessions"},
    {ActionKind::kCapture, "capture"},
    {ActionKind::kIsolate, "isolate"},
    {ActionKind::kCaptureThenIsolate, "capture-then-isolate"},
    {ActionKind::kStopCaptureKill, "stop-capture-kill"},
}};

constexpr std::array<std::pair<Scope, std::string_view>, 4> kScopes = {{
    {Scope::kFleet, "fleet"},
    {Scope::kReportingHost, "reporting-host"},
    {Scope::kAffectedHost, "affected-host"},
    {Scope::kSelector, "selector"},
}};

template <typename Table>
std::string namesOf(const Table& table) {
  std::string out;
  for (const auto& [value, name] : table) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

bool isPlaybookName(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

bool actsOnAddresses(ActionKind kind) {
  return kind == ActionKind::kBlock || kind == ActionKind::kKillConnections ||
         kind == ActionKind::kKillSessions || kind == ActionKind::kStopCaptureKill;
}
bool isolates(ActionKind kind) {
  return kind == ActionKind::kIsolate || kind == ActionKind::kCaptureThenIsolate;
}

// A scalar or a list of scalars.
std::vector<std::pair<std::string, int>> scalarsOf(const YAML::Node& node, int line,
                                                   std::string_view field, std::string_view what,
                                                   YamlErrors& errors) {
  std::vector<std::pair<std::string, int>> out;
  if (node.IsSequence()) {
    if (node.size() == 0) errors.add(line, field, "must not be an empty list");
    for (const YAML::Node& item : node) {
      int item_line = lineOf(item, line);
      if (auto text = scalarOf(item, item_line, field, what, errors)) {
        out.emplace_back(*text, item_line);
      }
    }
    return out;
  }
  if (auto text = scalarOf(node, line, field, what, errors)) out.emplace_back(*text, line);
  return out;
}

void parseMatch(const YAML::Node& node, int line, PlaybookMatch& match, YamlErrors& errors) {
  if (!node.IsMap()) {
    return errors.add(line, "match",
                      fmt::format("expected a mapping (source, rule, min_severity, ...), found {}",
                                  kindOf(node)));
  }
  forEachEntry(
      node, line, errors, [&](const std::string& key, const YAML::Node& value, int key_line) {
        int vline = lineOf(value, key_line);
        if (key == "source") {
          for (const auto& [text, at] : scalarsOf(value, vline, key, "a source", errors)) {
            auto source = parseSignalSource("source", text);
            if (!source.ok()) {
              errors.add(at, source.status());
            } else {
              match.sources.insert(*source);
            }
          }
        } else if (key == "integration") {
          auto text = scalarOf(value, vline, key, "an integration name", errors);
          if (text && !isPlaybookName(*text)) {
            errors.add(
                vline, key,
                fmt::format("invalid value \"{}\": must be 1-63 characters of [a-z0-9-]", *text));
          } else if (text) {
            match.integration = *text;
          }
        } else if (key == "rule") {
          auto text = scalarOf(value, vline, key, "a regular expression (RE2)", errors);
          if (!text) return;
          RE2::Options options;
          options.set_log_errors(false);
          auto re = std::make_shared<const RE2>(*text, options);
          if (!re->ok()) {
            return errors.add(
                vline, key,
                fmt::format("invalid regular expression \"{}\": {}", *text, re->error()));
          }
          match.rule_text = *text;
          match.rule = std::move(re);
        } else if (key == "min_severity") {
          auto text = scalarOf(value, vline, key, "a severity", errors);
          if (!text) return;
          auto severity = parseSeverity("min_severity", *text);
          if (!severity.ok()) return errors.add(vline, severity.status());
          match.min_severity = *severity;
        } else if (key == "reporting_host" || key == "affected_host") {
          auto text = scalarOf(value, vline, key, "a selector k=v[,k=v]", errors);
          if (!text) return;
          auto selector = parseSelector(key, *text);
          if (!selector.ok()) return errors.add(vline, selector.status());
          (key == "reporting_host" ? match.reporting_host : match.affected_host) = *selector;
        } else {
          errors.add(key_line, key,
                     "unknown field (expected source, integration, rule, min_severity, "
                     "reporting_host, affected_host)");
        }
      });
}

std::optional<PlaybookAction> parseAction(const YAML::Node& node, int line, YamlErrors& errors) {
  if (!node.IsMap()) {
    errors.add(
        line, "actions",
        fmt::format("each action must be a mapping (action, scope, ...), found {}", kindOf(node)));
    return std::nullopt;
  }
  PlaybookAction action;
  action.line = line;
  const size_t errors_before = errors.count();
  bool has_kind = false;
  std::optional<Scope> scope;
  int scope_line = line, ttl_line = 0, exempt_line = 0, selector_line = 0;
  forEachEntry(
      node, line, errors, [&](const std::string& key, const YAML::Node& value, int key_line) {
        int vline = lineOf(value, key_line);
        if (key == "action") {
          auto text = scalarOf(value, vline, key, "an action", errors);
          if (!text) return;
          auto it = std::find_if(kWritableActions.begin(), kWritableActions.end(),
                                 [&](const auto& entry) { return entry.second == *text; });
          if (it == kWritableActions.end()) {
            return errors.add(vline, key,
                              fmt::format("unknown action \"{}\" (expected {})", *text,
                                          namesOf(kWritableActions)));
          }
          has_kind = true;
          action.kind = it->first;
        } else if (key == "scope") {
          auto text = scalarOf(value, vline, key, "a scope", errors);
          if (!text) return;
          auto it = std::find_if(kScopes.begin(), kScopes.end(),
                                 [&](const auto& entry) { return entry.second == *text; });
          if (it == kScopes.end()) {
            return errors.add(
                vline, key,
                fmt::format("unknown scope \"{}\" (expected {})", *text, namesOf(kScopes)));
          }
          scope = it->first;
          scope_line = vline;
        } else if (key == "selector") {
          selector_line = vline;
          auto text = scalarOf(value, vline, key, "a selector k=v[,k=v]", errors);
          if (!text) return;
          auto selector = parseSelector("selector", *text);
          if (!selector.ok()) return errors.add(vline, selector.status());
          action.selector = *selector;
        } else if (key == "ttl") {
          ttl_line = vline;
          auto text = scalarOf(value, vline, key, "a duration (10m, 1h)", errors);
          if (!text) return;
          auto ttl = parseDuration("ttl", *text);
          if (!ttl.ok()) return errors.add(vline, ttl.status());
          action.ttl = *ttl;
        } else if (key == "exempt") {
          exempt_line = vline;
          for (const auto& [text, at] : scalarsOf(value, vline, key, "an exemption set", errors)) {
            action.exempt_sets.push_back(text);
          }
        } else {
          errors.add(key_line, key,
                     "unknown field (expected action, scope, selector, ttl, exempt)");
        }
      });
  if (!has_kind) {
    if (errors.count() == errors_before) {
      errors.add(line, "action", fmt::format("missing (required: {})", namesOf(kWritableActions)));
    }
    return std::nullopt;
  }
  const std::string_view name = actionKindName(action.kind);
  if (!scope) {
    scope = actsOnAddresses(action.kind) ? (action.kind == ActionKind::kKillSessions ||
                                                    action.kind == ActionKind::kStopCaptureKill
                                                ? Scope::kReportingHost
                                                : Scope::kFleet)
                                         : Scope::kAffectedHost;
  }
  action.scope = *scope;
  if (!actsOnAddresses(action.kind) && action.scope == Scope::kFleet) {
    errors.add(scope_line, "scope",
               fmt::format("fleet is not allowed for {}: name the hosts (affected-host, "
                           "reporting-host or selector)",
                           name));
  }
  if (action.scope == Scope::kSelector && action.selector.empty() && selector_line == 0) {
    errors.add(scope_line, "selector", "missing (required with scope: selector)");
  }
  if (action.scope != Scope::kSelector && selector_line != 0) {
    errors.add(selector_line, "selector", "only allowed with scope: selector");
  }
  if (ttl_line != 0 && action.kind != ActionKind::kBlock && !isolates(action.kind)) {
    errors.add(ttl_line, "ttl", fmt::format("not allowed for {} (it does not last)", name));
  }
  if (exempt_line != 0 && !isolates(action.kind)) {
    errors.add(exempt_line, "exempt", fmt::format("not allowed for {} (isolations only)", name));
  }
  if (errors.count() != errors_before) return std::nullopt;
  return action;
}

}  // namespace

std::string_view actionKindName(ActionKind kind) {
  switch (kind) {
    case ActionKind::kUnblock: return "unblock";
    case ActionKind::kRelease: return "release";
    default: break;
  }
  for (const auto& [k, name] : kWritableActions) {
    if (k == kind) return name;
  }
  return "unknown";
}

std::string_view scopeName(Scope scope) {
  for (const auto& [s, name] : kScopes) {
    if (s == scope) return name;
  }
  return "unknown";
}

absl::StatusOr<v1::SignalSource> parseSignalSource(std::string_view field, std::string_view text) {
  for (const auto& [source, name] : kSources) {
    if (name == text) return source;
  }
  return absl::InvalidArgumentError(
      fmt::format("{}: unknown source \"{}\" (expected {})", field, text, namesOf(kSources)));
}

std::string_view signalSourceName(v1::SignalSource source) {
  for (const auto& [s, name] : kSources) {
    if (s == source) return name;
  }
  return "unspecified";
}

std::string_view dispositionText(v1::SignalDisposition d) {
  switch (d) {
    case v1::SIGNAL_DISPOSITION_ACTED: return "acted";
    case v1::SIGNAL_DISPOSITION_NO_MATCH: return "no playbook matched";
    case v1::SIGNAL_DISPOSITION_DUPLICATE: return "duplicate (acted on before)";
    case v1::SIGNAL_DISPOSITION_SUPPRESSED: return "suppressed by a guardrail";
    case v1::SIGNAL_DISPOSITION_SIMULATED: return "simulated";
    case v1::SIGNAL_DISPOSITION_AWAITING_APPROVAL: return "awaiting approval";
    case v1::SIGNAL_DISPOSITION_NOTHING_TO_DO: return "nothing to act on";
    default: return "unknown";
  }
}

std::string_view approvalStateText(v1::ApprovalState state) {
  switch (state) {
    case v1::APPROVAL_STATE_PENDING: return "pending";
    case v1::APPROVAL_STATE_APPROVED: return "approved";
    case v1::APPROVAL_STATE_REJECTED: return "rejected";
    case v1::APPROVAL_STATE_EXPIRED: return "expired";
    default: return "unknown";
  }
}

absl::StatusOr<uint32_t> parseCount(std::string_view field, std::string_view text) {
  uint32_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size() || n == 0 || n > 1000000) {
    return absl::InvalidArgumentError(
        fmt::format("{}: invalid value \"{}\": expected 1 to 1000000", field, text));
  }
  return n;
}

absl::StatusOr<v1::Severity> parseSeverity(std::string_view field, std::string_view text) {
  for (const auto& [severity, name] : kSeverities) {
    if (name == text) return severity;
  }
  return absl::InvalidArgumentError(
      fmt::format("{}: unknown severity \"{}\" (expected {})", field, text, namesOf(kSeverities)));
}

std::string_view severityName(v1::Severity severity) {
  if (severity == v1::SEVERITY_UNSPECIFIED) severity = v1::SEVERITY_MEDIUM;
  for (const auto& [s, name] : kSeverities) {
    if (s == severity) return name;
  }
  return "unknown";
}

namespace {

// `incident: {id: INC-42}` or `incident: {open: TITLE, severity: high}`.
void parseIncident(const YAML::Node& node, int line, PlaybookIncident& out, YamlErrors& errors) {
  if (!node.IsMap()) {
    return errors.add(
        line, "incident",
        fmt::format("expected a mapping with id, or open and severity, found {}", kindOf(node)));
  }
  bool has_severity = false;
  forEachEntry(node, line, errors, [&](const std::string& key, const YAML::Node& value, int kl) {
    const int vline = lineOf(value, kl);
    const std::string field = "incident." + key;
    auto text = scalarOf(value, vline, field, "a text", errors);
    if (!text) return;
    if (key == "id") {
      if (!isValidName(*text)) {
        return errors.add(vline, field,
                          fmt::format("invalid value \"{}\": 1-63 characters of [A-Za-z0-9._-], "
                                      "e.g. INC-42",
                                      escapeNonPrintable(text->substr(0, 64))));
      }
      out.id = *text;
    } else if (key == "open") {
      if (isBlank(*text) || text->size() > 256) {
        return errors.add(vline, field, "the title of the incident it opens: 1 to 256 bytes");
      }
      out.open = *text;
    } else if (key == "severity") {
      has_severity = true;
      static constexpr std::pair<v1::IncidentSeverity, std::string_view> kNames[] = {
          {v1::INCIDENT_SEVERITY_LOW, "low"},
          {v1::INCIDENT_SEVERITY_MEDIUM, "medium"},
          {v1::INCIDENT_SEVERITY_HIGH, "high"},
          {v1::INCIDENT_SEVERITY_CRITICAL, "critical"}};
      for (const auto& [severity, name] : kNames) {
        if (name == *text) return void(out.severity = severity);
      }
      errors.add(vline, field,
                 fmt::format("unknown severity \"{}\" (expected low, medium, high, critical)",
                             escapeNonPrintable(*text)));
    } else {
      errors.add(kl, field, "unknown field (expected id, or open and severity)");
    }
  });
  if (!out.id.empty() && !out.open.empty()) {
    errors.add(line, "incident", "id and open: give one (attach to an incident, or open one)");
  } else if (out.id.empty() && out.open.empty() && errors.empty()) {
    errors.add(line, "incident", "missing id or open");
  } else if (!out.id.empty() && has_severity) {
    errors.add(line, "incident.severity", "only with open (the incident id names has its own)");
  }
}

}  // namespace

absl::StatusOr<Playbook> parsePlaybook(std::string_view file_name, std::string_view yaml) {
  YamlErrors errors(file_name);
  std::optional<YAML::Node> doc =
      loadOneMapping(yaml, "playbook", "a mapping with name, description, match, actions", errors);
  if (!doc) return errors.status();

  Playbook playbook;
  playbook.file = std::string(file_name);
  bool has_name = false, has_description = false, has_match = false, has_actions = false;
  forEachEntry(*doc, 1, errors, [&](const std::string& key, const YAML::Node& value, int key_line) {
    int vline = lineOf(value, key_line);
    if (key == "name") {
      has_name = true;
      auto text = scalarOf(value, vline, key, "a playbook name", errors);
      if (!text) return;
      if (!isPlaybookName(*text)) {
        return errors.add(vline, key,
                          fmt::format("invalid value \"{}\": must be 1-63 characters of "
                                      "[a-z0-9-]",
                                      *text));
      }
      playbook.name = *text;
      playbook.name_line = vline;
    } else if (key == "description") {
      has_description = true;
      auto text = scalarOf(value, vline, key, "a text", errors);
      if (!text) return;
      if (text->empty()) return errors.add(vline, key, "must not be empty");
      playbook.description = *text;
    } else if (key == "match") {
      has_match = true;
      parseMatch(value, vline, playbook.match, errors);
    } else if (key == "actions") {
      has_actions = true;
      if (!value.IsSequence()) {
        return errors.add(vline, key,
                          fmt::format("expected a list of actions, found {}", kindOf(value)));
      }
      if (value.size() == 0) return errors.add(vline, key, "must hold at least one action");
      for (const YAML::Node& item : value) {
        if (auto action = parseAction(item, lineOf(item, vline), errors)) {
          playbook.actions.push_back(std::move(*action));
        }
      }
    } else if (key == "simulate" || key == "unblock_on_resolve" || key == "release_on_resolve") {
      auto flag = boolOf(value, vline, key, errors);
      if (!flag) return;
      (key == "simulate"             ? playbook.simulate
       : key == "unblock_on_resolve" ? playbook.unblock_on_resolve
                                     : playbook.release_on_resolve) = *flag;
    } else if (key == "rate_per_minute") {
      auto text = scalarOf(value, vline, key, "a number of actions", errors);
      if (!text) return;
      auto n = parseCount(key, *text);
      if (!n.ok()) return errors.add(vline, n.status());
      playbook.rate_per_minute = *n;
    } else if (key == "default_ttl") {
      auto text = scalarOf(value, vline, key, "a duration (10m, 1h)", errors);
      if (!text) return;
      auto ttl = parseDuration("default_ttl", *text);
      if (!ttl.ok()) return errors.add(vline, ttl.status());
      playbook.default_ttl = *ttl;
    } else if (key == "incident") {
      parseIncident(value, vline, playbook.incident, errors);
    } else {
      errors.add(key_line, key,
                 "unknown field (expected name, description, match, actions, simulate, "
                 "rate_per_minute, default_ttl, unblock_on_resolve, release_on_resolve, "
                 "incident)");
    }
  });
  if (!has_name) errors.add(1, "name", "missing (required)");
  if (!has_description) errors.add(1, "description", "missing (required)");
  if (!has_match) errors.add(1, "match", "missing (required; `match: {}` matches every signal)");
  if (!has_actions) errors.add(1, "actions", "missing (required: a list of actions)");
  if (!errors.empty()) return errors.status();
  return playbook;
}

const Playbook* PlaybookSet::find(std::string_view name) const {
  for (const Playbook& p : playbooks) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

absl::StatusOr<PlaybookSet> buildPlaybookSet(
    const std::vector<std::pair<std::string, std::string>>& files) {
  PlaybookSet set;
  std::vector<std::string> errors;
  for (const auto& [file, text] : files) {
    auto playbook = parsePlaybook(file, text);
    if (!playbook.ok()) {
      errors.emplace_back(playbook.status().message());
      continue;
    }
    if (const Playbook* first = set.find(playbook->name)) {
      errors.push_back(fmt::format("{}:{}: name: duplicate playbook \"{}\", first defined in {}:{}",
                                   file, playbook->name_line, playbook->name, first->file,
                                   first->name_line));
      continue;
    }
    set.playbooks.push_back(std::move(*playbook));
  }
  if (!errors.empty()) return absl::InvalidArgumentError(joinLines(errors));
  std::sort(set.playbooks.begin(), set.playbooks.end(),
            [](const Playbook& a, const Playbook& b) { return a.name < b.name; });
  return set;
}

absl::StatusOr<PlaybookSet> loadPlaybookDir(const std::string& dir) {
  auto read = readYamlDir(dir, "playbook-dir");
  if (!read.ok()) return read.status();
  std::vector<std::string> errors = std::move(read->errors);
  auto set = buildPlaybookSet(read->files);
  if (!set.ok()) errors.emplace_back(set.status().message());
  if (!errors.empty()) return absl::InvalidArgumentError(joinLines(errors));
  return set;
}

}  // namespace bulkhead::controller
