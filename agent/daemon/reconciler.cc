#include "agent/daemon/reconciler.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <future>

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "agent/core/ruleset.h"
#include "agent/daemon/state_file.h"
#include "agent/linux/ruleset_hash.h"
#include "common/format.h"
#include "common/saturating.h"

namespace bulkhead::agent {
namespace {

using SteadyClock = std::chrono::steady_clock;

// A step run alongside others on a thread of its own; when no thread can be started (a host
// out of processes or threads, as under a fork bomb), libstdc++ runs it deferred, in the
// thread that waits for it: the same steps, one after the other. Such a step captures by
// reference only: libstdc++ has already moved the function object into the thread that
// failed to start, so what it captured by value would be gone by then.
constexpr auto kAlongside = std::launch::async | std::launch::deferred;

int64_t microsSince(SteadyClock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - t0).count();
}

// What one step did, timed on the thread that ran it.
struct StepResult {
  absl::Status status;
  std::string detail;  // on success: what the step did
  int64_t duration_us = 0;
};

// Runs `fn` (which may fill in a detail), timing it.
StepResult timeStep(const std::function<absl::Status(std::string*)>& fn) {
  auto t0 = SteadyClock::now();
  StepResult r;
  r.status = fn(&r.detail);
  r.duration_us = microsSince(t0);
  return r;
}

void addStep(const std::string& name, const StepResult& result, v1::Step* step) {
  step->set_name(name);
  step->set_ok(result.status.ok());
  step->set_detail(result.status.ok() ? result.detail : std::string(result.status.message()));
  step->set_duration_us(result.duration_us);
}

// Records named steps in the report, in the order they are recorded. Not thread-safe: a step
// run on another thread is timed there (timeStep) and recorded here once it is done.
class Steps {
 public:
  explicit Steps(google::protobuf::RepeatedPtrField<v1::Step>* out) : out_(out) {}
  absl::Status run(const std::string& name, const std::function<absl::Status(std::string*)>& fn) {
    return record(name, timeStep(fn));
  }
  absl::Status record(const std::string& name, const StepResult& result) {
    addStep(name, result, out_->Add());
    return result.status;
  }

 private:
  google::protobuf::RepeatedPtrField<v1::Step>* out_;
};

std::string ipText(int family, const std::array<uint8_t, 16>& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (inet_ntop(family == AF_INET6 ? AF_INET6 : AF_INET, a.data(), buf, sizeof buf) == nullptr) {
    return "";
  }
  return buf;
}

}  // namespace

v1::FlowRecord toFlowRecord(const Flow& f) {
  v1::FlowRecord r;
  switch (f.proto) {
    case FlowProto::kTcp: r.set_protocol(v1::PROTOCOL_TCP); break;
    case FlowProto::kUdp: r.set_protocol(v1::PROTOCOL_UDP); break;
    case FlowProto::kIcmp:
    case FlowProto::kIcmpv6: r.set_protocol(v1::PROTOCOL_ICMP); break;
    case FlowProto::kOther: r.set_protocol(v1::PROTOCOL_ANY); break;
  }
  r.set_local_ip(ipText(f.family, f.local_addr));
  r.set_local_port(f.local_port);
  r.set_remote_ip(ipText(f.family, f.remote_addr));
  r.set_remote_port(f.remote_port);
  r.set_forwarded(f.forwarded);
  r.set_pid(f.owner_pid);
  r.set_description(f.toString());
  return r;
}

Reconciler::Reconciler(ReconcilerOptions options, Firewall* firewall, FlowKiller* killer, NowFn now)
    : options_(std::move(options)), firewall_(firewall), killer_(killer), now_(std::move(now)) {}

v1::DesiredState Reconciler::withPinnedController(const v1::DesiredState& s) const {
  v1::DesiredState merged = s;
  for (const auto& pin : options_.pinned_controller) {
    bool present = false;
    for (const auto& ep : merged.controller_endpoints()) {
      if (ep.ip() == pin.ip() && ep.port() == pin.port()) present = true;
    }
    if (!present) *merged.add_controller_endpoints() = pin;
  }
  return merged;
}

void Reconciler::noteDesired(const v1::DesiredState& s) {
  state_.desired_generation = s.generation();
  state_.exemption_sets.assign(s.isolation().exemption_sets().begin(),
                               s.isolation().exemption_sets().end());
  state_.blocks = static_cast<size_t>(s.blocks_size());
}

