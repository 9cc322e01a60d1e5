// Playbooks: what a detection (a Signal, proto/bulkhead/v1/signals.proto) may cause. YAML files
// in POLICY_DIR/playbooks/ (schema: controller/playbook/README.md), their parser with
// "FILE:LINE: field: problem" errors, and the directory loader. Pure but for loadPlaybookDir.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "bulkhead/v1/incidents.pb.h"
#include "bulkhead/v1/signals.pb.h"
#include "common/parse.h"

namespace re2 {
class RE2;
}

namespace bulkhead::controller {

enum class ActionKind {
  kBlock,               // block the signal's addresses
  kKillConnections,     // reset established flows with the signal's addresses
  kKillSessions,        // end login sessions coming from the signal's addresses
  kCapture,             // take a capture of a host
  kIsolate,             // isolate a host (with exemption sets)
  kCaptureThenIsolate,  // capture, then isolate whatever the capture's outcome
  // kill-sessions from the signal's addresses with capture first: the sessions' processes are
  // stopped, the host captured while they are, then killed whatever the capture's outcome.
  kStopCaptureKill,
  // Only planned by the engine for a resolved signal, never written in a playbook:
  kUnblock,
  kRelease,
};
std::string_view actionKindName(ActionKind kind);  // "block", "kill-connections", ...

// Where an action applies.
enum class Scope {
  kFleet,          // every host, now and later (blocks) / every known host
  kReportingHost,  // the host whose agent reported the signal
  kAffectedHost,   // the host the signal names (Signal.host)
  kSelector,       // the hosts whose labels match `selector`
};
std::string_view scopeName(Scope scope);  // "fleet", "reporting-host", ...

struct PlaybookAction {
  ActionKind kind = ActionKind::kBlock;
  Scope scope = Scope::kFleet;
  Labels selector;  // with kSelector
  // How long a block or an isolation lasts: a fixed duration, or (unset) the signal's TTL hint,
  // else the playbook's default_ttl.
  std::optional<std::chrono::milliseconds> ttl;
  std::vector<std::string> exempt_sets;  // isolate, capture-then-isolate
  int line = 0;
};

struct PlaybookMatch {
  std::set<bulkhead::v1::SignalSource> sources;  // empty: any source
  std::string integration;                       // empty: any (webhook integrations)
  std::string rule_text;                         // as written; empty: any rule
  std::shared_ptr<const re2::RE2> rule;          // RE2, searched in Signal.rule; null: any
  bulkhead::v1::Severity min_severity = bulkhead::v1::SEVERITY_INFO;
  std::optional<Labels> reporting_host;  // all must match the reporting host's labels
  std::optional<Labels> affected_host;   // ... the affected host's labels
};

// The incident a playbook's actions belong to (`incident:`); none when `id` and `open` are
// both empty. With `id`, the actions attach to that incident of the signal's tenant while it
// is open (and run without one otherwise: containment never waits on paperwork). With `open`,
// the first action opens an incident with that title, and later ones attach to it while it
// stays open; once a person closes it, the next action opens a new one.
struct PlaybookIncident {
  std::string id;
  std::string open;  // the title of an incident it opens
  bulkhead::v1::IncidentSeverity severity = bulkhead::v1::INCIDENT_SEVERITY_MEDIUM;
  bool any() const { return !id.empty() || !open.empty(); }
};

struct Playbook {
  std::string name;  // [a-z0-9-]{1,63}, unique across a directory
  std::string description;
  PlaybookMatch match;
  std::vector<PlaybookAction> actions;  // never empty
  // Records what it would have done and does nothing.
  bool simulate = false;
  // Automatic actions per minute from this playbook (0: only the global cap).
  uint32_t rate_per_minute = 0;
  // TTL of blocks and isolations when neither the action nor the signal says one.
  std::chrono::milliseconds default_ttl{std::chrono::hours(1)};
  // What the end of the detection (a resolved signal) undoes: its blocks (default), its
  // isolations (default not: a responder releases).
  bool unblock_on_resolve = true;
  bool release_on_resolve = false;
  PlaybookIncident incident;
  std::string file;
  int name_line = 1;
};

// Parses one playbook file. Errors (InvalidArgument) one per line, "FILE:LINE: field: problem".
absl::StatusOr<Playbook> parsePlaybook(std::string_view file_name, std::string_view yaml);

// All playbooks of a directory, by name (the order the engine evaluates them in).
struct PlaybookSet {
  std::vector<Playbook> playbooks;
  const Playbook* find(std::string_view name) const;
};

// Several files (name, content) into one set: every file's errors, plus one per duplicate name.
absl::StatusOr<PlaybookSet> buildPlaybookSet(
    const std::vector<std::pair<std::string, std::string>>& files);

// Reads *.yaml / *.yml directly in `dir` and builds the set. A missing directory is an error.
absl::StatusOr<PlaybookSet> loadPlaybookDir(const std::string& dir);

// Signal sources and severities as playbooks and the CLI write them: "fail2ban", "crowdsec",
// "alertmanager", "falco", "wazuh", "sshguard", "webhook", "cli"; "info" .. "critical".
absl::StatusOr<bulkhead::v1::SignalSource> parseSignalSource(std::string_view field,
                                                             std::string_view text);
std::string_view signalSourceName(bulkhead::v1::SignalSource source);
absl::StatusOr<bulkhead::v1::Severity> parseSeverity(std::string_view field, std::string_view text);
std::string_view severityName(bulkhead::v1::Severity severity);

// What a signal caused, for people (the CLI, the audit rows' outcome): "acted",
// "no playbook matched", "suppressed by a guardrail", ...
std::string_view dispositionText(bulkhead::v1::SignalDisposition disposition);
// An approval's state for people and messages: "pending", "approved", "rejected", "expired".
std::string_view approvalStateText(bulkhead::v1::ApprovalState state);

// A count in a playbook or guardrail file (rate_per_minute, blast_radius): 1 to 1,000,000.
// Errors: "FIELD: invalid value "TEXT": expected 1 to 1000000".
absl::StatusOr<uint32_t> parseCount(std::string_view field, std::string_view text);

}  // namespace bulkhead::controller
