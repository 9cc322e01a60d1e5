#include "tests/unit/controller/temp_postgres.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

namespace bulkhead::controller::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr auto kInitdbTimeout = seconds(60);
constexpr auto kStartTimeout = seconds(30);
constexpr auto kStopTimeout = seconds(20);
constexpr auto kPoll = milliseconds(10);
constexpr const char* kUser = "bulkhead";
constexpr int kPort = 5432;  // names the socket file (.s.PGSQL.5432) only: no TCP listener

std::string errnoText(int err) { return std::strerror(err); }

std::string describeWaitStatus(int status) {
  if (WIFEXITED(status)) return fmt::format("exit status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("killed by signal {}", WTERMSIG(status));
  return fmt::format("wait status {:#x}", status);
}

// The last `lines` lines of a log file, for error messages.
std::string logTail(const std::string& path, size_t lines = 25) {
  std::ifstream in(path);
  if (!in) return fmt::format("(no log at {})", path);
  std::vector<std::string> all;
  for (std::string line; std::getline(in, line);) all.push_back(line);
  size_t from = all.size() > lines ? all.size() - lines : 0;
  std::string out = fmt::format("last lines of {}:", path);
  for (size_t i = from; i < all.size(); ++i) out += "\n  " + all[i];
  if (all.empty()) out += " (empty)";
  return out;
}

// libpq keyword/value quoting: '...' with \ and ' escaped.
std::string quoteValue(const std::string& v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\\' || c == '\'') out += '\\';
    out += c;
  }
  return out + "'";
}

// RFC 3986 percent-encoding of everything but the unreserved characters.
std::string percentEncode(const std::string& v) {
  std::string out;
  for (unsigned char c : v) {
    if (std::isalnum(c) != 0 || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

// Polls waitpid(pid) until the child exits or `timeout` passes. The exit's wait status, or
// nullopt if it is still running (or is not our child: ECHILD gives -1 as status).
std::optional<int> waitExit(pid_t pid, Clock::duration timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return -1;
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(kPoll);
  }
}

// A process's state letter and start time (fields 3 and 22 of /proc/PID/stat), if it exists.
struct ProcStat {
  char state;
  unsigned long long start_time;
  pid_t ppid;
};
std::optional<ProcStat> procStat(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string text;
  if (!in || !std::getline(in, text)) return std::nullopt;
  // "PID (COMM) STATE PPID ..." where COMM may hold spaces and parentheses: after the last ')'
  auto close = text.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(text.substr(close + 1));
  ProcStat s{};
  rest >> s.state >> s.ppid;
  std::string skip;
  for (int field = 5; field < 22; ++field) rest >> skip;  // fields 5..21
  rest >> s.start_time;
  if (!rest) return std::nullopt;
  return s;
}

// The processes whose parent is `parent`, with their start times (against pid reuse).
std::vector<std::pair<pid_t, unsigned long long>> childrenOf(pid_t parent) {
  std::vector<std::pair<pid_t, unsigned long long>> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    pid_t pid = static_cast<pid_t>(std::stol(name));
    auto s = procStat(pid);
    if (s && s->ppid == parent) out.emplace_back(pid, s->start_time);
  }
  return out;
}

// Gone: no such process any more, another process under its pid, or a zombie (it has exited
// and detached from the server's shared memory; its new parent reaps it).
bool gone(pid_t pid, unsigned long long start_time) {
  auto s = procStat(pid);
  return !s || s->start_time != start_time || s->state == 'Z' || s->state == 'X';
}

// Starts argv[0] (a full path) with `env`, as uid:gid (only when that is another user than
// ours: dropping root), in `cwd`, stdin from /dev/null, stdout and stderr appended to
// `log_path`, and every other descriptor closed. The child gets SIGQUIT (PostgreSQL's
// immediate shutdown) when the thread that started it dies. Returns its pid.
absl::StatusOr<pid_t> spawn(const std::vector<std::string>& args,
                            const std::vector<std::string>& env, const std::string& cwd,
                            const std::string& log_path, uid_t uid, gid_t gid) {
  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return absl::InternalError(fmt::format("open {}: {}", log_path, errnoText(errno)));
  }
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) {
    int err = errno;
    close(log_fd);
    return absl::InternalError(fmt::format("open /dev/null: {}", errnoText(err)));
  }
  // Everything the child needs is made before fork: after it, only async-signal-safe calls.
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  envp.reserve(env.size() + 1);
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const bool switch_user = uid != geteuid();
  const pid_t parent = getpid();
  const std::string exec_failed =
      fmt::format("temp_postgres: cannot run {} as {}:{}: errno ", args[0], uid, gid);
  sigset_t none;
  sigemptyset(&none);

  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    close(log_fd);
    close(null_fd);
    return absl::InternalError(fmt::format("fork: {}", errnoText(err)));
  }
  if (pid == 0) {
    auto fail = [&](int code) {
      int err = errno;
      char digits[16];
      int n = 0;
      do {
        digits[n++] = static_cast<char>('0' + err % 10);
        err /= 10;
      } while (err > 0 && n < 15);
      ssize_t ignored = write(2, exec_failed.data(), exec_failed.size());
      while (n > 0) ignored = write(2, &digits[--n], 1);
      ignored = write(2, "\n", 1);
      (void)ignored;
      _exit(code);
    };
    if (dup2(null_fd, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0) _exit(125);
    if (close_range(3, ~0U, 0) != 0) fail(125);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (switch_user) {
      if (setgroups(0, nullptr) != 0 || setgid(gid) != 0 || setuid(uid) != 0) fail(126);
    }
    // after the user switch: changing credentials clears the parent-death signal
    if (prctl(PR_SET_PDEATHSIG, SIGQUIT) != 0) fail(125);
    if (getppid() != parent) _exit(125);  // the parent died already
    if (chdir(cwd.c_str()) != 0) fail(125);
    execve(argv[0], argv.data(), envp.data());
    fail(127);
  }
  close(log_fd);
  close(null_fd);
  return pid;
}

