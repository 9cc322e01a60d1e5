// Forwards local tools' signals on the controller stream (AgentMessage.signal, a SignalReport
// with a report id of our choosing) and answers each with the controller's SignalReceipt of
// the same report id, or with a failure:
//   - not connected: the signal waits (unsent) until the stream comes up or its timeout;
//   - sent, then the stream drops before the receipt: "not delivered" at once (the signal may
//     or may not be recorded; a retry with the same idempotency key is safe);
//   - no receipt within the timeout: "not delivered".
// Nothing is answered "recorded" without the controller's receipt. Nothing is re-sent by the
// agent itself: the local tool decides whether to retry.
//
// Thread safety: every method may be called from any thread. The session's handler calls
// onConnected/onReceipt/onDisconnected; `send` is called without the forwarder's lock held.
// `done` callbacks run without the lock, on the caller's or the timer thread, exactly once.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "agent/core/signal.h"
#include "agent/rpc/timer_queue.h"
#include "bulkhead/v1/agent.pb.h"

namespace bulkhead::agent {

class SignalForwarder {
 public:
  // Writes on the current stream; false if there is none (ControllerSession::send).
  using Send = std::function<bool(const bulkhead::v1::AgentMessage&)>;
  using Done = std::function<void(SignalResponse)>;

  // `timers` must outlive the forwarder. At most `max_pending` signals wait for a receipt;
  // one more is answered "not delivered" at once.
  SignalForwarder(TimerQueue* timers, Send send, size_t max_pending = 256);
  // Answers every signal still waiting "not delivered: the agent is stopping".
  ~SignalForwarder();

  SignalForwarder(const SignalForwarder&) = delete;
  SignalForwarder& operator=(const SignalForwarder&) = delete;

  // Sends `signal` (already checked: checkLocalSignal) now if connected, else once connected;
  // `done` gets the outcome within `timeout`.
  void submit(bulkhead::v1::Signal signal, std::chrono::milliseconds timeout, Done done);

  // One request line of the signal socket, answered through `reply` with one response line:
  // decodes it (an invalid one is answered "invalid" at once), gives a signal without an
  // idempotency key the default one (defaultIdempotencyKey with `now_unix_ms`' minute), and
  // submits it.
  void handleRequestLine(const std::string& line, int64_t now_unix_ms,
                         std::function<void(std::string)> reply);

  // Session events.
  void onConnected();
  void onReceipt(const bulkhead::v1::SignalReceipt& receipt);
  void onDisconnected(const std::string& reason);

  size_t pending() const;

 private:
  struct Pending {
    bulkhead::v1::AgentMessage message;
    Done done;
    std::chrono::milliseconds timeout{0};
    TimerQueue::Id timer = 0;
    bool sent = false;
  };
  void sendNow(uint64_t id, const bulkhead::v1::AgentMessage& message);
  void expire(uint64_t id);

  TimerQueue* timers_;
  Send send_;
  const size_t max_pending_;

  mutable std::mutex mu_;
  std::map<uint64_t, Pending> pending_;  // GUARDED_BY(mu_): by report id
  uint64_t next_report_id_ = 1;          // GUARDED_BY(mu_)
  bool connected_ = false;               // GUARDED_BY(mu_)
  uint64_t connection_epoch_ = 0;        // GUARDED_BY(mu_): bumps with every onConnected
  bool stopping_ = false;                // GUARDED_BY(mu_)
};

}  // namespace bulkhead::agent
