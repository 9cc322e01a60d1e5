#include "agent/linux/proc_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <limits>
#include <utility>

#include "agent/core/processes.h"
#include "common/json.h"

namespace bulkhead::agent::proc {
namespace {

template <typename T>
bool parseNumber(std::string_view s, T* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

std::string_view firstField(std::string_view s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return {};
  size_t e = s.find_first_of(" \t\n", b);
  return s.substr(b, e == std::string_view::npos ? std::string_view::npos : e - b);
}

// Splits off the next whitespace-separated field of *s (leading blanks skipped).
std::string_view nextField(std::string_view* s) {
  size_t b = s->find_first_not_of(' ');
  if (b == std::string_view::npos) {
    *s = {};
    return {};
  }
  size_t e = s->find(' ', b);
  std::string_view f = s->substr(b, e == std::string_view::npos ? std::string_view::npos : e - b);
  *s = e == std::string_view::npos ? std::string_view{} : s->substr(e);
  return f;
}

// Appends what `fd` reads to *out, at most `cap` bytes in all, until a read returns 0 or, with
// `short_read_ends`, a read returns less than asked. False on a read error.
bool readUpTo(int fd, size_t cap, bool short_read_ends, std::string* out) {
  char buf[16384];
  while (out->size() < cap) {
    const size_t want = std::min(sizeof buf, cap - out->size());
    ssize_t n = ::read(fd, buf, want);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) break;
    out->append(buf, static_cast<size_t>(n));
    if (short_read_ends && static_cast<size_t>(n) < want) break;
  }
  return true;
}

}  // namespace

ScopedFd& ScopedFd::operator=(ScopedFd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

ScopedFd::~ScopedFd() {
  if (fd_ >= 0) ::close(fd_);
}

ScopedFd openDir(int dirfd, const char* name) {
  return ScopedFd(::openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
}

bool readFileAt(int dirfd, const char* name, size_t cap, std::string* out) {
  out->clear();
  ScopedFd fd(::openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (!fd.ok()) return false;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  return readUpTo(fd.get(), cap, /*short_read_ends=*/false, out);
}

bool onProcfs(int fd) {
  struct statfs fs {};
  return ::fstatfs(fd, &fs) == 0 && fs.f_type == PROC_SUPER_MAGIC;
}

bool readPidFileAt(int dirfd, const char* name, size_t cap, std::string* out) {
  out->clear();
  ScopedFd fd(::openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (!fd.ok()) return false;
  return readUpTo(fd.get(), cap, /*short_read_ends=*/true, out);
}

std::optional<std::string> readLinkAt(int dirfd, const char* name) {
  char buf[4096];
  ssize_t n = ::readlinkat(dirfd, name, buf, sizeof buf);
  if (n < 0) return std::nullopt;
  return std::string(buf, static_cast<size_t>(n));
}

bool forEachNumericEntry(int dirfd, const char* name,
                         absl::FunctionRef<bool(int number, const char* entry)> each) {
  return forEachNumericEntry(openDir(dirfd, name), each);
}

bool forEachNumericEntry(ScopedFd fd, absl::FunctionRef<bool(int number, const char* entry)> each) {
  if (!fd.ok()) return false;
  DIR* d = ::fdopendir(fd.get());
  if (d == nullptr) return false;
  fd.release();  // owned by `d` now
  while (dirent* e = ::readdir(d)) {
    int n = 0;
    const char* s = e->d_name;
    if (*s < '0' || *s > '9' || (*s == '0' && s[1] != '\0')) continue;
    auto [p, ec] = std::from_chars(s, s + std::char_traits<char>::length(s), n);
    if (ec != std::errc() || *p != '\0') continue;
    if (!each(n, s)) break;
  }
  ::closedir(d);
  return true;
}

bool forEachSocketInode(int pid_dirfd, absl::FunctionRef<bool(uint64_t inode)> each) {
  ScopedFd fds = openDir(pid_dirfd, "fd");
  const int fds_fd = fds.get();
  return forEachNumericEntry(std::move(fds), [&](int, const char* fd) {
    auto target = readLinkAt(fds_fd, fd);
    if (!target) return true;
    uint64_t inode = socketInodeFromLink(*target);
    return inode == 0 || each(inode);
  });
}

std::string utf8(std::string_view s) {
  bool ascii = true;
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return std::string(s);
  // nlohmann's serializer knows UTF-8: let it replace what is invalid, then read it back.
  std::string dumped = dumpJson(nlohmann::json(std::string(s)));
  return nlohmann::json::parse(dumped).get<std::string>();
}

nlohmann::json splitNul(std::string_view raw) {
  nlohmann::json out = nlohmann::json::array();
  while (!raw.empty()) {
    size_t nul = raw.find('\0');
    std::string_view part = raw.substr(0, nul);
    out.push_back(utf8(part));
    if (nul == std::string_view::npos) break;
    raw.remove_prefix(nul + 1);
  }
  return out;
}

std::optional<int64_t> parseBootTime(std::string_view proc_stat) {
  size_t pos = proc_stat.rfind("\nbtime ", std::string_view::npos);
  if (pos == std::string_view::npos) {
    if (proc_stat.substr(0, 6) != "btime ") return std::nullopt;
    pos = 0;
  } else {
    pos += 1;
  }
  int64_t v = 0;
  if (!parseNumber(firstField(proc_stat.substr(pos + 6)), &v)) return std::nullopt;
  if (v > std::numeric_limits<int64_t>::max() / 1000) return std::nullopt;  // callers use ms
  return v;
}

std::optional<int64_t> parseUptimeMs(std::string_view proc_uptime) {
  std::string_view f = firstField(proc_uptime);
  size_t dot = f.find('.');
  int64_t secs = 0;
  if (!parseNumber(f.substr(0, dot), &secs)) return std::nullopt;
  int64_t ms = 0;
  if (dot != std::string_view::npos) {
    std::string_view frac = f.substr(dot + 1);
    int digits = 0;
    for (char c : frac) {
      if (c < '0' || c > '9') return std::nullopt;
      if (digits++ < 3) ms = ms * 10 + (c - '0');
    }
    for (; digits < 3; ++digits) ms *= 10;
  }
  if (secs > (std::numeric_limits<int64_t>::max() - ms) / 1000) return std::nullopt;
  return secs * 1000 + ms;
}

uint64_t socketInodeFromLink(std::string_view link) {
  static constexpr std::string_view kPrefix = "socket:[";
  if (link.size() <= kPrefix.size() + 1 || link.substr(0, kPrefix.size()) != kPrefix ||
      link.back() != ']') {
    return 0;
  }
  uint64_t v = 0;
  return parseNumber(link.substr(kPrefix.size(), link.size() - kPrefix.size() - 1), &v) ? v : 0;
}

LinkFlags linkFlags(std::string_view target) {
  static constexpr std::string_view kDeleted = " (deleted)";
  static constexpr std::string_view kMemfd = "/memfd:";
  LinkFlags f;
  f.deleted = target.size() >= kDeleted.size() &&
              target.substr(target.size() - kDeleted.size()) == kDeleted;
  f.memfd = target.substr(0, kMemfd.size()) == kMemfd;
  return f;
}

std::optional<uint32_t> auditIdOrUnset(std::string_view text) {
  auto v = parseAuditId("audit id", text);
  if (!v.ok() || *v == kNoAuditId) return std::nullopt;
  return *v;
}

std::optional<std::string> ttyOrNone(int tty_nr) {
  std::string name = ttyName(tty_nr);
  if (name.empty()) return std::nullopt;
  return name;
}

std::optional<MapLine> parseMapsLine(std::string_view line) {
  // "start-end perms offset dev inode [spaces] path"
  MapLine m;
  std::string_view rest = line;
  std::string_view range = nextField(&rest);
  size_t dash = range.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  m.start = range.substr(0, dash);
  m.end = range.substr(dash + 1);
  m.perms = nextField(&rest);
  m.offset = nextField(&rest);
  std::string_view dev = nextField(&rest);
  std::string_view inode = nextField(&rest);
  if (m.start.empty() || m.end.empty() || m.perms.size() != 4 || m.offset.empty() || dev.empty() ||
      inode.empty()) {
    return std::nullopt;
  }
  size_t b = rest.find_first_not_of(' ');
  m.path = b == std::string_view::npos ? std::string_view{} : rest.substr(b);
  return m;
}

bool interestingMapping(const MapLine& m) {
  LinkFlags f = linkFlags(m.path);
  if (f.deleted || f.memfd) return true;
  bool anonymous =
      m.path.empty() || m.path == "[heap]" || m.path == "[stack]" || m.path.substr(0, 5) == "[anon";
  return anonymous && m.perms.find('x') != std::string_view::npos;
}

}  // namespace bulkhead::agent::proc
