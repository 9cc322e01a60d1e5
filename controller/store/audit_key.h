// The audit chain's HMAC key: 32 random bytes kept in a file outside the data directory
// (default IDENTITY_DIR/audit.key), written as 64 hex digits and a newline, mode 0600. A copy
// of the database alone (a backup, a stolen disk image, an attacker with write access to
// DATA_DIR) then cannot be rewritten with valid MACs.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace bulkhead::controller {

inline constexpr size_t kAuditKeyBytes = 32;

// The key's bytes from the file's text (64 hex digits, surrounding whitespace ignored).
// `origin` names the file in errors.
absl::StatusOr<std::string> parseAuditKey(std::string_view text, std::string_view origin);

// A short public name for a key (16 hex digits of a SHA-256 over a label and the key), shown in
// the marker row and in errors so that a wrong key is told from a tampered row.
std::string auditKeyId(std::string_view key);

// Reads the key at `path`, or creates it (fresh random bytes, mode 0600, parent directories
// 0700) when the file does not exist. Refuses a symlink, a non-regular file, a file readable
// or writable by group or others, and a path inside `data_dir`.
absl::StatusOr<std::string> loadOrCreateAuditKey(const std::filesystem::path& path,
                                                 const std::filesystem::path& data_dir);

}  // namespace bulkhead::controller
