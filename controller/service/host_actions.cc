#include "controller/service/host_actions.h"

#include <fmt/format.h>

namespace bulkhead::controller {

namespace v1 = bulkhead::v1;

HostActions::HostActions(const Clock& clock, FleetControl& fleet,
                         HostActionsOptions options)
    : clock_(clock), fleet_(fleet), options_(options), thread_("host-actions") {
  fleet_.setCommandListener(
      [this](const std::string& host, const v1::CommandResult& r) { onResult(host, r); });
}

HostActions::~HostActions() { shutdown(); }

void HostActions::shutdown() {
  std::map<std::string, std::pair<std::string, Done>> left;
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  fleet_.setCommandListener(nullptr);
  thread_.stop();
  {
    std::lock_guard lock(mu_);
    left.swap(waiting_);
  }
  for (auto& [id, w] : left) {
    Answer a;
    a.kind = Answer::Kind::kShutdown;
    a.error = "controller shutting down before the agent answered";
    w.second(a);
  }
}

void HostActions::run(const std::string& host, v1::Command command, uint32_t wait_ms, Done done) {
  auto wait = wait_ms == 0 ? options_.default_wait : std::chrono::milliseconds(wait_ms);
  runFor(host, std::move(command), std::min(wait, options_.max_wait), std::move(done));
}

void HostActions::runFor(const std::string& host, v1::Command command,
                         std::chrono::milliseconds wait, Done done) {
  std::string id = command.id();
  bool stopped = false;
  {
    std::lock_guard lock(mu_);
    stopped = stopped_;
    if (!stopped) {
      if (id.empty()) id = fmt::format("action-{}-{}", clock_.nowUnixMs(), next_id_++);
      waiting_[id] = {host, std::move(done)};
    }
  }
  if (stopped) {
    Answer a;
    a.kind = Answer::Kind::kShutdown;
    a.error = "controller shutting down";
    done(a);
    return;
  }
  command.set_id(id);
  command.set_deadline_unix_ms(clock_.nowUnixMs() + wait.count());
  std::string why;
  if (!fleet_.sendCommand(host, std::move(command), &why)) {
    Answer a;
    a.kind = Answer::Kind::kOffline;
    a.error = why;
    answer(id, std::move(a));
    return;
  }
  thread_.after(wait, [this, id, wait] {
    Answer a;
    a.kind = Answer::Kind::kTimeout;
    a.error = fmt::format("no answer from the agent within {} ms (the action may still run)",
                          wait.count());
    answer(id, std::move(a));
  });
}

void HostActions::onResult(const std::string& host, const v1::CommandResult& result) {
  {
    std::lock_guard lock(mu_);
    auto it = waiting_.find(result.command_id());
    if (it == waiting_.end() || it->second.first != host) return;   // not ours, or too late
  }
  Answer a;
  a.kind = Answer::Kind::kDone;
  a.result = result;
  std::string id = result.command_id();
  thread_.post([this, id, a = std::move(a)]() mutable { answer(id, std::move(a)); });
}

void HostActions::answer(const std::string& id, Answer a) {
  Done done;
  {
    std::lock_guard lock(mu_);
    auto it = waiting_.find(id);
    if (it == waiting_.end()) return;   // already answered (result vs timeout)
    done = std::move(it->second.second);
    waiting_.erase(it);
  }
  done(a);
}

}  // namespace bulkhead::controller
