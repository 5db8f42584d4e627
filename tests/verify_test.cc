// `ferryctl verify` as an operator runs it after a migration: real
// coordinator and ferryctl processes, stores changed behind ferry's back
// with plain SQL, and every verdict checked against what was changed.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/process_util.h"
#include "tests/test_util.h"

namespace ferry::testing {
namespace {

using Args = std::vector<std::string>;

class VerifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    legacy_ = dir_.File("legacy.db");
    MakeDemoStore(legacy_, 6000, 7);
  }

  // The one-command embedded migration into `target`, state in `state`.
  void Migrate(const std::string& target, const std::string& state) {
    std::string out, err;
    int code = RunCommandSplit(
        CoordinatorArgs("sqlite:" + legacy_, target, state,
                        {"--local-workers", "2", "--range-rows", "700", "--batch-rows", "150"}),
        &out, &err, 120000);
    ASSERT_EQ(code, 0) << out << err;
  }

  int Verify(const Args& extra, std::string* out, std::string* err) {
    Args a = {Bin("ferryctl"), "verify"};
    a.insert(a.end(), extra.begin(), extra.end());
    return RunCommandSplit(a, out, err, 120000);
  }

  nlohmann::json VerifyJson(const Args& extra, int* code) {
    std::string out, err;
    Args a = extra;
    a.push_back("--json");
    *code = Verify(a, &out, &err);
    auto j = nlohmann::json::parse(out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << out << err;
    return j;
  }

  int64_t LegacyRows() {
    return QueryInt(legacy_,
                    "SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM kv) + "
                    "(SELECT count(*) FROM events)");
  }

  TempDir dir_;
  std::string legacy_;
};

// After a clean migration verify says equal (exit 0) and has read every
// legacy row; each change made to the new store afterwards — a row deleted,
// a cell changed (even only its storage class), a row added — is one
// difference naming its key, and verify exits 7.
TEST_F(VerifyTest, FindsEachRowChangedInTheNewStoreAndNothingElse) {
  const std::string target = dir_.File("new.db"), state = dir_.File("state.db");
  Migrate("sqlite:" + target, state);
  ASSERT_EQ(CompareSqliteStores(legacy_, target), "");

  std::string out, err;
  ASSERT_EQ(Verify({"--state", state}, &out, &err), 0) << out << err;
  EXPECT_NE(out.find("ferry verify: equal:"), std::string::npos) << out;
  int code = 0;
  nlohmann::json j = VerifyJson({"--state", state}, &code);
  EXPECT_EQ(code, 0);
  EXPECT_EQ(j["equal"], true);
  EXPECT_EQ(j["rows_checked"].get<int64_t>(), LegacyRows());
  EXPECT_EQ(j["ranges_checked"], j["ranges_total"]);
  EXPECT_GT(j["ranges_total"].get<int>(), 3);

  const int64_t user = QueryInt(legacy_, "SELECT id FROM users ORDER BY id LIMIT 1 OFFSET 17");
  ASSERT_TRUE(ExecSql(target, "DELETE FROM users WHERE id = " + std::to_string(user)));
  // The same bytes as text instead of blob: only the storage class differs.
  ASSERT_TRUE(ExecSql(target,
                      "UPDATE users SET avatar = CAST(avatar AS TEXT) WHERE id = (SELECT id FROM "
                      "users WHERE avatar IS NOT NULL ORDER BY id DESC LIMIT 1)"));
  ASSERT_TRUE(ExecSql(target, "INSERT INTO users (id, name) VALUES (9000000001, 'intruder')"));

  ASSERT_EQ(Verify({"--state", state}, &out, &err), 7) << out << err;
  EXPECT_NE(out.find("key (" + std::to_string(user) + ") is missing from the new store"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("key (9000000001) is in the new store but not in the legacy store"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("column avatar is x'"), std::string::npos) << out;
  EXPECT_NE(out.find("ferry verify: DIFFERENT: 3 difference(s)"), std::string::npos) << out;
  j = VerifyJson({"--state", state}, &code);
  EXPECT_EQ(code, 7);
  EXPECT_EQ(j["differences"], 3);
  EXPECT_EQ(j["rows_checked"].get<int64_t>(), LegacyRows());

  // --max-differences bounds the lines, not the count.
  ASSERT_EQ(Verify({"--state", state, "--max-differences", "1"}, &out, &err), 7);
  EXPECT_NE(out.find("... and 2 more"), std::string::npos) << out;
}

// A legacy row changed after its range was copied: the stores differ in that
// row, and the legacy range no longer matches the digest the worker reported
// — verify says the legacy store was written to.
TEST_F(VerifyTest, LegacyWrittenAfterTheCopyIsNamed) {
  const std::string target = dir_.File("new.db"), state = dir_.File("state.db");
  Migrate("sqlite:" + target, state);
  const std::string changed = dir_.File("legacy-changed.db");
  ASSERT_TRUE(ExecSql(legacy_, "VACUUM INTO '" + changed + "'"));
  ASSERT_TRUE(ExecSql(changed, "UPDATE kv SET v = x'00' WHERE k = (SELECT k FROM kv LIMIT 1)"));

  std::string out, err;
  ASSERT_EQ(Verify({"--state", state, "--source", "sqlite:" + changed}, &out, &err), 7)
      << out << err;
  EXPECT_NE(out.find("column v is x'00' in the legacy store"), std::string::npos) << out;
  EXPECT_NE(out.find("the legacy store was written to after this range was copied"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("ferry verify: DIFFERENT: 2 difference(s) in 1 of"), std::string::npos) << out;
}

// Verify before the migration has run: nothing is done, nothing is read,
// and it says so (exit 0: no difference among what it could compare).
// Bad input: one line, exit 2, nothing written.
TEST_F(VerifyTest, UnfinishedJobAndBadStateFile) {
  const std::string target = dir_.File("new.db"), state = dir_.File("state.db");
  {
    // A coordinator that plans and is stopped (SIGTERM) before any worker copies.
    Process c({Bin("ferry-coordinator"), "--source", "sqlite:" + legacy_, "--target",
               "sqlite:" + target, "--state", state, "--listen", "tcp://127.0.0.1:0",
               "--status-endpoint", "tcp://127.0.0.1:0", "--range-rows", "700", "--endpoints-file",
               dir_.File("endpoints.json")});
    CoordinatorEndpoints ep;
    ASSERT_TRUE(ReadEndpointsFile(dir_.File("endpoints.json"), &ep, 30000));
    c.Signal(SIGTERM);
    ASSERT_TRUE(c.Wait(30000));
  }
  std::string out, err;
  ASSERT_EQ(Verify({"--state", state}, &out, &err), 0) << out << err;
  EXPECT_NE(out.find("ferry verify: equal so far: 0 rows in 0 of"), std::string::npos) << out;
  EXPECT_NE(out.find("not done yet were not compared"), std::string::npos) << out;

  const std::string missing = dir_.File("missing.db");
  ASSERT_EQ(Verify({"--state", missing}, &out, &err), 2);
  EXPECT_NE(err.find("--state " + missing + ": no such file"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_FALSE(std::ifstream(missing).good()) << "verify must not create the state file";
  ASSERT_EQ(Verify({"--state", legacy_}, &out, &err), 2);
  EXPECT_NE(err.find("is not a ferry coordinator state file"), std::string::npos) << err;
}

}  // namespace
}  // namespace ferry::testing
