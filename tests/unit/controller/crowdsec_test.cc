// controller/crowdsec/: the LAPI stream parser, the decision -> signal mapping, the poller
// (with a fake fetch and a fake intake) and the HTTP fetch against a local httplib server.
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "common/pki/pki.h"
#include "controller/crowdsec/decisions.h"
#include "controller/crowdsec/poller.h"
#include "gtest/gtest.h"

namespace bulkhead::controller::crowdsec {
namespace {

namespace v1 = bulkhead::v1;

// As CrowdSec 1.4.6 answers (seen in the lab, tests/integration/test_detection_tools.py).
constexpr char kEmpty[] = R"({"new":null,"deleted":null})";
constexpr char kTwoNew[] = R"({"deleted":null,"new":[
  {"duration":"59.981466914s","id":1,"origin":"cscli",
   "scenario":"manual 'ban' from 'bulkhead-lab'","scope":"Ip","type":"ban","value":"10.77.0.66"},
  {"duration":"3h59m58s","id":2,"origin":"cscli","scenario":"manual 'ban' from 'bulkhead-lab'",
   "scope":"Range","type":"ban","value":"10.77.9.0/24"}]})";

TEST(CrowdSecParse, NullAndMissingListsAreEmpty) {
  for (const char* body : {kEmpty, "{}", R"({"new":[],"deleted":[]})"}) {
    auto a = parseStreamAnswer(body);
    ASSERT_TRUE(a.ok()) << body << ": " << a.status();
    EXPECT_TRUE(a->added.empty());
    EXPECT_TRUE(a->deleted.empty());
  }
}

TEST(CrowdSecParse, RealShape) {
  auto a = parseStreamAnswer(kTwoNew);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->added.size(), 2u);
  EXPECT_TRUE(a->deleted.empty());
  const Decision& d = a->added[0];
  EXPECT_EQ(d.id, 1);
  EXPECT_EQ(d.origin, "cscli");
  EXPECT_EQ(d.type, "ban");
  EXPECT_EQ(d.scope, "Ip");
  EXPECT_EQ(d.value, "10.77.0.66");
  EXPECT_EQ(d.duration_ms, 59981);
  EXPECT_FALSE(d.simulated);
  EXPECT_EQ(a->added[1].duration_ms, (3 * 3600 + 59 * 60 + 58) * 1000);
  // Later versions add fields (until, uuid, simulated): read or ignored.
  auto later = parseStreamAnswer(
      R"({"new":null,"deleted":[{"duration":"-6.2s","id":3,"origin":"cscli","scenario":"x",
          "scope":"Ip","type":"ban","value":"10.77.0.66","until":"2026-12-04T03:00:00Z",
          "uuid":"abc","simulated":false}]})");
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_EQ(later->deleted.at(0).duration_ms, -6200);
}

TEST(CrowdSecParse, RefusesWhatIsNotTheShape) {
  for (const char* body :
       {"", "not json", "[]", "null", R"({"new":{}})", R"({"new":"x"})", R"({"deleted":[1]})",
        R"({"new":[{"id":"1","scope":"Ip","value":"1.2.3.4","type":"ban","duration":"1s"}]})",
        R"({"new":[{"id":1,"value":"1.2.3.4","type":"ban","duration":"1s"}]})",
        R"({"new":[{"id":1,"scope":"Ip","value":"1.2.3.4","type":"ban"}]})",
        R"({"new":[{"id":1,"scope":"Ip","value":"1.2.3.4","type":"ban","duration":"10"}]})",
        R"({"new":[{"id":1,"scope":"Ip","value":7,"type":"ban","duration":"1s"}]})",
        R"({"new":[{"id":1,"scope":"Ip","value":"1.2.3.4","type":"ban","duration":"1s",
            "simulated":"yes"}]})",
        R"({"new":null,"deleted":null)"}) {
    auto a = parseStreamAnswer(body);
    EXPECT_TRUE(absl::IsInvalidArgument(a.status())) << body;
  }
}

