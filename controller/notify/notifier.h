// The notifier: routes the audit trail's events to the channels and delivers them, durably.
//
// Each pass (every `poll`, on its own thread) first routes: the audit rows after the store's
// cursor are read in order, each event (events.h) is queued once for every channel that wants
// it (channels.h), and the cursor moves past them, in one transaction. Then it delivers: each
// queued delivery that is due is sent through the Transport; a delivery that fails is tried
// again after a backoff (first_retry, doubling up to max_retry) until it is delivered or
// `give_up_after` has passed since it was queued, or the channel refuses it for good. Its end,
// delivered or failed, is an audit row ("notify", target the channel, reason the event id).
//
// So containment never waits on a channel (it only writes its audit row, as always), nothing
// on record is lost across a restart (the queue and the cursor are in the store), and an event
// reaches a channel once (the queue's (channel, event id) is unique; a receiver that sees a
// retry of a delivery whose answer was lost dedupes by the event id). At the first start the
// cursor is set to the trail's last row (start()): the past is not announced.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/scheduler.h"
#include "controller/core/clock.h"
#include "controller/notify/channels.h"
#include "controller/notify/events.h"
#include "controller/service/notifications.h"
#include "controller/store/store.h"

namespace bulkhead::controller::notify {

// Sends one event over one channel. Blocking, bounded by the transport's own time limits;
// thread-safe. OK: delivered. UNAVAILABLE, DEADLINE_EXCEEDED or RESOURCE_EXHAUSTED: worth
// trying again (unreachable, a timeout, HTTP 408, 429 or 5xx, SMTP 4xx). Any other code: the
// channel refuses it for good (HTTP 4xx, SMTP 5xx, a secret file that cannot be read), said
// in the message.
class Transport {
 public:
  virtual ~Transport() = default;
  virtual absl::Status send(const Channel& channel, const Event& event) = 0;
};

struct NotifierOptions {
  std::chrono::milliseconds poll{1000};
  std::chrono::milliseconds first_retry{2000};
  std::chrono::milliseconds max_retry{std::chrono::minutes(5)};
  std::chrono::milliseconds give_up_after{std::chrono::hours(24)};
  size_t batch = 500;  // audit rows read, and deliveries tried, per pass at most
  // Whether this controller delivers now (several controllers on one database: the one holding
  // the singleton lock). Null: always.
  std::function<bool()> runs;
};

class Notifier final : public NotificationBackend {
 public:
  // `store`, `clock` and `transport` must outlive the notifier.
  Notifier(Store& store, const Clock& clock, Transport& transport, std::vector<Channel> channels,
           NotifierOptions options = {});
  ~Notifier() override;  // stop()

  // Places the cursor at the trail's end if it has none (the first start), then starts the
  // passes on the notifier's own thread. Call it before the controller takes calls: every
  // audit row written after it returns is announced.
  void start();
  // Ends the passes; a pass under way finishes its current delivery. Idempotent.
  void stop();
  // Replaces the channels (a reload); deliveries queued for a channel no longer there fail,
  // audited, at their next attempt.
  void setChannels(std::vector<Channel> channels);

  // One pass: route, then deliver what is due. A store error ends the pass (the next pass
  // starts again where the cursor is). Called by the thread; tests call it directly.
  absl::Status runOnce();

  // NotificationBackend: every channel, with its queue's counts; a test event sent at once.
  std::vector<ChannelSummary> channels() override;
  absl::Status sendTest(const std::string& channel, const std::string& tenant,
                        const std::string& requested_by) override;

 private:
  // At the first start, sets the cursor to the trail's last row; else does nothing.
  absl::Status placeCursor();
  absl::Status route();
  absl::Status deliver();
  std::vector<Channel> snapshot();
  // When a failed delivery after `attempts` attempts is tried next.
  int64_t retryAt(int64_t now_ms, int attempts) const;

  Store& store_;
  const Clock& clock_;
  Transport& transport_;
  const NotifierOptions options_;
  std::mutex mu_;
  std::vector<Channel> channels_;  // GUARDED_BY(mu_)
  std::unique_ptr<Scheduler> scheduler_;
};

}  // namespace bulkhead::controller::notify
