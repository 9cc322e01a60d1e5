#include "controller/notify/notifier.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <set>

#include "common/format.h"
#include "common/identity.h"
#include "common/text.h"
#include "controller/service/audit.h"
#include "controller/service/record_text.h"

namespace bulkhead::controller::notify {

namespace {

constexpr char kPending[] = "pending";
constexpr char kDelivered[] = "delivered";
constexpr char kFailed[] = "failed";

bool worthRetrying(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s) || absl::IsResourceExhausted(s);
}

// Scheme, host and port of a URL: what may be shown of it (a Slack URL's path is its secret).
std::string destinationOf(const std::string& url) {
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return "";
  const size_t host_end = url.find_first_of("/?#", scheme_end + 3);
  std::string out = url.substr(0, host_end);
  // userinfo is a secret too.
  if (const size_t at = out.find('@', scheme_end + 3); at != std::string::npos) {
    out = out.substr(0, scheme_end + 3) + out.substr(at + 1);
  }
  return out;
}

// The row of a delivery's end, for the audit trail.
AuditEntry deliveryRow(int64_t now_ms, const NotificationRow& row, const Event& event,
                       const absl::Status& result, const std::string& detail) {
  const std::string tenant = row.tenant.empty() ? std::string(kDefaultTenant) : row.tenant;
  return callEntry(now_ms,
                   AuditActor{.name = "controller", .tenant = tenant, .incident = event.incident},
                   kNotifyAction, row.channel, row.event_id, result, detail);
}

}  // namespace

Notifier::Notifier(Store& store, const Clock& clock, Transport& transport,
                   std::vector<Channel> channels, NotifierOptions options)
    : store_(store),
      clock_(clock),
      transport_(transport),
      options_(options),
      channels_(std::move(channels)) {}

Notifier::~Notifier() { stop(); }

void Notifier::start() {
  if (scheduler_) return;
  // The cursor is placed now, on the caller's thread: every row written after start() returns
  // is routed, even one written before the first pass.
  if (auto s = placeCursor(); !s.ok()) {
    spdlog::warn("notifications: {} (tried again at the first pass)", s);
  }
  scheduler_ = std::make_unique<Scheduler>("bh-notify");
  scheduler_->every(options_.poll, [this] {
    if (options_.runs && !options_.runs()) return;
    if (auto s = runOnce(); !s.ok()) spdlog::warn("notifications: {} (tried again)", s);
  });
}

void Notifier::stop() {
  if (scheduler_) scheduler_->stop();
}

void Notifier::setChannels(std::vector<Channel> channels) {
  std::lock_guard lock(mu_);
  channels_ = std::move(channels);
}

std::vector<Channel> Notifier::snapshot() {
  std::lock_guard lock(mu_);
  return channels_;
}

absl::Status Notifier::runOnce() {
  if (auto s = route(); !s.ok()) return s;
  return deliver();
}

absl::Status Notifier::placeCursor() {
  auto cursor = store_.notifyCursor();
  if (!cursor.ok()) return cursor.status();
  if (cursor->has_value()) return absl::OkStatus();
  // The first start: from the trail's end; what happened before is not announced.
  auto last = store_.listAudit(1);
  if (!last.ok()) return last.status();
  return store_.queueNotifications({}, last->empty() ? 0 : last->back().id);
}

absl::Status Notifier::route() {
  if (auto s = placeCursor(); !s.ok()) return s;
  auto cursor = store_.notifyCursor();
  if (!cursor.ok()) return cursor.status();
  if (!cursor->has_value()) return absl::InternalError("the notification cursor was not placed");
  int64_t at = **cursor;
  const std::vector<Channel> channels = snapshot();
  while (true) {
    auto rows = store_.listAuditAfter(at, options_.batch);
    if (!rows.ok()) return rows.status();
    if (rows->empty()) return absl::OkStatus();
    std::vector<NotificationRow> queued;
    const int64_t now = clock_.nowUnixMs();
    for (const AuditEntry& row : *rows) {
      const std::optional<Event> event = eventOfAuditRow(row);
      if (!event) continue;
      for (const Channel& c : channels) {
        if (!wants(c, *event)) continue;
        queued.push_back(NotificationRow{.channel = c.name,
                                         .event_id = event->id,
                                         .tenant = event->tenant,
                                         .kind = event->kind,
                                         .severity = std::string(severityName(event->severity)),
                                         .event = eventJson(*event),
                                         .created_unix_ms = now,
                                         .next_attempt_unix_ms = now});
      }
    }
    at = rows->back().id;
    if (auto s = store_.queueNotifications(queued, at); !s.ok()) return s;
    if (rows->size() < options_.batch) return absl::OkStatus();
  }
}

