// File access for the host collectors (network, firewall, logins, kernel, temp_files,
// persistence): paths below a fixture root, reads that never block on FIFOs or devices, a
// symlink-safe directory walk, and JSON text that survives bytes that are not UTF-8.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/linux/proc_files.h"

namespace bulkhead::agent::collect {

// `host_path` ("/etc/passwd", absolute as on the host) below `root` ("/" or a fixture dir).
std::filesystem::path underRoot(const std::filesystem::path& root, std::string_view host_path);

// stat times as Unix milliseconds.
int64_t mtimeMs(const struct stat& st);
int64_t ctimeMs(const struct stat& st);

// "file", "dir", "symlink", "fifo", "socket", "chardev", "blockdev" or "other" for st_mode.
std::string_view fileTypeName(mode_t mode);

struct FileBytes {
  std::string bytes;       // the first `cap` bytes, or the last `cap` bytes when read as tail
  struct stat st {};       // fstat of the file that was read
  bool truncated = false;  // the file held more than `cap` bytes
};

// Reads a regular file without ever blocking and without side effects on devices:
// stat() first (follows symlinks) and refuse anything that is not a regular file BEFORE
// opening (opening a device such as /dev/watchdog can act), then open
// O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_NOCTTY (O_NOATIME where permitted, to keep access times as
// evidence), fstat again and refuse a file that is not regular or was swapped meanwhile.
// Reads until end of file (so /proc files with st_size 0 work), at most `cap` bytes: the
// first ones, or with `tail` the last ones (needs st_size; /proc files are read from the start).
// Without `follow_symlinks` the last component must not be a symlink (lstat, O_NOFOLLOW): for
// paths a user controls, where ~/.bash_history -> /etc/shadow must not copy the shadow file.
// Errors: NotFound when the path does not exist (callers usually skip quietly),
// FailedPrecondition "not a regular file (fifo)" and others naming the path and errno.
absl::StatusOr<FileBytes> readRegularFile(const std::filesystem::path& path, uint64_t cap,
                                          bool tail = false, bool follow_symlinks = true);

// A symlink met on a path a user controls.
struct SymlinkOnPath {
  std::string host_path;  // the link itself, e.g. "/home/u/.ssh"
  std::string target;     // what it points to (readlink), e.g. "/root/.ssh"
  struct stat st {};      // lstat of the link
};

// `host_path` ("/home/u/.ssh/authorized_keys") lies below `trusted_dir` ("/home/u": its own
// components are the administrator's and may be symlinks, e.g. /home -> /var/home); every
// component after it is the user's. Those are resolved from an O_PATH descriptor of
// `trusted_dir`, one by one with O_NOFOLLOW, so no symlink among them is ever followed
// (~/.ssh -> /root/.ssh must not make root's keys the user's). The result holds the directory
// that contains the last component and its name, or `link` when an intermediate component is
// a symlink (nothing below it is resolved). ".." components are refused (InvalidArgument);
// NotFound when a component does not exist.
struct UserPathParent {
  proc::ScopedFd dir;     // O_PATH descriptor of the last component's directory
  std::string name;       // the last component
  std::string host_path;  // host_path, normalised ("." and empty components dropped)
  std::optional<SymlinkOnPath> link;
};
absl::StatusOr<UserPathParent> openUserPathParent(const std::filesystem::path& root,
                                                  const std::string& trusted_dir,
                                                  const std::string& host_path);

// readRegularFile for a path a user controls (see openUserPathParent): no component below
// `trusted_dir`, the last one included, is followed when it is a symlink. When one is, `*link`
// describes it and the result is FailedPrecondition (nothing is read).
absl::StatusOr<FileBytes> readUserFile(const std::filesystem::path& root,
                                       const std::string& trusted_dir, const std::string& host_path,
                                       uint64_t cap, bool tail, std::optional<SymlinkOnPath>* link);

// The target of the symlink at `path`; nullopt when it is not a symlink (or does not exist).
std::optional<std::string> symlinkTarget(const std::filesystem::path& path);

// Entry names of a directory (no "." and ".."), sorted; empty when it does not exist.
// Errors other than ENOENT/ENOTDIR name the path.
absl::StatusOr<std::vector<std::string>> listDir(const std::filesystem::path& dir);

// One entry met by walkTree.
struct WalkEntry {
  std::string host_path;    // "/tmp/a/b": the host path, without the fixture root
  int depth = 0;            // 0 = the tree's top directory itself, 1 = its entries, ...
  struct stat st {};        // lstat (never follows symlinks)
  std::string link_target;  // symlinks only (readlinkat), empty otherwise
};

struct WalkLimits {
  int max_depth = 4;           // entries deeper than this are neither listed nor entered
  size_t max_entries = 20000;  // the top directory counts as one
  // Host paths never lstat'ed, listed or entered (with a warning): mount points of file
  // systems whose getattr may hang forever (FUSE, NFS; see hangProneMounts).
  std::set<std::string> avoid;
  // When set (a home), host_top lies below it and the components between are the user's:
  // they are resolved as openUserPathParent does. A symlink among them, host_top included, is
  // the only entry visited (depth 0, link_target set); nothing behind it is listed.
  std::string trusted_dir;
};

// Mount points (host paths) of file systems where a stat can block without end: fuse*, nfs*,
// cifs, smb3, 9p, ceph, glusterfs. Read from `mountinfo` (the agent's /proc/self/mountinfo);
// paths with escapes (\040) are decoded. Empty when it cannot be read.
std::set<std::string> hangProneMounts(const std::filesystem::path& mountinfo);
// Pure: the same from the text of a mountinfo file.
std::set<std::string> parseHangProneMounts(std::string_view mountinfo_text);

struct WalkResult {
  size_t entries = 0;
  bool cut = false;  // max_entries reached, or visit() returned false
};

// Lists the tree at `host_top` ("/tmp") below `root` breadth first (shallow entries before
// deep ones, so a cut keeps the overview), with lstat only: never follows a symlink (every
// directory is opened component by component with O_NOFOLLOW|O_DIRECTORY from the top) and
// never opens a file. Directories on other file systems are entered too. Unreadable
// directories go to `warn`; a missing top gives an empty result. `visit` returns false to
// stop; `stopped` is polled between entries.
WalkResult walkTree(const std::filesystem::path& root, const std::string& host_top,
                    const WalkLimits& limits, const std::function<bool(const WalkEntry&)>& visit,
                    const std::function<void(const std::string&)>& warn,
                    const std::function<bool()>& stopped);

// Sets `r[key]` to `bytes` as JSON text. Bytes that are not valid UTF-8 (file names and
// contents are attacker controlled) become U+FFFD there, and the exact bytes are kept in
// `r[key + "_base64"]`, so nothing is lost and the record always serialises.
void putText(nlohmann::json& r, const std::string& key, std::string_view bytes);

// Lines of `text` (without "\n" or a trailing "\r").
std::vector<std::string_view> splitLines(std::string_view text);

// `s` without leading and trailing blanks (space, tab, CR, LF).
std::string_view trimBlanks(std::string_view s);

}  // namespace bulkhead::agent::collect
