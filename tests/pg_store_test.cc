// PgStore against a real PostgreSQL server (FERRY_TEST_PG_URI; skipped when
// unset). Each test gets its own fresh database.
#include "stores/postgresql/pg_store.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "common/key_codec.h"
#include "stores/postgresql/pg_dialect.h"
#include "stores/sqlite/sqlite_dialect.h"
#include "stores/sqlite/sqlite_store.h"
#include "tests/test_util.h"

namespace ferry {
namespace {

using ::ferry::testing::PgAdminUri;
using ::ferry::testing::PgCanonicalRows;
using ::ferry::testing::PgExec;
using ::ferry::testing::PgQueryInt;
using ::ferry::testing::PgQueryText;
using ::ferry::testing::PgTestDb;
using namespace std::string_literals;

#define ASSERT_OK(expr)                    \
  do {                                     \
    ::ferry::Status _s = (expr);           \
    ASSERT_TRUE(_s.ok()) << _s.ToString(); \
  } while (0)

bool Contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

class PgStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (PgAdminUri().empty()) GTEST_SKIP() << "FERRY_TEST_PG_URI is not set";
    db_ = std::make_unique<PgTestDb>();
    ASSERT_TRUE(db_->ok());
  }

  std::unique_ptr<PgStore> Open(StoreRole role, const std::string& uri = "") {
    auto s = PgStore::Open(uri.empty() ? db_->uri() : uri, role);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(s).value() : nullptr;
  }

  TableSchema Table(Store* store, const std::string& name) {
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

  // Reads every range [split_{i-1}, split_i) with small batches; returns the
  // keys in read order.
  std::vector<std::string> ReadAll(Store* store, const TableSchema& t,
                                   const std::vector<std::string>& splits, size_t batch,
                                   std::vector<size_t>* range_sizes = nullptr) {
    std::vector<std::string> keys;
    for (size_t i = 0; i <= splits.size(); ++i) {
      KeyRange r{t.name, i == 0 ? "" : splits[i - 1], i == splits.size() ? "" : splits[i]};
      std::string cursor;
      size_t n = 0;
      for (;;) {
        RowBatch b;
        Status s = store->ReadBatch(t, r, cursor, batch, 1 << 30, &b);
        EXPECT_TRUE(s.ok()) << s.ToString();
        if (!s.ok() || b.rows() == 0) break;
        keys.insert(keys.end(), b.keys.begin(), b.keys.end());
        n += b.rows();
        cursor = b.keys.back();
      }
      if (range_sizes) range_sizes->push_back(n);
    }
    return keys;
  }

  std::unique_ptr<PgTestDb> db_;
};

// ---- schema ----

TEST_F(PgStoreTest, ListsTablesKeysTypesAndIndexes) {
  PgExec(db_->uri(), R"sql(
    CREATE TABLE zeta (id integer PRIMARY KEY, name varchar(40) NOT NULL, amount numeric(10,2),
                       doubled integer GENERATED ALWAYS AS (id * 2) STORED);
    CREATE INDEX zeta_name ON zeta (name);
    CREATE UNIQUE INDEX zeta_amount ON zeta (amount) WHERE amount > 0;
    CREATE TABLE "Alpha" (tenant text, seq bigint, payload bytea, PRIMARY KEY (seq, tenant));
    CREATE TABLE nokey (a int);
    CREATE TABLE "__ferry_meta" (key text PRIMARY KEY, value bigint, bytes bytea);
  )sql");
  auto store = Open(StoreRole::kSource);
  ASSERT_NE(store, nullptr);
  auto tables = store->ListTables();
  ASSERT_TRUE(tables.ok()) << tables.status().ToString();
  std::vector<std::string> names;
  for (const TableSchema& t : *tables) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"Alpha", "nokey", "zeta"}));

  const TableSchema& alpha = (*tables)[0];
  EXPECT_EQ(alpha.dialect, "postgresql");
  EXPECT_EQ(alpha.key_columns, (std::vector<size_t>{1, 0}));
  EXPECT_TRUE(alpha.columns[1].not_null);

  const TableSchema& zeta = (*tables)[2];
  ASSERT_EQ(zeta.columns.size(), 3u);  // the generated column is not listed
  EXPECT_EQ(zeta.columns[0].type, "integer");
  EXPECT_EQ(zeta.columns[1].type, "character varying(40)");
  EXPECT_EQ(zeta.columns[2].type, "numeric(10,2)");
  EXPECT_EQ(zeta.key_columns, std::vector<size_t>{0});
  ASSERT_EQ(zeta.index_sql.size(), 2u);  // not the primary key's index
  EXPECT_TRUE(Contains(zeta.index_sql[0], "CREATE UNIQUE INDEX zeta_amount")) << zeta.index_sql[0];
  EXPECT_TRUE(Contains(zeta.index_sql[1], "CREATE INDEX zeta_name")) << zeta.index_sql[1];

  EXPECT_TRUE((*tables)[1].rowid_key());
  uint64_t rows = 0;
  auto plan = store->PlanSplits((*tables)[1], 10, &rows);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(Contains(plan.status().message(), "nokey has no primary key"));
}

