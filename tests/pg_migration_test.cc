// Whole migrations with real ferry processes between SQLite and PostgreSQL
// (FERRY_TEST_PG_URI; skipped when unset): SQLite→PostgreSQL,
// PostgreSQL→PostgreSQL, PostgreSQL→SQLite, with in-process workers and with
// separate ferry-worker processes, and a SIGKILL crash test against a
// PostgreSQL target. The stores are compared row for row with plain libpq /
// sqlite3 (tests/test_util.h), never with ferry's digests.
#include <gtest/gtest.h>
#include <signal.h>

#include <string>
#include <thread>
#include <vector>

#include "tests/cluster.h"
#include "tests/process_util.h"
#include "tests/test_util.h"

namespace ferry::testing {
namespace {

const std::vector<std::string> kDemoTables = {"events", "kv", "users"};

class PgMigrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (PgAdminUri().empty()) GTEST_SKIP() << "FERRY_TEST_PG_URI is not set";
    legacy_ = dir_.File("legacy.db");
    MakeDemoStore(legacy_, 20000, 3);
  }

  std::vector<std::string> CoordinatorArgs(const std::string& source, const std::string& target,
                                           const std::string& state, int from, int to) {
    return {Bin("ferry-coordinator"),
            "--source",
            source,
            "--target",
            target,
            "--state",
            state,
            "--from-version",
            std::to_string(from),
            "--to-version",
            std::to_string(to)};
  }

  // One-command embedded migration with 2 local workers.
  void Migrate(const std::string& source, const std::string& target, int from, int to) {
    std::vector<std::string> argv = CoordinatorArgs(
        source, target, dir_.File("state-" + std::to_string(++runs_) + ".db"), from, to);
    for (const char* a : {"--listen", "tcp://127.0.0.1:0", "--status-endpoint", "tcp://127.0.0.1:0",
                          "--local-workers", "2", "--range-rows", "1500", "--batch-rows", "400"}) {
      argv.push_back(a);
    }
    std::string out, err;
    int code = RunCommandSplit(argv, &out, &err, 120000);
    ASSERT_EQ(code, 0) << out << err;
    EXPECT_EQ(out.find("hunter2"), std::string::npos);
  }

  void ExpectSqliteEqualsPg(const std::string& path, const std::string& uri) {
    for (const std::string& t : kDemoTables) {
      SCOPED_TRACE(t);
      auto a = SqliteCanonicalRows(path, t);
      auto b = PgCanonicalRows(uri, t);
      EXPECT_GT(a.size(), 1000u);
      EXPECT_TRUE(a == b) << a.size() << " rows vs " << b.size()
                          << " rows; first: " << (a.empty() ? "" : a[0]) << " / "
                          << (b.empty() ? "" : b[0]);
    }
  }

  // `ferryctl verify` on the state file of the n-th Migrate (1-based).
  int Verify(int run, std::string* out) {
    std::string err;
    int code = RunCommandSplit(
        {Bin("ferryctl"), "verify", "--state", dir_.File("state-" + std::to_string(run) + ".db")},
        out, &err, 120000);
    *out += err;
    return code;
  }

  TempDir dir_;
  std::string legacy_;
  int runs_ = 0;
};

TEST_F(PgMigrationTest, SqliteToPostgresql) {
  PgTestDb pg;
  ASSERT_TRUE(pg.ok());
  Migrate("sqlite:" + legacy_, pg.uri(), 1, 2);
  ExpectSqliteEqualsPg(legacy_, pg.uri());
  EXPECT_EQ(PgQueryInt(pg.uri(), "SELECT value FROM __ferry_meta WHERE key = 'version'"), 2);
  EXPECT_EQ(PgQueryInt(pg.uri(), "SELECT count(*) FROM __ferry_meta WHERE key = 'boundary'"), 0);
  EXPECT_EQ(PgQueryInt(pg.uri(), "SELECT count(*) FROM pg_indexes WHERE indexname = 'users_email'"),
            1);
  // Idempotent re-run.
  Migrate("sqlite:" + legacy_, pg.uri(), 1, 2);
}

