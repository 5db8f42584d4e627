// TargetCopier's read-ahead (worker/target_copier.h), with real SQLite
// stores and a spec with a Lua function that keeps, drops and fails rows:
// reading batch n + 1 while batch n is written lands exactly the rows, the
// rejects and the digest that reading in turn does; a read-ahead batch is
// used only for the cursor and bounds it was read for (a split's narrower
// bounds, a retry from an earlier cursor, a throttled smaller batch each
// read anew); Settle drops it; and a fenced-out write leaves nothing behind
// whatever was read ahead.
#include "worker/target_copier.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "common/key_codec.h"
#include "spec/migration_spec.h"
#include "spec/target_plan.h"
#include "stores/store.h"
#include "tests/test_util.h"

namespace ferry {
namespace {

using testing::ExecSql;
using testing::QueryInt;
using testing::SqliteCanonicalRows;
using testing::TempDir;

constexpr int kUsers = 2000;

// The Lua function: drops every 7th user, fails on every 97th (unless it is
// also a 7th), and re-encodes the rest.
const char* kSpec = R"toml(
[[table]]
target = "accounts"
source = "users"
select = "id, email, n"
create = "CREATE TABLE accounts (account_id INTEGER PRIMARY KEY, email TEXT NOT NULL, v2 INTEGER NOT NULL)"
lua = '''
return function(row)
  if row.id % 7 == 0 then return nil end
  if row.id % 97 == 0 then error("user " .. row.id .. " is corrupt") end
  return { account_id = row.id, email = string.upper(row.email), v2 = row.n * 2 + 1 }
end
'''
)toml";

bool Dropped(int i) { return i % 7 == 0; }
bool Failed(int i) { return !Dropped(i) && i % 97 == 0; }

// The expected rows, computed here (not by ferry), in SqliteCanonicalRows'
// form, sorted as it sorts them.
std::vector<std::string> Expected(int from, int to, const std::string& email_prefix = "U") {
  std::vector<std::string> out;
  for (int i = from; i <= to; ++i) {
    if (Dropped(i) || Failed(i)) continue;
    out.push_back(
        fmt::format("i:{}|t:{}{}@EXAMPLE.ORG|i:{}", i, email_prefix, i, (i % 13) * 2 + 1));
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string Key(int64_t k) {
  Value v{k};
  return EncodeKey(&v, 1);
}

Fence F(uint64_t epoch) {
  Fence f;
  f.plan_id = "plan";
  f.range_id = 1;
  f.epoch = epoch;
  return f;
}

class TargetCopierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    legacy_ = dir_.File("legacy.db");
    ASSERT_TRUE(ExecSql(legacy_, fmt::format("CREATE TABLE users (id INTEGER PRIMARY KEY, email "
                                             "TEXT NOT NULL, n INTEGER NOT NULL);"
                                             "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT "
                                             "x + 1 FROM c WHERE x < {}) "
                                             "INSERT INTO users SELECT x, 'u' || x || "
                                             "'@example.org', x % 13 FROM c;",
                                             kUsers)));
    auto src = OpenStore("sqlite:" + legacy_, StoreRole::kSource);
    ASSERT_TRUE(src.ok()) << src.status().ToString();
    source_ = std::move(src).value();
    ASSERT_TRUE(ParseSpecText(kSpec, "test.toml", &spec_).ok());
    auto tables = source_->ListTables();
    ASSERT_TRUE(tables.ok());
    auto plans = ResolveTargets(&spec_, *source_, *tables, *tables, "sqlite:" + dir_.File("x.db"));
    ASSERT_TRUE(plans.ok()) << plans.status().ToString();
    plans_ = std::move(plans).value();
    ASSERT_EQ(plans_.size(), 1u);
  }

  // A new store with the target table, and a copier for it.
  void OpenTarget(const std::string& name, bool read_ahead, std::unique_ptr<Store>* target,
                  std::unique_ptr<TargetCopier>* copier) {
    auto dst = OpenStore("sqlite:" + dir_.File(name), StoreRole::kTarget);
    ASSERT_TRUE(dst.ok()) << dst.status().ToString();
    *target = std::move(dst).value();
    ASSERT_TRUE((*target)->CreateSchema({plans_[0].target}).ok());
    auto c = TargetCopier::Create(&plans_[0], source_.get(), target->get(), true);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    *copier = std::move(c).value();
    if (read_ahead) (*copier)->set_read_ahead(&helper_);
  }

  struct Totals {
    uint64_t written = 0, rejected = 0, dropped = 0, batches = 0, digest = 0;
  };
  // Copies the whole table the way the worker's loop does, with batch i
  // asking for sizes[i % sizes.size()] rows; checks that no batch covers
  // more than 5/4 of what it asked for.
  void CopyAll(TargetCopier* copier, const std::vector<size_t>& sizes, Totals* t) {
    std::string cursor;
    const KeyRange all{"accounts", "", ""};
    for (size_t i = 0;; ++i) {
      ASSERT_LT(i, 10000u) << "the copy does not end";
      const size_t want = sizes[i % sizes.size()];
      TargetBatch b;
      b.copied.digest = t->digest;
      const Status s = copier->ReadAndWrite(all, cursor, want, 8 << 20, F(1), &b);
      ASSERT_TRUE(s.ok()) << s.ToString();
      if (b.copied.last_key.empty()) return;
      const uint64_t covered = b.copied.rows + b.rejected + b.dropped;
      EXPECT_GT(covered, 0u);
      EXPECT_LE(covered, want + want / 4) << "batch " << i << " asked for " << want;
      t->written += b.copied.rows;
      t->rejected += b.rejected;
      t->dropped += b.dropped;
      t->digest = b.copied.digest;
      t->batches++;
      cursor = b.copied.last_key;
    }
  }

  JobThread helper_;  // the copiers' read-ahead thread; outlives them
  TempDir dir_;
  std::string legacy_;
  std::unique_ptr<Store> source_;
  MigrationSpec spec_;
  std::vector<TargetPlan> plans_;
};

TEST_F(TargetCopierTest, ReadAheadWritesWhatReadingInTurnWrites) {
  int dropped = 0, failed = 0;
  for (int i = 1; i <= kUsers; ++i) {
    dropped += Dropped(i);
    failed += Failed(i);
  }
  // Steady batches, a sizer's wobble (within 4/5: the read-ahead is taken)
  // and a throttle's cut (a tenth: it is not).
  const std::vector<std::vector<size_t>> patterns = {{128}, {128, 110, 128, 103}, {128, 12, 300}};
  Totals reference;
  for (size_t pi = 0; pi < patterns.size(); ++pi) {
    for (bool ahead : {false, true}) {
      SCOPED_TRACE(fmt::format("pattern {} read-ahead {}", pi, ahead));
      const std::string name = fmt::format("new-{}-{}.db", pi, ahead);
      std::unique_ptr<Store> target;
      std::unique_ptr<TargetCopier> copier;
      OpenTarget(name, ahead, &target, &copier);
      Totals t;
      CopyAll(copier.get(), patterns[pi], &t);
      copier.reset();
      target.reset();
      EXPECT_EQ(SqliteCanonicalRows(dir_.File(name), "accounts"), Expected(1, kUsers));
      EXPECT_EQ(t.written, static_cast<uint64_t>(kUsers - dropped - failed));
      EXPECT_EQ(t.dropped, static_cast<uint64_t>(dropped));
      EXPECT_EQ(t.rejected, static_cast<uint64_t>(failed));
      EXPECT_EQ(QueryInt(dir_.File(name), "SELECT count(*) FROM __ferry_rejects"), failed);
      EXPECT_EQ(QueryInt(dir_.File(name),
                         "SELECT count(*) FROM __ferry_rejects WHERE table_name = 'accounts' AND "
                         "reason LIKE '%is corrupt%' AND CAST(substr(source_key, 2, "
                         "length(source_key) - 2) AS INTEGER) % 97 = 0"),
                failed);
      // The range digest is one fold over the rows in key order, whatever
      // the batches: every run agrees.
      if (pi == 0 && !ahead) reference = t;
      EXPECT_EQ(t.digest, reference.digest);
    }
  }
}

TEST_F(TargetCopierTest, AReadAheadIsUsedOnlyForTheBatchItWasReadFor) {
  std::unique_ptr<Store> target;
  std::unique_ptr<TargetCopier> copier;
  OpenTarget("new.db", true, &target, &copier);
  const KeyRange all{"accounts", "", ""};

  // Batch 1: users 1..100; 101..200 are read ahead.
  TargetBatch b1;
  ASSERT_TRUE(copier->ReadAndWrite(all, "", 100, 8 << 20, F(1), &b1).ok());
  ASSERT_EQ(b1.copied.last_key, Key(100));

  // A split proposed at 150: the batch after 100 stops before it.
  TargetBatch b2;
  const KeyRange head{"accounts", "", Key(150)};
  ASSERT_TRUE(copier->ReadAndWrite(head, Key(100), 100, 8 << 20, F(1), &b2).ok());
  EXPECT_EQ(b2.copied.last_key, Key(149));
  EXPECT_EQ(b2.copied.rows + b2.rejected + b2.dropped, 49u);

  // A retry from an earlier cursor (the last committed one was 120): the
  // read-ahead of 150.. is not it.
  TargetBatch b3;
  ASSERT_TRUE(copier->ReadAndWrite(all, Key(120), 10, 8 << 20, F(1), &b3).ok());
  EXPECT_EQ(b3.copied.last_key, Key(130));

  // Settle drops what was read ahead (131..140): a change made now is read.
  copier->Settle();
  ASSERT_TRUE(ExecSql(legacy_,
                      "UPDATE users SET email = 'w' || id || '@example.org' WHERE id "
                      "BETWEEN 131 AND 140"));
  TargetBatch b4;
  ASSERT_TRUE(copier->ReadAndWrite(all, Key(130), 10, 8 << 20, F(1), &b4).ok());
  EXPECT_EQ(b4.copied.last_key, Key(140));
  copier.reset();
  target.reset();
  std::vector<std::string> want = Expected(1, 130);
  for (const std::string& r : Expected(131, 140, "W")) want.push_back(r);
  for (const std::string& r : Expected(141, 149)) want.push_back(r);  // batch 2
  std::sort(want.begin(), want.end());
  EXPECT_EQ(SqliteCanonicalRows(dir_.File("new.db"), "accounts"), want);
}

// Two batches are in memory at once with read-ahead: each reads at most
// half the byte budget (plus the row that crosses it), so wide rows hold
// no more bytes than one batch did without.
TEST_F(TargetCopierTest, WithReadAheadEachBatchTakesHalfTheByteBudget) {
  constexpr size_t kBudget = 4000;  // rows of ~30 bytes: ~130 rows, far below the row limit
  for (bool ahead : {false, true}) {
    SCOPED_TRACE(ahead ? "read-ahead" : "in turn");
    std::unique_ptr<Store> target;
    std::unique_ptr<TargetCopier> copier;
    OpenTarget(ahead ? "new-ahead.db" : "new-turn.db", ahead, &target, &copier);
    const KeyRange all{"accounts", "", ""};
    std::string cursor;
    for (int i = 0; i < 3; ++i) {
      TargetBatch b;
      ASSERT_TRUE(copier->ReadAndWrite(all, cursor, 1000, kBudget, F(1), &b).ok());
      const size_t budget = ahead ? kBudget / 2 : kBudget;
      EXPECT_GE(b.copied.bytes, budget);
      EXPECT_LT(b.copied.bytes, budget + 100) << "batch " << i;
      cursor = b.copied.last_key;
    }
  }
}

TEST_F(TargetCopierTest, AFencedOutWriteLandsNothingWhateverWasReadAhead) {
  std::unique_ptr<Store> target;
  std::unique_ptr<TargetCopier> copier;
  OpenTarget("new.db", true, &target, &copier);
  const KeyRange all{"accounts", "", ""};
  TargetBatch b1;
  ASSERT_TRUE(copier->ReadAndWrite(all, "", 100, 8 << 20, F(1), &b1).ok());
  // A newer owner (epoch 2) takes the range and records its fence.
  {
    auto other = OpenStore("sqlite:" + dir_.File("new.db"), StoreRole::kTarget);
    ASSERT_TRUE(other.ok());
    RowBatch none;
    none.width = plans_[0].write.width();
    ASSERT_TRUE((*other)->WriteBatch(plans_[0].write, none, F(2)).ok());
  }
  // The old owner's next batch (read ahead) is fenced out, and so is every
  // later one.
  for (int i = 0; i < 3; ++i) {
    TargetBatch b;
    const Status s = copier->ReadAndWrite(all, Key(100), 100, 8 << 20, F(1), &b);
    EXPECT_EQ(s.code(), Code::kLeaseLost) << s.ToString();
  }
  EXPECT_EQ(SqliteCanonicalRows(dir_.File("new.db"), "accounts"), Expected(1, 100));
  // The new owner, from the last committed cursor, lands the rest.
  std::string cursor = b1.copied.last_key;
  for (int i = 0; i < 100; ++i) {
    TargetBatch b;
    ASSERT_TRUE(copier->ReadAndWrite(all, cursor, 100, 8 << 20, F(2), &b).ok());
    if (b.copied.last_key.empty()) break;
    cursor = b.copied.last_key;
  }
  copier.reset();
  target.reset();
  EXPECT_EQ(SqliteCanonicalRows(dir_.File("new.db"), "accounts"), Expected(1, kUsers));
}

}  // namespace
}  // namespace ferry