TEST_F(PgStoreTest, SqliteTypesMapByAffinity) {
  // SQLite declared type → neutral type (SQLite's affinity rules) → PostgreSQL type.
  auto map = [](const char* decl) { return PgDdlType(SqliteNeutralType(decl)); };
  EXPECT_EQ(map("INTEGER"), "bigint");
  EXPECT_EQ(map("tinyint"), "bigint");
  EXPECT_EQ(map("VARCHAR(20)"), "text");
  EXPECT_EQ(map("CLOB"), "text");
  EXPECT_EQ(map("BLOB"), "bytea");
  EXPECT_EQ(map(""), "bytea");
  EXPECT_EQ(map("REAL"), "double precision");
  EXPECT_EQ(map("DOUBLE PRECISION"), "double precision");
  EXPECT_EQ(map("FLOAT"), "double precision");
  EXPECT_EQ(map("DECIMAL(10,5)"), "numeric");
  EXPECT_EQ(map("BOOLEAN"), "numeric");

  testing::TempDir dir;
  const std::string legacy = dir.File("legacy.db");
  testing::ExecSql(legacy, R"sql(
    CREATE TABLE "Mixed Case" (Id INTEGER PRIMARY KEY, Name VARCHAR(20) NOT NULL, Pic BLOB,
                               Score REAL, Price DECIMAL(10,2), Anything);
    CREATE INDEX mixed_name ON "Mixed Case"(Name COLLATE NOCASE DESC, Score);
    CREATE TABLE norowid (a TEXT, b INTEGER);
  )sql");
  auto source = SqliteStore::Open(legacy, StoreRole::kSource);
  ASSERT_TRUE(source.ok());
  auto tables = (*source)->ListTables();
  ASSERT_TRUE(tables.ok());
  auto target = Open(StoreRole::kTarget);
  ASSERT_NE(target, nullptr);
  ASSERT_OK(target->CreateSchema(*tables));
  ASSERT_OK(target->CreateSchema(*tables));  // idempotent
  EXPECT_EQ(
      PgQueryText(db_->uri(),
                  "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || "
                  "CASE WHEN attnotnull THEN '!' ELSE '' END, ', ' ORDER BY attnum) "
                  "FROM pg_attribute WHERE attrelid = '\"Mixed Case\"'::regclass AND attnum > 0"),
      "Id bigint!, Name text!, Pic bytea, Score double precision, Price numeric, "
      "Anything bytea");
  EXPECT_EQ(
      PgQueryText(db_->uri(), "SELECT indexdef FROM pg_indexes WHERE indexname = 'mixed_name'"),
      "CREATE INDEX mixed_name ON public.\"Mixed Case\" USING btree (\"Name\" DESC, \"Score\")");
  // A rowid table gets a leading rowid bigint primary key.
  EXPECT_EQ(PgQueryText(db_->uri(),
                        "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute "
                        "WHERE attrelid = 'norowid'::regclass AND attnum > 0"),
            "rowid,a,b");
  // Different columns in an existing table: refused.
  TableSchema other = (*tables)[0];
  other.columns.pop_back();
  Status s = target->CreateSchema({other});
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
}

// ---- values ----

