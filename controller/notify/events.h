// What the notification channels are told: the events that audit rows announce (containment
// done or failed, evidence stored, an approval waiting or expired, tampering, an isolated host
// offline, a certificate running out), and the messages made of them for each kind of
// channel. Pure.
//
// The audit trail is the source: every event is an audit row (the notifier routes the rows
// after its cursor), so whatever the controller did is announced once it is on record, and a
// restart loses nothing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "controller/store/store.h"

namespace bulkhead::controller::notify {

enum class Severity { kInfo = 0, kWarning = 1, kCritical = 2 };

// "info", "warning", "critical".
std::string_view severityName(Severity severity);
// INVALID_ARGUMENT naming `field` for other text.
absl::StatusOr<Severity> parseSeverity(std::string_view field, std::string_view text);

// The event kinds, as channels' filters name them:
//   isolate, release, block, unblock, kill (connections, sessions, processes): an action's
//     result, every host done;
//   enforcement-failure: such a result with a host failed or still pending (offline);
//   capture: an evidence bundle received and stored;
//   approval-pending: a playbook's action waits for a person; approval-expired: nobody
//     decided in time, so it did not run;
//   tamper: a host's agent found its ruleset changed behind its back (critical when it could
//     not restore it);
//   host-offline: an isolated host's agent went offline;
//   certificate-expiry: a peer connected with a certificate that expires soon, or a
//     certificate renewal failed (the controller's own: critical);
//   test: `bulkhead notify test CHANNEL`.
const std::vector<std::string>& eventKinds();

struct Event {
  std::string id;  // unique per event: "audit-<row id>", or "test-<...>"
  std::string kind;
  Severity severity = Severity::kInfo;
  std::string tenant;
  std::string incident;  // "" for none
  int64_t at_unix_ms = 0;
  int64_t audit_id = 0;  // the row that announced it; 0 for a test
  std::string actor;     // who acted: an operator, "playbook:NAME", "agent:HOST", "controller"
  std::string action;    // the row's action ("isolate.result")
  std::string target;    // hosts, a selector, an address, an approval id
  std::string reason;
  std::string outcome;
  std::string detail;
};

// The event an audit row announces; nullopt for the rows nobody is told about (calls not yet
// answered, reads, listings, the notifier's own rows).
std::optional<Event> eventOfAuditRow(const AuditEntry& row);

// The event as the generic webhook's body and the queue's record: one JSON object,
// {"schema": "bulkhead-notification/1", "id", "kind", "severity", "tenant", "incident", "at"
// (RFC 3339 UTC), "at_unix_ms", "audit_id", "actor", "action", "target", "reason", "outcome",
// "detail", "summary"}.
std::string eventJson(const Event& event);
// The reverse; INVALID_ARGUMENT naming the field that is missing or of the wrong type.
absl::StatusOr<Event> parseEventJson(std::string_view json);

// One line for people: "[critical] enforcement failure: isolate web-1 (tenant acme, incident
// INC-42): error: 1 failed: web-1 (...)". Control characters are escaped.
std::string summaryLine(const Event& event);

// A Slack-compatible incoming webhook's body: {"text": ...} with the summary and the fields.
std::string slackBody(const Event& event);

// The generic webhook's signature header value, in the manner of Stripe's: "t=UNIX,v1=HEX",
// HEX being HMAC-SHA256 under `secret` of "UNIX.BODY". A receiver recomputes it and rejects
// an old UNIX (a replay).
std::string webhookSignature(std::string_view secret, int64_t unix_seconds, std::string_view body);

// An email (RFC 5322, UTF-8, CRLF line ends) telling the event: From, To, Subject (the
// summary without the detail), Date, Message-ID (from the event id and `host`, so a resend is
// recognisably the same message) and a plain text body (base64) with every field.
std::string emailMessage(const Event& event, std::string_view from,
                         const std::vector<std::string>& to, std::string_view host,
                         int64_t now_unix_ms);

}  // namespace bulkhead::controller::notify
