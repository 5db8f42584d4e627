// Full embedded migrations (ferry-coordinator --local-workers) of awkward
// data: empty tables, an empty store, binary keys with 0x00/0xFF and prefix
// relations, TEXT keys with embedded NUL, NULL values, 1 MiB values, rowid
// tables with gaps, negative / extreme integer keys, REAL keys, composite keys
// mixing types, odd table names. Tiny ranges and batches so boundaries fall
// inside these key sets. The stores are compared with plain SQL.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "tests/process_util.h"
#include "tests/test_util.h"

namespace ferry::testing {
namespace {

class EdgeDataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    legacy_ = dir_.File("legacy.db");
    target_ = dir_.File("new.db");
    state_ = dir_.File("state.db");
  }

  // Runs the one-command embedded migration; returns its exit code.
  int Migrate(const std::string& range_rows, const std::string& batch_rows,
              std::string* output = nullptr) {
    std::string out, err;
    int code =
        RunCommandSplit({Bin("ferry-coordinator"), "--source", "sqlite:" + legacy_, "--target",
                         "sqlite:" + target_, "--state", state_, "--listen", "tcp://127.0.0.1:0",
                         "--status-endpoint", "tcp://127.0.0.1:0", "--local-workers", "2",
                         "--range-rows", range_rows, "--batch-rows", batch_rows},
                        &out, &err, 90000);
    if (output) *output = out + err;
    if (code != 0) ADD_FAILURE() << "exit " << code << "\n" << out << err;
    return code;
  }

  // Migrates and checks equality, version and ranges.
  void MigrateAndCompare(const std::string& range_rows, const std::string& batch_rows) {
    ASSERT_EQ(Migrate(range_rows, batch_rows), 0);
    EXPECT_EQ(CompareSqliteStores(legacy_, target_), "");
    EXPECT_EQ(StoreVersion(target_), 2);
    EXPECT_EQ(QueryInt(target_, "SELECT count(*) FROM __ferry_meta WHERE key='boundary'"), 0);
    EXPECT_EQ(QueryInt(state_, "SELECT count(*) FROM ranges WHERE state<>2"), 0);
  }

  int64_t Ranges(const std::string& table) {
    return QueryInt(state_, "SELECT count(*) FROM ranges WHERE table_name='" + table + "'");
  }

  TempDir dir_;
  std::string legacy_, target_, state_;
};

TEST_F(EdgeDataTest, EmptyStoreWithoutTables) {
  ExecSql(legacy_, "CREATE TABLE x (a); DROP TABLE x;");
  ASSERT_EQ(QueryInt(legacy_, "SELECT count(*) FROM sqlite_master"), 0);
  MigrateAndCompare("2", "1");
  EXPECT_EQ(QueryInt(target_,
                     "SELECT count(*) FROM sqlite_master WHERE type='table' AND name NOT "
                     "LIKE '__ferry%' AND name NOT LIKE 'sqlite_%'"),
            0);
}

TEST_F(EdgeDataTest, SeveralTablesSomeEmptyAndOddNames) {
  ExecSql(legacy_, R"sql(
    CREATE TABLE empty1 (id INTEGER PRIMARY KEY, v TEXT);
    CREATE TABLE empty2 (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID;
    CREATE TABLE empty3 (a, b);
    CREATE TABLE "select" (id INTEGER PRIMARY KEY, "from" TEXT, "a b" INTEGER);
    CREATE TABLE "we""ird name" ("k e y" TEXT PRIMARY KEY, "v""al" BLOB);
    CREATE TABLE nulls (id INTEGER PRIMARY KEY, a, b TEXT, c REAL, d BLOB, e INTEGER);
    CREATE INDEX nulls_b ON nulls(b);
    WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 40)
      INSERT INTO "select" SELECT x, 'f' || x, x * 2 FROM c;
    WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 40)
      INSERT INTO "we""ird name" SELECT 'k ' || x, randomblob(x) FROM c;
    WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 60)
      INSERT INTO nulls SELECT x,
        CASE x % 5 WHEN 0 THEN NULL WHEN 1 THEN 1 WHEN 2 THEN 'one' WHEN 3 THEN x'01' ELSE 1.5 END,
        CASE WHEN x % 2 = 0 THEN NULL ELSE 'b' || x END,
        CASE WHEN x % 3 = 0 THEN NULL ELSE x / 7.0 END,
        CASE WHEN x % 4 = 0 THEN NULL WHEN x % 4 = 1 THEN x'' ELSE randomblob(8) END,
        NULL FROM c;
  )sql");
  MigrateAndCompare("7", "3");
  EXPECT_GE(Ranges("nulls"), 5);
  EXPECT_EQ(QueryInt(target_, "SELECT count(*) FROM nulls WHERE e IS NULL"), 60);
  EXPECT_EQ(QueryInt(target_, "SELECT count(*) FROM nulls WHERE typeof(d)='blob' AND length(d)=0"),
            QueryInt(legacy_, "SELECT count(*) FROM nulls WHERE typeof(d)='blob' AND length(d)=0"));
  EXPECT_EQ(QueryInt(target_, "SELECT count(*) FROM sqlite_master WHERE name='nulls_b'"), 1);
}