TEST_F(PgStoreTest, ValuesRoundTripEdgeCases) {
  PgExec(db_->uri(), R"sql(
    CREATE TABLE v (id bigint PRIMARY KEY, i2 smallint, i4 integer, f4 real, f8 double precision,
                    num numeric, txt text, vc varchar(10), bin bytea, flag boolean, u uuid,
                    ts timestamptz, d date, j jsonb, arr int[]);
    CREATE INDEX v_txt ON v (txt);
  )sql");
  PgExec(db_->uri(), R"sql(
    INSERT INTO v VALUES
      (1, -32768, 2147483647, 1.5, 'NaN', 12345678901234567890.123456789, '', '', '\x', true,
       'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29 12:34:56.789+02', '2024-02-29',
       '{"a": [1, 2]}', '{1,2,3}'),
      (2, NULL, NULL, NULL, 'Infinity', 'NaN', NULL, NULL, NULL, false, NULL, NULL, NULL, NULL,
       NULL),
      (3, 0, 0, '-Infinity', '-Infinity', -0.000001, 'héllo wörld ☃ 日本', 'ÄÖÜ', '\x00ff00',
       NULL, NULL, NULL, NULL, 'null', '{}'),
      (-9223372036854775808, 1, 1, 0.1, 0.1, 0, 'min', 'x', '\x01', true, NULL, NULL, NULL, NULL,
       NULL),
      (9223372036854775807, 1, 1, 1e30, 1e308, 1e-20, 'max', 'y', '\x02', true, NULL, NULL, NULL,
       NULL, NULL);
    INSERT INTO v (id, bin) VALUES (4, decode(repeat('ab', 1048576), 'hex'));
  )sql");
  auto source = Open(StoreRole::kSource);
  ASSERT_NE(source, nullptr);
  TableSchema t = Table(source.get(), "v");
  RowBatch b;
  ASSERT_OK(source->ReadBatch(t, KeyRange{"v", "", ""}, "", 100, 64 << 20, &b));
  ASSERT_EQ(b.rows(), 6u);
  const size_t w = t.width();
  auto cell = [&](size_t row, size_t col) -> const Value& { return b.cells[row * w + col]; };
  // Row order: int64 min, 1, 2, 3, 4, int64 max.
  EXPECT_EQ(cell(0, 0), Value(std::numeric_limits<int64_t>::min()));
  EXPECT_EQ(cell(5, 0), Value(std::numeric_limits<int64_t>::max()));
  EXPECT_EQ(cell(1, 1), Value(int64_t{-32768}));
  EXPECT_EQ(cell(1, 2), Value(int64_t{2147483647}));
  EXPECT_EQ(cell(1, 3), Value(1.5));
  EXPECT_TRUE(std::isnan(std::get<double>(cell(1, 4))));
  EXPECT_EQ(cell(2, 4), Value(std::numeric_limits<double>::infinity()));
  EXPECT_EQ(cell(3, 3), Value(-std::numeric_limits<double>::infinity()));
  EXPECT_EQ(cell(0, 4), Value(0.1));
  EXPECT_EQ(cell(1, 5), Value(Text{"12345678901234567890.123456789"}));
  EXPECT_EQ(cell(2, 5), Value(Text{"NaN"}));
  EXPECT_EQ(cell(1, 6), Value(Text{""}));  // empty string, not NULL
  EXPECT_EQ(cell(2, 6), Value(Null{}));
  EXPECT_EQ(cell(1, 8), Value(Blob{""}));
  EXPECT_EQ(cell(3, 8), Value(Blob{"\x00\xff\x00"s}));
  EXPECT_EQ(cell(1, 9), Value(int64_t{1}));
  EXPECT_EQ(cell(2, 9), Value(int64_t{0}));
  EXPECT_EQ(cell(1, 10), Value(Text{"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}));
  EXPECT_EQ(cell(1, 11), Value(Text{"2024-02-29 10:34:56.789+00"}));
  EXPECT_EQ(cell(1, 12), Value(Text{"2024-02-29"}));
  EXPECT_EQ(cell(3, 6), Value(Text{"héllo wörld ☃ 日本"}));
  EXPECT_EQ(std::get<Blob>(cell(4, 8)).bytes.size(), 1u << 20);

  // PostgreSQL → PostgreSQL keeps the types and every value.
  PgTestDb other;
  ASSERT_TRUE(other.ok());
  auto target = Open(StoreRole::kTarget, other.uri());
  ASSERT_NE(target, nullptr);
  ASSERT_OK(target->CreateSchema({t}));
  ASSERT_OK(target->WriteBatch(t, b, Fence{"p", 1, 1}));
  EXPECT_EQ(PgCanonicalRows(db_->uri(), "v"), PgCanonicalRows(other.uri(), "v"));
  const std::string types =
      "SELECT string_agg(format_type(atttypid, atttypmod), ',' ORDER BY attnum) FROM pg_attribute "
      "WHERE attrelid = 'v'::regclass AND attnum > 0";
  EXPECT_EQ(PgQueryText(db_->uri(), types), PgQueryText(other.uri(), types));
  EXPECT_EQ(PgQueryInt(other.uri(), "SELECT count(*) FROM v WHERE f8 = 'NaN'"), 1);
  EXPECT_EQ(PgQueryInt(other.uri(), "SELECT count(*) FROM v WHERE txt = ''"), 1);
  EXPECT_EQ(PgQueryInt(other.uri(), "SELECT count(*) FROM v WHERE txt IS NULL"), 2);
  EXPECT_EQ(PgQueryText(other.uri(), "SELECT num FROM v WHERE id = 1"),
            "12345678901234567890.123456789");
  EXPECT_EQ(PgQueryInt(other.uri(), "SELECT count(*) FROM pg_indexes WHERE indexname = 'v_txt'"),
            1);
}

TEST_F(PgStoreTest, SqliteDynamicValuesConvertOrFailClearly) {
  PgExec(db_->uri(), "CREATE TABLE t (k text PRIMARY KEY, n bigint, b bytea, x text, f float8)");
  auto target = Open(StoreRole::kTarget);
  ASSERT_NE(target, nullptr);
  TableSchema t;
  t.name = "t";
  t.dialect = "sqlite";
  t.columns = {{"k", "TEXT", false},
               {"n", "INTEGER", false},
               {"b", "BLOB", false},
               {"x", "TEXT", false},
               {"f", "REAL", false}};
  t.key_columns = {0};
  RowBatch ok;
  ok.width = 5;
  auto add = [](RowBatch* b, std::vector<Value> row) {
    b->keys.push_back(EncodeKey(&row[0], 1));
    for (Value& v : row) b->cells.push_back(std::move(v));
  };
  add(&ok, {Text{"a"}, Text{"42"}, int64_t{5}, int64_t{7}, Text{"2.5"}});
  add(&ok, {Text{"b"}, 3.0, Text{"hi"}, 0.25, int64_t{3}});
  add(&ok, {Text{"c"}, Null{}, 1.5, Blob{"raw"}, Null{}});
  ASSERT_OK(target->WriteBatch(t, ok, Fence{"p", 1, 1}));
  EXPECT_EQ(PgCanonicalRows(db_->uri(), "t"),
            (std::vector<std::string>{"t:a|i:42|b:35|t:7|r:2.5", "t:b|i:3|b:6869|t:0.25|r:3",
                                      "t:c|N|b:312e35|t:raw|N"}));

  RowBatch bad;
  bad.width = 5;
  add(&bad, {Text{"d"}, Null{}, Null{}, Null{}, Null{}});
  add(&bad, {Text{"e"}, Text{"abc"}, Null{}, Null{}, Null{}});
  Status s = target->WriteBatch(t, bad, Fence{"p", 1, 1});
  EXPECT_EQ(s.code(), Code::kPermanent) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "table t, column n, row ('e')")) << s.message();
  EXPECT_EQ(PgQueryInt(db_->uri(), "SELECT count(*) FROM t"), 3);  // nothing of the batch

  RowBatch nul;
  nul.width = 5;
  add(&nul, {Text{"f"}, Null{}, Null{}, Text{"a\0b"s}, Null{}});
  s = target->WriteBatch(t, nul, Fence{"p", 1, 1});
  EXPECT_EQ(s.code(), Code::kPermanent) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "column x")) << s.message();

  // A server-side data error (value out of range for integer) is permanent too.
  PgExec(db_->uri(), "CREATE TABLE small (k bigint PRIMARY KEY, v integer)");
  TableSchema st;
  st.name = "small";
  st.dialect = "sqlite";
  st.columns = {{"k", "INTEGER", false}, {"v", "INTEGER", false}};
  st.key_columns = {0};
  RowBatch big;
  big.width = 2;
  add(&big, {int64_t{1}, int64_t{1} << 40});
  s = target->WriteBatch(st, big, Fence{"p", 2, 1});
  EXPECT_EQ(s.code(), Code::kPermanent) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "22003")) << s.message();
  EXPECT_EQ(PgQueryInt(db_->uri(), "SELECT count(*) FROM small"), 0);
}

