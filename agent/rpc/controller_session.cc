#include "agent/rpc/controller_session.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <deque>
#include <utility>

#include "common/callback_order.h"

namespace bulkhead::agent {

using bulkhead::v1::AgentMessage;
using bulkhead::v1::ControllerMessage;

grpc::ChannelArguments agentChannelArguments(const SessionOptions& options) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(options.backoff.initial.count()));
  // gRPC uses MIN_RECONNECT_BACKOFF as the *connect timeout* of each attempt (TCP + TLS
  // handshake), not as a delay: 200 ms made handshakes to a busy controller fail ("Handshake
  // read failed") and multiplied its work. Keep gRPC's default of 20 s.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 20'000);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(options.backoff.max.count()));
  if (!options.ssl_target_name.empty()) args.SetSslTargetNameOverride(options.ssl_target_name);
  if (options.local_subchannel_pool) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return args;
}

std::string describeGrpcStatus(const grpc::Status& s) {
  static constexpr const char* kNames[] = {
      "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
      "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
      "UNAUTHENTICATED"};
  int code = static_cast<int>(s.error_code());
  const char* name = (code >= 0 && code <= 16) ? kNames[code] : "UNKNOWN";
  if (s.error_message().empty()) return name;
  return fmt::format("{}: {}", name, s.error_message());
}

class ControllerSession::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(SessionOptions options, TimerQueue* timers, SessionHandler* handler)
      : options_(std::move(options)),
        timers_(timers),
        handler_(handler),
        backoff_(options_.backoff, options_.seed) {
    channels_.resize(options_.targets.size());
  }

  void start() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (started_ || stopping_) return;
      started_ = true;
    }
    attempt();
  }

  void stop();
  bool send(const AgentMessage& m);
  void reconnect(const std::string& reason);
  bool connected() const {
    std::lock_guard<std::mutex> lock(mu_);
    return connected_;
  }

 private:
  class Stream;

  void attempt();                            // opens a stream unless one exists
  void onWelcome(Stream* s, const v1::Welcome& w);
  void onStreamDone(Stream* s, const grpc::Status& status);
  void onStreamDeleted();
  void heartbeatTick(uint64_t epoch);
  void welcomeTimeout(uint64_t epoch);
  void retryTick();
  void schedule(std::chrono::milliseconds delay, std::function<void(Impl*)> fn);  // REQUIRES: mu_

  // Guards a handler call made outside mu_: stop() waits for these to finish.
  bool enterCallback(uint64_t epoch);  // false if stopping, stale or not accepted
  void leaveCallback();

  SessionOptions options_;
  TimerQueue* timers_;
  SessionHandler* handler_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  Stream* stream_ = nullptr;         // GUARDED_BY(mu_); deleted by its own OnDone
  bool connected_ = false;           // GUARDED_BY(mu_)
  std::string refusal_;              // GUARDED_BY(mu_): why onWelcome ended the stream
  bool started_ = false;             // GUARDED_BY(mu_)
  bool stopping_ = false;            // GUARDED_BY(mu_)
  uint64_t epoch_ = 0;               // GUARDED_BY(mu_): bumps with every stream
  int busy_ = 0;                     // GUARDED_BY(mu_): handler calls in progress
  int live_streams_ = 0;             // GUARDED_BY(mu_): Stream objects not yet deleted
  std::chrono::milliseconds heartbeat_interval_{10'000};  // GUARDED_BY(mu_)
  std::vector<TimerQueue::Id> timers_pending_;  // GUARDED_BY(mu_)
  Backoff backoff_;                  // GUARDED_BY(mu_)
  size_t target_index_ = 0;          // GUARDED_BY(mu_): of the stream, or the next attempt's
  std::vector<std::shared_ptr<grpc::Channel>> channels_;  // GUARDED_BY(mu_)
};

