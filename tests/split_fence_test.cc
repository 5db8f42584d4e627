// The store side of splits and verification, on every engine (PostgreSQL
// when FERRY_TEST_PG_URI is set): a split's tail records its parent's new
// end with its writes, after which a late batch of the parent past that end
// is fenced inside the write transaction (nothing written); fenced deletes;
// the split key a worker picks (KeyAfter); chunk digests (DigestRows) that
// agree across engines for the values the type mapping carries over.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "common/key_codec.h"
#include "stores/row_compare.h"
#include "stores/store.h"
#include "tests/test_util.h"

namespace ferry {
namespace {

using testing::TempDir;

std::string Key(int64_t k) {
  Value v{k};
  return EncodeKey(&v, 1);
}

RowBatch Rows(int64_t from, int64_t to, const std::string& tag) {
  RowBatch b;
  b.width = 3;
  for (int64_t k = from; k < to; ++k) {
    b.keys.push_back(Key(k));
    b.cells.emplace_back(k);
    b.cells.emplace_back(Text{tag + std::to_string(k)});
    b.cells.emplace_back(static_cast<double>(k) / 4);
  }
  return b;
}

Fence F(uint64_t range, uint64_t epoch, uint64_t parent = 0, const std::string& end = "") {
  Fence f;
  f.plan_id = "plan";
  f.range_id = range;
  f.epoch = epoch;
  f.parent_id = parent;
  f.parent_end = end;
  return f;
}

// A legacy SQLite file with kv(k INTEGER PRIMARY KEY, v TEXT, r REAL) of
// 1000 rows, and a new store (SQLite, or a fresh PostgreSQL database) with
// its schema.
class SplitFenceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    legacy_path_ = dir_.File("legacy.db");
    ASSERT_TRUE(testing::ExecSql(
        legacy_path_,
        "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT, r REAL);"
        "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < 999) "
        "INSERT INTO kv SELECT x, 'v' || x, x / 4.0 FROM c;"));
    auto src = OpenStore("sqlite:" + legacy_path_, StoreRole::kSource);
    ASSERT_TRUE(src.ok()) << src.status().ToString();
    source_ = std::move(src).value();
    auto tables = source_->ListTables();
    ASSERT_TRUE(tables.ok());
    schema_ = tables->at(0);
    if (GetParam() == "postgresql") {
      if (testing::PgAdminUri().empty()) GTEST_SKIP() << "FERRY_TEST_PG_URI is not set";
      pg_ = std::make_unique<testing::PgTestDb>();
      ASSERT_TRUE(pg_->ok());
      target_uri_ = pg_->uri();
    } else {
      target_uri_ = "sqlite:" + dir_.File("new.db");
    }
    auto dst = OpenStore(target_uri_, StoreRole::kTarget);
    ASSERT_TRUE(dst.ok()) << dst.status().ToString();
    target_ = std::move(dst).value();
    ASSERT_TRUE(target_->CreateSchema({schema_}).ok());
  }

  // Rows of the new store with lo <= k < hi.
  int64_t Count(int64_t lo, int64_t hi) {
    RowBatch b;
    auto t = target_->ListTables();
    EXPECT_TRUE(t.ok());
    int64_t n = 0;
    std::string after;
    for (;;) {
      EXPECT_TRUE(
          target_->ReadBatch(t->at(0), KeyRange{"kv", Key(lo), Key(hi)}, after, 500, 1 << 20, &b)
              .ok());
      if (b.rows() == 0) return n;
      n += static_cast<int64_t>(b.rows());
      after = b.keys.back();
    }
  }

  TempDir dir_;
  std::string legacy_path_, target_uri_;
  std::unique_ptr<testing::PgTestDb> pg_;
  std::unique_ptr<Store> source_, target_;
  TableSchema schema_;
};

