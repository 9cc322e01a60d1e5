// SqlHosts and SqlDesiredStates (sql_tables.h).
#include "common/format.h"
#include "controller/core/blocks.h"
#include "controller/store/sql_db.h"
#include "controller/store/sql_tables.h"

namespace bulkhead::controller {

using sql::Stmt;

namespace {

HostInfo readHost(Stmt& st) {
  HostInfo h;
  h.host_id = st.text(0);
  h.hostname = st.text(1);
  h.addresses = st.strings(2);
  // A row whose labels do not read keeps none: the agent reports them again when it connects.
  if (auto labels = sql::readLabelsJson(st.text(3), "hosts"); labels.ok()) {
    h.labels = *std::move(labels);
  }
  h.os = st.text(4);
  h.agent_version = st.text(5);
  h.first_seen_unix_ms = st.i64(6);
  h.last_seen_unix_ms = st.i64(7);
  h.enforced_generation = static_cast<uint64_t>(st.i64(8));
  h.ruleset_hash = st.text(9);
  h.last_report.ParseFromString(st.text(10));
  return h;
}

}  // namespace

absl::Status SqlHosts::save(const std::vector<HostInfo>& hosts,
                            const std::vector<TamperRecord>& tamper) {
  Stmt up(db_, R"sql(
      INSERT INTO hosts(host_id, hostname, addresses, labels, os, agent_version,
                        first_seen_unix_ms, last_seen_unix_ms, enforced_generation,
                        ruleset_hash, last_report)
      VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
      ON CONFLICT(host_id) DO UPDATE SET
        hostname=excluded.hostname, addresses=excluded.addresses, labels=excluded.labels,
        os=excluded.os, agent_version=excluded.agent_version,
        first_seen_unix_ms=excluded.first_seen_unix_ms,
        last_seen_unix_ms=excluded.last_seen_unix_ms,
        enforced_generation=excluded.enforced_generation,
        ruleset_hash=excluded.ruleset_hash, last_report=excluded.last_report)sql");
  if (auto s = up.prepared(); !s.ok()) return s;
  for (const auto& h : hosts) {
    up.bind(1, h.host_id);
    up.bind(2, h.hostname);
    up.bindStrings(3, h.addresses);
    up.bind(4, sql::labelsJson(h.labels));
    up.bind(5, h.os);
    up.bind(6, h.agent_version);
    up.bind(7, h.first_seen_unix_ms);
    up.bind(8, h.last_seen_unix_ms);
    up.bind(9, static_cast<int64_t>(h.enforced_generation));
    up.bind(10, h.ruleset_hash);
    up.bindBlob(11, h.last_report.SerializeAsString());
    if (auto s = up.run(); !s.ok()) return s;
  }
  if (!tamper.empty()) {
    Stmt ins(db_, "INSERT INTO tamper_events(host_id, at_unix_ms, event) VALUES(?1, ?2, ?3)");
    if (auto s = ins.prepared(); !s.ok()) return s;
    for (const auto& t : tamper) {
      ins.bind(1, t.host_id);
      ins.bind(2, t.event.at_unix_ms());
      ins.bindBlob(3, t.event.SerializeAsString());
      if (auto s = ins.run(); !s.ok()) return s;
    }
    Stmt prune(db_, R"sql(
        DELETE FROM tamper_events WHERE host_id = ?1 AND id NOT IN (
          SELECT id FROM tamper_events WHERE host_id = ?1 ORDER BY id DESC LIMIT ?2))sql");
    if (auto s = prune.prepared(); !s.ok()) return s;
    std::string last;
    for (const auto& t : tamper) {
      if (t.host_id == last) continue;
      last = t.host_id;
      prune.bind(1, t.host_id);
      prune.bind(2, static_cast<int64_t>(kMaxTamperEvents));
      if (auto s = prune.run(); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<HostInfo>> SqlHosts::load() {
  absl::StatusOr<std::vector<HostInfo>> out;
  {
    Stmt st(db_, R"sql(
        SELECT host_id, hostname, addresses, labels, os, agent_version, first_seen_unix_ms,
               last_seen_unix_ms, enforced_generation, ruleset_hash, last_report
        FROM hosts ORDER BY host_id)sql");
    if (auto s = st.prepared(); !s.ok()) return s;
    out = st.collect(readHost, "load hosts");
    if (!out.ok()) return out.status();
  }
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < out->size(); ++i) index[(*out)[i].host_id] = i;
  Stmt ev(db_, "SELECT host_id, event FROM tamper_events ORDER BY id");
  if (auto s = ev.prepared(); !s.ok()) return s;
  int rc;
  while ((rc = ev.step()) == sql::kRow) {
    auto it = index.find(ev.text(0));
    if (it == index.end()) continue;
    bulkhead::v1::TamperEvent e;
    if (!e.ParseFromString(ev.text(1))) continue;
    auto& list = (*out)[it->second].tamper_events;
    list.push_back(std::move(e));
    while (list.size() > kMaxTamperEvents) list.pop_front();
  }
  if (rc != sql::kDone) return sql::error(db_, "load tamper events");
  return out;
}

absl::Status SqlDesiredStates::put(const std::string& host_id,
                                   const bulkhead::v1::DesiredState& state) {
  Stmt st(db_, R"sql(
      INSERT INTO desired_state(host_id, generation, state) VALUES(?1, ?2, ?3)
      ON CONFLICT(host_id) DO UPDATE SET generation=excluded.generation, state=excluded.state)sql");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, host_id);
  st.bind(2, static_cast<int64_t>(state.generation()));
  st.bindBlob(3, state.SerializeAsString());
  return st.run();
}

absl::Status SqlDesiredStates::putNewer(const std::string& host_id,
                                        const bulkhead::v1::DesiredState& state) {
  Stmt st(db_, R"sql(
      INSERT INTO desired_state(host_id, generation, state) VALUES(?1, ?2, ?3)
      ON CONFLICT(host_id) DO UPDATE SET generation=excluded.generation, state=excluded.state
      WHERE desired_state.generation < excluded.generation)sql");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, host_id);
  st.bind(2, static_cast<int64_t>(state.generation()));
  st.bindBlob(3, state.SerializeAsString());
  if (auto s = st.run(); !s.ok()) return s;
  if (db_->changes() > 0) return absl::OkStatus();
  Stmt stored(db_, "SELECT generation FROM desired_state WHERE host_id = ?1");
  if (auto s = stored.prepared(); !s.ok()) return s;
  stored.bind(1, host_id);
  const int64_t generation = stored.step() == sql::kRow ? stored.i64(0) : 0;
  return absl::AbortedError(fmt::format(
      "host {}: another controller changed its state first (generation {} is stored, this "
      "change was generation {})",
      host_id, generation, state.generation()));
}

namespace {

// One desired_state row's state; DataLoss naming the host when it does not parse.
absl::StatusOr<bulkhead::v1::DesiredState> readDesiredState(Stmt& st) {
  bulkhead::v1::DesiredState d;
  if (!d.ParseFromString(st.text(1))) {
    return absl::DataLossError(
        fmt::format("desired_state: row for host \"{}\" does not parse", st.text(0)));
  }
  readUnsetProtocolsAsAny(d);  // rows written before PROTOCOL_ANY existed carry 0
  return d;
}

}  // namespace

absl::StatusOr<std::map<std::string, bulkhead::v1::DesiredState>> SqlDesiredStates::load() {
  Stmt st(db_, "SELECT host_id, state FROM desired_state");
  if (auto s = st.prepared(); !s.ok()) return s;
  std::map<std::string, bulkhead::v1::DesiredState> out;
  int rc;
  while ((rc = st.step()) == sql::kRow) {
    auto d = readDesiredState(st);
    if (!d.ok()) return d.status();
    out[st.text(0)] = *std::move(d);
  }
  if (rc != sql::kDone) return sql::error(db_, "load desired states");
  return out;
}

absl::StatusOr<std::map<std::string, bulkhead::v1::DesiredState>> SqlDesiredStates::loadOf(
    const std::vector<std::string>& hosts) {
  Stmt st(db_, "SELECT host_id, state FROM desired_state WHERE host_id = ?1");
  if (auto s = st.prepared(); !s.ok()) return s;
  std::map<std::string, bulkhead::v1::DesiredState> out;
  for (const std::string& host : hosts) {
    st.bind(1, host);
    int rc = st.step();
    if (rc == sql::kRow) {
      auto d = readDesiredState(st);
      if (!d.ok()) return d.status();
      out[host] = *std::move(d);
      rc = st.step();
    }
    if (rc != sql::kDone) return sql::error(db_, "load desired states");
    st.reset();
  }
  return out;
}

}  // namespace bulkhead::controller
