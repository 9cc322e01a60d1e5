// The service layer's operator reads and evidence calls (HostInventory, AuditTrail::list,
// EvidenceService): plain requests, a fake fleet, a fake evidence backend (its I/O work runs
// inline), a real SQLite store behind a fault-injecting one. What each call decides, records
// and opens, tested without gRPC.
#include "controller/service/evidence_service.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/format.h"
#include "controller/service/audit.h"
#include "controller/service/audit_trail.h"
#include "controller/service/host_inventory.h"
#include "controller/store/sqlite_store.h"
#include "tests/unit/controller/fake_clock.h"
#include "tests/unit/controller/faulty_store.h"

namespace bulkhead::controller {
namespace {

namespace v1 = bulkhead::v1;

constexpr char kBundleId[] = "ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12";

// Hosts "web-01" (online) and "db-01" (offline); commands are recorded, answered by answer().
class FakeFleet final : public FleetControl, public HostDirectory {
 public:
  // FleetControl: only what HostActions uses.
  void setOpReadyHandler(std::function<void(std::shared_ptr<PendingOp>)>) override {}
  void setFleetBlocksListener(std::function<void()>) override {}
  std::map<std::string, TargetHost> targets() override { return {}; }
  std::map<std::string, v1::DesiredState> desiredStates(const std::vector<std::string>&) override {
    return {};
  }
  std::map<std::string, v1::DesiredState> allDesiredStates() override { return {}; }
  bool publish(const std::shared_ptr<PendingOp>&, const std::vector<std::string>&,
               const std::map<std::string, v1::DesiredState>&,
               const std::map<std::string, std::vector<std::string>>&) override {
    return true;
  }
  bool preview(const std::shared_ptr<PendingOp>&, const std::vector<std::string>&,
               const std::map<std::string, v1::DesiredState>&,
               const std::map<std::string, std::vector<std::string>>&) override {
    return true;
  }
  bool settle(const std::shared_ptr<PendingOp>&, v1::HostOutcome::State,
              const std::string&) override {
    return true;
  }
  std::vector<std::shared_ptr<PendingOp>> pendingOps() override { return {}; }
  bool known(const std::string& host) override { return getHost(host).has_value(); }
  bool sendCommand(const std::string& host, v1::Command command, std::string* why) override {
    std::lock_guard lock(mu_);
    if (!online_.contains(host) || !online_.at(host)) {
      *why = "offline";
      return false;
    }
    sent_.emplace_back(host, std::move(command));
    return true;
  }
  void setCommandListener(
      std::function<void(const std::string&, const v1::CommandResult&)> listener) override {
    std::lock_guard lock(mu_);
    listener_ = std::move(listener);
  }

  // HostDirectory.
  std::vector<v1::HostSummary> listHosts(const Labels& selector) override {
    std::vector<v1::HostSummary> out;
    for (const auto& [host, online] : online_) {
      if (selector.contains("role") && selector.at("role") != "web") continue;
      out.emplace_back().set_host_id(host);
    }
    return out;
  }
  std::optional<v1::HostStatus> getHost(const std::string& host) override {
    if (!online_.contains(host)) return std::nullopt;
    v1::HostStatus s;
    s.mutable_host()->set_host_id(host);
    std::lock_guard lock(mu_);
    if (auto it = tenants_.find(host); it != tenants_.end())
      s.mutable_host()->set_tenant(it->second);
    return s;
  }
  bool applyLabels(const std::string&, const Labels&, const std::string&) override {
    return false;  // not used here
  }
  bool online(const std::string& host) override {
    return online_.contains(host) && online_.at(host);
  }

