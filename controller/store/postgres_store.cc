#include "controller/store/postgres_store.h"

#include <regex>
#include <utility>

#include "common/format.h"
#include "controller/store/audit_key.h"
#include "controller/store/postgres_engine.h"
#include "controller/store/postgres_schema.h"

namespace bulkhead::controller {

std::string redactedUrl(const std::string& url) {
  // scheme://user:password@ -> scheme://user:***@ ; password=... -> password=***
  static const std::regex kUserInfo(R"(^(postgres(ql)?://[^:/@?]*):[^@/?]*@)");
  static const std::regex kPasswordParam(R"((password=)[^&\s]*)");
  std::string out = std::regex_replace(url, kUserInfo, "$1:***@");
  return std::regex_replace(out, kPasswordParam, "$1***");
}

absl::StatusOr<std::unique_ptr<PostgresStore>> PostgresStore::create(const std::string& url,
                                                                     SqliteStoreOptions options) {
  auto db = postgres::connect(url);
  if (!db.ok()) {
    return absl::UnavailableError(
        fmt::format("--store {}: {}", redactedUrl(url), db.status().message()));
  }
  if (auto s = postgres::migrate(db->get()); !s.ok()) {
    return absl::Status(s.code(), fmt::format("--store {}: cannot use the database: {}",
                                              redactedUrl(url), s.message()));
  }
  const std::string key = options.audit_key;
  std::unique_ptr<PostgresStore> store(
      new PostgresStore(*std::move(db), std::move(options.audit_key)));
  if (auto s = store->startKeyedChain(); !s.ok()) {
    return absl::Status(s.code(), fmt::format("--store {}: starting the keyed audit chain: {}",
                                              redactedUrl(url), s.message()));
  }
  // Another controller's key would make every row this one writes fail verification: refuse
  // to start rather than fork the chain's MACs.
  auto last = store->listAudit(1);
  if (!last.ok()) return last.status();
  if (!key.empty() && !last->empty() && !last->back().mac.empty() &&
      last->back().mac != auditRowMac(key, last->back())) {
    return absl::FailedPreconditionError(fmt::format(
        "--audit-key: this key (id {}) did not write the audit chain in {} (row {} has another "
        "MAC): every controller on one database needs the same audit key file",
        auditKeyId(key), redactedUrl(url), last->back().id));
  }
  return store;
}

int PostgresStore::latestSchemaVersion() { return postgres::latestSchemaVersion(); }

absl::StatusOr<int> PostgresStore::schemaVersion() {
  std::lock_guard lock(mu_);
  return postgres::schemaVersion(db_.get());
}

absl::Status PostgresStore::rewriteSchemaVersion() {
  return sql::inTransaction(db_.get(), [this]() -> absl::Status {
    sql::Stmt st(db_.get(), "UPDATE schema_version SET version = version");
    return st.run();
  });
}

}  // namespace bulkhead::controller
