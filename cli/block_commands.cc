// `bulkhead block`, `unblock` and `blocks`: drop traffic to/from a remote CIDR on hosts or on
// the whole fleet (with expiry), remove it, and list what is in force.
#include <ostream>

#include <fmt/format.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/operator_client.h"
#include "cli/output.h"
#include "common/format.h"
#include "common/parse.h"
#include "common/text.h"

namespace po = boost::program_options;

namespace bulkhead::cli {
namespace {

struct BlockArgs {
  std::string cidr;
  std::vector<std::string> hosts;   // positional after the CIDR
  std::string selector;
  bool all = false;
  std::string port;
  std::string proto = "any";
  std::string direction = "both";
  std::string reason;
  std::string wait = "5s";
  bool yes = false;
};

void addBlockOptions(po::options_description& opts, BlockArgs& a) {
  opts.add_options()
      ("cidr", po::value(&a.cidr), "remote address or CIDR, IPv4 or IPv6 (positional, first)")
      ("host", po::value(&a.hosts)->composing(), "host id (positional, repeatable)")
      ("selector", po::value(&a.selector), "all hosts with these labels (k=v[,k=v])")
      ("all", po::bool_switch(&a.all), "every host, including hosts that join later")
      ("port", po::value(&a.port), "one port 1-65535 (default: any)")
      ("proto", po::value(&a.proto), "tcp, udp or any (default any)")
      ("direction", po::value(&a.direction),
       "in (drop packets from the remote), out (drop packets to it) or both (default); "
       "stateless: without --port, `in` also drops the replies to this host's own "
       "connections to the remote")
      ("reason", po::value(&a.reason), "why (incident or ticket); required, audited")
      ("wait", po::value(&a.wait), "how long to wait for the agents' acknowledgements")
      ("yes", po::bool_switch(&a.yes), "confirm a wide prefix or a selector matching many hosts");
}

// Fills the match fields of a Block/Unblock request; prints one line and returns false on
// bad input.
template <typename Req>
bool fillMatch(const std::string& command, const BlockArgs& a, Req& req, Io& io) {
  auto bad = [&](const std::string& msg) {
    io.err << "bulkhead " << command << ": " << msg << "\n";
    return false;
  };
  if (a.cidr.empty()) return bad("CIDR: required (e.g. 203.0.113.7 or 2001:db8::/64)");
  auto c = parseCidr("CIDR", a.cidr);
  if (!c.ok()) return bad(std::string(c.status().message()));
  const int targets = (a.hosts.empty() ? 0 : 1) + (a.selector.empty() ? 0 : 1) + (a.all ? 1 : 0);
  if (targets != 1) return bad("give host ids, --selector or --all (exactly one of them)");
  if (!a.selector.empty()) {
    if (auto s = parseSelector("--selector", a.selector); !s.ok()) {
      return bad(std::string(s.status().message()));
    }
  }
  if (!a.port.empty()) {
    auto p = parsePort("--port", a.port);
    if (!p.ok()) return bad(std::string(p.status().message()));
    req.mutable_match()->set_port(*p);
  }
  if (a.proto == "tcp") {
    req.mutable_match()->set_protocol(v1::PROTOCOL_TCP);
  } else if (a.proto == "udp") {
    req.mutable_match()->set_protocol(v1::PROTOCOL_UDP);
  } else if (a.proto == "any") {
    req.mutable_match()->set_protocol(v1::PROTOCOL_ANY);
  } else {
    return bad(fmt::format("--proto: invalid value \"{}\": use tcp, udp or any", a.proto));
  }
  if (a.direction == "in") {
    req.mutable_match()->set_direction(v1::DIRECTION_IN);
  } else if (a.direction == "out") {
    req.mutable_match()->set_direction(v1::DIRECTION_OUT);
  } else if (a.direction == "both") {
    req.mutable_match()->set_direction(v1::DIRECTION_BOTH);
  } else {
    return bad(fmt::format("--direction: invalid value \"{}\": use in, out or both", a.direction));
  }
  if (a.reason.empty()) return bad("--reason: required (an incident or ticket id)");
  req.mutable_match()->set_remote_cidr(a.cidr);
  *req.mutable_targets() = targetsOf(a.hosts, a.selector, a.all);
  req.set_reason(a.reason);
  req.set_yes(a.yes);
  auto wait = parseDuration("--wait", a.wait);
  if (!wait.ok()) return bad(std::string(wait.status().message()));
  req.set_wait_ms(static_cast<uint32_t>(wait->count()));
  return true;
}

// One row per host; 0 when every host enforced, else 1.
int printBlockOutcomes(const GlobalOptions& g, const std::string& what,
                       const v1::ContainmentResponse& resp, Io& io) {
  bool all_done = true;
  for (const auto& o : resp.outcomes()) all_done &= o.state() == v1::HostOutcome::STATE_ENFORCED;
  if (g.json) {
    printJson(io.out, resp);
    return all_done ? kOk : kFailed;
  }
  if (resp.outcomes_size() == 0) {
    io.out << what << ": no host yet; hosts that join get it\n";
    return kOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"HOST", "RESULT", "GENERATION", "FLOWS CUT", "DETAIL"}};
  for (const auto& o : resp.outcomes()) {
    const auto& rep = o.report();
    std::string detail;
    std::string cut = "-";
    if (o.state() == v1::HostOutcome::STATE_ENFORCED) {
      cut = std::to_string(rep.flows_cut());
      detail = rep.ruleset_hash().empty()
                   ? std::string("table removed")
                   : fmt::format("ruleset {}", rep.ruleset_hash().substr(0, 12));
    } else if (o.state() == v1::HostOutcome::STATE_PENDING) {
      detail = o.error().empty() ? "offline: will apply on reconnect" : o.error();
    } else {
      detail = o.error().empty() ? rep.error() : o.error();
    }
    rows.push_back(
        {o.host_id(), enumText(o.state()), std::to_string(o.generation()), cut, detail});
  }
  std::vector<std::string> tenants;
  for (const auto& o : resp.outcomes()) tenants.push_back(o.tenant());
  addTenantColumn(rows, 1, tenants);
  io.out << what << "\n";
  printTable(io.out, rows);
  return all_done ? kOk : kFailed;
}

template <typename Req, typename Call>
int runBlockCommand(const std::string& command, bool with_ttl, const GlobalOptions& g,
                    const std::vector<std::string>& args, Io& io, Call call) {
  BlockArgs a;
  std::string ttl;
  po::options_description opts(command + " CIDR (HOST...|--selector k=v|--all)");
  addBlockOptions(opts, a);
  if (with_ttl) {
    opts.add_options()("ttl", po::value(&ttl), "expire after this long (e.g. 3s, 30m, 1d)");
  }
  po::positional_options_description pos;
  pos.add("cidr", 1);
  pos.add("host", -1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs(command, args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  Req req;
  if (!fillMatch(command, a, req, io)) return kUsage;
  if (!ttl.empty()) {
    auto d = parseDuration("--ttl", ttl);
    if (!d.ok()) {
      io.err << "bulkhead " << command << ": " << d.status().message() << "\n";
      return kUsage;
    }
    if constexpr (std::is_same_v<Req, v1::BlockRequest>) req.set_ttl_ms(d->count());
  }
  auto client = OperatorClient::create(g);
  if (!client.ok()) {
    io.err << "bulkhead " << command << ": " << client.status().message() << "\n";
    return kUsage;
  }
  v1::ContainmentResponse resp;
  auto ctx = (*client)->context(std::chrono::milliseconds(req.wait_ms() + 5000));
  grpc::Status st = call((*client)->stub(), ctx.get(), req, &resp);
  if (!st.ok()) return reportRpcError(command, (*client)->controller(), st, io.err);
  std::string what = fmt::format("{} {}{}{}{}", command == "block" ? "blocked" : "unblocked",
                                 a.cidr, a.port.empty() ? "" : " port " + a.port,
                                 a.proto == "any" ? "" : " " + a.proto,
                                 a.direction == "both" ? "" : " " + a.direction);
  if (!ttl.empty()) what += " for " + ttl;
  if (a.all) what += " on every host";
  return printBlockOutcomes(g, what, resp, io);
}

int block(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  return runBlockCommand<v1::BlockRequest>(
      "block", true, g, args, io,
      [](auto& stub, grpc::ClientContext* ctx, const v1::BlockRequest& req,
         v1::ContainmentResponse* resp) { return stub.Block(ctx, req, resp); });
}

int unblock(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  return runBlockCommand<v1::UnblockRequest>(
      "unblock", false, g, args, io,
      [](auto& stub, grpc::ClientContext* ctx, const v1::UnblockRequest& req,
         v1::ContainmentResponse* resp) { return stub.Unblock(ctx, req, resp); });
}

std::string remainingText(int64_t ms) {
  if (ms <= 0) return "permanent";
  int64_t s = (ms + 999) / 1000;
  if (s < 120) return fmt::format("{}s", s);
  if (s < 7200) return fmt::format("{}m{}s", s / 60, s % 60);
  return fmt::format("{}h{}m", s / 3600, (s % 3600) / 60);
}

int blocks(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string host;
  po::options_description opts("blocks [HOST]");
  opts.add_options()("host", po::value(&host), "only this host's blocks (positional)");
  po::positional_options_description pos;
  pos.add("host", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("blocks", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  auto client = OperatorClient::create(g);
  if (!client.ok()) {
    io.err << "bulkhead blocks: " << client.status().message() << "\n";
    return kUsage;
  }
  v1::ListBlocksRequest req;
  req.set_host(host);
  v1::ListBlocksResponse resp;
  auto ctx = (*client)->context(g.timeout);
  grpc::Status st = (*client)->stub().ListBlocks(ctx.get(), req, &resp);
  if (!st.ok()) return reportRpcError("blocks", (*client)->controller(), st, io.err);
  if (g.json) {
    printJson(io.out, resp);
    return kOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"CIDR", "PROTO", "PORT", "DIRECTION", "WHERE", "REMAINING", "BY", "REASON"}};
  std::vector<std::string> tenants;
  for (const auto& e : resp.entries()) {
    tenants.push_back(e.tenant());
    const auto& b = e.block();
    const char* dir = b.direction() == v1::DIRECTION_IN    ? "in"
                      : b.direction() == v1::DIRECTION_OUT ? "out"
                                                           : "both";
    rows.push_back({b.remote_cidr(), enumText(b.protocol()),
                    b.ports().first() == 0 ? "any" : std::to_string(b.ports().first()), dir,
                    e.fleet_wide() ? "all hosts" : e.host_id(), remainingText(e.remaining_ms()),
                    b.requested_by(), b.reason()});
  }
  if (resp.entries_size() == 0) {
    io.out << "no blocks in force\n";
    return kOk;
  }
  // "all hosts" of a fleet-wide block means its tenant's: the column says which.
  addTenantColumn(rows, 5, tenants);
  printTable(io.out, rows);
  return kOk;
}

int killConnections(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string host, remote, port, reason, wait = "10s";
  po::options_description opts("kill-connections HOST --remote CIDR");
  opts.add_options()
      ("host", po::value(&host), "host id (positional)")
      ("remote", po::value(&remote), "remote address or CIDR whose connections to cut")
      ("port", po::value(&port), "only connections on this port (local or remote)")
      ("reason", po::value(&reason), "why (incident or ticket); required, audited")
      ("wait", po::value(&wait), "how long to wait for the agent's answer (default 10s)");
  po::positional_options_description pos;
  pos.add("host", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("kill-connections", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  auto bad = [&](const std::string& msg) {
    io.err << "bulkhead kill-connections: " << msg << "\n";
    return kUsage;
  };
  if (host.empty()) return bad("HOST: required");
  if (remote.empty()) return bad("--remote: required (an address or CIDR)");
  auto c = parseCidr("--remote", remote);
  if (!c.ok()) return bad(std::string(c.status().message()));
  v1::KillConnectionsRequest req;
  if (!port.empty()) {
    auto p = parsePort("--port", port);
    if (!p.ok()) return bad(std::string(p.status().message()));
    req.set_port(*p);
  }
  if (reason.empty()) return bad("--reason: required (an incident or ticket id)");
  auto w = parseDuration("--wait", wait);
  if (!w.ok()) return bad(std::string(w.status().message()));
  req.set_host(host);
  req.set_remote_cidr(remote);
  req.set_reason(reason);
  req.set_wait_ms(static_cast<uint32_t>(w->count()));
  auto client = OperatorClient::create(g);
  if (!client.ok()) return bad(std::string(client.status().message()));
  v1::HostActionResponse resp;
  auto ctx = (*client)->context(std::chrono::milliseconds(req.wait_ms() + 5000));
  grpc::Status st = (*client)->stub().KillConnections(ctx.get(), req, &resp);
  if (!st.ok()) return reportRpcError("kill-connections", (*client)->controller(), st, io.err);
  if (g.json) {
    printJson(io.out, resp);
    return resp.ok() ? kOk : kFailed;
  }
  std::vector<std::vector<std::string>> rows = {{"PROTO", "LOCAL", "REMOTE", "PID", "HOW"}};
  for (const v1::CutConnection& f : resp.kill_connections().connections()) {
    std::string how = f.how() == v1::CUT_METHOD_SOCKET_DESTROYED    ? "socket destroyed"
                      : f.how() == v1::CUT_METHOD_CONNTRACK_DELETED ? "conntrack entry deleted"
                                                                    : enumText(f.how());
    rows.push_back({enumText(f.proto()), endpoint(f.local(), f.local_port()),
                    endpoint(f.remote(), f.remote_port()) + (f.forwarded() ? " (forwarded)" : ""),
                    f.pid() != 0 ? std::to_string(f.pid()) : "-", std::move(how)});
  }
  io.out << escapeNonPrintable(host) << ": " << rows.size() - 1 << " connections cut\n";
  if (rows.size() > 1) printTable(io.out, rows);
  if (!resp.ok()) {
    io.err << "bulkhead kill-connections: " << escapeNonPrintable(host) << ": "
           << escapeNonPrintable(resp.error()) << "\n";
    return kFailed;
  }
  return kOk;
}

}  // namespace

void addBlockCommands(std::map<std::string, CommandInfo>& table) {
  table["block"] = {"block a remote CIDR on hosts or the whole fleet (--ttl); cuts its flows",
                    block};
  table["unblock"] = {"remove a block (same match as given to block)", unblock};
  table["kill-connections"] = {"cut a host's connections to/from a remote CIDR (no block)",
                               killConnections};
  table["blocks"] = {"list the blocks in force: who, why, remaining time", blocks};
}

}  // namespace bulkhead::cli
