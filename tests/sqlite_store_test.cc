// Tests of SqliteStore (stores/sqlite/sqlite_store.h) and the store factory, on real
// files in a fresh temporary directory per test.
#include "stores/sqlite/sqlite_store.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/digest.h"
#include "common/key_codec.h"
#include "common/sqlite_util.h"
#include "coordinator/planner.h"
#include "stores/store.h"
#include "tests/process_util.h"
#include "tests/test_util.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
using std::string_literals::operator""s;

// Passes if `text` contains `part`, printing both otherwise.
::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << part << "'";
}

#define ASSERT_OK(expr)                                     \
  do {                                                      \
    const ::ferry::Status _s = (expr);                      \
    ASSERT_TRUE(_s.ok()) << #expr << ": " << _s.ToString(); \
  } while (0)

// The range bounds a table's split points make: "" (the table's start),
// each split, "" (its end); range i is [bounds[i], bounds[i + 1]).
std::vector<std::string> RangeBounds(const std::vector<std::string>& splits) {
  std::vector<std::string> bounds = {""};
  bounds.insert(bounds.end(), splits.begin(), splits.end());
  bounds.push_back("");
  return bounds;
}

// Fills table comp (t TEXT, b BLOB, r REAL, v, PRIMARY KEY (t, b, r)) of the
// file at `path` with keys full of escaping edge cases: NUL and 0xFF bytes,
// prefixes, -0.0, inf; v is NULL for every third row.
void FillEdgeKeys(const std::string& path) {
  auto db = Db::Open(path, SQLITE_OPEN_READWRITE);
  ASSERT_TRUE(db.ok());
  auto ins = db->Prepare("INSERT OR IGNORE INTO comp VALUES (?1, ?2, ?3, ?4)");
  ASSERT_TRUE(ins.ok());
  const std::vector<std::string> texts = {"", "a", "a\0"s, "a\0b"s, "a\xff"s, "b", "\xff\xff"s};
  const std::vector<std::string> blobs = {"", "\0"s, "\0\0"s, "\xff"s, "x"};
  const std::vector<double> reals = {-1e300, -1.5, -0.0, 2.5, 1.0 / 0.0};
  int64_t n = 0;
  for (const auto& t : texts) {
    for (const auto& b : blobs) {
      for (double r : reals) {
        ins->Bind(1, std::string_view(t));  // copied: BindValue would not copy
        ins->BindBlob(2, b);
        ins->BindValue(3, r);
        if (n % 3 == 0) {
          ins->BindValue(4, Value(Null{}));
        } else {
          ins->Bind(4, n * 1000003);
        }
        ++n;
        ASSERT_EQ(ins->Step(), SQLITE_DONE) << db->ErrorMessage();
        ins->Reset();
      }
    }
  }
}

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "ferry-store-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(dir_, ec);
  }

  std::string Path(const std::string& name) const { return (fs::path(dir_) / name).string(); }

  // Runs SQL directly on a file, outside ferry.
  void Sql(const std::string& path, const std::string& sql) {
    auto db = Db::Open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    ASSERT_OK(db->Exec(sql));
  }

  // First column of every row of `sql`, as strings (NULL as "NULL").
  std::vector<std::string> Query(const std::string& path, const std::string& sql) {
    std::vector<std::string> out;
    auto db = Db::Open(path, SQLITE_OPEN_READONLY);
    EXPECT_TRUE(db.ok()) << db.status().ToString();
    if (!db.ok()) return out;
    auto stmt = db->Prepare(sql);
    EXPECT_TRUE(stmt.ok()) << stmt.status().ToString();
    if (!stmt.ok()) return out;
    while (stmt->Step() == SQLITE_ROW) out.push_back(stmt->IsNull(0) ? "NULL" : stmt->Str(0));
    return out;
  }

  // Every row of `sql` as Values.
  std::vector<std::vector<Value>> Rows(const std::string& path, const std::string& sql) {
    std::vector<std::vector<Value>> out;
    auto db = Db::Open(path, SQLITE_OPEN_READONLY);
    EXPECT_TRUE(db.ok());
    if (!db.ok()) return out;
    auto stmt = db->Prepare(sql);
    EXPECT_TRUE(stmt.ok()) << stmt.status().ToString();
    if (!stmt.ok()) return out;
    while (stmt->Step() == SQLITE_ROW) {
      std::vector<Value> row;
      for (int c = 0; c < sqlite3_column_count(stmt->get()); ++c)
        row.push_back(stmt->ColumnValue(c));
      out.push_back(std::move(row));
    }
    return out;
  }

  std::unique_ptr<SqliteStore> OpenOk(const std::string& path, StoreRole role) {
    auto store = SqliteStore::Open(path, role);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? std::move(store).value() : nullptr;
  }

  TableSchema Table(SqliteStore* store, const std::string& name) {
    auto tables = store->ListTables();
    EXPECT_TRUE(tables.ok()) << tables.status().ToString();
    if (tables.ok()) {
      for (const TableSchema& t : *tables) {
        if (t.name == name) return t;
      }
    }
    ADD_FAILURE() << "no table " << name;
    return {};
  }

  // Reads the whole table range by range, batch by batch, resuming after the
  // last key of each batch like a worker does.
  std::vector<std::vector<Value>> ReadAll(SqliteStore* store, const TableSchema& table,
                                          uint64_t rows_per_range, size_t max_rows,
                                          size_t max_bytes, std::vector<uint64_t>* range_rows) {
    uint64_t rows = 0;
    auto splits = store->PlanSplits(table, rows_per_range, &rows);
    EXPECT_TRUE(splits.ok()) << splits.status().ToString();
    if (!splits.ok()) return {};
    const std::vector<std::string> bounds = RangeBounds(*splits);
    std::vector<std::vector<Value>> out;
    for (size_t r = 0; r + 1 < bounds.size(); ++r) {
      KeyRange range{table.name, bounds[r], bounds[r + 1]};
      std::string cursor;
      uint64_t in_range = 0;
      RowBatch batch;
      for (;;) {
        Status s = store->ReadBatch(table, range, cursor, max_rows, max_bytes, &batch);
        EXPECT_TRUE(s.ok()) << s.ToString();
        if (!s.ok() || batch.rows() == 0) break;
        EXPECT_LE(batch.rows(), max_rows);
        for (size_t i = 0; i < batch.rows(); ++i) {
          EXPECT_GT(batch.keys[i], cursor);  // strictly increasing keys
          if (!range.lo.empty()) {
            EXPECT_GE(batch.keys[i], range.lo);
          }
          if (!range.hi.empty()) {
            EXPECT_LT(batch.keys[i], range.hi);
          }
          cursor = batch.keys[i];
          out.emplace_back(batch.row(i), batch.row(i) + batch.width);
        }
        in_range += batch.rows();
      }
      if (range_rows) range_rows->push_back(in_range);
    }
    EXPECT_EQ(out.size(), rows);
    return out;
  }

  RowBatch Batch(const std::vector<std::vector<Value>>& rows,
                 const std::vector<size_t>& key_cells) {
    RowBatch b;
    b.width = rows.empty() ? 0 : rows[0].size();
    for (const auto& row : rows) {
      std::vector<Value> key;
      for (size_t k : key_cells) key.push_back(row[k]);
      b.keys.push_back(EncodeKey(key));
      b.cells.insert(b.cells.end(), row.begin(), row.end());
    }
    return b;
  }

  std::string dir_;
};

// ---- opening ----

TEST_F(SqliteStoreTest, MissingSourceIsAClearError) {
  auto store = OpenStore("sqlite:" + Path("nope.db"), StoreRole::kSource);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(store.status().message(),
            "legacy store sqlite:" + Path("nope.db") + " does not exist (check --source)");
  EXPECT_FALSE(fs::exists(Path("nope.db"))) << "opening a source must never create it";
}

