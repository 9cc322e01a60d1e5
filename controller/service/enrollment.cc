#include "controller/service/enrollment.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include "common/certificate.h"
#include "common/format.h"
#include "common/identity.h"
#include "common/join_token.h"
#include "common/parse.h"
#include "common/text.h"
#include "controller/service/audit.h"
#include "controller/service/tenancy.h"
#include "controller/service/tenants.h"
#include "evidence/hash.h"

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;

// A token's tenant; tokens made before tenants carry none and enroll into "default".
std::string tenantOf(const v1::JoinToken& token) {
  return token.tenant().empty() ? std::string(kDefaultTenant) : token.tenant();
}

constexpr uint32_t kMinTtlSeconds = 60;
constexpr uint32_t kMaxTtlSeconds = 30 * 24 * 3600;
constexpr uint32_t kDefaultTtlSeconds = 3600;
constexpr uint32_t kMaxUses = 100'000;
constexpr size_t kMaxLabels = 32;
constexpr int64_t kRefusalRowIntervalMs = int64_t{60} * 1000;
constexpr size_t kMaxRefusalKeys = 1000;
constexpr char kOtherRefusals[] = "(other tokens)";

std::string randomHex(size_t bytes) {
  std::vector<unsigned char> raw(bytes);
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) return {};
  std::string hex = evidence::toHex(raw.data(), raw.size());
  OPENSSL_cleanse(raw.data(), raw.size());
  return hex;
}

std::string labelText(const std::map<std::string, std::string>& labels) {
  const std::string out = labelsText(labels);
  return out.empty() ? "(none)" : out;
}

}  // namespace

absl::Status checkRedeemable(const JoinTokenRow& token, const std::string& secret_sha256,
                             const std::string& host_id, bool host_known, int64_t now_unix_ms) {
  const v1::JoinToken& t = token.record;
  // The secret first: without it, nothing about the token is told.
  if (secret_sha256 != token.secret_sha256) {
    return absl::PermissionDeniedError(fmt::format(
        "join token {} is not valid here (unknown, or its secret does not match)", t.token_id()));
  }
  if (t.revoked_unix_ms() != 0) {
    return absl::PermissionDeniedError(
        fmt::format("join token {} was revoked at {}: ask an "
                    "admin for a new one",
                    t.token_id(), utcTimeText(t.revoked_unix_ms())));
  }
  if (now_unix_ms >= t.expires_unix_ms()) {
    return absl::PermissionDeniedError(
        fmt::format("join token {} expired at {}: ask an admin for a new one", t.token_id(),
                    utcTimeText(t.expires_unix_ms())));
  }
  if (t.uses() >= t.max_uses()) {
    return absl::PermissionDeniedError(fmt::format("join token {} is used up ({} of {} uses)",
                                                   t.token_id(), t.uses(), t.max_uses()));
  }
  if (host_known && !t.operator_name().empty()) {
    return absl::AlreadyExistsError(fmt::format(
        "operator \"{}\" is already enrolled or holds a role: ask an admin for a token with "
        "another --operator name (a token never takes over an existing operator)",
        t.operator_name()));
  }
  if (host_known) {
    return absl::AlreadyExistsError(
        fmt::format("host id \"{}\" is already enrolled or known to the controller: choose another "
                    "--host-id (a token never takes over an existing host)",
                    host_id));
  }
  return absl::OkStatus();
}

EnrollmentService::EnrollmentService(const Clock& clock, Store& store, EnrollmentOptions options)
    : clock_(clock), store_(store), options_(std::move(options)) {}