v1::StateReport Reconciler::enforce(const v1::DesiredState& desired, bool fail_closed,
                                    bool incremental) {
  const auto started = SteadyClock::now();
  v1::StateReport r = enforceSteps(desired, fail_closed, incremental);
  r.set_duration_us(microsSince(started));
  return r;
}

v1::StateReport Reconciler::enforceSteps(const v1::DesiredState& desired, bool fail_closed,
                                         bool incremental) {
  v1::StateReport r;
  r.set_generation(desired.generation());
  Steps steps(r.mutable_steps());
  const int64_t now = now_();
  auto fail = [&](const std::string& error) {
    r.set_ok(false);
    r.set_error(error);
    r.set_enforced_generation(state_.enforced_generation);
    r.set_ruleset_hash(state_.ruleset_hash);
    r.set_left_closed(state_.isolated);
    r.set_applied_at_unix_ms(now);
    return r;
  };
  if (!options_.enforcement_allowed.ok()) {
    return fail(std::string(options_.enforcement_allowed.message()));
  }
  const v1::DesiredState merged = withPinnedController(desired);
  if (auto s = steps.run("validate", [&](std::string*) { return validateDesiredState(merged); });
      !s.ok()) {
    return fail(fmt::format("invalid desired state, nothing applied: {}", s));
  }
  const bool active = isolationActive(merged, now);
  const BlockElements blocks = blockElements(merged, now);
  const bool want_table = active || !blocks.empty();
  const BlockElements before = state_.table_expected ? kernel_blocks_ : BlockElements();
  std::string hash;
  std::string base;
  // Cut what the new state drops: everything not kept while isolated, and (a block wins over
  // an exemption) whatever a block matches, whenever blocks were added. Only with a table.
  const bool cut_flows = want_table && (active || blocksAdded(before, blocks));
  CutReport cut;
  // The cut runs on a thread of its own once the new table is in the kernel (a cut flow cannot
  // come back through it), while this thread reads the table back: sock_diag and conntrack
  // against nf_tables, separate kernel paths. Declared after what it reads, so that leaving
  // this function on any path waits for it first.
  std::future<StepResult> cutting;
  // Waits for the cut and records it; an enumeration that failed is an error only for a
  // report that is otherwise a success (its own error says more).
  auto finishCut = [&] {
    if (!cutting.valid()) return;
    const StepResult done = cutting.get();
    (void)steps.record("cut flows", done);
    r.set_flows_cut(
        static_cast<uint32_t>(cut.sockets_destroyed.size() + cut.conntrack_deleted.size()));
    if (!done.status.ok() && r.ok()) {
      r.set_ok(false);
      r.set_error(
          fmt::format("ruleset enforced, but established flows were not cut: {}", done.status));
      r.set_left_closed(true);
    }
  };
  if (want_table) {
    v1::DesiredState without_blocks = merged;
    without_blocks.clear_blocks();
    base = renderRuleset(without_blocks, now);
    // Only blocks changed and the table is in place: add/delete elements, no rebuild.
    std::optional<std::string> batch;
    // An unchanged state is re-applied in full (re-verification, tamper restore).
    if (incremental && state_.table_expected && !state_.ruleset_hash.empty() &&
        kernel_base_ == base) {
      batch = blockUpdateBatch(kernel_blocks_, blocks, now);
      if (batch && batch->empty()) batch.reset();
    }
    bool updated = false;
    if (batch) {
      auto s = steps.run("update blocks", [&](std::string* d) {
        *d = fmt::format("{} bytes", batch->size());
        return firewall_->update(*batch);
      });
      updated = s.ok();
      if (!s.ok()) spdlog::warn("incremental block update failed, rebuilding the table: {}", s);
    }
    if (!updated) {
      std::string text;
      (void)steps.run("render", [&](std::string* d) {
        text = renderRuleset(merged, now);
        *d = fmt::format("{} bytes, isolation {}, {} block sets", text.size(),
                         active ? "on" : "off", blocks.size());
        return absl::OkStatus();
      });
      // Firewall::apply() is one kernel transaction: the kernel validates the whole batch and
      // commits all of it or nothing, so a separate check() would only cost time.
      if (auto s = steps.run("apply", [&](std::string*) { return firewall_->apply(text); });
          !s.ok()) {
        return fail(fmt::format("the ruleset was not applied, previous one kept: {}", s));
      }
    }
    if (cut_flows) {
      cutting = std::async(kAlongside, [&] {
        return timeStep([&](std::string* d) {
          const FlowFilter filter(merged, active);
          const BlockMatcher matcher(merged, now);
          auto c = killer_->cut(
              [&](const Flow& f) { return !filter.kept(f) || matcher.blocked(f); }, false);
          if (!c.ok()) return c.status();
          cut = *std::move(c);
          *d = fmt::format(
              "{} sockets destroyed, {} conntrack entries deleted, {} kept{}",
              cut.sockets_destroyed.size(), cut.conntrack_deleted.size(),
              cut.sockets_kept.size() + cut.conntrack_kept.size(),
              cut.errors.empty() ? "" : fmt::format("; errors: {}", fmt::join(cut.errors, "; ")));
          return absl::OkStatus();
        });
      });
    }
    auto s = steps.run("read back", [&](std::string* d) {
      auto back = firewall_->readBack();
      if (!back.ok()) return back.status();
      hash = rulesetHash(*back);
      *d = fmt::format("sha256 {}", hash);
      return absl::OkStatus();
    });
    if (!s.ok()) {
      // The apply reported success but the table cannot be read back: not enforced. The flows
      // the new table drops were cut all the same; the report says so.
      state_.ruleset_hash.clear();
      fail(fmt::format("ruleset applied but not read back from the kernel: {}", s));
      finishCut();
      return r;
    }
  } else {
    if (auto s = steps.run("remove table", [&](std::string*) { return firewall_->remove(); });
        !s.ok()) {
      return fail(fmt::format("removing the table failed: {}", s));
    }
    auto s = steps.run("read back", [&](std::string* d) {
      auto back = firewall_->readBack();
      if (back.ok()) return absl::InternalError("table inet bulkhead still present after removal");
      if (back.status().code() != absl::StatusCode::kNotFound) return back.status();
      *d = "no table";
      return absl::OkStatus();
    });
    if (!s.ok()) return fail(fmt::format("release not verified: {}", s));
  }

  state_.enforced_generation = desired.generation();
  state_.ruleset_hash = hash;
  state_.table_expected = want_table;
  state_.isolated = active;
  state_.isolation_expires_at_unix_ms = active ? merged.isolation().expires_at_unix_ms() : 0;
  state_.fail_closed = fail_closed;
  kernel_blocks_ = want_table ? blocks : BlockElements();
  kernel_base_ = base;
  r.set_ok(true);
  r.set_enforced_generation(desired.generation());
  r.set_ruleset_hash(hash);

  finishCut();
  r.set_applied_at_unix_ms(now_());
  return r;
}

