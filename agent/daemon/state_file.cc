#include "agent/daemon/state_file.h"

#include <cerrno>
#include <system_error>

#include "absl/status/status.h"
#include "common/format.h"
#include "common/tls/tls.h"

namespace bulkhead::agent {

std::filesystem::path desiredStatePath(const std::filesystem::path& state_dir) {
  return state_dir / "desired_state.pb";
}

absl::Status persistDesiredState(const std::filesystem::path& state_dir,
                                 const bulkhead::v1::DesiredState& state) {
  std::string data;
  if (!state.SerializeToString(&data)) {
    return absl::InternalError("desired state: cannot serialise");
  }
  return writeFileAtomic(desiredStatePath(state_dir), data, 0600);
}

absl::StatusOr<std::optional<bulkhead::v1::DesiredState>> loadDesiredState(
    const std::filesystem::path& state_dir) {
  auto path = desiredStatePath(state_dir);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec) && !ec) return std::optional<bulkhead::v1::DesiredState>();
  auto data = readFile(path);
  if (!data.ok()) return absl::DataLossError(fmt::format("{}", data.status()));
  bulkhead::v1::DesiredState state;
  if (!state.ParseFromString(*data)) {
    return absl::DataLossError(fmt::format("{}: not a valid DesiredState ({} bytes)", path.string(),
                                           data->size()));
  }
  return std::optional<bulkhead::v1::DesiredState>(std::move(state));
}

}  // namespace bulkhead::agent