absl::StatusOr<EnrollmentService::Created> EnrollmentService::createToken(
    const Caller& caller, const std::map<std::string, std::string>& labels, uint32_t ttl_seconds,
    uint32_t max_uses, const std::string& reason, const std::optional<OperatorTokenSpec>& op) {
  const std::string action = auditAction(OperatorAction::kCreateJoinToken);
  if (ttl_seconds == 0) ttl_seconds = kDefaultTtlSeconds;
  if (max_uses == 0) max_uses = 1;
  absl::Status check = authorize(caller, OperatorAction::kCreateJoinToken);
  if (check.ok() && callTenants(caller).size() != 1) {
    check = absl::InvalidArgumentError(
        "tenant: a join token enrolls hosts into one tenant: choose it with --tenant NAME");
  }
  if (check.ok() && !enabled()) {
    check = absl::FailedPreconditionError(
        "enrollment is off on this controller: start it with --enroll-listen ADDR:PORT and "
        "--ca-key FILE (the fleet CA's key, pki/ca/ca.key)");
  }
  if (check.ok() && options_.enroll_addresses.empty()) {
    check = absl::FailedPreconditionError(
        "no enrollment address to put in the token: the controller certificate names no IP "
        "address (issue it with `pki init --controller-ip IP`)");
  }
  if (check.ok() && reason.empty()) check = absl::InvalidArgumentError("reason: required");
  if (check.ok() && (ttl_seconds < kMinTtlSeconds || ttl_seconds > kMaxTtlSeconds)) {
    check = absl::InvalidArgumentError(
        fmt::format("ttl: {} s is out of range (60 s to 30 days)", ttl_seconds));
  }
  if (check.ok() && max_uses > kMaxUses) {
    check = absl::InvalidArgumentError(fmt::format("uses: {} is more than {}", max_uses, kMaxUses));
  }
  if (check.ok() && labels.size() > kMaxLabels) {
    check = absl::InvalidArgumentError(
        fmt::format("labels: {} labels, at most {}", labels.size(), kMaxLabels));
  }
  for (const auto& [k, v] : labels) {
    if (!check.ok()) break;
    check = parseLabel("labels", fmt::format("{}={}", k, v)).status();
  }
  const int64_t now = clock_.nowUnixMs();
  std::optional<v1::RoleBinding> binding;  // an operator token's, as it will be granted
  if (check.ok() && op.has_value()) {
    auto made = operatorBinding(caller, labels, max_uses, reason, *op, now);
    if (made.ok()) {
      binding = *std::move(made);
    } else {
      check = made.status();
    }
  }
  if (!check.ok()) return recordCall(store_, clock_, auditActor(caller), action, "", reason, check);

  const std::string id = "jt-" + randomHex(8);
  const std::string secret = randomHex(32);
  auto pin = certificateSha256(options_.ca.cert_pem);
  if (id.size() != 19 || secret.empty() || !pin.ok()) {
    return recordCall(store_, clock_, auditActor(caller), action, "", reason,
                      absl::InternalError("no random bytes or no CA pin for the token"));
  }
  JoinTokenRow row;
  row.secret_sha256 = evidence::sha256Hex(secret);
  v1::JoinToken& t = row.record;
  t.set_token_id(id);
  for (const auto& [k, v] : labels) (*t.mutable_labels())[k] = v;
  t.set_expires_unix_ms(now + int64_t{ttl_seconds} * 1000);
  t.set_max_uses(max_uses);
  t.set_created_unix_ms(now);
  t.set_created_by(caller.audit_name);
  t.set_tenant(callTenants(caller).front());
  std::string what = fmt::format("labels {}", labelText(labels));
  if (binding.has_value()) {
    t.set_operator_name(binding->operator_name());
    t.set_operator_role(binding->role());
    t.set_operator_hosts(binding->hosts());
    what = fmt::format("operator {} as {} on {}", binding->operator_name(), binding->role_name(),
                       binding->hosts().empty() ? "every host" : "hosts " + binding->hosts());
  }
  const std::string detail =
      fmt::format("tenant {}; {}; expires {}; {} use{}", t.tenant(), what,
                  utcTimeText(t.expires_unix_ms()), max_uses, max_uses == 1 ? "" : "s");
  AuditEntry audit =
      callEntry(now, auditActor(caller), action, id, reason, absl::OkStatus(), detail);
  if (absl::Status added = store_.addJoinToken(row, audit); !added.ok()) {
    return recordCall(store_, clock_, auditActor(caller), action, id, reason, added);
  }
  spdlog::info("join token {} created by {}: {}", id, caller.audit_name, detail);
  Created out{.token = t,
              .text = formatJoinToken(JoinTokenText{.token_id = id,
                                                    .secret = secret,
                                                    .enroll_addresses = options_.enroll_addresses,
                                                    .controller_name = options_.controller_name,
                                                    .ca_sha256 = *pin})};
  return out;
}

