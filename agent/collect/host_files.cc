#include "agent/collect/host_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>

#include "absl/strings/escaping.h"
#include "agent/linux/proc_files.h"
#include "common/format.h"

namespace bulkhead::agent::collect {
namespace {

using proc::ScopedFd;

std::string errnoText(int err) { return std::strerror(err); }

}  // namespace

std::filesystem::path underRoot(const std::filesystem::path& root, std::string_view host_path) {
  while (!host_path.empty() && host_path.front() == '/') host_path.remove_prefix(1);
  return root / std::filesystem::path(std::string(host_path));
}

int64_t mtimeMs(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000;
}

int64_t ctimeMs(const struct stat& st) {
  return static_cast<int64_t>(st.st_ctim.tv_sec) * 1000 + st.st_ctim.tv_nsec / 1000000;
}

std::string_view fileTypeName(mode_t mode) {
  if (S_ISREG(mode)) return "file";
  if (S_ISDIR(mode)) return "dir";
  if (S_ISLNK(mode)) return "symlink";
  if (S_ISFIFO(mode)) return "fifo";
  if (S_ISSOCK(mode)) return "socket";
  if (S_ISCHR(mode)) return "chardev";
  if (S_ISBLK(mode)) return "blockdev";
  return "other";
}

namespace {

// Reads the regular file open at `fd` (whose stat before the open was `before`) as
// readRegularFile describes; `shown` names it in errors.
absl::StatusOr<FileBytes> readOpenFile(ScopedFd fd, const struct stat& before,
                                       const std::string& shown, uint64_t cap, bool tail) {
  FileBytes out;
  if (::fstat(fd.get(), &out.st) != 0) {
    return absl::UnavailableError(fmt::format("{}: fstat: {}", shown, errnoText(errno)));
  }
  if (!S_ISREG(out.st.st_mode) || out.st.st_dev != before.st_dev ||
      out.st.st_ino != before.st_ino) {
    return absl::FailedPreconditionError(fmt::format(
        "{}: replaced while being opened (now {}), not read", shown, fileTypeName(out.st.st_mode)));
  }
  off_t offset = 0;
  const uint64_t size = static_cast<uint64_t>(out.st.st_size);
  if (tail && size > cap) {
    offset = static_cast<off_t>(size - cap);
    out.truncated = true;
  }
  char buf[65536];
  for (;;) {
    const uint64_t want = std::min<uint64_t>(sizeof buf, cap + 1 - out.bytes.size());
    ssize_t n = ::pread(fd.get(), buf, want, offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(fmt::format("{}: read: {}", shown, errnoText(errno)));
    }
    if (n == 0) break;
    out.bytes.append(buf, static_cast<size_t>(n));
    offset += n;
    if (out.bytes.size() > cap) {  // read one byte more than `cap` to know there is more
      if (tail) {
        out.bytes.erase(0, out.bytes.size() - cap);  // grew while read: keep the last bytes
      } else {
        out.bytes.resize(cap);
      }
      out.truncated = true;
      break;
    }
  }
  return out;
}

constexpr int kReadFlags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY;

// openat with O_NOATIME where permitted (the owner or CAP_FOWNER), without it otherwise.
int openNoAtime(int dirfd, const char* name, int flags) {
  int fd = ::openat(dirfd, name, flags | O_NOATIME);
  if (fd < 0 && errno == EPERM) fd = ::openat(dirfd, name, flags);
  return fd;
}

}  // namespace

absl::StatusOr<FileBytes> readRegularFile(const std::filesystem::path& path, uint64_t cap,
                                          bool tail, bool follow_symlinks) {
  struct stat before {};
  if ((follow_symlinks ? ::stat(path.c_str(), &before) : ::lstat(path.c_str(), &before)) != 0) {
    int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      return absl::NotFoundError(fmt::format("{}: does not exist", path.string()));
    }
    return absl::UnavailableError(fmt::format("{}: stat: {}", path.string(), errnoText(err)));
  }
  if (!S_ISREG(before.st_mode)) {
    return absl::FailedPreconditionError(fmt::format("{}: not a regular file ({}), not read",
                                                     path.string(), fileTypeName(before.st_mode)));
  }
  int raw = openNoAtime(AT_FDCWD, path.c_str(), kReadFlags | (follow_symlinks ? 0 : O_NOFOLLOW));
  if (raw < 0) {
    int err = errno;
    if (err == ENOENT) return absl::NotFoundError(fmt::format("{}: vanished", path.string()));
    return absl::UnavailableError(fmt::format("{}: open: {}", path.string(), errnoText(err)));
  }
  return readOpenFile(ScopedFd(raw), before, path.string(), cap, tail);
}

