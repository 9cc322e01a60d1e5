// A local tool's signal end to end on the agent's side: the signal socket
// (SignalSocketServer, exchangeSignalSocket), the SignalForwarder and a ControllerSession to
// an in-process fake controller over real mTLS on 127.0.0.1, which answers SignalReports
// with receipts (or does not, or drops the stream).
// The fake's generated CallbackService hides the sync Connect overload on purpose; GCC reports
// it at the generated header's line, so the warning is off before any include.
#pragma GCC diagnostic ignored "-Woverloaded-virtual"
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "agent/core/signal.h"
#include "agent/linux/signal_socket.h"
#include "agent/rpc/controller_session.h"
#include "agent/rpc/signal_forwarder.h"
#include "common/callback_order.h"
#include "common/pki/pki.h"
#include "common/tls/tls.h"

namespace bulkhead::agent {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using v1::AgentMessage;
using v1::ControllerMessage;

enum class Answer { kReceipt, kRefuse, kSilence, kDrop };

// Answers Hello with Welcome and each SignalReport as `answer` says.
class FakeController final : public v1::AgentChannel::CallbackService {
 public:
  grpc::ServerBidiReactor<AgentMessage, ControllerMessage>* Connect(
      grpc::CallbackServerContext*) override {
    return new Reactor(this);
  }

  std::mutex mu;
  std::condition_variable cv;
  std::vector<v1::SignalReport> reports;
  Answer answer = Answer::kReceipt;

 private:
  class Reactor final : public grpc::ServerBidiReactor<AgentMessage, ControllerMessage> {
   public:
    explicit Reactor(FakeController* f) : f_(f) {
      const ReactorTurn turn(this);
      StartRead(&in_);
    }
    void OnReadDone(bool ok) override {
      const ReactorTurn turn(this);
      std::lock_guard<std::mutex> lock(mu_);
      if (!ok || finished_) {
        read_done_ = true;
        maybeFinishLocked(grpc::Status::OK);
        return;
      }
      Answer mode;
      {
        std::lock_guard<std::mutex> flock(f_->mu);
        mode = f_->answer;
        if (in_.has_signal()) f_->reports.push_back(in_.signal());
        f_->cv.notify_all();
      }
      if (in_.has_hello()) {
        ControllerMessage w;
        w.mutable_welcome()->set_host_id("web-03");
        w.mutable_welcome()->set_heartbeat_interval_ms(1000);
        queueLocked(w);
      } else if (in_.has_signal()) {
        ControllerMessage r;
        r.mutable_signal_receipt()->set_report_id(in_.signal().report_id());
        switch (mode) {
          case Answer::kReceipt:
            r.mutable_signal_receipt()->set_signal_id("sig-" +
                                                      std::to_string(in_.signal().report_id()));
            r.mutable_signal_receipt()->set_disposition(v1::SIGNAL_DISPOSITION_ACTED);
            queueLocked(r);
            break;
          case Answer::kRefuse:
            r.mutable_signal_receipt()->set_error("signal.rule: no such thing");
            queueLocked(r);
            break;
          case Answer::kSilence: break;
          case Answer::kDrop:
            read_done_ = true;
            maybeFinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "dropped"));
            return;
        }
      }
      StartRead(&in_);
    }
    void OnWriteDone(bool) override {
      const ReactorTurn turn(this);
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
      if (!pending_.empty()) {
        writeNextLocked();
      } else {
        maybeFinishLocked(grpc::Status::OK);
      }
    }
    void OnDone() override {
      afterEveryTurn(this);
      delete this;
    }

