// The flags of verification, splitting and batch sizing as an operator meets
// them, with real ferry-coordinator processes: one-command migrations with
// --verify and --batch-time-ms end with the stores equal (plain SQL), and bad
// input is one line with exit code 2 — a --batch-time-ms that is not a
// positive number, a --verify whose new store cannot be read back.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/process_util.h"
#include "tests/test_util.h"

namespace ferry::testing {
namespace {

using Args = std::vector<std::string>;

class ScaleCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    legacy_ = dir_.File("legacy.db");
    target_ = dir_.File("new.db");
    state_ = dir_.File("state.db");
    MakeDemoStore(legacy_, 3000);
  }
  int Run(const Args& extra, std::string* out, std::string* err) {
    return RunCommandSplit(CoordinatorArgs("sqlite:" + legacy_, "sqlite:" + target_, state_, extra),
                           out, err);
  }
  TempDir dir_;
  std::string legacy_, target_, state_;
};

TEST_F(ScaleCliTest, BatchTimeMustBeAPositiveNumberOfMilliseconds) {
  for (const char* bad : {"0", "-5", "-1"}) {
    std::string out, err;
    EXPECT_EQ(Run({"--local-workers", "1", "--batch-time-ms", bad}, &out, &err), 2) << bad << err;
    auto lines = NonEmptyLines(err);
    ASSERT_EQ(lines.size(), 1u) << err;
    EXPECT_NE(lines[0].find("--batch-time-ms must be a positive number"), std::string::npos)
        << lines[0];
  }
  std::string out, err;
  EXPECT_EQ(Run({"--local-workers", "1", "--batch-time-ms", "abc"}, &out, &err), 2) << err;
  EXPECT_EQ(NonEmptyLines(err).size(), 1u) << err;
}

// Verification needs a legacy store that no longer changes: with --online
// it is refused before anything (the capture, the state) is installed.
TEST_F(ScaleCliTest, VerifyWithOnlineIsRefusedInstallingNothing) {
  std::string out, err;
  EXPECT_EQ(Run({"--local-workers", "1", "--verify", "--online"}, &out, &err), 2) << err;
  auto lines = NonEmptyLines(err);
  ASSERT_EQ(lines.size(), 1u) << err;
  EXPECT_NE(lines[0].find("--verify and --online cannot be combined"), std::string::npos)
      << lines[0];
  EXPECT_FALSE(std::filesystem::exists(state_));
  EXPECT_FALSE(std::filesystem::exists(target_));
  EXPECT_EQ(QueryText(legacy_,
                      "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' OR "
                      "name = '__ferry_changes'"),
            "0");
}

TEST_F(ScaleCliTest, VerifyAndBatchTimeMigrateToEqualStores) {
  std::string out, err;
  ASSERT_EQ(Run({"--local-workers", "2", "--verify", "--batch-time-ms", "50", "--range-rows", "400",
                 "--log-level", "info"},
                &out, &err),
            0)
      << out << err;
  EXPECT_EQ(CompareSqliteStores(legacy_, target_), "");
  EXPECT_EQ(StoreVersion(target_), 2);
  EXPECT_EQ(QueryInt(state_, "SELECT count(*) FROM ranges WHERE verified = 0"), 0);
  EXPECT_GT(QueryInt(state_, "SELECT count(*) FROM ranges"), 3);
  EXPECT_EQ(QueryInt(state_, "SELECT verify FROM job"), 1);
  // Each worker says how long its batches took against the target.
  EXPECT_NE(err.find("batch_times"), std::string::npos) << err;
  EXPECT_NE(err.find("target_ms=50"), std::string::npos) << err;
  // Run again: nothing to do.
  ASSERT_EQ(Run({"--local-workers", "2", "--verify"}, &out, &err), 0) << err;
  EXPECT_NE(out.find("nothing to do"), std::string::npos) << out;
}

// A PostgreSQL role that may write the new store's tables but not read them
// back: --verify is refused at start, in one line, before anything is copied.
TEST_F(ScaleCliTest, VerifyWithANewStoreThatCannotBeReadBackIsRefused) {
  if (PgAdminUri().empty()) GTEST_SKIP() << "FERRY_TEST_PG_URI is not set";
  PgTestDb db;
  ASSERT_TRUE(db.ok());
  const std::string role = "ferry_writeonly_" + db.name().substr(db.name().size() - 6);
  ASSERT_TRUE(PgExec(db.uri(), "CREATE ROLE " + role + " LOGIN"));
  // The table as ferry would create it, owned by the admin; the role may
  // insert, update and delete, and create the metadata table, not select.
  const std::string legacy = dir_.File("kv.db");
  ASSERT_TRUE(ExecSql(legacy,
                      "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);"
                      "INSERT INTO kv VALUES (1, 'a'), (2, 'b');"));
  ASSERT_TRUE(PgExec(db.uri(),
                     "CREATE TABLE kv (k bigint PRIMARY KEY, v text); GRANT INSERT, "
                     "UPDATE, DELETE ON kv TO " +
                         role + "; GRANT CREATE, USAGE ON SCHEMA public TO " + role));
  std::string uri = db.uri();
  const size_t at = uri.find("://") + 3;
  uri = uri.substr(0, at) + role + uri.substr(uri.find('@'));
  std::string out, err;
  const int code = RunCommandSplit(
      CoordinatorArgs("sqlite:" + legacy, uri, state_, {"--local-workers", "1", "--verify"}), &out,
      &err);
  EXPECT_EQ(code, 2) << out << err;
  auto lines = NonEmptyLines(err);
  ASSERT_EQ(lines.size(), 1u) << err;
  EXPECT_NE(lines[0].find("--verify reads the new store"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("cannot be read"), std::string::npos) << lines[0];
  EXPECT_EQ(PgQueryInt(db.uri(), "SELECT count(*) FROM kv"), 0);  // nothing copied
  (void)PgExec(db.uri(), "DROP OWNED BY " + role + "; DROP ROLE " + role);
}

}  // namespace
}  // namespace ferry::testing
