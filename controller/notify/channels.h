// The notification channels: where the controller tells people and tools about containment
// events (events.h). One channel per file, POLICY_DIR/notifications/*.yaml:
//
//   name: soc-slack                 # 1-63 of [A-Za-z0-9._-], unique
//   tenant: acme                    # whose events; default "default"; "*": every tenant's
//   type: slack                     # slack | webhook | email
//   url: https://hooks.slack.com/services/T0/B0/X     # slack and webhook
//   secret_file: /etc/bulkhead/notify/siem.key         # webhook: the HMAC key (required)
//   ca_file: /etc/bulkhead/notify/ca.crt               # https: whom to trust; default the system's
//   kinds: [isolate, enforcement-failure]              # default: every kind
//   min_severity: warning                              # info (default) | warning | critical
//   smtp: smtp://mail.example.com:587                  # email: STARTTLS required (smtps:// for TLS
//   username: bulkhead                                 #   from the start); auth when given
//   password_file: /etc/bulkhead/notify/smtp.pass
//   from: bulkhead@example.com
//   to: [soc@example.com]
//   allow_insecure: false           # true: http:// or SMTP without TLS (a lab, never the internet)
//
// Secrets live in files readable only by the controller (mode 0600 or stricter), never in
// the channel file. Pure but for loadChannelDir and readSecret.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "controller/notify/events.h"

namespace bulkhead::controller::notify {

enum class ChannelType { kSlack, kWebhook, kEmail };
std::string_view channelTypeName(ChannelType type);

struct Channel {
  std::string name;
  std::string file;  // where it was read, for messages
  std::string tenant = "default";
  ChannelType type = ChannelType::kWebhook;
  std::set<std::string> kinds;  // empty: every kind
  Severity min_severity = Severity::kInfo;
  std::string url;              // slack, webhook
  std::string secret_file;      // webhook
  std::string ca_file;          // https and SMTP over TLS; "" the system's CAs
  std::string smtp;             // email: smtp://HOST[:PORT] or smtps://HOST[:PORT]
  std::string username;         // email; "" no authentication
  std::string password_file;    // email, with username
  std::string from;             // email
  std::vector<std::string> to;  // email
  bool allow_insecure = false;
};

// Whether `channel` is told about `event`: its tenant ("*" takes every tenant's; a row of a
// call across tenants, tenant "*", goes only to those), one of its kinds, and at least its
// severity. A test event goes to the channel it names only, whatever its filters.
bool wants(const Channel& channel, const Event& event);

// One channel file; INVALID_ARGUMENT with "FILE:LINE: field: problem" lines.
absl::StatusOr<Channel> parseChannel(std::string_view file_name, std::string_view yaml);

// Every channel of DIR/*.yaml, by name. A missing directory is no channel; errors of every
// file, and a name given twice, are one INVALID_ARGUMENT.
absl::StatusOr<std::vector<Channel>> loadChannelDir(const std::string& dir);

// A secret file's content without its trailing newline: NOT_FOUND when it cannot be read,
// PERMISSION_DENIED when group or others may read it, INVALID_ARGUMENT when empty; each
// names `field` and the path.
absl::StatusOr<std::string> readSecret(std::string_view field, const std::string& path);

}  // namespace bulkhead::controller::notify