absl::StatusOr<v1::RoleBinding> EnrollmentService::operatorBinding(
    const Caller& caller, const std::map<std::string, std::string>& labels, uint32_t max_uses,
    const std::string& reason, const OperatorTokenSpec& op, int64_t now_unix_ms) {
  if (!labels.empty()) {
    return absl::InvalidArgumentError(
        "labels: an operator token carries none (labels are hosts'; the operator's reach is "
        "its --hosts selector)");
  }
  if (max_uses != 1) {
    return absl::InvalidArgumentError(
        fmt::format("uses: an operator token enrolls one operator, not {}", max_uses));
  }
  if (!isValidName(op.name)) {
    return absl::InvalidArgumentError(
        fmt::format("operator: invalid value \"{}\": use 1-63 characters of [A-Za-z0-9._-], "
                    "not starting with '.' or '-'",
                    escapeNonPrintable(op.name.substr(0, 64))));
  }
  const std::string tenant = callTenants(caller).front();
  const std::string name = operatorNameInTenant(op.name, tenant);
  auto binding =
      makeRoleBinding(name, tenant, op.role, op.hosts, caller.audit_name, reason, now_unix_ms);
  if (!binding.ok()) return binding.status();
  auto held = store_.listRoleBindings(name);
  if (!held.ok()) return held.status();
  if (!held->empty()) {
    return absl::AlreadyExistsError(fmt::format(
        "operator \"{}\" holds a role already: grant it more with `bulkhead access grant`, or "
        "choose another name",
        name));
  }
  return binding;
}

absl::StatusOr<std::vector<v1::JoinToken>> EnrollmentService::listTokens(const Caller& caller) {
  const std::string action = auditAction(OperatorAction::kListJoinTokens);
  if (auto s = authorize(caller, OperatorAction::kListJoinTokens); !s.ok()) {
    return recordCall(store_, clock_, auditActor(caller), action, "", "", s);
  }
  auto rows = store_.listJoinTokens();
  if (auto s = recordCall(store_, clock_, auditActor(caller), action, "", "", rows.status());
      !s.ok()) {
    return s;
  }
  std::vector<v1::JoinToken> out;
  for (JoinTokenRow& r : *rows) {
    if (inCallTenants(caller, tenantOf(r.record))) out.push_back(std::move(r.record));
  }
  return out;
}

absl::StatusOr<v1::JoinToken> EnrollmentService::revokeToken(const Caller& caller,
                                                             const std::string& token_id,
                                                             const std::string& reason) {
  const std::string action = auditAction(OperatorAction::kRevokeJoinToken);
  absl::Status check = authorize(caller, OperatorAction::kRevokeJoinToken);
  if (check.ok() && reason.empty()) check = absl::InvalidArgumentError("reason: required");
  absl::StatusOr<std::optional<JoinTokenRow>> found = std::optional<JoinTokenRow>();
  if (check.ok()) {
    found = store_.findJoinToken(token_id);
    if (!found.ok()) {
      check = found.status();
    } else if (!found->has_value() || !inCallTenants(caller, tenantOf((*found)->record))) {
      // Another tenant's token reads exactly as an unknown one.
      check = absl::NotFoundError(fmt::format("no join token \"{}\"", token_id));
    } else if ((*found)->record.revoked_unix_ms() != 0) {
      check =
          absl::FailedPreconditionError(fmt::format("join token {} is already revoked", token_id));
    }
  }
  if (!check.ok()) {
    return recordCall(store_, clock_, auditActor(caller), action, token_id, reason, check);
  }
  JoinTokenRow row = **std::move(found);
  const int64_t now = clock_.nowUnixMs();
  row.record.set_revoked_unix_ms(now);
  row.record.set_revoked_by(caller.audit_name);
  row.record.set_revoke_reason(reason);
  AuditEntry audit =
      callEntry(now, auditActor(caller), action, token_id, reason, absl::OkStatus(),
                fmt::format("{} of {} uses made", row.record.uses(), row.record.max_uses()));
  if (absl::Status s = store_.updateJoinToken(row, audit); !s.ok()) {
    return recordCall(store_, clock_, auditActor(caller), action, token_id, reason, s);
  }
  spdlog::info("join token {} revoked by {}", token_id, caller.audit_name);
  return row.record;
}