TEST(CrowdSecParse, GoDurations) {
  struct Case {
    const char* text;
    int64_t ms;
  };
  for (Case c : {Case{"0s", 0}, Case{"0", 0}, Case{"1s", 1000}, Case{"3m59.9s", 239900},
                 Case{"1h2m", 3720000}, Case{"4h", 14400000}, Case{"-6.2s", -6200},
                 Case{"-3h2m1s", -10921000}, Case{"500ms", 500}, Case{"1.5h", 5400000},
                 Case{"59.981466914s", 59981}, Case{"1500us", 1}, Case{"1500\xC2\xB5s", 1},
                 Case{"999999ns", 0}, Case{"2h45m0.5s", 9900500}}) {
    auto ms = parseGoDuration(c.text);
    ASSERT_TRUE(ms.ok()) << c.text << ": " << ms.status();
    EXPECT_EQ(*ms, c.ms) << c.text;
  }
  for (const char* bad : {"", "-", "s", "10", "1x", "1h-2m", "h1", "1..2s", "99999999999999h"}) {
    EXPECT_FALSE(parseGoDuration(bad).ok()) << bad;
  }
}

Decision decision(int64_t id, std::string scope, std::string value, int64_t duration_ms = 60000,
                  std::string type = "ban") {
  return Decision{.id = id,
                  .origin = "cscli",
                  .type = std::move(type),
                  .scope = std::move(scope),
                  .value = std::move(value),
                  .scenario = "crowdsecurity/ssh-bf",
                  .duration_ms = duration_ms};
}

TEST(CrowdSecSignal, IpAndRangeBecomeSignals) {
  Conversion c = toSignal(decision(7, "Ip", "10.77.0.66", 239900), false, "abc");
  ASSERT_TRUE(c.signal);
  const v1::Signal& s = *c.signal;
  EXPECT_EQ(s.source(), v1::SIGNAL_SOURCE_CROWDSEC);
  EXPECT_EQ(s.rule(), "crowdsecurity/ssh-bf");
  ASSERT_EQ(s.addresses_size(), 1);
  EXPECT_EQ(s.addresses(0), "10.77.0.66/32");
  EXPECT_EQ(s.ttl_seconds(), 240u);  // rounded up
  EXPECT_EQ(s.idempotency_key(), "crowdsec:7");
  EXPECT_FALSE(s.resolved());
  EXPECT_EQ(s.payload_sha256(), "abc");
  EXPECT_EQ(s.labels().at("decision_id"), "7");
  EXPECT_EQ(s.labels().at("origin"), "cscli");

  Conversion r = toSignal(decision(8, "Range", "10.77.9.0/24", -5000), true, "");
  ASSERT_TRUE(r.signal);
  EXPECT_EQ(r.signal->addresses(0), "10.77.9.0/24");
  EXPECT_TRUE(r.signal->resolved());
  EXPECT_EQ(r.signal->ttl_seconds(), 0u);
  EXPECT_EQ(r.signal->idempotency_key(), "crowdsec:8:deleted");

  EXPECT_EQ(toSignal(decision(9, "ip", "fd77::66"), false, "").signal->addresses(0),
            "fd77::66/128");
  EXPECT_EQ(toSignal(decision(10, "Ip", "10.77.0.66", 1), false, "").signal->ttl_seconds(), 1u);
  EXPECT_EQ(toSignal(decision(11, "Ip", "10.77.0.66", -1), false, "").signal->ttl_seconds(), 1u);
}

TEST(CrowdSecSignal, OtherScopesTypesAndSimulatedAreSkipped) {
  EXPECT_EQ(toSignal(decision(1, "Country", "FR"), false, "").skipped, Skip::kScope);
  EXPECT_EQ(toSignal(decision(1, "AS", "12345"), false, "").skipped, Skip::kScope);
  EXPECT_EQ(toSignal(decision(1, "Username", "root"), false, "").skipped, Skip::kScope);
  EXPECT_EQ(toSignal(decision(1, "Ip", "10.77.0.66", 1000, "captcha"), false, "").skipped,
            Skip::kType);
  Decision sim = decision(1, "Ip", "10.77.0.66");
  sim.simulated = true;
  EXPECT_EQ(toSignal(sim, false, "").skipped, Skip::kSimulated);
  EXPECT_EQ(toSignal(decision(1, "Ip", "10.77.0.0/24"), false, "").skipped, Skip::kBadValue);
  EXPECT_EQ(toSignal(decision(1, "Range", "10.77.0.1"), false, "").skipped, Skip::kBadValue);
  EXPECT_EQ(toSignal(decision(1, "Range", "10.77.0.1/24"), false, "").skipped, Skip::kBadValue);
  EXPECT_EQ(toSignal(decision(1, "Ip", "nope"), false, "").skipped, Skip::kBadValue);
  EXPECT_FALSE(toSignal(decision(1, "Ip", "nope"), false, "").signal);
}

