// SqlCustody (sql_tables.h).
#include <utility>

#include "common/format.h"
#include "controller/core/hash_chain.h"
#include "controller/store/sql_db.h"
#include "controller/store/sql_tables.h"

namespace bulkhead::controller {
namespace {

using sql::Stmt;

constexpr const char* kCustodyColumns =
    "rowid, evidence_id, at, actor, action, detail, prev_hash, hash";

CustodyEntry readCustody(Stmt& st) {
  return CustodyEntry{.id = st.i64(0),
                      .evidence_id = st.text(1),
                      .at_unix_ms = st.i64(2),
                      .actor = st.text(3),
                      .action = st.text(4),
                      .detail = st.text(5),
                      .prev_hash = st.text(6),
                      .hash = st.text(7)};
}

}  // namespace

absl::StatusOr<CustodyEntry> SqlCustody::append(const CustodyEntry& event) {
  CustodyEntry e = event;
  e.prev_hash = e.evidence_id;
  {
    Stmt head(db_, "SELECT hash FROM custody WHERE evidence_id = ?1 ORDER BY rowid DESC LIMIT 1");
    if (auto s = head.prepared(); !s.ok()) return s;
    head.bind(1, e.evidence_id);
    int rc = head.step();
    if (rc == sql::kRow) {
      e.prev_hash = head.text(0);
    } else if (rc != sql::kDone) {
      return sql::error(db_, "custody head");
    }
  }
  e.hash = nextChainLink(e.prev_hash, custodyRecord(e), /*key=*/"").hash;
  Stmt ins(db_, R"sql(
      INSERT INTO custody(evidence_id, at, actor, action, detail, prev_hash, hash)
      VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING rowid)sql");
  if (auto s = ins.prepared(); !s.ok()) return s;
  ins.bind(1, e.evidence_id);
  ins.bind(2, e.at_unix_ms);
  ins.bind(3, e.actor);
  ins.bind(4, e.action);
  ins.bind(5, e.detail);
  ins.bind(6, e.prev_hash);
  ins.bind(7, e.hash);
  if (ins.step() != sql::kRow) return sql::error(db_, "append custody");
  e.id = ins.i64(0);
  return e;
}

absl::StatusOr<std::vector<CustodyEntry>> SqlCustody::list(const std::string& evidence_id) {
  Stmt st(db_, fmt::format("SELECT {} FROM custody WHERE evidence_id = ?1 ORDER BY rowid",
                           kCustodyColumns));
  if (auto s = st.prepared(); !s.ok()) return s;
  st.bind(1, evidence_id);
  return st.collect(readCustody, "list custody");
}

absl::StatusOr<CustodyVerification> SqlCustody::verify(const std::string& evidence_id) {
  auto events = list(evidence_id);
  if (!events.ok()) return events.status();
  if (events->empty()) {
    return CustodyVerification{
        .ok = false,
        .problem = fmt::format("evidence {} has no custody events (record removed)", evidence_id)};
  }
  std::vector<StoredLink> links;
  links.reserve(events->size());
  for (const CustodyEntry& e : *events) {
    links.push_back(
        {.id = e.id, .record = custodyRecord(e), .prev_hash = e.prev_hash, .hash = e.hash});
  }
  ChainVerification chain = verifyChain(links, /*genesis=*/evidence_id, /*key=*/"",
                                        {.item = "event", .start = "the evidence id"});
  CustodyVerification v{.ok = chain.ok, .events = chain.links, .first_bad_id = chain.first_bad_id};
  if (!chain.ok) {  // without a key or a checkpoint, every failure is at a link
    v.problem = fmt::format("custody event {} ({}): {}", chain.first_bad_id,
                            (*events)[chain.first_bad_index].action, chain.problem);
  }
  return v;
}

}  // namespace bulkhead::controller