absl::Status EnrollmentService::refuse(const std::string& key, const std::string& peer,
                                       const std::string& host_id, const absl::Status& why) {
  spdlog::warn("enrollment refused (from {}, host id \"{}\"): {}", peer,
               escapeNonPrintable(host_id.substr(0, 64)), why.message());
  const int64_t now = clock_.nowUnixMs();
  uint64_t counted = 0;
  {
    std::lock_guard lock(mu_);
    std::string slot = key;
    if (!refusals_.contains(slot) && refusals_.size() >= kMaxRefusalKeys) slot = kOtherRefusals;
    Refusals& r = refusals_[slot];
    ++r.unrecorded;
    if (r.last_row_unix_ms != 0 && now - r.last_row_unix_ms < kRefusalRowIntervalMs) return why;
    r.last_row_unix_ms = now;
    counted = r.unrecorded;
    r.unrecorded = 0;
  }
  const std::string detail = fmt::format("from {}; {} refusal{} since the last row of this token",
                                         peer, counted, counted == 1 ? "" : "s");
  (void)recordCall(store_, clock_,
                   AuditActor{.name = "enroll:" + escapeNonPrintable(host_id.substr(0, 64))},
                   kAgentEnrollAuditAction, key, "", why, detail);
  return why;
}

absl::StatusOr<v1::EnrollResponse> EnrollmentService::enroll(const std::string& token_text,
                                                             const std::string& host_id,
                                                             const std::string& csr_pem,
                                                             const std::string& peer) {
  auto token = parseJoinToken(token_text);
  if (!token.ok()) return refuse("(malformed)", peer, host_id, token.status());
  const std::string& id = token->token_id;
  const std::string secret_sha256 = evidence::sha256Hex(token->secret);
  const int64_t now = clock_.nowUnixMs();
  // A first look, so a refused token costs no signature; the redeem transaction checks again.
  auto found = store_.findJoinToken(id);
  if (!found.ok()) return found.status();
  if (!found->has_value()) {
    return refuse(
        id, peer, host_id,
        absl::PermissionDeniedError(fmt::format(
            "join token {} is not valid here (unknown, or its secret does not match)", id)));
  }
  if (auto s = checkRedeemable(**found, secret_sha256, host_id, false, now); !s.ok()) {
    return refuse(id, peer, host_id, s);
  }
  const std::string& operator_name = (*found)->record.operator_name();
  if (!operator_name.empty()) {
    if (!host_id.empty() && host_id != operator_name) {
      return refuse(id, peer, host_id,
                    absl::InvalidArgumentError(
                        fmt::format("join token {} enrolls operator \"{}\", not \"{}\"", id,
                                    operator_name, escapeNonPrintable(host_id.substr(0, 64)))));
    }
    return enrollOperator(**found, secret_sha256, csr_pem, peer);
  }
  if (!isValidName(host_id)) {
    return refuse(id, peer, host_id,
                  absl::InvalidArgumentError(fmt::format(
                      "host id \"{}\": use 1-63 characters of [A-Za-z0-9._-], not starting with "
                      "'.' or '-'",
                      escapeNonPrintable(host_id.substr(0, 64)))));
  }
  CertRequest request{
      .kind = PeerKind::kAgent, .name = host_id, .validity = options_.agent_validity};
  auto cert = issueCertForCsr(options_.ca, csr_pem, request);
  if (!cert.ok()) return refuse(id, peer, host_id, cert.status());
  auto identity = identityFromCertPem(*cert);
  if (!identity.ok()) return identity.status();

  std::map<std::string, std::string> labels((*found)->record.labels().begin(),
                                            (*found)->record.labels().end());
  EnrollmentRow enrollment{.host_id = host_id,
                           .token_id = id,
                           .serial = identity->serial,
                           .labels = labels,
                           .enrolled_unix_ms = now,
                           .tenant = tenantOf((*found)->record)};
  AuditEntry audit =
      callEntry(now, AuditActor{.name = "enroll:" + host_id, .tenant = enrollment.tenant},
                kAgentEnrollAuditAction, host_id, id, absl::OkStatus(),
                fmt::format("from {}; token {}; serial {}; tenant {}; labels {}", peer, id,
                            identity->serial, enrollment.tenant, labelText(labels)));
  auto redeemed = store_.redeemJoinToken(
      enrollment,
      [&](const JoinTokenRow& row, bool host_known) {
        return checkRedeemable(row, secret_sha256, host_id, host_known, now);
      },
      audit);
  if (!redeemed.ok()) {
    if (absl::IsPermissionDenied(redeemed.status()) || absl::IsAlreadyExists(redeemed.status())) {
      return refuse(id, peer, host_id, redeemed.status());
    }
    return redeemed.status();  // the store failed: nothing issued, nothing counted
  }
  spdlog::info("host {} enrolled from {} with join token {} (serial {}, use {} of {})", host_id,
               peer, id, identity->serial, redeemed->record.uses(), redeemed->record.max_uses());
  v1::EnrollResponse out;
  out.set_cert_pem(*cert);
  out.set_ca_pem(options_.ca.cert_pem);
  out.set_controller_name(options_.controller_name);
  for (const std::string& a : options_.controller_addresses) out.add_controller_addresses(a);
  for (const auto& [k, v] : labels) (*out.mutable_labels())[k] = v;
  out.set_token_id(id);
  return out;
}

