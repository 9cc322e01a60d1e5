// CrowdSec's bouncer API (the local API's GET /v1/decisions/stream), read without I/O: the
// answer's decisions, and the signal each one becomes (shared/notes/integrations.md has the
// contract as seen on CrowdSec 1.4.6).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "bulkhead/v1/signals.pb.h"

namespace bulkhead::controller::crowdsec {

// One decision as the stream lists it. Unknown fields are ignored; `until` and `simulated`
// are optional (1.4.6 sends neither on the stream).
struct Decision {
  int64_t id = 0;
  std::string origin;    // "cscli", "crowdsec", "CAPI", "lists", ...
  std::string type;      // "ban", "captcha", ...
  std::string scope;     // "Ip", "Range", "Country", "AS", "Username", ...
  std::string value;     // "203.0.113.7", "10.77.9.0/24", ...
  std::string scenario;  // what decided it ("manual 'ban' from ...", "crowdsecurity/ssh-bf")
  // The remaining time in milliseconds; negative for a deleted or expired decision (how long
  // ago it ended).
  int64_t duration_ms = 0;
  bool simulated = false;
};

// An answer of /v1/decisions/stream: `{"new": [...] | null, "deleted": [...] | null}`.
struct StreamAnswer {
  std::vector<Decision> added;    // "new"
  std::vector<Decision> deleted;  // "deleted"
};

// Parses an answer. INVALID_ARGUMENT, naming the part at fault, for anything that is not the
// documented shape: not JSON, not an object, "new"/"deleted" neither null nor an array, a
// decision that is not an object or lacks id, scope, value, type or duration, a duration that
// is not a Go duration. A missing "new" or "deleted" reads as null. One bad decision refuses
// the whole answer (nothing half-applied). CrowdSec moved its cursor when it sent the answer,
// so after a refused one the caller must resynchronise (startup=true), not just ask again.
absl::StatusOr<StreamAnswer> parseStreamAnswer(std::string_view body);

// A Go time.Duration string ("3h59m58.123s", "1h2m", "-6.2s", "500ms", "0s") in milliseconds,
// rounded towards zero. INVALID_ARGUMENT for anything else (empty, no unit, overflow).
absl::StatusOr<int64_t> parseGoDuration(std::string_view text);

// Why a decision is not mirrored, or nothing when it is.
enum class Skip {
  kNone,
  kScope,      // not Ip or Range (Country, AS, Username, ...)
  kType,       // not a ban (captcha, throttle, ...): no firewall meaning
  kSimulated,  // marked simulated (CrowdSec's simulation mode): never acted on
  kBadValue,   // Ip/Range whose value is not an address or CIDR
};
const char* skipName(Skip why);

// What the poller submits for a decision: `resolved` false for a new one, true for a deleted
// one (the end of the detection: the playbooks unblock).
//   source CROWDSEC, rule = scenario (cut to 256 bytes), addresses = [the canonical address or
//   CIDR], ttl_seconds = the remaining duration rounded up (new only; at least 1), idempotency
//   key "crowdsec:ID" (new) or "crowdsec:ID:deleted", payload_sha256 as given, labels origin,
//   type, scope and decision_id.
// Skip (and why) when the decision is not mirrored.
struct Conversion {
  std::optional<bulkhead::v1::Signal> signal;
  Skip skipped = Skip::kNone;
};
Conversion toSignal(const Decision& decision, bool resolved, const std::string& payload_sha256);

// The canonical address or CIDR a mirrored decision blocks ("10.77.0.66/32"), or empty when the
// decision is not mirrored (same rules as toSignal).
std::string blockedCidr(const Decision& decision);

}  // namespace bulkhead::controller::crowdsec