int64_t Notifier::retryAt(int64_t now_ms, int attempts) const {
  int64_t delay = options_.first_retry.count();
  for (int i = 1; i < attempts && delay < options_.max_retry.count(); ++i) delay *= 2;
  return now_ms + std::min<int64_t>(delay, options_.max_retry.count());
}

absl::Status Notifier::deliver() {
  auto due = store_.dueNotifications(clock_.nowUnixMs(), options_.batch);
  if (!due.ok()) return due.status();
  std::map<std::string, Channel> by_name;
  for (Channel& c : snapshot()) by_name.emplace(c.name, std::move(c));
  // A channel that failed once in this pass is not tried again in it: its other deliveries
  // wait for the next pass rather than each wait for the same timeout.
  std::set<std::string> failing;
  for (NotificationRow& row : *due) {
    if (failing.count(row.channel)) continue;
    auto event = parseEventJson(row.event);
    absl::Status result;
    const auto channel = by_name.find(row.channel);
    if (!event.ok()) {
      result = absl::DataLossError(
          fmt::format("the queued event does not read: {}", event.status().message()));
    } else if (channel == by_name.end()) {
      result =
          absl::NotFoundError(fmt::format("channel \"{}\" is no longer configured", row.channel));
    } else {
      result = transport_.send(channel->second, *event);
    }
    const int64_t now = clock_.nowUnixMs();
    ++row.attempts;
    std::optional<AuditEntry> audit;
    const Event told = event.ok() ? *event : Event{};
    if (result.ok()) {
      row.state = kDelivered;
      row.last_error.clear();
      audit = deliveryRow(now, row, told, result,
                          fmt::format("{} delivered ({} attempt{})", row.kind, row.attempts,
                                      row.attempts == 1 ? "" : "s"));
    } else if (worthRetrying(result) &&
               now - row.created_unix_ms < options_.give_up_after.count()) {
      failing.insert(row.channel);
      row.last_error = std::string(result.message());
      row.next_attempt_unix_ms = retryAt(now, row.attempts);
      spdlog::info("notification {} to {}: attempt {} failed, next at {}: {}", row.event_id,
                   row.channel, row.attempts, utcTimeText(row.next_attempt_unix_ms), result);
    } else {
      failing.insert(row.channel);
      row.state = kFailed;
      row.last_error = std::string(result.message());
      const std::string why = worthRetrying(result)
                                  ? fmt::format("gave up after {} attempts", row.attempts)
                                  : "refused for good";
      audit =
          deliveryRow(now, row, told, result, fmt::format("{} not delivered: {}", row.kind, why));
      spdlog::warn("notification {} to {} not delivered ({}): {}", row.event_id, row.channel, why,
                   result);
    }
    if (auto s = store_.updateNotification(row, audit); !s.ok()) return s;
  }
  return absl::OkStatus();
}

std::vector<ChannelSummary> Notifier::channels() {
  std::map<std::string, std::map<std::string, int64_t>> counts;
  if (auto listed = store_.countNotifications(); listed.ok()) {
    for (const NotificationCount& c : *listed) counts[c.channel][c.state] = c.count;
  } else {
    spdlog::warn("notifications: cannot count the queue: {}", listed.status());
  }
  std::vector<ChannelSummary> out;
  for (const Channel& c : snapshot()) {
    ChannelSummary s{.name = c.name,
                     .type = std::string(channelTypeName(c.type)),
                     .tenant = c.tenant,
                     .destination = destinationOf(c.type == ChannelType::kEmail ? c.smtp : c.url),
                     .kinds = {c.kinds.begin(), c.kinds.end()},
                     .min_severity = std::string(severityName(c.min_severity))};
    const auto& of = counts[c.name];
    auto count = [&](const char* state) {
      const auto it = of.find(state);
      return it == of.end() ? int64_t{0} : it->second;
    };
    s.pending = count(kPending);
    s.delivered = count(kDelivered);
    s.failed = count(kFailed);
    out.push_back(std::move(s));
  }
  return out;
}

absl::Status Notifier::sendTest(const std::string& channel, const std::string& tenant,
                                const std::string& requested_by) {
  std::optional<Channel> found;
  for (Channel& c : snapshot()) {
    if (c.name == channel) found = std::move(c);
  }
  if (!found) {
    return absl::NotFoundError(
        fmt::format("unknown notification channel \"{}\"", escapeNonPrintable(channel)));
  }
  const int64_t now = clock_.nowUnixMs();
  const Event event{.id = fmt::format("test-{}-{}", channel, now),
                    .kind = "test",
                    .severity = Severity::kInfo,
                    .tenant = tenant,
                    .at_unix_ms = now,
                    .actor = requested_by,
                    .action = "notify-test",
                    .target = channel,
                    .reason = "bulkhead notify test",
                    .outcome = "ok",
                    .detail = "a test of this channel: nothing happened on any host"};
  return transport_.send(*found, event);
}

}  // namespace bulkhead::controller::notify