// ---- writes ----

class PgWriteTest : public PgStoreTest {
 protected:
  void SetUp() override {
    PgStoreTest::SetUp();
    if (IsSkipped()) return;
    t_.name = "kv";
    t_.dialect = "sqlite";
    t_.columns = {{"k", "INTEGER", true}, {"v", "TEXT", false}};
    t_.key_columns = {0};
    target_ = Open(StoreRole::kTarget);
    ASSERT_NE(target_, nullptr);
    ASSERT_OK(target_->CreateSchema({t_}));
  }
  RowBatch Batch(int64_t from, int64_t to, const std::string& v) {
    RowBatch b;
    b.width = 2;
    for (int64_t k = from; k < to; ++k) {
      Value key = k;
      b.keys.push_back(EncodeKey(&key, 1));
      b.cells.push_back(key);
      b.cells.emplace_back(Text{v + std::to_string(k)});
    }
    return b;
  }
  TableSchema t_;
  std::unique_ptr<PgStore> target_;
};

TEST_F(PgWriteTest, OlderEpochAbortsAndWritesNothing) {
  ASSERT_OK(target_->WriteBatch(t_, Batch(0, 10, "a"), Fence{"plan", 7, 5}));
  Status s = target_->WriteBatch(t_, Batch(10, 20, "b"), Fence{"plan", 7, 3});
  EXPECT_EQ(s.code(), Code::kLeaseLost) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "epoch 3 is older than recorded epoch 5")) << s.message();
  EXPECT_EQ(PgQueryInt(db_->uri(), "SELECT count(*) FROM kv"), 10);
  EXPECT_EQ(PgQueryInt(db_->uri(), "SELECT value FROM __ferry_meta WHERE key = 'fence/plan/7'"), 5);
  // Same and newer epochs write; another range is independent.
  ASSERT_OK(target_->WriteBatch(t_, Batch(10, 20, "b"), Fence{"plan", 7, 5}));
  ASSERT_OK(target_->WriteBatch(t_, Batch(20, 30, "c"), Fence{"plan", 7, 6}));
  ASSERT_OK(target_->WriteBatch(t_, Batch(30, 40, "d"), Fence{"plan", 8, 1}));
  EXPECT_EQ(PgQueryInt(db_->uri(), "SELECT count(*) FROM kv"), 40);
  EXPECT_EQ(PgQueryInt(db_->uri(), "SELECT value FROM __ferry_meta WHERE key = 'fence/plan/7'"), 6);
  // A second connection with the old epoch is fenced too.
  auto stale = Open(StoreRole::kTarget);
  ASSERT_NE(stale, nullptr);
  EXPECT_EQ(stale->WriteBatch(t_, Batch(0, 5, "z"), Fence{"plan", 7, 5}).code(), Code::kLeaseLost);
  EXPECT_EQ(PgQueryInt(db_->uri(), "SELECT count(*) FROM kv WHERE v LIKE 'z%'"), 0);
}

