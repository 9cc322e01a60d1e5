// Wazuh active response messages (what wazuh-execd writes on an active-response program's
// stdin), decoded into a signal. Pure: the subcommand `bulkhead-agent wazuh-active-response`
// does the reading and writing (agent/daemon/report_commands.cc).
//
// 4.x (one JSON line):
//   {"version":1,"origin":{"name":...,"module":"wazuh-execd"},"command":"add"|"delete",
//    "parameters":{"extra_args":[],"alert":{"id":...,"rule":{"id","level","description"},
//    "data":{"srcip":...,"dstuser":...},...},"program":...}}
// A stateful program answers an "add" with a check_keys message (checkKeysMessage) and reads
// {"command":"continue"|"abort"} back; "delete" needs no handshake.
// 5.x:
//   {"wazuh":{"active_response":{"name","executable","location","agent_id","type",
//    "stateful_timeout"},"agent":{"id","name"}},"source":{"ip":...},"user":{"name":...},
//    "command":"enable"|"disable"}
// "delete" and "disable" end the detection: the signal is resolved.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "bulkhead/v1/signals.pb.h"

namespace bulkhead::agent {

// Largest message read from wazuh-execd (an alert carries its full log line).
inline constexpr size_t kMaxWazuhMessageBytes = size_t{256} * 1024;

struct WazuhMessage {
  int format = 4;               // 4 or 5
  bool resolved = false;        // delete / disable
  std::string command;          // as sent: add, delete, enable, disable
  std::string program;          // parameters.program (4.x), for check_keys' origin
  bulkhead::v1::Signal signal;  // source WAZUH; addresses canonical; no idempotency key
                                // unless the alert has an id
  int64_t rule_level = -1;      // the alert's rule level (0..15), -1 if absent
};

// Decodes one message. The rule is the alert's rule id, else its description (4.x), else the
// active response's name (5.x carries no alert), else "wazuh-active-response"; the rule's
// description, level and groups, the agent name and the user go in labels. An address that is not
// an IP is an error (INVALID_ARGUMENT naming the JSON path); no address at all is fine (a detection
// about the host). The severity follows the rule level (severityForWazuhLevel) unless `severity` is
// given (not UNSPECIFIED). The key, when the alert has an id: "wazuh:<alert
// id>:<rule>:<start|end>".
absl::StatusOr<WazuhMessage> parseWazuhMessage(std::string_view text,
                                               bulkhead::v1::Severity severity);

// Wazuh rule level 0..15 → 0-3 info, 4-6 low, 7-9 medium, 10-11 high, 12+ critical;
// medium when unknown (< 0).
bulkhead::v1::Severity severityForWazuhLevel(int64_t level);

// True when the program must do the check_keys handshake before acting (4.x "add").
bool needsCheckKeys(const WazuhMessage& message);

// The check_keys line (newline included): keys are the signal's addresses (without the /32
// or /128 of a single host), else its rule.
std::string checkKeysMessage(const WazuhMessage& message);

enum class WazuhControl { kContinue, kAbort };
// {"command":"continue"} or {"command":"abort"}; anything else is an error.
absl::StatusOr<WazuhControl> parseWazuhControl(std::string_view line);

}  // namespace bulkhead::agent
