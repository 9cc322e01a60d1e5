#include "controller/store/backup.h"

#include <fcntl.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <system_error>

#include "common/format.h"
#include "controller/store/sqlite_db.h"

namespace bulkhead::controller {
namespace {

namespace fs = std::filesystem;

absl::Status syncPath(const fs::path& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0)
    return absl::InternalError(fmt::format("open {}: {}", path.string(), strerror(errno)));
  const int rc = ::fsync(fd);
  const int saved = errno;
  ::close(fd);
  if (rc != 0)
    return absl::InternalError(fmt::format("fsync {}: {}", path.string(), strerror(saved)));
  return absl::OkStatus();
}

absl::StatusOr<int64_t> count(sqlite3* db, const char* sql) {
  sqlite::Stmt st(db, sql);
  if (auto s = st.prepared(); !s.ok()) return s;
  if (st.step() != SQLITE_ROW) return sqlite::error(db, sql);
  return st.i64(0);
}

}  // namespace

absl::StatusOr<BackupSummary> backupDatabase(const fs::path& database, const fs::path& to) {
  std::error_code ec;
  if (!fs::is_regular_file(database, ec)) {
    return absl::NotFoundError(
        fmt::format("no database at {} (is --data-dir the controller's?)", database.string()));
  }
  if (fs::exists(fs::symlink_status(to, ec))) {
    return absl::AlreadyExistsError(
        fmt::format("--to: {} exists: a backup never replaces a file", to.string()));
  }
  // The source: the live database, opened without creating anything.
  sqlite3* raw = nullptr;
  int rc =
      sqlite3_open_v2(database.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  sqlite::Connection source(raw);
  if (rc != SQLITE_OK) {
    return absl::PermissionDeniedError(fmt::format("cannot open {}: {}", database.string(),
                                                   raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  sqlite3_busy_timeout(source.get(), 5000);

  const fs::path partial = fs::path(to.string() + ".partial");
  fs::remove(partial, ec);
  auto cleanup = [&] { fs::remove(partial, ec); };
  BackupSummary summary;
  {
    sqlite3* raw_copy = nullptr;
    rc = sqlite3_open_v2(partial.c_str(), &raw_copy,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    auto copy = std::make_unique<sqlite::Connection>(raw_copy);
    if (rc != SQLITE_OK) {
      std::string why = raw_copy ? sqlite3_errmsg(raw_copy) : sqlite3_errstr(rc);
      copy->reset();
      cleanup();
      return absl::PermissionDeniedError(
          fmt::format("--to: cannot write {}: {}", partial.string(), why));
    }
    sqlite3_backup* backup = sqlite3_backup_init(copy->get(), "main", source.get(), "main");
    if (backup == nullptr) {
      absl::Status s = sqlite::error(copy->get(), "backup");
      copy->reset();
      cleanup();
      return s;
    }
    // One step: the whole database from one read transaction (a consistent instant). WAL
    // readers do not block the controller's writers; a busy source is retried.
    for (int tries = 0; tries < 100; ++tries) {
      rc = sqlite3_backup_step(backup, -1);
      if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED) break;
      sqlite3_sleep(50);
    }
    sqlite3_backup_finish(backup);
    absl::Status copied = rc == SQLITE_DONE
                              ? absl::OkStatus()
                              : absl::InternalError(fmt::format(
                                    "backup of {}: {}", database.string(), sqlite3_errstr(rc)));
    // The copy stands alone: one file, checked.
    if (copied.ok()) copied = sqlite::exec(copy->get(), "PRAGMA journal_mode=DELETE");
    if (copied.ok()) {
      sqlite::Stmt check(copy->get(), "PRAGMA integrity_check");
      if (check.step() != SQLITE_ROW || check.text(0) != "ok") {
        copied = absl::DataLossError(
            fmt::format("the copy fails its integrity check: {}", check.text(0)));
      }
    }
    if (copied.ok()) {
      auto version = count(copy->get(), "PRAGMA user_version");
      auto audit = count(copy->get(), "SELECT count(*) FROM audit");
      auto evidence = count(copy->get(), "SELECT count(*) FROM evidence");
      auto hosts = count(copy->get(), "SELECT count(*) FROM desired_state");
      for (const auto* c : {&version, &audit, &evidence, &hosts}) {
        if (!c->ok()) copied = c->status();
      }
      if (copied.ok()) {
        summary.schema_version = static_cast<int>(*version);
        summary.audit_rows = *audit;
        summary.evidence_bundles = *evidence;
        summary.desired_states = *hosts;
      }
    }
    copy->reset();
    if (!copied.ok()) {
      cleanup();
      return copied;
    }
  }
  if (auto s = syncPath(partial, O_RDONLY); !s.ok()) {
    cleanup();
    return s;
  }
  fs::rename(partial, to, ec);
  if (ec) {
    cleanup();
    return absl::InternalError(fmt::format("rename to {}: {}", to.string(), ec.message()));
  }
  const fs::path dir = to.has_parent_path() ? to.parent_path() : fs::path(".");
  if (auto s = syncPath(dir, O_RDONLY | O_DIRECTORY); !s.ok()) return s;
  summary.bytes = fs::file_size(to, ec);
  return summary;
}

absl::StatusOr<RestoreSummary> restoreDatabase(const fs::path& from, const fs::path& database,
                                               SqliteStoreOptions options, AuditEntry audit) {
  std::error_code ec;
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const fs::path existing(database.string() + suffix);
    if (fs::exists(fs::symlink_status(existing, ec))) {
      return absl::AlreadyExistsError(fmt::format(
          "{} exists: a restore never replaces a database (stop the controller and move the "
          "data directory's database aside first)",
          existing.string()));
    }
  }
  RestoreSummary summary;
  auto copied = backupDatabase(from, database);
  if (!copied.ok()) return copied.status();
  summary.copy = *copied;
  auto store = SqliteStore::create(database, std::move(options));
  // Closes the restored database and removes it again.
  auto undo = [&](const absl::Status& why) {
    if (store.ok()) store->reset();
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(database.string() + suffix, ec);
    return why;
  };
  if (!store.ok()) return undo(store.status());
  auto verified = (*store)->verifyAudit();
  if (!verified.ok()) return undo(verified.status());
  if (!verified->ok) {
    return undo(absl::DataLossError(
        fmt::format("the backup's audit chain does not verify (row {}: {}): not restored",
                    verified->first_bad_id, verified->problem)));
  }
  auto states = (*store)->loadDesiredStates();
  if (!states.ok()) return undo(states.status());
  for (auto& [host, state] : *states) {
    state.set_generation(state.generation() + kRestoreGenerationStep);
  }
  summary.states_raised = static_cast<int64_t>(states->size());
  audit.detail = fmt::format("{}{}{} audit rows, {} desired states, generations raised by {}",
                             audit.detail, audit.detail.empty() ? "" : "; ",
                             summary.copy.audit_rows, states->size(), kRestoreGenerationStep);
  if (auto row = (*store)->commitChange(*states, audit); !row.ok()) return undo(row.status());
  return summary;
}

}  // namespace bulkhead::controller
