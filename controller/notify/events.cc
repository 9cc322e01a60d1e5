#include "controller/notify/events.h"

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "common/format.h"
#include "common/text.h"
#include "controller/playbook/engine.h"
#include "controller/service/record_text.h"
#include "controller/service/signal_intake.h"
#include "evidence/hash.h"

namespace bulkhead::controller::notify {

namespace v1 = bulkhead::v1;
using nlohmann::json;

namespace {

constexpr char kSchema[] = "bulkhead-notification/1";

std::optional<std::pair<std::string, Severity>> resultKind(v1::AuditAction action) {
  switch (action) {
    case v1::AUDIT_ACTION_ISOLATE: return std::pair{"isolate", Severity::kWarning};
    case v1::AUDIT_ACTION_RELEASE: return std::pair{"release", Severity::kInfo};
    case v1::AUDIT_ACTION_BLOCK: return std::pair{"block", Severity::kWarning};
    case v1::AUDIT_ACTION_UNBLOCK: return std::pair{"unblock", Severity::kInfo};
    case v1::AUDIT_ACTION_KILL_CONNECTIONS:
    case v1::AUDIT_ACTION_KILL_SESSIONS:
    case v1::AUDIT_ACTION_KILL_PROCESS: return std::pair{"kill", Severity::kWarning};
    default: return std::nullopt;
  }
}

// The kind and severity of a row, or nullopt when it announces nothing.
std::optional<std::pair<std::string, Severity>> kindOf(const AuditEntry& row) {
  const AuditReading r = readAuditText(row.action, row.outcome);
  if (r.phase == v1::AUDIT_PHASE_RESULT) {
    auto kind = resultKind(r.action);
    if (!kind) return std::nullopt;
    if (r.outcome != v1::AUDIT_OUTCOME_OK)
      return std::pair{"enforcement-failure", Severity::kCritical};
    return kind;
  }
  if (r.action == v1::AUDIT_ACTION_EVIDENCE_RECEIVED && r.outcome == v1::AUDIT_OUTCOME_OK) {
    return std::pair{"capture", Severity::kInfo};
  }
  if (r.action == v1::AUDIT_ACTION_APPROVAL_EXPIRED) {
    return std::pair{"approval-expired", Severity::kWarning};
  }
  if (r.action == v1::AUDIT_ACTION_TAMPER) {
    // Restored: the agent did its job, and a person should still look; not restored: the host
    // may be open.
    return std::pair{"tamper",
                     r.outcome == v1::AUDIT_OUTCOME_OK ? Severity::kWarning : Severity::kCritical};
  }
  if (r.action == v1::AUDIT_ACTION_HOST_OFFLINE) {
    return std::pair{"host-offline", Severity::kWarning};
  }
  if (r.action == v1::AUDIT_ACTION_CERTIFICATE_EXPIRING) {
    return std::pair{"certificate-expiry", Severity::kWarning};
  }
  // A renewal that failed leaves a certificate running out: the controller's own stops every
  // agent's stream when it ends.
  if ((r.action == v1::AUDIT_ACTION_CONTROLLER_RENEW || r.action == v1::AUDIT_ACTION_AGENT_RENEW) &&
      r.outcome != v1::AUDIT_OUTCOME_OK) {
    return std::pair{"certificate-expiry", r.action == v1::AUDIT_ACTION_CONTROLLER_RENEW
                                               ? Severity::kCritical
                                               : Severity::kWarning};
  }
  if (r.action == v1::AUDIT_ACTION_SIGNAL_ACTION &&
      row.detail.find(fmt::format(": {} ", verdictName(Verdict::kNeedsApproval))) !=
          std::string::npos) {
    return std::pair{"approval-pending", Severity::kWarning};
  }
  return std::nullopt;
}

std::string kindWords(std::string_view kind) {
  std::string out(kind);
  std::replace(out.begin(), out.end(), '-', ' ');
  return out;
}

// The action without ".result": "isolate", "kill-sessions".
std::string actionName(std::string_view action) {
  if (action.size() > kResultSuffix.size() &&
      action.substr(action.size() - kResultSuffix.size()) == kResultSuffix) {
    action.remove_suffix(kResultSuffix.size());
  }
  return std::string(action);
}

// RFC 5322's date: "Sun, 06 Dec 2026 05:30:00 +0000".
std::string mailDate(int64_t unix_ms) {
  const auto secs = static_cast<std::time_t>(unix_ms / 1000);
  return fmt::format("{:%a, %d %b %Y %H:%M:%S} +0000", fmt::gmtime(secs));
}

// A header value in ASCII: as is, or RFC 2047's "=?UTF-8?B?...?=".
std::string headerText(std::string_view text) {
  const bool ascii = std::all_of(text.begin(), text.end(), [](char c) {
    return static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f;
  });
  if (ascii) return std::string(text);
  return "=?UTF-8?B?" + absl::Base64Escape(absl::string_view(text.data(), text.size())) + "?=";
}

// `text` in base64, in lines of 76 characters (RFC 2045).
std::string base64Lines(std::string_view text) {
  const std::string b64 = absl::Base64Escape(absl::string_view(text.data(), text.size()));
  std::string out;
  for (size_t i = 0; i < b64.size(); i += 76) {
    out += b64.substr(i, 76);
    out += "\r\n";
  }
  return out;
}

}  // namespace

std::string_view severityName(Severity severity) {
  switch (severity) {
    case Severity::kInfo: return "info";
    case Severity::kWarning: return "warning";
    case Severity::kCritical: return "critical";
  }
  return "info";
}

absl::StatusOr<Severity> parseSeverity(std::string_view field, std::string_view text) {
  for (Severity s : {Severity::kInfo, Severity::kWarning, Severity::kCritical}) {
    if (text == severityName(s)) return s;
  }
  return absl::InvalidArgumentError(fmt::format(
      "{}: \"{}\" is not a severity (info, warning or critical)", field, escapeNonPrintable(text)));
}

const std::vector<std::string>& eventKinds() {
  static const std::vector<std::string> kinds = {"isolate",
                                                 "release",
                                                 "block",
                                                 "unblock",
                                                 "kill",
                                                 "enforcement-failure",
                                                 "capture",
                                                 "approval-pending",
                                                 "approval-expired",
                                                 "tamper",
                                                 "host-offline",
                                                 "certificate-expiry",
                                                 "test"};
  return kinds;
}

std::optional<Event> eventOfAuditRow(const AuditEntry& row) {
  auto kind = kindOf(row);
  if (!kind) return std::nullopt;
  return Event{.id = fmt::format("audit-{}", row.id),
               .kind = kind->first,
               .severity = kind->second,
               .tenant = row.tenant,
               .incident = row.incident,
               .at_unix_ms = row.at_unix_ms,
               .audit_id = row.id,
               .actor = row.operator_name,
               .action = row.action,
               .target = row.target,
               .reason = row.reason,
               .outcome = row.outcome,
               .detail = row.detail};
}

namespace {

// The summary without the detail: "[critical] enforcement failure: isolate web-1 (tenant acme)".
std::string headline(const Event& e) {
  std::string where = "tenant " + e.tenant;
  if (!e.incident.empty()) where += ", incident " + e.incident;
  return fmt::format("[{}] {}: {} {} ({})", severityName(e.severity), kindWords(e.kind),
                     actionName(e.action), e.target, where);
}

}  // namespace

std::string summaryLine(const Event& e) {
  std::string line = headline(e);
  if (!e.detail.empty()) line += ": " + e.detail;
  return escapeNonPrintable(line);
}

std::string eventJson(const Event& e) {
  const json doc = {{"schema", kSchema},
                    {"id", e.id},
                    {"kind", e.kind},
                    {"severity", std::string(severityName(e.severity))},
                    {"tenant", e.tenant},
                    {"incident", e.incident},
                    {"at", utcTimeText(e.at_unix_ms)},
                    {"at_unix_ms", e.at_unix_ms},
                    {"audit_id", e.audit_id},
                    {"actor", e.actor},
                    {"action", e.action},
                    {"target", e.target},
                    {"reason", e.reason},
                    {"outcome", e.outcome},
                    {"detail", e.detail},
                    {"summary", summaryLine(e)}};
  // Invalid UTF-8 (a row's text is whatever a host sent) is replaced, never thrown on.
  return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

absl::StatusOr<Event> parseEventJson(std::string_view text) {
  const json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return absl::InvalidArgumentError("notification event: not a JSON object");
  }
  if (doc.value("schema", "") != kSchema) {
    return absl::InvalidArgumentError(
        fmt::format("notification event: schema is not \"{}\"", kSchema));
  }
  Event e;
  auto str = [&](const char* field, std::string& out) -> absl::Status {
    const auto it = doc.find(field);
    if (it == doc.end() || !it->is_string()) {
      return absl::InvalidArgumentError(
          fmt::format("notification event: {}: missing or not a string", field));
    }
    out = it->get<std::string>();
    return absl::OkStatus();
  };
  auto num = [&](const char* field, int64_t& out) -> absl::Status {
    const auto it = doc.find(field);
    if (it == doc.end() || !it->is_number_integer()) {
      return absl::InvalidArgumentError(
          fmt::format("notification event: {}: missing or not an integer", field));
    }
    out = it->get<int64_t>();
    return absl::OkStatus();
  };
  std::string severity;
  for (auto [field, out] : std::array<std::pair<const char*, std::string*>, 11>{{
           {"id", &e.id},
           {"kind", &e.kind},
           {"severity", &severity},
           {"tenant", &e.tenant},
           {"incident", &e.incident},
           {"actor", &e.actor},
           {"action", &e.action},
           {"target", &e.target},
           {"reason", &e.reason},
           {"outcome", &e.outcome},
           {"detail", &e.detail},
       }}) {
    if (auto s = str(field, *out); !s.ok()) return s;
  }
  if (auto s = num("at_unix_ms", e.at_unix_ms); !s.ok()) return s;
  if (auto s = num("audit_id", e.audit_id); !s.ok()) return s;
  auto parsed = parseSeverity("notification event: severity", severity);
  if (!parsed.ok()) return parsed.status();
  e.severity = *parsed;
  return e;
}

std::string slackBody(const Event& e) {
  std::string text = fmt::format("*bulkhead* {}", summaryLine(e));
  auto field = [&](std::string_view name, const std::string& value) {
    if (!value.empty()) text += fmt::format("\n• {}: {}", name, escapeNonPrintable(value));
  };
  field("who", e.actor);
  field("why", e.reason);
  field("outcome", e.outcome);
  field("when", utcTimeText(e.at_unix_ms));
  if (e.audit_id != 0) field("audit row", std::to_string(e.audit_id));
  const json doc = {{"text", text}};
  return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string webhookSignature(std::string_view secret, int64_t unix_seconds, std::string_view body) {
  const std::string signed_text = fmt::format("{}.{}", unix_seconds, body);
  return fmt::format("t={},v1={}", unix_seconds, evidence::hmacSha256Hex(secret, signed_text));
}

std::string emailMessage(const Event& e, std::string_view from, const std::vector<std::string>& to,
                         std::string_view host, int64_t now_unix_ms) {
  std::string to_list;
  for (const std::string& a : to) to_list += (to_list.empty() ? "" : ", ") + a;
  std::string body = summaryLine(e) + "\n\n";
  auto field = [&](std::string_view name, const std::string& value) {
    body += fmt::format("{:<10} {}\n", std::string(name) + ":", escapeNonPrintable(value));
  };
  field("kind", e.kind);
  field("severity", std::string(severityName(e.severity)));
  field("tenant", e.tenant);
  field("incident", e.incident.empty() ? "-" : e.incident);
  field("when", utcTimeText(e.at_unix_ms));
  field("who", e.actor);
  field("action", e.action);
  field("target", e.target);
  field("why", e.reason);
  field("outcome", e.outcome);
  field("detail", e.detail);
  if (e.audit_id != 0) field("audit row", std::to_string(e.audit_id));
  body += "\nSent by bulkhead-controller; the audit trail (bulkhead audit) holds the record.\n";
  // Header lines stay short (RFC 5322: at most 998 characters): the detail is in the body.
  std::string subject = escapeNonPrintable(headline(e));
  if (subject.size() > 200) subject = subject.substr(0, 197) + "...";
  std::string crlf_body;
  for (char c : body) {
    if (c == '\n') crlf_body += '\r';
    crlf_body += c;
  }
  return fmt::format(
      "From: {}\r\nTo: {}\r\nSubject: {}\r\nDate: {}\r\nMessage-ID: <{}@{}>\r\n"
      "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n"
      "Content-Transfer-Encoding: base64\r\n\r\n{}",
      from, to_list, headerText(subject), mailDate(now_unix_ms), e.id, host,
      base64Lines(crlf_body));
}

}  // namespace bulkhead::controller::notify
