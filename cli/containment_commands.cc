// `bulkhead isolate` and `bulkhead release`: change a host's desired containment state and
// wait for the agents' verified acknowledgements.
#include <algorithm>
#include <atomic>
#include <mutex>
#include <ostream>
#include <thread>

#include <fmt/format.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/evidence_commands.h"
#include "cli/operator_client.h"
#include "cli/output.h"
#include "common/format.h"
#include "common/parse.h"
#include "common/text.h"

namespace po = boost::program_options;

namespace bulkhead::cli {
namespace {

// Prints the per-host outcomes; returns 0 when every host is enforced (or dry-run), else 1.
int printOutcomes(const GlobalOptions& g, const v1::ContainmentResponse& resp, Io& io) {
  bool all_done = true;
  for (const auto& o : resp.outcomes()) {
    if (o.state() != v1::HostOutcome::STATE_ENFORCED && o.state() != v1::HostOutcome::STATE_DRY_RUN) {
      all_done = false;
    }
  }
  if (g.json) {
    printJson(io.out, resp);
    return all_done ? kOk : kFailed;
  }
  std::vector<std::vector<std::string>> rows = {
      {"HOST", "RESULT", "GENERATION", "FLOWS CUT", "APPLY", "DETAIL"}};
  for (const auto& o : resp.outcomes()) {
    std::string detail;
    std::string apply = "-";
    std::string cut = "-";
    const auto& rep = o.report();
    switch (o.state()) {
      case v1::HostOutcome::STATE_ENFORCED: {
        int64_t total_us = 0;
        for (const auto& s : rep.steps()) total_us += s.duration_us();
        apply = fmt::format("{:.1f} ms", static_cast<double>(total_us) / 1000.0);
        cut = std::to_string(rep.flows_cut());
        detail = rep.ruleset_hash().empty()
                     ? std::string("table removed")
                     : fmt::format("ruleset {}", rep.ruleset_hash().substr(0, 12));
        if (o.exemption_sets_size() > 0) {
          std::string sets;
          for (const auto& s : o.exemption_sets()) sets += (sets.empty() ? "" : ",") + s;
          detail += fmt::format("; kept: {}", sets);
        }
        break;
      }
      case v1::HostOutcome::STATE_PENDING:
        detail = o.error().empty() ? "offline: will apply on reconnect" : o.error();
        break;
      case v1::HostOutcome::STATE_FAILED:
        detail = fmt::format("{} (host left {})", o.error().empty() ? rep.error() : o.error(),
                             rep.left_closed() ? "closed" : "open");
        break;
      default:
        detail = o.error();
    }
    rows.push_back({o.host_id(), enumText(o.state()), std::to_string(o.generation()), cut,
                    apply, detail});
  }
  std::vector<std::string> tenants;
  for (const auto& o : resp.outcomes()) tenants.push_back(o.tenant());
  addTenantColumn(rows, 1, tenants);
  printTable(io.out, rows);
  for (const auto& w : resp.warnings()) io.out << "warning: " << escapeNonPrintable(w) << "\n";
  for (const auto& o : resp.outcomes()) {
    if (o.state() == v1::HostOutcome::STATE_DRY_RUN) {
      io.out << "\n# " << escapeNonPrintable(o.host_id()) << ": ruleset that would be applied\n"
             << o.ruleset_text();
      auto flows = [&](const char* title,
                       const google::protobuf::RepeatedPtrField<v1::FlowRecord>& list) {
        io.out << "\n# " << escapeNonPrintable(o.host_id()) << ": " << list.size() << " live flows "
               << title << "\n";
        std::vector<std::vector<std::string>> flow_rows = {{"PROTO", "LOCAL", "REMOTE", "PID"}};
        for (const auto& f : list) {
          flow_rows.push_back({enumText(f.protocol()), endpoint(f.local_ip(), f.local_port()),
                          endpoint(f.remote_ip(), f.remote_port()) +
                              (f.forwarded() ? " (forwarded)" : ""),
                          f.pid() != 0 ? std::to_string(f.pid()) : "-"});
        }
        if (!list.empty()) printTable(io.out, flow_rows);
      };
      flows("would be cut", o.flows_cut());
      flows("would be kept", o.flows_kept());
    }
  }
  return all_done ? kOk : kFailed;
}

struct TargetArgs {
  std::vector<std::string> hosts;
  std::string selector;
  std::string reason;
  std::string wait = "5s";
  bool yes = false;
};

void addTargetOptions(po::options_description& opts, TargetArgs& t) {
  opts.add_options()
      ("host", po::value(&t.hosts)->composing(), "host id (positional, repeatable)")
      ("selector", po::value(&t.selector), "all hosts with these labels (k=v[,k=v])")
      ("reason", po::value(&t.reason), "why (incident or ticket); required, audited")
      ("wait", po::value(&t.wait)->default_value("5s"),
       "how long to wait for the agents' acknowledgements")
      ("yes", po::bool_switch(&t.yes), "confirm a selector that matches many hosts");
}

// Validates targets, reason and wait; prints one line and returns false on error.
bool validateTargets(const std::string& command, const TargetArgs& t, uint32_t* wait_ms,
                     Io& io) {
  if (t.hosts.empty() == t.selector.empty()) {
    io.err << "bulkhead " << command << ": give host ids or --selector (one of them)\n";
    return false;
  }
  if (!t.selector.empty()) {
    if (auto s = parseSelector("--selector", t.selector); !s.ok()) {
      io.err << "bulkhead " << command << ": " << s.status().message() << "\n";
      return false;
    }
  }
  if (t.reason.empty()) {
    io.err << "bulkhead " << command << ": --reason: required (an incident or ticket id)\n";
    return false;
  }
  auto wait = parseDuration("--wait", t.wait);
  if (!wait.ok()) {
    io.err << "bulkhead " << command << ": " << wait.status().message() << "\n";
    return false;
  }
  *wait_ms = static_cast<uint32_t>(wait->count());
  return true;
}

// How long `isolate --capture-first` waits for each host's evidence before isolating anyway.
constexpr uint32_t kCaptureFirstWaitMs = 120'000;
constexpr size_t kCaptureFirstParallel = 8;

// `isolate --capture-first`: captures every target host (at most kCaptureFirstParallel at a
// time; a selector is resolved with ListHosts first), progress and outcome on io.err. Returns
// false if any capture failed (each said); the caller isolates regardless.
bool captureFirst(OperatorClient& client, const TargetArgs& t, Io& io) {
  std::vector<std::string> hosts = t.hosts;
  if (!t.selector.empty()) {
    v1::ListHostsRequest req;
    req.set_selector(t.selector);
    v1::ListHostsResponse resp;
    auto ctx = client.context();
    grpc::Status st = client.stub().ListHosts(ctx.get(), req, &resp);
    if (!st.ok()) {
      io.err << fmt::format("bulkhead isolate: --capture-first: cannot list the hosts of {}: {}; "
                            "isolating without evidence\n",
                            t.selector, st.error_message());
      return false;
    }
    for (const auto& h : resp.hosts()) hosts.push_back(h.host_id());
  }
  std::mutex mu;   // io.err and ok
  bool ok = true;
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < hosts.size(); i = next++) {
      CaptureSpec spec;
      spec.host = hosts[i];
      spec.reason = t.reason;
      spec.wait_ms = kCaptureFirstWaitMs;
      CaptureCallResult r = captureHost(client, spec, [&](const std::string& line) {
        std::lock_guard lock(mu);
        io.err << line << "\n";
      });
      std::lock_guard lock(mu);
      if (r.code == kOk) {
        io.err << fmt::format("capture {}: stored as evidence {} ({}, signature {})\n",
                              spec.host, r.record.evidence_id(), humanBytes(r.record.size()),
                              r.record.signature_ok() ? "ok" : "NOT VALID");
      } else {
        ok = false;
        io.err << fmt::format("bulkhead isolate: capture failed: {}; isolating anyway\n",
                              r.error);
      }
    }
  };
  std::vector<std::thread> threads;
  for (size_t i = 0; i < std::min(hosts.size(), kCaptureFirstParallel); ++i) {
    threads.emplace_back(work);
  }
  for (auto& th : threads) th.join();
  return ok;
}

