// Notifications (controller/notify/): what an audit row announces, the messages, the channel
// files, and the notifier's queue on a real SQLite store with a fake transport: routing,
// retries with backoff, final failures, and a restart that loses nothing. No network.
#include <gtest/gtest.h>

#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <set>

#include "absl/strings/escaping.h"
#include "common/format.h"
#include "controller/notify/channels.h"
#include "controller/notify/events.h"
#include "controller/notify/notifier.h"
#include "controller/service/notifications.h"
#include "controller/store/sqlite_store.h"
#include "tests/unit/controller/fake_clock.h"

namespace bulkhead::controller::notify {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

AuditEntry row(std::string action, std::string outcome = "ok", std::string tenant = "default") {
  return AuditEntry{.id = 41,
                    .at_unix_ms = 1'700'000'000'000,
                    .operator_name = "alice",
                    .action = std::move(action),
                    .target = "web-1",
                    .reason = "INC-42 ransomware",
                    .outcome = std::move(outcome),
                    .detail = "1 enforced: web-1",
                    .tenant = std::move(tenant),
                    .incident = "INC-42"};
}

TEST(EventOfAuditRow, ResultsCapturesAndApprovalsAreAnnouncedCallsAndReadsAreNot) {
  struct Case {
    std::string action, outcome, detail, kind;
    Severity severity;
  };
  const std::vector<Case> announced = {
      {"isolate.result", "ok", "", "isolate", Severity::kWarning},
      {"release.result", "ok", "", "release", Severity::kInfo},
      {"block.result", "ok", "", "block", Severity::kWarning},
      {"unblock.result", "ok", "", "unblock", Severity::kInfo},
      {"kill-sessions.result", "ok", "", "kill", Severity::kWarning},
      {"kill-process.result", "ok", "", "kill", Severity::kWarning},
      {"kill-connections.result", "ok", "", "kill", Severity::kWarning},
      {"isolate.result", "error: 1 failed: web-1 (nft: busy)", "", "enforcement-failure",
       Severity::kCritical},
      {"release.result", "error: 1 pending: web-1", "", "enforcement-failure", Severity::kCritical},
      {"evidence-received", "ok", "", "capture", Severity::kInfo},
      {"approval-expired", "ok", "", "approval-expired", Severity::kWarning},
      {"signal-action", "ok", "isolate web-1: awaiting approval ap-1 (blast radius)",
       "approval-pending", Severity::kWarning},
      {"tamper", "ok", "", "tamper", Severity::kWarning},
      {"tamper", "error: not restored", "", "tamper", Severity::kCritical},
      {"host-offline", "ok", "", "host-offline", Severity::kWarning},
      {"certificate-expiring", "ok", "", "certificate-expiry", Severity::kWarning},
      {"controller-renew", "error: the CA key is unreadable", "", "certificate-expiry",
       Severity::kCritical},
      {"agent-renew", "error: revoked", "", "certificate-expiry", Severity::kWarning},
  };
  for (const Case& c : announced) {
    AuditEntry r = row(c.action, c.outcome);
    if (!c.detail.empty()) r.detail = c.detail;
    const auto event = eventOfAuditRow(r);
    ASSERT_TRUE(event.has_value()) << c.action << " " << c.outcome;
    EXPECT_EQ(event->kind, c.kind) << c.action;
    EXPECT_EQ(event->severity, c.severity) << c.action;
    EXPECT_EQ(event->id, "audit-41");
    EXPECT_EQ(event->audit_id, 41);
    EXPECT_EQ(event->incident, "INC-42");
    EXPECT_EQ(event->actor, "alice");
  }
  AuditEntry suppressed = row("signal-action");
  suppressed.detail = "isolate web-1: suppressed (rate cap)";
  for (const AuditEntry& quiet :
       {row("isolate", "accepted"), row("isolate", "denied"), row("hosts"), row("status"),
        row("audit"), row("notify"), row("notify-test"), row("evidence-received", "error: hash"),
        row("incident-report"), row("controller-renew"), row("agent-renew"), suppressed}) {
    EXPECT_FALSE(eventOfAuditRow(quiet).has_value()) << quiet.action << " " << quiet.detail;
  }
}

TEST(EventJson, RoundTripsAndNamesWhatIsWrong) {
  const auto event = eventOfAuditRow(row("isolate.result"));
  ASSERT_TRUE(event);
  const std::string json = eventJson(*event);
  EXPECT_NE(json.find(R"("schema":"bulkhead-notification/1")"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("at":"2023-11-14T22:13:20Z")"), std::string::npos) << json;
  auto back = parseEventJson(json);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->id, event->id);
  EXPECT_EQ(back->kind, "isolate");
  EXPECT_EQ(back->severity, Severity::kWarning);
  EXPECT_EQ(back->detail, event->detail);
  EXPECT_EQ(back->at_unix_ms, event->at_unix_ms);

  auto missing = parseEventJson(R"({"schema":"bulkhead-notification/1","id":"x"})");
  EXPECT_TRUE(absl::IsInvalidArgument(missing.status()));
  EXPECT_NE(missing.status().message().find("kind"), std::string::npos) << missing.status();
  EXPECT_FALSE(parseEventJson("not json").ok());
}

TEST(Messages, SummarySlackAndTheSignature) {
  auto event = eventOfAuditRow(row("isolate.result", "error: 1 failed: web-1 (nft: busy)"));
  ASSERT_TRUE(event);
  event->detail = "1 failed: web-1 (nft: busy)\x1b[2J";
  EXPECT_EQ(summaryLine(*event),
            "[critical] enforcement failure: isolate web-1 (tenant default, incident INC-42): 1 "
            "failed: web-1 (nft: busy)\\x1b[2J");
  const std::string slack = slackBody(*event);
  EXPECT_EQ(slack.rfind(R"({"text":"*bulkhead* [critical] enforcement failure)", 0), 0u) << slack;
  EXPECT_NE(slack.find("who: alice"), std::string::npos) << slack;
  // Python: hmac.new(b"shh", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
  EXPECT_EQ(webhookSignature("shh", 1700000000, R"({"a":1})"),
            "t=1700000000,v1=be310eac0f84daf469d630347a950258de768b365563ab68f29f2f783473d547");
}

TEST(Messages, TheEmailIsAValidMessageWithEveryField) {
  auto event = eventOfAuditRow(row("isolate.result"));
  ASSERT_TRUE(event);
  const std::string mail =
      emailMessage(*event, "bulkhead@example.com", {"soc@example.com", "cto@example.com"}, "ctl-1",
                   1'700'000'000'000);
  const size_t split = mail.find("\r\n\r\n");
  ASSERT_NE(split, std::string::npos);
  const std::string head = mail.substr(0, split);
  EXPECT_NE(head.find("From: bulkhead@example.com\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("To: soc@example.com, cto@example.com\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("Subject: [warning] isolate: isolate web-1 (tenant default, incident "
                      "INC-42)\r\n"),
            std::string::npos)
      << head;
  EXPECT_NE(head.find("Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("Message-ID: <audit-41@ctl-1>"), std::string::npos) << head;
  std::string b64;
  for (char c : mail.substr(split + 4)) {
    if (c != '\r' && c != '\n') b64 += c;
  }
  std::string body;
  ASSERT_TRUE(absl::Base64Unescape(b64, &body));
  EXPECT_NE(body.find("who:       alice\r\n"), std::string::npos) << body;
  EXPECT_NE(body.find("why:       INC-42 ransomware\r\n"), std::string::npos) << body;
  EXPECT_NE(body.find("audit row: 41\r\n"), std::string::npos) << body;
}

TEST(ParseChannel, EachTypeWithItsFields) {
  auto slack = parseChannel("soc.yaml",
                            "name: soc\ntenant: acme\ntype: slack\n"
                            "url: https://hooks.slack.com/services/T0/B0/X\n"
                            "kinds: [isolate, enforcement-failure]\nmin_severity: warning\n");
  ASSERT_TRUE(slack.ok()) << slack.status();
  EXPECT_EQ(slack->type, ChannelType::kSlack);
  EXPECT_EQ(slack->tenant, "acme");
  EXPECT_EQ(slack->kinds, (std::set<std::string>{"isolate", "enforcement-failure"}));
  EXPECT_EQ(slack->min_severity, Severity::kWarning);

  auto mail = parseChannel("mail.yaml",
                           "name: mail\ntype: email\nsmtp: smtp://mail.example.com:587\n"
                           "username: bh\npassword_file: /etc/bh/pass\nfrom: bh@example.com\n"
                           "to: [soc@example.com]\n");
  ASSERT_TRUE(mail.ok()) << mail.status();
  EXPECT_EQ(mail->tenant, "default");
  EXPECT_EQ(mail->to, std::vector<std::string>{"soc@example.com"});

  auto hook = parseChannel("siem.yaml",
                           "name: siem\ntype: webhook\nurl: http://10.77.0.1:9000/hook\n"
                           "secret_file: /k\nallow_insecure: true\n");
  ASSERT_TRUE(hook.ok()) << hook.status();
  EXPECT_TRUE(hook->allow_insecure);
}

TEST(ParseChannel, MistakesAreNamedWithFileAndLine) {
  struct Case {
    std::string yaml, message;
  };
  const std::vector<Case> cases = {
      {"name: a\ntype: webhook\nurl: http://x/\nsecret_file: /k\n",
       "siem.yaml:1: url: http:// sends the events in clear text: use https://"},
      {"name: a\ntype: webhook\nurl: https://x/\n",
       "siem.yaml:1: secret_file: missing (required for type webhook)"},
      {"name: a\ntype: slack\nurl: https://x/\nkinds: [isolate, reboot]\n",
       "siem.yaml:4: kinds: unknown event kind \"reboot\""},
      {"name: a\ntype: pager\n", "siem.yaml:2: type: \"pager\" is not slack, webhook or email"},
      {"name: a\ntype: email\nsmtp: smtp://m:587\nfrom: a@b\nto: []\n",
       "siem.yaml:1: to: names no address"},
      {"name: a\ntype: email\nsmtp: smtp://m:587\nfrom: a@b\nto: [c@d]\nusername: u\n",
       "siem.yaml:1: password_file: username and password_file go together"},
      {"name: a\ntype: email\nsmtp: http://m\nfrom: a@b\nto: [c@d]\n",
       "siem.yaml:1: smtp: \"http://m\" is not smtp://HOST[:PORT] (STARTTLS) or smtps://"},
      {"name: a\ntype: slack\nurl: https://x/\nmin_severity: loud\n",
       "siem.yaml:4: min_severity: \"loud\" is not a severity"},
      {"name: a\ntype: slack\nurl: https://x/\nchannel: '#soc'\n",
       "siem.yaml:4: channel: unknown field"},
      {"name: a b\ntype: slack\nurl: https://x/\n", "siem.yaml:1: name: \"a b\" is not a name"},
      {"type: slack\nurl: https://x/\n", "siem.yaml:1: name: missing"},
  };
  for (const Case& c : cases) {
    auto parsed = parseChannel("siem.yaml", c.yaml);
    ASSERT_FALSE(parsed.ok()) << c.yaml;
    EXPECT_TRUE(absl::IsInvalidArgument(parsed.status()));
    EXPECT_NE(parsed.status().message().find(c.message), std::string::npos)
        << "want: " << c.message << "\ngot: " << parsed.status().message();
  }
}

TEST(Wants, TenantKindAndSeverity) {
  Channel acme{
      .name = "a", .tenant = "acme", .kinds = {"isolate"}, .min_severity = Severity::kWarning};
  Channel every{.name = "b", .tenant = "*"};
  auto isolate = eventOfAuditRow(row("isolate.result", "ok", "acme"));
  auto release = eventOfAuditRow(row("release.result", "ok", "acme"));
  auto other = eventOfAuditRow(row("isolate.result", "ok", "beta"));
  ASSERT_TRUE(isolate && release && other);
  EXPECT_TRUE(wants(acme, *isolate));
  EXPECT_FALSE(wants(acme, *release));  // kind, and info < warning
  EXPECT_FALSE(wants(acme, *other));    // another tenant's
  EXPECT_TRUE(wants(every, *other));
  acme.kinds.clear();
  acme.min_severity = Severity::kCritical;
  EXPECT_FALSE(wants(acme, *isolate));
  EXPECT_TRUE(wants(acme, *eventOfAuditRow(row("isolate.result", "error: 1 failed", "acme"))));
}

class ChannelDir : public ::testing::Test {
 protected:
  ChannelDir() {
    char tmpl[] = "/tmp/bh-notify-dir-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  ~ChannelDir() override { std::filesystem::remove_all(dir_); }
  void write(const std::string& name, const std::string& text, int mode = 0600) {
    std::ofstream(dir_ / name) << text;
    std::filesystem::permissions(dir_ / name, static_cast<std::filesystem::perms>(mode));
  }
  std::filesystem::path dir_;
};

TEST_F(ChannelDir, LoadsEveryFileAndRefusesADuplicateName) {
  EXPECT_TRUE(loadChannelDir((dir_ / "none").string())->empty());
  write("a.yaml", "name: soc\ntype: slack\nurl: https://x/\n");
  write("b.yaml", "name: soc\ntype: slack\nurl: https://y/\n");
  auto loaded = loadChannelDir(dir_.string());
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("b.yaml:1: name: \"soc\" is also the channel of a.yaml"),
            std::string::npos)
      << loaded.status();
  write("b.yaml", "name: siem\ntype: slack\nurl: https://y/\n");
  loaded = loadChannelDir(dir_.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->size(), 2u);
}

TEST_F(ChannelDir, ASecretMustBePrivateAndNotEmpty) {
  write("key", "s3cret\n");
  auto secret = readSecret("secret_file", (dir_ / "key").string());
  ASSERT_TRUE(secret.ok()) << secret.status();
  EXPECT_EQ(*secret, "s3cret");
  write("open", "s3cret\n", 0644);
  EXPECT_TRUE(
      absl::IsPermissionDenied(readSecret("secret_file", (dir_ / "open").string()).status()));
  write("empty", "\n");
  EXPECT_TRUE(
      absl::IsInvalidArgument(readSecret("secret_file", (dir_ / "empty").string()).status()));
  EXPECT_TRUE(absl::IsNotFound(readSecret("secret_file", (dir_ / "gone").string()).status()));
}

// Answers each send with the next scripted status (OK when none is left) and records it.
class ScriptedTransport final : public Transport {
 public:
  absl::Status send(const Channel& channel, const Event& event) override {
    std::lock_guard lock(mu_);
    sent.push_back({channel.name, event.id, event.kind});
    if (script.empty()) return absl::OkStatus();
    absl::Status next = script.front();
    script.pop_front();
    return next;
  }
  struct Sent {
    std::string channel, event_id, kind;
  };
  std::mutex mu_;
  std::vector<Sent> sent;
  std::deque<absl::Status> script;
};

class NotifierTest : public ::testing::Test {
 protected:
  NotifierTest() {
    char tmpl[] = "/tmp/bh-notify-XXXXXX";
    dir_ = mkdtemp(tmpl);
    open();
  }
  ~NotifierTest() override {
    notifier_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void open() {
    notifier_.reset();
    store_.reset();
    auto store = SqliteStore::create(dir_ / "controller.db");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    notifier_ = std::make_unique<Notifier>(*store_, clock_, transport_, channels_, options_);
  }
  int64_t append(AuditEntry e) {
    e.id = 0;
    e.at_unix_ms = clock_.nowUnixMs();
    auto written = store_->appendAudit(e);
    EXPECT_TRUE(written.ok()) << written.status();
    return written.ok() ? written->id : 0;
  }
  std::vector<AuditEntry> notifyRows() {
    std::vector<AuditEntry> out;
    auto rows = store_->listAudit(0);
    EXPECT_TRUE(rows.ok()) << rows.status();
    for (AuditEntry& e : *rows) {
      if (e.action == "notify") out.push_back(std::move(e));
    }
    return out;
  }
  std::map<std::string, int64_t> counts(const std::string& channel) {
    std::map<std::string, int64_t> out;
    auto listed = store_->countNotifications();
    EXPECT_TRUE(listed.ok()) << listed.status();
    for (const NotificationCount& c : *listed) {
      if (c.channel == channel) out[c.state] = c.count;
    }
    return out;
  }

  std::filesystem::path dir_;
  FakeClock clock_;
  ScriptedTransport transport_;
  std::vector<Channel> channels_ = {
      Channel{.name = "soc", .tenant = "default", .type = ChannelType::kSlack},
      Channel{.name = "acme-siem", .tenant = "acme", .type = ChannelType::kWebhook},
  };
  NotifierOptions options_{.first_retry = seconds(2),
                           .max_retry = seconds(10),
                           .give_up_after = std::chrono::minutes(1)};
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<Notifier> notifier_;
};

TEST_F(NotifierTest, ThePastIsNotAnnouncedAndEachEventReachesItsTenantsChannelOnceAudited) {
  append(row("isolate.result"));  // before the first pass: history
  ASSERT_TRUE(notifier_->runOnce().ok());
  EXPECT_TRUE(transport_.sent.empty());

  const int64_t id = append(row("isolate.result"));
  append(row("hosts"));
  append(row("release.result", "ok", "acme"));
  ASSERT_TRUE(notifier_->runOnce().ok());
  ASSERT_EQ(transport_.sent.size(), 2u);
  EXPECT_EQ(transport_.sent[0].channel, "soc");
  EXPECT_EQ(transport_.sent[0].event_id, fmt::format("audit-{}", id));
  EXPECT_EQ(transport_.sent[1].channel, "acme-siem");
  EXPECT_EQ(transport_.sent[1].kind, "release");

  const auto rows = notifyRows();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].target, "soc");
  EXPECT_EQ(rows[0].reason, fmt::format("audit-{}", id));
  EXPECT_EQ(rows[0].outcome, "ok");
  EXPECT_EQ(rows[0].operator_name, "controller");
  EXPECT_EQ(rows[0].incident, "INC-42");
  EXPECT_EQ(rows[0].detail, "isolate delivered (1 attempt)");
  EXPECT_EQ(rows[1].tenant, "acme");

  // The notifier's own rows announce nothing: another pass sends nothing more.
  ASSERT_TRUE(notifier_->runOnce().ok());
  EXPECT_EQ(transport_.sent.size(), 2u);
  EXPECT_EQ(counts("soc")["delivered"], 1);
}

TEST_F(NotifierTest, ARowWrittenRightAfterStartIsAnnouncedEvenBeforeTheFirstPass) {
  append(row("isolate.result"));  // history
  notifier_->start();             // places the cursor; the first pass is a poll (1 s) away
  notifier_->stop();
  append(row("release.result"));
  ASSERT_TRUE(notifier_->runOnce().ok());
  ASSERT_EQ(transport_.sent.size(), 1u);
  EXPECT_EQ(transport_.sent[0].kind, "release");
}

TEST_F(NotifierTest, AFailedDeliveryIsRetriedWithBackoffUntilDelivered) {
  ASSERT_TRUE(notifier_->runOnce().ok());
  transport_.script = {absl::UnavailableError("connection refused"),
                       absl::DeadlineExceededError("timeout")};
  append(row("isolate.result"));
  ASSERT_TRUE(notifier_->runOnce().ok());  // attempt 1 fails: next in 2 s
  EXPECT_EQ(counts("soc")["pending"], 1);
  ASSERT_TRUE(notifier_->runOnce().ok());  // not due yet
  EXPECT_EQ(transport_.sent.size(), 1u);
  clock_.advance(seconds(2));
  ASSERT_TRUE(notifier_->runOnce().ok());  // attempt 2 fails: next in 4 s
  EXPECT_EQ(transport_.sent.size(), 2u);
  clock_.advance(seconds(3));
  ASSERT_TRUE(notifier_->runOnce().ok());
  EXPECT_EQ(transport_.sent.size(), 2u);
  clock_.advance(seconds(1));
  ASSERT_TRUE(notifier_->runOnce().ok());  // attempt 3 delivers
  ASSERT_EQ(transport_.sent.size(), 3u);
  EXPECT_EQ(counts("soc"), (std::map<std::string, int64_t>{{"delivered", 1}}));
  const auto rows = notifyRows();
  ASSERT_EQ(rows.size(), 1u);  // the end is audited, not each attempt
  EXPECT_EQ(rows[0].detail, "isolate delivered (3 attempts)");
}

TEST_F(NotifierTest, ARefusalOrTooLongAFailureEndsItAudited) {
  ASSERT_TRUE(notifier_->runOnce().ok());
  transport_.script = {absl::FailedPreconditionError("POST soc: the receiver answered HTTP 404")};
  append(row("isolate.result"));
  ASSERT_TRUE(notifier_->runOnce().ok());
  EXPECT_EQ(counts("soc")["failed"], 1);
  auto rows = notifyRows();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].outcome, "error: POST soc: the receiver answered HTTP 404");
  EXPECT_EQ(rows[0].detail, "isolate not delivered: refused for good");

  // Unreachable for longer than give_up_after (1 minute; retries at most 10 s apart).
  for (int i = 0; i < 20; ++i) transport_.script.push_back(absl::UnavailableError("down"));
  append(row("release.result"));
  for (int i = 0; i < 12; ++i) {
    ASSERT_TRUE(notifier_->runOnce().ok());
    clock_.advance(seconds(10));
  }
  EXPECT_EQ(counts("soc")["failed"], 2);
  EXPECT_EQ(counts("soc")["pending"], 0);
  rows = notifyRows();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].outcome, "error: down");
  EXPECT_NE(rows[1].detail.find("release not delivered: gave up after"), std::string::npos)
      << rows[1].detail;
}

TEST_F(NotifierTest, NothingIsLostAcrossARestart) {
  ASSERT_TRUE(notifier_->runOnce().ok());
  transport_.script = {absl::UnavailableError("down")};
  const int64_t queued = append(row("isolate.result"));
  ASSERT_TRUE(notifier_->runOnce().ok());  // queued, first attempt failed
  // Written while the controller is down: routed at the next start.
  open();
  const int64_t later = append(row("release.result"));
  clock_.advance(seconds(2));
  ASSERT_TRUE(notifier_->runOnce().ok());
  std::set<std::string> delivered;
  for (const AuditEntry& r : notifyRows()) {
    if (r.outcome == "ok") delivered.insert(r.reason);
  }
  EXPECT_EQ(delivered, (std::set<std::string>{fmt::format("audit-{}", queued),
                                              fmt::format("audit-{}", later)}));
}

TEST_F(NotifierTest, AQueuedEventIsQueuedOncePerChannel) {
  NotificationRow r{.channel = "soc",
                    .event_id = "audit-7",
                    .tenant = "default",
                    .kind = "isolate",
                    .severity = "warning",
                    .event = "{}"};
  ASSERT_TRUE(store_->queueNotifications({r, r}, 7).ok());
  ASSERT_TRUE(store_->queueNotifications({r}, 7).ok());
  EXPECT_EQ(counts("soc")["pending"], 1);
  EXPECT_EQ(**store_->notifyCursor(), 7);
}

TEST_F(NotifierTest, ARemovedChannelsDeliveriesFailAudited) {
  ASSERT_TRUE(notifier_->runOnce().ok());
  transport_.script = {absl::UnavailableError("down")};
  append(row("isolate.result"));
  ASSERT_TRUE(notifier_->runOnce().ok());
  notifier_->setChannels({});
  clock_.advance(seconds(2));
  ASSERT_TRUE(notifier_->runOnce().ok());
  const auto rows = notifyRows();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].outcome, "error: channel \"soc\" is no longer configured");
}

