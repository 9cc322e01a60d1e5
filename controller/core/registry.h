// The host registry: what the controller knows of every host, and whether it is online.
//
// Online means: a stream of the host is open (a session) and its last message arrived within
// the heartbeat timeout. Not thread-safe: the owner serialises access (the rpc layer holds one
// lock around it). No clocks of its own: time comes from the Clock passed in.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bulkhead/v1/containment.pb.h"
#include "common/parse.h"
#include "controller/core/clock.h"

namespace bulkhead::controller {

// Tamper events kept per host (older ones are dropped).
inline constexpr size_t kMaxTamperEvents = 50;

// What an agent says about itself in Hello.
struct HelloInfo {
  std::string hostname;
  std::vector<std::string> addresses;   // CIDR notation ("10.77.0.11/16")
  // The host's labels: the agent's claim, or for a host enrolled with a join token the
  // token's (then the claim is in reported_labels and labels_from_enrollment is set).
  Labels labels;
  Labels reported_labels;
  bool labels_from_enrollment = false;
  std::string labels_set_by;       // an admin's `bulkhead label` (then labels are those)
  std::string tenant = "default";  // an enrolled host's token's; else "default"
  std::string os;
  std::string agent_version;
  uint64_t enforced_generation = 0;
  std::string ruleset_hash;
};

struct HostInfo {
  std::string host_id;
  std::string hostname;
  std::vector<std::string> addresses;
  Labels labels;           // as HelloInfo::labels: what selectors and exemption sets use
  Labels reported_labels;  // the agent's claim when labels_from_enrollment (not persisted)
  bool labels_from_enrollment = false;
  std::string labels_set_by;       // as HelloInfo::labels_set_by
  std::string tenant = "default";  // as HelloInfo::tenant (from the enrollment, not persisted here)
  std::string os;
  std::string agent_version;
  int64_t first_seen_unix_ms = 0;
  int64_t last_seen_unix_ms = 0;
  int64_t connected_since_unix_ms = 0;   // 0 while no stream is open
  uint64_t enforced_generation = 0;
  std::string ruleset_hash;
  bulkhead::v1::StateReport last_report;            // empty until the first report
  std::deque<bulkhead::v1::TamperEvent> tamper_events;  // newest last, at most kMaxTamperEvents
};

struct TamperRecord {
  std::string host_id;
  bulkhead::v1::TamperEvent event;
};

class HostRegistry {
 public:
  HostRegistry(const Clock& clock, std::chrono::milliseconds heartbeat_timeout);

  // Adds hosts read from the store: they stay offline until they connect.
  void restore(std::vector<HostInfo> hosts);

  // A stream of `host_id` said hello. Returns the new session number (never 0). A session
  // already open for the host is superseded: its number is returned in *superseded (0 if none)
  // and later calls naming it are ignored.
  uint64_t connect(const std::string& host_id, const HelloInfo& hello, uint64_t* superseded);

  // Any message on a session refreshes last seen. False if the session is not current.
  bool touch(const std::string& host_id, uint64_t session);
  bool setEnforced(const std::string& host_id, uint64_t session, uint64_t generation,
                   const std::string& ruleset_hash);
  bool setReport(const std::string& host_id, uint64_t session,
                 const bulkhead::v1::StateReport& report);
  bool addTamper(const std::string& host_id, uint64_t session,
                 const bulkhead::v1::TamperEvent& event);

  // An admin set the host's labels (`bulkhead label`): they become its labels, and the agent's
  // claim, if that was what it had, moves to reported_labels. False for an unknown host.
  bool setLabels(const std::string& host_id, const Labels& labels, const std::string& set_by);

  // The stream of `session` ended. Ignored unless it is the host's current session.
  void disconnect(const std::string& host_id, uint64_t session);

  struct Expired {
    std::string host_id;
    uint64_t session = 0;
  };
  // Marks offline every session whose last message is older than the heartbeat timeout and
  // returns them, so the caller can end their streams.
  std::vector<Expired> sweep();

  bool online(const std::string& host_id) const;
  // The current session of a host that is online, else 0.
  uint64_t session(const std::string& host_id) const;
  const HostInfo* find(const std::string& host_id) const;
  // Hosts matching `selector` (all if empty), ordered by host id.
  std::vector<const HostInfo*> list(const Labels& selector = {}) const;
  size_t size() const { return hosts_.size(); }

  // Rows changed since the last call, and tamper events not yet persisted, for the flusher.
  struct Dirty {
    std::vector<HostInfo> hosts;
    std::vector<TamperRecord> tamper;
  };
  Dirty takeDirty();
  // Puts back what a failed flush could not persist.
  void restoreDirty(Dirty dirty);

 private:
  struct Entry {
    HostInfo info;
    uint64_t session = 0;   // 0 = no stream open
    bool dirty = false;
  };
  Entry* current(const std::string& host_id, uint64_t session);
  bool isOnline(const Entry& e) const;

  const Clock& clock_;
  const std::chrono::milliseconds heartbeat_timeout_;
  std::map<std::string, Entry> hosts_;
  uint64_t next_session_ = 1;
  std::vector<TamperRecord> pending_tamper_;
};

}  // namespace bulkhead::controller
