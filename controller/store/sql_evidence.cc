// SqlCaptures and SqlEvidence (sql_tables.h).
#include <cctype>

#include "common/format.h"
#include "controller/store/sql_db.h"
#include "controller/store/sql_tables.h"

namespace bulkhead::controller {
namespace {

using sql::Stmt;

constexpr const char* kCaptureColumns =
    "capture_id, host_id, requested_by, reason, requested_at, command_id, state, incident, "
    "incident_tenant";
constexpr const char* kEvidenceColumns =
    "id, capture_id, host_id, requested_by, reason, requested_at, collected_at, received_at, "
    "size, manifest_sha256, files, signature_ok, collector_errors, file_name, clock_offset_ms, "
    "path";

EvidenceRow readEvidence(Stmt& st) {
  EvidenceRow r;
  r.id = st.text(0);
  r.capture_id = st.text(1);
  r.host_id = st.text(2);
  r.requested_by = st.text(3);
  r.reason = st.text(4);
  r.requested_at_unix_ms = st.i64(5);
  r.collected_at_unix_ms = st.i64(6);
  r.received_at_unix_ms = st.i64(7);
  r.size = static_cast<uint64_t>(st.i64(8));
  r.manifest_sha256 = st.text(9);
  r.files = static_cast<uint32_t>(st.i64(10));
  r.signature_ok = st.i64(11) != 0;
  r.collector_errors = st.strings(12);
  r.file_name = st.text(13);
  r.clock_offset_ms = st.i64(14);
  r.path = st.text(15);
  return r;
}

bool isHex(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

}  // namespace

absl::Status SqlCaptures::add(const CaptureRow& c) {
  auto taken = sql::exists(db_, "SELECT 1 FROM captures WHERE capture_id = ?1", c.capture_id);
  if (!taken.ok()) return taken.status();
  if (*taken) return absl::AlreadyExistsError(fmt::format("capture \"{}\" exists", c.capture_id));
  Stmt st(db_, fmt::format("INSERT INTO captures({}) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                           kCaptureColumns));
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, c.capture_id);
  st.bind(2, c.host_id);
  st.bind(3, c.requested_by);
  st.bind(4, c.reason);
  st.bind(5, c.requested_at_unix_ms);
  st.bind(6, c.command_id);
  st.bind(7, c.state);
  st.bind(8, c.incident);
  st.bind(9, c.incident_tenant);
  return st.run();
}

absl::StatusOr<CaptureRow> SqlCaptures::get(const std::string& capture_id) {
  Stmt st(db_, fmt::format("SELECT {} FROM captures WHERE capture_id = ?1", kCaptureColumns));
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, capture_id);
  int rc = st.step();
  if (rc == sql::kDone) {
    return absl::NotFoundError(fmt::format("no capture \"{}\" was requested", capture_id));
  }
  if (rc != sql::kRow) return sql::error(db_, "get capture");
  return CaptureRow{.capture_id = st.text(0),
                    .host_id = st.text(1),
                    .requested_by = st.text(2),
                    .reason = st.text(3),
                    .requested_at_unix_ms = st.i64(4),
                    .command_id = st.text(5),
                    .state = st.text(6),
                    .incident = st.text(7),
                    .incident_tenant = st.text(8)};
}

absl::StatusOr<bool> SqlCaptures::setState(const std::string& capture_id,
                                           const std::string& state) {
  Stmt st(db_, "UPDATE captures SET state = ?2 WHERE capture_id = ?1");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, capture_id);
  st.bind(2, state);
  if (auto s = st.run(); !s.ok()) return s;
  return db_->changes() != 0;
}

absl::StatusOr<bool> SqlEvidence::contains(const std::string& id) {
  return sql::exists(db_, "SELECT 1 FROM evidence WHERE id = ?1", id);
}

absl::Status SqlEvidence::add(const EvidenceRow& r) {
  Stmt ins(db_, fmt::format("INSERT INTO evidence({}) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
                            "?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                            kEvidenceColumns));
  if (auto s = ins.prepared(); !s.ok()) return s;
  ins.bind(1, r.id);
  ins.bind(2, r.capture_id);
  ins.bind(3, r.host_id);
  ins.bind(4, r.requested_by);
  ins.bind(5, r.reason);
  ins.bind(6, r.requested_at_unix_ms);
  ins.bind(7, r.collected_at_unix_ms);
  ins.bind(8, r.received_at_unix_ms);
  ins.bind(9, static_cast<int64_t>(r.size));
  ins.bind(10, r.manifest_sha256);
  ins.bind(11, static_cast<int64_t>(r.files));
  ins.bind(12, static_cast<int64_t>(r.signature_ok ? 1 : 0));
  ins.bindStrings(13, r.collector_errors);
  ins.bind(14, r.file_name);
  ins.bind(15, r.clock_offset_ms);
  ins.bind(16, r.path);
  return ins.run();
}

absl::StatusOr<std::vector<EvidenceRow>> SqlEvidence::list(const std::string& host_id) {
  Stmt st(db_, fmt::format(
                   "SELECT {} FROM evidence WHERE ?1 = '' OR host_id = ?1 ORDER BY received_at, id",
                   kEvidenceColumns));
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, host_id);
  return st.collect(readEvidence, "list evidence");
}

absl::StatusOr<std::vector<EvidenceRow>> SqlEvidence::ofIncident(const std::string& tenant,
                                                                 const std::string& incident) {
  Stmt st(db_, fmt::format("SELECT {} FROM evidence WHERE capture_id IN (SELECT capture_id FROM "
                           "captures WHERE incident = ?2 AND incident_tenant = ?1) "
                           "ORDER BY received_at, id",
                           kEvidenceColumns));
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, tenant);
  st.bind(2, incident);
  return st.collect(readEvidence, "list the evidence of an incident");
}

absl::StatusOr<EvidenceRow> SqlEvidence::get(const std::string& id_or_prefix) {
  std::string want = id_or_prefix;
  for (char& ch : want) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (!isHex(want) || want.size() > 64) {
    return absl::InvalidArgumentError(fmt::format(
        "evidence id \"{}\": expected hex digits (a SHA-256, or a prefix of one)", id_or_prefix));
  }
  if (want.size() < 8) {
    return absl::InvalidArgumentError(
        fmt::format("evidence id \"{}\": give at least 8 hex digits", id_or_prefix));
  }
  Stmt st(db_,
          fmt::format("SELECT {} FROM evidence WHERE substr(id, 1, ?2) = ?1 ORDER BY id LIMIT 2",
                      kEvidenceColumns));
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, want);
  st.bind(2, static_cast<int64_t>(want.size()));
  auto found = st.collect(readEvidence, "get evidence");
  if (!found.ok()) return found.status();
  if (found->empty()) return absl::NotFoundError(fmt::format("no evidence with id {}", want));
  if (found->size() > 1) {
    return absl::InvalidArgumentError(
        fmt::format("evidence id {} is ambiguous: it matches {} and {} at least; give more digits",
                    want, (*found)[0].id, (*found)[1].id));
  }
  return std::move((*found)[0]);
}

absl::StatusOr<uint64_t> SqlEvidence::bytesOfHost(const std::string& host_id) {
  Stmt st(db_, "SELECT COALESCE(SUM(size), 0) FROM evidence WHERE host_id = ?1");
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, host_id);
  if (st.step() != sql::kRow) return sql::error(db_, "evidence bytes of host");
  return static_cast<uint64_t>(st.i64(0));
}

absl::StatusOr<std::optional<EvidenceRow>> SqlEvidence::forCapture(const std::string& capture_id) {
  Stmt st(
      db_,
      fmt::format("SELECT {} FROM evidence WHERE capture_id = ?1 ORDER BY received_at DESC LIMIT 1",
                  kEvidenceColumns));
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, capture_id);
  int rc = st.step();
  if (rc == sql::kDone) return std::optional<EvidenceRow>();
  if (rc != sql::kRow) return sql::error(db_, "evidence for capture");
  return std::optional<EvidenceRow>(readEvidence(st));
}

}  // namespace bulkhead::controller