// ---- the poller ----------------------------------------------------------------------------

class FakeIntake : public SignalIntake {
 public:
  void submit(SignalDelivery from, v1::Signal signal, SignalDone done) override {
    std::lock_guard lock(mu);
    delivered_by = from.delivered_by;
    if (!refuse.ok()) {
      done(refuse);
      return;
    }
    signals.push_back(signal);
    done(SignalOutcome{.signal_id = "sig-" + std::to_string(signals.size()),
                       .disposition = v1::SIGNAL_DISPOSITION_ACTED});
  }
  std::vector<std::string> summary() {
    std::lock_guard lock(mu);
    std::vector<std::string> out;
    for (const auto& s : signals) {
      out.push_back(s.idempotency_key() + " " + s.addresses(0) + (s.resolved() ? " resolved" : ""));
    }
    signals.clear();
    return out;
  }
  std::mutex mu;
  std::vector<v1::Signal> signals;
  std::string delivered_by;
  absl::Status refuse;
};

// Answers from a script; records whether each request asked for startup=true.
struct ScriptedLapi {
  std::deque<FetchResult> answers;
  std::vector<bool> startups;
  Fetch fetch() {
    return [this](bool startup) {
      startups.push_back(startup);
      if (answers.empty()) return FetchResult{.status = 200, .body = kEmpty, .answered = true};
      FetchResult r = answers.front();
      answers.pop_front();
      return r;
    };
  }
  void ok(std::string body) {
    answers.push_back(FetchResult{.status = 200, .body = std::move(body), .answered = true});
  }
};

std::string stream(const std::string& added, const std::string& deleted) {
  return "{\"new\":" + (added.empty() ? "null" : "[" + added + "]") +
         ",\"deleted\":" + (deleted.empty() ? "null" : "[" + deleted + "]") + "}";
}
std::string ip(int id, const std::string& value, const std::string& duration = "59s",
               const std::string& scope = "Ip") {
  return "{\"duration\":\"" + duration + "\",\"id\":" + std::to_string(id) +
         ",\"origin\":\"cscli\",\"scenario\":\"manual\",\"scope\":\"" + scope +
         "\",\"type\":\"ban\",\"value\":\"" + value + "\"}";
}

using Strings = std::vector<std::string>;

TEST(CrowdSecPoller, StartupFirstThenNewAndDeleted) {
  FakeIntake intake;
  ScriptedLapi lapi;
  lapi.ok(
      stream(ip(1, "10.77.0.66"), ip(0, "10.77.0.70", "-2h") + "," + ip(-1, "10.77.0.71", "-25h")));
  lapi.ok(stream(ip(2, "10.77.9.0/24", "1m", "Range") + "," + ip(3, "FR", "1m", "Country"), ""));
  lapi.ok(stream("", ip(1, "10.77.0.66", "-1s")));
  lapi.ok(stream("", ip(1, "10.77.0.66", "-2s")));  // the LAPI's 2 s overlap lists it again
  Poller poller(intake, "crowdsec:127.0.0.1:8080", lapi.fetch(), {});
  ASSERT_TRUE(poller.pollOnce());
  EXPECT_EQ(intake.delivered_by, "crowdsec:127.0.0.1:8080");
  // An old deletion from the startup answer is passed on (it may have ended while the
  // controller was down); unblocking what is not blocked is a no-op.
  EXPECT_EQ(intake.summary(),
            (Strings{"crowdsec:1 10.77.0.66/32", "crowdsec:0:deleted 10.77.0.70/32 resolved"}));
  ASSERT_TRUE(poller.pollOnce());
  EXPECT_EQ(intake.summary(), (Strings{"crowdsec:2 10.77.9.0/24"}));
  ASSERT_TRUE(poller.pollOnce());
  EXPECT_EQ(intake.summary(), (Strings{"crowdsec:1:deleted 10.77.0.66/32 resolved"}));
  ASSERT_TRUE(poller.pollOnce());
  EXPECT_EQ(intake.summary(), Strings{});
  EXPECT_EQ(lapi.startups, (std::vector<bool>{true, false, false, false}));
  PollerStats st = poller.stats();
  EXPECT_EQ(st.startups, 1u);
  EXPECT_EQ(st.polls, 4u);
  EXPECT_EQ(st.skipped["scope"], 1u);
  EXPECT_EQ(st.skipped["ended long ago"], 1u);  // beyond startup_deleted_max_age
  EXPECT_EQ(st.repeated, 1u);
}

