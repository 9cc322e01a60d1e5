#include "controller/service/name_cache.h"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <ctime>
#include <set>

#include "common/format.h"

namespace bulkhead::controller {

namespace {

void addNames(const ExemptionSet& set, std::set<std::string>& names) {
  for (const PolicyRule& rule : set.rules) {
    if (!rule.remote_cidr) names.insert(rule.remote);
  }
}

}  // namespace

std::vector<std::string> namesIn(const PolicyLibrary& library) {
  std::set<std::string> names;
  for (const auto& [name, set] : library.sets) addNames(set, names);
  return {names.begin(), names.end()};
}

std::vector<std::string> namesIn(const TenantPolicies& policies) {
  std::set<std::string> names;
  for (const ExemptionSet* set : policies.all()) addNames(*set, names);
  return {names.begin(), names.end()};
}

absl::StatusOr<std::vector<std::string>> NameCache::Lookup::resolve(const std::string& name) {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::UnavailableError("not resolved yet (the library naming it was just loaded)");
  }
  const Entry& e = it->second;
  if (e.addresses.empty()) {
    if (e.last_error.empty()) return absl::UnavailableError("not resolved yet");
    return absl::UnavailableError(e.last_error);
  }
  if (!e.last_error.empty() && warned_.insert(name).second) {
    const auto secs = static_cast<std::time_t>(e.resolved_at_unix_ms / 1000);
    warnings_.push_back(fmt::format(
        "exemption addresses of \"{}\" are stale: resolved at {:%Y-%m-%dT%H:%M:%SZ}, the "
        "refresh since failed: {}",
        name, fmt::gmtime(secs), e.last_error));
  }
  return e.addresses;
}

NameCache::NameCache(const Clock& clock, const Policies& policies, NameResolver& resolver,
                     NameCacheOptions options)
    : clock_(clock), policies_(policies), resolver_(resolver), options_(options) {
  thread_.post([this] { update(/*refresh=*/true); });
  thread_.every(options_.poll, [this] { update(/*refresh=*/false); });
}

NameCache::~NameCache() { thread_.stop(); }

NameCache::Lookup NameCache::lookup() const {
  std::lock_guard lock(mu_);
  return Lookup(entries_);
}

std::optional<NameCache::Entry> NameCache::entry(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = entries_.find(name);
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

void NameCache::update(bool refresh) {
  if (thread_.stopping()) return;
  std::unique_lock lock(mu_);
  auto library = policies_.current();
  const bool changed = library != library_;
  if (changed || refresh) {
    const std::vector<std::string> names = namesIn(*library);
    std::vector<std::string> todo;
    if (changed) {
      // Names the new library no longer uses are forgotten; new ones resolved now.
      std::map<std::string, Entry> kept;
      for (const auto& n : names) {
        auto it = entries_.find(n);
        if (it != entries_.end()) {
          kept.insert(*it);
        } else {
          kept.emplace(n, Entry{});
        }
      }
      entries_ = std::move(kept);
      library_ = library;
    }
    for (const auto& n : names) {
      if (refresh || entries_.at(n).resolved_at_unix_ms == 0) todo.push_back(n);
    }
    resolveAll(todo, lock);
  }
  lock.unlock();
  // The next refresh comes `refresh` after this one ends, however long it took.
  if (refresh) thread_.after(options_.refresh, [this] { update(/*refresh=*/true); });
}

void NameCache::resolveAll(const std::vector<std::string>& names,
                           std::unique_lock<std::mutex>& lock) {
  for (const auto& name : names) {
    if (thread_.stopping()) return;
    lock.unlock();
    auto answer = resolver_.resolve(name);
    const int64_t now = clock_.nowUnixMs();
    lock.lock();
    auto it = entries_.find(name);
    if (it == entries_.end()) continue;  // a reload dropped it meanwhile
    Entry& e = it->second;
    if (answer.ok() && !answer->empty()) {
      e.addresses = *std::move(answer);
      e.resolved_at_unix_ms = now;
      e.last_error.clear();
    } else {
      e.last_error = answer.ok() ? std::string("resolved to no address")
                                 : std::string(answer.status().message());
      spdlog::warn("exemption name \"{}\": cannot resolve: {}{}", name, e.last_error,
                   e.addresses.empty() ? "" : " (the previous addresses stay in use)");
    }
  }
}

}  // namespace bulkhead::controller