TEST_F(PgWriteTest, UpsertsAreIdempotent) {
  RowBatch b = Batch(0, 1000, "v");
  ASSERT_OK(target_->WriteBatch(t_, b, Fence{"p", 1, 1}));
  ASSERT_OK(target_->WriteBatch(t_, b, Fence{"p", 1, 1}));
  EXPECT_EQ(PgQueryInt(db_->uri(), "SELECT count(*) FROM kv"), 1000);
  ASSERT_OK(target_->WriteBatch(t_, Batch(500, 1500, "w"), Fence{"p", 1, 2}));
  EXPECT_EQ(PgQueryInt(db_->uri(), "SELECT count(*) FROM kv"), 1500);
  EXPECT_EQ(PgQueryText(db_->uri(), "SELECT v FROM kv WHERE k = 499"), "v499");
  EXPECT_EQ(PgQueryText(db_->uri(), "SELECT v FROM kv WHERE k = 500"), "w500");
  // Nothing stays in the staging table.
  RowBatch empty = Batch(0, 0, "");
  ASSERT_OK(target_->WriteBatch(t_, empty, Fence{"p", 1, 2}));
}

TEST_F(PgWriteTest, ConnectionLossMidBatchRollsBackAndReconnects) {
  ASSERT_OK(target_->WriteBatch(t_, Batch(0, 10, "a"), Fence{"p", 1, 1}));
  const int pid = target_->BackendPid();
  ASSERT_GT(pid, 0);
  // Killed inside the batch's transaction, after the rows were written.
  target_->SetBeforeCommitHookForTest(
      [&] { PgExec(db_->uri(), fmt::format("SELECT pg_terminate_backend({})", pid)); });
  Status s = target_->WriteBatch(t_, Batch(10, 20, "b"), Fence{"p", 1, 2});
  EXPECT_EQ(s.code(), Code::kUnavailable) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "connection lost")) << s.message();
  EXPECT_EQ(PgQueryInt(db_->uri(), "SELECT count(*) FROM kv"), 10);
  EXPECT_EQ(PgQueryInt(db_->uri(), "SELECT value FROM __ferry_meta WHERE key = 'fence/p/1'"), 1);
  target_->SetBeforeCommitHookForTest(nullptr);
  // The next call reconnects (new backend, statements and staging re-created).
  ASSERT_OK(target_->WriteBatch(t_, Batch(10, 20, "b"), Fence{"p", 1, 2}));
  EXPECT_NE(target_->BackendPid(), pid);
  EXPECT_EQ(PgQueryInt(db_->uri(), "SELECT count(*) FROM kv"), 20);

  // Between batches: the first call notices, the next one works.
  PgExec(db_->uri(), fmt::format("SELECT pg_terminate_backend({})", target_->BackendPid()));
  s = target_->WriteBatch(t_, Batch(20, 30, "c"), Fence{"p", 1, 2});
  if (!s.ok()) {
    EXPECT_EQ(s.code(), Code::kUnavailable) << s.ToString();
    ASSERT_OK(target_->WriteBatch(t_, Batch(20, 30, "c"), Fence{"p", 1, 2}));
  }
  EXPECT_EQ(PgQueryInt(db_->uri(), "SELECT count(*) FROM kv"), 30);

  // The same for reads.
  auto source = Open(StoreRole::kSource);
  ASSERT_NE(source, nullptr);
  TableSchema t = Table(source.get(), "kv");
  RowBatch b;
  ASSERT_OK(source->ReadBatch(t, KeyRange{"kv", "", ""}, "", 5, 1 << 20, &b));
  PgExec(db_->uri(), fmt::format("SELECT pg_terminate_backend({})", source->BackendPid()));
  s = source->ReadBatch(t, KeyRange{"kv", "", ""}, b.keys.back(), 5, 1 << 20, &b);
  EXPECT_EQ(s.code(), Code::kUnavailable) << s.ToString();
  ASSERT_OK(source->ReadBatch(t, KeyRange{"kv", "", ""}, EncodeKey({int64_t{4}}), 5, 1 << 20, &b));
  ASSERT_EQ(b.rows(), 5u);
  EXPECT_EQ(b.cells[0], Value(int64_t{5}));
}