TEST(CrowdSecPoller, FailuresChangeNothingAndAreRetried) {
  FakeIntake intake;
  ScriptedLapi lapi;
  lapi.answers.push_back(FetchResult{.status = 0, .error = "Connection", .answered = false});
  lapi.answers.push_back(
      FetchResult{.status = 403, .body = R"({"message":"access forbidden"})", .answered = true});
  lapi.ok(stream(ip(1, "10.77.0.66"), ""));  // the startup answer
  lapi.answers.push_back(FetchResult{.status = 403, .answered = true});
  lapi.answers.push_back(FetchResult{.status = 503, .answered = true});
  lapi.ok(stream(ip(2, "10.77.0.67"), ""));
  Poller poller(intake, "crowdsec:x", lapi.fetch(), {});
  EXPECT_FALSE(poller.pollOnce());
  EXPECT_FALSE(poller.pollOnce());
  EXPECT_EQ(intake.summary(), Strings{});
  EXPECT_TRUE(poller.pollOnce());
  EXPECT_EQ(intake.summary(), (Strings{"crowdsec:1 10.77.0.66/32"}));
  EXPECT_FALSE(poller.pollOnce());
  EXPECT_FALSE(poller.pollOnce());
  EXPECT_TRUE(poller.pollOnce());
  EXPECT_EQ(intake.summary(), (Strings{"crowdsec:2 10.77.0.67/32"}));
  // startup=true until one is answered; after that, errors without an answer do not restart.
  EXPECT_EQ(lapi.startups, (std::vector<bool>{true, true, true, false, false, false}));
  EXPECT_EQ(poller.stats().failures, 4u);
}

TEST(CrowdSecPoller, AnAnswerNotUsedResynchronisesWithoutResubmitting) {
  FakeIntake intake;
  ScriptedLapi lapi;
  lapi.ok(stream(ip(1, "10.77.0.66") + "," + ip(2, "10.77.0.67"), ""));
  lapi.ok("<html>proxy error</html>");  // CrowdSec may have moved its cursor past something
  // The resync lists the active decisions again (1 is gone, 3 is new) and 1 as deleted.
  lapi.ok(stream(ip(2, "10.77.0.67") + "," + ip(3, "10.77.0.68"), ip(1, "10.77.0.66", "-1s")));
  lapi.answers.push_back(FetchResult{.status = 0, .error = "Read", .answered = true});
  // Decision 2 ended without ever being listed as deleted (say the LAPI's db was flushed).
  lapi.ok(stream(ip(3, "10.77.0.68"), ""));
  Poller poller(intake, "crowdsec:x", lapi.fetch(), {});
  ASSERT_TRUE(poller.pollOnce());
  EXPECT_EQ(intake.summary(), (Strings{"crowdsec:1 10.77.0.66/32", "crowdsec:2 10.77.0.67/32"}));
  EXPECT_FALSE(poller.pollOnce());
  ASSERT_TRUE(poller.pollOnce());
  EXPECT_EQ(intake.summary(),
            (Strings{"crowdsec:3 10.77.0.68/32", "crowdsec:1:deleted 10.77.0.66/32 resolved"}));
  EXPECT_FALSE(poller.pollOnce());
  ASSERT_TRUE(poller.pollOnce());
  EXPECT_EQ(intake.summary(), (Strings{"crowdsec:2:deleted 10.77.0.67/32 resolved"}));
  EXPECT_EQ(lapi.startups, (std::vector<bool>{true, false, true, false, true}));
}

