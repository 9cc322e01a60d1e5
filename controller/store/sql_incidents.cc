// SqlIncidents (sql_tables.h).
#include "common/format.h"
#include "controller/store/sql_db.h"
#include "controller/store/sql_tables.h"

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;
using sql::Stmt;

absl::Status SqlIncidents::add(const v1::Incident& incident) {
  Stmt st(db_,
          "INSERT INTO incidents(tenant, id, opened_at, record) VALUES(?1, ?2, ?3, ?4) "
          "ON CONFLICT DO NOTHING");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, incident.tenant());
  st.bind(2, incident.incident_id());
  st.bind(3, incident.opened_unix_ms());
  st.bindBlob(4, incident.SerializeAsString());
  if (auto s = st.run(); !s.ok()) return s;
  if (db_->changes() == 0) {
    return absl::AlreadyExistsError(
        fmt::format("incident {} exists in tenant {}: choose another id", incident.incident_id(),
                    incident.tenant()));
  }
  return absl::OkStatus();
}

absl::Status SqlIncidents::update(const v1::Incident& incident) {
  Stmt st(db_, "UPDATE incidents SET record = ?3 WHERE tenant = ?1 AND id = ?2");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, incident.tenant());
  st.bind(2, incident.incident_id());
  st.bindBlob(3, incident.SerializeAsString());
  if (auto s = st.run(); !s.ok()) return s;
  if (db_->changes() == 0) return unknownIncident(incident.incident_id());
  return absl::OkStatus();
}

absl::StatusOr<v1::Incident> SqlIncidents::find(const std::string& tenant, const std::string& id) {
  Stmt st(db_, "SELECT record FROM incidents WHERE tenant = ?1 AND id = ?2");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, tenant);
  st.bind(2, id);
  const int rc = st.step();
  if (rc == sql::kDone) return unknownIncident(id);
  if (rc != sql::kRow) return sql::error(db_, "find incident");
  v1::Incident incident;
  if (!incident.ParseFromString(st.text(0))) {
    return absl::DataLossError(fmt::format("incidents: the record of {} does not parse", id));
  }
  return incident;
}

absl::StatusOr<std::vector<v1::Incident>> SqlIncidents::list(
    const std::vector<std::string>& tenants) {
  std::vector<v1::Incident> out;
  for (const std::string& tenant : tenants) {
    Stmt st(db_, "SELECT record FROM incidents WHERE tenant = ?1");
    if (auto s = st.prepared(); !s.ok()) return s;
    st.bind(1, tenant);
    int rc;
    while ((rc = st.step()) == sql::kRow) {
      if (!out.emplace_back().ParseFromString(st.text(0))) {
        return absl::DataLossError("incidents: a stored record does not parse");
      }
    }
    if (rc != sql::kDone) return sql::error(db_, "list incidents");
  }
  std::stable_sort(out.begin(), out.end(), [](const v1::Incident& a, const v1::Incident& b) {
    return a.opened_unix_ms() > b.opened_unix_ms();
  });
  return out;
}

}  // namespace bulkhead::controller
