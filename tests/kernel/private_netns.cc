// enterPrivateNetns(): unshare(CLONE_NEWNET), verify, bring up lo.
#include "tests/kernel/private_netns.h"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace bulkhead::test {
namespace {

std::string g_skip_reason;

std::string netnsLink() {
  char buf[128] = {};
  ssize_t n = readlink("/proc/self/ns/net", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

bool bringUpLoopback() {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  bool ok = ioctl(fd, SIOCGIFFLAGS, &ifr) == 0;
  if (ok) {
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
    ok = ioctl(fd, SIOCSIFFLAGS, &ifr) == 0;
  }
  close(fd);
  return ok;
}

}  // namespace

const std::string& privateNetnsSkipReason() { return g_skip_reason; }

bool enterPrivateNetns() {
  if (geteuid() != 0) {
    // Without root we cannot unshare; nothing touches the kernel's firewall then.
    g_skip_reason = "kernel tests need root (they run in a private network namespace)";
    return true;
  }
  const std::string before = netnsLink();
  if (before.empty() || unshare(CLONE_NEWNET) != 0) {
    std::fprintf(stderr,
                 "REFUSING TO RUN: cannot create a private network namespace (%s); these "
                 "tests change nftables and destroy sockets and must never run in the "
                 "machine's own namespace\n",
                 std::strerror(errno));
    return false;
  }
  const std::string after = netnsLink();
  if (after.empty() || after == before) {
    std::fprintf(stderr,
                 "REFUSING TO RUN: still in network namespace %s after unshare(CLONE_NEWNET)\n",
                 before.c_str());
    return false;
  }
  if (!bringUpLoopback()) {
    std::fprintf(stderr, "REFUSING TO RUN: cannot bring up lo in %s: %s\n", after.c_str(),
                 std::strerror(errno));
    return false;
  }
  return true;
}

}  // namespace bulkhead::test
