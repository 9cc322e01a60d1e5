// ControllerSession against an in-process fake controller over real mTLS on 127.0.0.1.
// The fake's generated CallbackService hides the sync Connect overload on purpose; GCC reports
// it at the generated header's line, so the warning is off before any include.
#pragma GCC diagnostic ignored "-Woverloaded-virtual"
#include "agent/rpc/controller_session.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>

#include "common/callback_order.h"
#include "common/pki/pki.h"
#include "common/tls/tls.h"

namespace bulkhead::agent {
namespace {

using namespace std::chrono_literals;
using v1::AgentMessage;
using v1::ControllerMessage;

struct Pki {
  CertAndKey ca, controller, agent, other_ca, stranger;
  static Pki make() {
    Pki p;
    p.ca = *createCa("test-ca", std::chrono::hours(24));
    p.controller = *issueCert(p.ca, {PeerKind::kController, "bulkhead-controller", Role::kViewer,
                                     {"bulkhead-controller"}, {"127.0.0.1"}});
    p.agent = *issueCert(p.ca, {PeerKind::kAgent, "web-03"});
    p.other_ca = *createCa("other-ca", std::chrono::hours(24));
    p.stranger = *issueCert(p.other_ca, {PeerKind::kAgent, "web-03"});
    return p;
  }
};

// Records what agents send; answers Hello with Welcome, then (optionally) a DesiredState.
class FakeController final : public v1::AgentChannel::CallbackService {
 public:
  grpc::ServerBidiReactor<AgentMessage, ControllerMessage>* Connect(
      grpc::CallbackServerContext* ctx) override {
    return new Reactor(this, ctx);
  }

  std::mutex mu;
  std::condition_variable cv;
  std::vector<v1::Hello> hellos;
  std::vector<std::string> peers;   // host id from the client certificate
  int heartbeats = 0;
  int streams_done = 0;
  uint32_t heartbeat_ms = 100;
  bool push_desired_state = false;
  uint32_t welcome_major = 0;  // non-zero: Welcome.protocol is welcome_major.welcome_minor
  uint32_t welcome_minor = 0;

  template <typename Pred>
  bool waitFor(Pred pred, std::chrono::milliseconds timeout = 5000ms) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, timeout, pred);
  }

 private:
  class Reactor final : public grpc::ServerBidiReactor<AgentMessage, ControllerMessage> {
   public:
    Reactor(FakeController* f, grpc::CallbackServerContext* ctx) : f_(f) {
      const ReactorTurn turn(this);
      auto id = peerIdentity(*ctx->auth_context());
      peer_ = id.ok() ? id->name : "";
      operationStarts(&in_);  // the constructor, before the first OnReadDone (on another thread)
      StartRead(&in_);
    }
    void OnReadDone(bool ok) override {
      const ReactorTurn turn(this);
      operationDone(&in_);
      if (!ok) {
        std::lock_guard<std::mutex> lock(mu_);
        read_done_ = true;
        maybeFinishLocked();
        return;
      }
      {
        std::lock_guard<std::mutex> lock(f_->mu);
        if (in_.has_hello()) {
          f_->hellos.push_back(in_.hello());
          f_->peers.push_back(peer_);
        }
        if (in_.has_heartbeat()) ++f_->heartbeats;
        f_->cv.notify_all();
      }
      if (in_.has_hello()) {
        ControllerMessage w;
        w.mutable_welcome()->set_host_id(peer_);
        w.mutable_welcome()->set_heartbeat_interval_ms(f_->heartbeat_ms);
        if (f_->welcome_major != 0) {
          w.mutable_welcome()->mutable_protocol()->set_major(f_->welcome_major);
          w.mutable_welcome()->mutable_protocol()->set_minor(f_->welcome_minor);
        }
        std::lock_guard<std::mutex> lock(mu_);
        pending_.push_back(w);
        if (f_->push_desired_state) {
          ControllerMessage d;
          d.mutable_desired_state()->set_generation(7);
          pending_.push_back(d);
        }
        if (!writing_) writeNextLocked();
      }
      operationStarts(&in_);
      StartRead(&in_);
    }
    void OnWriteDone(bool) override {
      const ReactorTurn turn(this);
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
      if (!pending_.empty()) {
        writeNextLocked();
      } else {
        maybeFinishLocked();
      }
    }
    void OnDone() override {
      afterEveryTurn(this);
      {
        std::lock_guard<std::mutex> lock(f_->mu);
        ++f_->streams_done;
        f_->cv.notify_all();
      }
      delete this;
    }