TEST_P(SplitFenceTest, LateBatchOfTheParentPastTheSplitIsFencedInTheStore) {
  // Range 1 was [0, end) under epoch 5; split at 500: range 2 is [500, end).
  ASSERT_TRUE(target_->WriteBatch(schema_, Rows(0, 100, "a"), F(1, 5)).ok());
  // Before the tail writes anything the parent's end is not recorded yet.
  ASSERT_TRUE(target_->WriteBatch(schema_, Rows(480, 520, "a"), F(1, 5)).ok());
  ASSERT_TRUE(target_->WriteBatch(schema_, Rows(500, 600, "t"), F(2, 6, 1, Key(500))).ok());
  // The parent's owner missed the split: a batch below the split still
  // lands, one reaching past it aborts whole.
  ASSERT_TRUE(target_->WriteBatch(schema_, Rows(100, 200, "a"), F(1, 5)).ok());
  Status s = target_->WriteBatch(schema_, Rows(300, 501, "late"), F(1, 5));
  EXPECT_EQ(s.code(), Code::kLeaseLost) << s.ToString();
  EXPECT_NE(s.message().find("split at (500)"), std::string::npos) << s.message();
  EXPECT_EQ(Count(300, 480), 0);  // nothing of the fenced batch was written
  s = target_->DeleteRows(schema_, {Key(150), Key(700)}, F(1, 5));
  EXPECT_EQ(s.code(), Code::kLeaseLost) << s.ToString();
  EXPECT_EQ(Count(150, 151), 1);  // the delete rolled back whole
  // A newer epoch of the parent (the head re-granted) is held to the end too.
  s = target_->WriteBatch(schema_, Rows(499, 501, "b"), F(1, 9));
  EXPECT_EQ(s.code(), Code::kLeaseLost) << s.ToString();
  ASSERT_TRUE(target_->WriteBatch(schema_, Rows(200, 499, "b"), F(1, 9)).ok());
  // A second split of the head at 300 narrows it further; an earlier
  // (larger) end never widens it again.
  ASSERT_TRUE(target_->WriteBatch(schema_, Rows(300, 310, "u"), F(3, 10, 1, Key(300))).ok());
  ASSERT_TRUE(target_->WriteBatch(schema_, Rows(600, 610, "t"), F(2, 6, 1, Key(500))).ok());
  EXPECT_EQ(target_->WriteBatch(schema_, Rows(299, 301, "b"), F(1, 9)).code(), Code::kLeaseLost);
  // The tail itself is not bounded by its parent's end.
  ASSERT_TRUE(target_->WriteBatch(schema_, Rows(900, 1000, "t"), F(2, 6, 1, Key(500))).ok());
}

TEST_P(SplitFenceTest, DirectCopyOfTheParentPastTheSplitIsFenced) {
  if (!target_->CanCopyFrom(*source_, schema_)) GTEST_SKIP() << "no direct copy on this engine";
  ASSERT_TRUE(target_->WriteBatch(schema_, Rows(500, 501, "t"), F(2, 6, 1, Key(500))).ok());
  CopiedBatch copied;
  ASSERT_TRUE(target_
                  ->CopyBatch(*source_, schema_, KeyRange{"kv", "", ""}, Key(100), 300, 1 << 20,
                              F(1, 5), &copied)
                  .ok());
  EXPECT_EQ(copied.rows, 300u);
  Status s = target_->CopyBatch(*source_, schema_, KeyRange{"kv", "", ""}, Key(400), 300, 1 << 20,
                                F(1, 5), &copied);
  EXPECT_EQ(s.code(), Code::kLeaseLost) << s.ToString();
  EXPECT_EQ(Count(401, 500), 0);
}

TEST_P(SplitFenceTest, FencedDeleteRemovesRowsAndHonoursEpochs) {
  ASSERT_TRUE(target_->WriteBatch(schema_, Rows(0, 50, "a"), F(1, 5)).ok());
  ASSERT_TRUE(target_->DeleteRows(schema_, {Key(3), Key(7), Key(1000)}, F(1, 6)).ok());
  EXPECT_EQ(Count(0, 50), 48);
  EXPECT_EQ(target_->DeleteRows(schema_, {Key(4)}, F(1, 5)).code(), Code::kLeaseLost);
  EXPECT_EQ(Count(4, 5), 1);
  // No keys: records the fence only (a verify lease claims its range).
  ASSERT_TRUE(target_->DeleteRows(schema_, {}, F(1, 8)).ok());
  EXPECT_EQ(target_->WriteBatch(schema_, Rows(0, 1, "x"), F(1, 7)).code(), Code::kLeaseLost);
}