  // The agent of `host` answers the newest command sent.
  void answer(const std::string& host, v1::CommandResult result) {
    std::function<void(const std::string&, const v1::CommandResult&)> listener;
    {
      std::lock_guard lock(mu_);
      result.set_command_id(sent_.back().second.id());
      listener = listener_;
    }
    if (listener) listener(host, result);
  }
  std::vector<std::pair<std::string, v1::Command>> sent() {
    std::lock_guard lock(mu_);
    return sent_;
  }
  // Moves `host` to `tenant` (hosts are the default tenant's until then).
  void setTenant(const std::string& host, const std::string& tenant) {
    std::lock_guard lock(mu_);
    tenants_[host] = tenant;
  }

 private:
  const std::map<std::string, bool> online_{{"web-01", true}, {"db-01", false}};
  std::mutex mu_;
  std::vector<std::pair<std::string, v1::Command>> sent_;
  std::map<std::string, std::string> tenants_;
  std::function<void(const std::string&, const v1::CommandResult&)> listener_;
};

// Evidence under a temporary directory; I/O work runs at once on the calling thread.
class FakeEvidenceBackend final : public EvidenceBackend {
 public:
  explicit FakeEvidenceBackend(std::filesystem::path root) : files_(std::move(root)) {}

  bool enabled() const override { return enabled_; }
  EvidenceFiles& files() override { return files_; }
  const std::string& caPem() const override { return ca_pem_; }
  void watch(const std::string& command_id, const std::string& host, ProgressFn fn) override {
    std::lock_guard lock(mu_);
    watchers_[command_id] = {host, std::move(fn)};
  }
  void unwatch(const std::string& command_id) override {
    std::lock_guard lock(mu_);
    watchers_.erase(command_id);
  }
  bool postIo(std::function<void()> fn) override {
    if (stopped_) return false;
    fn();
    return true;
  }

  std::map<std::string, std::pair<std::string, ProgressFn>> watchers() {
    std::lock_guard lock(mu_);
    return watchers_;
  }

  bool enabled_ = true;
  bool stopped_ = false;