// ---- order and planning ----

TEST_F(PgStoreTest, TextKeysOrderBytewiseUnderAnyCollation) {
  // A linguistic collation for the key column when the server has one (ICU),
  // so COLLATE "C" must be applied for the order to be bytewise.
  std::string coll =
      PgQueryText(db_->uri(),
                  "SELECT collname FROM pg_collation WHERE collname IN ('en-x-icu', 'und-x-icu', "
                  "'en_US.utf8', 'C.utf8') ORDER BY collname = 'en-x-icu' DESC, collname LIMIT 1");
  std::string clause = coll.empty() ? "" : " COLLATE \"" + coll + "\"";
  PgExec(db_->uri(), "CREATE TABLE words (w text" + clause +
                         " PRIMARY KEY, n int);"
                         "CREATE TABLE pairs (a text" +
                         clause + ", b text" + clause + ", PRIMARY KEY (a, b))");
  std::vector<std::string> words = {"a",  "B", "_", "Z", "é", "A", "b", "~",   " ",  "aa", "Ab",
                                    "aB", "z", "É", "e", "f", "0", "-", "a b", "ab", "Ä",  "ä"};
  std::string ins, pins;
  for (size_t i = 0; i < words.size(); ++i) {
    ins += fmt::format("{}('{}', {})", i ? "," : "", words[i], i);
    for (size_t j = 0; j < 4; ++j) {
      pins += fmt::format("{}('{}', '{}')", pins.empty() ? "" : ",", words[i], words[(i + j) % 7]);
    }
  }
  PgExec(db_->uri(), "INSERT INTO words VALUES " + ins + "; INSERT INTO pairs VALUES " + pins);
  if (coll == "en-x-icu") {  // the collation really differs from bytewise
    EXPECT_NE(
        PgQueryText(db_->uri(), "SELECT string_agg(w, ',' ORDER BY w) FROM words"),
        PgQueryText(db_->uri(), "SELECT string_agg(w, ',' ORDER BY w COLLATE \"C\") FROM words"));
  }
  auto store = Open(StoreRole::kSource);
  ASSERT_NE(store, nullptr);
  for (const std::string name : {"words", "pairs"}) {
    SCOPED_TRACE(name + " collation " + coll);
    TableSchema t = Table(store.get(), name);
    uint64_t rows = 0;
    auto splits = store->PlanSplits(t, 3, &rows);
    ASSERT_TRUE(splits.ok()) << splits.status().ToString();
    EXPECT_EQ(rows, name == "words" ? words.size() : words.size() * 4);
    EXPECT_GE(splits->size(), rows / 3 - 1);
    std::vector<std::string> keys = ReadAll(store.get(), t, *splits, 2);
    EXPECT_EQ(keys.size(), rows);                           // every row once...
    EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));  // ...in bytewise order
    EXPECT_EQ(std::set<std::string>(keys.begin(), keys.end()).size(), keys.size());
    EXPECT_TRUE(std::is_sorted(splits->begin(), splits->end()));
  }
}

