#include "controller/core/validate.h"

#include <limits>
#include <string>
#include <vector>

#include "common/format.h"
#include "common/text.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

namespace {

constexpr size_t kShownBytes = 80;  // of a bad value, in an error message

std::string shown(std::string_view value) {
  if (value.size() <= kShownBytes) return escapeNonPrintable(value);
  return escapeNonPrintable(value.substr(0, kShownBytes)) + "...";
}

absl::Status invalid(const std::string& message) { return absl::InvalidArgumentError(message); }

// Runs checks in order; the first failure wins.
class Checks {
 public:
  Checks& text(std::string_view field, std::string_view value, size_t max_bytes) {
    if (status_.ok()) status_ = checkText(field, value, max_bytes);
    return *this;
  }
  template <typename List>
  Checks& texts(std::string_view field, const List& values, size_t max_bytes, int max_count) {
    if (!status_.ok()) return *this;
    if (values.size() > static_cast<size_t>(max_count)) {
      status_ = invalid(
          fmt::format("{}: {} values given, at most {} allowed", field, values.size(), max_count));
      return *this;
    }
    for (const auto& v : values) {
      status_ = checkText(field, v, max_bytes);
      if (!status_.ok()) break;
    }
    return *this;
  }
  Checks& range(std::string_view field, int64_t value, int64_t lo, int64_t hi,
                std::string_view unit = "") {
    if (status_.ok()) status_ = checkRange(field, value, lo, hi, unit);
    return *this;
  }
  Checks& urange(std::string_view field, uint64_t value, uint64_t lo, uint64_t hi,
                 std::string_view unit = "") {
    if (status_.ok()) status_ = checkRange(field, value, lo, hi, unit);
    return *this;
  }
  Checks& check(bool ok, std::string_view field, std::string message) {
    if (status_.ok() && !ok) status_ = invalid(fmt::format("{}: {}", field, message));
    return *this;
  }
  absl::Status done() { return status_; }

 private:
  absl::Status status_;
};

Checks& checkWait(Checks& c, uint32_t wait_ms) {
  return c.urange("wait_ms", wait_ms, 0, kMaxWaitMs, "ms");
}

Checks& checkPort(Checks& c, uint32_t port) { return c.urange("port", port, 0, 65535); }

Checks& checkTtl(Checks& c, int64_t ttl_ms) {
  return c.range("ttl_ms", ttl_ms, 0, kMaxTtlMs, "ms");
}

// A block's protocol is required: the operator says "any" explicitly.
Checks& protocolAndDirection(Checks& c, int protocol, int direction) {
  return c
      .check(v1::Protocol_IsValid(protocol), "protocol",
             fmt::format("invalid value {}: not a known protocol", protocol))
      .check(protocol != v1::PROTOCOL_UNSPECIFIED, "protocol", "required: any, tcp or udp")
      .check(v1::Direction_IsValid(direction), "direction",
             fmt::format("invalid value {}: not a known direction", direction));
}

Checks& targets(Checks& c, const std::vector<std::string>& hosts, const std::string& selector) {
  return c.texts("hosts", hosts, kMaxIdBytes, kMaxHostsPerRequest)
      .text("selector", selector, kMaxSelectorBytes);
}

// Isolate and release: host ids or a selector; `all` is for blocks only.
Checks& hostTargets(Checks& c, const std::vector<std::string>& hosts, const std::string& selector,
                    bool all) {
  return targets(c, hosts, selector)
      .check(!all, "targets", "all: not accepted here: name one or more hosts, or a selector");
}

template <typename Request>
Checks& blockMatch(Checks& c, const Request& req) {
  c.text("remote_cidr", req.remote_cidr, kMaxCidrBytes);
  checkPort(c, req.port);
  return protocolAndDirection(c, req.protocol, req.direction);
}

}  // namespace

