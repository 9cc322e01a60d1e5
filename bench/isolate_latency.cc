// bulkhead-isolate-bench: operator API call -> rules enforced, read back from the kernel and
// acknowledged, measured from the operator's side over one mTLS channel.
//
//   bulkhead-isolate-bench --controller ADDR:PORT --identity DIR --host ID [--cycles 200]
//                          [--tenant NAME]
//
// Each cycle is one Isolate and one Release of HOST, each waiting for the agent's verified
// acknowledgement (outcome ENFORCED). Prints p50/p90/p99/max per operation and the agent's
// own apply time (sum of its step durations). Not a test: it prints figures.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
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
  int64_t us = 0;
  for (const auto& step : resp.outcomes(0).report().steps()) us += step.duration_us();
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
  print("both", all);
  fmt::print("target (DESIGN.md): p50 <= 10 ms, p99 <= 50 ms -> p50 {} / p99 {}\n",
             percentile(all.rpc_ms, 50) <= 10 ? "met" : "MISSED",
             percentile(all.rpc_ms, 99) <= 50 ? "met" : "MISSED");
  return 0;
}