std::optional<v1::StateReport> Reconciler::restore() {
  auto loaded = loadDesiredState(options_.state_dir);
  if (loaded.ok()) {
    if (!loaded->has_value()) return std::nullopt;
    desired_ = **loaded;
    noteDesired(*desired_);
    return enforce(*desired_, false);
  }
  // Fail closed: the state may have said "isolated"; keep only the controller channel.
  spdlog::error("persisted desired state unreadable ({}); failing closed to a controller-only "
                "isolation",
                loaded.status());
  v1::DesiredState closed;
  closed.set_generation(0);
  closed.mutable_isolation()->set_enabled(true);
  closed.mutable_isolation()->set_reason("fail closed: persisted desired state unreadable");
  desired_.reset();
  state_.desired_generation = 0;
  v1::StateReport r = enforce(closed, true);
  if (r.ok()) {
    r.set_ok(false);
    r.set_error(fmt::format("persisted desired state unreadable ({}); failed closed to a "
                            "controller-only isolation until the controller sends a state",
                            loaded.status()));
    r.set_left_closed(true);
  }
  return r;
}

v1::StateReport Reconciler::apply(const v1::DesiredState& desired) {
  if (desired_ && desired.generation() < desired_->generation()) {
    v1::StateReport r;
    r.set_generation(desired.generation());
    r.set_ok(false);
    r.set_error(fmt::format("generation {} is older than generation {} this agent holds; ignored",
                            desired.generation(), desired_->generation()));
    r.set_enforced_generation(state_.enforced_generation);
    r.set_ruleset_hash(state_.ruleset_hash);
    r.set_left_closed(state_.isolated);
    r.set_applied_at_unix_ms(now_());
    return r;
  }
  // Validate before persisting: an invalid state must not replace the good one on disk.
  if (auto s = validateDesiredState(withPinnedController(desired)); !s.ok()) {
    v1::StateReport r;
    r.set_generation(desired.generation());
    r.set_ok(false);
    r.set_error(fmt::format("invalid desired state, nothing applied: {}", s));
    r.set_enforced_generation(state_.enforced_generation);
    r.set_ruleset_hash(state_.ruleset_hash);
    r.set_left_closed(state_.isolated);
    r.set_applied_at_unix_ms(now_());
    return r;
  }
  // The copy on disk is written (and synced) on a thread of its own while the state is
  // enforced, and the report waits for both: an acknowledged state is always on disk. An agent
  // that dies before the write is done restarts with the older copy, as it did when the write
  // came first and it died before it was done; the controller, holding no acknowledgement,
  // sends the state again.
  const auto started = SteadyClock::now();
  std::future<StepResult> persisting = std::async(kAlongside, [&] {
    return timeStep([&](std::string* d) {
      *d = desiredStatePath(options_.state_dir).string();
      return persistDesiredState(options_.state_dir, desired);
    });
  });
  desired_ = desired;
  noteDesired(desired);
  v1::StateReport r = enforce(desired, false);
  const StepResult persist = persisting.get();
  r.set_duration_us(microsSince(started));
  addStep("persist", persist, r.mutable_steps()->Add());
  std::rotate(r.mutable_steps()->rbegin(), r.mutable_steps()->rbegin() + 1,
              r.mutable_steps()->rend());   // persist is the first step
  if (!persist.status.ok() && r.ok()) {
    r.set_ok(false);
    r.set_error(fmt::format("enforced, but not persisted (an agent restart would lose it): {}",
                            persist.status));
    r.set_left_closed(state_.isolated);
  }
  return r;
}