bool isBlank(std::string_view value) {
  return value.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

absl::Status checkText(std::string_view field, std::string_view value, size_t max_bytes) {
  if (value.size() > max_bytes) {
    return invalid(fmt::format("{}: invalid value \"{}\": {} bytes, at most {} allowed", field,
                               shown(value), value.size(), max_bytes));
  }
  if (auto bad = findNonPrintable(value)) {
    return invalid(fmt::format(
        "{}: invalid value \"{}\": control or non-printable character {} at byte {} is not "
        "allowed",
        field, shown(value), bad->shown, bad->offset));
  }
  return absl::OkStatus();
}

absl::Status checkRange(std::string_view field, int64_t value, int64_t lo, int64_t hi,
                        std::string_view unit) {
  if (value >= lo && value <= hi) return absl::OkStatus();
  const char* space = unit.empty() ? "" : " ";
  return invalid(fmt::format("{}: invalid value {}{}{}: must be between {}{}{} and {}{}{}", field,
                             value, space, unit, lo, space, unit, hi, space, unit));
}

absl::Status checkRange(std::string_view field, uint64_t value, uint64_t lo, uint64_t hi,
                        std::string_view unit) {
  if (value >= lo && value <= hi) return absl::OkStatus();
  const char* space = unit.empty() ? "" : " ";
  return invalid(fmt::format("{}: invalid value {}{}{}: must be between {}{}{} and {}{}{}", field,
                             value, space, unit, lo, space, unit, hi, space, unit));
}

absl::Status validateRequest(const ListHostsRequest& req) {
  return Checks().text("selector", req.selector, kMaxSelectorBytes).done();
}

absl::Status validateRequest(const GetHostRequest& req) {
  return Checks().text("host", req.host, kMaxIdBytes).done();
}

absl::Status validateRequest(const SetHostLabelsRequest& req) {
  return Checks()
      .text("host", req.host, kMaxIdBytes)
      .text("reason", req.reason, kMaxReasonBytes)
      .done();
}

absl::Status validateRequest(const IsolateRequest& req) {
  Checks c;
  hostTargets(c, req.hosts, req.selector, req.all)
      .texts("exempt_sets", req.exempt_sets, kMaxIdBytes, kMaxExemptSetsPerRequest)
      .text("reason", req.reason, kMaxReasonBytes);
  checkTtl(c, req.ttl_ms);
  return checkWait(c, req.wait_ms).done();
}

absl::Status validateRequest(const ReleaseRequest& req) {
  Checks c;
  hostTargets(c, req.hosts, req.selector, req.all).text("reason", req.reason, kMaxReasonBytes);
  return checkWait(c, req.wait_ms).done();
}

absl::Status validateRequest(const ListAuditRequest& req) {
  // `limit` is any count: the listing pages and clamps it.
  return Checks()
      .range("before_id", req.before_id, 0, std::numeric_limits<int64_t>::max())
      .done();
}

absl::Status validateRequest(const BlockRequest& req) {
  Checks c;
  targets(c, req.hosts, req.selector).text("reason", req.reason, kMaxReasonBytes);
  blockMatch(c, req);
  checkTtl(c, req.ttl_ms);
  return checkWait(c, req.wait_ms).done();
}

absl::Status validateRequest(const UnblockRequest& req) {
  Checks c;
  targets(c, req.hosts, req.selector).text("reason", req.reason, kMaxReasonBytes);
  blockMatch(c, req);
  return checkWait(c, req.wait_ms).done();
}

absl::Status validateRequest(const ListBlocksRequest& req) {
  return Checks().text("host", req.host, kMaxIdBytes).done();
}

absl::Status validateRequest(const KillConnectionsRequest& req) {
  Checks c;
  c.text("host", req.host, kMaxIdBytes)
      .text("remote_cidr", req.remote_cidr, kMaxCidrBytes)
      .text("reason", req.reason, kMaxReasonBytes);
  checkPort(c, req.port);
  return checkWait(c, req.wait_ms).done();
}

absl::Status validateRequest(const ListSessionsRequest& req) {
  Checks c;
  c.text("host", req.host, kMaxIdBytes);
  return checkWait(c, req.wait_ms).done();
}

absl::Status validateRequest(const KillSessionsRequest& req) {
  Checks c;
  const auto& m = req.match;
  c.text("host", req.host, kMaxIdBytes)
      .text("reason", req.reason, kMaxReasonBytes)
      .text("user", m.user(), kMaxIdBytes)
      .text("from", m.from_cidr(), kMaxCidrBytes)
      .check(m.session_id() != kUnsetSessionId, "session",
             fmt::format("invalid value {}: the kernel's \"no session\" id", m.session_id()));
  return checkWait(c, req.wait_ms).done();
}

absl::Status validateRequest(const KillProcessRequest& req) {
  Checks c;
  const auto& m = req.match;
  c.text("host", req.host, kMaxIdBytes)
      .text("reason", req.reason, kMaxReasonBytes)
      .text("exe", m.exe(), kMaxPathBytes)
      .text("user", m.user(), kMaxIdBytes)
      .range("pid", m.pid(), 0, kMaxPid);
  return checkWait(c, req.wait_ms).done();
}

absl::Status validateRequest(const CaptureRequest& req) {
  Checks c;
  c.text("host", req.host, kMaxIdBytes)
      .text("reason", req.reason, kMaxReasonBytes)
      .urange("collector_time_limit_ms", req.collector_time_limit_ms, 0, kMaxCollectorTimeLimitMs,
              "ms")
      .urange("max_binary_bytes", req.max_binary_bytes, 0, kMaxBinaryBytes, "bytes");
  return checkWait(c, req.wait_ms).done();
}

absl::Status validateRequest(const ListEvidenceRequest& req) {
  return Checks().text("host", req.host, kMaxIdBytes).done();
}

}  // namespace bulkhead::controller
