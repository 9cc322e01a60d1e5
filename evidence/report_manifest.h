// The manifest of an incident report (`bulkhead incident report`): the lines the controller
// signs beside the report file (FILE.manifest, its signature FILE.sig, the controller's
// certificate FILE.crt), so the report is evidence too. Its text:
//   bulkhead-incident-report-manifest/1
//   incident: INC-42
//   tenant: acme
//   format: pdf
//   size: 48213
//   sha256: <hex SHA-256 of the report file>
//   generated: 2026-12-06T01:00:00Z
//   controller: <the controller certificate's name>
// one "key: value" per line in this order, each ending in '\n'; values hold no newline.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace bulkhead::evidence {

inline constexpr char kReportManifestFirstLine[] = "bulkhead-incident-report-manifest/1";

struct ReportManifest {
  std::string incident;
  std::string tenant;
  std::string format;  // json, md, html, pdf
  uint64_t size = 0;
  std::string sha256;
  std::string generated;  // RFC 3339, UTC
  std::string controller;
};

std::string reportManifestText(const ReportManifest& manifest);
// INVALID_ARGUMENT naming the first line that is missing, out of order or malformed.
absl::StatusOr<ReportManifest> parseReportManifest(std::string_view text);

}  // namespace bulkhead::evidence
