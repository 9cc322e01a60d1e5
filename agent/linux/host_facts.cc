#include "agent/linux/host_facts.h"

#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

namespace bulkhead::agent {
namespace {

int prefixLength(const sockaddr* mask) {
  if (mask == nullptr) return 0;
  const uint8_t* bytes = nullptr;
  size_t n = 0;
  if (mask->sa_family == AF_INET) {
    bytes = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in*>(mask)->sin_addr);
    n = 4;
  } else if (mask->sa_family == AF_INET6) {
    bytes =
        reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in6*>(mask)->sin6_addr);
    n = 16;
  } else {
    return 0;
  }
  int len = 0;
  for (size_t i = 0; i < n; ++i) len += __builtin_popcount(bytes[i]);
  return len;
}

std::string slurp(const char* path) {
  std::ifstream in(path);
  if (!in) return "";
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

HostFacts collectHostFacts() {
  HostFacts f;
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) == 0) f.hostname = host;

  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) == 0) {
    for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
      if (i->ifa_addr == nullptr) continue;
      int family = i->ifa_addr->sa_family;
      if (family != AF_INET && family != AF_INET6) continue;
      InterfaceAddress a;
      a.ifname = i->ifa_name ? i->ifa_name : "";
      a.family = family;
      a.loopback_interface = (i->ifa_flags & IFF_LOOPBACK) != 0;
      if (family == AF_INET) {
        std::memcpy(a.addr.data(), &reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr, 4);
      } else {
        std::memcpy(a.addr.data(), &reinterpret_cast<const sockaddr_in6*>(i->ifa_addr)->sin6_addr,
                    16);
      }
      a.prefix_len = prefixLength(i->ifa_netmask);
      f.addresses.push_back(a);
    }
    ::freeifaddrs(list);
  }

  f.os_release = slurp("/etc/os-release");
  if (f.os_release.empty()) f.os_release = slurp("/usr/lib/os-release");
  utsname u{};
  if (::uname(&u) == 0) f.kernel_release = u.release;
  return f;
}

}  // namespace bulkhead::agent