 private:
  EvidenceFiles files_;
  const std::string ca_pem_;
  std::mutex mu_;
  std::map<std::string, std::pair<std::string, ProgressFn>> watchers_;
};

Caller operatorWith(const std::string& name, Role role) {
  return Caller{.audit_name = name, .is_operator = true, .role = role};
}

class EvidenceServiceTest : public ::testing::Test {
 protected:
  EvidenceServiceTest() {
    char tmpl[] = "/tmp/bh-evidence-service-XXXXXX";
    dir_ = mkdtemp(tmpl);
    auto store = SqliteStore::create(dir_ / "controller.db");
    EXPECT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    faulty_ = std::make_unique<testing::FaultyStore>(*store_);
    backend_ = std::make_unique<FakeEvidenceBackend>(dir_ / "evidence");
    EXPECT_TRUE(backend_->files().init().ok());
    actions_ = std::make_unique<HostActions>(clock_, fleet_, HostActionsOptions{});
    service_ =
        std::make_unique<EvidenceService>(clock_, *faulty_, fleet_, *actions_, backend_.get());
  }
  ~EvidenceServiceTest() override {
    actions_->shutdown();
    service_.reset();
    actions_.reset();
    faulty_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // A stored bundle of web-01 (its capture unless recorded, its row, the first custody event
  // and `content` on disk).
  EvidenceRow storeBundle(const std::string& capture_id, const std::string& content) {
    CaptureRow capture{.capture_id = capture_id,
                       .host_id = "web-01",
                       .requested_by = "alice",
                       .reason = "INC-1",
                       .requested_at_unix_ms = clock_.nowUnixMs(),
                       .command_id = "capture-" + capture_id};
    if (!store_->getCapture(capture_id).ok()) {
      EXPECT_TRUE(store_->addCapture(capture).ok());
    }
    EvidenceRow row{.id = kBundleId,
                    .capture_id = capture_id,
                    .host_id = "web-01",
                    .requested_by = "alice",
                    .reason = "INC-1",
                    .size = content.size(),
                    .files = 3,
                    .signature_ok = true};
    auto added = store_->addEvidence(row, {CustodyEntry{.evidence_id = kBundleId,
                                                        .at_unix_ms = clock_.nowUnixMs(),
                                                        .actor = "alice",
                                                        .action = "requested"}});
    EXPECT_TRUE(added.ok()) << added.status();
    auto path = backend_->files().bundlePath(kBundleId);
    EXPECT_TRUE(path.ok()) << path.status();
    std::filesystem::create_directories(path->parent_path());
    std::ofstream(*path, std::ios::binary) << content;
    return row;
  }

  std::vector<AuditEntry> audit() {
    auto rows = store_->listAudit(100);
    EXPECT_TRUE(rows.ok()) << rows.status();
    return rows.ok() ? *rows : std::vector<AuditEntry>{};
  }
  std::vector<std::string> custodyActions() {
    auto events = store_->listCustody(kBundleId);
    EXPECT_TRUE(events.ok()) << events.status();
    std::vector<std::string> out;
    if (events.ok()) {
      for (const auto& e : *events) out.push_back(e.action);
    }
    return out;
  }

  struct Captured {
    absl::Status status;
    std::optional<StoredEvidence> evidence;
  };
  // Starts a capture; the future is ready once `done` ran.
  std::future<Captured> capture(const Caller& caller, const CaptureRequest& req) {
    auto promise = std::make_shared<std::promise<Captured>>();
    auto future = promise->get_future();
    service_->capture(
        caller, req,
        [this](const v1::CommandProgress& p) {
          std::lock_guard lock(progress_mu_);
          progress_.push_back(p.capture_stage());
        },
        [promise](const absl::Status& s, std::optional<StoredEvidence> e) {
          promise->set_value(Captured{s, std::move(e)});
        });
    return future;
  }

  std::mutex progress_mu_;
  std::vector<v1::CaptureStage> progress_;  // stages that reached capture()'s progress callback
  FakeClock clock_;
  FakeFleet fleet_;
  std::filesystem::path dir_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<testing::FaultyStore> faulty_;  // what the service uses
  std::unique_ptr<FakeEvidenceBackend> backend_;
  std::unique_ptr<HostActions> actions_;
  std::unique_ptr<EvidenceService> service_;
};

TEST_F(EvidenceServiceTest, ACaptureAViewerAsksForIsRefusedAuditedAndNothingIsSent) {
  auto done = capture(operatorWith("vic", Role::kViewer),
                      CaptureRequest{.host = "web-01", .reason = "INC-1"});
  ASSERT_EQ(done.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  Captured c = done.get();
  EXPECT_TRUE(absl::IsPermissionDenied(c.status)) << c.status;
  EXPECT_EQ(c.status.message(), "operator \"vic\" has role viewer: read only");
  EXPECT_FALSE(c.evidence.has_value());
  EXPECT_TRUE(fleet_.sent().empty());
  EXPECT_TRUE(backend_->watchers().empty());
  auto rows = audit();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].action, "capture");
  EXPECT_EQ(rows[0].outcome, "denied");
}

TEST_F(EvidenceServiceTest, ACaptureOfAnOfflineHostIsRefusedNamingItAndNothingIsSent) {
  auto done = capture(operatorWith("alice", Role::kResponder),
                      CaptureRequest{.host = "db-01", .reason = "INC-1"});
  ASSERT_EQ(done.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  Captured c = done.get();
  EXPECT_TRUE(absl::IsUnavailable(c.status)) << c.status;
  EXPECT_EQ(c.status.message(), "host db-01 is offline");
  EXPECT_TRUE(fleet_.sent().empty());
  auto rows = audit();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].outcome, "error: host db-01 is offline");
}

TEST_F(EvidenceServiceTest, ACaptureIsAuditedAsAcceptedBeforeItIsSentAndAnswersWithTheBundle) {
  auto done = capture(operatorWith("alice", Role::kResponder),
                      CaptureRequest{.host = "web-01", .reason = "INC-1", .wait_ms = 10000});
  auto sent = fleet_.sent();
  ASSERT_EQ(sent.size(), 1u);
  const v1::Command& command = sent[0].second;
  const std::string capture_id = command.capture().capture_id();
  EXPECT_EQ(command.id(), "capture-" + capture_id);
  EXPECT_EQ(command.reason(), "INC-1");
  // Accepted, before any answer; progress of the command is watched for web-01.
  auto rows = audit();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].action, "capture");
  EXPECT_EQ(rows[0].outcome, "accepted");
  EXPECT_EQ(rows[0].detail, "capture " + capture_id);
  auto watchers = backend_->watchers();
  ASSERT_TRUE(watchers.contains(command.id()));
  EXPECT_EQ(watchers.at(command.id()).first, "web-01");
  v1::CommandProgress p;
  p.set_command_id(command.id());
  p.set_capture_stage(v1::CAPTURE_STAGE_COLLECTING);
  watchers.at(command.id()).second(p);
  {
    std::lock_guard lock(progress_mu_);
    EXPECT_EQ(progress_, std::vector<v1::CaptureStage>{v1::CAPTURE_STAGE_COLLECTING});
  }

  storeBundle(capture_id, "bundle bytes");
  v1::CommandResult result;
  result.set_ok(true);
  fleet_.answer("web-01", result);
  ASSERT_EQ(done.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  Captured c = done.get();
  ASSERT_TRUE(c.status.ok()) << c.status;
  ASSERT_TRUE(c.evidence.has_value());
  EXPECT_EQ(c.evidence->row.id, kBundleId);
  EXPECT_EQ(c.evidence->row.tenant, "default");
  ASSERT_EQ(c.evidence->custody.size(), 1u);
  EXPECT_TRUE(backend_->watchers().empty());
  rows = audit();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].action, "capture.result");
  EXPECT_EQ(rows[1].outcome, "ok");
  EXPECT_EQ(rows[1].detail, fmt::format("capture {}: evidence {}, 12 bytes, 3 files, signature ok",
                                        capture_id, kBundleId));
}

