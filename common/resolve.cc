#include "common/resolve.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>

#include "absl/status/status.h"
#include "common/format.h"

namespace bulkhead {

absl::StatusOr<std::vector<std::string>> resolveHost(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &result);
  if (rc != 0) {
    return absl::NotFoundError(fmt::format("cannot resolve \"{}\": {}", host, gai_strerror(rc)));
  }
  std::vector<std::string> out;
  for (addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    char buf[INET6_ADDRSTRLEN] = {};
    const void* src = nullptr;
    if (ai->ai_family == AF_INET) {
      src = &reinterpret_cast<const sockaddr_in*>(ai->ai_addr)->sin_addr;
    } else if (ai->ai_family == AF_INET6) {
      src = &reinterpret_cast<const sockaddr_in6*>(ai->ai_addr)->sin6_addr;
    } else {
      continue;
    }
    if (inet_ntop(ai->ai_family, src, buf, sizeof buf) == nullptr) continue;
    std::string ip = buf;
    if (std::find(out.begin(), out.end(), ip) == out.end()) out.push_back(std::move(ip));
  }
  ::freeaddrinfo(result);
  if (out.empty()) {
    return absl::NotFoundError(fmt::format("cannot resolve \"{}\": no IP addresses", host));
  }
  return out;
}

}  // namespace bulkhead
