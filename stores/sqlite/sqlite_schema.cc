// SqliteStore's schema side: listing tables (with the neutral model beside
// the declared DDL) and creating them on a target.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <utility>

#include "stores/sql_text.h"
#include "stores/sqlite/sqlite_dialect.h"
#include "stores/sqlite/sqlite_internal.h"
#include "stores/table_checks.h"

namespace ferry {
namespace {

// Adds IF NOT EXISTS to a SQLite "CREATE [UNIQUE] INDEX name ..." statement.
Result<std::string> IndexIfNotExists(const std::string& sql) {
  size_t i = 0;
  auto word = [&]() {
    while (i < sql.size() && std::isspace(static_cast<unsigned char>(sql[i]))) ++i;
    size_t start = i;
    while (i < sql.size() && (std::isalnum(static_cast<unsigned char>(sql[i])) || sql[i] == '_' ||
                              sql[i] == '$' || static_cast<unsigned char>(sql[i]) >= 0x80)) {
      ++i;
    }
    return ToLower(std::string_view(sql).substr(start, i - start));
  };
  std::string w = word();
  if (w == "create") w = word();
  if (w == "unique") w = word();
  if (w != "index") {
    return InvalidArgument(fmt::format("not a CREATE INDEX statement: {}", sql.substr(0, 120)));
  }
  size_t after_index = i;
  if (word() == "if") return sql;
  return sql.substr(0, after_index) + " IF NOT EXISTS" + sql.substr(after_index);
}

// CREATE TABLE from the column list: declared types as they are (`neutral`
// false: a "sqlite" schema without create_sql), or from the neutral model
// (a schema another engine listed, completed by NeutralSchema).
std::string CreateFromColumns(const TableSchema& table, bool neutral) {
  std::string sql = fmt::format("CREATE TABLE {} (", QuoteIdent(table.name));
  for (size_t i = 0; i < table.columns.size(); ++i) {
    const Column& c = table.columns[i];
    std::string type = neutral ? SqliteDeclaredType(c.neutral.value_or(ColumnType{})) : c.type;
    sql += fmt::format("{}{}{}{}{}", i ? ", " : "", QuoteIdent(c.name), type.empty() ? "" : " ",
                       type, c.not_null ? " NOT NULL" : "");
  }
  if (!table.key_columns.empty()) {
    std::vector<std::string> pk;
    for (size_t pos : table.key_columns) pk.push_back(QuoteIdent(table.columns[pos].name));
    sql += ", PRIMARY KEY (" + Join(pk) + ")";
  }
  return sql + ")";
}

}  // namespace

Result<std::vector<TableSchema>> SqliteStore::ListTables() {
  FERRY_ASSIGN_OR_RETURN(Stmt tables,
                         db_.Prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table' "
                                     "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"));
  FERRY_ASSIGN_OR_RETURN(
      Stmt cols,
      db_.Prepare("SELECT name, type, \"notnull\", pk, hidden FROM pragma_table_xinfo(?1)"));
  FERRY_ASSIGN_OR_RETURN(Stmt indexes,
                         db_.Prepare("SELECT sql FROM sqlite_master WHERE type = 'index' "
                                     "AND tbl_name = ?1 AND sql IS NOT NULL ORDER BY name"));
  // 'shadow' marks the tables a virtual table keeps its data in (SQLite 3.37+).
  auto kind = db_.Prepare("SELECT type FROM pragma_table_list WHERE schema = 'main' AND name = ?1");
  std::vector<TableSchema> out;
  int rc;
  while ((rc = tables.Step()) == SQLITE_ROW) {
    TableSchema t;
    t.name = tables.Str(0);
    if (IsReservedTable(t.name)) continue;
    t.dialect = kSqliteDialect;
    t.create_sql = tables.Str(1);
    if (ToLower(t.create_sql.substr(0, 20)) == "create virtual table") {
      t.unsupported = "is a virtual table, which ferry does not support";
      out.push_back(std::move(t));
      continue;
    }
    if (kind.ok()) {
      kind->Bind(1, t.name);
      const bool shadow = kind->Step() == SQLITE_ROW && kind->Str(0) == "shadow";
      kind->Reset();
      if (shadow) {
        t.unsupported = "is a shadow table of a virtual table, which ferry does not copy";
        out.push_back(std::move(t));
        continue;
      }
    }

    std::vector<Column> all;  // including generated columns, for rowid shadowing
    std::vector<std::pair<int64_t, size_t>> pk;
    cols.Bind(1, t.name);
    while ((rc = cols.Step()) == SQLITE_ROW) {
      Column c{cols.Str(0), cols.Str(1), cols.Int(2) != 0, SqliteNeutralType(cols.Str(1))};
      all.push_back(c);
      if (cols.Int(4) != 0) continue;  // generated: the target recomputes it
      if (cols.Int(3) > 0) pk.emplace_back(cols.Int(3), t.columns.size());
      t.columns.push_back(std::move(c));
    }
    cols.Reset();
    if (rc != SQLITE_DONE) return db_.Error(rc, fmt::format("columns of table {}", t.name));
    std::sort(pk.begin(), pk.end());
    for (const auto& p : pk) t.key_columns.push_back(p.second);
    if (t.rowid_key()) {
      std::string alias = RowidAlias(all);
      // A generated column shadows the alias the target would use.
      if (alias.empty() || alias != RowidAlias(t.columns)) return RowidShadowedError(t.name);
    }

    indexes.Bind(1, t.name);
    while ((rc = indexes.Step()) == SQLITE_ROW) {
      t.index_sql.push_back(indexes.Str(0));
      t.indexes.push_back(SqliteNeutralIndex(t.index_sql.back(), t.columns));
    }
    indexes.Reset();
    if (rc != SQLITE_DONE) return db_.Error(rc, fmt::format("indexes of table {}", t.name));
    out.push_back(std::move(t));
  }
  if (rc != SQLITE_DONE) return db_.Error(rc, "list tables");
  return out;
}