// The environment of initdb and postgres: none of ours (no PGDATA, PGPORT, PGOPTIONS...),
// English messages, UTC.
std::vector<std::string> childEnv(const std::string& dir) {
  return {"PATH=/usr/bin:/bin", "LC_ALL=C", "LANG=C", "TZ=UTC", "HOME=" + dir};
}

absl::StatusOr<std::string> binDir() {
  std::string bin;
  if (const char* env = std::getenv("BULKHEAD_PG_BIN"); env != nullptr && *env != '\0') {
    bin = env;
  } else {
    const char* cache = std::getenv("BULKHEAD_LAB_TOOLS");
    bin = fmt::format("{}/postgresql-15/usr/lib/postgresql/15/bin",
                      cache != nullptr && *cache != '\0' ? cache : "/var/cache/bulkhead/lab-tools");
  }
  // absolute: the programs run in the temporary directory
  std::error_code ec;
  if (fs::path abs = fs::absolute(bin, ec); !ec) bin = abs.lexically_normal().string();
  for (const char* tool : {"initdb", "postgres"}) {
    std::string path = fmt::format("{}/{}", bin, tool);
    if (access(path.c_str(), X_OK) != 0) {
      return absl::FailedPreconditionError(fmt::format(
          "PostgreSQL 15 server not found: {} is missing or not executable ({}). Run "
          "scripts/lab-tools.sh as root (it extracts Debian 12's postgresql-15 into "
          "${{BULKHEAD_LAB_TOOLS:-/var/cache/bulkhead/lab-tools}}/postgresql-15), or set "
          "BULKHEAD_PG_BIN to a directory holding initdb and postgres",
          path, errnoText(errno)));
    }
  }
  return bin;
}

