// TSan build only: proves that a data race in our own code running on a gRPC callback thread is
// still reported under the TSan stage's set-up for gRPC (instrumented abseil, uninstrumented
// gRPC with ignore_noninstrumented_modules=1, scripts/sanitizers/tsan.supp). The ListHosts
// handler writes a plain int that a thread of ours reads without a lock, the bug class of a
// handler sharing state with a worker thread (bh-contain, the capture worker). The test passes
// only if TSan reports the race; a run without a report prints so and exits 0, which fails it.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include "bulkhead/v1/operator.grpc.pb.h"

namespace {

int g_shared = 0;  // written by the handler, read by the watcher: unsynchronised on purpose

class RacyOperator final : public bulkhead::v1::Operator::CallbackService {
  grpc::ServerUnaryReactor* ListHosts(grpc::CallbackServerContext* ctx,
                                      const bulkhead::v1::ListHostsRequest* /*request*/,
                                      bulkhead::v1::ListHostsResponse* /*response*/) override {
    g_shared = 1;
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

}  // namespace

int main() {
  RacyOperator service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "grpc_canary: could not start a server on 127.0.0.1\n");
    return 2;
  }

  // Reads for about 200 ms, across the call below; no lock, no atomic.
  int seen = 0;
  std::thread watcher([&seen] {
    for (int i = 0; i < 200; ++i) {
      seen += g_shared;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });

  auto stub = bulkhead::v1::Operator::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  bulkhead::v1::ListHostsResponse response;
  const grpc::Status status = stub->ListHosts(&ctx, bulkhead::v1::ListHostsRequest(), &response);
  watcher.join();
  server->Shutdown();
  if (!status.ok()) {
    std::fprintf(stderr, "grpc_canary: the call failed: %s\n", status.error_message().c_str());
    return 2;
  }
  std::printf("the bug ran without a sanitizer report (seen %d)\n", seen);
  return 0;
}