std::optional<v1::StateReport> Reconciler::setPinnedController(
    std::vector<v1::Endpoint> endpoints) {
  auto same = [](const std::vector<v1::Endpoint>& a, const std::vector<v1::Endpoint>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (a[i].ip() != b[i].ip() || a[i].port() != b[i].port()) return false;
    }
    return true;
  };
  if (same(endpoints, options_.pinned_controller)) return std::nullopt;
  options_.pinned_controller = std::move(endpoints);
  if (!options_.enforcement_allowed.ok() || (!state_.isolated && !state_.fail_closed)) {
    return std::nullopt;   // the controller channel matters only while isolated
  }
  if (desired_) return enforce(*desired_, false);
  v1::DesiredState closed;
  closed.mutable_isolation()->set_enabled(true);
  return enforce(closed, true);
}

void Reconciler::noteExpiredBlocks(int64_t now) {
  bool expired = false;
  for (auto& [name, elems] : kernel_blocks_) {
    for (auto it = elems.begin(); it != elems.end();) {
      if (it->second != 0 && it->second + kBlockExpirySlackMs <= now) {
        last_block_expiry_ms_ = std::max(last_block_expiry_ms_, it->second);
        it = elems.erase(it);
        expired = true;
      } else {
        ++it;
      }
    }
  }
  if (!expired || !state_.table_expected) return;
  if (auto back = firewall_->readBack(); back.ok()) state_.ruleset_hash = rulesetHash(*back);
}

std::optional<v1::StateReport> Reconciler::tick() {
  if (!desired_ || !options_.enforcement_allowed.ok()) return std::nullopt;
  noteExpiredBlocks(now_());
  bool active = isolationActive(*desired_, now_());
  if (active == state_.isolated) return std::nullopt;
  spdlog::info("isolation of generation {} {}", desired_->generation(),
               active ? "now in force" : "expired: releasing locally");
  return enforce(*desired_, false);
}

int64_t Reconciler::nextDeadline() const {
  if (!desired_) return 0;
  int64_t next = state_.isolated ? state_.isolation_expires_at_unix_ms : 0;
  // Block elements expire in the kernel by themselves; the tick only refreshes the hash, a
  // little after the kernel's own (slightly later) expiry.
  if (int64_t b = nextBlockExpiry(kernel_blocks_, saturatingSub(now_(), kBlockExpirySlackMs));
      b != 0) {
    b = saturatingAdd(b, kBlockExpirySlackMs);
    if (next == 0 || b < next) next = b;
  }
  return next;
}

