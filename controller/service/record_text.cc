#include "controller/service/record_text.h"

#include "controller/service/authorization.h"
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

std::vector<std::string> auditActionNames() {
  std::vector<std::string> names;
  for (const ActionRule& rule : actionRules()) names.emplace_back(rule.name);
  for (const char* own : {kEvidenceReceivedAction, kControllerStartAction, kControllerStopAction,
                          kControllerRestoreAction, kAuditKeyedAction, kSignalActionAuditAction, kSignalRateCapAuditAction,
                          kApprovalExpiredAuditAction, kWebhookRefusedAuditAction}) {
    names.emplace_back(own);
  }
  return names;
}

std::vector<std::string> custodyActionNames() {
  return {kCustodyRequested, kCustodyCollected, kCustodyReceived,
          kCustodyGet,       kCustodyShow,      kCustodyVerify};
}

}  // namespace bulkhead::controller