   private:
    void writeNextLocked() {
      out_ = pending_.front();
      pending_.erase(pending_.begin());
      writing_ = true;
      StartWrite(&out_);
    }
    void maybeFinishLocked() {
      if (read_done_ && !writing_ && !finished_) {
        finished_ = true;
        Finish(grpc::Status::OK);
      }
    }
    FakeController* f_;
    std::string peer_;
    AgentMessage in_;
    std::mutex mu_;
    ControllerMessage out_;
    std::vector<ControllerMessage> pending_;
    bool writing_ = false, read_done_ = false, finished_ = false;
  };
};

class FakeHandler final : public SessionHandler {
 public:
  AgentMessage hello() override {
    AgentMessage m;
    m.mutable_hello()->set_host_id("web-03");
    m.mutable_hello()->set_enforced_generation(3);
    return m;
  }
  AgentMessage heartbeat() override {
    AgentMessage m;
    m.mutable_heartbeat()->set_enforced_generation(3);
    return m;
  }
  void onConnected(const v1::Welcome& w) override {
    std::lock_guard<std::mutex> lock(mu);
    ++connects;
    welcome_host = w.host_id();
    cv.notify_all();
  }
  void onMessage(const ControllerMessage& m) override {
    std::lock_guard<std::mutex> lock(mu);
    if (m.has_desired_state()) desired_generation = m.desired_state().generation();
    cv.notify_all();
  }
  void onDisconnected(const std::string& reason, bool was_connected,
                      std::chrono::milliseconds retry_in) override {
    std::lock_guard<std::mutex> lock(mu);
    ++disconnects;
    if (was_connected) ++lost;
    last_reason = reason;
    retry_delays.push_back(retry_in);
    cv.notify_all();
  }
  // Records the targets, then the defaults forward to onConnected / onDisconnected above.
  void onConnectedTo(const v1::Welcome& w, const std::string& target) override {
    {
      std::lock_guard<std::mutex> lock(mu);
      connected_targets.push_back(target);
    }
    SessionHandler::onConnectedTo(w, target);
  }
  void onDisconnectedFrom(const std::string& reason, bool was_connected,
                          std::chrono::milliseconds retry_in, const std::string& target,
                          const std::string& next_target) override {
    {
      std::lock_guard<std::mutex> lock(mu);
      ends.push_back({target, next_target, was_connected});
    }
    SessionHandler::onDisconnectedFrom(reason, was_connected, retry_in, target, next_target);
  }
  template <typename Pred>
  bool waitFor(Pred pred, std::chrono::milliseconds timeout = 5000ms) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, timeout, pred);
  }

  std::mutex mu;
  std::condition_variable cv;
  int connects = 0, disconnects = 0, lost = 0;
  uint64_t desired_generation = 0;
  std::string welcome_host, last_reason;
  std::vector<std::chrono::milliseconds> retry_delays;
  struct End {
    std::string target, next;
    bool was_connected;
  };
  std::vector<std::string> connected_targets;
  std::vector<End> ends;
};

class ControllerSessionTest : public ::testing::Test {
 protected:
  void SetUp() override { pki_ = Pki::make(); }

