// Reads processes and login sessions from /proc (the PID namespace /proc was mounted for), and
// resolves user names. The pure parsing lives in agent/core/processes.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/core/processes.h"
#include "agent/linux/proc_fs.h"

namespace bulkhead::agent {

// Every process of /proc (kernel threads marked). Processes that exit while being read are
// skipped. `with_sockets` fills socket_inodes (one readlink per open fd).
absl::StatusOr<std::vector<ProcessInfo>> scanProcesses(bool with_sockets);

// One process, or nullopt when it is gone (or unreadable).
std::optional<ProcessInfo> readProcess(int pid, bool with_sockets);

// The state letter of /proc/PID/stat, or nullopt when it is gone.
std::optional<char> readProcessState(int pid);

// /proc/net/tcp and tcp6 of the calling thread's network namespace.
std::vector<ProcNetSocket> readTcpSockets();

// Lower-case hex SHA-256 of a file (e.g. /proc/PID/exe, which works even if the binary was
// deleted from disk).
absl::StatusOr<std::string> sha256OfFile(const std::string& path);

// User name <-> uid through NSS (getpwnam_r / getpwuid_r).
std::optional<uint32_t> uidOfUser(const std::string& name);
// The name, "<uid>" when it has none; names found are cached for the process's lifetime.
std::string userOfUid(uint32_t uid);
// The name, or nullopt when the uid has none (not cached).
std::optional<std::string> userNameOfUid(uint32_t uid);

// ProcFs on the /proc of the agent's PID namespace and the network namespace of the calling
// thread (the functions above). Stateless.
class LinuxProcFs final : public ProcFs {
 public:
  absl::StatusOr<std::vector<ProcessInfo>> scan(bool with_sockets) override {
    return scanProcesses(with_sockets);
  }
  std::optional<ProcessInfo> read(int pid, bool with_sockets) override {
    return readProcess(pid, with_sockets);
  }
  std::optional<char> state(int pid) override { return readProcessState(pid); }
  std::vector<ProcNetSocket> tcpSockets() override { return readTcpSockets(); }
  absl::StatusOr<std::string> exeSha256(int pid) override;
  std::optional<uint32_t> uidOfUser(const std::string& name) override {
    return agent::uidOfUser(name);
  }
};

// Where session listings come from. The /proc source works everywhere (audit session ids are
// set by pam_loginuid); a logind source would ask org.freedesktop.login1 where a system bus
// exists. Sessions carry the pids to kill either way: the kill itself always goes by audit
// session id through /proc, so children that left the logind scope are not missed.
class SessionSource {
 public:
  virtual ~SessionSource() = default;
  virtual std::string name() const = 0;   // "proc" | "logind"
  virtual absl::StatusOr<std::vector<SessionInfo>> sessions() = 0;
};

// Sessions grouped by audit session id from the processes and TCP sockets `procfs` reads.
class ProcSessionSource final : public SessionSource {
 public:
  // `procfs` must outlive this object.
  explicit ProcSessionSource(ProcFs* procfs) : procfs_(procfs) {}
  std::string name() const override { return "proc"; }
  absl::StatusOr<std::vector<SessionInfo>> sessions() override;

 private:
  ProcFs* procfs_;
};

// Runs `loginctl ARGS...` and returns its standard output; an error when loginctl is missing,
// fails (no system bus, no logind) or runs over its time limit.
class LoginctlRunner {
 public:
  virtual ~LoginctlRunner() = default;
  virtual absl::StatusOr<std::string> run(const std::vector<std::string>& args) = 0;
};

// The real runner: /usr/bin/loginctl (or /bin/loginctl) with a 3 s limit, stdin closed.
class ExecLoginctlRunner final : public LoginctlRunner {
 public:
  absl::StatusOr<std::string> run(const std::vector<std::string>& args) override;
};

// True where logind may answer: /run/systemd/seats exists (systemd-logind's runtime dir).
bool logindLikelyPresent();

// Sessions from logind (tty, remote host, service as logind knows them), with their processes
// from /proc by audit session id. When logind cannot be asked, falls back to `fallback` (the
// /proc source); name() then says "proc".
class LogindSessionSource final : public SessionSource {
 public:
  // Both must outlive this object.
  LogindSessionSource(LoginctlRunner* runner, SessionSource* fallback)
      : runner_(runner), fallback_(fallback) {}
  std::string name() const override { return last_; }
  absl::StatusOr<std::vector<SessionInfo>> sessions() override;

 private:
  LoginctlRunner* runner_;
  SessionSource* fallback_;
  std::string last_ = "logind";
};

}  // namespace bulkhead::agent
