// The operator requests in plain C++ types, as every front door hands them to the service
// layer (controller/service/): the gRPC operator service translates its messages into these,
// and a later webhook or tenant API builds the same. Their field checks are in validate.h;
// what a request must say (a reason, exactly one match, a known host) is the service's rule.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "bulkhead/v1/agent.pb.h"
#include "bulkhead/v1/containment.pb.h"

namespace bulkhead::controller {

struct ListHostsRequest {
  std::string selector;  // "k=v[,k=v]"; empty: every host
};

struct GetHostRequest {
  std::string host;
};

struct SetHostLabelsRequest {
  std::string host;
  std::map<std::string, std::string> set;
  std::vector<std::string> remove;
  std::string reason;
};

struct ListAuditRequest {
  int64_t before_id = 0;  // rows older than this id; 0: from the newest (negative: refused)
  uint32_t limit = 0;     // rows at most; 0: the default (100); clamped to 10000
};

// The hosts a request names: explicit `hosts`, or a `selector` (`yes` confirms one matching
// more than the selector limit). `all` is refused: isolate and release name their hosts.
struct IsolateRequest {
  std::vector<std::string> hosts;
  std::string selector;
  bool all = false;
  bool yes = false;
  std::vector<std::string> exempt_sets;
  bool no_default_exemptions = false;
  int64_t ttl_ms = 0;    // 0: until released
  bool dry_run = false;
  std::string reason;
  uint32_t wait_ms = 0;  // 0: the default wait
};

struct ReleaseRequest {
  std::vector<std::string> hosts;
  std::string selector;
  bool all = false;  // refused, as for isolate
  bool yes = false;
  std::string reason;
  uint32_t wait_ms = 0;
};

// `all`: every host, now and later (no hosts, no selector).
struct BlockRequest {
  std::vector<std::string> hosts;
  std::string selector;
  bool all = false;
  bool yes = false;  // also confirms a prefix wider than the confirm limit
  std::string remote_cidr;
  bulkhead::v1::Protocol protocol = bulkhead::v1::PROTOCOL_ANY;  // UNSPECIFIED: refused
  uint32_t port = 0;  // 0: any
  bulkhead::v1::Direction direction = bulkhead::v1::DIRECTION_UNSPECIFIED;
  int64_t ttl_ms = 0;  // 0: until unblocked
  std::string reason;
  uint32_t wait_ms = 0;
};

struct UnblockRequest {
  std::vector<std::string> hosts;
  std::string selector;
  bool all = false;
  bool yes = false;
  std::string remote_cidr;
  bulkhead::v1::Protocol protocol = bulkhead::v1::PROTOCOL_ANY;
  uint32_t port = 0;
  bulkhead::v1::Direction direction = bulkhead::v1::DIRECTION_UNSPECIFIED;
  std::string reason;
  uint32_t wait_ms = 0;
};

struct ListBlocksRequest {
  std::string host;  // empty: every host and the fleet-wide blocks
};

struct ListSessionsRequest {
  std::string host;
  uint32_t wait_ms = 0;  // 0: the default wait
};

struct KillSessionsRequest {
  std::string host;
  bulkhead::v1::KillSessions match;  // exactly one of user, session, from, all
  std::string reason;
  uint32_t wait_ms = 0;
};

struct KillProcessRequest {
  std::string host;
  bulkhead::v1::KillProcess match;  // exactly one of pid, exe, user
  std::string reason;
  uint32_t wait_ms = 0;
};

struct KillConnectionsRequest {
  std::string host;
  std::string remote_cidr;
  uint32_t port = 0;  // 0: any
  std::string reason;
  uint32_t wait_ms = 0;
};

struct CaptureRequest {
  std::string host;
  std::string reason;                    // required
  uint32_t collector_time_limit_ms = 0;  // 0: the agent's default
  uint64_t max_binary_bytes = 0;         // 0: the agent's default
  uint32_t wait_ms = 0;                  // 0: five minutes
};

struct ListEvidenceRequest {
  std::string host;     // empty: every host
  uint32_t offset = 0;  // the first record of the page
};

}  // namespace bulkhead::controller
