#include "agent/rpc/signal_forwarder.h"

#include <fmt/format.h>

#include <utility>
#include <vector>

namespace bulkhead::agent {

using bulkhead::v1::AgentMessage;

namespace {

SignalResponse notDelivered(std::string why) {
  SignalResponse r;
  r.result = SignalResult::kNotDelivered;
  r.error = fmt::format("not delivered: {}", why);
  return r;
}

std::string seconds(std::chrono::milliseconds d) {
  if (d.count() % 1000 == 0) return fmt::format("{} s", d.count() / 1000);
  return fmt::format("{} ms", d.count());
}

}  // namespace

SignalForwarder::SignalForwarder(TimerQueue* timers, Send send, size_t max_pending)
    : timers_(timers), send_(std::move(send)), max_pending_(max_pending) {}

SignalForwarder::~SignalForwarder() {
  std::map<uint64_t, Pending> left;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    left.swap(pending_);
  }
  for (auto& [id, p] : left) timers_->cancel(p.timer);
  for (auto& [id, p] : left) p.done(notDelivered("the agent is stopping"));
}

void SignalForwarder::submit(v1::Signal signal, std::chrono::milliseconds timeout, Done done) {
  AgentMessage message;
  std::unique_lock lock(mu_);
  if (stopping_ || pending_.size() >= max_pending_) {
    std::string why = stopping_ ? std::string("the agent is stopping")
                                : fmt::format(
                                      "the agent is busy ({} signals waiting for a "
                                      "receipt); retry",
                                      pending_.size());
    lock.unlock();
    done(notDelivered(why));
    return;
  }
  const uint64_t id = next_report_id_++;
  auto* report = message.mutable_signal();
  report->set_report_id(id);
  *report->mutable_signal() = std::move(signal);
  Pending& p = pending_[id];
  p.message = message;
  p.done = std::move(done);
  p.timeout = timeout;
  p.timer = timers_->schedule(timeout, [this, id] { expire(id); });
  if (!connected_) return;  // onConnected sends it
  p.sent = true;
  lock.unlock();
  sendNow(id, message);
}

void SignalForwarder::sendNow(uint64_t id, const AgentMessage& message) {
  for (;;) {
    uint64_t epoch = 0;
    {
      std::lock_guard lock(mu_);
      epoch = connection_epoch_;
    }
    if (send_(message)) return;
    // Not connected after all (the stream is ending). Wait for the next onConnected, unless it
    // already happened while we tried: then it skipped this one (marked sent), so try again.
    std::lock_guard lock(mu_);
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    it->second.sent = false;
    if (!connected_ || connection_epoch_ == epoch) return;
    it->second.sent = true;
  }
}

void SignalForwarder::handleRequestLine(const std::string& line, int64_t now_unix_ms,
                                        std::function<void(std::string)> reply) {
  auto request = decodeSignalRequest(line);
  if (!request.ok()) {
    SignalResponse r;
    r.result = SignalResult::kInvalid;
    r.error = std::string(request.status().message());
    reply(encodeSignalResponse(r));
    return;
  }
  if (request->signal.idempotency_key().empty()) {
    int64_t minute = now_unix_ms / 60'000;
    request->signal.set_idempotency_key(defaultIdempotencyKey(request->signal, minute));
  }
  submit(std::move(request->signal), request->timeout,
         [reply = std::move(reply)](const SignalResponse& r) { reply(encodeSignalResponse(r)); });
}

void SignalForwarder::onConnected() {
  std::vector<std::pair<uint64_t, AgentMessage>> to_send;
  {
    std::lock_guard lock(mu_);
    connected_ = true;
    ++connection_epoch_;
    for (auto& [id, p] : pending_) {
      if (p.sent) continue;
      p.sent = true;
      to_send.emplace_back(id, p.message);
    }
  }
  for (const auto& [id, m] : to_send) sendNow(id, m);
}

void SignalForwarder::onReceipt(const v1::SignalReceipt& receipt) {
  Pending p;
  {
    std::lock_guard lock(mu_);
    auto it = pending_.find(receipt.report_id());
    if (it == pending_.end()) return;  // timed out already, or not ours
    p = std::move(it->second);
    pending_.erase(it);
  }
  timers_->cancel(p.timer);
  SignalResponse r;
  if (!receipt.error().empty()) {
    r.result = SignalResult::kRefused;
    r.error = fmt::format("refused by the controller: {}", receipt.error());
  } else if (receipt.signal_id().empty()) {
    r.result = SignalResult::kRefused;
    r.error = "refused by the controller: a receipt without a signal id";
  } else {
    r.result = SignalResult::kRecorded;
    r.signal_id = receipt.signal_id();
    r.disposition = receipt.disposition();
  }
  p.done(std::move(r));
}

void SignalForwarder::onDisconnected(const std::string& reason) {
  std::vector<Pending> lost;
  {
    std::lock_guard lock(mu_);
    connected_ = false;
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (it->second.sent) {
        lost.push_back(std::move(it->second));
        it = pending_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& p : lost) timers_->cancel(p.timer);
  for (auto& p : lost) {
    p.done(notDelivered(fmt::format(
        "the connection to the controller ended before its receipt ({}); it may have been "
        "recorded: a retry with the same idempotency key is safe",
        reason)));
  }
}

void SignalForwarder::expire(uint64_t id) {
  Pending p;
  {
    std::lock_guard lock(mu_);
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    p = std::move(it->second);
    pending_.erase(it);
  }
  if (p.sent) {
    p.done(notDelivered(fmt::format(
        "no receipt from the controller within {}; it may have been recorded: a retry with "
        "the same idempotency key is safe",
        seconds(p.timeout))));
  } else {
    p.done(notDelivered(fmt::format("the agent is not connected to the controller (waited {})",
                                    seconds(p.timeout))));
  }
}

size_t SignalForwarder::pending() const {
  std::lock_guard lock(mu_);
  return pending_.size();
}

}  // namespace bulkhead::agent
