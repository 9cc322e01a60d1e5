#include "agent/linux/proc_scan.h"

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <chrono>

#include <fmt/format.h>

#include "agent/linux/proc_files.h"

namespace bulkhead::agent {
namespace {

constexpr size_t kSmallFileCap = 1 << 20;

int64_t bootTimeUnix() {
  static const int64_t btime = [] {
    std::string text;
    if (!proc::readFileAt(AT_FDCWD, "/proc/stat", kSmallFileCap, &text)) return int64_t{0};
    return proc::parseBootTime(text).value_or(0);
  }();
  return btime;
}

// The process whose directory under /proc is `dir`; nullopt when it is gone.
std::optional<ProcessInfo> readProcessAt(int dir, bool with_sockets) {
  std::string text;
  if (!proc::readFileAt(dir, "stat", kSmallFileCap, &text)) return std::nullopt;
  auto st = parseProcStat(text);
  if (!st.ok()) return std::nullopt;
  ProcessInfo p;
  p.pid = st->pid;
  p.ppid = st->ppid;
  p.comm = st->comm;
  p.tty_nr = st->tty_nr;
  p.start_ticks = st->start_ticks;
  static const long ticks = ::sysconf(_SC_CLK_TCK);
  p.start_unix = bootTimeUnix() + static_cast<int64_t>(st->start_ticks / static_cast<uint64_t>(ticks > 0 ? ticks : 100));
  if (!proc::readFileAt(dir, "status", kSmallFileCap, &text)) return std::nullopt;
  if (auto uid = parseStatusUid(text); uid.ok()) p.uid = *uid;
  if (proc::readFileAt(dir, "loginuid", kSmallFileCap, &text)) {
    if (auto v = parseAuditId("loginuid", text); v.ok()) p.loginuid = *v;
  }
  if (proc::readFileAt(dir, "sessionid", kSmallFileCap, &text)) {
    if (auto v = parseAuditId("sessionid", text); v.ok()) p.sessionid = *v;
  }
  p.cmdline = proc::readFileAt(dir, "cmdline", kSmallFileCap, &text) ? joinCmdline(text) : "";
  p.exe = proc::readLinkAt(dir, "exe").value_or("");
  // Kernel threads: children of kthreadd (pid 2) or kthreadd itself, with no command line.
  p.kernel_thread = p.cmdline.empty() && p.exe.empty() && (p.ppid == 2 || p.pid == 2);
  p.user = userOfUid(p.uid);
  if (with_sockets) {
    proc::forEachSocketInode(dir, [&](uint64_t inode) {
      p.socket_inodes.push_back(inode);
      return true;
    });
  }
  return p;
}

}  // namespace

std::optional<std::string> userNameOfUid(uint32_t uid) {
  passwd pw{};
  passwd* res = nullptr;
  char buf[4096];
  if (::getpwuid_r(uid, &pw, buf, sizeof buf, &res) != 0 || res == nullptr) return std::nullopt;
  return std::string(pw.pw_name);
}

std::string userOfUid(uint32_t uid) {
  static std::mutex mu;
  static std::map<uint32_t, std::string> cache;
  std::lock_guard lock(mu);
  if (auto it = cache.find(uid); it != cache.end()) return it->second;
  std::string name = userNameOfUid(uid).value_or("");
  // Users come and go during a response (the lab adds and removes them): cache hits only.
  if (!name.empty()) cache[uid] = name;
  return name.empty() ? std::to_string(uid) : name;
}

std::optional<uint32_t> uidOfUser(const std::string& name) {
  passwd pw{};
  passwd* res = nullptr;
  char buf[4096];
  if (::getpwnam_r(name.c_str(), &pw, buf, sizeof buf, &res) != 0 || res == nullptr) {
    return std::nullopt;
  }
  return pw.pw_uid;
}

std::optional<ProcessInfo> readProcess(int pid, bool with_sockets) {
  proc::ScopedFd dir = proc::openDir(AT_FDCWD, fmt::format("/proc/{}", pid).c_str());
  if (!dir.ok()) return std::nullopt;
  return readProcessAt(dir.get(), with_sockets);
}

std::optional<char> readProcessState(int pid) {
  std::string text;
  if (!proc::readFileAt(AT_FDCWD, fmt::format("/proc/{}/stat", pid).c_str(), 4096, &text)) {
    return std::nullopt;
  }
  auto st = parseProcStat(text);
  if (!st.ok()) return std::nullopt;
  return st->state;
}

absl::StatusOr<std::vector<ProcessInfo>> scanProcesses(bool with_sockets) {
  proc::ScopedFd proc_fd = proc::openDir(AT_FDCWD, "/proc");
  std::vector<ProcessInfo> out;
  bool listed = proc_fd.ok() && proc::forEachNumericEntry(proc_fd.get(), ".", [&](int pid, const char* name) {
    if (pid <= 0) return true;  // not a process
    proc::ScopedFd dir = proc::openDir(proc_fd.get(), name);
    if (!dir.ok()) return true;
    if (auto info = readProcessAt(dir.get(), with_sockets)) out.push_back(std::move(*info));
    return true;
  });
  if (!listed) {
    return absl::UnavailableError(fmt::format("cannot read /proc: {}", std::strerror(errno)));
  }
  return out;
}

std::vector<ProcNetSocket> readTcpSockets() {
  std::vector<ProcNetSocket> out;
  std::string text;
  if (proc::readFileAt(AT_FDCWD, "/proc/net/tcp", kSmallFileCap, &text)) {
    out = parseProcNetTcp(text, false);
  }
  if (proc::readFileAt(AT_FDCWD, "/proc/net/tcp6", kSmallFileCap, &text)) {
    auto v6 = parseProcNetTcp(text, true);
    out.insert(out.end(), v6.begin(), v6.end());
  }
  return out;
}

absl::StatusOr<std::string> sha256OfFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::UnavailableError(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  char buf[65536];
  absl::Status err;
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = absl::UnavailableError(fmt::format("cannot read {}: {}", path, std::strerror(errno)));
      break;
    }
    if (n == 0) break;
    EVP_DigestUpdate(ctx, buf, static_cast<size_t>(n));
  }
  ::close(fd);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  if (!err.ok()) return err;
  std::string hex;
  for (unsigned i = 0; i < len; ++i) hex += fmt::format("{:02x}", md[i]);
  return hex;
}