   private:
    void queueLocked(const ControllerMessage& m) {
      pending_.push_back(m);
      if (!writing_) writeNextLocked();
    }
    void writeNextLocked() {
      out_ = pending_.front();
      pending_.erase(pending_.begin());
      writing_ = true;
      StartWrite(&out_);
    }
    void maybeFinishLocked(const grpc::Status& status) {
      if (read_done_ && !writing_ && !finished_) {
        finished_ = true;
        Finish(status);
      }
    }
    FakeController* f_;
    AgentMessage in_;
    std::mutex mu_;
    ControllerMessage out_;
    std::vector<ControllerMessage> pending_;
    bool writing_ = false, read_done_ = false, finished_ = false;
  };
};

// The daemon's routing of session events to the forwarder (agent/daemon/agent.cc).
class RoutingHandler final : public SessionHandler {
 public:
  explicit RoutingHandler(SignalForwarder** forwarder) : forwarder_(forwarder) {}
  AgentMessage hello() override {
    AgentMessage m;
    m.mutable_hello()->set_host_id("web-03");
    return m;
  }
  AgentMessage heartbeat() override {
    AgentMessage m;
    m.mutable_heartbeat();
    return m;
  }
  void onConnected(const v1::Welcome&) override {
    (*forwarder_)->onConnected();
    std::lock_guard<std::mutex> lock(mu_);
    ++connects_;
    cv_.notify_all();
  }
  void onMessage(const ControllerMessage& m) override {
    if (m.has_signal_receipt()) (*forwarder_)->onReceipt(m.signal_receipt());
  }
  void onDisconnected(const std::string& reason, bool, std::chrono::milliseconds) override {
    (*forwarder_)->onDisconnected(reason);
  }
  bool waitConnected(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, 5s, [&] { return connects_ >= n; });
  }

 private:
  SignalForwarder** forwarder_;
  std::mutex mu_;
  std::condition_variable cv_;
  int connects_ = 0;
};

class SignalForwardingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = *createCa("test-ca", std::chrono::hours(24));
    controller_ = *issueCert(ca_, {PeerKind::kController,
                                   "bulkhead-controller",
                                   Role::kViewer,
                                   {"bulkhead-controller"},
                                   {"127.0.0.1"}});
    agent_ = *issueCert(ca_, {PeerKind::kAgent, "web-03"});
    char tmpl[] = "/tmp/bulkhead-signal-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    forwarder_ = std::make_unique<SignalForwarder>(
        &timers_, [this](const AgentMessage& m) { return session_ && session_->send(m); });
    forwarder_ptr_ = forwarder_.get();
  }
  void TearDown() override {
    socket_.reset();
    if (session_) session_->stop();
    if (server_) stopServer();
    session_.reset();
    forwarder_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void startServer(int port) {
    IdentityFiles id;
    id.ca_pem = ca_.cert_pem;
    id.cert_pem = controller_.cert_pem;
    id.key_pem = controller_.key_pem;
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:" + std::to_string(port), serverCredentials(id), &port_);
    b.RegisterService(&fake_);
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void stopServer() {
    server_->Shutdown(std::chrono::system_clock::now() + 1s);
    server_->Wait();
    server_.reset();
  }
  void startSession() {
    IdentityFiles id;
    id.ca_pem = ca_.cert_pem;
    id.cert_pem = agent_.cert_pem;
    id.key_pem = agent_.key_pem;
    SessionOptions o;
    o.targets = {"ipv4:127.0.0.1:" + std::to_string(port_)};
    o.credentials = clientCredentials(id);
    o.ssl_target_name = "bulkhead-controller";
    o.backoff = BackoffPolicy{50ms, 200ms, 2.0, 0.2};
    o.seed = 1;
    o.local_subchannel_pool = true;
    session_ = std::make_unique<ControllerSession>(o, &timers_, &handler_);
    session_->start();
  }
  void startSocket(SignalSocketOptions o = {}) {
    o.allowed_uid = o.allowed_uid == 0 ? ::getuid() : o.allowed_uid;
    auto s = SignalSocketServer::create(
        socketPath(),
        [this](const std::string& line, SignalSocketServer::Reply reply) {
          forwarder_->handleRequestLine(line, 1'700'000'000'000, std::move(reply));
        },
        o);
    ASSERT_TRUE(s.ok()) << s.status();
    socket_ = *std::move(s);
  }
  fs::path socketPath() const { return dir_ / "signal.sock"; }

  static v1::Signal signal() {
    v1::Signal s;
    s.set_source(v1::SIGNAL_SOURCE_CLI);
    s.set_rule("manual");
    s.add_addresses("203.0.113.7/32");
    return s;
  }
  // One exchange on the socket, as `bulkhead-agent signal` does it.
  SignalResponse send(std::chrono::milliseconds timeout, v1::Signal s = signal()) {
    auto line = exchangeSignalSocket(socketPath(), encodeSignalRequest({std::move(s), timeout}),
                                     timeout + 2s);
    EXPECT_TRUE(line.ok()) << line.status();
    if (!line.ok()) return {};
    auto r = decodeSignalResponse(*line);
    EXPECT_TRUE(r.ok()) << r.status() << " in " << *line;
    return r.ok() ? *r : SignalResponse{};
  }

  CertAndKey ca_, controller_, agent_;
  fs::path dir_;
  FakeController fake_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  TimerQueue timers_;
  std::unique_ptr<SignalForwarder> forwarder_;
  SignalForwarder* forwarder_ptr_ = nullptr;
  RoutingHandler handler_{&forwarder_ptr_};
  std::unique_ptr<ControllerSession> session_;
  std::unique_ptr<SignalSocketServer> socket_;
};

TEST_F(SignalForwardingTest, ReceiptComesBackThroughTheSocket) {
  startServer(0);
  startSession();
  ASSERT_TRUE(handler_.waitConnected(1));
  startSocket();
  SignalResponse r = send(5s);
  EXPECT_EQ(r.result, SignalResult::kRecorded) << r.error;
  EXPECT_EQ(r.signal_id, "sig-1");
  EXPECT_EQ(r.disposition, v1::SIGNAL_DISPOSITION_ACTED);
  std::lock_guard<std::mutex> lock(fake_.mu);
  ASSERT_EQ(fake_.reports.size(), 1u);
  const v1::Signal& got = fake_.reports[0].signal();
  EXPECT_EQ(got.source(), v1::SIGNAL_SOURCE_CLI);
  EXPECT_EQ(got.rule(), "manual");
  EXPECT_EQ(got.addresses(0), "203.0.113.7/32");
  // No key given: the agent's default, from the minute it received the signal.
  EXPECT_EQ(got.idempotency_key(), defaultIdempotencyKey(signal(), 1'700'000'000'000 / 60'000));
  EXPECT_EQ(forwarder_->pending(), 0u);
}

TEST_F(SignalForwardingTest, RefusalIsReported) {
  fake_.answer = Answer::kRefuse;
  startServer(0);
  startSession();
  ASSERT_TRUE(handler_.waitConnected(1));
  startSocket();
  SignalResponse r = send(5s);
  EXPECT_EQ(r.result, SignalResult::kRefused);
  EXPECT_EQ(r.error, "refused by the controller: signal.rule: no such thing");
}

TEST_F(SignalForwardingTest, NoReceiptTimesOut) {
  fake_.answer = Answer::kSilence;
  startServer(0);
  startSession();
  ASSERT_TRUE(handler_.waitConnected(1));
  startSocket();
  auto start = std::chrono::steady_clock::now();
  SignalResponse r = send(300ms);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 290ms);
  EXPECT_EQ(r.result, SignalResult::kNotDelivered);
  EXPECT_NE(r.error.find("not delivered: no receipt from the controller within 300 ms"),
            std::string::npos)
      << r.error;
  std::lock_guard<std::mutex> lock(fake_.mu);
  EXPECT_EQ(fake_.reports.size(), 1u);  // it was sent; the answer never came
}

TEST_F(SignalForwardingTest, StreamDroppedBeforeTheReceipt) {
  fake_.answer = Answer::kDrop;
  startServer(0);
  startSession();
  ASSERT_TRUE(handler_.waitConnected(1));
  startSocket();
  auto start = std::chrono::steady_clock::now();
  SignalResponse r = send(10s);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);  // at once, not at the timeout
  EXPECT_EQ(r.result, SignalResult::kNotDelivered);
  EXPECT_NE(r.error.find("ended before its receipt"), std::string::npos) << r.error;
}

TEST_F(SignalForwardingTest, NotConnectedFailsAfterTheTimeout) {
  startServer(0);
  stopServer();  // the port is known and nothing listens
  startSession();
  startSocket();
  SignalResponse r = send(300ms);
  EXPECT_EQ(r.result, SignalResult::kNotDelivered);
  EXPECT_NE(r.error.find("not delivered: the agent is not connected to the controller"),
            std::string::npos)
      << r.error;
}

TEST_F(SignalForwardingTest, WaitsForTheControllerWithinTheTimeout) {
  startServer(0);
  int port = port_;
  stopServer();
  startSession();
  startSocket();
  auto answer = std::async(std::launch::async, [&] { return send(8s); });
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(forwarder_->pending(), 1u);
  startServer(port);
  SignalResponse r = answer.get();
  EXPECT_EQ(r.result, SignalResult::kRecorded) << r.error;
}

TEST_F(SignalForwardingTest, InvalidRequestIsAnsweredAtOnce) {
  startSocket();
  auto line = exchangeSignalSocket(socketPath(),
                                   R"({"signal":{"source":"cli","rule":"r","addresses":["nope"]}})"
                                   "\n",
                                   2s);
  ASSERT_TRUE(line.ok()) << line.status();
  auto r = decodeSignalResponse(*line);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->result, SignalResult::kInvalid);
  EXPECT_NE(r->error.find("signal.addresses[0]"), std::string::npos) << r->error;
  EXPECT_EQ(forwarder_->pending(), 0u);
}

