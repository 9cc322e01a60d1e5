// Processes and login sessions, as pure data: parsers of /proc text, grouping of processes
// into audit sessions, and the protection decisions of kill-sessions / kill-process. No
// syscalls here: agent/linux/proc_scan reads /proc and agent/linux/process_killer signals.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/parse.h"

namespace bulkhead::agent {

// /proc/PID/sessionid and loginuid hold this when unset ((uint32_t)-1).
inline constexpr uint32_t kNoAuditId = 4294967295u;

// The fields of /proc/PID/stat we use. The comm (field 2) may hold spaces and parentheses:
// it is everything between the first '(' and the last ')'.
struct ProcStat {
  int pid = 0;
  std::string comm;
  char state = '?';
  int ppid = 0;
  int sid = 0;               // POSIX session (setsid changes it; the audit session stays)
  int tty_nr = 0;            // dev_t of the controlling terminal, 0 = none
  uint64_t start_ticks = 0;  // since boot, in clock ticks: with the pid, a process identity
};
absl::StatusOr<ProcStat> parseProcStat(std::string_view text);

// The fields of /proc/PID/status we use; each left unset (-1, nullopt) when its line is
// missing or does not parse.
struct ProcStatus {
  int tgid = -1;
  int ppid = -1;
  int threads = -1;
  std::optional<uint32_t> uid;   // real
  std::optional<uint32_t> euid;  // effective
  std::optional<uint32_t> gid;   // real
};
ProcStatus parseProcStatus(std::string_view text);

// The real uid from the "Uid:" line of /proc/PID/status.
absl::StatusOr<uint32_t> parseStatusUid(std::string_view text);

// /proc/PID/loginuid or sessionid: a decimal number (kNoAuditId when unset).
absl::StatusOr<uint32_t> parseAuditId(std::string_view field, std::string_view text);

// /proc/PID/cmdline: NUL-separated arguments joined with spaces (trailing NUL dropped).
std::string joinCmdline(std::string_view raw);

// "pts/3", "tty1", "ttyS0" from a tty_nr; "" for none; "tty(136:3)" when unknown.
std::string ttyName(int tty_nr);

// One TCP socket of /proc/net/tcp or tcp6 (the text of one line after the header).
struct ProcNetSocket {
  std::string local;    // "10.77.0.12:22", "[fd77::12]:22"
  std::string remote;
  std::string remote_ip;
  int state = 0;        // 1 = ESTABLISHED, 10 = LISTEN
  uint64_t inode = 0;
};
// Parses a whole /proc/net/tcp or tcp6 file (`v6` selects the address width); lines that do
// not parse are skipped.
std::vector<ProcNetSocket> parseProcNetTcp(std::string_view text, bool v6);

// What the agent knows of one process.
struct ProcessInfo {
  int pid = 0;
  int ppid = 0;
  uint64_t start_ticks = 0;
  uint32_t uid = 0;
  uint32_t loginuid = kNoAuditId;
  uint32_t sessionid = kNoAuditId;
  std::string user;      // name of uid ("" if unknown)
  std::string comm;
  std::string cmdline;   // "" for kernel threads
  std::string exe;       // readlink of /proc/PID/exe ("" if unreadable); may end " (deleted)"
  int tty_nr = 0;
  int64_t start_unix = 0;
  std::vector<uint64_t> socket_inodes;   // socket:[N] among its fds
  bool kernel_thread = false;
};

struct SessionInfo {
  uint32_t id = kNoAuditId;
  uint32_t loginuid = kNoAuditId;
  std::string user;
  std::string tty;        // first controlling terminal among its processes, "" for none
  std::string remote;     // remote IP of an established TCP socket held by its sshd, else any
  std::string service;    // "sshd" when an sshd process belongs to it, else the leader's comm
  int leader_pid = 0;     // the oldest process of the session
  int64_t start_unix = 0;
  std::vector<int> pids;  // ascending
  // Remote (ssh) or with a terminal: what --all ends.
  bool interactive() const { return !remote.empty() || !tty.empty(); }
};

// Groups processes by audit session id (kNoAuditId excluded), ordered by id. `sockets` (from
// /proc/net/tcp*) give the remote address through the processes' socket inodes.
std::vector<SessionInfo> groupSessions(const std::vector<ProcessInfo>& procs,
                                       const std::vector<ProcNetSocket>& sockets);

// `root` and every process below it (by ppid), root first.
std::vector<int> withDescendants(const std::vector<ProcessInfo>& procs, int root);

// Processes never killed: pid 1, the agent itself, and a configured list.
struct Protection {
  int self_pid = 0;
  std::vector<std::string> exes;    // exact exe paths
  std::vector<std::string> comms;   // exact comm names (e.g. "sshd" spares the listener only;
                                    // see protectSshdListener)
  bool sshd_listener = true;        // spare sshd processes whose parent is pid 1 or none
};
// Why `p` is protected, or nullopt.
std::optional<std::string> protectedBecause(const ProcessInfo& p, const Protection& protection);

struct SparedProcess {
  ProcessInfo process;
  std::string why;
};
struct KillPlan {
  std::vector<ProcessInfo> kill;
  std::vector<SparedProcess> spared;
};
// Splits `targets` (kernel threads are always skipped) into what may be killed and what is
// spared. A plan with nothing to kill and something spared must be refused by the caller.
KillPlan planKill(const std::vector<ProcessInfo>& targets, const Protection& protection);

// Which sessions a kill-sessions request selects. Exactly one criterion must be set.
struct SessionMatch {
  std::optional<uint32_t> uid;
  std::optional<uint32_t> session_id;
  std::optional<Cidr> from;
  bool all = false;
};
bool sessionMatches(const SessionInfo& s, const SessionMatch& m);

// One session as logind (org.freedesktop.login1) describes it. Its id is the audit session id
// where the kernel has audit, so /proc/PID/sessionid finds every process of it, including
// those that left the session's scope.
struct LogindSession {
  std::string id;
  uint32_t uid = kNoAuditId;
  std::string user;
  std::string tty;
  std::string remote_host;
  std::string service;    // "sshd", "login", ...
  int leader = 0;
};

// `loginctl show-session ID -p Id -p User -p Name -p TTY -p RemoteHost -p Service -p Leader`
// output (Key=Value lines).
absl::StatusOr<LogindSession> parseLoginctlShow(std::string_view text);

// `loginctl list-sessions --no-legend` output: the session ids (first column).
std::vector<std::string> parseLoginctlList(std::string_view text);

// Sessions as logind lists them, with the pids (and start time, when logind gives none) from
// the /proc grouping `from_proc` under the same id. logind's tty, remote host and service win;
// a logind session whose id is not numeric keeps id kNoAuditId and no pids (it cannot be
// killed by audit id). /proc sessions unknown to logind (daemons with an audit id) are kept.
std::vector<SessionInfo> mergeLogindSessions(const std::vector<LogindSession>& logind,
                                             const std::vector<SessionInfo>& from_proc);

}  // namespace bulkhead::agent
