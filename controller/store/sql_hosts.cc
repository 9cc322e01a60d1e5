// SqlHosts and SqlDesiredStates (sql_tables.h).
#include <algorithm>
#include <bit>
#include <set>

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

// Rows per multi-row INSERT: far under both engines' parameter limits (SQLite 32,766,
// PostgreSQL 65,535) with 11 columns; a few hundred rows make one round trip instead of one
// each.
constexpr size_t kMaxRowsPerStatement = 256;

// How many of `remaining` rows the next statement writes: a power of two, at most
// kMaxRowsPerStatement. The statements' SQL then takes at most 9 texts per table, so they
// stay few in SQLite's statement cache (bounded, and kept for the connection's life) however
// the row counts vary; any count takes at most log2 of it extra statements.
size_t rowsInNextStatement(size_t remaining) {
  return std::min(kMaxRowsPerStatement, std::bit_floor(remaining));
}

// "(?1, ?2, ?3), (?4, ?5, ?6)" for 2 rows of 3 columns.
std::string valueRows(size_t rows, size_t columns) {
  std::string out;
  size_t n = 0;
  for (size_t r = 0; r < rows; ++r) {
    out += r == 0 ? "(" : ", (";
    for (size_t c = 0; c < columns; ++c) out += fmt::format("{}?{}", c == 0 ? "" : ", ", ++n);
    out += ')';
  }
  return out;
}

constexpr size_t kHostColumns = 11;

std::string upsertHostsSql(size_t rows) {
  return fmt::format(R"sql(
      INSERT INTO hosts(host_id, hostname, addresses, labels, os, agent_version,
                        first_seen_unix_ms, last_seen_unix_ms, enforced_generation,
                        ruleset_hash, last_report)
      VALUES{}
      ON CONFLICT(host_id) DO UPDATE SET
        hostname=excluded.hostname, addresses=excluded.addresses, labels=excluded.labels,
        os=excluded.os, agent_version=excluded.agent_version,
        first_seen_unix_ms=excluded.first_seen_unix_ms,
        last_seen_unix_ms=excluded.last_seen_unix_ms,
        enforced_generation=excluded.enforced_generation,
        ruleset_hash=excluded.ruleset_hash, last_report=excluded.last_report)sql",
                     valueRows(rows, kHostColumns));
}

// Upserts hosts[begin, end), in statements of rowsInNextStatement() rows. REQUIRES: no host id
// twice among them (an upsert may not change one row twice).
absl::Status upsertHosts(sql::Db* db, const std::vector<HostInfo>& hosts, size_t begin,
                         size_t end) {
  while (begin < end) {
    const size_t rows = rowsInNextStatement(end - begin);
    Stmt up(db, upsertHostsSql(rows));
    if (auto s = up.prepared(); !s.ok()) return s;
    int i = 0;
    for (size_t k = begin; k < begin + rows; ++k) {
      const HostInfo& h = hosts[k];
      up.bind(++i, h.host_id);
      up.bind(++i, h.hostname);
      up.bindStrings(++i, h.addresses);
      up.bind(++i, sql::labelsJson(h.labels));
      up.bind(++i, h.os);
      up.bind(++i, h.agent_version);
      up.bind(++i, h.first_seen_unix_ms);
      up.bind(++i, h.last_seen_unix_ms);
      up.bind(++i, static_cast<int64_t>(h.enforced_generation));
      up.bind(++i, h.ruleset_hash);
      up.bindBlob(++i, h.last_report.SerializeAsString());
    }
    if (auto s = up.run(); !s.ok()) return s;
    begin += rows;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SqlHosts::save(const std::vector<HostInfo>& hosts,
                            const std::vector<TamperRecord>& tamper) {
  // A host listed twice starts a new run of statements, so its later row wins as when each
  // row had a statement of its own.
  std::set<std::string> in_run;
  size_t begin = 0;
  for (size_t k = 0; k <= hosts.size(); ++k) {
    if (k == hosts.size() || in_run.contains(hosts[k].host_id)) {
      if (auto s = upsertHosts(db_, hosts, begin, k); !s.ok()) return s;
      begin = k;
      in_run.clear();
    }
    if (k < hosts.size()) in_run.insert(hosts[k].host_id);
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

absl::Status SqlDesiredStates::putAllNewer(
    const std::map<std::string, bulkhead::v1::DesiredState>& states) {
  auto it = states.begin();
  for (size_t remaining = states.size(); remaining > 0;) {
    std::vector<std::pair<const std::string*, const bulkhead::v1::DesiredState*>> rows;
    for (const size_t take = rowsInNextStatement(remaining); rows.size() < take; ++it) {
      rows.emplace_back(&it->first, &it->second);
    }
    remaining -= rows.size();
    Stmt st(db_, fmt::format(R"sql(
        INSERT INTO desired_state(host_id, generation, state) VALUES{}
        ON CONFLICT(host_id) DO UPDATE SET generation=excluded.generation, state=excluded.state
        WHERE desired_state.generation < excluded.generation)sql",
                             valueRows(rows.size(), 3)));
    if (auto s = st.prepared(); !s.ok()) return s;
    int i = 0;
    for (const auto& [host, state] : rows) {
      st.bind(++i, *host);
      st.bind(++i, static_cast<int64_t>(state->generation()));
      st.bindBlob(++i, state->SerializeAsString());
    }
    if (auto s = st.run(); !s.ok()) return s;
    if (db_->changes() == static_cast<int64_t>(rows.size())) continue;
    // A row was kept: name the first host whose stored row is not the one written.
    Stmt stored(db_, "SELECT generation, state FROM desired_state WHERE host_id = ?1");
    if (auto s = stored.prepared(); !s.ok()) return s;
    for (const auto& [host, state] : rows) {
      stored.reset();
      stored.bind(1, *host);
      const bool found = stored.step() == sql::kRow;
      const int64_t generation = found ? stored.i64(0) : 0;
      if (!found || generation != static_cast<int64_t>(state->generation()) ||
          stored.text(1) != state->SerializeAsString()) {
        return absl::AbortedError(fmt::format(
            "host {}: another controller changed its state first (generation {} is stored, "
            "this change was generation {})",
            *host, generation, state->generation()));
      }
    }
    return absl::AbortedError(
        "another controller changed the state of one of the hosts first (at the same "
        "generation)");
  }
  return absl::OkStatus();
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
