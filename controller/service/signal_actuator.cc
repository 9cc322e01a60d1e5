#include "controller/service/signal_actuator.h"

#include <map>
#include <memory>
#include <mutex>

#include "common/format.h"

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;
using ActionDone = std::function<void(const absl::Status&, const std::string&)>;

// Joins `parts` sub-requests: the first error wins, else the counts of the parts' summaries
// ("enforced" x3 -> "3 enforced"). `done` runs once, when the last part ends.
class Join {
 public:
  Join(size_t parts, ActionDone done) : left_(parts), done_(std::move(done)) {}
  void part(const absl::Status& status, const std::string& summary) {
    std::unique_lock lock(mu_);
    if (!status.ok() && error_.ok()) error_ = status;
    if (status.ok()) ++counts_[summary];
    if (--left_ != 0) return;
    std::string text;
    for (const auto& [what, n] : counts_) {
      // "3 hosts ok" for three kills; "hosts 3 enforced" for one block, "2x hosts 3 enforced"
      // for two
      text += fmt::format("{}{}{}", text.empty() ? "" : "; ",
                          n > 1 ? fmt::format("{}{}", n, what == "hosts ok" ? " " : "x ") : "",
                          n > 1 || what != "hosts ok" ? what : "host ok");
    }
    absl::Status error = error_;
    lock.unlock();
    done_(error, text);
  }

 private:
  std::mutex mu_;
  size_t left_;
  absl::Status error_;
  std::map<std::string, int> counts_;
  ActionDone done_;
};

// "hosts 2 enforced, 1 pending" from a containment result.
std::string hostStates(const ContainmentResult& result) {
  std::map<std::string, int> states;
  for (const v1::HostOutcome& o : result.outcomes) {
    ++states[o.state() == v1::HostOutcome::STATE_ENFORCED  ? "enforced"
             : o.state() == v1::HostOutcome::STATE_PENDING ? "pending"
                                                           : "failed"];
  }
  std::string text;
  for (const auto& [what, n] : states) {
    text += fmt::format("{}{} {}", text.empty() ? "" : ", ", n, what);
  }
  return text.empty() ? "no host" : "hosts " + text;
}

// A Join over `parts` parts; none: `done` now, and null.
std::shared_ptr<Join> joinOf(size_t parts, ActionDone& done) {
  if (parts == 0) {
    done(absl::OkStatus(), "nothing to act on");
    return nullptr;
  }
  return std::make_shared<Join>(parts, std::move(done));
}

}  // namespace

void ServiceActuator::start(const Caller& caller, const PlannedAction& action,
                            const std::string& reason, ActionDone done) {
  switch (action.kind) {
    case ActionKind::kBlock:
    case ActionKind::kUnblock: {
      auto join = joinOf(action.addresses.size(), done);
      if (!join) return;
      const bool unblock = action.kind == ActionKind::kUnblock;
      for (const Cidr& cidr : action.addresses) {
        auto finished = [join, unblock](const absl::Status& s, const ContainmentResult& r) {
          // The end of a detection whose block never was (suppressed, expired, or a CrowdSec
          // decision older than this controller): nothing to undo is not a failure.
          if (unblock && absl::IsNotFound(s)) {
            join->part(absl::OkStatus(), "nothing was blocked");
          } else {
            join->part(s, hostStates(r));
          }
        };
        if (action.kind == ActionKind::kBlock) {
          BlockRequest req{.hosts = action.fleet_wide ? std::vector<std::string>{} : action.hosts,
                           .all = action.fleet_wide,
                           .remote_cidr = cidr.toString(),
                           .protocol = v1::PROTOCOL_ANY,
                           .direction = v1::DIRECTION_BOTH,
                           .ttl_ms = action.ttl.count(),
                           .reason = reason};
          containment_.block(caller, std::move(req), finished);
        } else {
          UnblockRequest req{.hosts = action.fleet_wide ? std::vector<std::string>{} : action.hosts,
                             .all = action.fleet_wide,
                             .remote_cidr = cidr.toString(),
                             .protocol = v1::PROTOCOL_ANY,
                             .direction = v1::DIRECTION_BOTH,
                             .reason = reason};
          containment_.unblock(caller, std::move(req), finished);
        }
      }
      return;
    }
    case ActionKind::kIsolate: {
      IsolateRequest req{.hosts = action.hosts,
                         .exempt_sets = action.exempt_sets,
                         .ttl_ms = action.ttl.count(),
                         .reason = reason};
      containment_.isolate(
          caller, std::move(req),
          [done = std::move(done)](const absl::Status& s, const ContainmentResult& r) {
            done(s, hostStates(r));
          });
      return;
    }
    case ActionKind::kRelease: {
      ReleaseRequest req{.hosts = action.hosts, .reason = reason};
      containment_.release(
          caller, std::move(req),
          [done = std::move(done)](const absl::Status& s, const ContainmentResult& r) {
            done(s, hostStates(r));
          });
      return;
    }
    case ActionKind::kKillConnections:
    case ActionKind::kKillSessions:
    case ActionKind::kStopCaptureKill: {
      auto join = joinOf(action.hosts.size() * action.addresses.size(), done);
      if (!join) return;
      for (const std::string& host : action.hosts) {
        for (const Cidr& cidr : action.addresses) {
          auto finished = [join](const absl::Status& s, const HostActionResult& r) {
            join->part(s.ok() && !r.ok ? absl::InternalError(r.host_id + ": " + r.error) : s,
                       "hosts ok");
          };
          if (action.kind == ActionKind::kKillConnections) {
            operations_.killConnections(
                caller,
                KillConnectionsRequest{
                    .host = host, .remote_cidr = cidr.toString(), .reason = reason},
                finished);
          } else {
            KillSessionsRequest req{.host = host, .reason = reason};
            req.match.set_from_cidr(cidr.toString());
            // The agent stops, captures, then kills (killed even if the capture fails; the
            // failure is this part's error).
            req.match.set_capture_first(action.kind == ActionKind::kStopCaptureKill);
            operations_.killSessions(caller, req, finished);
          }
        }
      }
      return;
    }
    case ActionKind::kCapture:
    case ActionKind::kCaptureThenIsolate: {
      auto join = joinOf(action.hosts.size(), done);
      if (!join) return;
      for (const std::string& host : action.hosts) {
        auto captured = [this, caller, action, reason, host, join](
                            const absl::Status& s, const std::optional<StoredEvidence>& evidence) {
          if (action.kind == ActionKind::kCapture) {
            return join->part(s, s.ok() && evidence ? "captured" : "");
          }
          // Isolates whatever the capture's outcome: a failed capture must not leave the host
          // connected. The capture's failure is reported with the isolation's outcome.
          std::string captured_text = s.ok() && evidence
                                          ? "captured " + evidence->row.id.substr(0, 12)
                                          : fmt::format("capture failed ({})", s);
          IsolateRequest req{.hosts = {host},
                             .exempt_sets = action.exempt_sets,
                             .ttl_ms = action.ttl.count(),
                             .reason = reason};
          containment_.isolate(
              caller, std::move(req),
              [join, captured_text](const absl::Status& is, const ContainmentResult& r) {
                join->part(is, captured_text + ", isolated: " + hostStates(r));
              });
        };
        evidence_.capture(
            caller, CaptureRequest{.host = host, .reason = reason},
            [](const v1::CommandProgress&) {}, captured);
      }
      return;
    }
  }
  done(absl::InternalError("unknown action"), "");
}

}  // namespace bulkhead::controller
