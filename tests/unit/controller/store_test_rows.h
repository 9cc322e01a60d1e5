// Rows the store tests write (store_contract_test.cc and the SQLite-only tests beside it): audit
// rows numbered i, a tamperer's rewrite of the audit chain, captures and evidence bundles.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/format.h"
#include "controller/store/evidence_files.h"
#include "controller/store/sql_store.h"

namespace bulkhead::controller::testing {

// The i-th isolate row: "alice isolate web-NN INC-42 ok", dated 1700000000000 + i.
inline AuditEntry auditEntry(int i) {
  return AuditEntry{.at_unix_ms = 1700000000000 + i,
                    .operator_name = "alice",
                    .action = "isolate",
                    .target = fmt::format("web-{:02}", i),
                    .reason = "INC-42",
                    .outcome = "ok"};
}

// Appends auditEntry(from) ... auditEntry(to).
inline void appendAuditRows(Store& store, int from, int to) {
  for (int i = from; i <= to; ++i) ASSERT_TRUE(store.appendAudit(auditEntry(i)).ok());
}

// What an attacker with write access to the database (and not the key) does: edits row `id`
// and recomputes the unkeyed hash chain from there to the end. With `strip_macs`, also clears
// the MACs of the rows rewritten.
inline void rewriteAuditFrom(SqlStore& store, int64_t id, bool strip_macs = false) {
  auto rows = store.listAudit(0);
  ASSERT_TRUE(rows.ok());
  std::string prev;
  for (auto& e : *rows) {
    if (e.id < id) {
      prev = e.hash;
      continue;
    }
    if (e.id == id) e.reason = "routine maintenance";
    if (!prev.empty()) e.prev_hash = prev;
    e.hash = auditRowHash(e);
    prev = e.hash;
    ASSERT_TRUE(store
                    .execForTest(fmt::format(
                        "UPDATE audit SET reason = '{}', prev_hash = '{}', hash = '{}'{} "
                        "WHERE id = {}",
                        e.reason, e.prev_hash, e.hash, strip_macs ? ", mac = ''" : "", e.id))
                    .ok());
  }
}

inline CaptureRow captureRow(const std::string& id, const std::string& host = "web-03") {
  return CaptureRow{.capture_id = id,
                    .host_id = host,
                    .requested_by = "alice",
                    .reason = "INC-42",
                    .requested_at_unix_ms = 1000,
                    .command_id = "capture-" + id};
}

// Stores bundle `id` (manifest `manifest_sha256`) of capture `capture_id` with its three first
// custody events: requested, collected, received.
inline void addBundle(Store& store, const std::string& id, const std::string& capture_id,
                      const std::string& host, const std::string& manifest_sha256) {
  ASSERT_TRUE(store.addCapture(captureRow(capture_id, host)).ok());
  EvidenceRow r{.id = id,
                .capture_id = capture_id,
                .host_id = host,
                .requested_by = "alice",
                .reason = "INC-42",
                .requested_at_unix_ms = 1000,
                .collected_at_unix_ms = 2000,
                .received_at_unix_ms = 3000,
                .size = 123,
                .manifest_sha256 = manifest_sha256,
                .files = 7,
                .signature_ok = true,
                .collector_errors = {"btmp: timeout"},
                .file_name = capture_id + ".tar.gz",
                .clock_offset_ms = -5,
                .path = EvidenceFiles::relativePath(id)};
  std::vector<CustodyEntry> events(3);
  events[0] = {.at_unix_ms = 1000, .actor = "alice", .action = "requested", .detail = "INC-42"};
  events[1] = {.at_unix_ms = 2000, .actor = "agent:" + host, .action = "collected"};
  events[2] = {.at_unix_ms = 3000, .actor = "agent:" + host, .action = "received"};
  auto added = store.addEvidence(r, events);
  ASSERT_TRUE(added.ok()) << added.status();
  ASSERT_EQ(added->size(), 3u);
}

}  // namespace bulkhead::controller::testing
