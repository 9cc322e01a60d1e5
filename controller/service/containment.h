// Isolate, release, block and unblock: checks an operator's request, computes and persists the
// next desired states (with the audit row, in one transaction), pushes them through the
// FleetControl, and hands the result over once every online host answered or the wait ran
// out. Also releases isolations whose TTL expired and gives fleet-wide blocks to hosts that
// join later.
//
// Containment checks the caller's role (controller/service/authorization.h), every field of the
// request (controller/core/validate.h) and what a request must say (a reason, a non-negative
// TTL, a known host), and audits every outcome.
//
// Threading: all of it runs on one "bh-contain" thread (its own Scheduler), so changes to
// desired states are serialised and the caller's thread never blocks on the store or on DNS.
// `done` runs on that thread (or, while shutting down, on the caller's).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "bulkhead/v1/agent.pb.h"
#include "common/policy.h"
#include "controller/core/blocks.h"
#include "controller/core/clock.h"
#include "controller/core/requests.h"
#include "controller/core/validate.h"
#include "controller/service/audit.h"
#include "controller/service/authorization.h"
#include "controller/service/fleet_control.h"
#include "controller/service/name_cache.h"
#include "controller/service/policies.h"
#include "common/scheduler.h"
#include "controller/store/store.h"

namespace bulkhead::controller {

// One block in force: fleet-wide, or on `host_id`.
struct BlockEntry {
  bulkhead::v1::Block block;
  bool fleet_wide = false;
  std::string host_id;
  int64_t remaining_ms = 0;  // 0: permanent
  std::string tenant;        // of the fleet-wide block, or of its host
};
using BlocksDone = std::function<void(const absl::Status& status, std::vector<BlockEntry> blocks)>;

// The audit target of a request: "selector S", "all", or the hosts joined by commas.
std::string auditTarget(const IsolateRequest& req);
std::string auditTarget(const ReleaseRequest& req);
std::string auditTarget(const BlockRequest& req);
std::string auditTarget(const UnblockRequest& req);
std::string auditTarget(const ListBlocksRequest& req);

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
  // Whether this controller runs the fleet-wide work now (TTL releases, fleet-wide blocks
  // reaching new hosts): with several controllers on one database, only the one holding the
  // singleton lock does. Null: always.
  std::function<bool()> runs_singletons;
};

class Containment {
 public:
  Containment(const Clock& clock, Store& store, FleetControl& fleet, Policies& policies,
              const NameCache& names, ContainmentOptions options);
  ~Containment();   // shutdown()

  // Each checks that `caller` may ask for it (authorization.h) and every field of `req`
  // (controller/core/validate.h); a refusal is audited and handed to `done` at once, on the
  // calling thread. Otherwise the request is taken over: `done` receives its result exactly
  // once.
  void isolate(const Caller& caller, IsolateRequest req, ContainmentDone done);
  void release(const Caller& caller, ReleaseRequest req, ContainmentDone done);

  // Blocks (implemented in blocks.cc), on the same thread as isolate/release so that every
  // change of a desired state is serialised. Fleet-wide blocks (`all` by a caller holding the
  // role on every host of its tenant) are stored once per tenant (fleetStateKey) and added to
  // the desired state of every host of that tenant, including hosts that join or reconnect
  // later (checked every expiry_interval); never to another tenant's.
  void block(const Caller& caller, BlockRequest req, ContainmentDone done);
  void unblock(const Caller& caller, UnblockRequest req, ContainmentDone done);
  void listBlocks(const Caller& caller, ListBlocksRequest req, BlocksDone done);

  // Finishes every waiting call (open outcomes PENDING) and stops the containment thread.
  // Idempotent.
  void shutdown();

