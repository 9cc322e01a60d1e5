// The agent's one /proc reader: small kernel files read relative to directory fds (one path
// lookup per process, and a process that exits fails the reads instead of a reused pid
// answering them), numeric directory listings, the socket inodes among a process's fds, and
// the pure parsers of /proc text that agent/core/processes does not cover. Used by the
// collectors (agent/collect), the process scan (proc_scan.h) and the socket owner lookup of
// the flow killer. Not thread-safe objects; no globals (collector threads may be abandoned,
// see agent/collect/collector.h).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"

namespace bulkhead::agent::proc {

// Owns one file descriptor (closed on destruction); -1 when empty.
class ScopedFd {
 public:
  explicit ScopedFd(int fd = -1) : fd_(fd) {}
  ScopedFd(ScopedFd&& o) noexcept : fd_(o.release()) {}
  ScopedFd& operator=(ScopedFd&& o) noexcept;
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  ~ScopedFd();
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

// openat(dirfd, name) as a directory (O_RDONLY|O_DIRECTORY|O_CLOEXEC); dirfd may be AT_FDCWD.
ScopedFd openDir(int dirfd, const char* name);

// Reads `name` under `dirfd` into *out (replaced; its capacity is reused), at most `cap`
// bytes. Opens O_RDONLY|O_CLOEXEC|O_NONBLOCK|O_NOCTTY and refuses anything that is not a
// regular file (procfs files are), so a FIFO never blocks. False if it cannot be opened or
// read (a process that exited).
bool readFileAt(int dirfd, const char* name, size_t cap, std::string* out);

// True if `fd` is on procfs (fstatfs), where readPidFileAt may be used.
bool onProcfs(int fd);

// readFileAt for the files of a /proc/PID directory on procfs that the kernel generates whole
// for each read (stat, status, cmdline, environ, loginuid, sessionid: single-record seq files
// and the cmdline/environ readers fill the caller's buffer as far as the content goes), at two
// system calls fewer per file: a read shorter than asked is the end (no read() returning 0),
// and no fstat (procfs makes them regular files). Not for multi-record files (/proc/net/*,
// maps, mounts), which can return short reads before their end. `dirfd` must be on procfs
// (onProcfs).
bool readPidFileAt(int dirfd, const char* name, size_t cap, std::string* out);

// readlinkat(dirfd, name); nullopt if it is not a readable link (e.g. a kernel thread's exe).
std::optional<std::string> readLinkAt(int dirfd, const char* name);

// Calls `each(number, name)` for every entry of the directory `dirfd`/`name` whose name is a
// non-negative decimal number (pids of /proc, fds of /proc/PID/fd), in directory order; `each`
// returns false to stop early. False if the directory cannot be opened.
bool forEachNumericEntry(int dirfd, const char* name,
                         absl::FunctionRef<bool(int number, const char* entry)> each);
// The same over the directory `dir` itself, which it takes over and closes (no second open of
// it; callers that read the entries keep `dir.get()` for the *at calls, valid until it returns).
bool forEachNumericEntry(ScopedFd dir, absl::FunctionRef<bool(int number, const char* entry)> each);

// Calls `each(inode)` for every socket among the open fds of the process whose /proc directory
// is `pid_dirfd` (links "socket:[N]" in its fd/), in directory order; `each` returns false to
// stop early. False if the fd directory cannot be opened (gone, or not ours to read).
bool forEachSocketInode(int pid_dirfd, absl::FunctionRef<bool(uint64_t inode)> each);

// `s` as valid UTF-8 (JSON strings must be): unchanged when it already is, else invalid bytes
// become U+FFFD. Process names, arguments and paths are arbitrary bytes.
std::string utf8(std::string_view s);

// ---- pure parsers ------------------------------------------------------------------------

// NUL-separated strings (cmdline, environ) as a JSON array of UTF-8 strings; a trailing NUL
// does not make an empty last element.
nlohmann::json splitNul(std::string_view raw);

// "btime N" of /proc/stat, in seconds since the epoch; nullopt when missing or too large to
// be counted in milliseconds in an int64_t.
std::optional<int64_t> parseBootTime(std::string_view proc_stat);

// First number of /proc/uptime in milliseconds; nullopt when it does not parse or does not fit.
std::optional<int64_t> parseUptimeMs(std::string_view proc_uptime);

// The inode of a "/proc/PID/fd/N" link text "socket:[12345]"; 0 if not a socket.
uint64_t socketInodeFromLink(std::string_view link);

// What an exe/fd link text says about its target.
struct LinkFlags {
  bool deleted = false;  // ends with " (deleted)": unlinked from disk
  bool memfd = false;    // starts with "/memfd:": an anonymous memory file
};
LinkFlags linkFlags(std::string_view target);

// /proc/PID/sessionid or loginuid text: the id, or nullopt when unset (4294967295) or bad.
std::optional<uint32_t> auditIdOrUnset(std::string_view text);

// "/dev/pts/N"-style name of a stat tty_nr ("pts/3", "tty1"), nullopt for none.
std::optional<std::string> ttyOrNone(int tty_nr);

// One line of /proc/PID/maps.
struct MapLine {
  std::string_view start;  // hex text as the kernel prints it
  std::string_view end;
  std::string_view perms;   // "r-xp"
  std::string_view offset;  // hex text
  std::string_view path;    // "" for anonymous; may contain spaces; may end " (deleted)"
};
std::optional<MapLine> parseMapsLine(std::string_view line);

// Mappings memory_maps.jsonl keeps: deleted files, memfd files, and anonymous executable
// memory (no path, [heap], [stack], [anon:...]) — not [vdso]/[vsyscall]/[vvar].
bool interestingMapping(const MapLine& m);

}  // namespace bulkhead::agent::proc
