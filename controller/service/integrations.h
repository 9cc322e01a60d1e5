// Webhook integrations: who may post signals to the controller's HTTPS listener
// (controller/webhook/listener.h), each with its own bearer token and payload format.
//
// IntegrationService is both the operator side (`bulkhead integrations`: create, list,
// revoke; authorized and audited like every operator call) and the listener's
// IntegrationDirectory (token checks, refused requests). A token is 32 random bytes (64 hex
// digits), returned by create() only; the store keeps its SHA-256.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "bulkhead/v1/signals.pb.h"
#include "controller/core/clock.h"
#include "controller/service/authorization.h"
#include "controller/store/store.h"

namespace bulkhead::controller {

// The audit action of the (bounded) rows recording refused webhook requests.
inline constexpr char kWebhookRefusedAuditAction[] = "webhook-refused";

// What the webhook listener needs to know about integrations. Thread-safe.
class IntegrationDirectory {
 public:
  virtual ~IntegrationDirectory() = default;
  // The integration `name` when `token` is its bearer token and it is not revoked.
  // NOT_FOUND when there is no such integration, UNAUTHENTICATED when the token is missing,
  // wrong or revoked; another error when the store cannot be read.
  virtual absl::StatusOr<bulkhead::v1::Integration> authenticate(const std::string& name,
                                                                 std::string_view token) = 0;
  // Records a refused request (`why`: "unknown integration", "wrong token", "revoked",
  // "rate limit", ...) from `peer`: logged, and audited at most once a minute per
  // integration with the count of refusals since its last row, so a flood of refusals cannot
  // flood the audit chain.
  virtual void refused(const std::string& name, const std::string& peer,
                       const std::string& why) = 0;
};

class IntegrationService final : public IntegrationDirectory {
 public:
  // `check_config(format, config_json)`: whether the format and its configuration are
  // usable (controller/webhook/formats.h), checked before an integration is stored.
  using ConfigCheck = std::function<absl::Status(const std::string&, const std::string&)>;
  IntegrationService(const Clock& clock, Store& store, ConfigCheck check_config);

  struct Created {
    bulkhead::v1::Integration integration;
    std::string token;  // shown once
  };
  // The format is `format` (its text, as older CLIs send it) or `format_type`; both given, they
  // must agree. ALREADY_EXISTS when the name is taken (revoked names stay taken);
  // INVALID_ARGUMENT naming the field.
  absl::StatusOr<Created> create(const Caller& caller, const std::string& name,
                                 const std::string& format,
                                 bulkhead::v1::IntegrationFormat format_type,
                                 const std::string& config_json);
  absl::StatusOr<std::vector<bulkhead::v1::Integration>> list(const Caller& caller);
  // NOT_FOUND for an unknown name; FAILED_PRECONDITION when already revoked; INVALID_ARGUMENT
  // without a reason.
  absl::StatusOr<bulkhead::v1::Integration> revoke(const Caller& caller, const std::string& name,
                                                   const std::string& reason);

  absl::StatusOr<bulkhead::v1::Integration> authenticate(const std::string& name,
                                                         std::string_view token) override;
  void refused(const std::string& name, const std::string& peer, const std::string& why) override;

  // The refusal counts not yet audited are written out when a minute has passed since the
  // integration's last refusal row; flush() writes every pending one now (shutdown, tests).
  void flushRefusals();

 private:
  struct Refusals {
    int64_t last_row_unix_ms = 0;
    uint64_t pending = 0;  // refused since the last row
    std::string last_why;
    std::string last_peer;
    std::string tenant;  // the integration's: its refusal rows go there
  };
  void writeRefusalRow(const std::string& key, Refusals& r);  // REQUIRES: mu_ held

  const Clock& clock_;
  Store& store_;
  const ConfigCheck check_config_;
  std::mutex mu_;
  std::map<std::string, Refusals> refusals_;  // GUARDED_BY(mu_); at most kMaxRefusalKeys
};

}  // namespace bulkhead::controller