// ---- the socket's own limits ----

SignalResponse rawExchange(const fs::path& path, const std::string& data, bool close_write) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  if (close_write) ::shutdown(fd, SHUT_WR);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  auto r = decodeSignalResponse(out);
  EXPECT_TRUE(r.ok()) << out;
  return r.ok() ? *r : SignalResponse{};
}

class SignalSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/bulkhead-sigsock-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    server_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // A server whose handler keeps every request unanswered in `held_`.
  void start(SignalSocketOptions o) {
    auto s = SignalSocketServer::create(
        dir_ / "signal.sock",
        [this](std::string line, SignalSocketServer::Reply reply) {
          std::lock_guard<std::mutex> lock(mu_);
          lines_.push_back(std::move(line));
          held_.push_back(std::move(reply));
          cv_.notify_all();
        },
        o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
  }
  bool waitHeld(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, 5s, [&] { return held_.size() >= n; });
  }
  fs::path dir_;
  std::unique_ptr<SignalSocketServer> server_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> lines_;
  std::vector<SignalSocketServer::Reply> held_;
};

TEST_F(SignalSocketTest, RootOnlyModeAndPeerCheck) {
  SignalSocketOptions o;
  o.allowed_uid = ::getuid() + 1;  // someone else
  start(o);
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "signal.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  SignalResponse r = rawExchange(dir_ / "signal.sock", "{}\n", false);
  EXPECT_EQ(r.result, SignalResult::kInvalid);
  EXPECT_NE(r.error.find("root-only"), std::string::npos);
  std::lock_guard<std::mutex> lock(mu_);
  EXPECT_TRUE(lines_.empty());
}