// One stream attempt. Owns itself: deleted in OnDone, after telling the session.
class ControllerSession::Impl::Stream final
    : public grpc::ClientBidiReactor<AgentMessage, ControllerMessage> {
 public:
  Stream(Impl* session, const std::shared_ptr<grpc::Channel>& channel, AgentMessage hello,
         uint64_t epoch)
      : epoch_(epoch), session_(session), stub_(v1::AgentChannel::NewStub(channel)) {
    const ReactorTurn turn(this);
    stub_->async()->Connect(&ctx_, this);
    current_ = std::move(hello);
    writing_ = true;
  }

  // Starts the call: Hello first, then reads. Call once, without holding the session lock.
  void begin() {
    const ReactorTurn turn(this);
    AddHold();   // released when the read side ends; no write starts after that
    operationStarts(&current_);  // the constructor and this, before the first OnWriteDone
    StartWrite(&current_);
    operationStarts(&incoming_);
    StartRead(&incoming_);
    StartCall();
  }

  // False once the stream is closing.
  bool write(const AgentMessage& m) {
    const ReactorTurn turn(this);
    std::lock_guard<std::mutex> lock(mu_);
    if (closing_) return false;
    queue_.push_back(m);
    if (!writing_) startNextWriteLocked();
    return true;
  }

  void cancel() { ctx_.TryCancel(); }

  void OnWriteDone(bool ok) override {
    operationDone(&current_);  // the write's start may have been on another thread
    const ReactorTurn turn(this);
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok) {
      queue_.clear();   // the stream is broken; the read side will end and report it
      return;
    }
    if (!closing_ && !queue_.empty()) startNextWriteLocked();
  }

  void OnReadDone(bool ok) override {
    operationDone(&incoming_);   // the last read's callback may have run on another thread
    if (!ok) {
      {
        const ReactorTurn turn(this);
        std::lock_guard<std::mutex> lock(mu_);
        closing_ = true;
        queue_.clear();
      }
      RemoveHold();   // may run OnDone (and delete this) inline: nothing after it
      return;
    }
    const ReactorTurn turn(this);
    if (incoming_.has_welcome() && !welcomed_) {
      welcomed_ = true;
      session_->onWelcome(this, incoming_.welcome());
    } else if (welcomed_) {
      if (session_->enterCallback(epoch_)) {
        session_->handler_->onMessage(incoming_);
        session_->leaveCallback();
      }
    }
    // Messages before Welcome are a protocol error on the controller's side; ignored.
    operationStarts(&incoming_);
    StartRead(&incoming_);
  }

  void OnDone(const grpc::Status& status) override {
    afterEveryTurn(this);
    Impl* session = session_;
    session->onStreamDone(this, status);
    delete this;
    session->onStreamDeleted();   // the last touch: stop() may return after it
  }

  const uint64_t epoch_;

 private:
  void startNextWriteLocked() {
    writing_ = true;
    current_ = std::move(queue_.front());
    queue_.pop_front();
    operationStarts(&current_);
    StartWrite(&current_);
  }

  Impl* session_;   // outlives every Stream: stop() waits for onStreamDeleted()
  std::unique_ptr<v1::AgentChannel::Stub> stub_;
  grpc::ClientContext ctx_;
  ControllerMessage incoming_;
  bool welcomed_ = false;   // touched only by read reactions, which are serialised

  std::mutex mu_;
  std::deque<AgentMessage> queue_;   // GUARDED_BY(mu_)
  AgentMessage current_;             // GUARDED_BY(mu_): the outstanding write
  bool writing_ = false;             // GUARDED_BY(mu_)
  bool closing_ = false;             // GUARDED_BY(mu_)
};

void ControllerSession::Impl::schedule(std::chrono::milliseconds delay,
                                       std::function<void(Impl*)> fn) {
  std::weak_ptr<Impl> weak = weak_from_this();
  auto id = timers_->schedule(delay, [weak, fn = std::move(fn)] {
    if (auto self = weak.lock()) fn(self.get());
  });
  timers_pending_.push_back(id);
  // Keep the list short: ids of fired timers are harmless to cancel, but need not pile up.
  if (timers_pending_.size() > 8) timers_pending_.erase(timers_pending_.begin());
}

bool ControllerSession::Impl::enterCallback(uint64_t epoch) {
  std::lock_guard<std::mutex> lock(mu_);
  // Not connected_: the Welcome was refused, nothing of that controller reaches the handler.
  if (stopping_ || epoch != epoch_ || !connected_) return false;
  ++busy_;
  return true;
}

void ControllerSession::Impl::leaveCallback() {
  std::lock_guard<std::mutex> lock(mu_);
  --busy_;
  cv_.notify_all();
}

void ControllerSession::Impl::attempt() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || stream_ != nullptr || options_.targets.empty()) return;
    ++busy_;
  }
  AgentMessage hello = handler_->hello();
  std::shared_ptr<grpc::ChannelCredentials> fresh =
      options_.reload_credentials ? options_.reload_credentials() : nullptr;
  Stream* s = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    --busy_;
    cv_.notify_all();
    if (fresh) {   // live streams keep their own reference to the old channel
      options_.credentials = std::move(fresh);
      channels_.assign(channels_.size(), nullptr);
    }
    if (stopping_ || stream_ != nullptr) return;
    ++epoch_;
    connected_ = false;
    size_t index = target_index_ % options_.targets.size();
    if (!channels_[index]) {
      channels_[index] = grpc::CreateCustomChannel(options_.targets[index], options_.credentials,
                                                   agentChannelArguments(options_));
    }
    s = new Stream(this, channels_[index], std::move(hello), epoch_);
    stream_ = s;
    ++live_streams_;
    uint64_t epoch = epoch_;
    schedule(options_.welcome_timeout, [epoch](Impl* self) { self->welcomeTimeout(epoch); });
  }
  // Outside mu_: the stream cannot be deleted before begin() (it holds no call yet), and any
  // reaction that begin() triggers may take mu_.
  s->begin();
}

void ControllerSession::Impl::welcomeTimeout(uint64_t epoch) {
  std::lock_guard<std::mutex> lock(mu_);
  if (epoch != epoch_ || connected_ || stream_ == nullptr) return;
  stream_->cancel();
}

