#include "controller/service/notifications.h"

#include <optional>

#include "common/format.h"
#include "common/identity.h"
#include "common/text.h"
#include "controller/service/audit.h"
#include "controller/service/tenancy.h"

namespace bulkhead::controller {

namespace {

// Whether the call may see `channel`: one of its tenants', or a "*" channel for a call across
// tenants.
bool visible(const Caller& caller, const ChannelSummary& channel) {
  if (channel.tenant == kEveryTenant) return caller.all_tenants;
  return inCallTenants(caller, channel.tenant);
}

}  // namespace

NotificationService::NotificationService(const Clock& clock, Store& store,
                                         NotificationBackend* backend)
    : clock_(clock), store_(store), backend_(backend) {}

absl::StatusOr<std::vector<ChannelSummary>> NotificationService::channels(const Caller& caller) {
  absl::Status status = authorize(caller, OperatorAction::kListNotifyChannels);
  std::vector<ChannelSummary> out;
  if (status.ok() && backend_ != nullptr) {
    for (ChannelSummary& c : backend_->channels()) {
      if (visible(caller, c)) out.push_back(std::move(c));
    }
  }
  status = recordCall(store_, clock_, auditActor(caller),
                      auditAction(OperatorAction::kListNotifyChannels), "*", "", status,
                      status.ok() ? fmt::format("{} channels", out.size()) : "");
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<ChannelSummary> NotificationService::test(const Caller& caller,
                                                         const std::string& channel) {
  absl::Status status = authorize(caller, OperatorAction::kTestNotify);
  std::string detail;
  std::optional<ChannelSummary> found;
  if (status.ok()) {
    std::vector<ChannelSummary> all;
    if (backend_ != nullptr) all = backend_->channels();
    for (ChannelSummary& c : all) {
      if (c.name == channel && visible(caller, c)) found = std::move(c);
    }
    if (!found) {
      status = absl::NotFoundError(fmt::format(
          "unknown notification channel \"{}\" in {} (bulkhead notify channels lists them)",
          escapeNonPrintable(channel), tenantsText(caller)));
    } else {
      status = backend_->sendTest(channel, found->tenant, auditActor(caller).name);
      detail = status.ok()
                   ? fmt::format("test event delivered to {} ({})", found->type, found->destination)
                   : "";
    }
  }
  status = recordCall(store_, clock_, auditActor(caller), auditAction(OperatorAction::kTestNotify),
                      channel, "", status, detail);
  if (!status.ok()) return status;
  return *std::move(found);
}

}  // namespace bulkhead::controller