TEST_F(EdgeDataTest, BinaryKeysWithZeroAndFfBytesAndPrefixes) {
  ExecSql(legacy_, R"sql(
    CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB);
    INSERT INTO kv VALUES (x'', 'empty'), (x'00', 1), (x'0000', 2), (x'000000', 3), (x'0001', 4),
      (x'00FF', 5), (x'00FF00', 6), (x'00FFFF', 7), (x'01', 8), (x'7F', 9), (x'80', 10),
      (x'FE', 11), (x'FF', 12), (x'FF00', 13), (x'FF0000', 14), (x'FF01', 15), (x'FFFF', 16),
      (x'FFFF00', 17), (x'FFFFFF', 18), (x'FFFFFFFF', 19), (x'61', 20), (x'6100', 21),
      (x'610062', 22), (x'6162', 23);
    -- text keys in the same (untyped-affinity) column: distinct from the equal bytes as BLOB
    INSERT INTO kv VALUES ('', 'empty text'), ('a', 30), (CAST(x'6100' AS TEXT), 31),
      (CAST(x'610062' AS TEXT), 32), ('ab', 33), (CAST(x'00' AS TEXT), 34),
      (CAST(x'FF' AS TEXT), 35);
    -- numbers too
    INSERT INTO kv VALUES (0, 40), (-1, 41), (1.5, 42);
    WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200)
      INSERT INTO kv SELECT randomblob(1 + x % 5), x FROM c WHERE 1 ON CONFLICT DO NOTHING;
    CREATE TABLE kvw (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID;
    INSERT INTO kvw SELECT k, v FROM kv WHERE typeof(k) = 'blob';
  )sql");
  MigrateAndCompare("5", "2");
  EXPECT_GE(Ranges("kv"), 20);
  for (const char* t : {"kv", "kvw"}) {
    EXPECT_EQ(DumpTable(target_, t), DumpTable(legacy_, t)) << t;
  }
  EXPECT_EQ(QueryText(target_, "SELECT typeof(k) FROM kv WHERE v = 31"), "text");
  EXPECT_EQ(QueryInt(target_, "SELECT length(CAST(k AS BLOB)) FROM kv WHERE v = 32"), 3);
}

TEST_F(EdgeDataTest, TextKeysWithEmbeddedNul) {
  ExecSql(legacy_, R"sql(
    CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER);
    INSERT INTO t VALUES ('', 0), ('a', 1), (CAST(x'6100' AS TEXT), 2), (CAST(x'610062' AS TEXT), 3),
      (CAST(x'61000000' AS TEXT), 4), ('ab', 5), (CAST(x'00' AS TEXT), 6),
      (CAST(x'0000' AS TEXT), 7), (CAST(x'000061' AS TEXT), 8), ('b', 9), ('é', 10),
      ('日本', 11), (CAST(x'F09F9880' AS TEXT), 12), ('z' || CAST(x'00' AS TEXT) || 'z', 13);
    CREATE TABLE tw (k TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID;
    INSERT INTO tw SELECT * FROM t;
  )sql");
  MigrateAndCompare("2", "1");
  for (const char* t : {"t", "tw"}) {
    EXPECT_EQ(DumpTable(target_, t), DumpTable(legacy_, t)) << t;
    EXPECT_EQ(
        QueryInt(target_, std::string("SELECT length(CAST(k AS BLOB)) FROM ") + t + " WHERE v = 4"),
        4)
        << t << ": the bytes after the NUL were lost";
  }
}

TEST_F(EdgeDataTest, LargeValues) {
  ExecSql(legacy_, R"sql(
    CREATE TABLE big (id INTEGER PRIMARY KEY, b BLOB, t TEXT);
    WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20)
      INSERT INTO big SELECT x, randomblob(1048576), CASE WHEN x % 4 = 0 THEN
        replace(hex(zeroblob(262144)), '00', 'ab') ELSE NULL END FROM c;
    CREATE TABLE bigkey (k BLOB PRIMARY KEY, v) WITHOUT ROWID;
    WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10)
      INSERT INTO bigkey SELECT randomblob(20000), x FROM c;
  )sql");
  ASSERT_EQ(QueryInt(legacy_, "SELECT max(length(b)) FROM big"), 1048576);
  MigrateAndCompare("3", "2");
  EXPECT_EQ(QueryInt(target_, "SELECT sum(length(b)) FROM big"), 20 * 1048576);
}