TEST_F(NotifierTest, TheServiceListsAndTestsOnlyTheCallersTenantsChannels) {
  NotificationService service(clock_, *store_, notifier_.get());
  const Caller acme{.audit_name = "ann",
                    .is_operator = true,
                    .role = Role::kNone,
                    .grants = {Grant{.tenant = "acme", .role = Role::kResponder}},
                    .tenants = {"acme"}};
  auto listed = service.channels(acme);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].name, "acme-siem");

  auto tested = service.test(acme, "acme-siem");
  ASSERT_TRUE(tested.ok()) << tested.status();
  ASSERT_EQ(transport_.sent.size(), 1u);
  EXPECT_EQ(transport_.sent[0].kind, "test");
  // Another tenant's channel reads as none at all.
  auto other = service.test(acme, "soc");
  EXPECT_TRUE(absl::IsNotFound(other.status())) << other.status();
  EXPECT_EQ(transport_.sent.size(), 1u);
  transport_.script = {absl::UnavailableError("POST acme-siem: connection refused")};
  auto down = service.test(acme, "acme-siem");
  EXPECT_TRUE(absl::IsUnavailable(down.status())) << down.status();

  std::vector<std::string> outcomes;
  auto rows = store_->listAudit(0);
  ASSERT_TRUE(rows.ok()) << rows.status();
  for (const AuditEntry& e : *rows) {
    if (e.action == "notify-test") outcomes.push_back(e.target + " " + e.outcome);
  }
  EXPECT_EQ(outcomes,
            (std::vector<std::string>{"acme-siem ok",
                                      "soc error: unknown notification channel \"soc\" in "
                                      "tenant acme (bulkhead notify channels lists them)",
                                      "acme-siem error: POST acme-siem: connection refused"}));
}

}  // namespace
}  // namespace bulkhead::controller::notify