std::optional<v1::TamperEvent> Reconciler::recheck(const std::string& what) {
  if (!options_.enforcement_allowed.ok()) return std::nullopt;
  if (!desired_ && !state_.fail_closed) return std::nullopt;   // no state: no opinion
  auto t0 = SteadyClock::now();
  auto back = firewall_->readBack();
  if (!back.ok() && back.status().code() != absl::StatusCode::kNotFound) {
    spdlog::warn("tamper re-check: cannot read the table back: {}", back.status());
    return std::nullopt;
  }
  const bool present = back.ok();
  const std::string hash = present ? rulesetHash(*back) : "";
  if (present == state_.table_expected && hash == state_.ruleset_hash) return std::nullopt;
  if (present && state_.table_expected) {
    // Block elements the kernel timed out itself change the listing: not a tamper.
    const int64_t now = now_();
    noteExpiredBlocks(now);
    const bool expiring = nextBlockExpiry(kernel_blocks_, now - kBlockExpirySlackMs) != 0 &&
                          nextBlockExpiry(kernel_blocks_, now - kBlockExpirySlackMs) <=
                              now + kBlockExpirySlackMs;
    if (hash == state_.ruleset_hash) return std::nullopt;
    if (expiring || (last_block_expiry_ms_ != 0 &&
                     now - last_block_expiry_ms_ <= 2 * kBlockExpirySlackMs)) {
      state_.ruleset_hash = hash;
      return std::nullopt;
    }
  }

  v1::TamperEvent e;
  e.set_at_unix_ms(now_());
  std::string change = !present ? "table inet bulkhead deleted"
                       : state_.table_expected ? "table inet bulkhead changed"
                                               : "table inet bulkhead appeared";
  e.set_what(what.empty() ? change : fmt::format("{} ({})", change, what));
  bool restored = false;
  if (state_.fail_closed && !desired_) {
    v1::DesiredState closed;
    closed.mutable_isolation()->set_enabled(true);
    restored = enforce(closed, true).ok();
  } else if (desired_) {
    restored = enforce(*desired_, false, /*incremental=*/false).ok();
  }
  e.set_restored(restored);
  e.set_restore_latency_us(
      std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - t0).count());
  return e;
}

v1::CommandResult Reconciler::preview(const std::string& command_id,
                                      const v1::DesiredState& desired) {
  v1::CommandResult cr;
  cr.set_command_id(command_id);
  Steps steps(cr.mutable_steps());
  auto fail = [&](const std::string& error) {
    cr.set_ok(false);
    cr.set_error(error);
    return cr;
  };
  if (!options_.enforcement_allowed.ok()) return fail(std::string(options_.enforcement_allowed.message()));
  const v1::DesiredState merged = withPinnedController(desired);
  if (auto s = steps.run("validate", [&](std::string*) { return validateDesiredState(merged); });
      !s.ok()) {
    return fail(fmt::format("invalid desired state: {}", s));
  }
  const int64_t now = now_();
  const bool active = isolationActive(merged, now);
  std::string text = renderRuleset(merged, now);
  if (auto s = steps.run("check", [&](std::string*) { return firewall_->check(text); }); !s.ok()) {
    return fail(fmt::format("the kernel would reject the ruleset: {}", s));
  }
  auto* p = cr.mutable_preview();
  p->set_ruleset_text(active || merged.blocks_size() > 0 ? text : std::string());
  FlowFilter filter(merged, active);
  auto s = steps.run("list flows", [&](std::string* d) {
    BlockMatcher matcher(merged, now);
    auto c = killer_->cut([&](const Flow& f) { return !filter.kept(f) || matcher.blocked(f); },
                          /*dry_run=*/true);
    if (!c.ok()) return c.status();
    for (const auto& f : c->sockets_destroyed) *p->add_would_cut() = toFlowRecord(f);
    for (const auto& f : c->conntrack_deleted) *p->add_would_cut() = toFlowRecord(f);
    for (const auto& f : c->sockets_kept) *p->add_would_keep() = toFlowRecord(f);
    for (const auto& f : c->conntrack_kept) *p->add_would_keep() = toFlowRecord(f);
    *d = fmt::format("{} would be cut, {} kept", p->would_cut_size(), p->would_keep_size());
    return absl::OkStatus();
  });
  if (!s.ok()) return fail(fmt::format("live flows could not be listed: {}", s));
  cr.set_ok(true);
  return cr;
}

}  // namespace bulkhead::agent
