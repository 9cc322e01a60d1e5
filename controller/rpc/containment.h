// Isolate and release: validates an operator's request, computes and persists the next
// desired states (with the audit row, in one transaction), pushes them, and finishes the call
// once every online host acknowledged, failed, or the wait ran out. Also releases isolations
// whose TTL expired.
//
// Threading: all of it runs on one "containment" thread (its own Scheduler), so changes to
// desired states are serialised and gRPC threads never block on the store or on DNS. The
// unary call is finished from that thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "bulkhead/v1/operator.pb.h"
#include "common/policy.h"
#include "controller/core/blocks.h"
#include "controller/core/clock.h"
#include "controller/rpc/fleet.h"
#include "controller/rpc/name_cache.h"
#include "controller/rpc/policies.h"
#include "common/scheduler.h"
#include "controller/store/store.h"

namespace bulkhead::controller {

struct ContainmentOptions {
  std::vector<bulkhead::v1::Endpoint> endpoints;   // controller IPs agents dial; always kept
  uint32_t selector_limit = 10;
  std::chrono::milliseconds default_wait{5000};
  std::chrono::milliseconds max_wait{120000};
  std::chrono::milliseconds expiry_interval{500};
  // Blocks: protected CIDRs (policies/guardrails/protected.yaml) and the prefix lengths
  // beyond which a block needs --yes. The controller endpoints are added as guardrails.
  std::vector<ProtectedCidr> protected_cidrs;
  int block_confirm_prefix_v4 = 16;
  int block_confirm_prefix_v6 = 48;
};

class Containment {
 public:
  Containment(const Clock& clock, Store& store, Fleet& fleet, Policies& policies,
              const NameCache& names, ContainmentOptions options);
  ~Containment();   // shutdown()

  // Takes over a call whose caller is authorised: finishes `reactor` later. `req` and `resp`
  // stay valid until then (gRPC owns them until Finish).
  void isolate(std::string operator_name, const bulkhead::v1::IsolateRequest* req,
               bulkhead::v1::ContainmentResponse* resp, grpc::ServerUnaryReactor* reactor);
  void release(std::string operator_name, const bulkhead::v1::ReleaseRequest* req,
               bulkhead::v1::ContainmentResponse* resp, grpc::ServerUnaryReactor* reactor);

  // Blocks (implemented in blocks.cc), on the same thread as isolate/release so that every
  // change of a desired state is serialised. Fleet-wide blocks (`all`) are stored once (under
  // kFleetStateKey) and added to every host's desired state, including hosts that join or
  // reconnect later (checked every expiry_interval).
  void block(std::string operator_name, const bulkhead::v1::BlockRequest* req,
             bulkhead::v1::ContainmentResponse* resp, grpc::ServerUnaryReactor* reactor);
  void unblock(std::string operator_name, const bulkhead::v1::UnblockRequest* req,
               bulkhead::v1::ContainmentResponse* resp, grpc::ServerUnaryReactor* reactor);
  void listBlocks(std::string operator_name, const bulkhead::v1::ListBlocksRequest* req,
                  bulkhead::v1::ListBlocksResponse* resp, grpc::ServerUnaryReactor* reactor);

  // Finishes every waiting call (open outcomes PENDING) and stops the containment thread.
  // Idempotent.
  void shutdown();

 private:
  // Runs `work` on the containment thread; while shutting down, finishes the call at once
  // with UNAVAILABLE ("nothing applied") and audits that instead.
  void postOrRefuse(const std::string& operator_name, const char* action,
                    const std::string& target, const std::string& reason,
                    grpc::ServerUnaryReactor* reactor, std::function<void()> work);
  void doIsolate(const std::string& operator_name, const bulkhead::v1::IsolateRequest& req,
                 bulkhead::v1::ContainmentResponse* resp, grpc::ServerUnaryReactor* reactor);
  void doRelease(const std::string& operator_name, const bulkhead::v1::ReleaseRequest& req,
                 bulkhead::v1::ContainmentResponse* resp, grpc::ServerUnaryReactor* reactor);
  // Persists `states` (and `persist_only`) with the audit row, publishes, and finishes when
  // answered. False when nothing could be persisted (the call is finished with the error).
  bool commitAndWait(const std::shared_ptr<PendingOp>& op, const std::vector<std::string>& order,
                     const std::map<std::string, bulkhead::v1::DesiredState>& states,
                     const std::map<std::string, std::vector<std::string>>& sets,
                     const std::string& detail,
                     const std::map<std::string, bulkhead::v1::DesiredState>& persist_only = {});
  void complete(const std::shared_ptr<PendingOp>& op, bool shutting_down);
  void expireIsolations();
  void doBlock(const std::string& operator_name, const bulkhead::v1::BlockRequest& req,
               bulkhead::v1::ContainmentResponse* resp, grpc::ServerUnaryReactor* reactor);
  void doUnblock(const std::string& operator_name, const bulkhead::v1::UnblockRequest& req,
                 bulkhead::v1::ContainmentResponse* resp, grpc::ServerUnaryReactor* reactor);
  void doListBlocks(const std::string& operator_name, const bulkhead::v1::ListBlocksRequest& req,
                    bulkhead::v1::ListBlocksResponse* resp, grpc::ServerUnaryReactor* reactor);
  // Adds the fleet-wide blocks a known host lacks (new or re-registered hosts).
  void propagateFleetBlocks();
  BlockGuardrails blockGuardrails() const;
  // The hosts a block or unblock names: every known host with `all` (which takes no hosts or
  // selector), else the hosts or the selector under resolveTargets' rules.
  absl::StatusOr<std::vector<std::string>> blockTargets(bool all,
                                                        const std::vector<std::string>& hosts,
                                                        const std::string& selector, bool yes);
  std::chrono::milliseconds waitFor(uint32_t wait_ms) const;

  const Clock& clock_;
  Store& store_;
  Fleet& fleet_;
  Policies& policies_;
  const NameCache& names_;   // exemption DNS names, resolved off this thread
  const ContainmentOptions options_;
  std::atomic<uint64_t> next_op_{1};
  std::vector<bulkhead::v1::Block> fleet_blocks_;   // containment thread only
  uint64_t fleet_generation_ = 0;                   // containment thread only
  uint64_t next_block_ = 1;                         // containment thread only
  // What propagateFleetBlocks() last checked: only a new host (or a fleet-wide change) can
  // lack a fleet-wide block, so nothing is scanned while these stay the same.
  std::vector<std::string> propagated_hosts_;       // containment thread only
  uint64_t propagated_generation_ = 0;              // containment thread only
  std::atomic<bool> stopped_{false};
  Scheduler thread_;   // last: stopped first on destruction
};

}  // namespace bulkhead::controller
