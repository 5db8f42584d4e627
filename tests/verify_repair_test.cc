// --verify end to end, in process: the new store is corrupted behind
// ferry's back while it copies (rows of done ranges deleted, cells changed,
// rows the legacy store lacks added); verification repairs every one of them
// before the version bump. Checked independently of ferry: the stores are
// compared row for row with SQL (tests/test_util.h), the repairs counted
// against the corruptions made, and the repair events must name the keys.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "coordinator/coordinator_server.h"
#include "ferry.capnp.h"
#include "tests/test_util.h"
#include "tests/verify_fixture.h"

namespace ferry {
namespace {

using testing::CompareSqliteStores;
using testing::ExecSql;
using testing::IntKeyBound;
using testing::KeyName;
using testing::QueryInt;
using testing::TempDir;
using testing::WorkerThread;

// An integer key bound of a range ("" = unbounded) as SQL.
std::string IntBound(const std::string& encoded, int64_t unbounded) {
  return std::to_string(IntKeyBound(encoded, unbounded));
}

// The corruptions made, by printed key (KeyToString), per table.
struct Corruptions {
  std::set<std::string> keys;
  int deleted = 0, changed = 0, added = 0;
};

// Corrupts the copied rows of users-range `r` in the new store: deletes its
// first row, changes a cell of its second, adds a row the legacy store
// lacks after its third (user ids are 3 apart).
void CorruptUsersRange(const std::string& target, const RangeRecord& r, Corruptions* c) {
  const std::string where =
      "id >= " + IntBound(r.lo, INT64_MIN) + " AND id < " + IntBound(r.hi, INT64_MAX);
  const int64_t first = QueryInt(target, "SELECT id FROM users WHERE " + where + " ORDER BY id");
  const int64_t second =
      QueryInt(target, "SELECT id FROM users WHERE " + where + " ORDER BY id LIMIT 1 OFFSET 1");
  const int64_t third =
      QueryInt(target, "SELECT id FROM users WHERE " + where + " ORDER BY id LIMIT 1 OFFSET 2");
  ASSERT_GT(third, 0) << "range " << r.id << " has fewer than 3 rows";
  ASSERT_TRUE(ExecSql(target, "DELETE FROM users WHERE id = " + std::to_string(first)));
  ASSERT_TRUE(ExecSql(target, "UPDATE users SET name = 'corrupted', score = -1 WHERE id = " +
                                  std::to_string(second)));
  ASSERT_TRUE(ExecSql(target, "INSERT INTO users (id, name) VALUES (" + std::to_string(third + 1) +
                                  ", 'not in the legacy store')"));
  for (int64_t k : {first, second, third + 1}) c->keys.insert(KeyName(k));
  c->deleted++;
  c->changed++;
  c->added++;
}

TEST(VerifyRepairTest, CorruptionBehindFerrysBackIsRepairedBeforeTheVersionBump) {
  TempDir dir;
  const std::string legacy = dir.File("legacy.db");
  const std::string target = dir.File("new.db");
  testing::MakeDemoStore(legacy, 12000);
  zmq::context_t ctx;
  SystemClock clock;
  CoordinatorOptions o = testing::VerifyingCoordinator(legacy, target, dir.File("state.db"),
                                                       "inproc://verify-repair-status");
  o.range_rows = 500;
  o.batch_rows = 100;
  o.lease_ttl_ms = 5000;
  CoordinatorServer c(o, &clock, &ctx);
  ASSERT_TRUE(c.Start().ok());

  // Copy-only workers first: every range is copied, none verified; users
  // ranges are corrupted as soon as they are done, while others still copy.
  Corruptions corrupt;
  std::set<uint64_t> corrupted;
  auto corrupt_done = [&] {
    for (const RangeRecord& r : c.service().table().ranges()) {
      if (r.table != "users" || r.state != RangeState::kDone || corrupted.count(r.id)) continue;
      ASSERT_FALSE(r.verified);
      CorruptUsersRange(target, r, &corrupt);
      corrupted.insert(r.id);
    }
  };
  int copied_while_copying = 0;
  {
    WorkerThread a(&ctx, c.inproc_endpoint(), "copier-a", FEATURE_SPLIT);
    WorkerThread b(&ctx, c.inproc_endpoint(), "copier-b", FEATURE_SPLIT);
    const int64_t deadline = MonotonicMs() + 60000;
    while (MonotonicMs() < deadline) {
      c.Step(5);
      const LeaseTable& t = c.service().table();
      const bool copying = t.count(RangeState::kPending) + t.count(RangeState::kLeased) > 0;
      const size_t before = corrupted.size();
      corrupt_done();
      if (copying) copied_while_copying += static_cast<int>(corrupted.size() - before);
      if (t.AllDone()) break;
    }
    ASSERT_TRUE(c.service().table().AllDone()) << "copy did not finish";
    EXPECT_EQ(nlohmann::json::parse(c.HandleCommand("status"))["state"], "verifying");
    EXPECT_EQ(c.service().table().verified(), 0u);
    EXPECT_FALSE(c.complete());  // nothing verified: no version bump
    // The copiers stop; the coordinator keeps answering them meanwhile.
    a.RequestStop();
    b.RequestStop();
    while (!(a.finished() && b.finished()) && MonotonicMs() < deadline) c.Step(5);
  }
  EXPECT_GT(copied_while_copying, 0) << "no range was corrupted while others were copying";
  ASSERT_GT(corrupt.keys.size(), 20u);
  EXPECT_NE(CompareSqliteStores(legacy, target), "");  // the corruption is there

  // Workers that verify: every range verified, the corruption repaired.
  const std::vector<Status> verifiers = testing::RunVerifiers(c, &ctx);
  ASSERT_TRUE(c.complete()) << c.HandleCommand("status");
  EXPECT_TRUE(verifiers[0].ok()) << verifiers[0].ToString();
  EXPECT_EQ(CompareSqliteStores(legacy, target), "");
  const nlohmann::json st = nlohmann::json::parse(c.HandleCommand("status"));
  EXPECT_EQ(st["rows_repaired"], corrupt.keys.size());
  EXPECT_EQ(st["ranges_verified"], st["ranges_total"]);
  EXPECT_EQ(testing::StoreVersion(target), 2);
  // Every corrupted key is named by a repair event.
  auto events = c.state()->LoadEvents(1000);
  ASSERT_TRUE(events.ok());
  std::string repairs;
  int repair_events = 0;
  for (const Event& e : *events) {
    if (e.kind != "repair") continue;
    ++repair_events;
    repairs += e.detail + "\n";
  }
  EXPECT_GT(repair_events, 0);
  for (const std::string& k : corrupt.keys) {
    EXPECT_NE(repairs.find(k), std::string::npos) << k << " not named in:\n" << repairs;
  }
  // The ranges answer says every range is verified.
  const nlohmann::json ranges = nlohmann::json::parse(c.HandleCommand("ranges"));
  for (const auto& r : ranges["ranges"]) EXPECT_TRUE(r["verified"].get<bool>()) << r.dump();
}

TEST(VerifyRepairTest, WithoutVerifyingWorkersTheVersionIsNotBumped) {
  TempDir dir;
  const std::string legacy = dir.File("legacy.db");
  testing::MakeDemoStore(legacy, 2000);
  zmq::context_t ctx;
  SystemClock clock;
  CoordinatorOptions o = testing::VerifyingCoordinator(
      legacy, dir.File("new.db"), dir.File("state.db"), "inproc://verify-none-status");
  o.range_rows = 400;
  CoordinatorServer c(o, &clock, &ctx);
  ASSERT_TRUE(c.Start().ok());
  WorkerThread a(&ctx, c.inproc_endpoint(), "copier", FEATURE_SPLIT);
  const int64_t deadline = MonotonicMs() + 30000;
  while (MonotonicMs() < deadline && !c.service().table().AllDone()) c.Step(5);
  ASSERT_TRUE(c.service().table().AllDone());
  for (int i = 0; i < 50; ++i) c.Step(5);
  a.RequestStop();
  while (!a.finished() && MonotonicMs() < deadline) c.Step(5);
  EXPECT_FALSE(c.complete());
  EXPECT_EQ(testing::StoreVersion(dir.File("new.db")), -1);
  const nlohmann::json st = nlohmann::json::parse(c.HandleCommand("status"));
  EXPECT_EQ(st["state"], "verifying");
  EXPECT_EQ(st["ranges_verified"], 0);
  EXPECT_EQ(st["ranges_done"], st["ranges_total"]);
}

}  // namespace
}  // namespace ferry
