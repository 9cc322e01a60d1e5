// backupDatabase: a consistent copy of a database another connection keeps writing.
#include "controller/store/backup.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "controller/store/sqlite_store.h"

namespace bulkhead::controller {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class BackupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("bh-backup-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    auto store = SqliteStore::create(dir_ / "controller.db");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }
  static AuditEntry row(int i) {
    return AuditEntry{.at_unix_ms = i,
                      .operator_name = "alice",
                      .action = "block",
                      .target = "all",
                      .reason = "r",
                      .outcome = "ok"};
  }

  fs::path dir_;
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(BackupTest, ACopyTakenWhileTheControllerWritesIsWholeAndItsChainVerifies) {
  bulkhead::v1::DesiredState isolated;
  isolated.set_generation(7);
  ASSERT_TRUE(store_->saveDesiredState("web-01", isolated).ok());
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(store_->appendAudit(row(i)).ok());
  // A writer keeps appending while the backup runs.
  std::atomic<bool> stop{false};
  std::atomic<int> written{200};
  std::thread writer([&] {
    for (int i = 200; !stop && i < 100000; ++i) {
      if (store_->appendAudit(row(i)).ok()) ++written;
    }
  });
  auto summary = backupDatabase(dir_ / "controller.db", dir_ / "copy.db");
  stop = true;
  writer.join();
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_GE(summary->audit_rows, 200);
  EXPECT_LE(summary->audit_rows, written.load());
  EXPECT_EQ(summary->desired_states, 1);
  EXPECT_EQ(summary->schema_version, SqliteStore::latestSchemaVersion());
  EXPECT_EQ(summary->bytes, fs::file_size(dir_ / "copy.db"));
  EXPECT_FALSE(fs::exists(dir_ / "copy.db.partial"));
  EXPECT_FALSE(fs::exists(dir_ / "copy.db-wal"));

  // The copy opens as a store on its own: the chain verifies, the desired state is there.
  auto copy = SqliteStore::create(dir_ / "copy.db");
  ASSERT_TRUE(copy.ok()) << copy.status();
  auto verified = (*copy)->verifyAudit();
  ASSERT_TRUE(verified.ok());
  EXPECT_TRUE(verified->ok) << verified->problem;
  EXPECT_EQ(verified->rows, summary->audit_rows);
  auto states = (*copy)->loadDesiredStates();
  ASSERT_TRUE(states.ok());
  EXPECT_EQ(states->at("web-01").generation(), 7u);
}

TEST_F(BackupTest, AnExistingTargetOrAMissingDatabaseIsRefusedAndNothingIsWritten) {
  std::ofstream(dir_ / "taken.db") << "an older backup";
  auto refused = backupDatabase(dir_ / "controller.db", dir_ / "taken.db");
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("taken.db exists"));
  std::ifstream in(dir_ / "taken.db");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "an older backup");

  auto missing = backupDatabase(dir_ / "nope" / "controller.db", dir_ / "b.db");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("no database at"));
  EXPECT_FALSE(fs::exists(dir_ / "b.db"));
  EXPECT_FALSE(fs::exists(dir_ / "nope"));
}

TEST_F(BackupTest, AnUnwritableTargetLeavesNoPartialFile) {
  auto refused = backupDatabase(dir_ / "controller.db", dir_ / "no-such-dir" / "b.db");
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("--to: cannot write"));
  EXPECT_FALSE(fs::exists(dir_ / "no-such-dir"));
}

TEST_F(BackupTest, ARestoreOutranksEveryGenerationSentAfterTheBackupAndIsAudited) {
  bulkhead::v1::DesiredState isolated;
  isolated.set_generation(7);
  ASSERT_TRUE(store_->saveDesiredState("web-01", isolated).ok());
  ASSERT_TRUE(store_->appendAudit(row(1)).ok());
  ASSERT_TRUE(backupDatabase(dir_ / "controller.db", dir_ / "b.db").ok());
  // After the backup the controller sent web-01 generation 8: its agent holds that.
  isolated.set_generation(8);
  ASSERT_TRUE(store_->saveDesiredState("web-01", isolated).ok());

  fs::create_directories(dir_ / "restored");
  const AuditEntry restore{.at_unix_ms = 99,
                           .operator_name = "controller",
                           .action = "controller-restore",
                           .target = "all",
                           .reason = "b.db",
                           .outcome = "ok"};
  auto restored = restoreDatabase(dir_ / "b.db", dir_ / "restored" / "controller.db", {}, restore);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->states_raised, 1);
  auto store = SqliteStore::create(dir_ / "restored" / "controller.db");
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->loadDesiredStates()->at("web-01").generation(), 7 + kRestoreGenerationStep);
  EXPECT_GT(7 + kRestoreGenerationStep, 8u);
  auto verified = (*store)->verifyAudit();
  ASSERT_TRUE(verified.ok());
  EXPECT_TRUE(verified->ok) << verified->problem;
  auto last = (*store)->listAudit(1);
  ASSERT_EQ(last->size(), 1u);
  EXPECT_EQ(last->back().action, "controller-restore");
  EXPECT_THAT(last->back().detail, HasSubstr("generations raised by 4294967296"));

  // A second restore onto the same directory is refused: nothing is replaced.
  auto again = restoreDatabase(dir_ / "b.db", dir_ / "restored" / "controller.db", {}, restore);
  ASSERT_FALSE(again.ok());
  EXPECT_THAT(std::string(again.status().message()), HasSubstr("never replaces a database"));
}

TEST_F(BackupTest, ABackupWhoseChainDoesNotVerifyIsNotRestored) {
  ASSERT_TRUE(store_->appendAudit(row(1)).ok());
  ASSERT_TRUE(store_->appendAudit(row(2)).ok());
  ASSERT_TRUE(backupDatabase(dir_ / "controller.db", dir_ / "b.db").ok());
  {
    auto tampered = SqliteStore::create(dir_ / "b.db");
    ASSERT_TRUE(tampered.ok());
    ASSERT_TRUE((*tampered)->execForTest("UPDATE audit SET target = 'nothing' WHERE id = 1").ok());
  }
  fs::create_directories(dir_ / "restored");
  auto restored = restoreDatabase(
      dir_ / "b.db", dir_ / "restored" / "controller.db", {},
      AuditEntry{.operator_name = "controller", .action = "controller-restore", .outcome = "ok"});
  ASSERT_FALSE(restored.ok());
  EXPECT_THAT(std::string(restored.status().message()), HasSubstr("does not verify"));
  EXPECT_FALSE(fs::exists(dir_ / "restored" / "controller.db"));
}

}  // namespace
}  // namespace bulkhead::controller