  void startServer(int port) { startFake(&fake_, port, &server_, &port_); }
  // A fake controller on 127.0.0.1:port (0: any), its port in *bound.
  void startFake(FakeController* fake, int port, std::unique_ptr<grpc::Server>* server,
                 int* bound) {
    IdentityFiles id;
    id.ca_pem = pki_.ca.cert_pem;
    id.cert_pem = pki_.controller.cert_pem;
    id.key_pem = pki_.controller.key_pem;
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:" + std::to_string(port), serverCredentials(id), bound);
    b.RegisterService(fake);
    *server = b.BuildAndStart();
    ASSERT_NE(*server, nullptr);
    ASSERT_GT(*bound, 0);
  }
  void stopServer() {
    server_->Shutdown(std::chrono::system_clock::now() + 1s);
    server_->Wait();
    server_.reset();
  }
  // A second replica (fake_b_) for the failover tests, and its gRPC target.
  void startReplicaB() { startFake(&fake_b_, 0, &server_b_, &port_b_); }
  static std::string target(int port) { return "ipv4:127.0.0.1:" + std::to_string(port); }
  // Stops it once its one stream's OnDone (a gRPC thread) is over, seen through its mutex.
  void stopReplicaB() {
    server_b_->Shutdown(std::chrono::system_clock::now() + 1s);
    server_b_->Wait();
    EXPECT_TRUE(fake_b_.waitFor([&] { return fake_b_.streams_done == 1; }));
  }

  SessionOptions options(const CertAndKey& client, const CertAndKey& ca) {
    IdentityFiles id;
    id.ca_pem = ca.cert_pem;
    id.cert_pem = client.cert_pem;
    id.key_pem = client.key_pem;
    SessionOptions o;
    o.targets = {"ipv4:127.0.0.1:" + std::to_string(port_)};
    o.credentials = clientCredentials(id);
    o.ssl_target_name = "bulkhead-controller";
    o.backoff = BackoffPolicy{50ms, 400ms, 2.0, 0.2};
    o.seed = 1;
    o.local_subchannel_pool = true;
    return o;
  }

  Pki pki_;
  FakeController fake_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  FakeController fake_b_;
  std::unique_ptr<grpc::Server> server_b_;
  int port_b_ = 0;
  TimerQueue timers_;
};

TEST_F(ControllerSessionTest, HelloWelcomeHeartbeatsAndMessages) {
  fake_.push_desired_state = true;
  startServer(0);
  FakeHandler h;
  ControllerSession s(options(pki_.agent, pki_.ca), &timers_, &h);
  EXPECT_FALSE(s.send(h.heartbeat()));   // not connected yet: refused, not queued
  s.start();
  ASSERT_TRUE(h.waitFor([&] { return h.connects == 1; }));
  EXPECT_EQ(h.welcome_host, "web-03");
  EXPECT_TRUE(s.connected());
  ASSERT_TRUE(h.waitFor([&] { return h.desired_generation == 7; }));
  ASSERT_TRUE(fake_.waitFor([&] { return fake_.heartbeats >= 3; }, 3000ms));
  {
    std::lock_guard<std::mutex> lock(fake_.mu);
    ASSERT_EQ(fake_.hellos.size(), 1u);
    EXPECT_EQ(fake_.hellos[0].host_id(), "web-03");
    EXPECT_EQ(fake_.hellos[0].enforced_generation(), 3u);
    EXPECT_EQ(fake_.peers[0], "web-03");
  }
  AgentMessage report;
  report.mutable_state_report()->set_generation(7);
  EXPECT_TRUE(s.send(report));
  s.stop();
  EXPECT_FALSE(s.connected());
  ASSERT_TRUE(fake_.waitFor([&] { return fake_.streams_done == 1; }));
  stopServer();
}

