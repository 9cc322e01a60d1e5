// SqlTenants (sql_tables.h).
#include "common/format.h"
#include "controller/store/sql_db.h"
#include "controller/store/sql_tables.h"

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;
using sql::Stmt;

template <typename Message>
absl::StatusOr<Message> parsed(const std::string& blob, const char* table) {
  Message m;
  if (!m.ParseFromString(blob)) {
    return absl::DataLossError(fmt::format("{}: a stored record does not parse", table));
  }
  return m;
}

}  // namespace

absl::Status SqlTenants::add(const v1::Tenant& tenant) {
  Stmt st(db_,
          "INSERT INTO tenants(name, created_at, record) VALUES(?1, ?2, ?3) "
          "ON CONFLICT DO NOTHING");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, tenant.name());
  st.bind(2, tenant.created_unix_ms());
  st.bindBlob(3, tenant.SerializeAsString());
  if (auto s = st.run(); !s.ok()) return s;
  if (db_->changes() == 0) {
    return absl::AlreadyExistsError(fmt::format("a tenant \"{}\" exists", tenant.name()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::Tenant>> SqlTenants::list() {
  Stmt st(db_, "SELECT record FROM tenants ORDER BY name");
  if (auto s = st.prepared(); !s.ok()) return s;
  std::vector<v1::Tenant> out;
  int rc;
  while ((rc = st.step()) == sql::kRow) {
    auto t = parsed<v1::Tenant>(st.text(0), "tenants");
    if (!t.ok()) return t.status();
    out.push_back(*std::move(t));
  }
  if (rc != sql::kDone) return sql::error(db_, "list tenants");
  return out;
}

absl::Status SqlTenants::addBinding(const v1::RoleBinding& binding) {
  Stmt st(db_,
          "INSERT INTO role_bindings(id, operator, tenant, hosts, created_at, record) "
          "VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, binding.binding_id());
  st.bind(2, binding.operator_name());
  st.bind(3, binding.tenant());
  st.bind(4, binding.hosts());
  st.bind(5, binding.created_unix_ms());
  st.bindBlob(6, binding.SerializeAsString());
  if (auto s = st.run(); !s.ok()) return s;
  if (db_->changes() == 0) {
    return absl::AlreadyExistsError(fmt::format(
        "operator \"{}\" has a binding in tenant {} on {} already: revoke it first",
        binding.operator_name(), binding.tenant(),
        binding.hosts().empty() ? "every host" : fmt::format("hosts {}", binding.hosts())));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::RoleBinding> SqlTenants::removeBinding(const std::string& binding_id) {
  Stmt find(db_, "SELECT record FROM role_bindings WHERE id = ?1");
  if (auto s = find.prepared(); !s.ok()) return s;
  find.bind(1, binding_id);
  const int rc = find.step();
  if (rc == sql::kDone) {
    return absl::NotFoundError(fmt::format("no role binding \"{}\"", binding_id));
  }
  if (rc != sql::kRow) return sql::error(db_, "find role binding");
  auto binding = parsed<v1::RoleBinding>(find.text(0), "role_bindings");
  if (!binding.ok()) return binding.status();
  Stmt del(db_, "DELETE FROM role_bindings WHERE id = ?1");
  if (auto s = del.prepared(); !s.ok()) return s;
  del.bind(1, binding_id);
  if (auto s = del.run(); !s.ok()) return s;
  return binding;
}

absl::StatusOr<std::vector<v1::RoleBinding>> SqlTenants::listBindings(
    const std::string& operator_name) {
  Stmt st(db_,
          "SELECT record FROM role_bindings WHERE ?1 = '' OR operator = ?1 "
          "ORDER BY tenant, operator, id");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, operator_name);
  std::vector<v1::RoleBinding> out;
  int rc;
  while ((rc = st.step()) == sql::kRow) {
    auto b = parsed<v1::RoleBinding>(st.text(0), "role_bindings");
    if (!b.ok()) return b.status();
    out.push_back(*std::move(b));
  }
  if (rc != sql::kDone) return sql::error(db_, "list role bindings");
  return out;
}

absl::Status SqlTenants::setHostLabels(const HostLabelsRow& row) {
  Stmt st(db_,
          "INSERT INTO host_labels(host_id, labels, set_by, set_at) VALUES(?1, ?2, ?3, ?4) "
          "ON CONFLICT(host_id) DO UPDATE SET labels = ?2, set_by = ?3, set_at = ?4");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, row.host_id);
  st.bind(2, sql::labelsJson(row.labels));
  st.bind(3, row.set_by);
  st.bind(4, row.set_unix_ms);
  return st.run();
}

absl::StatusOr<std::optional<HostLabelsRow>> SqlTenants::findHostLabels(
    const std::string& host_id) {
  Stmt st(db_, "SELECT labels, set_by, set_at FROM host_labels WHERE host_id = ?1");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, host_id);
  const int rc = st.step();
  if (rc == sql::kDone) return std::optional<HostLabelsRow>();
  if (rc != sql::kRow) return sql::error(db_, "find host labels");
  HostLabelsRow row{.host_id = host_id, .set_by = st.text(1), .set_unix_ms = st.i64(2)};
  auto labels = sql::readLabelsJson(st.text(0), "host_labels");
  if (!labels.ok()) return labels.status();
  row.labels = *std::move(labels);
  return std::optional<HostLabelsRow>(std::move(row));
}

}  // namespace bulkhead::controller