TEST_F(EvidenceServiceTest, ACaptureWhoseAcceptedRowCannotBeWrittenIsNeverSent) {
  faulty_->failNext("appendAudit");
  auto done = capture(operatorWith("alice", Role::kResponder),
                      CaptureRequest{.host = "web-01", .reason = "INC-1"});
  ASSERT_EQ(done.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  Captured c = done.get();
  EXPECT_TRUE(absl::IsInternal(c.status)) << c.status;
  EXPECT_TRUE(std::string(c.status.message())
                  .starts_with("audit trail unavailable, nothing sent to web-01"))
      << c.status;
  EXPECT_TRUE(fleet_.sent().empty());
  EXPECT_TRUE(backend_->watchers().empty());
  EXPECT_TRUE(audit().empty());
}

TEST_F(EvidenceServiceTest, GetWhoseCustodyEventCannotBeWrittenOpensNothingAndIsAudited) {
  storeBundle("cap-1", "bundle bytes");
  faulty_->failNext("appendCustody");
  auto opened = service_->get(operatorWith("alice", Role::kResponder), kBundleId);
  EXPECT_EQ(opened.status(), absl::UnavailableError("injected fault: disk I/O error"));
  EXPECT_EQ(custodyActions(), (std::vector<std::string>{"requested"}));
  auto rows = audit();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].outcome, "error: injected fault: disk I/O error");
  EXPECT_EQ(rows[0].detail, "");
}

TEST_F(EvidenceServiceTest, GetOfAnUnknownIdIsNotFoundNamingItAndAudited) {
  auto opened = service_->get(operatorWith("alice", Role::kResponder), "0123456789abcdef");
  ASSERT_FALSE(opened.ok());
  EXPECT_TRUE(absl::IsNotFound(opened.status())) << opened.status();
  EXPECT_NE(opened.status().message().find("0123456789abcdef"), std::string::npos)
      << opened.status();
  auto rows = audit();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].action, "evidence-get");
  EXPECT_EQ(rows[0].target, "0123456789abcdef");
  EXPECT_EQ(rows[0].outcome, fmt::format("error: {}", opened.status().message()));
}