void ControllerSession::Impl::onWelcome(Stream* s, const v1::Welcome& w) {
  const ProtocolVersion theirs =
      peerProtocol(w.has_protocol(), w.protocol().major(), w.protocol().minor());
  if (auto refused = checkPeerProtocol("this agent", "the controller", theirs, options_.protocol);
      !refused.ok()) {
    spdlog::error("controller refused: {}", std::string(refused.message()));
    std::lock_guard<std::mutex> lock(mu_);
    if (s != stream_ || stopping_) return;
    refusal_ = std::string(refused.message());
    stream_->cancel();  // onStreamDone reports the refusal and schedules the retry
    return;
  }
  uint64_t epoch;
  std::string target;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (s != stream_ || stopping_) return;
    connected_ = true;
    backoff_.reset();
    heartbeat_interval_ = w.heartbeat_interval_ms() > 0
                              ? std::chrono::milliseconds(w.heartbeat_interval_ms())
                              : options_.default_heartbeat;
    epoch = epoch_;
    target = options_.targets[target_index_ % options_.targets.size()];
    ++busy_;
  }
  handler_->onConnectedTo(w, target);
  std::lock_guard<std::mutex> lock(mu_);
  --busy_;
  cv_.notify_all();
  if (!stopping_ && epoch == epoch_) {
    schedule(heartbeat_interval_, [epoch](Impl* self) { self->heartbeatTick(epoch); });
  }
}

void ControllerSession::Impl::heartbeatTick(uint64_t epoch) {
  if (!enterCallback(epoch)) return;
  AgentMessage hb = handler_->heartbeat();
  leaveCallback();
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_ || epoch != epoch_ || stream_ == nullptr || !connected_) return;
  stream_->write(hb);
  schedule(heartbeat_interval_, [epoch](Impl* self) { self->heartbeatTick(epoch); });
}

void ControllerSession::Impl::retryTick() { attempt(); }

void ControllerSession::Impl::onStreamDone(Stream* s, const grpc::Status& status) {
  std::chrono::milliseconds delay{0};
  bool notify_handler = false;
  bool was_connected = false;
  std::string reason = describeGrpcStatus(status);
  std::string target, next_target;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (s == stream_ && !refusal_.empty()) reason = std::exchange(refusal_, {});
    if (s == stream_) {
      // Accepted by this session: a Welcome it refused (another major protocol) is a failed
      // attempt like no answer at all, so another replica is tried next.
      was_connected = connected_;
      stream_ = nullptr;
      connected_ = false;
      ++epoch_;   // stale heartbeats and timeouts of this stream do nothing
      if (!stopping_) {
        const size_t n = options_.targets.size();
        target = options_.targets[target_index_ % n];
        // A failed attempt moves on to the next target (the next address family of this
        // controller, then the next replica). After a stream that was connected the same
        // target is tried first: a restarted controller, a renewed certificate, a blip.
        if (!was_connected) target_index_ = (target_index_ + 1) % n;
        next_target = options_.targets[target_index_ % n];
        delay = backoff_.next();
        ++busy_;
        notify_handler = true;
      }
    }
    cv_.notify_all();
  }
  if (!notify_handler) return;
  handler_->onDisconnectedFrom(reason, was_connected, delay, target, next_target);
  std::lock_guard<std::mutex> lock(mu_);
  --busy_;
  cv_.notify_all();
  if (!stopping_) schedule(delay, [](Impl* self) { self->retryTick(); });
}

void ControllerSession::Impl::onStreamDeleted() {
  std::lock_guard<std::mutex> lock(mu_);
  --live_streams_;
  cv_.notify_all();   // under the lock: stop() cannot return (and free us) before we unlock
}

void ControllerSession::Impl::reconnect(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stream_ == nullptr || stopping_) return;
  refusal_ = reason;  // onStreamDone reports it instead of "cancelled"
  stream_->cancel();
}

bool ControllerSession::Impl::send(const AgentMessage& m) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stream_ == nullptr || !connected_ || stopping_) return false;
  return stream_->write(m);
}

void ControllerSession::Impl::stop() {
  std::vector<TimerQueue::Id> timers;
  {
    std::unique_lock<std::mutex> lock(mu_);
    stopping_ = true;
    timers.swap(timers_pending_);
    if (stream_ != nullptr) stream_->cancel();
  }
  for (auto id : timers) timers_->cancel(id);
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return stream_ == nullptr && live_streams_ == 0 && busy_ == 0; });
}

ControllerSession::ControllerSession(SessionOptions options, TimerQueue* timers,
                                     SessionHandler* handler)
    : impl_(std::make_shared<Impl>(std::move(options), timers, handler)) {}

ControllerSession::~ControllerSession() { stop(); }

void ControllerSession::start() { impl_->start(); }
void ControllerSession::stop() { impl_->stop(); }
bool ControllerSession::send(const AgentMessage& m) { return impl_->send(m); }
bool ControllerSession::connected() const { return impl_->connected(); }
void ControllerSession::reconnect(const std::string& reason) { impl_->reconnect(reason); }

}  // namespace bulkhead::agent