TEST_F(EdgeDataTest, RowidTablesWithGapsAndExtremeIntegerKeys) {
  ExecSql(legacy_, R"sql(
    CREATE TABLE nopk (a TEXT, b INTEGER);
    INSERT INTO nopk (rowid, a, b) VALUES (-9223372036854775808, 'min', 1), (-5, 'neg', 2),
      (0, 'zero', 3), (1, 'one', 4), (2, 'two', 5), (100, 'hundred', 6), (1000000, 'million', 7),
      (4294967296, '2^32', 8), (9223372036854775807, 'max', 9);
    WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50)
      INSERT INTO nopk (rowid, a, b) SELECT x * 7919 + 3, 'r' || x, x FROM c;
    DELETE FROM nopk WHERE rowid % 3 = 0 AND b > 10;
    CREATE TABLE dupes (a, b);  -- no key at all, identical rows
    INSERT INTO dupes VALUES (1, 'x'), (1, 'x'), (1, 'x'), (NULL, NULL), (NULL, NULL);
    CREATE TABLE ints (id INTEGER PRIMARY KEY, v);
    INSERT INTO ints VALUES (-9223372036854775808, 'min'), (-9223372036854775807, 'min+1'),
      (-4294967297, 'a'), (-256, 'b'), (-255, 'c'), (-1, 'd'), (0, 'e'), (1, 'f'), (255, 'g'),
      (256, 'h'), (65535, 'i'), (65536, 'j'), (4294967295, 'k'), (4294967296, 'l'),
      (9223372036854775806, 'max-1'), (9223372036854775807, 'max');
    CREATE TABLE intsw (id INTEGER PRIMARY KEY, v) WITHOUT ROWID;
    INSERT INTO intsw SELECT * FROM ints;
  )sql");
  MigrateAndCompare("3", "2");
  EXPECT_GE(Ranges("nopk"), 5);
  EXPECT_GE(Ranges("ints"), 4);
  for (const char* t : {"ints", "intsw"}) {
    EXPECT_EQ(DumpTable(target_, t), DumpTable(legacy_, t)) << t;
  }
  EXPECT_EQ(QueryText(target_,
                      "SELECT group_concat(rowid, ',') FROM (SELECT rowid FROM nopk "
                      "ORDER BY rowid)"),
            QueryText(legacy_,
                      "SELECT group_concat(rowid, ',') FROM (SELECT rowid FROM nopk "
                      "ORDER BY rowid)"));
}

TEST_F(EdgeDataTest, RealKeys) {
  ExecSql(legacy_, R"sql(
    CREATE TABLE r (k REAL PRIMARY KEY, v);
    INSERT INTO r VALUES (-9e999, '-inf'), (-1.7976931348623157e308, 'lowest'), (-1e10, 'a'),
      (-1.5, 'b'), (-1.0, 'c'), (-4.9e-324, 'neg denorm'), (0.0, 'zero'), (4.9e-324, 'denorm'),
      (2.2250738585072014e-308, 'min normal'), (0.1, 'd'), (0.5, 'e'), (1.0, 'f'),
      (1.0000000000000002, 'g'), (3.141592653589793, 'pi'), (1e10, 'h'), (9007199254740993.0, 'i'),
      (1.7976931348623157e308, 'highest'), (9e999, 'inf');
    CREATE TABLE rw (k REAL PRIMARY KEY, v) WITHOUT ROWID;
    INSERT INTO rw SELECT * FROM r;
  )sql");
  MigrateAndCompare("2", "1");
  for (const char* t : {"r", "rw"}) {
    EXPECT_EQ(DumpTable(target_, t), DumpTable(legacy_, t)) << t;
  }
}

TEST_F(EdgeDataTest, CompositeKeysMixingTypes) {
  ExecSql(legacy_, R"sql(
    CREATE TABLE c (a, b, v, PRIMARY KEY (a, b));
    INSERT INTO c VALUES (1, 1, 'i-i'), (1, 1.5, 'i-r'), (1, 'x', 'i-t'), (1, x'00', 'i-b'),
      (1, 2, 'i-i2'), (1.5, 1, 'r-i'), (2, 0, 'i2'), (-3, 'neg', 'n'), (-3.25, x'FF', 'nr'),
      ('', '', 'empty text'), ('a', 1, 't-i'), ('a', 'a', 't-t'), ('a', x'', 't-b'),
      (CAST(x'6100' AS TEXT), 1, 'nul text'), (x'', 0, 'b-empty'), (x'00', x'00', 'b-b'),
      (x'0000', 1, 'b2'), (x'FF', 'z', 'bff'), (x'FFFF', -1, 'bffff'),
      (9223372036854775807, -9223372036854775808, 'extremes'), (-9e999, 9e999, 'infs');
    CREATE TABLE cw (a, b, v, PRIMARY KEY (a, b)) WITHOUT ROWID;
    INSERT INTO cw SELECT * FROM c;
    CREATE TABLE typed (t TEXT NOT NULL, n INTEGER NOT NULL, r REAL NOT NULL, b BLOB NOT NULL,
                        v, PRIMARY KEY (t, n, r, b)) WITHOUT ROWID;
    WITH RECURSIVE q(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM q WHERE x < 120)
      INSERT INTO typed SELECT 't' || (x % 3), x % 5 - 2, (x % 4) / 2.0, CAST(char(x % 7) AS BLOB),
        x FROM q WHERE 1 ON CONFLICT DO NOTHING;
  )sql");
  MigrateAndCompare("2", "1");
  EXPECT_GE(Ranges("c"), 8);
  for (const char* t : {"c", "cw", "typed"}) {
    EXPECT_EQ(DumpTable(target_, t), DumpTable(legacy_, t)) << t;
  }
}

}  // namespace
}  // namespace ferry::testing