absl::StatusOr<v1::EnrollResponse> EnrollmentService::enrollOperator(
    const JoinTokenRow& token, const std::string& secret_sha256, const std::string& csr_pem,
    const std::string& peer) {
  const v1::JoinToken& t = token.record;
  const std::string& id = t.token_id();
  const std::string& name = t.operator_name();
  const int64_t now = clock_.nowUnixMs();
  // The binding as the token's creator made it; checked again, as the store may be older.
  auto binding = makeRoleBinding(name, tenantOf(t), t.operator_role(), t.operator_hosts(),
                                 t.created_by(), fmt::format("operator token {}", id), now);
  if (!binding.ok()) return refuse(id, peer, name, binding.status());
  auto cert = issueCertForCsr(options_.ca, csr_pem,
                              CertRequest{.kind = PeerKind::kOperator,
                                          .name = name,
                                          .role = Role::kNone,
                                          .validity = options_.agent_validity});
  if (!cert.ok()) return refuse(id, peer, name, cert.status());
  auto identity = identityFromCertPem(*cert);
  if (!identity.ok()) return identity.status();
  const OperatorEnrollmentRow row{.name = name,
                                  .token_id = id,
                                  .serial = identity->serial,
                                  .enrolled_unix_ms = now,
                                  .binding = *binding};
  const std::string reach = binding->hosts().empty() ? "every host" : "hosts " + binding->hosts();
  AuditEntry audit =
      callEntry(now, AuditActor{.name = "enroll:" + name, .tenant = binding->tenant()},
                kOperatorEnrollAuditAction, name, id, absl::OkStatus(),
                fmt::format("from {}; token {}; serial {}; tenant {}; {} {} on {}", peer, id,
                            identity->serial, binding->tenant(), binding->binding_id(),
                            binding->role_name(), reach));
  auto redeemed = store_.redeemOperatorToken(
      row,
      [&](const JoinTokenRow& r, bool known) {
        return checkRedeemable(r, secret_sha256, name, known, now);
      },
      audit);
  if (!redeemed.ok()) {
    if (absl::IsPermissionDenied(redeemed.status()) || absl::IsAlreadyExists(redeemed.status())) {
      return refuse(id, peer, name, redeemed.status());
    }
    return redeemed.status();  // the store failed: nothing issued, nothing counted
  }
  spdlog::info("operator {} enrolled from {} with operator token {} (serial {}; {} in {} on {})",
               name, peer, id, identity->serial, binding->role_name(), binding->tenant(), reach);
  v1::EnrollResponse out;
  out.set_cert_pem(*cert);
  out.set_ca_pem(options_.ca.cert_pem);
  out.set_controller_name(options_.controller_name);
  for (const std::string& a : options_.controller_addresses) out.add_controller_addresses(a);
  out.set_token_id(id);
  out.set_operator_name(name);
  *out.mutable_binding() = *binding;
  return out;
}

std::chrono::milliseconds EnrollmentService::minRenewalInterval() const {
  return std::min<std::chrono::milliseconds>(kMinRenewalInterval, options_.agent_validity / 4);
}

bool EnrollmentService::renewalDue(const std::string& key, int64_t now_unix_ms) {
  std::lock_guard lock(mu_);
  auto it = last_renewal_ms_.find(key);
  if (it != last_renewal_ms_.end() && now_unix_ms - it->second < minRenewalInterval().count()) {
    return false;
  }
  last_renewal_ms_[key] = now_unix_ms;
  return true;
}

