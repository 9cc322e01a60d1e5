// Join tokens and enrollment: admins create tokens (`bulkhead tokens`), new servers redeem them
// for an agent certificate (`bulkhead-agent enroll`). The controller signs with the fleet CA's
// key, which it holds only when enrollment is on (`--ca-key`).
//
// A token is an id and a 32-byte secret; the store keeps the secret's SHA-256 only. A token
// carries labels, an expiry and a number of uses; each use enrolls one new host id, which no
// host known to the controller may already have (a token cannot take over an existing host).
// Every call is audited: the operator calls like every operator call, each enrollment with
// the host, the token and the certificate's serial, and refused enrollments at most once a
// minute per token (with the count), so an unauthenticated caller cannot flood the chain.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bulkhead/v1/enrollment.pb.h"
#include "common/pki/pki.h"
#include "controller/core/clock.h"
#include "controller/service/authorization.h"
#include "controller/store/store.h"

namespace bulkhead::controller {

// The audit action of enrollments and of (bounded) refused enrollment attempts.
inline constexpr char kAgentEnrollAuditAction[] = "agent-enroll";
// The audit action of certificate renewals over an agent's stream.
inline constexpr char kAgentRenewAuditAction[] = "agent-renew";
// The audit action of operators' enrollments with operator tokens (`bulkhead enroll`).
inline constexpr char kOperatorEnrollAuditAction[] = "operator-enroll";

// What makes a join token an operator token (`tokens create --operator NAME --role R`).
struct OperatorTokenSpec {
  std::string name;  // as asked; "@TENANT" is appended outside tenant "default"
  bulkhead::v1::OperatorRole role = bulkhead::v1::OPERATOR_ROLE_UNSPECIFIED;
  std::string hosts;  // a selector "k=v,..."; empty: every host of the tenant
};

// Renews agents' certificates over their authenticated streams. Thread-safe.
class AgentRenewal {
 public:
  virtual ~AgentRenewal() = default;
  // A new certificate (PEM) for agent `host_id` of `tenant` (its audit rows'), whose stream
  // presented certificate `serial`, for the key of `csr_pem`. FAILED_PRECONDITION when renewal is
  // off (no CA key); INVALID_ARGUMENT for a bad request; both audited. RESOURCE_EXHAUSTED,
  // unaudited, when this host asked less than kMinRenewalInterval ago (one audited answer a host
  // per interval).
  virtual absl::StatusOr<std::string> renew(const std::string& host_id, const std::string& tenant,
                                            const std::string& serial,
                                            const std::string& csr_pem) = 0;
};

// A host's renewal requests are answered (and audited) at most this often, so a misbehaving
// agent cannot flood the audit chain.
inline constexpr std::chrono::minutes kMinRenewalInterval{10};

struct EnrollmentOptions {
  // The fleet CA; its key signs enrolled agents' certificates. No key: enrollment is off
  // (tokens are refused at creation; listing and revoking still work).
  CertAndKey ca;
  std::string controller_name;
  std::vector<std::string> enroll_addresses;      // "IP:PORT" put in tokens
  std::vector<std::string> controller_addresses;  // "IP:PORT" agents stream to
  std::chrono::seconds agent_validity{std::chrono::hours(24 * 365)};
};

class EnrollmentService final : public AgentRenewal {
 public:
  // `options.ca`, when it has a key, is the CA's certificate and key (checked by the caller
  // at start-up).
  EnrollmentService(const Clock& clock, Store& store, EnrollmentOptions options);

  bool enabled() const { return !options_.ca.key_pem.empty(); }
  // Where new servers enroll ("IP:PORT"), known once the enrollment listener is bound; set
  // before the operator service serves.
  void setEnrollAddresses(std::vector<std::string> addresses) {
    options_.enroll_addresses = std::move(addresses);
  }

