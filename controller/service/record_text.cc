#include "controller/service/record_text.h"

#include "controller/service/authorization.h"
#include "controller/service/enrollment.h"
#include "controller/service/integrations.h"
#include "controller/service/signal_intake.h"
#include "controller/store/store.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

namespace {

// "kill-connections" -> "KILL_CONNECTIONS"; empty unless the text is lower-case words joined
// by single dashes.
std::string enumSuffix(std::string_view text) {
  std::string out;
  if (text.empty() || text.front() == '-' || text.back() == '-') return out;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c >= 'a' && c <= 'z') {
      out += static_cast<char>(c - 'a' + 'A');
    } else if (c == '-' && text[i - 1] != '-') {
      out += '_';
    } else {
      return {};
    }
  }
  return out;
}

// The value of the enum whose name is `prefix` + enumSuffix(text); `none` if there is none.
template <typename Enum, typename Parse>
Enum byName(std::string_view text, std::string_view prefix, Parse parse, Enum none) {
  const std::string suffix = enumSuffix(text);
  Enum value = none;
  if (suffix.empty() || !parse(std::string(prefix) + suffix, &value)) return none;
  return value;
}

// "KILL_CONNECTIONS" -> "kill-connections".
std::string enumText(std::string_view suffix) {
  std::string out;
  for (const char c : suffix) {
    out += c == '_' ? '-' : (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  }
  return out;
}

void fillTypedFields(v1::SignalAction& action) {
  if (action.kind() == v1::SIGNAL_ACTION_KIND_UNSPECIFIED) {
    action.set_kind(readSignalActionKind(action.action()));
  }
  if (action.state() == v1::SIGNAL_ACTION_STATE_UNSPECIFIED) {
    action.set_state(readSignalActionState(action.outcome()));
  }
}

}  // namespace

AuditReading readAuditText(std::string_view action, std::string_view outcome) {
  AuditReading r;
  std::string_view name = action;
  v1::AuditPhase phase = v1::AUDIT_PHASE_CALL;
  if (name.ends_with(kResultSuffix)) {
    name.remove_suffix(kResultSuffix.size());
    phase = v1::AUDIT_PHASE_RESULT;
  }
  r.action = byName(
      name, "AUDIT_ACTION_",
      [](const std::string& n, v1::AuditAction* v) { return v1::AuditAction_Parse(n, v); },
      v1::AUDIT_ACTION_UNSPECIFIED);
  if (r.action != v1::AUDIT_ACTION_UNSPECIFIED) r.phase = phase;

  if (outcome == "ok") {
    r.outcome = v1::AUDIT_OUTCOME_OK;
  } else if (outcome == "accepted") {
    r.outcome = v1::AUDIT_OUTCOME_ACCEPTED;
  } else if (outcome == "denied") {
    r.outcome = v1::AUDIT_OUTCOME_DENIED;
  } else if (outcome.starts_with("error: ")) {
    r.outcome = v1::AUDIT_OUTCOME_ERROR;
  }
  return r;
}

v1::CustodyAction readCustodyAction(std::string_view action) {
  return byName(
      action, "CUSTODY_ACTION_",
      [](const std::string& n, v1::CustodyAction* v) { return v1::CustodyAction_Parse(n, v); },
      v1::CUSTODY_ACTION_UNSPECIFIED);
}

v1::SignalActionKind readSignalActionKind(std::string_view action) {
  return byName(
      action, "SIGNAL_ACTION_KIND_",
      [](const std::string& n, v1::SignalActionKind* v) {
        return v1::SignalActionKind_Parse(n, v);
      },
      v1::SIGNAL_ACTION_KIND_UNSPECIFIED);
}

v1::SignalActionState readSignalActionState(std::string_view outcome) {
  // An approval's decision comes first: what follows its "): " is the action's own outcome.
  for (std::string_view decided : {"approved by ", "rejected by ", "expired ("}) {
    if (!outcome.starts_with(decided)) continue;
    const size_t end = outcome.find("): ");
    if (end == std::string_view::npos) return v1::SIGNAL_ACTION_STATE_UNSPECIFIED;
    outcome.remove_prefix(end + 3);
    break;
  }
  std::string_view head = outcome.substr(0, outcome.find(':'));
  if (head.starts_with("awaiting approval")) return v1::SIGNAL_ACTION_STATE_AWAITING_APPROVAL;
  if (head == "rejected, not run") return v1::SIGNAL_ACTION_STATE_NOT_RUN;
  std::string words(head);
  for (char& c : words) c = c == ' ' ? '-' : c;
  return byName(
      words, "SIGNAL_ACTION_STATE_",
      [](const std::string& n, v1::SignalActionState* v) {
        return v1::SignalActionState_Parse(n, v);
      },
      v1::SIGNAL_ACTION_STATE_UNSPECIFIED);
}

v1::IntegrationFormat readIntegrationFormat(std::string_view format) {
  return byName(
      format, "INTEGRATION_FORMAT_",
      [](const std::string& n, v1::IntegrationFormat* v) {
        return v1::IntegrationFormat_Parse(n, v);
      },
      v1::INTEGRATION_FORMAT_UNSPECIFIED);
}

std::string integrationFormatText(v1::IntegrationFormat format) {
  constexpr std::string_view kPrefix = "INTEGRATION_FORMAT_";
  if (format == v1::INTEGRATION_FORMAT_UNSPECIFIED || !v1::IntegrationFormat_IsValid(format)) {
    return {};
  }
  return enumText(std::string_view(v1::IntegrationFormat_Name(format)).substr(kPrefix.size()));
}

void fillTypedFields(v1::SignalRecord& record) {
  for (v1::SignalAction& action : *record.mutable_actions()) fillTypedFields(action);
}

void fillTypedFields(v1::Approval& approval) {
  fillTypedFields(*approval.mutable_action());
  if (approval.outcome_state() == v1::SIGNAL_ACTION_STATE_UNSPECIFIED &&
      !approval.outcome().empty()) {
    approval.set_outcome_state(readSignalActionState(approval.outcome()));
  }
}

void fillTypedFields(v1::Integration& integration) {
  if (integration.format_type() == v1::INTEGRATION_FORMAT_UNSPECIFIED) {
    integration.set_format_type(readIntegrationFormat(integration.format()));
  }
}

std::vector<std::string> auditActionNames() {
  std::vector<std::string> names;
  for (const ActionRule& rule : actionRules()) names.emplace_back(rule.name);
  for (const char* own :
       {kEvidenceReceivedAction, kControllerStartAction, kControllerStopAction,
        kControllerRestoreAction, kAuditKeyedAction, kSignalActionAuditAction,
        kSignalRateCapAuditAction, kApprovalExpiredAuditAction, kWebhookRefusedAuditAction,
        kAgentEnrollAuditAction, kAgentRenewAuditAction, kOperatorEnrollAuditAction,
        kControllerRenewAction, kNotifyAction, kTamperAction, kHostOfflineAction,
        kCertificateExpiringAction}) {
    names.emplace_back(own);
  }
  return names;
}

std::vector<std::string> custodyActionNames() {
  return {kCustodyRequested, kCustodyCollected, kCustodyReceived,
          kCustodyGet,       kCustodyShow,      kCustodyVerify};
}

}  // namespace bulkhead::controller
