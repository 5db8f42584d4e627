// Tests of WalCheckpointer (common/wal_checkpointer.h) on real SQLite files.
#include "common/wal_checkpointer.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "tests/process_util.h"
#include "tests/test_util.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

class WalCheckpointerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db_), SQLITE_OK);
    ASSERT_EQ(Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                   "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)"),
              SQLITE_OK);
  }
  void TearDown() override { sqlite3_close(db_); }
  int Exec(const std::string& sql) {
    return sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
  }
  // `commits` transactions of one 3 KiB row each: a few WAL frames apiece.
  void Write(int commits) {
    for (int i = 0; i < commits; ++i) {
      ASSERT_EQ(Exec("INSERT INTO t (v) VALUES (randomblob(3000))"), SQLITE_OK);
    }
  }
  // Frames in the WAL now (a PASSIVE checkpoint with nothing to do reports it).
  int LogFrames() {
    int log = -1, done = -1;
    sqlite3_wal_checkpoint_v2(db_, "main", SQLITE_CHECKPOINT_PASSIVE, &log, &done);
    return log;
  }

  testing::TempDir dir_;
  std::string path_ = dir_.File("state.db");
  sqlite3* db_ = nullptr;
};

TEST_F(WalCheckpointerTest, CheckpointsRunOnItsOwnThreadOnceTheLogIsLong) {
  WalCheckpointer ckpt(path_, /*frames=*/100, /*restart_frames=*/1000000);
  ckpt.Attach(db_);
  Write(10);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(ckpt.passive_checkpoints(), 0u);      // below the threshold: nothing
  EXPECT_LT(fs::file_size(path_), 100u * 1024u);  // the rows are only in the WAL
  Write(300);
  ASSERT_TRUE(testing::WaitFor([&] { return ckpt.passive_checkpoints() > 0; }, 10000));
  // The pages really moved into the database file: ~300 rows of 3000 bytes
  // (a checkpoint on a connection that never read the file does nothing
  // and still returns SQLITE_OK).
  ASSERT_TRUE(testing::WaitFor([&] { return fs::file_size(path_) >= 300u * 3000u; }, 10000))
      << "database file is " << fs::file_size(path_) << " bytes";
  EXPECT_EQ(ckpt.restart_checkpoints(), 0u);
  sqlite3_stmt* s = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db_, "SELECT count(*) FROM t", -1, &s, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(s, 0), 310);
  sqlite3_finalize(s);
}

TEST_F(WalCheckpointerTest, ALogThatKeepsGrowingIsRestartedByTheWriter) {
  // The thread never runs (threshold out of reach): only the restart bound
  // keeps the log from growing.
  WalCheckpointer ckpt(path_, /*frames=*/1000000, /*restart_frames=*/200);
  ckpt.Attach(db_);
  Write(1000);
  EXPECT_GE(ckpt.restart_checkpoints(), 3u);
  EXPECT_EQ(ckpt.passive_checkpoints(), 0u);
  EXPECT_LE(LogFrames(), 220);  // the log restarted instead of holding ~1000 frames
  EXPECT_LE(fs::file_size(path_ + "-wal"), 230u * 4120u);
}

}  // namespace
}  // namespace ferry
