// The audit trail's and the custody records' text read as the v1 contract's enums. The stored
// text stays what is hashed into the chains; these readings are given beside it. The enum
// value names are the text: the name after the enum's prefix, lower case with dashes
// ("AUDIT_ACTION_KILL_CONNECTIONS" reads "kill-connections").
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "bulkhead/v1/operator.pb.h"
#include "bulkhead/v1/signals.pb.h"

namespace bulkhead::controller {

// Actions the controller writes to the audit table that are not operator actions
// (authorization.h); the store's "audit-keyed" marker is kAuditKeyedAction (store.h).
inline constexpr char kEvidenceReceivedAction[] = "evidence-received";  // an agent's upload
inline constexpr char kControllerStartAction[] = "controller-start";
inline constexpr char kControllerStopAction[] = "controller-stop";
inline constexpr char kControllerRestoreAction[] = "controller-restore";
inline constexpr char kControllerRenewAction[] = "controller-renew";  // its own certificate
// A notification delivered to a channel, or failed for good (controller/notify/).
inline constexpr char kNotifyAction[] = "notify";
// A host's tamper events between two store flushes, in one row: its agent found its ruleset
// changed behind its back (restored, or not), or it claimed a generation this controller
// never issued (never "restored").
inline constexpr char kTamperAction[] = "tamper";
// An isolated host's agent went offline (its stream ended, or no message in time).
inline constexpr char kHostOfflineAction[] = "host-offline";
// A peer (agent or operator) connected with a certificate that expires soon; once per
// certificate per controller run.
inline constexpr char kCertificateExpiringAction[] = "certificate-expiring";

// The custody actions the controller records, as stored.
inline constexpr char kCustodyRequested[] = "requested";
inline constexpr char kCustodyCollected[] = "collected";
inline constexpr char kCustodyReceived[] = "received";
inline constexpr char kCustodyGet[] = "get";
inline constexpr char kCustodyShow[] = "show";
inline constexpr char kCustodyVerify[] = "verify";

// Appended to an action for the row of its answer ("isolate.result").
inline constexpr std::string_view kResultSuffix = ".result";

struct AuditReading {
  bulkhead::v1::AuditAction action = bulkhead::v1::AUDIT_ACTION_UNSPECIFIED;
  bulkhead::v1::AuditPhase phase = bulkhead::v1::AUDIT_PHASE_UNSPECIFIED;
  bulkhead::v1::AuditOutcome outcome = bulkhead::v1::AUDIT_OUTCOME_UNSPECIFIED;
};

// Reads a row's stored `action` ("<name>" or "<name>.result") and `outcome` ("ok",
// "accepted", "denied", "error: <text>"). Text it does not know, an older or newer row's,
// reads UNSPECIFIED: the action and the phase together, the outcome alone.
AuditReading readAuditText(std::string_view action, std::string_view outcome);

// Reads a custody event's stored action ("requested", "collected", "received", "get", "show",
// "verify"); UNSPECIFIED for other text.
bulkhead::v1::CustodyAction readCustodyAction(std::string_view action);

// A playbook action's name ("kill-connections"); UNSPECIFIED for other text.
bulkhead::v1::SignalActionKind readSignalActionKind(std::string_view action);

// A signal action's or an approval's outcome text: "started", "simulated", "suppressed: ...",
// "awaiting approval ID: ...", "skipped: ...", "done[: ...]", "failed: ...", "not run", each
// also after an approval's "approved by NAME (ID): ", "rejected by NAME (ID): " or
// "expired (ID): rejected, not run". UNSPECIFIED for other text (a newer controller's).
bulkhead::v1::SignalActionState readSignalActionState(std::string_view outcome);

// An integration format's name ("alertmanager", "falco", "generic"); UNSPECIFIED otherwise.
bulkhead::v1::IntegrationFormat readIntegrationFormat(std::string_view format);
// The name of a format; empty for UNSPECIFIED or a value this controller does not know.
std::string integrationFormatText(bulkhead::v1::IntegrationFormat format);

// Records stored before the typed fields existed (an older controller's rows) get them from
// their text; typed fields already set are kept.
void fillTypedFields(bulkhead::v1::SignalRecord& record);
void fillTypedFields(bulkhead::v1::Approval& approval);
void fillTypedFields(bulkhead::v1::Integration& integration);

// Every action name the controller writes to the audit table (without the result suffix):
// the operator actions' names in table order, then the controller's own.
std::vector<std::string> auditActionNames();

// Every custody action the controller records (the kCustody* constants).
std::vector<std::string> custodyActionNames();

}  // namespace bulkhead::controller
