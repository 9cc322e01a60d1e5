// The addresses of the DNS names used by the exemption sets in force, resolved on a thread of
// their own: as soon as a library comes into force (start, SIGHUP reload) and again every
// `refresh`. Isolation reads the last good answer and never waits for a resolver, so one slow
// DNS server cannot stall the containment thread that every isolate in the fleet goes through.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/policy.h"
#include "common/scheduler.h"
#include "common/tenant_policy.h"
#include "controller/core/clock.h"
#include "controller/service/policies.h"

namespace bulkhead::controller {

struct NameCacheOptions {
  std::chrono::milliseconds refresh{std::chrono::seconds(60)};
  // How often the thread looks for a newly loaded library (its new names are resolved then).
  std::chrono::milliseconds poll{std::chrono::milliseconds(200)};
};

class NameCache {
 public:
  // What is known of one name.
  struct Entry {
    std::vector<std::string> addresses;  // the last good answer; empty if none yet
    int64_t resolved_at_unix_ms = 0;     // when it was obtained (0: never)
    std::string last_error;              // the last attempt's error; empty if it succeeded
  };

  // Answers resolveExemptions() from the cache, never blocking, and collects a warning for
  // each name answered with addresses whose refresh since failed. One per isolate call.
  class Lookup final : public NameResolver {
   public:
    // The last good addresses. A name with none is an error carrying the last failure, or
    // "not resolved yet" while its first resolution is still running.
    absl::StatusOr<std::vector<std::string>> resolve(const std::string& name) override;
    // One line per stale name used: which name, from when, and why the refresh failed.
    const std::vector<std::string>& warnings() const { return warnings_; }

   private:
    friend class NameCache;
    explicit Lookup(std::map<std::string, Entry> entries) : entries_(std::move(entries)) {}
    std::map<std::string, Entry> entries_;
    std::vector<std::string> warnings_;
    std::set<std::string> warned_;  // names already in warnings_
  };

  // Starts the thread, which resolves the names of `policies`' current library at once.
  // `resolver` and `policies` must outlive this.
  NameCache(const Clock& clock, const Policies& policies, NameResolver& resolver,
            NameCacheOptions options);
  ~NameCache();  // stops the thread (after the resolution in progress, if any, returns)
  NameCache(const NameCache&) = delete;
  NameCache& operator=(const NameCache&) = delete;

  // A snapshot of every name for one isolate call. Thread-safe, never blocks on DNS.
  Lookup lookup() const;
  // What is known of `name`; nullopt if it is not a name of the library in force.
  std::optional<Entry> entry(const std::string& name) const;

 private:
  // On the thread: takes up the library in force if it changed (its new names are resolved),
  // and with `refresh` resolves every name again and schedules the next refresh.
  void update(bool refresh);
  // Resolves `names` (without the lock) and stores the answers; returns early once stopping.
  void resolveAll(const std::vector<std::string>& names, std::unique_lock<std::mutex>& lock);

  const Clock& clock_;
  const Policies& policies_;
  NameResolver& resolver_;
  const NameCacheOptions options_;
  mutable std::mutex mu_;
  std::shared_ptr<const TenantPolicies> library_;  // GUARDED_BY(mu_) the one resolved for
  std::map<std::string, Entry> entries_;          // GUARDED_BY(mu_)
  Scheduler thread_{"bh-dns"};                    // last: stopped first on destruction
};

// The DNS names (not literal addresses) used by the rules of `library`, sorted, unique.
std::vector<std::string> namesIn(const PolicyLibrary& library);
// The same over every tenant's sets.
std::vector<std::string> namesIn(const TenantPolicies& policies);

}  // namespace bulkhead::controller
