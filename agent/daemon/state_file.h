// The agent's persisted desired state: STATE_DIR/desired_state.pb (binary DesiredState),
// replaced atomically (temp file, fsync, rename, fsync dir), mode 0600.
#pragma once

#include <filesystem>
#include <optional>

#include "absl/status/statusor.h"
#include "bulkhead/v1/containment.pb.h"

namespace bulkhead::agent {

std::filesystem::path desiredStatePath(const std::filesystem::path& state_dir);

absl::Status persistDesiredState(const std::filesystem::path& state_dir,
                                 const bulkhead::v1::DesiredState& state);

// nullopt if no state was ever persisted; DataLoss if the file exists but cannot be read or
// parsed (the caller fails closed).
absl::StatusOr<std::optional<bulkhead::v1::DesiredState>> loadDesiredState(
    const std::filesystem::path& state_dir);

}  // namespace bulkhead::agent