absl::StatusOr<UserPathParent> openUserPathParent(const std::filesystem::path& root,
                                                  const std::string& trusted_dir,
                                                  const std::string& host_path) {
  const std::string prefix = trusted_dir.ends_with('/') ? trusted_dir : trusted_dir + "/";
  if (!host_path.starts_with(prefix) || host_path.size() == prefix.size()) {
    return absl::InvalidArgumentError(
        fmt::format("{}: not below {}", proc::utf8(host_path), proc::utf8(trusted_dir)));
  }
  std::vector<std::string> components;
  for (std::string_view rest = std::string_view(host_path).substr(prefix.size()); !rest.empty();) {
    size_t slash = rest.find('/');
    std::string_view c = rest.substr(0, slash);
    if (c == "..") {
      return absl::InvalidArgumentError(fmt::format(
          "{}: \"..\" below {} is not followed", proc::utf8(host_path), proc::utf8(trusted_dir)));
    }
    if (!c.empty() && c != ".") components.emplace_back(c);
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  if (components.empty()) {
    return absl::InvalidArgumentError(fmt::format("{}: names no file", proc::utf8(host_path)));
  }
  const std::filesystem::path top = underRoot(root, trusted_dir);
  UserPathParent out;
  out.dir = ScopedFd(::open(top.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!out.dir.ok()) {
    int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      return absl::NotFoundError(fmt::format("{}: does not exist", proc::utf8(trusted_dir)));
    }
    return absl::UnavailableError(
        fmt::format("{}: open: {}", proc::utf8(trusted_dir), errnoText(err)));
  }
  std::string walked = prefix.substr(0, prefix.size() - 1);
  for (size_t i = 0; i + 1 < components.size(); ++i) {
    const std::string& c = components[i];
    walked += "/" + c;
    struct stat st {};
    if (::fstatat(out.dir.get(), c.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      int err = errno;
      if (err == ENOENT || err == ENOTDIR) {
        return absl::NotFoundError(fmt::format("{}: does not exist", proc::utf8(walked)));
      }
      return absl::UnavailableError(
          fmt::format("{}: lstat: {}", proc::utf8(walked), errnoText(err)));
    }
    if (S_ISLNK(st.st_mode)) {
      SymlinkOnPath link;
      link.host_path = walked;
      link.st = st;
      char target[4096];
      ssize_t n = ::readlinkat(out.dir.get(), c.c_str(), target, sizeof target);
      if (n > 0) link.target.assign(target, static_cast<size_t>(n));
      out.link = std::move(link);
      return out;
    }
    if (!S_ISDIR(st.st_mode)) {
      return absl::NotFoundError(
          fmt::format("{}: not a directory ({})", proc::utf8(walked), fileTypeName(st.st_mode)));
    }
    ScopedFd next(
        ::openat(out.dir.get(), c.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next.ok()) {
      return absl::FailedPreconditionError(
          fmt::format("{}: replaced while being resolved ({}), not followed", proc::utf8(walked),
                      errnoText(errno)));
    }
    out.dir = std::move(next);
  }
  out.name = components.back();
  out.host_path = walked + "/" + out.name;
  return out;
}

absl::StatusOr<FileBytes> readUserFile(const std::filesystem::path& root,
                                       const std::string& trusted_dir, const std::string& host_path,
                                       uint64_t cap, bool tail,
                                       std::optional<SymlinkOnPath>* link) {
  link->reset();
  auto parent = openUserPathParent(root, trusted_dir, host_path);
  if (!parent.ok()) return parent.status();
  const std::string shown = proc::utf8(host_path);
  auto symlinkFound = [&](const SymlinkOnPath& l) {
    *link = l;
    return absl::FailedPreconditionError(fmt::format("{}: {} is a symlink to {}, not followed",
                                                     shown, proc::utf8(l.host_path),
                                                     proc::utf8(l.target)));
  };
  if (parent->link) return symlinkFound(*parent->link);
  const int dir = parent->dir.get();
  const char* name = parent->name.c_str();
  struct stat before {};
  if (::fstatat(dir, name, &before, AT_SYMLINK_NOFOLLOW) != 0) {
    int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      return absl::NotFoundError(fmt::format("{}: does not exist", shown));
    }
    return absl::UnavailableError(fmt::format("{}: lstat: {}", shown, errnoText(err)));
  }
  if (S_ISLNK(before.st_mode)) {
    SymlinkOnPath l;
    l.host_path = parent->host_path;
    l.st = before;
    char target[4096];
    ssize_t n = ::readlinkat(dir, name, target, sizeof target);
    if (n > 0) l.target.assign(target, static_cast<size_t>(n));
    return symlinkFound(l);
  }
  if (!S_ISREG(before.st_mode)) {
    return absl::FailedPreconditionError(
        fmt::format("{}: not a regular file ({}), not read", shown, fileTypeName(before.st_mode)));
  }
  int raw = openNoAtime(dir, name, kReadFlags | O_NOFOLLOW);
  if (raw < 0) {
    int err = errno;
    if (err == ENOENT) return absl::NotFoundError(fmt::format("{}: vanished", shown));
    return absl::UnavailableError(fmt::format("{}: open: {}", shown, errnoText(err)));
  }
  return readOpenFile(ScopedFd(raw), before, shown, cap, tail);
}

std::optional<std::string> symlinkTarget(const std::filesystem::path& path) {
  char target[4096];
  ssize_t n = ::readlink(path.c_str(), target, sizeof target);
  if (n < 0) return std::nullopt;
  return std::string(target, static_cast<size_t>(n));
}

absl::StatusOr<std::vector<std::string>> listDir(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    int err = errno;
    if (err == ENOENT || err == ENOTDIR) return names;
    return absl::UnavailableError(fmt::format("{}: opendir: {}", dir.string(), errnoText(err)));
  }
  while (const dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n == "." || n == "..") continue;
    names.emplace_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

namespace {

constexpr int kDirFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK;

// Opens `components` one by one below `top_fd`, refusing symlinks at every step.
int openBeneath(int top_fd, const std::vector<std::string>& components) {
  int cur = ::dup(top_fd);
  for (const std::string& c : components) {
    if (cur < 0) return -1;
    int next = ::openat(cur, c.c_str(), kDirFlags);
    int err = errno;
    ::close(cur);
    errno = err;
    cur = next;
  }
  return cur;
}

struct PendingDir {
  std::string host_path;
  std::vector<std::string> components;  // below the top
  int depth = 0;
  dev_t dev = 0;
  ino_t ino = 0;
};

}  // namespace

WalkResult walkTree(const std::filesystem::path& root, const std::string& host_top,
                    const WalkLimits& limits, const std::function<bool(const WalkEntry&)>& visit,
                    const std::function<void(const std::string&)>& warn,
                    const std::function<bool()>& stopped) {
  WalkResult result;
  // Paths are attacker-chosen bytes: warnings must stay valid UTF-8 too.
  auto say = [&](const std::string& m) { warn(proc::utf8(m)); };
  const std::filesystem::path top = underRoot(root, host_top);
  if (limits.avoid.count(host_top) != 0) {
    say(fmt::format("{}: mount point of a file system that may hang, not examined", host_top));
    return result;
  }
  // The top is named relative to `parent_fd`: the current directory, or with a trusted_dir
  // the top's own directory reached without following the user's symlinks.
  int parent_fd = AT_FDCWD;
  std::string top_name = top.string();
  std::optional<UserPathParent> user;
  WalkEntry entry;
  entry.host_path = host_top;
  if (!limits.trusted_dir.empty()) {
    auto parent = openUserPathParent(root, limits.trusted_dir, host_top);
    if (!parent.ok()) {
      if (!absl::IsNotFound(parent.status())) say(fmt::format("{}", parent.status()));
      return result;
    }
    user = *std::move(parent);
    if (user->link) {
      entry.host_path = user->link->host_path;
      entry.st = user->link->st;
      entry.link_target = user->link->target;
      say(fmt::format("{}: is a symlink to {}, not followed", entry.host_path, entry.link_target));
      ++result.entries;
      result.cut = !visit(entry);
      return result;
    }
    parent_fd = user->dir.get();
    top_name = user->name;
  }
  if (::fstatat(parent_fd, top_name.c_str(), &entry.st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno != ENOENT) say(fmt::format("{}: lstat: {}", host_top, errnoText(errno)));
    return result;
  }
  if (S_ISLNK(entry.st.st_mode)) {
    char target[4096];
    ssize_t n = ::readlinkat(parent_fd, top_name.c_str(), target, sizeof target);
    if (n > 0) entry.link_target.assign(target, static_cast<size_t>(n));
    say(fmt::format("{}: is a symlink to {}, not followed", host_top, entry.link_target));
  }
  ++result.entries;
  if (!visit(entry)) {
    result.cut = true;
    return result;
  }
  if (!S_ISDIR(entry.st.st_mode) || limits.max_depth < 1) return result;
  ScopedFd top_fd(::openat(parent_fd, top_name.c_str(), kDirFlags));
  if (top_fd.get() < 0) {
    say(fmt::format("{}: open: {}", host_top, errnoText(errno)));
    return result;
  }
  std::deque<PendingDir> queue;
  queue.push_back({host_top, {}, 0, entry.st.st_dev, entry.st.st_ino});
  while (!queue.empty()) {
    if (stopped()) {
      result.cut = true;
      return result;
    }
    PendingDir dir = std::move(queue.front());
    queue.pop_front();
    ScopedFd dfd(openBeneath(top_fd.get(), dir.components));
    if (dfd.get() < 0) {
      say(fmt::format("{}: cannot open directory: {}", dir.host_path, errnoText(errno)));
      continue;
    }
    struct stat dst {};
    if (::fstat(dfd.get(), &dst) != 0 || dst.st_dev != dir.dev || dst.st_ino != dir.ino) {
      say(fmt::format("{}: replaced while listed, skipped", dir.host_path));
      continue;
    }
    int list_fd = ::dup(dfd.get());
    DIR* d = list_fd < 0 ? nullptr : ::fdopendir(list_fd);
    if (d == nullptr) {
      if (list_fd >= 0) ::close(list_fd);
      say(fmt::format("{}: cannot list: {}", dir.host_path, errnoText(errno)));
      continue;
    }
    std::vector<std::string> names;
    while (const dirent* e = ::readdir(d)) {
      std::string_view n = e->d_name;
      if (n != "." && n != "..") names.emplace_back(n);
      if (names.size() > limits.max_entries || stopped()) break;
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    const std::string prefix = dir.host_path == "/" ? "/" : dir.host_path + "/";
    for (const std::string& name : names) {
      if (stopped() || result.entries >= limits.max_entries) {
        result.cut = true;
        return result;
      }
      WalkEntry child;
      child.host_path = prefix + name;
      child.depth = dir.depth + 1;
      if (limits.avoid.count(child.host_path) != 0) {
        say(fmt::format("{}: mount point of a file system that may hang, not examined",
                        child.host_path));
        continue;
      }
      if (::fstatat(dfd.get(), name.c_str(), &child.st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno != ENOENT) say(fmt::format("{}: lstat: {}", child.host_path, errnoText(errno)));
        continue;
      }
      if (S_ISLNK(child.st.st_mode)) {
        char target[4096];
        ssize_t n = ::readlinkat(dfd.get(), name.c_str(), target, sizeof target);
        if (n > 0) child.link_target.assign(target, static_cast<size_t>(n));
      }
      ++result.entries;
      if (!visit(child)) {
        result.cut = true;
        return result;
      }
      if (S_ISDIR(child.st.st_mode) && child.depth < limits.max_depth) {
        PendingDir next{child.host_path, dir.components, child.depth, child.st.st_dev,
                        child.st.st_ino};
        next.components.push_back(name);
        queue.push_back(std::move(next));
      }
    }
  }
  return result;
}

std::set<std::string> hangProneMounts(const std::filesystem::path& mountinfo) {
  auto f = readRegularFile(mountinfo, 16 * 1024 * 1024);
  if (!f.ok()) return {};
  return parseHangProneMounts(f->bytes);
}

std::set<std::string> parseHangProneMounts(std::string_view mountinfo_text) {
  std::set<std::string> out;
  for (std::string_view line : splitLines(mountinfo_text)) {
    // "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw": mount point is field
    // 5, the file system type follows " - ".
    size_t dash = line.find(" - ");
    if (dash == std::string_view::npos) continue;
    std::string_view rest = line.substr(dash + 3);
    std::string_view fstype = rest.substr(0, rest.find(' '));
    const bool risky = fstype.starts_with("fuse") || fstype.starts_with("nfs") ||
                       fstype == "cifs" || fstype == "smb3" || fstype == "9p" || fstype == "ceph" ||
                       fstype == "glusterfs";
    if (!risky) continue;
    std::string_view head = line.substr(0, dash);
    std::string_view point;
    for (int i = 0; i < 5 && !head.empty(); ++i) {
      size_t sp = head.find(' ');
      point = head.substr(0, sp);
      head = sp == std::string_view::npos ? std::string_view() : head.substr(sp + 1);
    }
    std::string decoded;  // octal escapes for space, tab, newline, backslash: "\\040"
    for (size_t i = 0; i < point.size(); ++i) {
      auto octal = [&](size_t k) { return point[k] >= '0' && point[k] <= '7'; };
      if (point[i] == '\\' && i + 3 < point.size() && octal(i + 1) && octal(i + 2) &&
          octal(i + 3)) {
        decoded.push_back(static_cast<char>((point[i + 1] - '0') * 64 + (point[i + 2] - '0') * 8 +
                                            (point[i + 3] - '0')));
        i += 3;
      } else {
        decoded.push_back(point[i]);
      }
    }
    out.insert(std::move(decoded));
  }
  return out;
}

void putText(nlohmann::json& r, const std::string& key, std::string_view bytes) {
  std::string clean = proc::utf8(bytes);
  if (clean.size() != bytes.size() || clean != bytes) {
    r[key + "_base64"] = absl::Base64Escape(absl::string_view(bytes.data(), bytes.size()));
  }
  r[key] = std::move(clean);
}

std::vector<std::string_view> splitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return lines;
}

std::string_view trimBlanks(std::string_view s) {
  constexpr std::string_view kBlanks = " \t\r\n";
  size_t b = s.find_first_not_of(kBlanks);
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(kBlanks);
  return s.substr(b, e - b + 1);
}

}  // namespace bulkhead::agent::collect
