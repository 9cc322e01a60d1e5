// SqlNotifications (sql_tables.h).
#include "common/format.h"
#include "controller/store/sql_db.h"
#include "controller/store/sql_tables.h"

namespace bulkhead::controller {

using sql::Stmt;

namespace {

constexpr char kColumns[] =
    "id, channel, event_id, tenant, kind, severity, event, state, attempts, created_at, "
    "next_attempt_at, last_error";

NotificationRow readRow(Stmt& st) {
  NotificationRow r;
  r.id = st.i64(0);
  r.channel = st.text(1);
  r.event_id = st.text(2);
  r.tenant = st.text(3);
  r.kind = st.text(4);
  r.severity = st.text(5);
  r.event = st.text(6);
  r.state = st.text(7);
  r.attempts = static_cast<int>(st.i64(8));
  r.created_unix_ms = st.i64(9);
  r.next_attempt_unix_ms = st.i64(10);
  r.last_error = st.text(11);
  return r;
}

}  // namespace

absl::StatusOr<std::optional<int64_t>> SqlNotifications::cursor() {
  Stmt st(db_, "SELECT audit_id FROM notify_cursor WHERE \"only\" = 1");
  if (auto s = st.prepared(); !s.ok()) return s;
  const int rc = st.step();
  if (rc == sql::kDone) return std::optional<int64_t>();
  if (rc != sql::kRow) return sql::error(db_, "read the notification cursor");
  return std::optional<int64_t>(st.i64(0));
}

absl::Status SqlNotifications::queue(const std::vector<NotificationRow>& rows, int64_t cursor) {
  Stmt insert(db_,
              "INSERT INTO notifications(channel, event_id, tenant, kind, severity, event, state, "
              "attempts, created_at, next_attempt_at, last_error) "
              "VALUES(?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, ?8, '') "
              "ON CONFLICT(channel, event_id) DO NOTHING");
  if (auto s = insert.prepared(); !s.ok()) return s;
  for (const NotificationRow& r : rows) {
    insert.bind(1, r.channel);
    insert.bind(2, r.event_id);
    insert.bind(3, r.tenant);
    insert.bind(4, r.kind);
    insert.bind(5, r.severity);
    insert.bind(6, r.event);
    insert.bind(7, r.created_unix_ms);
    insert.bind(8, r.next_attempt_unix_ms);
    if (auto s = insert.run(); !s.ok()) return s;
  }
  Stmt move(db_,
            "INSERT INTO notify_cursor(\"only\", audit_id) VALUES(1, ?1) "
            "ON CONFLICT(\"only\") DO UPDATE SET audit_id = excluded.audit_id");
  if (auto s = move.prepared(); !s.ok()) return s;
  move.bind(1, cursor);
  return move.run();
}

absl::StatusOr<std::vector<NotificationRow>> SqlNotifications::due(int64_t now_unix_ms,
                                                                   size_t limit) {
  Stmt st(db_, fmt::format("SELECT {} FROM notifications WHERE state = 'pending' AND "
                           "next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT ?2",
                           kColumns));
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, now_unix_ms);
  st.bind(2, static_cast<int64_t>(std::min<size_t>(limit, INT64_MAX)));
  return st.collect(readRow, "list due notifications");
}

absl::Status SqlNotifications::update(const NotificationRow& row) {
  Stmt st(db_,
          "UPDATE notifications SET state = ?2, attempts = ?3, next_attempt_at = ?4, "
          "last_error = ?5 WHERE id = ?1");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, row.id);
  st.bind(2, row.state);
  st.bind(3, static_cast<int64_t>(row.attempts));
  st.bind(4, row.next_attempt_unix_ms);
  st.bind(5, row.last_error);
  if (auto s = st.run(); !s.ok()) return s;
  if (db_->changes() == 0) {
    return absl::NotFoundError(fmt::format("no queued notification {}", row.id));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<NotificationCount>> SqlNotifications::counts() {
  Stmt st(db_,
          "SELECT channel, state, count(*) FROM notifications GROUP BY channel, state "
          "ORDER BY channel, state");
  if (auto s = st.prepared(); !s.ok()) return s;
  return st.collect(
      [](Stmt& s) {
        return NotificationCount{.channel = s.text(0), .state = s.text(1), .count = s.i64(2)};
      },
      "count notifications");
}

}  // namespace bulkhead::controller
