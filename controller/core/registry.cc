#include "controller/core/registry.h"

#include <algorithm>

namespace bulkhead::controller {

HostRegistry::HostRegistry(const Clock& clock, std::chrono::milliseconds heartbeat_timeout)
    : clock_(clock), heartbeat_timeout_(heartbeat_timeout) {}

void HostRegistry::restore(std::vector<HostInfo> hosts) {
  for (auto& h : hosts) {
    h.connected_since_unix_ms = 0;
    std::string id = h.host_id;
    hosts_[id] = Entry{.info = std::move(h)};
  }
}

uint64_t HostRegistry::connect(const std::string& host_id, const HelloInfo& hello,
                               uint64_t* superseded) {
  const int64_t now = clock_.nowUnixMs();
  Entry& e = hosts_[host_id];
  if (superseded != nullptr) *superseded = e.session;
  HostInfo& h = e.info;
  if (h.host_id.empty()) {
    h.host_id = host_id;
    h.first_seen_unix_ms = now;
  }
  h.hostname = hello.hostname;
  h.addresses = hello.addresses;
  h.labels = hello.labels;
  h.reported_labels = hello.reported_labels;
  h.labels_from_enrollment = hello.labels_from_enrollment;
  h.tenant = hello.tenant;
  h.labels_set_by = hello.labels_set_by;
  h.os = hello.os;
  h.agent_version = hello.agent_version;
  h.enforced_generation = hello.enforced_generation;
  h.ruleset_hash = hello.ruleset_hash;
  h.last_seen_unix_ms = now;
  h.connected_since_unix_ms = now;
  e.session = next_session_++;
  e.dirty = true;
  return e.session;
}

HostRegistry::Entry* HostRegistry::current(const std::string& host_id, uint64_t session) {
  auto it = hosts_.find(host_id);
  if (it == hosts_.end() || session == 0 || it->second.session != session) return nullptr;
  return &it->second;
}

bool HostRegistry::touch(const std::string& host_id, uint64_t session) {
  Entry* e = current(host_id, session);
  if (e == nullptr) return false;
  e->info.last_seen_unix_ms = clock_.nowUnixMs();
  e->dirty = true;
  return true;
}

bool HostRegistry::setEnforced(const std::string& host_id, uint64_t session, uint64_t generation,
                               const std::string& ruleset_hash) {
  Entry* e = current(host_id, session);
  if (e == nullptr) return false;
  e->info.last_seen_unix_ms = clock_.nowUnixMs();
  e->info.enforced_generation = generation;
  e->info.ruleset_hash = ruleset_hash;
  e->dirty = true;
  return true;
}

bool HostRegistry::setReport(const std::string& host_id, uint64_t session,
                             const bulkhead::v1::StateReport& report) {
  Entry* e = current(host_id, session);
  if (e == nullptr) return false;
  e->info.last_seen_unix_ms = clock_.nowUnixMs();
  e->info.enforced_generation = report.enforced_generation();
  e->info.ruleset_hash = report.ruleset_hash();
  e->info.last_report = report;
  e->dirty = true;
  return true;
}

bool HostRegistry::setLabels(const std::string& host_id, const Labels& labels,
                             const std::string& set_by) {
  auto it = hosts_.find(host_id);
  if (it == hosts_.end()) return false;
  HostInfo& h = it->second.info;
  if (!h.labels_from_enrollment && h.labels_set_by.empty()) h.reported_labels = h.labels;
  h.labels = labels;
  h.labels_set_by = set_by;
  it->second.dirty = true;
  return true;
}

bool HostRegistry::addTamper(const std::string& host_id, uint64_t session,
                             const bulkhead::v1::TamperEvent& event) {
  Entry* e = current(host_id, session);
  if (e == nullptr) return false;
  e->info.last_seen_unix_ms = clock_.nowUnixMs();
  e->info.tamper_events.push_back(event);
  while (e->info.tamper_events.size() > kMaxTamperEvents) e->info.tamper_events.pop_front();
  pending_tamper_.push_back({host_id, event});
  e->dirty = true;
  return true;
}

void HostRegistry::disconnect(const std::string& host_id, uint64_t session) {
  Entry* e = current(host_id, session);
  if (e == nullptr) return;
  e->session = 0;
  e->info.connected_since_unix_ms = 0;
  e->dirty = true;
}

bool HostRegistry::isOnline(const Entry& e) const {
  return e.session != 0 &&
         clock_.nowUnixMs() - e.info.last_seen_unix_ms <= heartbeat_timeout_.count();
}

std::vector<HostRegistry::Expired> HostRegistry::sweep() {
  std::vector<Expired> out;
  for (auto& [id, e] : hosts_) {
    if (e.session != 0 && !isOnline(e)) {
      out.push_back({id, e.session});
      e.session = 0;
      e.info.connected_since_unix_ms = 0;
      e.dirty = true;
    }
  }
  return out;
}

bool HostRegistry::online(const std::string& host_id) const {
  auto it = hosts_.find(host_id);
  return it != hosts_.end() && isOnline(it->second);
}

uint64_t HostRegistry::session(const std::string& host_id) const {
  auto it = hosts_.find(host_id);
  return it != hosts_.end() && isOnline(it->second) ? it->second.session : 0;
}

const HostInfo* HostRegistry::find(const std::string& host_id) const {
  auto it = hosts_.find(host_id);
  return it == hosts_.end() ? nullptr : &it->second.info;
}

std::vector<const HostInfo*> HostRegistry::list(const Labels& selector) const {
  std::vector<const HostInfo*> out;
  for (const auto& [id, e] : hosts_) {
    if (selectorMatches(selector, e.info.labels)) out.push_back(&e.info);
  }
  return out;
}

HostRegistry::Dirty HostRegistry::takeDirty() {
  Dirty d;
  for (auto& [id, e] : hosts_) {
    if (e.dirty) {
      d.hosts.push_back(e.info);
      e.dirty = false;
    }
  }
  d.tamper.swap(pending_tamper_);
  return d;
}

void HostRegistry::restoreDirty(Dirty dirty) {
  for (const auto& h : dirty.hosts) {
    auto it = hosts_.find(h.host_id);
    if (it != hosts_.end()) it->second.dirty = true;
  }
  pending_tamper_.insert(pending_tamper_.begin(), dirty.tamper.begin(), dirty.tamper.end());
}

}  // namespace bulkhead::controller