absl::StatusOr<std::string> LinuxProcFs::exeSha256(int pid) {
  return sha256OfFile(fmt::format("/proc/{}/exe", pid));
}

absl::StatusOr<std::vector<SessionInfo>> ProcSessionSource::sessions() {
  auto procs = procfs_->scan(/*with_sockets=*/true);
  if (!procs.ok()) return procs.status();
  return groupSessions(*procs, procfs_->tcpSockets());
}

bool logindLikelyPresent() {
  struct stat st {};
  return ::stat("/run/systemd/seats", &st) == 0 && S_ISDIR(st.st_mode);
}

absl::StatusOr<std::string> ExecLoginctlRunner::run(const std::vector<std::string>& args) {
  const char* path = ::access("/usr/bin/loginctl", X_OK) == 0 ? "/usr/bin/loginctl"
                     : ::access("/bin/loginctl", X_OK) == 0   ? "/bin/loginctl"
                                                              : nullptr;
  if (path == nullptr) return absl::UnavailableError("loginctl not installed");
  std::vector<std::string> argv_s{path, "--no-pager"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return absl::InternalError("pipe2 failed");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  char* envp[] = {const_cast<char*>("LANG=C"), nullptr};
  int rc = ::posix_spawn(&pid, path, &fa, nullptr, argv.data(), envp);
  posix_spawn_file_actions_destroy(&fa);
  ::close(pipefd[1]);
  if (rc != 0) {
    ::close(pipefd[0]);
    return absl::UnavailableError(fmt::format("cannot run {}: {}", path, std::strerror(rc)));
  }
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  bool timed_out = false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{pipefd[0], POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      timed_out = n == 0;
      break;
    }
    char buf[4096];
    ssize_t r = ::read(pipefd[0], buf, sizeof buf);
    if (r <= 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  ::close(pipefd[0]);
  if (timed_out) ::kill(pid, SIGKILL);   // our own child, by its pid
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) return absl::DeadlineExceededError("loginctl took over 3 s");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::UnavailableError("loginctl failed (no system bus or no logind)");
  }
  return out;
}

absl::StatusOr<std::vector<SessionInfo>> LogindSessionSource::sessions() {
  auto list = runner_->run({"list-sessions", "--no-legend"});
  std::vector<LogindSession> logind;
  if (list.ok()) {
    for (const auto& id : parseLoginctlList(*list)) {
      auto show = runner_->run({"show-session", id, "-p", "Id", "-p", "User", "-p", "Name", "-p",
                                "TTY", "-p", "RemoteHost", "-p", "Service", "-p", "Leader"});
      if (!show.ok()) continue;   // ended meanwhile
      auto s = parseLoginctlShow(*show);
      if (s.ok()) logind.push_back(*std::move(s));
    }
  }
  auto from_proc = fallback_->sessions();
  if (!from_proc.ok()) return from_proc.status();
  if (!list.ok()) {
    last_ = fallback_->name();
    return from_proc;
  }
  last_ = "logind";
  return mergeLogindSessions(logind, *from_proc);
}

}  // namespace bulkhead::agent
