// --verify through a migration spec, in process: the legacy rows are
// compared as the spec makes them (a projection that renames and computes,
// a `where`, a Lua function that drops some rows and fails on others) with
// the new store's rows, and repaired through the same transform. Rows the
// copy rejected stay out of the new store (a row put there behind ferry's
// back at a rejected key is deleted, not "repaired"); rows the spec filters
// or drops are deleted too. Every expected row is computed here from the
// formulas that made the legacy rows and compared with the new store read
// with plain sqlite3 (tests/test_util.h), never through ferry's code.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "coordinator/coordinator_server.h"
#include "ferry.capnp.h"
#include "spec/migration_spec.h"
#include "tests/test_util.h"
#include "tests/verify_fixture.h"

namespace ferry {
namespace {

using testing::ExecSql;
using testing::IntKeyBound;
using testing::KeyName;
using testing::QueryInt;
using testing::TempDir;
using testing::WorkerThread;

constexpr int kUsers = 3000;

// The legacy rows, by formula.
bool Deleted(int i) { return i % 10 == 0; }   // filtered out by `where`
bool Rejected(int i) { return i % 97 == 0; }  // the Lua function fails on it
bool Dropped(int i) { return i % 7 == 0; }    // the Lua function returns nil
std::string Email(int i) { return "User" + std::to_string(i) + "@Example.ORG"; }
std::string LowerEmail(int i) { return "user" + std::to_string(i) + "@example.org"; }
bool Expected(int i) { return !Deleted(i) && !Rejected(i) && !Dropped(i); }
bool RejectedByCopy(int i) { return !Deleted(i) && Rejected(i); }

constexpr const char* kSpec = R"toml(
[[table]]
target = "accounts"
source = "users"
select = "id AS account_id, lower(email) AS email, v"
where = "deleted = 0"
create = "CREATE TABLE accounts (account_id INTEGER PRIMARY KEY, email TEXT NOT NULL, v2 INTEGER NOT NULL)"
lua = '''
return function(row)
  if row.v % 97 == 0 then error("bad v1 record " .. row.v) end
  if row.v % 7 == 0 then return nil end
  return { account_id = row.account_id, email = row.email, v2 = row.v * 2 }
end
'''
)toml";

void MakeLegacy(const std::string& path) {
  std::string sql =
      "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, deleted INTEGER NOT "
      "NULL, v INTEGER NOT NULL); BEGIN;";
  for (int i = 1; i <= kUsers; ++i) {
    sql += "INSERT INTO users VALUES (" + std::to_string(i) + ", '" + Email(i) + "', " +
           (Deleted(i) ? "1" : "0") + ", " + std::to_string(i) + ");";
  }
  sql += "COMMIT;";
  ASSERT_TRUE(ExecSql(path, sql));
}

TEST(VerifySpecTest, RepairsThroughTheSpecAndNeverRepairsRejectedRowsIn) {
  TempDir dir;
  const std::string legacy = dir.File("legacy.db");
  const std::string target = dir.File("new.db");
  MakeLegacy(legacy);
  zmq::context_t ctx;
  SystemClock clock;
  CoordinatorOptions o = testing::VerifyingCoordinator(legacy, target, dir.File("state.db"),
                                                       "inproc://verify-spec-status");
  o.range_rows = 400;
  o.batch_rows = 100;
  o.lease_ttl_ms = 5000;
  o.max_rejects = 1000;
  o.spec.emplace();
  ASSERT_TRUE(ParseSpecText(kSpec, "test.toml", &*o.spec).ok());
  CoordinatorServer c(o, &clock, &ctx);
  Status started = c.Start();
  ASSERT_TRUE(started.ok()) << started.ToString();

  // Copy-only workers: every range copied, none verified.
  {
    WorkerThread a(&ctx, c.inproc_endpoint(), "copier-a", FEATURE_SPLIT);
    WorkerThread b(&ctx, c.inproc_endpoint(), "copier-b", FEATURE_SPLIT);
    const int64_t deadline = MonotonicMs() + 60000;
    while (MonotonicMs() < deadline && !c.service().table().AllDone()) c.Step(5);
    ASSERT_TRUE(c.service().table().AllDone()) << c.HandleCommand("status");
    EXPECT_FALSE(c.complete());
    a.RequestStop();
    b.RequestStop();
    while (!(a.finished() && b.finished()) && MonotonicMs() < deadline) c.Step(5);
  }
  int rejected = 0;
  for (int i = 1; i <= kUsers; ++i) rejected += RejectedByCopy(i);
  ASSERT_EQ(QueryInt(target, "SELECT count(*) FROM __ferry_rejects"), rejected);

  // Behind ferry's back, in every done range of the new store: delete the
  // first expected row, change a computed cell of the second, and add a row
  // at a key the spec drops or filters. Plus one row at a rejected key.
  std::set<std::string> corrupted;
  for (const RangeRecord& r : c.service().table().ranges()) {
    ASSERT_EQ(r.state, RangeState::kDone);
    ASSERT_FALSE(r.verified);
    const int64_t lo = std::max<int64_t>(1, IntKeyBound(r.lo, 1));
    const int64_t hi = std::min<int64_t>(kUsers + 1, IntKeyBound(r.hi, kUsers + 1));
    std::vector<int64_t> expected, absent;
    for (int64_t i = lo; i < hi; ++i) {
      if (Expected(static_cast<int>(i))) expected.push_back(i);
      if (!RejectedByCopy(static_cast<int>(i)) && !Expected(static_cast<int>(i)))
        absent.push_back(i);
    }
    ASSERT_GE(expected.size(), 2u);
    ASSERT_GE(absent.size(), 1u);
    ASSERT_TRUE(
        ExecSql(target, "DELETE FROM accounts WHERE account_id = " + std::to_string(expected[0])));
    ASSERT_TRUE(ExecSql(
        target, "UPDATE accounts SET v2 = -1 WHERE account_id = " + std::to_string(expected[1])));
    ASSERT_TRUE(ExecSql(target, "INSERT INTO accounts VALUES (" + std::to_string(absent[0]) +
                                    ", 'not from the spec', 0)"));
    for (int64_t k : {expected[0], expected[1], absent[0]}) corrupted.insert(KeyName(k));
  }
  ASSERT_TRUE(RejectedByCopy(97));
  ASSERT_TRUE(ExecSql(target, "INSERT INTO accounts VALUES (97, 'user97@example.org', 194)"));
  corrupted.insert(KeyName(97));

  // Workers that verify.
  const std::vector<Status> verifiers = testing::RunVerifiers(c, &ctx);
  ASSERT_TRUE(c.complete()) << c.HandleCommand("status");
  EXPECT_TRUE(verifiers[0].ok()) << verifiers[0].ToString();
  EXPECT_TRUE(verifiers[1].ok()) << verifiers[1].ToString();

  // The new store holds exactly the spec's rows.
  std::vector<std::string> want;
  for (int i = 1; i <= kUsers; ++i) {
    if (Expected(i)) {
      want.push_back("i:" + std::to_string(i) + "|t:" + LowerEmail(i) +
                     "|i:" + std::to_string(2 * i));
    }
  }
  std::sort(want.begin(), want.end());
  EXPECT_EQ(testing::SqliteCanonicalRows(target, "accounts"), want);
  // Rejected rows are not in it (97 was put there behind ferry's back and
  // deleted), and are still listed as rejected.
  for (int i = 1; i <= kUsers; ++i) {
    if (!RejectedByCopy(i)) continue;
    EXPECT_EQ(
        QueryInt(target, "SELECT count(*) FROM accounts WHERE account_id = " + std::to_string(i)),
        0)
        << i;
  }
  EXPECT_EQ(QueryInt(target, "SELECT count(*) FROM __ferry_rejects"), rejected);

  const nlohmann::json st = nlohmann::json::parse(c.HandleCommand("status"));
  EXPECT_EQ(st["rows_repaired"], corrupted.size());
  EXPECT_EQ(st["ranges_verified"], st["ranges_total"]);
  EXPECT_EQ(testing::StoreVersion(target), 2);
  auto events = c.state()->LoadEvents(1000);
  ASSERT_TRUE(events.ok());
  std::string repairs;
  for (const Event& e : *events) {
    if (e.kind == "repair") repairs += e.detail + "\n";
  }
  for (const std::string& k : corrupted) {
    EXPECT_NE(repairs.find(k), std::string::npos) << k << " not named in:\n" << repairs;
  }
}

}  // namespace
}  // namespace ferry