TEST_F(PgStoreTest, PlannedRangesCoverEveryRowExactlyOnce) {
  PgExec(db_->uri(), R"sql(
    CREATE TABLE small (t text, n int, PRIMARY KEY (t, n));
    INSERT INTO small SELECT 'k' || (g % 17), g FROM generate_series(1, 1000) g;
    CREATE TABLE big (id bigint PRIMARY KEY, pad text);
    INSERT INTO big SELECT g * 7, 'x' FROM generate_series(1, 300000) g;
    CREATE TABLE uu (id uuid PRIMARY KEY);
    INSERT INTO uu SELECT md5(g::text)::uuid FROM generate_series(1, 500) g;
    CREATE TABLE empty (id int PRIMARY KEY);
    ANALYZE big;
  )sql");
  auto store = Open(StoreRole::kSource);
  ASSERT_NE(store, nullptr);

  {  // exact path: an ordered pass
    TableSchema t = Table(store.get(), "small");
    uint64_t rows = 0;
    auto splits = store->PlanSplits(t, 100, &rows);
    ASSERT_TRUE(splits.ok()) << splits.status().ToString();
    EXPECT_EQ(rows, 1000u);
    EXPECT_EQ(splits->size(), 9u);
    std::vector<size_t> sizes;
    auto keys = ReadAll(store.get(), t, *splits, 37, &sizes);
    EXPECT_EQ(keys.size(), 1000u);
    EXPECT_EQ(std::set<std::string>(keys.begin(), keys.end()).size(), 1000u);
    for (size_t n : sizes) EXPECT_EQ(n, 100u);
  }
  {  // sampled path: ranges within 2x of the target on uniform data
    TableSchema t = Table(store.get(), "big");
    uint64_t rows = 0;
    auto splits = store->PlanSplits(t, 20000, &rows);
    ASSERT_TRUE(splits.ok()) << splits.status().ToString();
    EXPECT_NEAR(static_cast<double>(rows), 300000.0, 30000.0);
    EXPECT_GE(splits->size(), 13u);
    EXPECT_LE(splits->size(), 15u);
    std::vector<size_t> sizes;
    auto keys = ReadAll(store.get(), t, *splits, 5000, &sizes);
    EXPECT_EQ(keys.size(), 300000u);
    EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
    EXPECT_EQ(std::set<std::string>(keys.begin(), keys.end()).size(), 300000u);
    for (size_t n : sizes) {
      EXPECT_GE(n, 10000u);
      EXPECT_LE(n, 40000u);
    }
  }
  {  // uuid keys
    TableSchema t = Table(store.get(), "uu");
    uint64_t rows = 0;
    auto splits = store->PlanSplits(t, 50, &rows);
    ASSERT_TRUE(splits.ok()) << splits.status().ToString();
    auto keys = ReadAll(store.get(), t, *splits, 13);
    EXPECT_EQ(keys.size(), 500u);
    EXPECT_EQ(std::set<std::string>(keys.begin(), keys.end()).size(), 500u);
  }
  {  // empty table: one range
    TableSchema t = Table(store.get(), "empty");
    uint64_t rows = 7;
    auto splits = store->PlanSplits(t, 10, &rows);
    ASSERT_TRUE(splits.ok()) << splits.status().ToString();
    EXPECT_TRUE(splits->empty());
    EXPECT_EQ(rows, 0u);
  }
}

// ---- metadata, roles, errors ----

TEST_F(PgStoreTest, MarkerRoundTripAndSourceCreatesNothing) {
  auto source = Open(StoreRole::kSource);
  ASSERT_NE(source, nullptr);
  auto v = source->ReadVersion();
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_FALSE(v->has_value());
  EXPECT_EQ(PgQueryText(db_->uri(), "SELECT to_regclass('__ferry_meta')::text"), "");
  EXPECT_EQ(source->WriteMarker(Marker{2, ""}).code(), Code::kFailedPrecondition);
  EXPECT_EQ(source->CreateSchema({}).code(), Code::kFailedPrecondition);

  auto target = Open(StoreRole::kTarget);
  ASSERT_NE(target, nullptr);
  const std::string boundary = "people\0"s + EncodeKey({int64_t{42}});
  ASSERT_OK(target->WriteMarker(Marker{1, boundary}));
  ASSERT_OK(target->WriteMarker(Marker{1, boundary}));
  auto m = target->ReadMarker();
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->version, std::optional<int64_t>(1));
  EXPECT_EQ(m->boundary, boundary);
  ASSERT_OK(target->WriteMarker(Marker{std::nullopt, ""}));
  ASSERT_OK(target->WriteMarker(Marker{2, ""}));
  m = source->ReadMarker();
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->version, std::optional<int64_t>(2));
  EXPECT_EQ(m->boundary, "");
  EXPECT_EQ(PgQueryInt(db_->uri(), "SELECT value FROM __ferry_meta WHERE key = 'version'"), 2);
}