TEST_F(PgMigrationTest, PostgresqlToPostgresqlAndBackToSqlite) {
  PgTestDb src, dst;
  ASSERT_TRUE(src.ok() && dst.ok());
  Migrate("sqlite:" + legacy_, src.uri(), 1, 2);
  Migrate(src.uri(), dst.uri(), 2, 3);
  for (const std::string& t : kDemoTables) {
    SCOPED_TRACE(t);
    auto a = PgCanonicalRows(src.uri(), t);
    EXPECT_GT(a.size(), 1000u);
    EXPECT_TRUE(a == PgCanonicalRows(dst.uri(), t));
  }
  const std::string types =
      "SELECT string_agg(c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, "
      "a.atttypmod), ',' ORDER BY c.relname, a.attnum) FROM pg_attribute a JOIN pg_class c ON "
      "c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = "
      "'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped";
  EXPECT_EQ(PgQueryText(src.uri(), types), PgQueryText(dst.uri(), types));
  EXPECT_EQ(PgQueryInt(dst.uri(), "SELECT value FROM __ferry_meta WHERE key = 'version'"), 3);

  // PostgreSQL → SQLite: the round trip SQLite → PG → PG → SQLite is lossless.
  const std::string back = dir_.File("back.db");
  Migrate(dst.uri(), "sqlite:" + back, 3, 4);
  ExpectSqliteEqualsPg(back, dst.uri());
  EXPECT_EQ(CompareSqliteStores(legacy_, back), "");
  EXPECT_EQ(StoreVersion(back), 4);

  // ferryctl verify reads each pair back row for row, across engines: equal
  // for all three; one cell changed in the middle store is a difference of
  // the job that wrote it (new store) and of the job that read it (legacy
  // written to after the copy).
  std::string out;
  for (int run = 1; run <= 3; ++run) {
    SCOPED_TRACE(run);
    EXPECT_EQ(Verify(run, &out), 0) << out;
    EXPECT_NE(out.find("ferry verify: equal:"), std::string::npos) << out;
  }
  ASSERT_TRUE(PgExec(dst.uri(),
                     "UPDATE users SET name = 'changed' WHERE id = (SELECT min(id) "
                     "FROM users)"));
  EXPECT_EQ(Verify(1, &out), 0) << out;
  EXPECT_EQ(Verify(2, &out), 7) << out;
  EXPECT_NE(out.find("column name is 'user 1' in the legacy store, 'changed' in the new store"),
            std::string::npos)
      << out;
  EXPECT_EQ(Verify(3, &out), 7) << out;
  EXPECT_NE(out.find("the legacy store was written to after this range was copied"),
            std::string::npos)
      << out;
}

