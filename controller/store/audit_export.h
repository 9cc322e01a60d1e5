// The audit export file: JSON lines, one object per line, keys sorted.
//   {"type":"header","format":"bulkhead-audit-export","version":1,"controller":NAME,
//    "exported_at_unix_ms":T,"since_id":S[,"tenants":[NAME,...]]}
//   {"type":"row","id":..,"at_unix_ms":..,"operator":..,"action":..,"target":..,"reason":..,
//    "outcome":..,"detail":..,"tenant":..[,"incident":..],"prev_hash":..,"hash":..}
//                                                          (one per row, oldest first)
//   {"type":"head","last_id":N,"last_hash":H,"rows":COUNT}            (the checkpoint)
// With "tenants" the file holds those tenants' rows only (a tenant's own export): each row's
// hash still checks, but a row links to the chain's previous row, which may be another
// tenant's, so links are checkable only between consecutive ids.
// A text field that is not valid UTF-8 is written as "<field>_hex" (hex of its bytes) instead.
// The controller signs the whole file; README.md gives the recipe that checks the signature
// and recomputes the hash chain (auditRowHash) with stock tools.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "controller/store/store.h"

namespace bulkhead::controller {

struct AuditExportHeader {
  std::string controller;  // the controller's certificate name
  int64_t exported_at_unix_ms = 0;
  int64_t since_id = 0;
  std::vector<std::string> tenants;  // the tenants whose rows it holds; empty: every row
};

// The file's text, every line ending in '\n'. With no rows the head has last_id 0 and an
// empty last_hash.
std::string auditExportText(const AuditExportHeader& header, const std::vector<AuditEntry>& rows);

}  // namespace bulkhead::controller