TEST_F(SqliteStoreTest, SourceThatIsNotADatabaseIsAClearError) {
  std::ofstream(Path("junk.db"))
      << "this is not a database, just some text long enough......."
         "..............................................................";
  auto store = SqliteStore::Open(Path("junk.db"), StoreRole::kSource);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(Contains(store.status().message(), Path("junk.db")));
  EXPECT_TRUE(Contains(store.status().message(), "--source"));
  EXPECT_EQ(store.status().message().find('\n'), std::string::npos);
}

TEST_F(SqliteStoreTest, TargetInUnwritableLocationIsAClearError) {
  // Root ignores permission bits, so use a parent that is a regular file.
  std::ofstream(Path("file")) << "x";
  const std::string target = Path("file") + "/new.db";
  auto store = OpenStore("sqlite:" + target, StoreRole::kTarget);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(Contains(store.status().message(), "new store sqlite:" + target));
  EXPECT_TRUE(Contains(store.status().message(), "--target"));
}

TEST_F(SqliteStoreTest, TargetInReadOnlyDirectoryIsAClearError) {
  if (geteuid() == 0) GTEST_SKIP() << "root ignores directory permissions";
  fs::create_directory(Path("ro"));
  fs::permissions(Path("ro"), fs::perms::owner_read | fs::perms::owner_exec);
  auto store = SqliteStore::Open(Path("ro") + "/new.db", StoreRole::kTarget);
  fs::permissions(Path("ro"), fs::perms::owner_all);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(Contains(store.status().message(), Path("ro") + "/new.db"));
}

TEST_F(SqliteStoreTest, ReadOnlyTargetFileIsAClearError) {
  if (geteuid() == 0) GTEST_SKIP() << "root ignores file permissions";
  Sql(Path("new.db"), "CREATE TABLE t (k INTEGER PRIMARY KEY);");
  fs::permissions(Path("new.db"), fs::perms::owner_read);
  auto store = SqliteStore::Open(Path("new.db"), StoreRole::kTarget);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(store.status().message(),
            "new store sqlite:" + Path("new.db") +
                " cannot be written: attempt to write a readonly database (check --target: the "
                "file and its directory must be writable)");
}

TEST_F(SqliteStoreTest, TargetIsCreatedInWalModeWithMetaTable) {
  auto store = OpenOk(Path("new.db"), StoreRole::kTarget);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->Describe(), "sqlite:" + Path("new.db"));
  EXPECT_EQ(Query(Path("new.db"), "PRAGMA journal_mode"), std::vector<std::string>{"wal"});
  EXPECT_EQ(Query(Path("new.db"), "SELECT name FROM sqlite_master WHERE type = 'table'"),
            std::vector<std::string>{kMetaTable});
}

TEST_F(SqliteStoreTest, SourceIsOpenedReadOnlyAndKeepsItsJournalMode) {
  Sql(Path("old.db"), "CREATE TABLE t (k INTEGER PRIMARY KEY, v); INSERT INTO t VALUES (1, 'a');");
  auto store = OpenOk(Path("old.db"), StoreRole::kSource);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(Query(Path("old.db"), "PRAGMA journal_mode"), std::vector<std::string>{"delete"});
  EXPECT_FALSE(fs::exists(Path("old.db-wal")));
  Status s = store->WriteMarker(Marker{3, ""});
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
  TableSchema t = Table(store.get(), "t");
  RowBatch batch;
  ASSERT_OK(store->ReadBatch(t, {"t", "", ""}, "", 10, 1000, &batch));
  EXPECT_EQ(store->WriteBatch(t, batch, Fence{"p", 0, 1}).code(), Code::kFailedPrecondition);
  EXPECT_EQ(store->CreateSchema({t}).code(), Code::kFailedPrecondition);
  EXPECT_EQ(Query(Path("old.db"), "SELECT name FROM sqlite_master WHERE type = 'table'"),
            std::vector<std::string>{"t"});
}

// ---- ListTables ----

TEST_F(SqliteStoreTest, ListTablesReturnsUserTablesSortedWithKeysAndIndexes) {
  Sql(Path("old.db"),
      "CREATE TABLE b (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT NOT NULL);"
      "CREATE TABLE a (x REAL, y);"
      "CREATE INDEX a_y ON a (y);"
      "CREATE UNIQUE INDEX a_xy ON a (x, y);"
      "CREATE TABLE __ferry_meta (key TEXT PRIMARY KEY, value);"
      "CREATE VIEW vw AS SELECT * FROM a;"
      "CREATE TABLE c (name TEXT, n INTEGER, v BLOB, PRIMARY KEY (n, name)) WITHOUT ROWID;"
      "INSERT INTO b (v) VALUES ('one');");
  auto store = OpenOk(Path("old.db"), StoreRole::kSource);
  ASSERT_NE(store, nullptr);
  auto tables = store->ListTables();
  ASSERT_TRUE(tables.ok()) << tables.status().ToString();
  std::vector<std::string> names;
  for (const TableSchema& t : *tables) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"a", "b", "c"}));  // no sqlite_sequence, meta, view

  const TableSchema& a = (*tables)[0];
  EXPECT_EQ(a.dialect, "sqlite");
  EXPECT_TRUE(a.rowid_key());
  EXPECT_EQ(a.width(), 3u);
  ASSERT_EQ(a.columns.size(), 2u);
  EXPECT_EQ(a.columns[0].name, "x");
  EXPECT_EQ(a.columns[0].type, "REAL");
  EXPECT_EQ(a.create_sql, "CREATE TABLE a (x REAL, y)");
  EXPECT_EQ(a.index_sql, (std::vector<std::string>{"CREATE UNIQUE INDEX a_xy ON a (x, y)",
                                                   "CREATE INDEX a_y ON a (y)"}));

  const TableSchema& b = (*tables)[1];
  EXPECT_EQ(b.key_columns, std::vector<size_t>{0});
  EXPECT_TRUE(b.columns[1].not_null);
  EXPECT_FALSE(b.columns[0].not_null);
  EXPECT_TRUE(b.index_sql.empty());

  const TableSchema& c = (*tables)[2];
  EXPECT_EQ(c.key_columns, (std::vector<size_t>{1, 0}));  // PK order, not column order
  EXPECT_EQ(c.width(), 3u);
}

TEST_F(SqliteStoreTest, GeneratedColumnsAreNotListed) {
  Sql(Path("old.db"), "CREATE TABLE g (k INTEGER PRIMARY KEY, a INT, d INT AS (a * 2));");
  auto store = OpenOk(Path("old.db"), StoreRole::kSource);
  ASSERT_NE(store, nullptr);
  TableSchema g = Table(store.get(), "g");
  ASSERT_EQ(g.columns.size(), 2u);
  EXPECT_EQ(g.columns[1].name, "a");
}