int isolate(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  TargetArgs t;
  std::vector<std::string> exempt;
  bool no_defaults = false;
  std::string ttl;
  bool dry_run = false;
  bool capture_first = false;
  po::options_description opts("isolate HOST...|--selector k=v");
  addTargetOptions(opts, t);
  opts.add_options()
      ("exempt", po::value(&exempt)->composing(), "exemption set to keep (repeatable)")
      ("no-default-exemptions", po::bool_switch(&no_defaults),
       "do not attach the sets whose selector matches the host")
      ("ttl", po::value(&ttl), "release automatically after this long (e.g. 30m, 4h)")
      ("dry-run", po::bool_switch(&dry_run),
       "print the ruleset and the flows that would be cut and kept; change nothing")
      ("capture-first", po::bool_switch(&capture_first),
       "capture evidence of each host first (same reason, up to 120 s), then isolate; a "
       "failed capture is reported and the host is isolated anyway");
  po::positional_options_description pos;
  pos.add("host", -1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("isolate", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  uint32_t wait_ms = 0;
  if (!validateTargets("isolate", t, &wait_ms, io)) return kUsage;
  if (capture_first && dry_run) {
    io.err << "bulkhead isolate: --capture-first: not allowed with --dry-run (a dry run changes "
              "and captures nothing)\n";
    return kUsage;
  }
  v1::IsolateRequest req;
  if (!ttl.empty()) {
    auto d = parseDuration("--ttl", ttl);
    if (!d.ok()) {
      io.err << "bulkhead isolate: " << d.status().message() << "\n";
      return kUsage;
    }
    req.set_ttl_ms(d->count());
  }
  *req.mutable_targets() = targetsOf(t.hosts, t.selector);
  for (const auto& e : exempt) req.add_exempt_sets(e);
  req.set_no_default_exemptions(no_defaults);
  req.set_dry_run(dry_run);
  req.set_reason(t.reason);
  req.set_wait_ms(wait_ms);
  req.set_yes(t.yes);
  auto client = OperatorClient::create(g);
  if (!client.ok()) {
    io.err << "bulkhead isolate: " << client.status().message() << "\n";
    return kUsage;
  }
  bool captured = !capture_first || captureFirst(**client, t, io);
  v1::ContainmentResponse resp;
  auto ctx = (*client)->context(std::chrono::milliseconds(wait_ms + 5000));
  grpc::Status st = (*client)->stub().Isolate(ctx.get(), req, &resp);
  if (!st.ok()) return reportRpcError("isolate", (*client)->controller(), st, io.err);
  int code = printOutcomes(g, resp, io);
  return captured ? code : std::max<int>(code, kFailed);
}

int release(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  TargetArgs t;
  po::options_description opts("release HOST...|--selector k=v");
  addTargetOptions(opts, t);
  po::positional_options_description pos;
  pos.add("host", -1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("release", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  uint32_t wait_ms = 0;
  if (!validateTargets("release", t, &wait_ms, io)) return kUsage;
  v1::ReleaseRequest req;
  *req.mutable_targets() = targetsOf(t.hosts, t.selector);
  req.set_reason(t.reason);
  req.set_wait_ms(wait_ms);
  req.set_yes(t.yes);
  auto client = OperatorClient::create(g);
  if (!client.ok()) {
    io.err << "bulkhead release: " << client.status().message() << "\n";
    return kUsage;
  }
  v1::ContainmentResponse resp;
  auto ctx = (*client)->context(std::chrono::milliseconds(wait_ms + 5000));
  grpc::Status st = (*client)->stub().Release(ctx.get(), req, &resp);
  if (!st.ok()) return reportRpcError("release", (*client)->controller(), st, io.err);
  return printOutcomes(g, resp, io);
}

}  // namespace

void addContainmentCommands(std::map<std::string, CommandInfo>& table) {
  table["isolate"] = {"isolate hosts, keeping exemption sets; waits for verified acks "
                      "(--capture-first: evidence first)",
                      isolate};
  table["release"] = {"release isolated hosts; waits for verified acks", release};
}

}  // namespace bulkhead::cli
