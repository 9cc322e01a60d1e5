#include "agent/linux/netns_guard.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

namespace bulkhead::agent {
namespace {

uint64_t nsInode(const char* path) {
  struct stat st {};
  if (::stat(path, &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_ino);
}

}  // namespace

NetnsReport classifyNetns(const NetnsProbe& p) {
  if (p.proc_sys_net_core_readable && p.init_only_sysctl_present) {
    return {NetnsVerdict::kInitial,
            "init_net-only sysctls (net.core.netdev_max_backlog) are visible"};
  }
  if (p.self_netns_inode == kInitNetnsInode) {
    return {NetnsVerdict::kInitial,
            fmt::format("network namespace inode {} is the kernel's init_net inode",
                        p.self_netns_inode)};
  }
  if (p.self_pidns_inode == kInitPidnsInode && p.pid1_netns_inode != 0 &&
      p.pid1_netns_inode == p.self_netns_inode) {
    return {NetnsVerdict::kInitial,
            fmt::format("same network namespace as PID 1 of the initial PID namespace ({})",
                        p.self_netns_inode)};
  }
  if (p.proc_sys_net_core_readable) {
    return {NetnsVerdict::kNotInitial,
            fmt::format("network namespace {} lacks init_net-only sysctls", p.self_netns_inode)};
  }
  if (p.self_pidns_inode == kInitPidnsInode && p.pid1_netns_inode != 0 &&
      p.self_netns_inode != 0) {
    return {NetnsVerdict::kNotInitial,
            fmt::format("network namespace {} differs from PID 1's ({})", p.self_netns_inode,
                        p.pid1_netns_inode)};
  }
  return {NetnsVerdict::kUnknown,
          "cannot tell whether this is the initial network namespace (/proc/sys/net/core and "
          "/proc/1/ns/net unreadable)"};
}

NetnsProbe probeNetns() {
  NetnsProbe p;
  p.proc_sys_net_core_readable = ::access("/proc/sys/net/core/somaxconn", F_OK) == 0;
  for (const char* f : {"/proc/sys/net/core/netdev_max_backlog", "/proc/sys/net/core/message_cost",
                        "/proc/sys/net/core/devconf_inherit_init_net"}) {
    if (::access(f, F_OK) == 0) p.init_only_sysctl_present = true;
  }
  p.self_netns_inode = nsInode("/proc/self/ns/net");
  p.self_pidns_inode = nsInode("/proc/self/ns/pid");
  p.pid1_netns_inode = nsInode("/proc/1/ns/net");
  return p;
}

absl::Status checkEnforcementAllowed(const NetnsReport& report, bool allow_root_netns) {
  if (report.verdict == NetnsVerdict::kNotInitial || allow_root_netns) return absl::OkStatus();
  const char* what = report.verdict == NetnsVerdict::kInitial
                         ? "this process runs in the machine's initial network namespace"
                         : "the network namespace could not be identified";
  return absl::FailedPreconditionError(
      fmt::format("refusing to enforce: {} ({}); pass --allow-root-netns on a real host", what,
                  report.evidence));
}

}  // namespace bulkhead::agent
