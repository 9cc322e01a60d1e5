// TSan build only: proves that a data race in our own code running on a gRPC callback thread is
// still reported under the TSan stage's set-up for gRPC (instrumented abseil, uninstrumented
// gRPC with ignore_noninstrumented_modules=1, scripts/sanitizers/tsan.supp). Each case writes a
// plain int on a gRPC callback thread that a thread of ours reads without a lock:
//   handler          in a server's unary handler (ListHosts), the bug class of a handler sharing
//                    state with a worker thread (bh-contain, the capture worker);
//   client-reactor   in a client bidi reactor's OnReadDone (AgentChannel.Connect, the agent's
//                    stream), which gRPC calls from a lambda of its client stream's constructor:
//                    the suppressions that name that constructor must leave this reported.
// The test passes only if TSan reports the race; a run without a report prints so and exits 0,
// which fails it.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

#include "bulkhead/v1/agent.grpc.pb.h"
#include "bulkhead/v1/operator.grpc.pb.h"

namespace {

int g_shared = 0;  // written on a gRPC thread, read by the watcher: unsynchronised on purpose

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

// Sends one message and ends the stream; nothing racy here.
class OneMessageChannel final : public bulkhead::v1::AgentChannel::CallbackService {
  class Reactor final
      : public grpc::ServerBidiReactor<bulkhead::v1::AgentMessage,
                                       bulkhead::v1::ControllerMessage> {
   public:
    Reactor() { StartWriteAndFinish(&out_, grpc::WriteOptions(), grpc::Status::OK); }
    void OnDone() override { delete this; }

   private:
    bulkhead::v1::ControllerMessage out_;
  };

  grpc::ServerBidiReactor<bulkhead::v1::AgentMessage, bulkhead::v1::ControllerMessage>* Connect(
      grpc::CallbackServerContext* /*ctx*/) override {
    return new Reactor();
  }
};

// Reads one message; OnReadDone writes g_shared.
class RacyClient final
    : public grpc::ClientBidiReactor<bulkhead::v1::AgentMessage, bulkhead::v1::ControllerMessage> {
 public:
  explicit RacyClient(bulkhead::v1::AgentChannel::Stub* stub) {
    ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    stub->async()->Connect(&ctx_, this);
    StartRead(&in_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (ok) g_shared = 1;
  }
  void OnDone(const grpc::Status& status) override {
    const std::lock_guard<std::mutex> lock(mu_);
    status_ = status;
    done_ = true;
    cv_.notify_all();
  }
  grpc::Status await() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return done_; });
    return status_;
  }

 private:
  grpc::ClientContext ctx_;
  bulkhead::v1::ControllerMessage in_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  grpc::Status status_;
};

}  // namespace

int main(int argc, char** argv) {
  const bool client_case = argc > 1 && std::strcmp(argv[1], "client-reactor") == 0;
  if (argc > 1 && !client_case && std::strcmp(argv[1], "handler") != 0) {
    std::fprintf(stderr, "grpc_canary: unknown case %s (handler or client-reactor)\n", argv[1]);
    return 2;
  }
  RacyOperator operator_service;
  OneMessageChannel channel_service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&operator_service);
  builder.RegisterService(&channel_service);
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

  const std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
  grpc::Status status;
  if (client_case) {
    auto stub = bulkhead::v1::AgentChannel::NewStub(channel);
    RacyClient client(stub.get());
    status = client.await();
  } else {
    auto stub = bulkhead::v1::Operator::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    bulkhead::v1::ListHostsResponse response;
    status = stub->ListHosts(&ctx, bulkhead::v1::ListHostsRequest(), &response);
  }
  watcher.join();
  server->Shutdown();
  if (!status.ok()) {
    std::fprintf(stderr, "grpc_canary: the call failed: %s\n", status.error_message().c_str());
    return 2;
  }
  std::printf("the bug ran without a sanitizer report (seen %d)\n", seen);
  return 0;
}