TEST(CrowdSecPoller, ADeletionKeepsTheBlockWhileAnotherDecisionHoldsTheAddress) {
  FakeIntake intake;
  ScriptedLapi lapi;
  lapi.ok(stream(ip(1, "10.77.0.66", "1m") + "," + ip(2, "10.77.0.66", "4h"), ""));
  lapi.ok(stream("", ip(1, "10.77.0.66", "-1s")));
  lapi.ok(stream("", ip(2, "10.77.0.66", "-1s")));
  Poller poller(intake, "crowdsec:x", lapi.fetch(), {});
  ASSERT_TRUE(poller.pollOnce());
  EXPECT_EQ(intake.summary(), (Strings{"crowdsec:1 10.77.0.66/32", "crowdsec:2 10.77.0.66/32"}));
  ASSERT_TRUE(poller.pollOnce());
  EXPECT_EQ(intake.summary(), Strings{});
  EXPECT_EQ(poller.stats().still_active, 1u);
  ASSERT_TRUE(poller.pollOnce());
  EXPECT_EQ(intake.summary(), (Strings{"crowdsec:2:deleted 10.77.0.66/32 resolved"}));
}

TEST(CrowdSecPoller, SignalsTheIntakeCouldNotRecordAreRetried) {
  FakeIntake intake;
  ScriptedLapi lapi;
  lapi.ok(stream(ip(1, "10.77.0.66"), ""));
  Poller poller(intake, "crowdsec:x", lapi.fetch(), {});
  intake.refuse = absl::UnavailableError("the store is down");
  ASSERT_TRUE(poller.pollOnce());
  EXPECT_EQ(intake.summary(), Strings{});
  intake.refuse = absl::OkStatus();
  ASSERT_TRUE(poller.pollOnce());
  EXPECT_EQ(intake.summary(), (Strings{"crowdsec:1 10.77.0.66/32"}));
  EXPECT_EQ(poller.stats().refused, 1u);
}

TEST(CrowdSecPoller, ThreadPollsEveryIntervalAndStops) {
  FakeIntake intake;
  std::atomic<int> calls{0};
  Poller poller(
      intake, "crowdsec:x",
      [&](bool) {
        ++calls;
        return FetchResult{.status = 200, .body = kEmpty, .answered = true};
      },
      PollerOptions{.interval = std::chrono::milliseconds(20)});
  poller.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  poller.stop();
  const int seen = calls.load();
  EXPECT_GE(seen, 5);
  EXPECT_LE(seen, 20);
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  EXPECT_EQ(calls.load(), seen);
  poller.stop();  // idempotent
}

TEST(CrowdSecPoller, ThreadBacksOffWhileFailingUpToMaxBackoff) {
  FakeIntake intake;
  std::mutex mu;
  std::vector<std::chrono::steady_clock::time_point> at;
  Poller poller(
      intake, "crowdsec:x",
      [&](bool) {
        std::lock_guard lock(mu);
        at.push_back(std::chrono::steady_clock::now());
        return FetchResult{.status = 0, .error = "Connection", .answered = false};
      },
      PollerOptions{.interval = std::chrono::milliseconds(10),
                    .max_backoff = std::chrono::milliseconds(40)});
  poller.start();
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    {
      std::lock_guard lock(mu);
      if (at.size() >= 9 || std::chrono::steady_clock::now() > give_up) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  poller.stop();
  ASSERT_GE(at.size(), 9u);
  // After the nth failure in a row: interval * 2^(n-1), at most max_backoff.
  const std::vector<int> least_ms{10, 20, 40, 40, 40, 40, 40, 40};
  for (size_t i = 0; i < least_ms.size(); ++i) {
    EXPECT_GE(at[i + 1] - at[i], std::chrono::milliseconds(least_ms[i])) << "gap " << i;
  }
  // Doubling without the cap would wait 1280 ms before the 9th poll.
  EXPECT_LT(at[8] - at[7], std::chrono::milliseconds(640));
  EXPECT_EQ(poller.stats().failures, at.size());
}

TEST(CrowdSecPoller, StopWaitsForTheExchangeInProgressAndStartsNoOther) {
  FakeIntake intake;
  std::mutex mu;
  std::condition_variable cv;
  bool released = false;
  int calls = 0;
  Poller poller(
      intake, "crowdsec:x",
      [&](bool) {
        std::unique_lock lock(mu);
        ++calls;
        cv.notify_all();
        cv.wait(lock, [&] { return released; });
        return FetchResult{.status = 200, .body = kEmpty, .answered = true};
      },
      PollerOptions{.interval = std::chrono::milliseconds(0)});  // the next poll due at once
  poller.start();
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return calls == 1; }));
  }
  std::atomic<bool> stopping{false};
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    stopping = true;
    poller.stop();
    stopped = true;
  });
  // Released once the stopper is inside stop() (give it 300 ms from its last step before the
  // call): released earlier, a second poll could start before stop() begins.
  while (!stopping.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(stopped.load());  // the exchange is still running
  {
    std::lock_guard lock(mu);
    released = true;
  }
  cv.notify_all();
  stopper.join();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(poller.stats().polls, 1u);
  poller.start();  // no restart after stop()
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_EQ(calls, 1);
}