// ---- target side ----

Result<std::vector<std::string>> SqliteStore::CreateStatements(const TableSchema& source) {
  FERRY_RETURN_IF_ERROR(CheckTable(source).status());
  // Another engine's table: build everything from the neutral model.
  const bool native = source.dialect == kSqliteDialect;
  TableSchema foreign;
  if (!native) {
    FERRY_ASSIGN_OR_RETURN(foreign, NeutralSchema(source));
  }
  const TableSchema& table = native ? source : foreign;
  std::vector<std::string> out;
  out.push_back(native && !table.create_sql.empty() ? table.create_sql
                                                    : CreateFromColumns(table, !native));
  for (size_t i = 0; i < table.index_sql.size(); ++i) {
    Result<std::string> sql = native ? IndexIfNotExists(table.index_sql[i])
                                     : SqliteIndexSql(table.indexes[i], table.name);
    if (!sql.ok()) return sql.status();
    out.push_back(std::move(sql).value());
  }
  return out;
}

Status SqliteStore::CreateOneTable(const TableSchema& table) {
  FERRY_ASSIGN_OR_RETURN(std::vector<std::string> statements, CreateStatements(table));
  FERRY_ASSIGN_OR_RETURN(
      Stmt exists, db_.Prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1 "
                               "COLLATE NOCASE"));
  exists.Bind(1, table.name);
  int rc = exists.Step();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_.Error(rc, "look up table");

  if (rc == SQLITE_ROW) {
    FERRY_ASSIGN_OR_RETURN(Stmt cols, db_.Prepare("SELECT name FROM pragma_table_info(?1)"));
    cols.Bind(1, table.name);
    std::vector<std::string> have, want;
    while ((rc = cols.Step()) == SQLITE_ROW) have.push_back(cols.Str(0));
    if (rc != SQLITE_DONE) return db_.Error(rc, fmt::format("columns of table {}", table.name));
    for (const Column& c : table.columns) want.push_back(c.name);
    FERRY_RETURN_IF_ERROR(CheckSameColumns(table.name, have, want));
  } else {
    Status s = db_.Exec(statements[0]);
    if (!s.ok()) {
      return Status(s.code() == Code::kUnavailable ? Code::kUnavailable : Code::kInvalidArgument,
                    fmt::format("cannot create target table {}: {}", table.name, s.message()));
    }
  }

  for (size_t i = 1; i < statements.size(); ++i) {
    Status s = db_.Exec(statements[i]);
    if (!s.ok()) {
      return Status(
          s.code() == Code::kUnavailable ? Code::kUnavailable : Code::kInvalidArgument,
          fmt::format("cannot create index of target table {}: {}", table.name, s.message()));
    }
  }
  return Status::Ok();
}

Status SqliteStore::CreateSchema(const std::vector<TableSchema>& tables) {
  if (role_ == StoreRole::kSource) return RefuseWrite();
  FERRY_RETURN_IF_ERROR(CheckNoMetaTable(tables));
  Txn txn(this);
  FERRY_RETURN_IF_ERROR(txn.status());
  FERRY_RETURN_IF_ERROR(CreateMetaTable());
  for (const TableSchema& t : tables) FERRY_RETURN_IF_ERROR(CreateOneTable(t));
  FERRY_RETURN_IF_ERROR(txn.Commit());
  return SyncWrites();
}

}  // namespace ferry
