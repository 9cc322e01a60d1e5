// Hand fakes of the process seams (ProcFs, ProcessSignaller) over one simulated process
// table, and a FlowKiller that records its cut. Every call the process actions make lands in
// one event log, so tests check the order of stop, re-scan, record, cut and kill.
#pragma once

#include <fmt/format.h>

#include <csignal>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "agent/linux/flow_killer.h"
#include "agent/linux/proc_fs.h"
#include "agent/linux/process_signaller.h"

namespace bulkhead::agent {

// The simulated host: processes by pid, which are stopped, and the event log.
struct FakeHost {
  std::map<int, ProcessInfo> procs;
  std::set<int> stopped;
  std::vector<std::string> events;
  // Runs once, on the first SIGSTOP (e.g. a fork in flight that the re-scan must find).
  std::function<void(FakeHost&)> on_first_stop;

  ProcessInfo& add(int pid, int ppid, uint32_t sessionid, const std::string& comm) {
    ProcessInfo p;
    p.pid = pid;
    p.ppid = ppid;
    p.sessionid = sessionid;
    p.start_ticks = 1000 + static_cast<uint64_t>(pid);
    p.comm = comm;
    p.cmdline = comm;
    p.exe = "/usr/bin/" + comm;
    p.user = "alice";
    p.uid = 1000;
    return procs[pid] = p;
  }
};

class FakeProcFs final : public ProcFs {
 public:
  explicit FakeProcFs(FakeHost* host) : host_(host) {}
  absl::StatusOr<std::vector<ProcessInfo>> scan(bool with_sockets) override {
    host_->events.emplace_back(with_sockets ? "scan+sockets" : "scan");
    std::vector<ProcessInfo> out;
    for (const auto& [pid, p] : host_->procs) out.push_back(p);
    return out;
  }
  std::optional<ProcessInfo> read(int pid, bool) override {
    auto it = host_->procs.find(pid);
    if (it == host_->procs.end()) return std::nullopt;
    return it->second;
  }
  std::optional<char> state(int pid) override {
    if (!host_->procs.count(pid)) return std::nullopt;
    return host_->stopped.count(pid) ? 'T' : 'S';
  }
  std::vector<ProcNetSocket> tcpSockets() override {
    host_->events.emplace_back("record tcp");
    return {};
  }
  absl::StatusOr<std::string> exeSha256(int pid) override {
    host_->events.emplace_back(fmt::format("record {}", pid));
    return std::string(64, 'a');
  }
  std::optional<uint32_t> uidOfUser(const std::string& name) override {
    if (name == "alice") return 1000;
    return std::nullopt;
  }

 private:
  FakeHost* host_;
};

// Handles are pids; a pid is pinned only while its process exists.
class FakeSignaller final : public ProcessSignaller {
 public:
  explicit FakeSignaller(FakeHost* host) : host_(host) {}
  absl::StatusOr<int> pin(int pid) override {
    if (!host_->procs.count(pid)) return absl::NotFoundError("already exited");
    return pid;
  }
  void release(int) override {}
  absl::Status signal(int handle, int sig) override {
    if (!host_->procs.count(handle)) return absl::OkStatus();
    if (sig == SIGSTOP) {
      host_->events.emplace_back(fmt::format("stop {}", handle));
      host_->stopped.insert(handle);
      if (auto hook = std::exchange(host_->on_first_stop, nullptr)) hook(*host_);
    } else if (sig == SIGKILL) {
      host_->events.emplace_back(fmt::format("kill {}", handle));
      host_->procs.erase(handle);
      host_->stopped.erase(handle);
    }
    return absl::OkStatus();
  }
  bool exited(int handle) override { return !host_->procs.count(handle); }

 private:
  FakeHost* host_;
};

// Cuts the flows of `flows` its selector picks, logging "cut" and each cut owner pid.
class RecordingFlowKiller final : public FlowKiller {
 public:
  RecordingFlowKiller(FakeHost* host, std::vector<Flow> flows)
      : host_(host), flows_(std::move(flows)) {}
  absl::StatusOr<CutReport> cut(const FlowSelector& selector, bool dry_run) override {
    host_->events.emplace_back(dry_run ? "cut (dry run)" : "cut");
    CutReport r;
    for (const Flow& f : flows_) {
      if (selector(f)) {
        host_->events.emplace_back(fmt::format("cut flow of {}", f.owner_pid));
        r.sockets_destroyed.push_back(f);
      } else {
        r.sockets_kept.push_back(f);
      }
    }
    return r;
  }

 private:
  FakeHost* host_;
  std::vector<Flow> flows_;
};

}  // namespace bulkhead::agent