TEST_P(SplitFenceTest, KeyAfterWalksTheKeyInsideTheRange) {
  // On the new store's engine: copy the rows over first.
  ASSERT_TRUE(target_->WriteBatch(schema_, Rows(0, 1000, "v"), F(1, 1)).ok());
  auto listed = target_->ListTables();
  ASSERT_TRUE(listed.ok());
  for (Store* store : {source_.get(), target_.get()}) {
    const TableSchema& t = store == source_.get() ? schema_ : listed->at(0);
    auto k = store->KeyAfter(t, KeyRange{"kv", Key(100), Key(200)}, "", 0);
    ASSERT_TRUE(k.ok());
    EXPECT_EQ(**k, Key(100));
    k = store->KeyAfter(t, KeyRange{"kv", Key(100), Key(200)}, Key(120), 30);
    EXPECT_EQ(**k, Key(151));
    k = store->KeyAfter(t, KeyRange{"kv", Key(100), Key(200)}, Key(120), 79);
    EXPECT_FALSE(k->has_value());  // past the range's end
    // The default implementation (read and count) agrees.
    auto d = store->Store::KeyAfter(t, KeyRange{"kv", Key(100), Key(200)}, Key(120), 30);
    EXPECT_EQ(**d, Key(151));
  }
}

TEST_P(SplitFenceTest, ChunkDigestsAgreeAcrossEnginesAndWithTheDefault) {
  ASSERT_TRUE(target_->WriteBatch(schema_, Rows(0, 1000, "v"), F(1, 1)).ok());
  auto listed = target_->ListTables();
  ASSERT_TRUE(listed.ok());
  const TableSchema& t = listed->at(0);
  const bool cross = t.dialect != schema_.dialect;
  const DigestMode mode = cross ? DigestMode::kValues : DigestMode::kExact;
  const KeyRange range{"kv", Key(10), Key(900)};
  RowsDigest a, b, c;
  ASSERT_TRUE(source_->DigestRows(schema_, range, Key(20), "", 400, mode, &a).ok());
  ASSERT_TRUE(target_->DigestRows(t, range, Key(20), "", 400, mode, &b).ok());
  ASSERT_TRUE(source_->Store::DigestRows(schema_, range, Key(20), "", 400, mode, &c).ok());
  EXPECT_EQ(a.rows, 400u);
  // Each engine's own way equals the default (read the rows, fold Values),
  // in both modes.
  for (DigestMode m : {DigestMode::kExact, DigestMode::kValues}) {
    RowsDigest own, def;
    ASSERT_TRUE(target_->DigestRows(t, range, Key(20), Key(700), 1000, m, &own).ok());
    ASSERT_TRUE(target_->Store::DigestRows(t, range, Key(20), Key(700), 1000, m, &def).ok());
    EXPECT_EQ(own.rows, 680u);
    EXPECT_EQ(own.digest, def.digest);
    EXPECT_EQ(own.last_key, def.last_key);
  }
  EXPECT_EQ(a.last_key, Key(420));
  EXPECT_EQ(a.digest, b.digest);
  EXPECT_EQ(a.digest, c.digest);
  EXPECT_EQ(b.last_key, a.last_key);
  // Through an inclusive last key.
  ASSERT_TRUE(target_->DigestRows(t, range, Key(20), Key(30), 400, mode, &b).ok());
  EXPECT_EQ(b.rows, 10u);
  EXPECT_EQ(b.last_key, Key(30));
  // A changed cell changes the digest.
  ASSERT_TRUE(target_->WriteBatch(schema_, Rows(25, 26, "changed"), F(1, 1)).ok());
  ASSERT_TRUE(target_->DigestRows(t, range, Key(20), "", 400, mode, &b).ok());
  EXPECT_NE(a.digest, b.digest);
}

INSTANTIATE_TEST_SUITE_P(Engines, SplitFenceTest, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace ferry