// The plan record a worker checks before writing (Store::RecordPlan).
TEST_F(PgStoreTest, PlanRecordIsKeptPerPlanAndSourceRefusesToRecord) {
  auto source = Open(StoreRole::kSource);
  ASSERT_NE(source, nullptr);
  auto has = source->HasPlan("p1");
  ASSERT_TRUE(has.ok()) << has.status().ToString();
  EXPECT_FALSE(*has);
  EXPECT_EQ(source->RecordPlan("p1").code(), Code::kFailedPrecondition);

  auto target = Open(StoreRole::kTarget);
  ASSERT_NE(target, nullptr);
  ASSERT_OK(target->RecordPlan("p1"));
  ASSERT_OK(target->RecordPlan("p1"));  // idempotent
  EXPECT_EQ(PgQueryInt(db_->uri(), "SELECT count(*) FROM __ferry_meta WHERE key LIKE 'plan/%'"), 1);
  has = source->HasPlan("p1");
  ASSERT_TRUE(has.ok()) << has.status().ToString();
  EXPECT_TRUE(*has);
  EXPECT_FALSE(*target->HasPlan("p2"));
}

TEST_F(PgStoreTest, ErrorsNeverShowThePassword) {
  const std::string bad_db = testing::PgUriWithDb(PgAdminUri(), "no_such_db_ferry");
  std::string with_password = bad_db;
  with_password.insert(
      with_password.find("://") + 3 + with_password.substr(with_password.find("://") + 3).find('@'),
      ":hunter2");
  auto s = OpenStore(with_password, StoreRole::kSource);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Code::kInvalidArgument) << s.status().ToString();
  EXPECT_TRUE(Contains(s.status().message(), "no_such_db_ferry")) << s.status().message();
  EXPECT_FALSE(Contains(s.status().message(), "hunter2")) << s.status().message();
  EXPECT_TRUE(Contains(s.status().message(), ":***@")) << s.status().message();

  auto q = OpenStore("postgresql://u:hunter2@127.0.0.1:1/x?bogus_option=1", StoreRole::kSource);
  ASSERT_FALSE(q.ok());
  EXPECT_FALSE(Contains(q.status().message(), "hunter2")) << q.status().message();

  auto store = OpenStore(db_->uri(), StoreRole::kTarget);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ((*store)->Describe(), db_->uri());
  TableSchema missing;
  missing.name = "missing";
  missing.dialect = "postgresql";
  missing.columns = {{"id", "bigint", true}};
  missing.key_columns = {0};
  RowBatch b;
  b.width = 1;
  Status w = (*store)->WriteBatch(missing, b, Fence{"p", 1, 1});
  EXPECT_EQ(w.code(), Code::kNotFound) << w.ToString();
  missing.columns[0].type = "no_such_type";
  w = (*store)->CreateSchema({missing});
  EXPECT_EQ(w.code(), Code::kInvalidArgument) << w.ToString();
  EXPECT_TRUE(Contains(w.message(), "no_such_type")) << w.message();
}

TEST(PgErrorTest, SqlstatesMapToCallerActions) {
  EXPECT_EQ(PgCodeForSqlstate("08006"), Code::kUnavailable);
  EXPECT_EQ(PgCodeForSqlstate("57P01"), Code::kUnavailable);
  EXPECT_EQ(PgCodeForSqlstate("53100"), Code::kUnavailable);
  EXPECT_EQ(PgCodeForSqlstate("40001"), Code::kUnavailable);
  EXPECT_EQ(PgCodeForSqlstate("40P01"), Code::kUnavailable);
  EXPECT_EQ(PgCodeForSqlstate("23505"), Code::kPermanent);
  EXPECT_EQ(PgCodeForSqlstate("22003"), Code::kPermanent);
  EXPECT_EQ(PgCodeForSqlstate("42P01"), Code::kInvalidArgument);
  EXPECT_EQ(PgCodeForSqlstate("42501"), Code::kInvalidArgument);
  EXPECT_EQ(PgCodeForSqlstate(""), Code::kUnavailable);
}

}  // namespace
}  // namespace ferry
