// RangeVerifier (worker/verifier.h) on real stores: equal stores cost only
// chunk digests; a difference is narrowed by bisection before rows are read
// one by one; missing, changed and extra rows are repaired through the
// repairer and the stores end equal (checked with SQL, tests/test_util.h);
// across engines (PostgreSQL when FERRY_TEST_PG_URI is set) cells the type
// mapping converts are equal, not repaired.
#include "worker/verifier.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>

#include "common/key_codec.h"
#include "stores/store.h"
#include "tests/test_util.h"

namespace ferry {
namespace {

using testing::TempDir;

std::string Key(int64_t k) {
  Value v{k};
  return EncodeKey(&v, 1);
}

class CountingRepairer final : public Repairer {
 public:
  CountingRepairer(Store* target, const TableSchema* schema) : target_(target), schema_(schema) {
    fence_.plan_id = "p";
    fence_.range_id = 1;
    fence_.epoch = 2;
  }
  Status Write(const RowBatch& rows) override {
    written += rows.rows();
    return target_->WriteBatch(*schema_, rows, fence_);
  }
  Status Delete(const std::vector<std::string>& keys) override {
    deleted += keys.size();
    return target_->DeleteRows(*schema_, keys, fence_);
  }
  uint64_t written = 0, deleted = 0;

 private:
  Store* target_;
  const TableSchema* schema_;
  Fence fence_;
};

class VerifierTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    legacy_ = dir_.File("legacy.db");
    // `n` holds values a PostgreSQL numeric column gives back as other text
    // (1e+20 -> 100000000000000000000): converted, not different.
    ASSERT_TRUE(testing::ExecSql(
        legacy_,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB, n NUMERIC);"
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000) "
        "INSERT INTO t SELECT x * 2, 'name ' || x, x * 0.5, randomblob(8), "
        "CASE WHEN x % 100 = 0 THEN 1e20 ELSE x END FROM c;"));
    auto src = OpenStore("sqlite:" + legacy_, StoreRole::kSource);
    ASSERT_TRUE(src.ok());
    source_ = std::move(src).value();
    schema_ = source_->ListTables()->at(0);
    if (GetParam() == "postgresql") {
      if (testing::PgAdminUri().empty()) GTEST_SKIP() << "FERRY_TEST_PG_URI is not set";
      pg_ = std::make_unique<testing::PgTestDb>();
      ASSERT_TRUE(pg_->ok());
      target_uri_ = pg_->uri();
    } else {
      target_path_ = dir_.File("new.db");
      target_uri_ = "sqlite:" + target_path_;
    }
    auto dst = OpenStore(target_uri_, StoreRole::kTarget);
    ASSERT_TRUE(dst.ok()) << dst.status().ToString();
    target_ = std::move(dst).value();
    ASSERT_TRUE(target_->CreateSchema({schema_}).ok());
    // Copy everything.
    Fence f;
    f.plan_id = "p";
    f.range_id = 1;
    f.epoch = 1;
    RowBatch b;
    std::string after;
    for (;;) {
      ASSERT_TRUE(
          source_->ReadBatch(schema_, KeyRange{"t", "", ""}, after, 5000, 8 << 20, &b).ok());
      if (b.rows() == 0) break;
      ASSERT_TRUE(target_->WriteBatch(schema_, b, f).ok());
      after = b.keys.back();
    }
    target_schema_ = target_->ListTables()->at(0);
    cross_ = target_schema_.dialect != schema_.dialect;
  }

  // Verifies [lo, hi) chunk by chunk; the totals.
  ChunkResult VerifyRange(const KeyRange& range, CountingRepairer* repairer, size_t chunk = 4000) {
    const DigestMode mode = cross_ ? DigestMode::kValues : DigestMode::kExact;
    StoreRowSource legacy(source_.get(), &schema_, range, mode);
    StoreRowSource target(target_.get(), &target_schema_, range, mode);
    RangeVerifier::Options o;
    o.chunk_rows = chunk;
    o.leaf_rows = 64;
    o.cross_engine = cross_;
    RangeVerifier v(&legacy, &target, repairer, o);
    ChunkResult total;
    std::string cursor;
    for (int i = 0; i < 1000; ++i) {
      ChunkResult c;
      Status s = v.VerifyChunk(cursor, &c);
      EXPECT_TRUE(s.ok()) << s.ToString();
      if (!s.ok()) break;
      total.legacy_rows += c.legacy_rows;
      total.repaired += c.repaired;
      total.compared_rows += c.compared_rows;
      total.converted += c.converted;
      for (auto& k : c.repaired_keys) total.repaired_keys.push_back(k);
      cursor = c.last_key;
      if (c.end) break;
    }
    return total;
  }

  // Plain SQL on the new store, whichever engine.
  void Exec(const std::string& sql) {
    if (pg_) {
      ASSERT_TRUE(testing::PgExec(pg_->uri(), sql));
    } else {
      ASSERT_TRUE(testing::ExecSql(target_path_, sql));
    }
  }

  // The stores compared independently of ferry.
  void ExpectEqualStores() {
    if (pg_) {
      // Every cell but the numeric one (text in PostgreSQL) in canonical form.
      auto strip = [](std::vector<std::string> rows) {
        for (std::string& r : rows) r = r.substr(0, r.rfind('|'));
        std::sort(rows.begin(), rows.end());
        return rows;
      };
      EXPECT_EQ(strip(testing::PgCanonicalRows(pg_->uri(), "t")),
                strip(testing::SqliteCanonicalRows(legacy_, "t")));
    } else {
      EXPECT_EQ(testing::CompareSqliteStores(legacy_, target_path_), "");
    }
  }

  TempDir dir_;
  std::string legacy_, target_path_, target_uri_;
  std::unique_ptr<testing::PgTestDb> pg_;
  std::unique_ptr<Store> source_, target_;
  TableSchema schema_, target_schema_;
  bool cross_ = false;
};