TEST_F(EvidenceServiceTest, GetRecordsCustodyBeforeTheOpenedBundleIsHandedOut) {
  storeBundle("cap-1", "bundle bytes");
  auto opened = service_->get(operatorWith("alice", Role::kResponder), "ab12cd34");
  ASSERT_TRUE(opened.ok()) << opened.status();
  // The custody event is durable and part of the record before a byte is read.
  EXPECT_EQ(custodyActions(), (std::vector<std::string>{"requested", "get"}));
  const auto& custody = opened->evidence().custody;
  ASSERT_EQ(custody.size(), 2u);
  EXPECT_EQ(custody[1].action, "get");
  EXPECT_EQ(custody[1].actor, "alice");
  EXPECT_EQ(custody[1].detail, "download of 12 bytes");
  EXPECT_EQ(opened->path(), backend_->files().bundlePath(kBundleId)->string());
  int fd = opened->releaseFd();
  ASSERT_GE(fd, 0);
  char buf[64];
  ssize_t n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  EXPECT_EQ(std::string(buf, n > 0 ? static_cast<size_t>(n) : 0), "bundle bytes");
  auto rows = audit();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].target, kBundleId);
  EXPECT_EQ(rows[0].detail, "12 bytes");
}

TEST_F(EvidenceServiceTest, GetByAViewerIsRefusedWithoutACustodyEvent) {
  storeBundle("cap-1", "bundle bytes");
  auto opened = service_->get(operatorWith("vic", Role::kViewer), kBundleId);
  EXPECT_TRUE(absl::IsPermissionDenied(opened.status())) << opened.status();
  EXPECT_EQ(custodyActions(), (std::vector<std::string>{"requested"}));
  EXPECT_EQ(audit().back().outcome, "denied");
}

TEST_F(EvidenceServiceTest, GetOfABundleMissingOnDiskIsDataLossWithoutACustodyEvent) {
  storeBundle("cap-1", "bundle bytes");
  std::filesystem::remove(*backend_->files().bundlePath(kBundleId));
  auto opened = service_->get(operatorWith("alice", Role::kResponder), kBundleId);
  EXPECT_TRUE(absl::IsDataLoss(opened.status())) << opened.status();
  EXPECT_EQ(custodyActions(), (std::vector<std::string>{"requested"}));
}

TEST_F(EvidenceServiceTest, WithoutAnEvidenceStoreEveryCallIsUnavailable) {
  backend_->enabled_ = false;
  const auto alice = operatorWith("alice", Role::kResponder);
  auto opened = service_->get(alice, kBundleId);
  EXPECT_EQ(opened.status(),
            absl::UnavailableError("this controller has no evidence store (--data-dir)"));
  auto page = service_->list(alice, {}, [](const EvidenceRow&) { return size_t{1}; });
  EXPECT_EQ(page.status(), opened.status());
  auto done = capture(alice, CaptureRequest{.host = "web-01", .reason = "INC-1"});
  ASSERT_EQ(done.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(done.get().status, opened.status());
  EXPECT_TRUE(fleet_.sent().empty());
}

TEST_F(EvidenceServiceTest, ListStopsAPageBeforeItsAnswerGrowsTooLarge) {
  storeBundle("cap-1", "bundle bytes");
  const auto vic = operatorWith("vic", Role::kViewer);
  auto page = service_->list(vic, {}, [](const EvidenceRow&) { return size_t{100}; });
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->evidence.size(), 1u);
  EXPECT_FALSE(page->next_offset.has_value());
  EXPECT_EQ(audit().back().detail, "1 bundles");
  // A record alone larger than an answer is still listed; the next offset asks for the rest.
  auto huge = service_->list(vic, ListEvidenceRequest{.offset = 0},
                             [](const EvidenceRow&) { return kMaxResponseBytes + 1; });
  ASSERT_TRUE(huge.ok()) << huge.status();
  EXPECT_EQ(huge->evidence.size(), 1u);
  auto past = service_->list(vic, ListEvidenceRequest{.offset = 1},
                             [](const EvidenceRow&) { return size_t{1}; });
  ASSERT_TRUE(past.ok()) << past.status();
  EXPECT_TRUE(past->evidence.empty());
  EXPECT_EQ(audit().back().target, "*");
}