TEST_F(SqliteStoreTest, RowidTableUsesAnUnshadowedAlias) {
  Sql(Path("old.db"),
      "CREATE TABLE r (rowid TEXT, v);"
      "INSERT INTO r (_rowid_, rowid, v) VALUES (10, 'not the rowid', 'x');"
      "CREATE TABLE all3 (rowid, _rowid_, oid);");
  auto store = OpenOk(Path("old.db"), StoreRole::kSource);
  ASSERT_NE(store, nullptr);
  auto tables = store->ListTables();
  ASSERT_FALSE(tables.ok());
  EXPECT_EQ(tables.status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(Contains(tables.status().message(), "table all3"));

  TableSchema r;
  r.name = "r";
  r.dialect = "sqlite";
  r.columns = {{"rowid", "TEXT", false}, {"v", "", false}};
  EXPECT_EQ(SqliteStore::RowidAlias(r.columns), "_rowid_");
  RowBatch batch;
  ASSERT_OK(store->ReadBatch(r, {"r", "", ""}, "", 10, 1 << 20, &batch));
  ASSERT_EQ(batch.rows(), 1u);
  EXPECT_EQ(batch.row(0)[0], Value(int64_t{10}));
  EXPECT_EQ(batch.row(0)[1], Value(Text{"not the rowid"}));
  EXPECT_EQ(batch.keys[0], EncodeKey({int64_t{10}}));
}

TEST_F(SqliteStoreTest, VirtualTableIsRejectedByName) {
  Sql(Path("old.db"), "CREATE TABLE plain (k INTEGER PRIMARY KEY);");
  auto db = Db::Open(Path("old.db"), SQLITE_OPEN_READWRITE);
  ASSERT_TRUE(db.ok());
  if (!db->Exec("CREATE VIRTUAL TABLE docs USING fts5(body)").ok() &&
      !db->Exec("CREATE VIRTUAL TABLE docs USING rtree(id, x0, x1)").ok()) {
    GTEST_SKIP() << "this SQLite has neither fts5 nor rtree";
  }
  auto store = OpenOk(Path("old.db"), StoreRole::kSource);
  ASSERT_NE(store, nullptr);
  // Listed, marked: so selecting all fails naming it, and leaving it (and
  // the tables it keeps its data in) out works.
  auto tables = store->ListTables();
  ASSERT_TRUE(tables.ok()) << tables.status().ToString();
  std::vector<std::string> copyable;
  for (const TableSchema& t : *tables) {
    if (t.name == "docs") {
      EXPECT_TRUE(Contains(t.unsupported, "virtual table"));
    } else if (t.name.rfind("docs_", 0) == 0) {
      EXPECT_TRUE(Contains(t.unsupported, "shadow table")) << t.name;
    } else {
      EXPECT_EQ(t.unsupported, "") << t.name;
      copyable.push_back(t.name);
    }
  }
  EXPECT_EQ(copyable, std::vector<std::string>{"plain"});
  auto all = SelectTables(*tables, "");
  ASSERT_FALSE(all.ok());
  EXPECT_EQ(all.status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(Contains(all.status().message(), "table docs is a virtual table"));
  EXPECT_TRUE(Contains(all.status().message(), "not support"));
  EXPECT_TRUE(Contains(all.status().message(), "--tables"));
  EXPECT_FALSE(SelectTables(*tables, "plain,docs").ok());
  auto plain = SelectTables(*tables, "plain");
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  ASSERT_EQ(plain->size(), 1u);
  EXPECT_EQ((*plain)[0].name, "plain");
}

// ---- PlanSplits / ReadBatch ----

TEST_F(SqliteStoreTest, NullInPrimaryKeyIsRejected) {
  Sql(Path("old.db"),
      "CREATE TABLE n (a INTEGER, b TEXT, v, PRIMARY KEY (a, b));"
      "INSERT INTO n VALUES (1, 'x', 1), (2, NULL, 2);");
  auto store = OpenOk(Path("old.db"), StoreRole::kSource);
  ASSERT_NE(store, nullptr);
  uint64_t rows = 0;
  auto splits = store->PlanSplits(Table(store.get(), "n"), 1, &rows);
  ASSERT_FALSE(splits.ok());
  EXPECT_EQ(splits.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(splits.status().message(),
            "table n has NULL in primary-key column b; ferry cannot order it");
}

// The planner's splits and row count equal the ones an ordered walk of the
// keys gives (computed here with SQL: the key of every 10th row), whether
// the key is a dense rowid (planned from count, min and max), a rowid with
// holes, negative rowids, an implicit rowid, a WITHOUT ROWID integer key, a
// composite key (in a rowid table and WITHOUT ROWID), a text key or an empty
// table; for every rows_per_range from 1 to past the row count.
TEST_F(SqliteStoreTest, SplitsEqualAnOrderedWalkOfTheKeys) {
  Sql(Path("old.db"),
      "CREATE TABLE dense (id INTEGER PRIMARY KEY, v);"
      "CREATE TABLE holes (id INTEGER PRIMARY KEY, v);"
      "CREATE TABLE negative (id INTEGER PRIMARY KEY, v);"
      "CREATE TABLE implicit (v);"
      "CREATE TABLE norowid (id INTEGER PRIMARY KEY, v) WITHOUT ROWID;"
      "CREATE TABLE empty (id INTEGER PRIMARY KEY, v);"
      "CREATE TABLE pair (region TEXT, id INTEGER, v, PRIMARY KEY (region, id));"
      "CREATE TABLE pair_nr (region TEXT, id INTEGER, v, PRIMARY KEY (region, id)) WITHOUT ROWID;"
      "CREATE TABLE word (w TEXT PRIMARY KEY, v);"
      "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 95) "
      "INSERT INTO pair SELECT 'r' || (i % 7), i, i FROM s;"
      "INSERT INTO pair_nr SELECT * FROM pair;"
      "INSERT INTO word SELECT 'w' || (v * 37 % 101) || x'00', v FROM pair;"
      "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 95) "
      "INSERT INTO dense SELECT i + 1000, i FROM s;"
      "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 95) "
      "INSERT INTO holes SELECT i * i, i FROM s;"
      "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 95) "
      "INSERT INTO negative SELECT i - 50, i FROM s;"
      "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 95) "
      "INSERT INTO implicit SELECT i FROM s;"
      "DELETE FROM implicit WHERE v IN (7, 8);"
      "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 95) "
      "INSERT INTO norowid SELECT i, i FROM s;");
  auto store = OpenOk(Path("old.db"), StoreRole::kSource);
  ASSERT_NE(store, nullptr);
  auto db = Db::Open(Path("old.db"), SQLITE_OPEN_READONLY);
  ASSERT_TRUE(db.ok());
  const std::map<std::string, std::string> keys = {
      {"dense", "id"},        {"holes", "id"},           {"negative", "id"},
      {"implicit", "rowid"},  {"norowid", "id"},         {"empty", "id"},
      {"pair", "region, id"}, {"pair_nr", "region, id"}, {"word", "w"}};
  for (const auto& [name, key] : keys) {
    const TableSchema table = Table(store.get(), name);
    for (uint64_t per : {1, 2, 10, 94, 95, 96, 1000}) {
      SCOPED_TRACE(fmt::format("{} by {}", name, per));
      auto walk = db->Prepare(fmt::format("SELECT {0} FROM {1} ORDER BY {0}", key, name));
      ASSERT_TRUE(walk.ok());
      const int arity = sqlite3_column_count(walk->get());
      std::vector<std::string> want;
      uint64_t want_rows = 0;
      while (walk->Step() == SQLITE_ROW) {
        if (want_rows != 0 && want_rows % per == 0) {
          std::vector<Value> values;
          for (int i = 0; i < arity; ++i) values.push_back(walk->ColumnValue(i));
          want.push_back(EncodeKey(values));
        }
        ++want_rows;
      }
      uint64_t rows = 12345;
      auto splits = store->PlanSplits(table, per, &rows);
      ASSERT_TRUE(splits.ok()) << splits.status().ToString();
      EXPECT_EQ(*splits, want);
      EXPECT_EQ(rows, want_rows);
    }
  }
}

TEST_F(SqliteStoreTest, SplitsOnUniformDataGiveEvenRanges) {
  Sql(Path("old.db"),
      "CREATE TABLE u (region TEXT, id INTEGER, v, PRIMARY KEY (region, id));"
      "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < 9999) "
      "INSERT INTO u SELECT 'r' || (i % 7), i, randomblob(20) FROM s;");
  auto store = OpenOk(Path("old.db"), StoreRole::kSource);
  ASSERT_NE(store, nullptr);
  TableSchema u = Table(store.get(), "u");
  uint64_t rows = 0;
  auto splits = store->PlanSplits(u, 1000, &rows);
  ASSERT_TRUE(splits.ok()) << splits.status().ToString();
  EXPECT_EQ(rows, 10000u);
  EXPECT_EQ(splits->size(), 9u);
  EXPECT_TRUE(std::is_sorted(splits->begin(), splits->end()));

  std::vector<uint64_t> per_range;
  auto all = ReadAll(store.get(), u, 1000, 333, 1 << 20, &per_range);
  EXPECT_EQ(all.size(), 10000u);
  ASSERT_EQ(per_range.size(), 10u);
  uint64_t lo = *std::min_element(per_range.begin(), per_range.end());
  uint64_t hi = *std::max_element(per_range.begin(), per_range.end());
  EXPECT_GT(lo, 0u);
  EXPECT_LE(hi, 2 * lo) << "ranges are uneven";
}

TEST_F(SqliteStoreTest, RangeByRangeBatchesCoverEveryRowExactlyOnce) {
  Sql(Path("old.db"),
      "CREATE TABLE rid (a, b);"  // rowid-keyed, with gaps
      "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 500) "
      "INSERT INTO rid (rowid, a, b) SELECT i * 3 - 700, i, hex(i) FROM s;"
      "DELETE FROM rid WHERE a % 5 = 0;"
      "CREATE TABLE comp (t TEXT, b BLOB, r REAL, v, PRIMARY KEY (t, b, r)) WITHOUT ROWID;");
  FillEdgeKeys(Path("old.db"));
  auto store = OpenOk(Path("old.db"), StoreRole::kSource);
  ASSERT_NE(store, nullptr);

  const auto expected_rid = Rows(Path("old.db"), "SELECT rowid, a, b FROM rid ORDER BY rowid");
  const auto expected_comp = Rows(Path("old.db"), "SELECT * FROM comp ORDER BY t, b, r");
  ASSERT_EQ(expected_rid.size(), 400u);
  ASSERT_EQ(expected_comp.size(), 7u * 5 * 5);

  for (uint64_t per_range : {1u, 7u, 64u, 1000u}) {
    for (size_t max_rows : {1u, 5u, 100u}) {
      SCOPED_TRACE(fmt::format("rows_per_range={} max_rows={}", per_range, max_rows));
      EXPECT_EQ(
          ReadAll(store.get(), Table(store.get(), "rid"), per_range, max_rows, 1 << 20, nullptr),
          expected_rid);
      EXPECT_EQ(
          ReadAll(store.get(), Table(store.get(), "comp"), per_range, max_rows, 1 << 20, nullptr),
          expected_comp);
    }
  }
  // A byte budget smaller than one row still makes progress, one row a batch.
  EXPECT_EQ(ReadAll(store.get(), Table(store.get(), "comp"), 50, 100, 1, nullptr), expected_comp);
}

TEST_F(SqliteStoreTest, ReadBatchStopsAtTheByteBudget) {
  Sql(Path("old.db"),
      "CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB);"
      "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 100) "
      "INSERT INTO kv SELECT CAST(printf('%03d', i) AS BLOB), zeroblob(1000) FROM s;");
  auto store = OpenOk(Path("old.db"), StoreRole::kSource);
  ASSERT_NE(store, nullptr);
  TableSchema kv = Table(store.get(), "kv");
  RowBatch batch;
  ASSERT_OK(store->ReadBatch(kv, {"kv", "", ""}, "", 100, 5000, &batch));
  EXPECT_EQ(batch.rows(), 5u);  // each row is 1000 + 3 + key bytes
  uint64_t bytes = 0;
  for (size_t i = 0; i < batch.rows(); ++i) {
    bytes += batch.keys[i].size() + PayloadBytes(batch.row(i)[0]) + PayloadBytes(batch.row(i)[1]);
  }
  EXPECT_EQ(batch.bytes, bytes);
  EXPECT_EQ(batch.width, 2u);
  EXPECT_EQ(batch.keys[0], EncodeKey({Blob{"001"}}));

  // Bounds are honoured: [lo, hi) and (after, hi).
  KeyRange range{"kv", EncodeKey({Blob{"010"}}), EncodeKey({Blob{"013"}})};
  ASSERT_OK(store->ReadBatch(kv, range, "", 100, 1 << 20, &batch));
  ASSERT_EQ(batch.rows(), 3u);
  EXPECT_EQ(batch.keys[0], range.lo);
  ASSERT_OK(store->ReadBatch(kv, range, range.lo, 100, 1 << 20, &batch));
  ASSERT_EQ(batch.rows(), 2u);
  EXPECT_EQ(batch.keys[0], EncodeKey({Blob{"011"}}));
}

TEST_F(SqliteStoreTest, MalformedOrMisfittingCursorIsRejected) {
  Sql(Path("old.db"), "CREATE TABLE t (a INT, b INT, PRIMARY KEY (a, b));");
  auto store = OpenOk(Path("old.db"), StoreRole::kSource);
  ASSERT_NE(store, nullptr);
  TableSchema t = Table(store.get(), "t");
  RowBatch batch;
  Status s = store->ReadBatch(t, {"t", "", ""}, "\x99", 10, 100, &batch);
  EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.ToString();
  s = store->ReadBatch(t, {"t", "", ""}, EncodeKey({int64_t{1}}), 10, 100, &batch);
  EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.ToString();  // one value for a 2-column key
}

// ---- target side ----

class TargetTest : public SqliteStoreTest {
 protected:
  void SetUp() override {
    SqliteStoreTest::SetUp();
    target_ = OpenOk(Path("new.db"), StoreRole::kTarget);
    ASSERT_NE(target_, nullptr);
    kv_.name = "kv";
    kv_.dialect = "sqlite";
    kv_.columns = {{"k", "INTEGER", false}, {"v", "TEXT", false}};
    kv_.key_columns = {0};
    kv_.create_sql = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)";
    ASSERT_OK(target_->CreateSchema({kv_}));
  }
  RowBatch KvBatch(std::vector<std::pair<int64_t, std::string>> rows) {
    std::vector<std::vector<Value>> cells;
    for (auto& [k, v] : rows) cells.push_back({k, Text{v}});
    return Batch(cells, {0});
  }
  std::vector<std::string> KvRows() {
    return Query(Path("new.db"), "SELECT k || '=' || v FROM kv ORDER BY k");
  }
  std::unique_ptr<SqliteStore> target_;
  TableSchema kv_;
};

TEST_F(TargetTest, OlderEpochAbortsAndWritesNothing) {
  ASSERT_OK(target_->WriteBatch(kv_, KvBatch({{1, "a"}}), Fence{"p1", 4, 2}));
  Status s = target_->WriteBatch(kv_, KvBatch({{1, "stale"}, {2, "b"}}), Fence{"p1", 4, 1});
  EXPECT_EQ(s.code(), Code::kLeaseLost) << s.ToString();
  EXPECT_EQ(s.message(), "range 4: epoch 1 is older than recorded epoch 2");
  EXPECT_EQ(KvRows(), std::vector<std::string>{"1=a"});
  EXPECT_EQ(Query(Path("new.db"), "SELECT value FROM __ferry_meta WHERE key = 'fence/p1/4'"),
            std::vector<std::string>{"2"});

  // Equal and newer epochs proceed; the newer one is recorded.
  ASSERT_OK(target_->WriteBatch(kv_, KvBatch({{2, "b"}}), Fence{"p1", 4, 2}));
  ASSERT_OK(target_->WriteBatch(kv_, KvBatch({{3, "c"}}), Fence{"p1", 4, 7}));
  EXPECT_EQ(target_->WriteBatch(kv_, KvBatch({{4, "d"}}), Fence{"p1", 4, 2}).code(),
            Code::kLeaseLost);
  // Fences are per (plan, range).
  ASSERT_OK(target_->WriteBatch(kv_, KvBatch({{5, "e"}}), Fence{"p1", 5, 1}));
  ASSERT_OK(target_->WriteBatch(kv_, KvBatch({{6, "f"}}), Fence{"p2", 4, 1}));
  EXPECT_EQ(KvRows(), (std::vector<std::string>{"1=a", "2=b", "3=c", "5=e", "6=f"}));
}

TEST_F(TargetTest, FailedBatchRollsBackRowsAndFence) {
  TableSchema nn = kv_;
  nn.name = "nn";
  nn.columns[1].not_null = true;
  nn.create_sql = "CREATE TABLE nn (k INTEGER PRIMARY KEY, v TEXT NOT NULL)";
  ASSERT_OK(target_->CreateSchema({nn}));
  RowBatch bad = Batch({{int64_t{1}, Text{"ok"}}, {int64_t{2}, Null{}}}, {0});
  Status s = target_->WriteBatch(nn, bad, Fence{"p", 1, 9});
  EXPECT_EQ(s.code(), Code::kPermanent) << s.ToString();
  EXPECT_TRUE(Query(Path("new.db"), "SELECT k FROM nn").empty());
  // The fence of the failed batch was not recorded either.
  ASSERT_OK(target_->WriteBatch(nn, Batch({{int64_t{1}, Text{"ok"}}}, {0}), Fence{"p", 1, 3}));
  EXPECT_EQ(Query(Path("new.db"), "SELECT k FROM nn"), std::vector<std::string>{"1"});
}

TEST_F(TargetTest, UpsertsAreIdempotent) {
  RowBatch batch = KvBatch({{1, "a"}, {2, "b"}, {3, "c"}});
  ASSERT_OK(target_->WriteBatch(kv_, batch, Fence{"p", 0, 1}));
  ASSERT_OK(target_->WriteBatch(kv_, batch, Fence{"p", 0, 1}));
  EXPECT_EQ(KvRows(), (std::vector<std::string>{"1=a", "2=b", "3=c"}));
  ASSERT_OK(target_->WriteBatch(kv_, KvBatch({{2, "B"}}), Fence{"p", 0, 2}));
  EXPECT_EQ(KvRows(), (std::vector<std::string>{"1=a", "2=B", "3=c"}));
  ASSERT_OK(target_->WriteBatch(kv_, RowBatch{2, {}, {}, 0}, Fence{"p", 0, 2}));  // empty batch
}

// The new store's WAL is checkpointed by the background thread while the
// writer goes on: after ~8 MiB of batches (about 2,000 WAL frames, far below
// the 16,384 at which the writer would checkpoint in its own commit), pages
// reach the database file itself — at least half of them: the frames written
// after the checkpointer's last pass stay in the WAL until the next batch
// (how many depends on the machine's speed; an ASan build leaves ~40%).
TEST_F(TargetTest, WalIsCheckpointedIntoTheDatabaseFileInTheBackground) {
  const std::string db = Path("new.db");
  const uintmax_t before = fs::file_size(db);
  const std::string value(4000, 'v');
  for (int64_t b = 0; b < 20; ++b) {
    std::vector<std::pair<int64_t, std::string>> rows;
    for (int64_t i = 0; i < 100; ++i) rows.push_back({b * 100 + i, value});
    ASSERT_OK(target_->WriteBatch(kv_, KvBatch(rows), Fence{"p", 0, 1}));
  }
  EXPECT_TRUE(testing::WaitFor([&] { return fs::file_size(db) >= 2000u * 4000u / 2; }, 30000))
      << "database file " << before << " -> " << fs::file_size(db) << " bytes, WAL "
      << fs::file_size(db + "-wal") << " bytes";
  EXPECT_EQ(Query(db, "SELECT count(*) FROM kv"), std::vector<std::string>{"2000"});
}

TEST_F(TargetTest, MetaTableCannotBeWrittenAsUserData) {
  TableSchema meta = kv_;
  meta.name = "__FERRY_META";
  Status s = target_->CreateSchema({meta});
  EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.ToString();
  s = target_->WriteBatch(meta, KvBatch({{1, "x"}}), Fence{"p", 0, 1});
  EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.ToString();
  EXPECT_TRUE(Query(Path("new.db"), "SELECT key FROM __ferry_meta").empty());
}

TEST_F(TargetTest, BatchOfWrongWidthIsRejected) {
  RowBatch batch = Batch({{int64_t{1}, Text{"a"}, Text{"extra"}}}, {0});
  EXPECT_EQ(target_->WriteBatch(kv_, batch, Fence{"p", 0, 1}).code(), Code::kInvalidArgument);
}

TEST_F(SqliteStoreTest, CopyThroughCreateSchemaReproducesTablesAndIndexes) {
  Sql(Path("old.db"),
      "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT);"
      "CREATE UNIQUE INDEX people_email ON people (email);"
      "CREATE INDEX \"people name\" ON people (name COLLATE NOCASE);"
      "CREATE INDEX if_email ON people (email, name);"
      "CREATE TABLE log (at REAL, msg);"
      "CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID;"
      "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 300) "
      "INSERT INTO people SELECT i, 'n' || i, 'e' || i || '@x' FROM s;"
      "INSERT INTO log (rowid, at, msg) VALUES (-5, 1.5, 'x'), (9, NULL, x'00ff');"
      "INSERT INTO kv VALUES (x'00', x'01'), (x'0000', NULL), ('text', 1);");
  auto source = OpenOk(Path("old.db"), StoreRole::kSource);
  auto target = OpenOk(Path("new.db"), StoreRole::kTarget);
  ASSERT_NE(source, nullptr);
  ASSERT_NE(target, nullptr);
  auto tables = source->ListTables();
  ASSERT_TRUE(tables.ok()) << tables.status().ToString();
  ASSERT_OK(target->CreateSchema(*tables));
  ASSERT_OK(target->CreateSchema(*tables));  // idempotent

  auto target_tables = target->ListTables();
  ASSERT_TRUE(target_tables.ok()) << target_tables.status().ToString();
  ASSERT_EQ(target_tables->size(), tables->size());
  for (size_t i = 0; i < tables->size(); ++i) {
    EXPECT_EQ((*target_tables)[i].name, (*tables)[i].name);
    EXPECT_EQ((*target_tables)[i].create_sql, (*tables)[i].create_sql);
    EXPECT_EQ((*target_tables)[i].index_sql, (*tables)[i].index_sql);
    EXPECT_EQ((*target_tables)[i].key_columns, (*tables)[i].key_columns);
  }

  for (const TableSchema& t : *tables) {
    uint64_t rows = 0;
    auto splits = source->PlanSplits(t, 64, &rows);
    ASSERT_TRUE(splits.ok());
    const std::vector<std::string> bounds = RangeBounds(*splits);
    for (size_t r = 0; r + 1 < bounds.size(); ++r) {
      RowBatch batch;
      std::string cursor;
      for (;;) {
        ASSERT_OK(
            source->ReadBatch(t, {t.name, bounds[r], bounds[r + 1]}, cursor, 50, 1 << 20, &batch));
        if (batch.rows() == 0) break;
        ASSERT_OK(target->WriteBatch(t, batch, Fence{"plan", r, 1}));
        cursor = batch.keys.back();
      }
    }
  }
  for (const char* sql :
       {"SELECT * FROM people ORDER BY id", "SELECT rowid, * FROM log ORDER BY rowid",
        "SELECT * FROM kv ORDER BY k"}) {
    EXPECT_EQ(Rows(Path("new.db"), sql), Rows(Path("old.db"), sql)) << sql;
  }
}

TEST_F(SqliteStoreTest, ExistingTableWithOtherColumnsIsRejected) {
  Sql(Path("new.db"), "CREATE TABLE t (a INTEGER PRIMARY KEY, z TEXT);");
  auto target = OpenOk(Path("new.db"), StoreRole::kTarget);
  ASSERT_NE(target, nullptr);
  TableSchema t;
  t.name = "t";
  t.dialect = "sqlite";
  t.columns = {{"a", "INTEGER", false}, {"b", "TEXT", false}};
  t.key_columns = {0};
  t.create_sql = "CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)";
  TableSchema other = t;
  other.name = "other";
  other.create_sql = "CREATE TABLE other (a INTEGER PRIMARY KEY, b TEXT)";
  Status s = target->CreateSchema({other, t});
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
  EXPECT_TRUE(Contains(s.message(),
                       "target table t already exists with columns (a, z) but the "
                       "source has (a, b)"));
  // One transaction: the table before the bad one was not created either.
  EXPECT_TRUE(Query(Path("new.db"), "SELECT name FROM sqlite_master WHERE name = 'other'").empty());
}

TEST_F(SqliteStoreTest, PostgresqlSchemaIsMappedToSqliteTypes) {
  auto target = OpenOk(Path("new.db"), StoreRole::kTarget);
  ASSERT_NE(target, nullptr);
  TableSchema t;
  t.name = "orders";
  t.dialect = "postgresql";
  t.columns = {{"id", "bigint", true},
               {"customer", "character varying(40)", false},
               {"payload", "bytea", false},
               {"total", "numeric(10,2)", false},
               {"score", "double precision", false},
               {"at", "timestamp with time zone", false}};
  t.key_columns = {0};
  t.create_sql = "CREATE TABLE public.orders (id bigint NOT NULL, ...)";
  t.index_sql = {"CREATE INDEX orders_customer_idx ON public.orders USING btree (customer)"};
  ASSERT_OK(target->CreateSchema({t}));
  ASSERT_OK(target->CreateSchema({t}));
  TableSchema got = Table(target.get(), "orders");
  std::vector<std::string> types;
  for (const Column& c : got.columns) types.push_back(c.type);
  EXPECT_EQ(types,
            (std::vector<std::string>{"INTEGER", "TEXT", "BLOB", "NUMERIC", "REAL", "TEXT"}));
  EXPECT_TRUE(got.columns[0].not_null);
  EXPECT_EQ(got.key_columns, std::vector<size_t>{0});
  EXPECT_EQ(got.index_sql.size(), 1u);
  EXPECT_EQ(Query(Path("new.db"),
                  "SELECT name FROM sqlite_master WHERE type = 'index' AND "
                  "tbl_name = 'orders' AND sql IS NOT NULL"),
            std::vector<std::string>{"orders_customer_idx"});
}

// ---- metadata ----

TEST_F(SqliteStoreTest, VersionAndMarkerRoundTrip) {
  auto target = OpenOk(Path("new.db"), StoreRole::kTarget);
  ASSERT_NE(target, nullptr);
  auto version = target->ReadVersion();
  ASSERT_TRUE(version.ok());
  EXPECT_FALSE(version->has_value());

  const std::string boundary = "people\0"s + EncodeKey({int64_t{42}});
  ASSERT_OK(target->WriteMarker(Marker{1, boundary}));
  ASSERT_OK(target->WriteMarker(Marker{1, boundary}));
  auto marker = target->ReadMarker();
  ASSERT_TRUE(marker.ok()) << marker.status().ToString();
  EXPECT_EQ(marker->version, std::optional<int64_t>(1));
  EXPECT_EQ(marker->boundary, boundary);

  ASSERT_OK(target->WriteMarker(Marker{std::nullopt, ""}));  // keeps the version
  marker = target->ReadMarker();
  ASSERT_TRUE(marker.ok());
  EXPECT_EQ(marker->version, std::optional<int64_t>(1));
  EXPECT_EQ(marker->boundary, "");
  ASSERT_OK(target->WriteMarker(Marker{2, ""}));
  target.reset();

  // Seen by a fresh connection, and by a read-only one.
  auto source = OpenOk(Path("new.db"), StoreRole::kSource);
  ASSERT_NE(source, nullptr);
  version = source->ReadVersion();
  ASSERT_TRUE(version.ok());
  EXPECT_EQ(*version, std::optional<int64_t>(2));
}

// The plan record a worker checks before writing (Store::RecordPlan).
TEST_F(SqliteStoreTest, PlanRecordIsKeptPerPlanAndSeenByOtherConnections) {
  auto target = OpenOk(Path("new.db"), StoreRole::kTarget);
  ASSERT_NE(target, nullptr);
  auto has = target->HasPlan("p1");
  ASSERT_TRUE(has.ok()) << has.status().ToString();
  EXPECT_FALSE(*has);
  ASSERT_OK(target->RecordPlan("p1"));
  ASSERT_OK(target->RecordPlan("p1"));  // idempotent
  EXPECT_EQ(testing::QueryInt(Path("new.db"),
                              "SELECT count(*) FROM __ferry_meta WHERE key LIKE 'plan/%'"),
            1);
  auto other = OpenOk(Path("new.db"), StoreRole::kTarget);
  ASSERT_NE(other, nullptr);
  EXPECT_TRUE(*other->HasPlan("p1"));
  EXPECT_FALSE(*other->HasPlan("p2"));
  EXPECT_FALSE(*OpenOk(Path("elsewhere.db"), StoreRole::kTarget)->HasPlan("p1"));

  // A store without a metadata table has no plan; a source refuses to record one.
  Sql(Path("old.db"), "CREATE TABLE t (k INTEGER PRIMARY KEY);");
  auto source = OpenOk(Path("old.db"), StoreRole::kSource);
  ASSERT_NE(source, nullptr);
  has = source->HasPlan("p1");
  ASSERT_TRUE(has.ok()) << has.status().ToString();
  EXPECT_FALSE(*has);
  EXPECT_EQ(source->RecordPlan("p1").code(), Code::kFailedPrecondition);
}

TEST_F(SqliteStoreTest, SourceWithoutMetaTableHasNoVersion) {
  Sql(Path("old.db"), "CREATE TABLE t (k INTEGER PRIMARY KEY);");
  auto source = OpenOk(Path("old.db"), StoreRole::kSource);
  ASSERT_NE(source, nullptr);
  auto version = source->ReadVersion();
  ASSERT_TRUE(version.ok()) << version.status().ToString();
  EXPECT_FALSE(version->has_value());
  auto marker = source->ReadMarker();
  ASSERT_TRUE(marker.ok());
  EXPECT_FALSE(marker->version.has_value());
  EXPECT_TRUE(marker->boundary.empty());
}

TEST_F(SqliteStoreTest, NonIntegerVersionIsReported) {
  Sql(Path("old.db"),
      "CREATE TABLE __ferry_meta (key TEXT PRIMARY KEY, value);"
      "INSERT INTO __ferry_meta VALUES ('version', 'two');");
  auto source = OpenOk(Path("old.db"), StoreRole::kSource);
  ASSERT_NE(source, nullptr);
  auto version = source->ReadVersion();
  ASSERT_FALSE(version.ok());
  EXPECT_EQ(version.status().code(), Code::kFailedPrecondition);
}

// ---- factory ----

TEST_F(SqliteStoreTest, OpenStoreDispatchesOnScheme) {
  auto store = OpenStore("sqlite:" + Path("new.db"), StoreRole::kTarget);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ((*store)->Describe(), "sqlite:" + Path("new.db"));

  // A postgresql:// URI reaches libpq (an invalid option fails before any
  // network I/O); the password never shows.
  auto pg = OpenStore("postgresql://u:hunter2@db/x?bogus_option=1", StoreRole::kSource);
  ASSERT_FALSE(pg.ok());
  EXPECT_EQ(pg.status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(Contains(pg.status().message(), "postgresql://u:***@db/x")) << pg.status().message();
  EXPECT_EQ(pg.status().message().find("hunter2"), std::string::npos);

  auto unknown = OpenStore("mysql://root:hunter2@db/x", StoreRole::kSource);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(unknown.status().message(),
            "unknown store URI scheme in 'mysql://root:***@db/x': use sqlite:PATH or "
            "postgresql://...");
  EXPECT_EQ(OpenStore("sqlite:", StoreRole::kTarget).status().code(), Code::kInvalidArgument);
}

// ---- direct copy ----

// The legacy store for the direct-copy tests: a rowid table with gaps and
// every storage class in its cells, a WITHOUT ROWID table whose composite key
// is full of escaping edge cases, and a rowid table with a BLOB primary key
// (read through its automatic index).
void MakeEdgeStore(const std::string& path) {
  auto db = Db::Open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  ASSERT_OK(db->Exec(
      "CREATE TABLE rid (a, b);"
      "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 600) "
      "INSERT INTO rid (rowid, a, b) SELECT i * 3 - 700, CASE i % 5 WHEN 0 THEN NULL WHEN 1 "
      "THEN i WHEN 2 THEN i * -0.5 WHEN 3 THEN hex(randomblob(i % 40)) ELSE randomblob(i % 9) "
      "END, CASE WHEN i % 7 = 0 THEN '' WHEN i % 11 = 0 THEN x'' ELSE 'r' || i END FROM s;"
      "DELETE FROM rid WHERE rowid % 4 = 0;"
      "CREATE TABLE comp (t TEXT, b BLOB, r REAL, v, PRIMARY KEY (t, b, r)) WITHOUT ROWID;"
      "CREATE TABLE bk (k BLOB PRIMARY KEY, v TEXT, n INTEGER);"
      "CREATE INDEX bk_v ON bk (v);"
      "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 300) "
      "INSERT OR IGNORE INTO bk SELECT randomblob(1 + i % 17), 'v' || (i % 13), i * "
      "9007199254740993 FROM "
      "s;"));
  FillEdgeKeys(path);
}

std::string FileBytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Batch for batch, CopyBatch gives the same rows, bytes, cursor and digest
// as ReadBatch + WriteBatch + FoldDigest of as many rows (never more than
// ReadBatch with the same limits gives, at least one while rows are left),
// and both targets end equal to the source row for row (compared by SQL,
// not by digest). The source's path needs URI escaping and its file is left
// byte-identical.
TEST_F(SqliteStoreTest, DirectCopyMatchesReadAndWriteBatchForBatch) {
  const std::string old_path = Path("old ?#%&=.db");
  MakeEdgeStore(old_path);
  const std::string before = FileBytes(old_path);
  auto source = OpenOk(old_path, StoreRole::kSource);
  auto direct = OpenOk(Path("direct.db"), StoreRole::kTarget);
  auto rows = OpenOk(Path("rows.db"), StoreRole::kTarget);
  ASSERT_TRUE(source && direct && rows);
  auto tables = source->ListTables();
  ASSERT_TRUE(tables.ok()) << tables.status().ToString();
  ASSERT_EQ(tables->size(), 3u);
  ASSERT_OK(direct->CreateSchema(*tables));
  ASSERT_OK(rows->CreateSchema(*tables));

  uint64_t batches = 0, byte_stops = 0;
  for (const TableSchema& table : *tables) {
    SCOPED_TRACE(table.name);
    ASSERT_TRUE(direct->CanCopyFrom(*source, table));
    uint64_t total = 0;
    auto splits = source->PlanSplits(table, 37, &total);
    ASSERT_TRUE(splits.ok());
    const std::vector<std::string> bounds = RangeBounds(*splits);
    uint64_t copied_rows = 0;
    for (size_t r = 0; r + 1 < bounds.size(); ++r) {
      const KeyRange range{table.name, bounds[r], bounds[r + 1]};
      const Fence fence{"plan", r + 1, 1};
      std::string cursor;
      uint64_t digest = 17;
      RowBatch batch;
      std::string scratch;
      for (;;) {
        const size_t max_bytes = 40 + 97 * (batches % 5);
        CopiedBatch got;
        got.digest = digest;
        ASSERT_OK(direct->CopyBatch(*source, table, range, cursor, 11, max_bytes, fence, &got));
        ASSERT_OK(source->ReadBatch(table, range, cursor, 11, max_bytes, &batch));
        ++batches;
        ASSERT_LE(got.rows, batch.rows());
        if (batch.rows() == 0) break;
        ASSERT_GE(got.rows, 1u);
        if (got.rows < 11 && got.bytes >= max_bytes) ++byte_stops;
        ASSERT_OK(source->ReadBatch(table, range, cursor, got.rows, max_bytes, &batch));
        ASSERT_EQ(got.rows, batch.rows());
        ASSERT_OK(rows->WriteBatch(table, batch, fence));
        EXPECT_EQ(got.bytes, batch.bytes);
        EXPECT_EQ(got.last_key, batch.keys.back());
        digest = FoldDigest(digest, batch, &scratch);
        EXPECT_EQ(got.digest, digest);
        cursor = got.last_key;
        copied_rows += got.rows;
      }
    }
    EXPECT_EQ(copied_rows, total);
    EXPECT_GT(total, 100u);
  }
  EXPECT_GT(byte_stops, 10u);  // the byte budget, not only the row limit, ended batches
  source.reset();
  direct.reset();
  rows.reset();
  EXPECT_EQ(ferry::testing::CompareSqliteStores(old_path, Path("direct.db")), "");
  EXPECT_EQ(ferry::testing::CompareSqliteStores(Path("rows.db"), Path("direct.db")), "");
  EXPECT_EQ(FileBytes(old_path), before);
}

// A projected direct copy whose byte budget ends batches (rows of 8 bytes
// to 3 KB) and whose where drops long runs of rows: batch for batch the
// same rows, cursor, bytes and digest as ReadProjected of as many rows (at
// least one while rows are left), for a select list SQLite merges into the
// copy (no function) and one it runs as a co-routine (a function), and the
// new table ends equal to the rows computed here with SQL.
TEST_F(SqliteStoreTest, ProjectedDirectCopyMatchesReadProjectedBatchForBatch) {
  Sql(Path("old.db"),
      "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, v INTEGER, payload BLOB);"
      "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 3000) "
      "INSERT INTO t SELECT i, 'n' || i, i * 7, randomblob(8 + (i * 389) % 3000) FROM s;");
  const std::string where = "id % 3 <> 0 AND NOT (id BETWEEN 1000 AND 1900)";
  const std::vector<std::pair<std::string, std::string>> selects = {
      {"id AS uid, v * 2 AS v2, payload AS body", "id, v * 2, payload"},
      {"id AS uid, upper(name) AS v2, payload AS body", "id, upper(name), payload"}};
  for (size_t i = 0; i < selects.size(); ++i) {
    SCOPED_TRACE(selects[i].first);
    const std::string target = Path(fmt::format("new{}.db", i));
    Sql(target, "CREATE TABLE t2 (uid INTEGER PRIMARY KEY, v2, body BLOB);");
    auto source = OpenOk(Path("old.db"), StoreRole::kSource);
    auto direct = OpenOk(target, StoreRole::kTarget);
    ASSERT_TRUE(source && direct);
    const TableSchema t = Table(source.get(), "t");
    const TableSchema t2 = Table(direct.get(), "t2");
    const Projection p{selects[i].first, where};
    ASSERT_TRUE(direct->CanCopyProjected(*source, t, p, t2));
    const KeyRange range{"t", "", ""};
    std::string cursor;
    uint64_t digest = 0, copied = 0, batches = 0, byte_stops = 0;
    RowBatch batch;
    std::string scratch;
    for (;;) {
      const size_t max_bytes = 2000 + 1500 * (batches % 4);
      CopiedBatch got;
      got.digest = digest;
      ASSERT_OK(direct->CopyProjected(*source, t, p, t2, range, cursor, 50, max_bytes,
                                      Fence{"plan", 1, 1}, &got));
      ASSERT_OK(source->ReadProjected(t, p, range, cursor, 50, max_bytes, &batch));
      ++batches;
      ASSERT_LE(got.rows, batch.rows());
      if (batch.rows() == 0) break;
      ASSERT_GE(got.rows, 1u);
      if (got.rows < 50 && got.bytes >= max_bytes) ++byte_stops;
      ASSERT_OK(source->ReadProjected(t, p, range, cursor, got.rows, max_bytes, &batch));
      ASSERT_EQ(got.rows, batch.rows());
      EXPECT_EQ(got.bytes, batch.bytes);
      EXPECT_EQ(got.last_key, batch.keys.back());
      digest = FoldDigest(digest, batch, &scratch);
      EXPECT_EQ(got.digest, digest);
      cursor = got.last_key;
      copied += got.rows;
    }
    EXPECT_GT(byte_stops, 20u);
    source.reset();
    direct.reset();
    const std::string want = "SELECT " + selects[i].second + " FROM o.t WHERE " + where;
    EXPECT_EQ(copied, static_cast<uint64_t>(ferry::testing::QueryInt(
                          Path("old.db"), "SELECT count(*) FROM t WHERE " + where)));
    EXPECT_EQ(ferry::testing::QueryInt(target, "SELECT count(*) FROM t2"),
              static_cast<int64_t>(copied));
    auto db = Db::Open(target, SQLITE_OPEN_READWRITE);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(db->Exec("ATTACH '" + Path("old.db") + "' AS o").ok());
    auto diff =
        db->Prepare("SELECT count(*) FROM (SELECT * FROM main.t2 EXCEPT " + want +
                    ") UNION ALL SELECT count(*) FROM (" + want + " EXCEPT SELECT * FROM main.t2)");
    ASSERT_TRUE(diff.ok());
    ASSERT_EQ(diff->Step(), SQLITE_ROW);
    EXPECT_EQ(diff->Int(0), 0);
    ASSERT_EQ(diff->Step(), SQLITE_ROW);
    EXPECT_EQ(diff->Int(0), 0);
  }
}

TEST_F(SqliteStoreTest, DirectCopyIsFencedAndRollsBackWithTheFence) {
  MakeEdgeStore(Path("old.db"));
  auto source = OpenOk(Path("old.db"), StoreRole::kSource);
  auto target = OpenOk(Path("new.db"), StoreRole::kTarget);
  ASSERT_TRUE(source && target);
  const TableSchema rid = Table(source.get(), "rid");
  ASSERT_OK(target->CreateSchema({rid}));
  ASSERT_TRUE(target->CanCopyFrom(*source, rid));
  const KeyRange all{"rid", "", ""};
  CopiedBatch first;
  ASSERT_OK(target->CopyBatch(*source, rid, all, "", 10, 1 << 20, Fence{"p", 1, 5}, &first));
  ASSERT_EQ(first.rows, 10u);

  CopiedBatch stale;
  stale.digest = 99;
  Status s =
      target->CopyBatch(*source, rid, all, first.last_key, 10, 1 << 20, Fence{"p", 1, 4}, &stale);
  EXPECT_EQ(s.code(), Code::kLeaseLost) << s.ToString();
  EXPECT_EQ(stale.rows, 0u);
  EXPECT_EQ(stale.digest, 99u);  // untouched on failure
  EXPECT_EQ(Query(Path("new.db"), "SELECT count(*) FROM rid"), std::vector<std::string>{"10"});
  EXPECT_EQ(Query(Path("new.db"), "SELECT value FROM __ferry_meta WHERE key = 'fence/p/1'"),
            std::vector<std::string>{"5"});

  // A batch that fails part-way (a NOT NULL target column) leaves neither its
  // rows nor its fence behind.
  Sql(Path("new.db"), "CREATE TABLE strict (a, b NOT NULL)");
  TableSchema strict = rid;
  strict.name = "strict";
  Sql(Path("old.db"), "CREATE TABLE strict (a, b); INSERT INTO strict VALUES (1, 'x'), (2, NULL)");
  ASSERT_TRUE(target->CanCopyFrom(*source, strict));
  CopiedBatch bad;
  s = target->CopyBatch(*source, strict, KeyRange{"strict", "", ""}, "", 10, 1 << 20,
                        Fence{"p", 2, 1}, &bad);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(Query(Path("new.db"), "SELECT count(*) FROM strict"), std::vector<std::string>{"0"});
  EXPECT_TRUE(
      Query(Path("new.db"), "SELECT value FROM __ferry_meta WHERE key = 'fence/p/2'").empty());
}

TEST_F(SqliteStoreTest, DirectCopyNeedsOneSqliteSource) {
  MakeEdgeStore(Path("old.db"));
  MakeEdgeStore(Path("other.db"));
  auto source = OpenOk(Path("old.db"), StoreRole::kSource);
  auto other = OpenOk(Path("other.db"), StoreRole::kSource);
  auto target = OpenOk(Path("new.db"), StoreRole::kTarget);
  auto second_target = OpenOk(Path("new2.db"), StoreRole::kTarget);
  ASSERT_TRUE(source && other && target && second_target);
  const TableSchema rid = Table(source.get(), "rid");
  ASSERT_OK(target->CreateSchema({rid}));
  EXPECT_FALSE(source->CanCopyFrom(*other, rid));          // a source never writes
  EXPECT_FALSE(target->CanCopyFrom(*second_target, rid));  // nor copies from a target
  EXPECT_TRUE(target->CanCopyFrom(*source, rid));
  EXPECT_FALSE(target->CanCopyFrom(*other, rid));  // one attached source per connection
  CopiedBatch out;
  EXPECT_EQ(
      target
          ->CopyBatch(*other, rid, KeyRange{"rid", "", ""}, "", 10, 1 << 20, Fence{"p", 1, 1}, &out)
          .code(),
      Code::kFailedPrecondition);
  EXPECT_EQ(Query(Path("new.db"), "SELECT count(*) FROM rid"), std::vector<std::string>{"0"});
}

// Two target stores of one process on the same file (embedded workers)
// write concurrently without a busy error: the writer mutex queues them.
TEST_F(TargetTest, ConcurrentWritersOfOneFileQueueInProcess) {
  auto second = OpenOk(Path("new.db"), StoreRole::kTarget);
  ASSERT_NE(second, nullptr);
  std::vector<Status> results(2);
  auto write = [&](SqliteStore* store, int64_t base, Status* out) {
    for (int64_t b = 0; b < 200 && out->ok(); ++b) {
      std::vector<std::pair<int64_t, std::string>> batch;
      for (int64_t i = 0; i < 20; ++i) batch.emplace_back(base + b * 20 + i, "x");
      *out = store->WriteBatch(kv_, KvBatch(batch), Fence{"p", static_cast<uint64_t>(base), 1});
    }
  };
  std::thread a(write, target_.get(), 0, &results[0]);
  std::thread b(write, second.get(), 100000, &results[1]);
  a.join();
  b.join();
  EXPECT_TRUE(results[0].ok()) << results[0].ToString();
  EXPECT_TRUE(results[1].ok()) << results[1].ToString();
  EXPECT_EQ(Query(Path("new.db"), "SELECT count(*) FROM kv"), std::vector<std::string>{"8000"});
}

TEST(RedactUriTest, RemovesPasswords) {
  EXPECT_EQ(RedactUri("postgresql://alice:s3cr3t@db.example:5432/app"),
            "postgresql://alice:***@db.example:5432/app");
  EXPECT_EQ(RedactUri("postgres://alice:p@ss/w@rd@db/app?sslmode=require"),
            "postgres://alice:***@db/app?sslmode=require");
  EXPECT_EQ(RedactUri("postgresql://alice@db/app"), "postgresql://alice@db/app");
  EXPECT_EQ(RedactUri("postgresql://db/app?user=bob&password=pw&sslmode=disable"),
            "postgresql://db/app?user=bob&password=***&sslmode=disable");
  EXPECT_EQ(RedactUri("host=db PASSWORD='a b\\' c' user=x"), "host=db PASSWORD=*** user=x");
  EXPECT_EQ(RedactUri("sqlite:/tmp/a.db"), "sqlite:/tmp/a.db");
}

}  // namespace
}  // namespace ferry
