// Signals that detection tools on this host report through the agent (`bulkhead-agent signal`,
// `wazuh-active-response`, `sshguard-backend`): names, the checks the agent makes before it
// forwards anything, the default idempotency key, and the one-line JSON protocol of the
// agent's signal socket (STATE_DIR/signal.sock). Pure: no I/O, no clock.
//
// Protocol (one connection, one exchange): the client writes one request line
//   {"timeout_ms":5000,"signal":{"source":"fail2ban","rule":"sshd","severity":"high",
//    "addresses":["203.0.113.7/32"],"ttl_seconds":600,"idempotency_key":"...",
//    "resolved":false,"payload_sha256":"","labels":{"k":"v"}}}
// of at most kMaxSignalRequestBytes (newline included); the agent answers one line
//   {"result":"recorded","signal_id":"...","disposition":"acted"}
//   {"result":"refused","error":"..."}        the controller refused it (nothing recorded)
//   {"result":"invalid","error":"..."}        the agent refused it (nothing sent)
//   {"result":"not-delivered","error":"..."}  no receipt (not connected, timed out, dropped)
// and closes. Only "recorded" means the controller has it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "bulkhead/v1/signals.pb.h"

namespace bulkhead::agent {

inline constexpr size_t kMaxSignalRequestBytes = size_t{64} * 1024;
// Limits of signals.proto; the controller refuses a signal over them.
inline constexpr int kMaxSignalAddresses = 64;
inline constexpr size_t kMaxSignalRuleBytes = 256;
inline constexpr int kMaxSignalLabels = 64;
inline constexpr size_t kMaxSignalLabelKeyBytes = 63;
inline constexpr size_t kMaxSignalLabelValueBytes = 256;
inline constexpr size_t kMaxIdempotencyKeyBytes = 256;
// How long a local tool's request may wait for the controller's receipt.
inline constexpr std::chrono::milliseconds kDefaultSignalTimeout{5000};
inline constexpr std::chrono::milliseconds kMaxSignalTimeout{300'000};

// The sources a tool on this host may report as: "fail2ban", "wazuh", "sshguard", "cli".
// Other sources (CrowdSec, Alertmanager, webhooks) reach the controller directly.
absl::StatusOr<bulkhead::v1::SignalSource> parseLocalSignalSource(std::string_view field,
                                                                  std::string_view text);
// "fail2ban", ...; "unspecified" for values without a name.
std::string_view signalSourceName(bulkhead::v1::SignalSource source);

// "info", "low", "medium", "high", "critical".
absl::StatusOr<bulkhead::v1::Severity> parseSeverity(std::string_view field, std::string_view text);
std::string_view severityName(bulkhead::v1::Severity severity);

// "acted", "no-match", "duplicate", "suppressed", "simulated", "awaiting-approval",
// "unspecified".
std::string_view dispositionName(bulkhead::v1::SignalDisposition disposition);

// Checks a signal as the agent forwards it, in place: a local source, a rule of 1 to 256
// bytes, at most 64 addresses (each parseCidr; rewritten in canonical form, e.g.
// "203.0.113.7/32"), no integration and no host (the controller fills the host in from the
// certificate), at most 64 labels (keys 1-63 bytes, values at most 256), a key of at most 256
// bytes. Errors are INVALID_ARGUMENT naming the field ("signal.addresses[2]: ...").
absl::Status checkLocalSignal(bulkhead::v1::Signal& signal);

// The idempotency key the agent gives a signal that arrives without one:
//   "agent:<source>:<start|end>:<32 hex digits>"
// the digits being the first 128 bits of SHA-256 over the source, rule, sorted addresses,
// resolved flag and `unix_minute` (the minute the agent received it). So a tool that retries
// within the same minute is told DUPLICATE, and the same detection in a later minute is a new
// signal. Tools that know when their detection happened (fail2ban's <time>, a Wazuh alert id)
// pass a key of their own instead.
std::string defaultIdempotencyKey(const bulkhead::v1::Signal& signal, int64_t unix_minute);

// SHA-256 of `data`, lowercase hex (Signal.payload_sha256).
std::string sha256Hex(std::string_view data);

struct SignalRequest {
  bulkhead::v1::Signal signal;
  std::chrono::milliseconds timeout = kDefaultSignalTimeout;
};

enum class SignalResult {
  kRecorded,      // the controller recorded it: signal_id, disposition
  kRefused,       // the controller refused it: error
  kInvalid,       // the agent refused it before sending: error
  kNotDelivered,  // no receipt: error (retrying with the same key is safe)
};

struct SignalResponse {
  SignalResult result = SignalResult::kNotDelivered;
  std::string signal_id;
  bulkhead::v1::SignalDisposition disposition = bulkhead::v1::SIGNAL_DISPOSITION_UNSPECIFIED;
  std::string error;
};

// One line, newline included.
std::string encodeSignalRequest(const SignalRequest& request);
// Parses one request line (trailing newline optional) and runs checkLocalSignal on it. A
// timeout of 0 or missing means kDefaultSignalTimeout; more than kMaxSignalTimeout is an error.
absl::StatusOr<SignalRequest> decodeSignalRequest(std::string_view line);

// One line, newline included.
std::string encodeSignalResponse(const SignalResponse& response);
absl::StatusOr<SignalResponse> decodeSignalResponse(std::string_view line);

// "recorded", "refused", "invalid", "not-delivered".
std::string_view signalResultName(SignalResult result);

}  // namespace bulkhead::agent