// nobody:nogroup when we are root (PostgreSQL refuses to run as root), else ourselves.
absl::Status serverUser(uid_t& uid, gid_t& gid) {
  if (geteuid() != 0) {
    uid = geteuid();
    gid = getegid();
    return absl::OkStatus();
  }
  const passwd* pw = getpwnam("nobody");
  if (pw == nullptr) {
    return absl::FailedPreconditionError(
        "running as root, and there is no user nobody to run PostgreSQL as (it refuses root)");
  }
  uid = pw->pw_uid;
  gid = pw->pw_gid;
  if (const group* gr = getgrnam("nogroup"); gr != nullptr) gid = gr->gr_gid;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<TempPostgres>> TempPostgres::start() {
  auto bin = binDir();
  if (!bin.ok()) return bin.status();
  uid_t uid = 0;
  gid_t gid = 0;
  if (auto s = serverUser(uid, gid); !s.ok()) return s;

  // /tmp, not $TMPDIR: a unix socket's path is limited to 107 bytes
  std::string templ = "/tmp/bulkhead-pg.XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) {
    return absl::InternalError(fmt::format("mkdtemp {}: {}", templ, errnoText(errno)));
  }
  // From here on the destructor removes the directory (pid_ is -1: no process to stop).
  std::unique_ptr<TempPostgres> pg(new TempPostgres(*bin, templ, uid, gid));
  if (uid != geteuid() && chown(pg->dir_.c_str(), uid, gid) != 0) {
    return absl::InternalError(
        fmt::format("chown {} to {}:{}: {}", pg->dir_, uid, gid, errnoText(errno)));
  }

  const std::string log = pg->dir_ + "/initdb.log";
  auto initdb =
      spawn({pg->bin_dir_ + "/initdb", "-D", pg->dir_ + "/data", "-U", kUser, "--auth=trust", "-E",
             "UTF8", "--locale=C", "--no-sync", "--no-instructions"},
            childEnv(pg->dir_), pg->dir_, log, uid, gid);
  if (!initdb.ok()) return initdb.status();
  auto status = waitExit(*initdb, kInitdbTimeout);
  if (!status) {
    kill(*initdb, SIGKILL);
    waitpid(*initdb, nullptr, 0);
    return absl::DeadlineExceededError(fmt::format("initdb did not finish in {} s; killed. {}",
                                                   kInitdbTimeout.count(), logTail(log)));
  }
  if (*status != 0) {
    return absl::InternalError(
        fmt::format("initdb failed ({}). {}", describeWaitStatus(*status), logTail(log)));
  }
  if (auto s = pg->launch(); !s.ok()) return s;
  return pg;
}

TempPostgres::~TempPostgres() {
  if (pid_ > 0) {
    if (auto s = stop(); !s.ok()) fmt::print(stderr, "TempPostgres: {}\n", s.ToString());
  }
  std::error_code ec;
  fs::remove_all(dir_, ec);
  if (ec) fmt::print(stderr, "TempPostgres: cannot remove {}: {}\n", dir_, ec.message());
}

std::string TempPostgres::conninfo(const std::string& dbname) const {
  return fmt::format("host={} port={} user={} dbname={}", quoteValue(dir_), kPort,
                     quoteValue(kUser), quoteValue(dbname));
}

std::string TempPostgres::url(const std::string& dbname) const {
  return fmt::format("postgresql://{}@/{}?host={}&port={}", kUser, percentEncode(dbname),
                     percentEncode(dir_), kPort);
}

absl::Status TempPostgres::createDatabase(const std::string& name) {
  std::unique_ptr<PGconn, decltype(&PQfinish)> conn(PQconnectdb(conninfo().c_str()), &PQfinish);
  if (!conn) return absl::ResourceExhaustedError("PQconnectdb: out of memory");
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return absl::UnavailableError(
        fmt::format("connect to {}: {}", conninfo(), PQerrorMessage(conn.get())));
  }
  std::unique_ptr<char, decltype(&PQfreemem)> ident(
      PQescapeIdentifier(conn.get(), name.c_str(), name.size()), &PQfreemem);
  if (!ident) {
    return absl::InvalidArgumentError(
        fmt::format("database name '{}': {}", name, PQerrorMessage(conn.get())));
  }
  const std::string sql = fmt::format("CREATE DATABASE {}", ident.get());
  std::unique_ptr<PGresult, decltype(&PQclear)> res(PQexec(conn.get(), sql.c_str()), &PQclear);
  if (!res || PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
    return absl::InternalError(fmt::format("{}: {}", sql, PQerrorMessage(conn.get())));
  }
  return absl::OkStatus();
}

