// Checks on every operator request before anything is looked up, changed, audited as done or
// sent to an agent. Pure: no I/O, no clocks.
//
// Text (reasons, host ids, selectors, exemption set names, evidence ids, user names, paths)
// must be printable UTF-8 (common/text.h: no newline, ESC, DEL, NUL, C1 or bidi control) and
// within a byte limit; numbers must be within the ranges below. Every error is
// INVALID_ARGUMENT and names the field and the value (escaped, shortened). Presence rules
// ("reason: required", "exactly one of ...") are the service's (controller/service/).
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "controller/core/requests.h"

namespace bulkhead::controller {

inline constexpr size_t kMaxReasonBytes = 1024;
inline constexpr size_t kMaxIdBytes = 253;  // host ids, set names, users, evidence ids
inline constexpr size_t kMaxSelectorBytes = 1024;
inline constexpr size_t kMaxPathBytes = 4096;  // PATH_MAX
inline constexpr size_t kMaxCidrBytes = 64;
inline constexpr int kMaxHostsPerRequest = 10000;
inline constexpr int kMaxExemptSetsPerRequest = 64;

inline constexpr int64_t kMaxTtlMs = 366LL * 24 * 3600 * 1000;  // a year (and a day)
inline constexpr uint32_t kMaxWaitMs = 3600 * 1000;             // an hour
inline constexpr uint32_t kMaxCollectorTimeLimitMs = 3600 * 1000;
inline constexpr uint64_t kMaxBinaryBytes = 4ULL << 30;  // 4 GiB per executable
inline constexpr int32_t kMaxPid = 4194304;              // PID_MAX_LIMIT
inline constexpr uint32_t kUnsetSessionId = 0xFFFFFFFF;  // the kernel's "no session"

// True when `value` is empty or only spaces, tabs and line breaks: a required text (a reason)
// that was not given.
bool isBlank(std::string_view value);

// `value` is printable and at most `max_bytes` long (empty is fine).
absl::Status checkText(std::string_view field, std::string_view value, size_t max_bytes);
// lo <= value <= hi; `unit` follows the value in the message ("ms", "bytes", "").
absl::Status checkRange(std::string_view field, int64_t value, int64_t lo, int64_t hi,
                        std::string_view unit = "");
absl::Status checkRange(std::string_view field, uint64_t value, uint64_t lo, uint64_t hi,
                        std::string_view unit = "");

// One check per operator request: every text and numeric field it carries, in field order;
// the first failure is returned. (The evidence calls that take only an id check it with
// checkText("id", id, kMaxIdBytes).)
absl::Status validateRequest(const ListHostsRequest& req);
absl::Status validateRequest(const GetHostRequest& req);
absl::Status validateRequest(const SetHostLabelsRequest& req);
absl::Status validateRequest(const IsolateRequest& req);
absl::Status validateRequest(const ReleaseRequest& req);
absl::Status validateRequest(const ListAuditRequest& req);
absl::Status validateRequest(const BlockRequest& req);
absl::Status validateRequest(const UnblockRequest& req);
absl::Status validateRequest(const ListBlocksRequest& req);
absl::Status validateRequest(const KillConnectionsRequest& req);
absl::Status validateRequest(const ListSessionsRequest& req);
absl::Status validateRequest(const KillSessionsRequest& req);
absl::Status validateRequest(const KillProcessRequest& req);
absl::Status validateRequest(const CaptureRequest& req);
absl::Status validateRequest(const ListEvidenceRequest& req);

}  // namespace bulkhead::controller
