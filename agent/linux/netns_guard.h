// Safety rail: is this process in the machine's initial network namespace?
//
// The agent rewrites nftables and destroys sockets. On a developer machine or CI runner that
// must only ever happen inside throw-away network namespaces (the lab). So enforcement is
// refused in the initial network namespace unless --allow-root-netns is given (a real host's
// unit file passes it), and also refused when the answer cannot be established.
//
// How the initial namespace is recognised (all work from inside a child PID namespace with its
// own /proc, where /proc/1 is the lab holder and tells nothing about the host):
//  1. Some net sysctls exist only in init_net (net.core.netdev_max_backlog, message_cost,
//     devconf_inherit_init_net...). /proc/sys/net always shows the *reader's* network
//     namespace, whatever PID namespace /proc was mounted for. Present => initial;
//     /proc/sys/net/core readable but they are absent => not initial.
//  2. Kernels that give init_net the fixed inode 0xEFFFFFF9 (PROC_NET_INIT_INO): equal =>
//     initial. (Dynamic namespace inodes start at 0xF0000000, so this never misfires.)
//  3. In the initial PID namespace (fixed inode 0xEFFFFFFC) /proc/1 is the real init: same
//     network namespace as PID 1 => initial.
// Any "initial" signal wins; if none of 1-3 can be evaluated, the verdict is unknown.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace bulkhead::agent {

enum class NetnsVerdict { kInitial, kNotInitial, kUnknown };

inline constexpr uint64_t kInitNetnsInode = 0xEFFFFFF9ULL;
inline constexpr uint64_t kInitPidnsInode = 0xEFFFFFFCULL;

// What was read from /proc; 0 means "could not read".
struct NetnsProbe {
  bool proc_sys_net_core_readable = false;
  bool init_only_sysctl_present = false;
  uint64_t self_netns_inode = 0;
  uint64_t self_pidns_inode = 0;
  uint64_t pid1_netns_inode = 0;
};

struct NetnsReport {
  NetnsVerdict verdict = NetnsVerdict::kUnknown;
  std::string evidence;   // one line, for logs and errors
};

// Pure decision from a probe.
NetnsReport classifyNetns(const NetnsProbe& probe);

// Reads the probe from /proc.
NetnsProbe probeNetns();

// OK when enforcement may touch the kernel: not the initial namespace, or explicitly allowed.
// FailedPrecondition otherwise, saying why and naming --allow-root-netns.
absl::Status checkEnforcementAllowed(const NetnsReport& report, bool allow_root_netns);

}  // namespace bulkhead::agent