TEST_F(ControllerSessionTest, ReconnectsAfterControllerRestart) {
  startServer(0);
  int port = port_;
  FakeHandler h;
  ControllerSession s(options(pki_.agent, pki_.ca), &timers_, &h);
  s.start();
  ASSERT_TRUE(h.waitFor([&] { return h.connects == 1; }));
  stopServer();
  ASSERT_TRUE(h.waitFor([&] { return h.lost == 1; }));
  EXPECT_FALSE(s.connected());
  // While the controller is down, attempts fail and are retried with growing delays.
  ASSERT_TRUE(h.waitFor([&] { return h.disconnects >= 3; }, 5000ms));
  startServer(port);
  ASSERT_TRUE(h.waitFor([&] { return h.connects == 2; }, 5000ms));
  {
    std::lock_guard<std::mutex> lock(h.mu);
    ASSERT_GE(h.retry_delays.size(), 3u);
    EXPECT_LT(h.retry_delays[0], h.retry_delays[2]);   // grows (50 -> 200 ms, jitter 20 %)
    for (auto d : h.retry_delays) EXPECT_LE(d, 480ms);  // capped at 400 ms + 20 %
  }
  s.stop();
  stopServer();
}

TEST_F(ControllerSessionTest, ControllerOfAnotherMajorProtocolIsLeftWithTheReason) {
  fake_.welcome_major = kProtocolVersion.major + 1;
  // Right behind its Welcome the controller sends a desired state: an agent that left the
  // controller must not act on it.
  fake_.push_desired_state = true;
  startServer(0);
  FakeHandler h;
  ControllerSession s(options(pki_.agent, pki_.ca), &timers_, &h);
  s.start();
  ASSERT_TRUE(h.waitFor([&] { return h.disconnects >= 2; }, 5000ms));  // and retried
  {
    std::lock_guard<std::mutex> lock(h.mu);
    EXPECT_EQ(h.connects, 0);
    EXPECT_NE(h.last_reason.find("the controller speaks protocol " +
                                 std::to_string(kProtocolVersion.major + 1) + ".0"),
              std::string::npos)
        << h.last_reason;
    EXPECT_NE(h.last_reason.find("upgrade this agent"), std::string::npos) << h.last_reason;
    EXPECT_EQ(h.desired_generation, 0u) << "a refused controller's message reached the agent";
  }
  EXPECT_FALSE(s.connected());
  s.stop();
  stopServer();
}

TEST_F(ControllerSessionTest, ControllerOfAnOlderMinorProtocolIsUsed) {
  fake_.welcome_major = kProtocolVersion.major;
  fake_.welcome_minor = 0;
  startServer(0);
  FakeHandler h;
  ControllerSession s(options(pki_.agent, pki_.ca), &timers_, &h);
  s.start();
  ASSERT_TRUE(h.waitFor([&] { return h.connects == 1; }));
  {
    std::lock_guard<std::mutex> lock(fake_.mu);
    ASSERT_FALSE(fake_.hellos.empty());
  }
  s.stop();
  stopServer();
}

TEST_F(ControllerSessionTest, CertificateFromAnotherCaNeverConnects) {
  startServer(0);
  FakeHandler h;
  ControllerSession s(options(pki_.stranger, pki_.ca), &timers_, &h);  // the server refuses it
  s.start();
  ASSERT_TRUE(h.waitFor([&] { return h.disconnects >= 2; }, 5000ms));
  {
    std::lock_guard<std::mutex> lock(h.mu);
    EXPECT_EQ(h.connects, 0);
    EXPECT_EQ(h.lost, 0);
    EXPECT_FALSE(h.last_reason.empty());
  }
  s.stop();
  std::lock_guard<std::mutex> lock(fake_.mu);
  EXPECT_TRUE(fake_.hellos.empty());
  stopServer();
}

TEST_F(ControllerSessionTest, StopWhileUnreachableReturnsPromptly) {
  FakeHandler h;
  port_ = 1;  // nothing listens on 127.0.0.1:1
  ControllerSession s(options(pki_.agent, pki_.ca), &timers_, &h);
  s.start();
  ASSERT_TRUE(h.waitFor([&] { return h.disconnects >= 1; }, 5000ms));
  EXPECT_NE(h.last_reason.find("UNAVAILABLE"), std::string::npos) << h.last_reason;
  auto t0 = std::chrono::steady_clock::now();
  s.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
}

