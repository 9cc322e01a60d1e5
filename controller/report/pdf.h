// PDF of a report: its self-contained HTML (incident_report.h) printed by a browser engine.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace bulkhead::controller {

class PdfRenderer {
 public:
  virtual ~PdfRenderer() = default;
  // The PDF bytes of `html`; FAILED_PRECONDITION when no engine is installed, INTERNAL when
  // the engine fails, DEADLINE_EXCEEDED when it takes too long.
  virtual absl::StatusOr<std::string> render(std::string_view html) const = 0;
};

// Headless Chromium (Debian's package "chromium"): `--print-to-pdf` of the HTML written to a
// private temporary directory, which also holds its profile and is removed afterwards. The
// HTML's Content-Security-Policy forbids every fetch, and a proxy address that answers nothing
// is set besides, so printing reaches no network. Chromium's sandbox is off: it cannot start
// as root with it, and what it renders is the controller's own HTML. Bounded by `timeout`;
// a run over it is killed.
class ChromiumPdf : public PdfRenderer {
 public:
  explicit ChromiumPdf(std::string program = "chromium",
                       std::chrono::seconds timeout = std::chrono::seconds(60))
      : program_(std::move(program)), timeout_(timeout) {}
  absl::StatusOr<std::string> render(std::string_view html) const override;

 private:
  std::string program_;
  std::chrono::seconds timeout_;
};

}  // namespace bulkhead::controller
