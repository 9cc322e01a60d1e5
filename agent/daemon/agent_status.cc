#include "agent/daemon/agent_status.h"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "absl/time/time.h"
#include "common/json.h"
#include "common/version.h"

namespace bulkhead::agent {
namespace {

nlohmann::json timeOrNull(int64_t unix_ms) {
  if (unix_ms <= 0) return nullptr;
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(unix_ms), absl::UTCTimeZone());
}

}  // namespace

std::string statusToJson(const AgentStatus& s, int64_t now_unix_ms) {
  nlohmann::json tamper = nlohmann::json::array();
  for (const auto& e : s.tamper_events) {
    tamper.push_back({{"at", timeOrNull(e.at_unix_ms())},
                      {"at_unix_ms", e.at_unix_ms()},
                      {"what", e.what()},
                      {"restored", e.restored()},
                      {"restore_latency_us", e.restore_latency_us()}});
  }
  nlohmann::json j = {
      {"host_id", s.host_id},
      {"agent_version", projectVersion()},
      {"pid", static_cast<int64_t>(::getpid())},
      {"now", timeOrNull(now_unix_ms)},
      {"controller",
       {{"address", s.controller},
        {"pinned_ips", s.controller_ips},
        {"connected", s.connected},
        {"target", s.controller_target},
        {"connected_since", timeOrNull(s.connected_since_unix_ms)},
        {"last_disconnect", timeOrNull(s.last_disconnect_unix_ms)},
        {"last_connect_error", s.last_connect_error},
        {"connects", s.connect_count}}},
      {"enforcement",
       {{"allowed", s.enforcement_allowed},
        {"refusal", s.enforcement_refusal},
        {"netns", s.netns_verdict},
        {"desired_generation", s.desired_generation},
        {"enforced_generation", s.enforced_generation},
        {"ruleset_hash", s.ruleset_hash},
        {"last_apply_ok", s.last_apply_ok},
        {"last_apply_error", s.last_apply_error},
        {"last_apply", timeOrNull(s.last_apply_unix_ms)},
        {"flows_cut_last", s.flows_cut_last},
        {"fail_closed", s.fail_closed}}},
      {"isolation",
       {{"enabled", s.isolated},
        {"exemption_sets", s.exemption_sets},
        {"expires_at", timeOrNull(s.isolation_expires_at_unix_ms)}}},
      {"blocks", s.blocks},
      {"last_tamper_event", tamper.empty() ? nlohmann::json(nullptr) : tamper.back()},
      {"tamper_events", tamper},
  };
  return dumpJson(j, 2) + "\n";
}

}  // namespace bulkhead::agent