  struct Created {
    bulkhead::v1::JoinToken token;
    std::string text;  // the whole token (formatJoinToken); shown once
  };
  // Admins only. FAILED_PRECONDITION when enrollment is off; INVALID_ARGUMENT naming the field: a
  // label, ttl (60 s .. 30 days), uses (1 .. 100000), a missing reason. With `op`, an operator
  // token: one use, no labels, a valid name, role and selector (makeRoleBinding's checks);
  // ALREADY_EXISTS when an operator of that name has bindings already.
  absl::StatusOr<Created> createToken(const Caller& caller,
                                      const std::map<std::string, std::string>& labels,
                                      uint32_t ttl_seconds, uint32_t max_uses,
                                      const std::string& reason,
                                      const std::optional<OperatorTokenSpec>& op = std::nullopt);
  absl::StatusOr<std::vector<bulkhead::v1::JoinToken>> listTokens(const Caller& caller);
  // NOT_FOUND for an unknown id; FAILED_PRECONDITION when already revoked.
  absl::StatusOr<bulkhead::v1::JoinToken> revokeToken(const Caller& caller,
                                                      const std::string& token_id,
                                                      const std::string& reason);

  const std::string& caPem() const { return options_.ca.cert_pem; }

  // Redeems one use of `token_text` for a certificate for `host_id` with the key of `csr_pem`.
  // An operator token issues an operator certificate (role none) for the token's operator name
  // (`host_id` empty or that name) and adds its role binding in the same transaction;
  // ALREADY_EXISTS when that name enrolled or holds a binding since the token was made.
  // `peer` (the caller's address) is for the audit row. INVALID_ARGUMENT for a malformed
  // token, host id or request; PERMISSION_DENIED for an unknown, wrong, revoked, expired or
  // used-up token; ALREADY_EXISTS for a host id the controller knows. Each message is one line.
  absl::StatusOr<bulkhead::v1::EnrollResponse> enroll(const std::string& token_text,
                                                      const std::string& host_id,
                                                      const std::string& csr_pem,
                                                      const std::string& peer);

  absl::StatusOr<std::string> renew(const std::string& host_id, const std::string& tenant,
                                    const std::string& serial, const std::string& csr_pem) override;

  // A new certificate for the calling operator's key (`csr_pem`): the same name and certificate
  // role, the enrolled identities' validity. FAILED_PRECONDITION when renewal is off (no CA
  // key); INVALID_ARGUMENT for a bad request; RESOURCE_EXHAUSTED (unaudited) when asked again
  // within minRenewalInterval(). Audited as operator-renew.
  absl::StatusOr<std::string> renewOperator(const Caller& caller, const std::string& csr_pem);

  // How often one identity's renewal is answered: kMinRenewalInterval, or a quarter of the
  // validity when that is shorter (a lab's two-minute certificates renew every 30 s).
  std::chrono::milliseconds minRenewalInterval() const;

 private:
  // Audits a refused enrollment unless this token's last refusal row is under a minute old
  // (then counted into the next row). Returns `why`.
  absl::Status refuse(const std::string& key, const std::string& peer, const std::string& host_id,
                      const absl::Status& why);

  const Clock& clock_;
  Store& store_;
  EnrollmentOptions options_;

  struct Refusals {
    int64_t last_row_unix_ms = 0;
    uint64_t unrecorded = 0;
  };
  std::mutex mu_;
  std::map<std::string, Refusals> refusals_;  // by token id; bounded (kMaxRefusalKeys)
  // Whether `key` (a host id, or "operator:" and a name) may be answered now: records the time.
  bool renewalDue(const std::string& key, int64_t now_unix_ms);
  // An operator token's binding as checked at creation (INVALID_ARGUMENT naming the field;
  // ALREADY_EXISTS when the name holds a role).
  absl::StatusOr<bulkhead::v1::RoleBinding> operatorBinding(
      const Caller& caller, const std::map<std::string, std::string>& labels, uint32_t max_uses,
      const std::string& reason, const OperatorTokenSpec& op, int64_t now_unix_ms);
  absl::StatusOr<bulkhead::v1::EnrollResponse> enrollOperator(const JoinTokenRow& token,
                                                              const std::string& secret_sha256,
                                                              const std::string& csr_pem,
                                                              const std::string& peer);

  std::map<std::string, int64_t> last_renewal_ms_;  // by host id, "operator:NAME"
};

// Whether `token` may be redeemed at `now_unix_ms` for a host (`host_known`: the id is taken):
// OK or the PERMISSION_DENIED / ALREADY_EXISTS refusal, one line. Pure; the store's redeem
// transaction asks it again.
absl::Status checkRedeemable(const JoinTokenRow& token, const std::string& secret_sha256,
                             const std::string& host_id, bool host_known, int64_t now_unix_ms);

}  // namespace bulkhead::controller
