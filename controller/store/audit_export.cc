#include "controller/store/audit_export.h"

#include <nlohmann/json.hpp>

namespace bulkhead::controller {
namespace {

// Sets obj[name] to `value`, or obj[name + "_hex"] to its hex when it is not valid UTF-8.
void putText(nlohmann::json& obj, const std::string& name, const std::string& value) {
  try {
    (void)nlohmann::json(value).dump();
    obj[name] = value;
  } catch (const nlohmann::json::type_error&) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string hex;
    for (unsigned char c : value) {
      hex.push_back(kHex[c >> 4]);
      hex.push_back(kHex[c & 0xf]);
    }
    obj[name + "_hex"] = hex;
  }
}

}  // namespace

std::string auditExportText(const AuditExportHeader& header, const std::vector<AuditEntry>& rows) {
  std::string out;
  nlohmann::json head_line = {{"type", "header"},
                              {"format", "bulkhead-audit-export"},
                              {"version", 1},
                              {"exported_at_unix_ms", header.exported_at_unix_ms},
                              {"since_id", header.since_id}};
  putText(head_line, "controller", header.controller);
  if (!header.tenants.empty()) head_line["tenants"] = header.tenants;
  out += head_line.dump() + "\n";
  for (const auto& e : rows) {
    nlohmann::json row = {{"type", "row"},
                          {"id", e.id},
                          {"at_unix_ms", e.at_unix_ms},
                          {"prev_hash", e.prev_hash},
                          {"hash", e.hash}};
    putText(row, "operator", e.operator_name);
    putText(row, "action", e.action);
    putText(row, "target", e.target);
    putText(row, "reason", e.reason);
    putText(row, "outcome", e.outcome);
    putText(row, "detail", e.detail);
    putText(row, "tenant", e.tenant);
    if (!e.incident.empty()) putText(row, "incident", e.incident);
    out += row.dump() + "\n";
  }
  nlohmann::json tail = {{"type", "head"},
                         {"last_id", rows.empty() ? 0 : rows.back().id},
                         {"last_hash", rows.empty() ? std::string() : rows.back().hash},
                         {"rows", rows.size()}};
  out += tail.dump() + "\n";
  return out;
}

}  // namespace bulkhead::controller