TEST_F(EvidenceServiceTest, EveryRecordNamesTheTenantOfItsHost) {
  storeBundle("cap-1", "bundle bytes");
  fleet_.setTenant("web-01", "acme");
  const Caller acme_responder{.audit_name = "carl",
                              .is_operator = true,
                              .role = Role::kNone,
                              .grants = {Grant{.tenant = "acme", .role = Role::kResponder}},
                              .tenants = {"acme"}};
  auto page = service_->list(acme_responder, {}, [](const EvidenceRow&) { return size_t{100}; });
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->evidence.size(), 1u);
  EXPECT_EQ(page->evidence[0].tenant, "acme");
  auto opened = service_->get(acme_responder, kBundleId);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->evidence().row.tenant, "acme");
  ::close(opened->releaseFd());
  // The default tenant's team reads it as an unknown id, and lists nothing.
  const auto alice = operatorWith("alice", Role::kResponder);
  EXPECT_TRUE(absl::IsNotFound(service_->get(alice, kBundleId).status()));
  auto none = service_->list(alice, {}, [](const EvidenceRow&) { return size_t{100}; });
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->evidence.empty());
}

TEST_F(EvidenceServiceTest, VerifyNamesTheProblemAndRecordsItInCustodyAndAudit) {
  storeBundle("cap-1", "not a bundle");
  std::filesystem::remove(*backend_->files().bundlePath(kBundleId));
  absl::Status status = absl::UnknownError("not answered");
  EvidenceVerification result;
  service_->verify(operatorWith("vic", Role::kViewer), kBundleId,
                   [&](const absl::Status& s, EvidenceVerification r) {
                     status = s;
                     result = std::move(r);
                   });
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_FALSE(result.ok);
  ASSERT_EQ(result.problems.size(), 1u);
  EXPECT_EQ(result.problems[0].problem, "the stored bundle is missing");
  EXPECT_EQ(custodyActions(), (std::vector<std::string>{"requested", "verify"}));
  ASSERT_EQ(result.evidence.custody.size(), 2u);
  const std::string outcome = fmt::format("FAILED: 1 problems; {}: the stored bundle is missing",
                                          backend_->files().bundlePath(kBundleId)->string());
  EXPECT_EQ(result.evidence.custody[1].detail, outcome);
  EXPECT_EQ(audit().back().action, "evidence-verify");
  EXPECT_EQ(audit().back().detail, outcome);
}

TEST_F(EvidenceServiceTest, VerifyAfterShutdownIsUnavailableAndAudited) {
  storeBundle("cap-1", "bundle bytes");
  backend_->stopped_ = true;
  absl::Status status;
  service_->verify(operatorWith("vic", Role::kViewer), kBundleId,
                   [&](const absl::Status& s, const EvidenceVerification&) { status = s; });
  EXPECT_EQ(status, absl::UnavailableError("controller shutting down"));
  EXPECT_EQ(custodyActions(), (std::vector<std::string>{"requested"}));
  EXPECT_EQ(audit().back().outcome, "error: controller shutting down");
}

TEST_F(EvidenceServiceTest, ShowOfABundleWithoutASummaryFailsWithoutACustodyEvent) {
  storeBundle("cap-1", "not a bundle");
  absl::Status status;
  bool sized = false;
  service_->show(
      operatorWith("alice", Role::kResponder), kBundleId,
      [&](const ShownEvidence&) {
        sized = true;
        return size_t{1};
      },
      [&](const absl::Status& s, const ShownEvidence&) { status = s; });
  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
  EXPECT_EQ(
      std::string(status.message()).rfind(fmt::format("evidence {}: no summary: ", kBundleId), 0),
      0u)
      << status;
  EXPECT_FALSE(sized);
  EXPECT_EQ(custodyActions(), (std::vector<std::string>{"requested"}));
  EXPECT_EQ(audit().back().action, "evidence-show");
}