// Cells whose storage class the type mapping changes (every class in a
// typeless SQLite column becomes bytea; numbers in a NUMERIC column come back
// as exact decimal text) are the same value: verify says equal and counts
// them, exactly as many as SQLite's typeof() says were converted; a real
// change to one of those cells is still a difference.
TEST_F(PgMigrationTest, VerifyComparesValuesAcrossTheTypeMapping) {
  PgTestDb pg;
  ASSERT_TRUE(pg.ok());
  const std::string mixed = dir_.File("mixed.db");
  ASSERT_TRUE(ExecSql(mixed, R"sql(
    CREATE TABLE m (id INTEGER PRIMARY KEY, anything, amount NUMERIC);
    WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000)
      INSERT INTO m SELECT x,
        CASE x % 5 WHEN 0 THEN x WHEN 1 THEN x * 0.5 WHEN 2 THEN 'text ' || x
                   WHEN 3 THEN randomblob(8) ELSE NULL END,
        CASE x % 3 WHEN 0 THEN x WHEN 1 THEN x / 8.0 ELSE NULL END FROM c;
  )sql"));
  const int64_t converted = QueryInt(
      mixed,
      "SELECT (SELECT count(*) FROM m WHERE typeof(anything) IN ('integer', 'real', 'text')) + "
      "(SELECT count(*) FROM m WHERE typeof(amount) IN ('integer', 'real'))");
  ASSERT_GT(converted, 2000);
  Migrate("sqlite:" + mixed, pg.uri(), 1, 2);

  std::string out;
  EXPECT_EQ(Verify(1, &out), 0) << out;
  EXPECT_NE(out.find("note: " + std::to_string(converted) + " cell(s) hold the same value"),
            std::string::npos)
      << out;
  ASSERT_TRUE(PgExec(pg.uri(), "UPDATE m SET anything = 'x'::bytea WHERE id = 10"));
  ASSERT_TRUE(PgExec(pg.uri(), "UPDATE m SET amount = amount + 1 WHERE id = 12"));
  EXPECT_EQ(Verify(1, &out), 7) << out;
  EXPECT_NE(out.find("key (10): column anything is 10 in the legacy store, x'78'"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("key (12): column amount is 12 in the legacy store, '13' in the new store"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("DIFFERENT: 2 difference(s)"), std::string::npos) << out;
}

// Separate ferry-worker processes; then SIGKILL of the coordinator and a
// worker mid-migration, restart, and the PostgreSQL target ends equal, at
// version 2, marked once.
TEST_F(PgMigrationTest, SeparateWorkersSurviveKillsAgainstPostgresqlTarget) {
  PgTestDb pg;
  ASSERT_TRUE(pg.ok());
  Cluster c(dir_.path());
  std::vector<std::string> argv = CoordinatorArgs("sqlite:" + legacy_, pg.uri(), c.state, 1, 2);
  for (const std::string& a : std::vector<std::string>{
           "--listen", c.listen(), "--status-endpoint", c.status_endpoint(), "--lease-ttl", "2",
           "--range-rows", "1000", "--batch-rows", "200", "--exit-when-done"}) {
    argv.push_back(a);
  }
  auto coord = std::make_unique<Process>(argv, dir_.File("coordinator.log"));
  std::vector<std::unique_ptr<Process>> workers;
  workers.push_back(c.StartWorker("w0"));
  workers.push_back(c.StartWorker("w1"));
  ASSERT_TRUE(c.WaitState("copying", 20000)) << c.Logs();
  c.Command("throttle 4000");  // keeps the copy running long enough to kill it mid-way
  ASSERT_TRUE(
      WaitFor([&] { return PgQueryInt(pg.uri(), "SELECT count(*) FROM users", 0) > 500; }, 30000))
      << c.Logs();
  coord->Signal(SIGKILL);
  coord->Wait(5000);
  workers[0]->Signal(SIGKILL);
  workers[0]->Wait(5000);
  const int64_t at_kill = PgQueryInt(pg.uri(), "SELECT count(*) FROM users", 0);
  EXPECT_LT(at_kill, 10000);  // really mid-migration

  coord = std::make_unique<Process>(argv, dir_.File("coordinator.log"));
  workers[0] = c.StartWorker("w2");
  if (c.WaitState("copying", 10000)) c.Command("throttle off");
  ASSERT_TRUE(coord->Wait(120000)) << c.Logs();
  EXPECT_EQ(coord->exit_code(), 0) << c.Logs();
  for (auto& w : workers) {
    ASSERT_TRUE(w->Wait(30000)) << c.Logs();
    EXPECT_EQ(w->exit_code(), 0);
  }
  ExpectSqliteEqualsPg(legacy_, pg.uri());
  EXPECT_EQ(PgQueryInt(pg.uri(), "SELECT value FROM __ferry_meta WHERE key = 'version'"), 2);
  EXPECT_EQ(PgQueryInt(pg.uri(), "SELECT count(*) FROM __ferry_meta WHERE key = 'boundary'"), 0);
  EXPECT_EQ(c.Logs().find("password"), std::string::npos);
}

}  // namespace
}  // namespace ferry::testing
