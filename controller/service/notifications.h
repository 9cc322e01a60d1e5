// Notification channels as operator calls: `bulkhead notify channels` (each channel of the
// caller's tenants, with its queue) and `bulkhead notify test CHANNEL` (a test event sent at
// once). The channels and the deliveries are controller/notify/'s, behind NotificationBackend.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "controller/core/clock.h"
#include "controller/service/authorization.h"
#include "controller/store/store.h"

namespace bulkhead::controller {

struct ChannelSummary {
  std::string name;
  std::string type;                // slack, webhook, email
  std::string tenant;              // "*": every tenant's events
  std::string destination;         // the URL's or SMTP server's scheme, host and port (no path: a
                                   // Slack URL's path is its secret)
  std::vector<std::string> kinds;  // empty: every kind
  std::string min_severity;
  int64_t pending = 0;
  int64_t delivered = 0;
  int64_t failed = 0;
};

class NotificationBackend {
 public:
  virtual ~NotificationBackend() = default;
  virtual std::vector<ChannelSummary> channels() = 0;
  // Sends a test event (kind "test", tenant `tenant`) to `channel` now, bounded by the
  // transport's time limits. OK when delivered; NOT_FOUND for no such channel; else why not.
  virtual absl::Status sendTest(const std::string& channel, const std::string& tenant,
                                const std::string& requested_by) = 0;
};

class NotificationService {
 public:
  // `backend` nullptr: the controller has no channels (no --policy-dir).
  NotificationService(const Clock& clock, Store& store, NotificationBackend* backend);

  // The channels of the call's tenants (and, for a call across tenants, those of "*").
  // Audited.
  absl::StatusOr<std::vector<ChannelSummary>> channels(const Caller& caller);
  // A test event to `channel`, a channel of the call's one tenant (a "*" channel: a call
  // across tenants). NOT_FOUND for a channel the caller cannot see, as for none at all;
  // UNAVAILABLE (or the transport's code) naming why it was not delivered. Audited
  // ("notify-test", target the channel) with the outcome. Answers the channel.
  absl::StatusOr<ChannelSummary> test(const Caller& caller, const std::string& channel);

 private:
  const Clock& clock_;
  Store& store_;
  NotificationBackend* backend_;
};

}  // namespace bulkhead::controller