// ---- HTTP against a local server -----------------------------------------------------------

class LocalLapi {
 public:
  LocalLapi() {
    server_.Get("/v1/decisions/stream", [this](const httplib::Request& req,
                                               httplib::Response& res) {
      std::lock_guard lock(mu_);
      requests_.push_back((req.has_param("startup") ? "startup=" + req.get_param_value("startup")
                                                    : std::string("-")) +
                          (req.has_param("origins") ? " origins=" + req.get_param_value("origins")
                                                    : std::string()) +
                          " key=" + req.get_header_value("X-Api-Key"));
      if (req.get_header_value("X-Api-Key") != "s3cret") {
        res.status = 403;
        res.set_content(R"({"message":"access forbidden"})", "application/json");
        return;
      }
      res.set_content(body_, "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~LocalLapi() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void answer(std::string body) {
    std::lock_guard lock(mu_);
    body_ = std::move(body);
  }
  std::vector<std::string> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::string body_ = kEmpty;
  std::vector<std::string> requests_;
};

TEST(CrowdSecHttp, PollsALocalLapi) {
  LocalLapi lapi;
  FakeIntake intake;
  auto fetch = httpFetch(HttpOptions{.url = lapi.url() + "/", .api_key = "s3cret"});
  ASSERT_TRUE(fetch.ok()) << fetch.status();
  Poller poller(intake, "crowdsec:" + *hostPortOf(lapi.url()), *fetch, {});
  lapi.answer(stream(ip(5, "10.77.0.66"), ""));
  ASSERT_TRUE(poller.pollOnce());
  lapi.answer(stream("", ip(5, "10.77.0.66", "-1s")));
  ASSERT_TRUE(poller.pollOnce());
  EXPECT_EQ(intake.summary(),
            (Strings{"crowdsec:5 10.77.0.66/32", "crowdsec:5:deleted 10.77.0.66/32 resolved"}));
  EXPECT_EQ(lapi.requests(), (Strings{"startup=true key=s3cret", "- key=s3cret"}));

  // Filters in the URL go with every poll.
  auto filtered =
      httpFetch(HttpOptions{.url = lapi.url() + "/?origins=crowdsec,cscli", .api_key = "s3cret"});
  ASSERT_TRUE(filtered.ok()) << filtered.status();
  EXPECT_EQ((*filtered)(true).status, 200);
  EXPECT_EQ((*filtered)(false).status, 200);
  EXPECT_EQ(lapi.requests().at(2), "startup=true origins=crowdsec,cscli key=s3cret");
  EXPECT_EQ(lapi.requests().at(3), "- origins=crowdsec,cscli key=s3cret");
}

TEST(CrowdSecHttp, WrongKeyOversizedAndUnreachable) {
  LocalLapi lapi;
  auto wrong = httpFetch(HttpOptions{.url = lapi.url(), .api_key = "nope"});
  ASSERT_TRUE(wrong.ok());
  FetchResult r = (*wrong)(true);
  EXPECT_EQ(r.status, 403);

  lapi.answer(stream(ip(1, "10.77.0.66"), ""));
  auto small = httpFetch(HttpOptions{.url = lapi.url(), .api_key = "s3cret", .max_body_bytes = 16});
  r = (*small)(true);
  EXPECT_EQ(r.status, 0);
  EXPECT_TRUE(r.answered);
  EXPECT_NE(r.error.find("larger than 16 bytes"), std::string::npos) << r.error;

  // A port nothing listens on (bound without listening, then closed).
  int port = 0;
  {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port = ntohs(a.sin_port);
    ::close(fd);
  }
  auto gone = httpFetch(HttpOptions{.url = "http://127.0.0.1:" + std::to_string(port),
                                    .api_key = "s3cret",
                                    .connect_timeout = std::chrono::milliseconds(500)});
  r = (*gone)(true);
  EXPECT_EQ(r.status, 0);
  EXPECT_FALSE(r.answered);
  EXPECT_FALSE(r.error.empty());
}

// An https LAPI: verified against --crowdsec-ca; refused without it (a private CA) or with
// another CA.
TEST(CrowdSecHttp, HttpsVerifiesTheServerAgainstTheCaFile) {
  namespace fs = std::filesystem;
  char tmpl[] = "/tmp/bulkhead-crowdsec-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const fs::path dir(tmpl);
  auto ca = createCa("lapi-ca", std::chrono::hours(24));
  auto other = createCa("other-ca", std::chrono::hours(24));
  ASSERT_TRUE(ca.ok() && other.ok());
  auto leaf = issueCert(
      *ca,
      CertRequest{.kind = PeerKind::kController, .name = "lapi", .ip_addresses = {"127.0.0.1"}});
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  auto write = [&](const char* name, const std::string& text) {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  };
  const std::string ca_file = write("ca.pem", ca->cert_pem);
  const std::string other_file = write("other.pem", other->cert_pem);
  httplib::SSLServer server(write("tls.crt", leaf->cert_pem).c_str(),
                            write("tls.key", leaf->key_pem).c_str());
  ASSERT_TRUE(server.is_valid());
  server.Get("/v1/decisions/stream", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kEmpty, "application/json");
  });
  const int port = server.bind_to_any_port("127.0.0.1");
  std::thread thread([&] { server.listen_after_bind(); });
  while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const std::string url = "https://127.0.0.1:" + std::to_string(port);

  FetchResult r;
  {
    auto good = httpFetch(HttpOptions{.url = url, .api_key = "k", .ca_file = ca_file});
    ASSERT_TRUE(good.ok()) << good.status();
    r = (*good)(true);
    EXPECT_EQ(r.status, 200) << r.error;
    EXPECT_EQ(r.body, kEmpty);
  }  // its kept-alive connection closed
  for (const std::string& ca_path : {std::string(), other_file}) {
    auto bad = httpFetch(HttpOptions{.url = url, .api_key = "k", .ca_file = ca_path});
    ASSERT_TRUE(bad.ok());
    r = (*bad)(true);
    EXPECT_EQ(r.status, 0) << ca_path;
    EXPECT_FALSE(r.answered) << ca_path;
  }
  server.stop();
  thread.join();
  fs::remove_all(dir);
}

TEST(CrowdSecHttp, Urls) {
  EXPECT_EQ(*hostPortOf("http://127.0.0.1:8080"), "127.0.0.1:8080");
  EXPECT_EQ(*hostPortOf("https://lapi.example/crowdsec/"), "lapi.example:443");
  EXPECT_EQ(*hostPortOf("http://[fd77::1]:8080"), "[fd77::1]:8080");
  EXPECT_EQ(*hostPortOf("http://lapi"), "lapi:80");
  for (const char* bad :
       {"", "127.0.0.1:8080", "ftp://x", "http://", "http://:80", "http://x:0", "http://x:99999",
        "http://u@x", "http://x/#a", "http://x/?startup=false", "http://[fd77::1"}) {
    EXPECT_FALSE(hostPortOf(bad).ok()) << bad;
  }
  EXPECT_FALSE(httpFetch(HttpOptions{.url = "http://x", .api_key = ""}).ok());
  EXPECT_FALSE(httpFetch(HttpOptions{.url = "http://x", .api_key = "k", .ca_file = "/ca"}).ok());
}

}  // namespace
}  // namespace bulkhead::controller::crowdsec