TEST_F(EvidenceServiceTest, ShowByAViewerIsRefusedAndNothingIsRead) {
  storeBundle("cap-1", "bundle bytes");
  absl::Status status;
  service_->show(
      operatorWith("vic", Role::kViewer), kBundleId, [](const ShownEvidence&) { return size_t{1}; },
      [&](const absl::Status& s, const ShownEvidence&) { status = s; });
  EXPECT_TRUE(absl::IsPermissionDenied(status)) << status;
  EXPECT_EQ(custodyActions(), (std::vector<std::string>{"requested"}));
  EXPECT_EQ(audit().back().target, kBundleId);
  EXPECT_EQ(audit().back().outcome, "denied");
}

class HostInventoryTest : public EvidenceServiceTest {
 protected:
  HostInventory inventory_{clock_, *store_, fleet_};
};

TEST_F(HostInventoryTest, ListHostsFiltersBySelectorAndAuditsTheCount) {
  auto hosts = inventory_.listHosts(operatorWith("vic", Role::kViewer), {});
  ASSERT_TRUE(hosts.ok()) << hosts.status();
  EXPECT_EQ(hosts->size(), 2u);
  EXPECT_EQ(audit().back().target, "*");
  EXPECT_EQ(audit().back().detail, "2 hosts");
  auto bad = inventory_.listHosts(operatorWith("vic", Role::kViewer),
                                  ListHostsRequest{.selector = "role"});
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status())) << bad.status();
  EXPECT_EQ(audit().back().target, "role");
  EXPECT_EQ(audit().back().detail, "");
}

TEST_F(HostInventoryTest, GetHostOfAnUnknownHostIsNotFoundNamingIt) {
  auto host = inventory_.getHost(operatorWith("vic", Role::kViewer), GetHostRequest{"nope-9"});
  EXPECT_EQ(host.status(), absl::NotFoundError("unknown host \"nope-9\""));
  EXPECT_EQ(audit().back().action, "status");
  EXPECT_EQ(audit().back().outcome, "error: unknown host \"nope-9\"");
  auto refused =
      inventory_.getHost(Caller{.audit_name = "agent:web-01",
                                .refusal = absl::PermissionDeniedError("not an operator")},
                         GetHostRequest{"web-01"});
  EXPECT_EQ(refused.status(), absl::PermissionDeniedError("not an operator"));
  EXPECT_EQ(audit().back().outcome, "denied");
}

TEST_F(HostInventoryTest, AuditListPagesNewestFirstAndAnswersOldestFirst) {
  AuditTrail trail(clock_, *store_, nullptr);
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(inventory_.listHosts(operatorWith("vic", Role::kViewer), {}).ok());
  auto page = trail.list(operatorWith("vic", Role::kViewer), ListAuditRequest{.limit = 3},
                         [](const AuditEntry&) { return size_t{1}; });
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->records.size(), 3u);
  EXPECT_EQ(page->records[0].id, 3);
  EXPECT_EQ(page->records[2].id, 5);
  EXPECT_EQ(page->next_before_id, 3);
  EXPECT_EQ(audit().back().action, "audit");
  EXPECT_EQ(audit().back().target, "limit=3");
  auto negative = trail.list(operatorWith("vic", Role::kViewer), ListAuditRequest{.before_id = -1},
                             [](const AuditEntry&) { return size_t{1}; });
  EXPECT_EQ(negative.status(),
            absl::InvalidArgumentError(
                "before_id: invalid value -1: must be between 0 and 9223372036854775807"));
}

}  // namespace
}  // namespace bulkhead::controller