absl::StatusOr<std::string> EnrollmentService::renewOperator(const Caller& caller,
                                                             const std::string& csr_pem) {
  const std::string action = auditAction(OperatorAction::kRenewOperatorCertificate);
  if (auto s = authorize(caller, OperatorAction::kRenewOperatorCertificate); !s.ok()) {
    return recordCall(store_, clock_, auditActor(caller), action, "", "", s);
  }
  const int64_t now = clock_.nowUnixMs();
  // As for agents: one request an operator per interval is answered and audited.
  if (!renewalDue("operator:" + caller.audit_name, now)) {
    return absl::ResourceExhaustedError(fmt::format(
        "asked less than {} s ago: ask again later",
        std::chrono::duration_cast<std::chrono::seconds>(minRenewalInterval()).count()));
  }
  absl::StatusOr<std::string> cert =
      enabled() ? issueCertForCsr(options_.ca, csr_pem,
                                  CertRequest{.kind = PeerKind::kOperator,
                                              .name = caller.audit_name,
                                              .role = caller.role,
                                              .validity = options_.agent_validity})
                : absl::StatusOr<std::string>(absl::FailedPreconditionError(
                      "certificate renewal is off on this controller (it has no --ca-key): "
                      "renew with `bulkhead pki issue operator --replace`"));
  if (!cert.ok()) {
    return recordCall(store_, clock_, auditActor(caller), action, caller.audit_name, "",
                      cert.status(), fmt::format("serial {}", caller.cert_serial));
  }
  auto issued = identityFromCertPem(*cert);
  if (!issued.ok()) return issued.status();
  if (auto s = recordCall(store_, clock_, auditActor(caller), action, caller.audit_name, "",
                          absl::OkStatus(),
                          fmt::format("serial {} -> {}, not after {}", caller.cert_serial,
                                      issued->serial, utcTimeText(issued->not_after_unix * 1000)));
      !s.ok()) {
    return s;  // not audited: not issued
  }
  spdlog::info("certificate of operator {} renewed: serial {} -> {}", caller.audit_name,
               caller.cert_serial, issued->serial);
  return cert;
}

absl::StatusOr<std::string> EnrollmentService::renew(const std::string& host_id,
                                                     const std::string& tenant,
                                                     const std::string& serial,
                                                     const std::string& csr_pem) {
  const AuditActor who{.name = "agent:" + host_id, .tenant = tenant};
  const int64_t now = clock_.nowUnixMs();
  // One request a host per interval gets an answer and an audit row, whatever it is; the rest
  // are refused unaudited, so a misbehaving agent cannot flood the chain.
  if (!renewalDue(host_id, now)) {
    spdlog::debug("certificate renewal of {}: asked again too soon", host_id);
    return absl::ResourceExhaustedError("asked again too soon: retried later");
  }
  absl::StatusOr<std::string> cert =
      enabled() ? issueCertForCsr(options_.ca, csr_pem,
                                  CertRequest{.kind = PeerKind::kAgent,
                                              .name = host_id,
                                              .validity = options_.agent_validity})
                : absl::StatusOr<std::string>(absl::FailedPreconditionError(
                      "certificate renewal is off on this controller (it has no --ca-key): "
                      "renew with `bulkhead pki issue agent --replace`"));
  if (!cert.ok()) {
    spdlog::warn("certificate renewal of {} refused: {}", host_id, cert.status().message());
    if (auto s = recordCall(store_, clock_, who, kAgentRenewAuditAction, host_id, "", cert.status(),
                            fmt::format("serial {}", serial));
        !s.ok()) {
      return s;
    }
    return cert.status();
  }
  auto issued = identityFromCertPem(*cert);
  if (!issued.ok()) return issued.status();
  if (auto s =
          recordCall(store_, clock_, who, kAgentRenewAuditAction, host_id, "", absl::OkStatus(),
                     fmt::format("serial {} -> {}, not after {}", serial, issued->serial,
                                 utcTimeText(issued->not_after_unix * 1000)));
      !s.ok()) {
    return s;  // not audited: not issued
  }
  spdlog::info("certificate of {} renewed: serial {} -> {}", host_id, serial, issued->serial);
  return cert;
}

}  // namespace bulkhead::controller
