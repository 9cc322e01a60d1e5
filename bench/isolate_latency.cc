// bulkhead-isolate-bench: operator API call -> rules enforced, read back from the kernel and
// acknowledged, measured from the operator's side over one mTLS channel.
//
//   bulkhead-isolate-bench --controller ADDR:PORT --identity DIR --host ID [--cycles 200]
//                          [--tenant NAME]
//
// Each cycle is one Isolate and one Release of HOST, each waiting for the agent's verified
// acknowledgement (outcome ENFORCED). Prints p50/p90/p99/max per operation and the agent's
// own apply time (the report's duration_us; from an agent older than that field, the sum of
// its steps), then each step's p50 in the agent's order (some steps overlap, so these can add
// up to more than the apply). Not a test: it prints figures.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <boost/program_options.hpp>
#include <fmt/format.h>
#include <grpc/support/log.h>
#include <grpcpp/grpcpp.h>

#include "bulkhead/v1/operator.grpc.pb.h"
#include "common/format.h"
#include "common/parse.h"
#include "common/tls/tls.h"

namespace po = boost::program_options;
using Clock = std::chrono::steady_clock;

namespace {

struct Samples {
  std::vector<double> rpc_ms;
  std::vector<double> agent_ms;
  // Per step name, in the order the agent first reported them: its durations in ms.
  std::vector<std::pair<std::string, std::vector<double>>> step_ms;

  void addStep(const std::string& name, double ms) {
    auto it = std::find_if(step_ms.begin(), step_ms.end(),
                           [&](const auto& entry) { return entry.first == name; });
    if (it == step_ms.end()) it = step_ms.insert(step_ms.end(), {name, {}});
    it->second.push_back(ms);
  }
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

void print(const char* name, const Samples& s) {
  fmt::print("{:<8} n={:<4} rpc p50 {:6.2f} ms  p90 {:6.2f} ms  p99 {:6.2f} ms  max {:6.2f} ms"
             "   | agent apply p50 {:5.2f} ms  p99 {:5.2f} ms\n",
             name, s.rpc_ms.size(), percentile(s.rpc_ms, 50), percentile(s.rpc_ms, 90),
             percentile(s.rpc_ms, 99), percentile(s.rpc_ms, 100), percentile(s.agent_ms, 50),
             percentile(s.agent_ms, 99));
  std::string steps;
  for (const auto& [step, ms] : s.step_ms) {
    steps += fmt::format("  {} {:.2f}", step, percentile(ms, 50));
  }
  fmt::print("{:<8} agent steps p50 (ms):{}\n", name, steps);
}

// Records one outcome; returns false (after printing why) unless the host is ENFORCED.
bool record(const grpc::Status& st, const bulkhead::v1::ContainmentResponse& resp,
            Clock::time_point t0, Samples& s) {
  double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  if (!st.ok()) {
    fmt::print(stderr, "rpc failed: {}\n", st.error_message());
    return false;
  }
  if (resp.outcomes_size() != 1 ||
      resp.outcomes(0).state() != bulkhead::v1::HostOutcome::STATE_ENFORCED) {
    fmt::print(stderr, "not enforced: {}\n", resp.ShortDebugString());
    return false;
  }
  const auto& report = resp.outcomes(0).report();
  int64_t steps_us = 0;
  for (const auto& step : report.steps()) {
    steps_us += step.duration_us();
    s.addStep(step.name(), static_cast<double>(step.duration_us()) / 1000.0);
  }
  const int64_t us = report.duration_us() > 0 ? report.duration_us() : steps_us;
  s.rpc_ms.push_back(ms);
  s.agent_ms.push_back(static_cast<double>(us) / 1000.0);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  gpr_set_log_function([](gpr_log_func_args*) {});
  std::string controller;
  std::string identity;
  std::string host;
  std::string controller_name;
  std::string tenant;
  int cycles = 200;
  po::options_description opts("bulkhead-isolate-bench");
  opts.add_options()("controller", po::value(&controller)->required(), "ADDR:PORT")(
      "identity", po::value(&identity)->required(), "operator identity DIR")(
      "host", po::value(&host)->required(), "host id to isolate and release")(
      "cycles", po::value(&cycles)->default_value(200), "isolate/release cycles")(
      "controller-name", po::value(&controller_name)->default_value("bulkhead-controller"),
      "TLS name of the controller")("tenant", po::value(&tenant),
                                    "the tenant to act in (request metadata bulkhead-tenant)");
  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, opts), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    fmt::print(stderr, "bulkhead-isolate-bench: {}\n", e.what());
    return 2;
  }
  auto hp = bulkhead::parseHostPort("--controller", controller);
  auto id = bulkhead::loadIdentity(identity);
  if (!hp.ok() || !id.ok()) {
    fmt::print(stderr, "bulkhead-isolate-bench: {}\n", !hp.ok() ? hp.status() : id.status());
    return 2;
  }
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(controller_name);
  auto channel = grpc::CreateCustomChannel(controller, bulkhead::clientCredentials(*id), args);
  auto stub = bulkhead::v1::Operator::NewStub(channel);

  Samples isolate;
  Samples release;
  for (int i = 0; i < cycles; ++i) {
    bulkhead::v1::IsolateRequest ireq;
    ireq.mutable_targets()->mutable_hosts()->add_ids(host);
    ireq.set_reason(fmt::format("latency bench cycle {}", i));
    ireq.set_wait_ms(5000);
    bulkhead::v1::ContainmentResponse resp;
    grpc::ClientContext ictx;
    ictx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!tenant.empty()) ictx.AddMetadata("bulkhead-tenant", tenant);
    auto t0 = Clock::now();
    if (!record(stub->Isolate(&ictx, ireq, &resp), resp, t0, isolate)) return 1;

    bulkhead::v1::ReleaseRequest rreq;
    rreq.mutable_targets()->mutable_hosts()->add_ids(host);
    rreq.set_reason(fmt::format("latency bench cycle {}", i));
    rreq.set_wait_ms(5000);
    grpc::ClientContext rctx;
    rctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!tenant.empty()) rctx.AddMetadata("bulkhead-tenant", tenant);
    resp.Clear();
    t0 = Clock::now();
    if (!record(stub->Release(&rctx, rreq, &resp), resp, t0, release)) return 1;
  }
  fmt::print("operator call -> enforced, read back and acknowledged ({} cycles, host {})\n",
             cycles, host);
  print("isolate", isolate);
  print("release", release);
  Samples all = isolate;
  all.rpc_ms.insert(all.rpc_ms.end(), release.rpc_ms.begin(), release.rpc_ms.end());
  all.agent_ms.insert(all.agent_ms.end(), release.agent_ms.begin(), release.agent_ms.end());
  for (const auto& [step, ms] : release.step_ms) {
    for (double one : ms) all.addStep(step, one);
  }
  print("both", all);
  fmt::print("target (DESIGN.md): p50 <= 10 ms, p99 <= 50 ms -> p50 {} / p99 {}\n",
             percentile(all.rpc_ms, 50) <= 10 ? "met" : "MISSED",
             percentile(all.rpc_ms, 99) <= 50 ? "met" : "MISSED");
  return 0;
}