TEST_F(SignalSocketTest, OversizedAndSlowRequestsAreCutOff) {
  SignalSocketOptions o;
  o.allowed_uid = ::getuid();
  o.max_request_bytes = 1024;
  o.read_timeout = 200ms;
  start(o);
  SignalResponse big = rawExchange(dir_ / "signal.sock", std::string(4096, 'x'), false);
  EXPECT_EQ(big.result, SignalResult::kInvalid);
  EXPECT_NE(big.error.find("larger than 1024 bytes"), std::string::npos) << big.error;
  SignalResponse slow = rawExchange(dir_ / "signal.sock", "{\"partial\":", false);
  EXPECT_EQ(slow.result, SignalResult::kInvalid);
  EXPECT_NE(slow.error.find("no complete line within 200 ms"), std::string::npos) << slow.error;
  // A request ended by EOF instead of a newline is still a request.
  std::thread t([&] {
    ASSERT_TRUE(waitHeld(1));
    held_[0]("{\"result\":\"refused\",\"error\":\"e\"}\n");
  });
  SignalResponse eof = rawExchange(dir_ / "signal.sock", "{\"a\":1}", true);
  t.join();
  EXPECT_EQ(eof.result, SignalResult::kRefused);
  std::lock_guard<std::mutex> lock(mu_);
  ASSERT_EQ(lines_.size(), 1u);
  EXPECT_EQ(lines_[0], "{\"a\":1}");
}

TEST_F(SignalSocketTest, BoundedClientsAndLateAnswers) {
  SignalSocketOptions o;
  o.allowed_uid = ::getuid();
  o.max_clients = 2;
  start(o);
  auto first = std::async(std::launch::async,
                          [&] { return exchangeSignalSocket(dir_ / "signal.sock", "one\n", 5s); });
  auto second = std::async(std::launch::async,
                           [&] { return exchangeSignalSocket(dir_ / "signal.sock", "two\n", 5s); });
  ASSERT_TRUE(waitHeld(2));
  // Both slots are held: a third client is turned away at once.
  auto third = exchangeSignalSocket(dir_ / "signal.sock", "three\n", 5s);
  ASSERT_TRUE(third.ok()) << third.status();
  auto busy = decodeSignalResponse(*third);
  ASSERT_TRUE(busy.ok());
  EXPECT_EQ(busy->result, SignalResult::kNotDelivered);
  EXPECT_NE(busy->error.find("busy"), std::string::npos);
  // Answers from another thread reach their own client; a second answer is ignored.
  std::vector<SignalSocketServer::Reply> held;
  {
    std::lock_guard<std::mutex> lock(mu_);
    held = held_;
  }
  std::thread([&] {
    for (size_t i = 0; i < 2; ++i) {
      SignalResponse r{SignalResult::kRecorded, "sig-for-" + lines_[i], {}, ""};
      held[i](encodeSignalResponse(r));
      held[i]("ignored\n");
    }
  }).join();
  for (auto* f : {&first, &second}) {
    auto line = f->get();
    ASSERT_TRUE(line.ok()) << line.status();
    auto r = decodeSignalResponse(*line);
    ASSERT_TRUE(r.ok()) << *line;
    EXPECT_EQ(r->result, SignalResult::kRecorded);
  }
  // The slots are free again; an answer after the server is gone does nothing.
  auto again = std::async(std::launch::async,
                          [&] { return exchangeSignalSocket(dir_ / "signal.sock", "four\n", 5s); });
  ASSERT_TRUE(waitHeld(3));
  SignalSocketServer::Reply late;
  {
    std::lock_guard<std::mutex> lock(mu_);
    late = held_[2];
  }
  server_.reset();
  late("{\"result\":\"refused\",\"error\":\"late\"}\n");
  auto closed = again.get();
  EXPECT_FALSE(closed.ok());  // closed without an answer
  EXPECT_FALSE(fs::exists(dir_ / "signal.sock"));
}

TEST(SignalSocketClient, NoAgent) {
  auto r = exchangeSignalSocket("/tmp/bulkhead-no-such-dir/signal.sock", "x\n", 1s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(std::string(r.status().message()).find("the agent is not running"), std::string::npos);
}

}  // namespace
}  // namespace bulkhead::agent