TEST_P(VerifierTest, EqualStoresCostOnlyChunkDigests) {
  CountingRepairer r(target_.get(), &schema_);
  ChunkResult total = VerifyRange(KeyRange{"t", "", ""}, &r);
  EXPECT_EQ(total.legacy_rows, 20000u);
  EXPECT_EQ(total.repaired, 0u);
  EXPECT_EQ(r.written + r.deleted, 0u);
  // Across engines the numeric cells that read back as other text are
  // compared row by row, in their chunks only; one engine reads no row.
  if (cross_) {
    EXPECT_GT(total.converted, 0u);
  } else {
    EXPECT_EQ(total.compared_rows, 0u);
  }
}

TEST_P(VerifierTest, OneDifferenceIsNarrowedByBisectionBeforeRowsAreRead) {
  if (cross_) GTEST_SKIP() << "numeric conversions make every chunk differ across engines";
  Exec("UPDATE t SET name = 'changed' WHERE id = 12346");
  CountingRepairer r(target_.get(), &schema_);
  ChunkResult total = VerifyRange(KeyRange{"t", "", ""}, &r, /*chunk=*/8000);
  EXPECT_EQ(total.repaired, 1u);
  ASSERT_EQ(total.repaired_keys.size(), 1u);
  EXPECT_EQ(total.repaired_keys[0], Key(12346));
  EXPECT_LE(total.compared_rows, 2 * 64u);  // a leaf (twice: repair, then check)
  ExpectEqualStores();
}

TEST_P(VerifierTest, MissingChangedAndExtraRowsAreRepairedAndTheStoresEndEqual) {
  Exec("DELETE FROM t WHERE id IN (2, 4000, 4002, 39998, 40000)");
  Exec("UPDATE t SET score = -1 WHERE id = 100");
  Exec("UPDATE t SET data = NULL WHERE id = 30000");
  Exec(
      "INSERT INTO t (id, name) VALUES (101, 'extra'), (0, 'before'), (40001, 'after'), "
      "(50000, 'far after')");
  CountingRepairer r(target_.get(), &schema_);
  ChunkResult total = VerifyRange(KeyRange{"t", "", ""}, &r);
  EXPECT_EQ(total.repaired, 5u + 2 + 4);
  EXPECT_EQ(r.written, 7u);
  EXPECT_EQ(r.deleted, 4u);
  ExpectEqualStores();
  // Verified again: nothing left.
  CountingRepairer again(target_.get(), &schema_);
  EXPECT_EQ(VerifyRange(KeyRange{"t", "", ""}, &again).repaired, 0u);
}

TEST_P(VerifierTest, OnlyTheRangeIsVerified) {
  Exec("UPDATE t SET name = 'outside' WHERE id = 2");
  Exec("UPDATE t SET name = 'inside' WHERE id = 1000");
  Exec("INSERT INTO t (id, name) VALUES (1999, 'extra at the end of the range')");
  CountingRepairer r(target_.get(), &schema_);
  ChunkResult total = VerifyRange(KeyRange{"t", Key(500), Key(2000)}, &r, 300);
  EXPECT_EQ(total.legacy_rows, 750u);
  EXPECT_EQ(total.repaired, 2u);
  EXPECT_EQ(r.deleted, 1u);
}

INSTANTIATE_TEST_SUITE_P(Engines, VerifierTest, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace ferry
