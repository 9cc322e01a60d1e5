#include "agent/daemon/kill_connections.h"

#include <sys/socket.h>

#include <algorithm>

#include "agent/daemon/reconciler.h"
#include "agent/linux/proc_files.h"
#include "common/format.h"
#include "common/parse.h"

namespace bulkhead::agent {

namespace v1 = bulkhead::v1;

v1::CommandResult killConnections(FlowKiller& killer, const v1::Command& command) {
  v1::CommandResult r;
  r.set_command_id(command.id());
  const auto& k = command.kill_connections();
  auto cidr = parseCidr("remote_cidr", k.remote_cidr());
  if (!cidr.ok()) {
    r.set_refused(true);
    r.set_error(std::string(cidr.status().message()));
    return r;
  }
  uint32_t lo = k.ports().first(), hi = k.ports().last();
  if (lo == 0 && hi == 0) hi = 65535;
  if (lo > hi || hi > 65535) {
    r.set_refused(true);
    r.set_error(fmt::format("ports: invalid value \"{}-{}\": must be FIRST <= LAST <= 65535",
                            k.ports().first(), k.ports().last()));
    return r;
  }
  auto inCidr = [&](int family, const std::array<uint8_t, 16>& a) {
    Cidr c;
    c.family = family;
    c.addr = a;
    if (family == AF_INET) std::fill(c.addr.begin() + 4, c.addr.end(), 0);
    c.prefix_len = family == AF_INET ? 32 : 128;
    return cidr->contains(c);
  };
  auto portOk = [&](uint16_t p) { return p >= lo && p <= hi; };
  auto selector = [&](const Flow& f) {
    const bool addr = inCidr(f.family, f.remote_addr) || (f.forwarded && inCidr(f.family, f.local_addr));
    return addr && (portOk(f.local_port) || portOk(f.remote_port));
  };
  auto cut = killer.cut(selector, /*dry_run=*/false);
  if (!cut.ok()) {
    r.set_error(fmt::format("connections could not be listed or cut: {}", cut.status()));
    return r;
  }
  v1::KillConnectionsResult& out = *r.mutable_kill_connections();
  auto add = [&](const Flow& f, v1::CutMethod how) {
    v1::FlowRecord rec = toFlowRecord(f);
    v1::CutConnection& c = *out.add_connections();
    c.set_proto(f.proto == FlowProto::kUdp ? v1::PROTOCOL_UDP : v1::PROTOCOL_TCP);
    c.set_local(rec.local_ip());
    c.set_local_port(rec.local_port());
    c.set_remote(rec.remote_ip());
    c.set_remote_port(rec.remote_port());
    c.set_pid(rec.pid());
    c.set_forwarded(rec.forwarded());
    c.set_how(how);
  };
  for (const auto& f : cut->sockets_destroyed) add(f, v1::CUT_METHOD_SOCKET_DESTROYED);
  for (const auto& f : cut->conntrack_deleted) add(f, v1::CUT_METHOD_CONNTRACK_DELETED);
  out.set_connections_cut(static_cast<uint32_t>(out.connections_size()));
  for (const auto& e : cut->errors) out.add_errors(proc::utf8(e));
  r.set_ok(cut->errors.empty());
  if (!cut->errors.empty()) r.set_error(fmt::format("{}", fmt::join(cut->errors, "; ")));
  return r;
}

}  // namespace bulkhead::agent
