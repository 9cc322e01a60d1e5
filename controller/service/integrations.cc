#include "controller/service/integrations.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/format.h"
#include "common/text.h"
#include "controller/service/audit.h"
#include "controller/service/record_text.h"
#include "controller/service/tenancy.h"
#include "evidence/hash.h"

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;

constexpr size_t kTokenBytes = 32;
constexpr int64_t kRefusalRowIntervalMs = int64_t{60} * 1000;
// Refusals of unknown names share one key, so the map holds one entry per integration + 1.
constexpr char kUnknownKey[] = "(unknown integration)";

absl::Status checkName(const std::string& name) {
  auto ok = [](char c, bool first) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (!first && (c == '-' || c == '_' || c == '.'));
  };
  bool valid = !name.empty() && name.size() <= 63;
  for (size_t i = 0; valid && i < name.size(); ++i) valid = ok(name[i], i == 0);
  if (!valid) {
    return absl::InvalidArgumentError(
        "name: 1-63 of a-z, 0-9, '-', '_', '.', starting with a letter or digit");
  }
  return absl::OkStatus();
}

// The format a create request names, as text; INVALID_ARGUMENT when its two forms disagree or
// the typed one is a value this controller does not know. An unknown text is left to the
// format check (which names the formats).
absl::StatusOr<std::string> chosenFormat(const std::string& text, v1::IntegrationFormat type) {
  if (type == v1::INTEGRATION_FORMAT_UNSPECIFIED) return text;
  const std::string typed = integrationFormatText(type);
  if (typed.empty()) {
    return absl::InvalidArgumentError(
        fmt::format("format_type: unknown value {} (expected alertmanager, falco or generic)",
                    static_cast<int>(type)));
  }
  if (!text.empty() && text != typed) {
    return absl::InvalidArgumentError(
        fmt::format("format: \"{}\" disagrees with format_type {}", text, typed));
  }
  return typed;
}

AuditEntry auditRow(const Clock& clock, const std::string& who, const std::string& tenant,
                    const std::string& action, const std::string& target, const std::string& reason,
                    const std::string& detail) {
  return AuditEntry{.at_unix_ms = clock.nowUnixMs(),
                    .operator_name = who,
                    .action = action,
                    .target = target,
                    .reason = escapeNonPrintable(reason),
                    .outcome = "ok",
                    .detail = detail,
                    .tenant = tenant};
}

}  // namespace

IntegrationService::IntegrationService(const Clock& clock, Store& store, ConfigCheck check_config)
    : clock_(clock), store_(store), check_config_(std::move(check_config)) {}

absl::StatusOr<IntegrationService::Created> IntegrationService::create(
    const Caller& caller, const std::string& name, const std::string& format_text,
    v1::IntegrationFormat format_type, const std::string& config_json) {
  const std::string action = auditAction(OperatorAction::kCreateIntegration);
  absl::Status check = authorize(caller, OperatorAction::kCreateIntegration);
  absl::StatusOr<std::string> tenant =
      check.ok() ? singleCallTenant(caller, "an integration") : absl::StatusOr<std::string>(check);
  check = tenant.status();
  if (check.ok()) check = checkName(name);
  auto format = chosenFormat(format_text, format_type);
  if (check.ok()) check = format.status();
  if (check.ok() && check_config_) check = check_config_(*format, config_json);
  if (!check.ok()) return recordCall(store_, clock_, auditActor(caller), action, name, "", check);
  unsigned char raw[kTokenBytes];
  if (RAND_bytes(raw, sizeof raw) != 1) {
    return recordCall(store_, clock_, auditActor(caller), action, name, "",
                      absl::InternalError("no random bytes from OpenSSL for the token"));
  }
  Created out;
  out.token = evidence::toHex(raw, sizeof raw);
  OPENSSL_cleanse(raw, sizeof raw);
  IntegrationRow row;
  row.token_sha256 = evidence::sha256Hex(out.token);
  row.record.set_name(name);
  row.record.set_format(*format);
  row.record.set_format_type(readIntegrationFormat(*format));
  row.record.set_config_json(config_json);
  row.record.set_created_unix_ms(clock_.nowUnixMs());
  row.record.set_created_by(caller.audit_name);
  row.record.set_tenant(*tenant);
  const std::string detail = fmt::format(
      "format {}{}; token sha256 {}", *format,
      config_json.empty() ? ""
                          : fmt::format(", config sha256 {}", evidence::sha256Hex(config_json)),
      row.token_sha256.substr(0, 16));
  absl::Status added = store_.addIntegration(
      row, auditRow(clock_, caller.audit_name, *tenant, action, name, "", detail));
  if (!added.ok()) {
    // Nothing was written (one transaction): record the refusal on its own.
    return recordCall(store_, clock_, auditActor(caller), action, name, "", added);
  }
  spdlog::info("integration {} ({}) created by {}", name, *format, caller.audit_name);
  out.integration = row.record;
  return out;
}

absl::StatusOr<std::vector<v1::Integration>> IntegrationService::list(const Caller& caller) {
  const std::string action = auditAction(OperatorAction::kListIntegrations);
  if (auto s = authorize(caller, OperatorAction::kListIntegrations); !s.ok()) {
    return recordCall(store_, clock_, auditActor(caller), action, "", "", s);
  }
  auto rows = store_.listIntegrations();
  if (auto s = recordCall(store_, clock_, auditActor(caller), action, "", "", rows.status());
      !s.ok()) {
    return s;
  }
  const std::vector<std::string> tenants = tenantsReadWhole(caller);
  std::vector<v1::Integration> out;
  for (auto& r : *rows) {
    const std::string tenant = tenantOrDefault(r.record.tenant());
    if (!readsEveryTenant(caller) &&
        std::find(tenants.begin(), tenants.end(), tenant) == tenants.end()) {
      continue;
    }
    fillTypedFields(r.record);
    out.push_back(std::move(r.record));
  }
  return out;
}

