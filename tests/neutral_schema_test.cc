// Tests of the neutral schema model (stores/column_type.h, stores/index_def.h):
// each engine's mapping of its own dialect to and from it
// (stores/sqlite/sqlite_dialect.h, stores/postgresql/pg_dialect.h), the
// cross-engine type table the README documents, NeutralSchema, and the
// preconditions every store shares (stores/table_checks.h). Pure functions:
// no server needed; the generated SQLite DDL runs against a real in-memory
// SQLite database.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <string>
#include <vector>

#include "common/sqlite_util.h"
#include "stores/column_type.h"
#include "stores/postgresql/pg_dialect.h"
#include "stores/sqlite/sqlite_dialect.h"
#include "stores/store.h"
#include "stores/table_checks.h"

namespace ferry {
namespace {

::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << part << "'";
}

ColumnType Kind(TypeKind kind) {
  ColumnType t;
  t.kind = kind;
  return t;
}

std::string Sqlite(std::string_view decl) { return ToString(SqliteNeutralType(decl)); }
std::string Pg(std::string_view format_type) { return ToString(PgNeutralType(format_type)); }

// ---- SQLite ----

TEST(SqliteDialectTest, DeclaredTypesMapByAffinityWithoutParameters) {
  EXPECT_EQ(Sqlite("INTEGER"), "integer");
  EXPECT_EQ(Sqlite("tinyint"), "integer");
  EXPECT_EQ(Sqlite("CHARINT"), "integer");  // INT wins over CHAR, as in SQLite
  EXPECT_EQ(Sqlite("VARCHAR(20)"), "text");
  EXPECT_EQ(Sqlite("CLOB"), "text");
  EXPECT_EQ(Sqlite("BLOB"), "blob");
  EXPECT_EQ(Sqlite(""), "any");
  EXPECT_EQ(Sqlite("REAL"), "real");
  EXPECT_EQ(Sqlite("DOUBLE PRECISION"), "real");
  EXPECT_EQ(Sqlite("FLOAT"), "real");
  EXPECT_EQ(Sqlite("DECIMAL(10,5)"), "numeric");
  EXPECT_EQ(Sqlite("BOOLEAN"), "numeric");
  EXPECT_EQ(Sqlite("DATETIME"), "numeric");
}

TEST(SqliteDialectTest, NeutralTypesBecomeSqliteDeclaredTypes) {
  EXPECT_EQ(SqliteDeclaredType(Kind(TypeKind::kAny)), "");
  EXPECT_EQ(SqliteDeclaredType(Kind(TypeKind::kBoolean)), "INTEGER");
  EXPECT_EQ(SqliteDeclaredType(Kind(TypeKind::kInteger)), "INTEGER");
  EXPECT_EQ(SqliteDeclaredType(Kind(TypeKind::kReal)), "REAL");
  EXPECT_EQ(SqliteDeclaredType(Kind(TypeKind::kNumeric)), "NUMERIC");
  EXPECT_EQ(SqliteDeclaredType(Kind(TypeKind::kBlob)), "BLOB");
  for (TypeKind k : {TypeKind::kText, TypeKind::kDate, TypeKind::kTime, TypeKind::kTimeTz,
                     TypeKind::kTimestamp, TypeKind::kTimestampTz, TypeKind::kInterval,
                     TypeKind::kUuid, TypeKind::kJson, TypeKind::kOther}) {
    EXPECT_EQ(SqliteDeclaredType(Kind(k)), "TEXT") << TypeKindName(k);
  }
}

TEST(SqliteDialectTest, IndexesParseIntoColumnsExpressionsAndPredicate) {
  const std::vector<Column> cols = {{"Name", "TEXT"}, {"Score", "REAL"}};
  IndexDef def = SqliteNeutralIndex(
      "CREATE UNIQUE INDEX IF NOT EXISTS main.mixed ON \"Mixed Case\"(name COLLATE NOCASE DESC, "
      "[score] ASC, lower(Name)) WHERE Score > 0",
      cols);
  ASSERT_TRUE(def.unsupported.empty()) << def.unsupported;
  EXPECT_EQ(def.name, "mixed");
  EXPECT_TRUE(def.unique);
  ASSERT_EQ(def.parts.size(), 3u);
  EXPECT_EQ(def.parts[0].column, "Name");  // the column's exact name
  EXPECT_TRUE(def.parts[0].descending);
  EXPECT_EQ(def.parts[1].column, "Score");
  EXPECT_FALSE(def.parts[1].descending);
  EXPECT_EQ(def.parts[2].column, "");
  EXPECT_EQ(def.parts[2].expression, "lower(Name)");
  EXPECT_EQ(def.where, "Score > 0");

  IndexDef broken = SqliteNeutralIndex("CREATE INDEX broken ON t", cols);
  EXPECT_TRUE(Contains(broken.unsupported, "cannot read")) << broken.unsupported;
}

// ---- PostgreSQL ----

TEST(PgDialectTest, FormatTypesMapToKindsWithParameters) {
  EXPECT_EQ(Pg("smallint"), "integer/16");
  EXPECT_EQ(Pg("integer"), "integer/32");
  EXPECT_EQ(Pg("bigint"), "integer/64");
  EXPECT_EQ(Pg("int8"), "integer/64");
  EXPECT_EQ(Pg("real"), "real/32");
  EXPECT_EQ(Pg("double precision"), "real/64");
  EXPECT_EQ(Pg("numeric"), "numeric");
  EXPECT_EQ(Pg("numeric(10,2)"), "numeric(10,2)");
  EXPECT_EQ(Pg("numeric(7)"), "numeric(7,0)");
  EXPECT_EQ(Pg("boolean"), "boolean");
  EXPECT_EQ(Pg("bytea"), "blob");
  EXPECT_EQ(Pg("text"), "text");
  EXPECT_EQ(Pg("character varying(40)"), "text(40)");
  EXPECT_EQ(Pg("character varying"), "text");
  EXPECT_EQ(Pg("character(3)"), "text(fixed 3)");
  EXPECT_EQ(Pg("date"), "date");
  EXPECT_EQ(Pg("time without time zone"), "time");
  EXPECT_EQ(Pg("time(2) with time zone"), "timetz(2)");
  EXPECT_EQ(Pg("timestamp without time zone"), "timestamp");
  EXPECT_EQ(Pg("timestamp(3) with time zone"), "timestamptz(3)");
  EXPECT_EQ(Pg("interval"), "interval");
  EXPECT_EQ(Pg("interval day to second"), "interval");
  EXPECT_EQ(Pg("uuid"), "uuid");
  EXPECT_EQ(Pg("jsonb"), "json");
  EXPECT_EQ(Pg("integer[]"), "other");
  EXPECT_EQ(Pg("point"), "other");
  EXPECT_EQ(Pg("int4range"), "other");
  EXPECT_EQ(Pg("public.my_enum"), "other");
}

TEST(PgDialectTest, NeutralTypesBecomePostgresqlTypes) {
  ColumnType t = Kind(TypeKind::kInteger);
  EXPECT_EQ(PgDdlType(t), "bigint");
  t.bits = 16;
  EXPECT_EQ(PgDdlType(t), "smallint");
  t.bits = 32;
  EXPECT_EQ(PgDdlType(t), "integer");
  EXPECT_EQ(PgDdlType(Kind(TypeKind::kReal)), "double precision");
  EXPECT_EQ(PgDdlType(Kind(TypeKind::kAny)), "bytea");
  EXPECT_EQ(PgDdlType(Kind(TypeKind::kBlob)), "bytea");
  EXPECT_EQ(PgDdlType(Kind(TypeKind::kNumeric)), "numeric");
  EXPECT_EQ(PgDdlType(Kind(TypeKind::kOther)), "text");
  // A type another engine describes fully round-trips through the model.
  for (const char* type :
       {"smallint", "integer", "bigint", "real", "double precision", "numeric(10,2)", "boolean",
        "bytea", "text", "character varying(40)", "character(3)", "date", "time without time zone",
        "timestamp(3) with time zone", "interval", "uuid"}) {
    EXPECT_EQ(PgDdlType(PgNeutralType(type)), type);
  }
}

TEST(PgDialectTest, IndexDefinitionsParseAndUnsupportedOnesAreMarked) {
  IndexDef partial = PgNeutralIndex(
      "CREATE UNIQUE INDEX zeta_amount ON public.zeta USING btree (amount DESC, \"Name\") "
      "WHERE (amount > (0)::numeric)");
  ASSERT_TRUE(partial.unsupported.empty()) << partial.unsupported;
  EXPECT_EQ(partial.name, "zeta_amount");
  EXPECT_TRUE(partial.unique);
  ASSERT_EQ(partial.parts.size(), 2u);
  EXPECT_EQ(partial.parts[0].column, "amount");
  EXPECT_TRUE(partial.parts[0].descending);
  EXPECT_EQ(partial.parts[1].column, "Name");
  EXPECT_EQ(partial.where, "(amount > (0)::numeric)");

  IndexDef expr = PgNeutralIndex("CREATE INDEX e ON ONLY public.t USING btree (lower(name))");
  ASSERT_EQ(expr.parts.size(), 1u);
  EXPECT_EQ(expr.parts[0].expression, "lower(name)");

  IndexDef gin = PgNeutralIndex("CREATE INDEX g ON public.t USING gin (doc)");
  EXPECT_TRUE(Contains(gin.unsupported, "gin access method")) << gin.unsupported;
  IndexDef include =
      PgNeutralIndex("CREATE INDEX i ON public.t USING btree (a) INCLUDE (b) WHERE (a > 0)");
  EXPECT_TRUE(Contains(include.unsupported, "INCLUDE (b)")) << include.unsupported;

  auto sql = PgIndexSql(gin, "t", "\"public\".\"t\"");
  ASSERT_FALSE(sql.ok());
  EXPECT_EQ(sql.status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(Contains(sql.status().message(), "table t: cannot translate index g"));
}

// ---- across engines, as README "PostgreSQL" documents ----

TEST(CrossEngineTest, SqliteColumnsGetTheDocumentedPostgresqlTypes) {
  auto map = [](const char* decl) { return PgDdlType(SqliteNeutralType(decl)); };
  EXPECT_EQ(map("INTEGER"), "bigint");
  EXPECT_EQ(map("VARCHAR(20)"), "text");
  EXPECT_EQ(map("BLOB"), "bytea");
  EXPECT_EQ(map(""), "bytea");
  EXPECT_EQ(map("FLOAT"), "double precision");
  EXPECT_EQ(map("DECIMAL(10,5)"), "numeric");
  EXPECT_EQ(map("BOOLEAN"), "numeric");
  EXPECT_EQ(map("DATE"), "numeric");
}

TEST(CrossEngineTest, PostgresqlColumnsGetTheDocumentedSqliteTypes) {
  auto map = [](const char* type) { return SqliteDeclaredType(PgNeutralType(type)); };
  for (const char* t : {"smallint", "integer", "bigint", "boolean"}) EXPECT_EQ(map(t), "INTEGER");
  for (const char* t : {"real", "double precision"}) EXPECT_EQ(map(t), "REAL");
  EXPECT_EQ(map("bytea"), "BLOB");
  EXPECT_EQ(map("numeric(10,2)"), "NUMERIC");
  // Anything else is TEXT, including types whose names merely contain
  // "int" (arrays, ranges, interval, point): their values are read as text.
  for (const char* t :
       {"text", "character varying(40)", "uuid", "date", "jsonb", "timestamp with time zone",
        "interval", "integer[]", "int4range", "point"}) {
    EXPECT_EQ(map(t), "TEXT") << t;
  }
}

// Runs each statement against a fresh in-memory SQLite database.
void RunOnSqlite(const std::vector<std::string>& statements) {
  auto db = Db::Open(":memory:", SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  for (const std::string& sql : statements) {
    Status s = db->Exec(sql);
    EXPECT_TRUE(s.ok()) << sql << ": " << s.ToString();
  }
}

TEST(CrossEngineTest, PostgresqlIndexesBecomeSqliteIndexesSqliteAccepts) {
  TableSchema t;
  t.name = "Mixed Case";
  t.dialect = kPgDialect;
  t.columns = {{"id", "bigint", true}, {"Name", "text"}, {"amount", "numeric(10,2)"}};
  t.key_columns = {0};
  t.index_sql = {
      "CREATE INDEX mixed_name ON public.\"Mixed Case\" USING btree (\"Name\" DESC, amount)",
      "CREATE UNIQUE INDEX mixed_amount ON public.\"Mixed Case\" USING btree (amount) WHERE "
      "(amount > 0)"};
  auto neutral = NeutralSchema(t);
  ASSERT_TRUE(neutral.ok()) << neutral.status().ToString();
  std::vector<std::string> ddl = {
      "CREATE TABLE \"Mixed Case\" (id INTEGER NOT NULL PRIMARY KEY, \"Name\" TEXT, amount "
      "NUMERIC)"};
  for (const IndexDef& index : neutral->indexes) {
    auto sql = SqliteIndexSql(index, t.name);
    ASSERT_TRUE(sql.ok()) << sql.status().ToString();
    ddl.push_back(*sql);
  }
  EXPECT_EQ(ddl[1],
            "CREATE INDEX IF NOT EXISTS \"mixed_name\" ON \"Mixed Case\" (\"Name\" DESC, "
            "\"amount\")");
  EXPECT_EQ(ddl[2],
            "CREATE UNIQUE INDEX IF NOT EXISTS \"mixed_amount\" ON \"Mixed Case\" (\"amount\") "
            "WHERE (amount > 0)");
  RunOnSqlite(ddl);
}

TEST(CrossEngineTest, SqliteIndexesBecomePostgresqlIndexes) {
  const std::vector<Column> cols = {{"Name", "TEXT"}, {"Score", "REAL"}};
  auto sql = PgIndexSql(
      SqliteNeutralIndex("CREATE INDEX mixed_name ON \"Mixed Case\"(Name COLLATE NOCASE DESC, "
                         "Score, abs(score)) WHERE score > 0",
                         cols),
      "Mixed Case", "\"public\".\"Mixed Case\"");
  ASSERT_TRUE(sql.ok()) << sql.status().ToString();
  EXPECT_EQ(
      *sql,
      "CREATE INDEX IF NOT EXISTS \"mixed_name\" ON \"public\".\"Mixed Case\" (\"Name\" DESC, "
      "\"Score\", (abs(score))) WHERE score > 0");
}

// ---- NeutralSchema ----

TEST(NeutralSchemaTest, FillsWhatTheListerLeftUnsetAndKeepsTheRest) {
  TableSchema t;
  t.name = "orders";
  t.dialect = kPgDialect;
  t.columns = {{"id", "bigint", true}, {"kind", "order_kind"}};
  t.columns[1].neutral = Kind(TypeKind::kInteger);  // a domain over integer, as listed
  t.index_sql = {"CREATE INDEX orders_kind ON public.orders USING btree (kind)"};
  auto n = NeutralSchema(t);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(ToString(*n->columns[0].neutral), "integer/64");
  EXPECT_EQ(ToString(*n->columns[1].neutral), "integer");
  ASSERT_EQ(n->indexes.size(), 1u);
  EXPECT_EQ(n->indexes[0].parts[0].column, "kind");

  t.dialect = "oracle";
  auto unknown = NeutralSchema(t);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(
      Contains(unknown.status().message(), "table orders: unknown schema dialect 'oracle'"));
}

// ---- shared preconditions ----

TEST(TableChecksTest, MetadataTableIsRefusedWhateverItsCase) {
  TableSchema t;
  t.name = "__FERRY_Meta";
  t.columns = {{"k", "INTEGER"}};
  t.key_columns = {0};
  auto r = CheckTable(t);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(Contains(r.status().message(), "reserved metadata table"));
  TableSchema ok = t;
  ok.name = "t";
  EXPECT_FALSE(CheckNoMetaTable({ok, t}).ok());
  EXPECT_TRUE(CheckNoMetaTable({ok}).ok());
}

TEST(TableChecksTest, KeyPositionsMustNameColumns) {
  TableSchema t;
  t.name = "t";
  t.columns = {{"a", "INTEGER"}};
  t.key_columns = {1};
  auto r = CheckTable(t);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.status().message(), "key column position 1 is out of range"));
}

TEST(TableChecksTest, RowidTablesUseTheFirstUnshadowedAlias) {
  TableSchema t;
  t.name = "t";
  t.columns = {{"ROWID", "TEXT"}, {"v", "TEXT"}};
  auto alias = CheckTable(t);
  ASSERT_TRUE(alias.ok()) << alias.status().ToString();
  EXPECT_EQ(*alias, "_rowid_");
  EXPECT_EQ(CellNames(t, *alias), (std::vector<std::string>{"_rowid_", "ROWID", "v"}));
  t.columns.push_back({"_rowid_", "TEXT"});
  t.columns.push_back({"OID", "TEXT"});
  auto shadowed = CheckTable(t);
  ASSERT_FALSE(shadowed.ok());
  EXPECT_TRUE(Contains(shadowed.status().message(), "shadow rowid, _rowid_ and oid"));

  TableSchema keyed;
  keyed.name = "k";
  keyed.columns = {{"rowid", "INTEGER"}};
  keyed.key_columns = {0};
  EXPECT_EQ(CheckTable(keyed).value(), "");  // a primary key needs no alias
}

TEST(TableChecksTest, BatchWidthMustMatchTheSchema) {
  TableSchema t;
  t.name = "t";
  t.columns = {{"v", "TEXT"}};  // rowid-keyed: two cells per row
  RowBatch b;
  b.width = 2;
  b.keys = {"k1"};
  b.cells = {int64_t{1}, Text{"x"}};
  EXPECT_TRUE(CheckBatch(t, b).ok());
  b.width = 1;
  auto r = CheckBatch(t, b);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.status().message(), "batch of width 1")) << r.status().message();
  b.width = 2;
  b.cells.pop_back();
  EXPECT_FALSE(CheckBatch(t, b).ok());
}

TEST(TableChecksTest, ExistingColumnsCompareCaseInsensitivelyInOrder) {
  EXPECT_TRUE(CheckSameColumns("t", {"A", "b"}, {"a", "B"}).ok());
  Status s = CheckSameColumns("t", {"a", "z"}, {"a", "b"});
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_TRUE(Contains(s.message(), "target table t already exists with columns (a, z)"));
  EXPECT_FALSE(CheckSameColumns("t", {"b", "a"}, {"a", "b"}).ok());
}

}  // namespace
}  // namespace ferry