// Two replicas of one controller: the stream is on the first; when it dies the same target is
// tried once more (a restart is the likely cause), then the session fails over to the second.
TEST_F(ControllerSessionTest, FailsOverToTheNextReplicaWhenTheConnectedOneDies) {
  startServer(0);
  startReplicaB();
  const std::string a = target(port_);
  const std::string b = target(port_b_);
  FakeHandler h;
  SessionOptions o = options(pki_.agent, pki_.ca);
  o.targets = {a, b};
  ControllerSession s(o, &timers_, &h);
  s.start();
  ASSERT_TRUE(h.waitFor([&] { return h.connects == 1; }));
  stopServer();  // replica A dies
  ASSERT_TRUE(h.waitFor([&] { return h.connects == 2; }, 5000ms));
  {
    std::lock_guard<std::mutex> lock(h.mu);
    EXPECT_EQ(h.connected_targets, (std::vector<std::string>{a, b}));
    ASSERT_EQ(h.ends.size(), 2u);
    EXPECT_TRUE(h.ends[0].was_connected);
    EXPECT_EQ(h.ends[0].target, a);
    EXPECT_EQ(h.ends[0].next, a);  // the connected replica first
    EXPECT_FALSE(h.ends[1].was_connected);
    EXPECT_EQ(h.ends[1].target, a);
    EXPECT_EQ(h.ends[1].next, b);  // then the next one
    EXPECT_EQ(h.lost, 1);
  }
  {
    std::lock_guard<std::mutex> lock(fake_b_.mu);
    ASSERT_EQ(fake_b_.hellos.size(), 1u);
    EXPECT_EQ(fake_b_.peers[0], "web-03");
  }
  EXPECT_TRUE(s.connected());
  s.stop();
  stopReplicaB();
}

// A replica whose Welcome is refused (another major protocol, mid-upgrade) is a failed attempt:
// the next replica is tried, and nothing the refused one sent reaches the handler.
TEST_F(ControllerSessionTest, ReplicaOfAnotherMajorProtocolIsLeftForTheNext) {
  fake_.welcome_major = kProtocolVersion.major + 1;
  fake_.push_desired_state = true;
  startServer(0);
  startReplicaB();
  const std::string a = target(port_);
  const std::string b = target(port_b_);
  FakeHandler h;
  SessionOptions o = options(pki_.agent, pki_.ca);
  o.targets = {a, b};
  ControllerSession s(o, &timers_, &h);
  s.start();
  ASSERT_TRUE(h.waitFor([&] { return h.connects == 1; }));
  {
    std::lock_guard<std::mutex> lock(h.mu);
    EXPECT_EQ(h.connected_targets, std::vector<std::string>{b});
    ASSERT_EQ(h.ends.size(), 1u);
    EXPECT_FALSE(h.ends[0].was_connected);
    EXPECT_EQ(h.ends[0].target, a);
    EXPECT_EQ(h.ends[0].next, b);
    EXPECT_NE(h.last_reason.find("upgrade this agent"), std::string::npos) << h.last_reason;
    EXPECT_EQ(h.desired_generation, 0u) << "a refused controller's message reached the agent";
    EXPECT_EQ(h.lost, 0);
  }
  s.stop();
  stopServer();
  stopReplicaB();
}

TEST(TimerQueue, RunsInOrderAndCancels) {
  TimerQueue q;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int> order;
  auto add = [&](int v) {
    std::lock_guard<std::mutex> lock(mu);
    order.push_back(v);
    cv.notify_all();
  };
  q.schedule(60ms, [&] { add(3); });
  q.schedule(20ms, [&] { add(1); });
  auto id = q.schedule(40ms, [&] { add(99); });
  q.schedule(40ms, [&] { add(2); });
  q.cancel(id);
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, 2s, [&] { return order.size() == 3; }));
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

}  // namespace
}  // namespace bulkhead::agent