 private:
  // Runs `work` on the containment thread; while shutting down, audits UNAVAILABLE ("nothing
  // applied") and hands that to `refused` instead.
  void postOrRefuse(const AuditActor& actor, OperatorAction action, const std::string& target,
                    const std::string& reason,
                    const std::function<void(const absl::Status&)>& refused,
                    std::function<void()> work);
  // Audits and refuses `req` at once when `caller` may not ask for `action`, a field of `req`
  // is invalid, or the service is shutting down; else runs `work` with it on the containment
  // thread.
  template <typename Request, typename Done>
  void submit(OperatorAction action, const Caller& caller, Request req, Done done,
              void (Containment::*work)(const Caller&, const Request&, Done&)) {
    // Computed before `req` moves into the work (argument order is unspecified).
    const std::string target = auditTarget(req);
    std::string reason;
    if constexpr (requires { req.reason; }) reason = req.reason;
    absl::Status allowed = authorize(caller, action);
    if (allowed.ok()) allowed = validateRequest(req);
    if (!allowed.ok()) {
      done(recordCall(store_, clock_, auditActor(caller), auditAction(action), target, reason,
                      allowed),
           {});
      return;
    }
    postOrRefuse(
        auditActor(caller), action, target, reason, [done](const absl::Status& s) { done(s, {}); },
        [this, work, caller, req = std::move(req), done]() mutable {
          (this->*work)(caller, req, done);
        });
  }
  void doIsolate(const Caller& caller, const IsolateRequest& req, ContainmentDone& done);
  void doRelease(const Caller& caller, const ReleaseRequest& req, ContainmentDone& done);
  // Persists `states` (and `persist_only`) with the audit row, publishes, and completes the op
  // when answered. False when nothing could be persisted (op->done got the error).
  bool commitAndWait(const std::shared_ptr<PendingOp>& op, const std::vector<std::string>& order,
                     const std::map<std::string, bulkhead::v1::DesiredState>& states,
                     const std::map<std::string, std::vector<std::string>>& sets,
                     const std::string& detail,
                     const std::map<std::string, bulkhead::v1::DesiredState>& persist_only = {});
  void complete(const std::shared_ptr<PendingOp>& op, bool shutting_down);
  void expireIsolations();
  void doBlock(const Caller& caller, const BlockRequest& req, ContainmentDone& done);
  void doUnblock(const Caller& caller, const UnblockRequest& req, ContainmentDone& done);
  void doListBlocks(const Caller& caller, const ListBlocksRequest& req, BlocksDone& done);
  // Takes persisted fleet-wide rows (fleetStateKey) as the tenants' fleet-wide blocks.
  void adoptFleetState(const std::map<std::string, bulkhead::v1::DesiredState>& fleet_state);
  // Adds the fleet-wide blocks of its tenant a known host lacks (new or re-registered hosts).
  void propagateFleetBlocks();
  BlockGuardrails blockGuardrails() const;
  // The hosts a block or unblock names: every host `caller` reaches with `action`'s role with
  // `all` (which takes no hosts or selector), else the hosts or the selector under
  // resolveTargets' rules among those.
  absl::StatusOr<std::vector<std::string>> blockTargets(const Caller& caller, OperatorAction action,
                                                        bool all,
                                                        const std::vector<std::string>& hosts,
                                                        const std::string& selector, bool yes);
  // The known hosts `caller` reaches with `action`'s role (tenancy.h): the others are unknown
  // to it.
  std::map<std::string, TargetHost> targetsFor(const Caller& caller, OperatorAction action);
  // The caller as the audit rows of a change to `targets` (all in `known`) and to the
  // fleet-wide blocks of `fleet_tenants` name it: in the one tenant they all belong to, "*"
  // when they span several, else in the call's (auditActor).
  static AuditActor actorFor(const Caller& caller, const std::map<std::string, TargetHost>& known,
                             const std::vector<std::string>& targets,
                             const std::vector<std::string>& fleet_tenants = {});
  // The tenant of each of `hosts` found in `known`, as the op's outcomes name them.
  static std::map<std::string, std::string> hostTenants(
      const std::map<std::string, TargetHost>& known, const std::vector<std::string>& hosts);
  // The fleet-wide blocks of `tenant` (containment thread only).
  struct TenantBlocks {
    std::vector<bulkhead::v1::Block> blocks;
    uint64_t generation = 0;
  };
  std::chrono::milliseconds waitFor(uint32_t wait_ms) const;
  // A new operation of `action` (its id, caller, audit target, reason and wait), answering `done`.
  std::shared_ptr<PendingOp> newOp(OperatorAction action, const AuditActor& actor,
                                   const std::string& target, const std::string& reason,
                                   uint32_t wait_ms, ContainmentDone done);

  const Clock& clock_;
  Store& store_;
  FleetControl& fleet_;
  Policies& policies_;
  const NameCache& names_;   // exemption DNS names, resolved off this thread
  const ContainmentOptions options_;
  std::atomic<uint64_t> next_op_{1};
  // Fleet-wide blocks by tenant, each stored under fleetStateKey(tenant).
  // Reads the fleet-wide blocks of every tenant from the store (at start, and after another
  // controller on the database changed them first).
  void loadFleetBlocks();
  std::map<std::string, TenantBlocks> fleet_blocks_;  // containment thread only
  uint64_t fleet_generation_ = 0;  // the sum of every tenant's (containment thread only)
  uint64_t next_block_ = 1;                         // containment thread only
  // What propagateFleetBlocks() last checked: only a new host (or a fleet-wide change) can
  // lack a fleet-wide block, so nothing is scanned while these stay the same.
  std::vector<std::string> propagated_hosts_;       // containment thread only
  uint64_t propagated_generation_ = 0;              // containment thread only
  std::atomic<bool> stopped_{false};
  Scheduler thread_;   // last: stopped first on destruction
};

}  // namespace bulkhead::controller