absl::StatusOr<v1::Integration> IntegrationService::revoke(const Caller& caller,
                                                           const std::string& name,
                                                           const std::string& reason) {
  const std::string action = auditAction(OperatorAction::kRevokeIntegration);
  absl::Status check = authorize(caller, OperatorAction::kRevokeIntegration);
  if (check.ok() && reason.empty()) {
    check = absl::InvalidArgumentError("reason: required (--reason)");
  }
  absl::StatusOr<std::optional<IntegrationRow>> found = std::optional<IntegrationRow>();
  if (check.ok()) {
    found = store_.findIntegration(name);
    if (!found.ok()) {
      check = found.status();
    } else if (!found->has_value() ||
               !inCallTenants(caller, tenantOrDefault((*found)->record.tenant()))) {
      // Another tenant's integration reads exactly as an unknown one.
      check = absl::NotFoundError(fmt::format("no integration \"{}\"", name));
    } else if ((*found)->record.revoked_unix_ms() != 0) {
      check =
          absl::FailedPreconditionError(fmt::format("integration \"{}\" is already revoked", name));
    }
  }
  if (!check.ok()) {
    return recordCall(store_, clock_, auditActor(caller), action, name, reason, check);
  }
  IntegrationRow row = std::move(**found);
  row.record.set_revoked_unix_ms(clock_.nowUnixMs());
  row.record.set_revoked_by(caller.audit_name);
  row.record.set_revoke_reason(reason);
  absl::Status updated = store_.updateIntegration(
      row, auditRow(clock_, caller.audit_name, tenantOrDefault(row.record.tenant()), action, name,
                    reason, fmt::format("format {}", row.record.format())));
  if (!updated.ok()) {
    return recordCall(store_, clock_, auditActor(caller), action, name, reason, updated);
  }
  spdlog::info("integration {} revoked by {}", name, caller.audit_name);
  fillTypedFields(row.record);
  return row.record;
}

absl::StatusOr<v1::Integration> IntegrationService::authenticate(const std::string& name,
                                                                 std::string_view token) {
  auto found = store_.findIntegration(name);
  if (!found.ok()) return found.status();
  if (!found->has_value()) return absl::NotFoundError(fmt::format("no integration \"{}\"", name));
  if (token.empty()) return absl::UnauthenticatedError("no bearer token");
  const std::string sha = evidence::sha256Hex(token);
  const std::string& want = (*found)->token_sha256;
  if (sha.size() != want.size() || CRYPTO_memcmp(sha.data(), want.data(), sha.size()) != 0) {
    return absl::UnauthenticatedError("wrong token");
  }
  if ((*found)->record.revoked_unix_ms() != 0) {
    return absl::UnauthenticatedError("the integration is revoked");
  }
  return std::move((*found)->record);
}

void IntegrationService::refused(const std::string& name, const std::string& peer,
                                 const std::string& why) {
  spdlog::warn("webhook: refused a request for \"{}\" from {}: {}", escapeNonPrintable(name), peer,
               why);
  // Only names of stored integrations get their own key (a lookup, not the caller's text).
  std::string key = kUnknownKey;
  std::string tenant = kDefaultTenant;  // an unknown name's rows: the install's
  if (auto found = store_.findIntegration(name); found.ok() && found->has_value()) {
    key = name;
    tenant = tenantOrDefault((*found)->record.tenant());
  }
  std::lock_guard lock(mu_);
  Refusals& r = refusals_[key];
  r.tenant = tenant;
  ++r.pending;
  r.last_why = why;
  r.last_peer = peer;
  if (r.last_row_unix_ms == 0 || clock_.nowUnixMs() - r.last_row_unix_ms >= kRefusalRowIntervalMs) {
    writeRefusalRow(key, r);
  }
}

void IntegrationService::flushRefusals() {
  std::lock_guard lock(mu_);
  for (auto& [key, r] : refusals_) {
    if (r.pending > 0) writeRefusalRow(key, r);
  }
}

void IntegrationService::writeRefusalRow(const std::string& key, Refusals& r) {
  AuditEntry e = auditRow(
      clock_, "webhook", r.tenant, kWebhookRefusedAuditAction,
      key == kUnknownKey ? key : fmt::format("integration:{}", key), "",
      fmt::format(
          "{} request(s) refused{}; last: {} from {}", r.pending,
          r.last_row_unix_ms == 0
              ? std::string()
              : fmt::format(" in the last {} s", (clock_.nowUnixMs() - r.last_row_unix_ms) / 1000),
          escapeNonPrintable(r.last_why), escapeNonPrintable(r.last_peer)));
  e.outcome = "denied";
  if (auto row = store_.appendAudit(e); !row.ok()) {
    spdlog::error("audit: cannot record refused webhook requests: {}", row.status());
    return;  // kept pending: counted in the next row
  }
  r.last_row_unix_ms = clock_.nowUnixMs();
  r.pending = 0;
}

}  // namespace bulkhead::controller
