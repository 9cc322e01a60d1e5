// The exemption-set library the controller isolates with: loaded from --policy-dir at start
// and on SIGHUP. A reload that fails keeps the library in force.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "common/policy.h"

namespace bulkhead::controller {

class Policies {
 public:
  // `dir` empty: no policy directory, an empty library.
  explicit Policies(std::string dir) : dir_(std::move(dir)), library_(std::make_shared<PolicyLibrary>()) {}
  // Test and embedding hook: a fixed library.
  explicit Policies(PolicyLibrary library)
      : library_(std::make_shared<PolicyLibrary>(std::move(library))) {}

  // Loads the directory; on error (every problem, one per line) the old library stays.
  absl::Status reload();
  // The library in force. Thread-safe; the returned library never changes.
  std::shared_ptr<const PolicyLibrary> current() const;
  const std::string& dir() const { return dir_; }

 private:
  const std::string dir_;
  mutable std::mutex mu_;
  std::shared_ptr<const PolicyLibrary> library_;   // GUARDED_BY(mu_)
};

}  // namespace bulkhead::controller