absl::Status TempPostgres::launch() {
  const std::string log = dir_ + "/postgres.log";
  auto pid = spawn({bin_dir_ + "/postgres", "-D", dir_ + "/data", "-k", dir_, "-c",
                    "listen_addresses=", "-c", fmt::format("port={}", kPort), "-c", "jit=off", "-c",
                    "fsync=on", "-c", "max_connections=50", "-c", "shared_buffers=16MB",
                    // after a crash, one syncfs() of the file system instead of an fsync() of
                    // every file of data/: crash recovery in 2 s instead of 6
                    "-c", "recovery_init_sync_method=syncfs"},
                   childEnv(dir_), dir_, log, uid_, gid_);
  if (!pid.ok()) return pid.status();
  pid_ = *pid;
  const std::string ping = conninfo() + " connect_timeout=2";
  const auto deadline = Clock::now() + kStartTimeout;
  for (;;) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(
          fmt::format("postgres exited ({}) before accepting connections. {}",
                      describeWaitStatus(status), logTail(log)));
    }
    if (PQping(ping.c_str()) == PQPING_OK) return absl::OkStatus();
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  absl::Status killed = killHard();
  return absl::DeadlineExceededError(fmt::format(
      "postgres did not accept connections within {} s; killed{}. {}", kStartTimeout.count(),
      killed.ok() ? "" : " (" + killed.ToString() + ")", logTail(log)));
}

absl::Status TempPostgres::stop() {
  if (pid_ <= 0) return absl::OkStatus();
  if (kill(pid_, SIGINT) != 0) {
    return absl::InternalError(fmt::format("kill {} SIGINT: {}", pid_, errnoText(errno)));
  }
  if (auto status = waitExit(pid_, kStopTimeout)) {
    pid_ = -1;
    return absl::OkStatus();
  }
  absl::Status killed = killHard();
  return absl::DeadlineExceededError(fmt::format(
      "postgres did not stop within {} s of SIGINT; killed{}. {}", kStopTimeout.count(),
      killed.ok() ? "" : " (" + killed.ToString() + ")", logTail(dir_ + "/postgres.log")));
}

absl::Status TempPostgres::restart() {
  if (auto s = stop(); !s.ok()) return s;
  return launch();
}

absl::Status TempPostgres::kill9() {
  if (pid_ <= 0) return absl::FailedPreconditionError("kill9: the server is not running");
  return killHard();
}

absl::Status TempPostgres::killHard() {
  const pid_t pm = pid_;
  const auto deadline = Clock::now() + kStopTimeout;
  // Stopped, the postmaster forks no more server processes, and it reaps none: the pids of
  // its children stay theirs until it dies.
  if (kill(pm, SIGSTOP) != 0) {
    return absl::InternalError(fmt::format("kill {} SIGSTOP: {}", pm, errnoText(errno)));
  }
  bool exited = false;
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pm, &status, WNOHANG | WUNTRACED);
    if (r == pm && WIFSTOPPED(status)) break;
    if (r == pm || (r < 0 && errno == ECHILD)) {
      exited = true;  // it exited meanwhile (reaped now)
      break;
    }
    if (Clock::now() >= deadline) break;  // kill it anyway, below
    std::this_thread::sleep_for(milliseconds(1));
  }
  auto children = exited ? decltype(childrenOf(pm)){} : childrenOf(pm);
  for (const auto& [child, start_time] : children) {
    if (!gone(child, start_time)) kill(child, SIGKILL);
  }
  if (!exited) {
    kill(pm, SIGKILL);
    if (!waitExit(pm, deadline - Clock::now() + seconds(1))) {
      return absl::InternalError(fmt::format("postgres {} survives SIGKILL", pm));
    }
  }
  pid_ = -1;
  for (;;) {
    std::vector<pid_t> left;
    for (const auto& [child, start_time] : children) {
      if (!gone(child, start_time)) left.push_back(child);
    }
    if (left.empty()) return absl::OkStatus();
    if (Clock::now() >= deadline) {
      return absl::DeadlineExceededError(fmt::format(
          "server processes {} of postgres {} survive SIGKILL", fmt::join(left, ", "), pm));
    }
    std::this_thread::sleep_for(kPoll);
  }
}

}  // namespace bulkhead::controller::testing
