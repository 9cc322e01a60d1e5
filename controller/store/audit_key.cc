#include "controller/store/audit_key.h"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/format.h"
#include "evidence/hash.h"

namespace bulkhead::controller {
namespace fs = std::filesystem;

namespace {

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

absl::Status errnoError(std::string_view what, const fs::path& path) {
  return absl::PermissionDeniedError(
      fmt::format("--audit-key: {} {}: {}", what, path.string(), std::strerror(errno)));
}

// True if `path` is `dir` or below it, after resolving both as far as they exist.
bool isInside(const fs::path& path, const fs::path& dir) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(path), ec);
  if (ec) return false;
  fs::path d = fs::weakly_canonical(fs::absolute(dir), ec);
  if (ec) return false;
  auto [mismatch, unused] = std::mismatch(d.begin(), d.end(), p.begin(), p.end());
  return mismatch == d.end();
}

absl::StatusOr<std::string> createKey(const fs::path& path) {
  std::error_code ec;
  if (path.has_parent_path() && !fs::exists(path.parent_path(), ec)) {
    fs::create_directories(path.parent_path(), ec);
    if (ec) {
      return absl::PermissionDeniedError(fmt::format("--audit-key: cannot create {}: {}",
                                                     path.parent_path().string(), ec.message()));
    }
    fs::permissions(path.parent_path(), fs::perms::owner_all, ec);
  }
  unsigned char raw[kAuditKeyBytes];
  if (RAND_bytes(raw, sizeof raw) != 1) {
    return absl::InternalError("--audit-key: no random bytes from OpenSSL");
  }
  std::string text = evidence::toHex(raw, sizeof raw) + "\n";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return errnoError("cannot create", path);
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
            ::fsync(fd) == 0;
  int saved = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    errno = saved;
    return errnoError("cannot write", path);
  }
  fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  if (int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return std::string(reinterpret_cast<const char*>(raw), sizeof raw);
}

}  // namespace

absl::StatusOr<std::string> parseAuditKey(std::string_view text, std::string_view origin) {
  const auto first = text.find_first_not_of(" \t\r\n");
  const auto last = text.find_last_not_of(" \t\r\n");
  std::string_view hex =
      first == std::string_view::npos ? std::string_view() : text.substr(first, last - first + 1);
  std::string key;
  bool valid = hex.size() == 2 * kAuditKeyBytes;
  for (size_t i = 0; valid && i < hex.size(); i += 2) {
    int hi = hexValue(hex[i]), lo = hexValue(hex[i + 1]);
    valid = hi >= 0 && lo >= 0;
    key.push_back(static_cast<char>((hi << 4) | lo));
  }
  if (!valid) {
    return absl::InvalidArgumentError(fmt::format(
        "--audit-key: {} does not hold a key: expected {} hex digits", origin, 2 * kAuditKeyBytes));
  }
  return key;
}

std::string auditKeyId(std::string_view key) {
  std::string labelled = "bulkhead audit key id\n";
  labelled.append(key);
  return evidence::sha256Hex(labelled).substr(0, 16);
}

absl::StatusOr<std::string> loadOrCreateAuditKey(const fs::path& path, const fs::path& data_dir) {
  if (isInside(path, data_dir)) {
    return absl::InvalidArgumentError(fmt::format(
        "--audit-key: {} is inside --data-dir {}: keep the key apart from the database it "
        "protects",
        path.string(), data_dir.string()));
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return createKey(path);
  if (fd < 0) return errnoError("cannot open", path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return errnoError("cannot stat", path);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(
        fmt::format("--audit-key: {} is not a regular file", path.string()));
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    return absl::PermissionDeniedError(
        fmt::format("--audit-key: {} is open to group or others (mode {:04o}): chmod 600 it",
                    path.string(), st.st_mode & 07777));
  }
  std::string text(256, '\0');
  ssize_t n = ::read(fd, text.data(), text.size());
  int saved = errno;
  ::close(fd);
  if (n < 0) {
    errno = saved;
    return errnoError("cannot read", path);
  }
  text.resize(static_cast<size_t>(n));
  return parseAuditKey(text, path.string());
}

}  // namespace bulkhead::controller
