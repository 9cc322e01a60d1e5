// The agents' listener announces a flow-control window of kStreamWindowBytes (server.h): a peer
// may have that much of one stream in flight before the controller reads any of it. With
// gRPC's default window of 64 KiB (its bandwidth-delay probe off and nothing in its place), an
// evidence upload over a link with a 50 ms round trip would crawl at about 1.3 MB/s.
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "controller/rpc/server.h"

namespace bulkhead::controller {
namespace {

// Accepts every stream and never reads from it; finishes it when the peer cancels.
class NeverReads : public grpc::CallbackGenericService {
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
    class Reactor : public grpc::ServerGenericBidiReactor {
      void OnCancel() override { Finish(grpc::Status::CANCELLED); }
      void OnDone() override { delete this; }
    };
    return new Reactor;
  }
};

grpc::ByteBuffer bytes(size_t n) {
  std::string data(n, 'x');
  grpc::Slice slice(data);
  return grpc::ByteBuffer(&slice, 1);
}

void* tag(intptr_t i) { return reinterpret_cast<void*>(i); }

TEST(AgentTransport, APeerMayHaveMostOfTheWindowInFlightBeforeTheControllerReadsAnything) {
  NeverReads service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  setAgentTransportArguments(builder);
  builder.RegisterCallbackGenericService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  ASSERT_NE(port, 0);

  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(&context, "/bulkhead.test.Hold/Stream", &cq);
  ASSERT_NE(call, nullptr);
  auto next = [&cq](void** got, bool* ok) {
    return cq.AsyncNext(got, ok, std::chrono::system_clock::now() + std::chrono::seconds(10));
  };
  void* got = nullptr;
  bool ok = false;
  call->StartCall(tag(1));
  ASSERT_EQ(next(&got, &ok), grpc::CompletionQueue::GOT_EVENT);
  ASSERT_TRUE(ok);

  // Three quarters of the window in messages of 256 KiB: each one's write completes only once
  // the controller's window let it onto the wire. With a 64 KiB window the first never would.
  constexpr size_t kMessage = size_t{256} * 1024;
  const int messages = static_cast<int>(kStreamWindowBytes * 3 / 4 / kMessage);
  for (int i = 0; i < messages; ++i) {
    call->Write(bytes(kMessage), tag(2 + i));
    ASSERT_EQ(next(&got, &ok), grpc::CompletionQueue::GOT_EVENT)
        << "message " << i + 1 << " of " << messages << " (" << kMessage
        << " bytes each) held back: the window is smaller than " << (i + 1) * kMessage;
    ASSERT_EQ(got, tag(2 + i));
    ASSERT_TRUE(ok);
  }

  context.TryCancel();
  grpc::Status status;
  call->Finish(&status, tag(100));
  while (next(&got, &ok) == grpc::CompletionQueue::GOT_EVENT && got != tag(100)) {
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  cq.Shutdown();
  while (cq.Next(&got, &ok)) {
  }
}

}  // namespace
}  // namespace bulkhead::controller
