// PgStore's schema side: listing tables (with the neutral model beside the
// format_type() types and index definitions) and creating them on a target.
#include <fmt/format.h>

#include <utility>

#include "stores/postgresql/pg_dialect.h"
#include "stores/postgresql/pg_internal.h"
#include "stores/postgresql/pg_store.h"
#include "stores/sql_text.h"
#include "stores/table_checks.h"

namespace ferry {
namespace {

// pg_get_indexdef() text "CREATE [UNIQUE] INDEX name ON [ONLY] s.t USING ..."
// retargeted at `qualified`, with IF NOT EXISTS.
Result<std::string> RetargetPgIndex(const std::string& sql, const std::string& table,
                                    const std::string& qualified) {
  DdlScanner sc{sql};
  auto bad = [&]() {
    return InvalidArgument(fmt::format("table {}: cannot read PostgreSQL index definition: {}",
                                       table, sql.substr(0, 160)));
  };
  if (!sc.Word("create")) return bad();
  bool unique = sc.Word("unique");
  if (!sc.Word("index")) return bad();
  if (sc.Word("if")) {
    if (!sc.Word("not") || !sc.Word("exists")) return bad();
  }
  std::string name = sc.Ident();
  if (name.empty() || !sc.Word("on")) return bad();
  (void)sc.Word("only");
  if (sc.QualifiedIdent().empty()) return bad();
  return fmt::format("CREATE {}INDEX IF NOT EXISTS {} ON {} {}", unique ? "UNIQUE " : "",
                     PgQuoteIdent(name), qualified, sc.Rest());
}

}  // namespace

Result<std::vector<TableSchema>> PgStore::ListTables() {
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  FERRY_ASSIGN_OR_RETURN(
      PgResult tables,
      Query("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "ORDER BY c.relname COLLATE \"C\"",
            "list tables", {schema_}));
  std::vector<TableSchema> out;
  for (int i = 0; i < PQntuples(tables.get()); ++i) {
    TableSchema t;
    t.name = PQgetvalue(tables.get(), i, 0);
    if (IsReservedTable(t.name)) continue;
    t.dialect = kPgDialect;
    info_.erase(t.name);
    FERRY_ASSIGN_OR_RETURN(TableInfo * info, Info(t.name));
    std::vector<std::string> defs;
    for (const ColInfo& c : info->cols) {
      t.columns.push_back(Column{c.name, c.type, c.not_null, c.neutral});
      defs.push_back(
          fmt::format("{} {}{}", PgQuoteIdent(c.name), c.type, c.not_null ? " NOT NULL" : ""));
    }
    t.key_columns = info->pk;
    if (!info->pk.empty()) {
      std::vector<std::string> pk;
      for (size_t p : info->pk) pk.push_back(PgQuoteIdent(info->cols[p].name));
      defs.push_back("PRIMARY KEY (" + Join(pk) + ")");
    }
    t.create_sql = fmt::format("CREATE TABLE {} ({})", info->qualified, Join(defs));
    FERRY_ASSIGN_OR_RETURN(
        PgResult idx, Query("SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i "
                            "JOIN pg_class ic ON ic.oid = i.indexrelid "
                            "WHERE i.indrelid = (SELECT c.oid FROM pg_class c JOIN pg_namespace n "
                            "  ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2) "
                            "AND NOT i.indisprimary ORDER BY ic.relname COLLATE \"C\"",
                            fmt::format("indexes of table {}", t.name), {schema_, t.name}));
    for (int j = 0; j < PQntuples(idx.get()); ++j) {
      t.index_sql.push_back(PQgetvalue(idx.get(), j, 0));
      t.indexes.push_back(PgNeutralIndex(t.index_sql.back()));
    }
    out.push_back(std::move(t));
  }
  return out;
}

// ---- target side ----

Status PgStore::CreateMeta() {
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  Status s = Exec(fmt::format("CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, value bigint, "
                              "bytes bytea)",
                              Qualified(kMetaTable)),
                  "create metadata table");
  if (!s.ok() && s.code() == Code::kPermanent) {
    // A concurrent CREATE TABLE IF NOT EXISTS won the race (23505).
    FERRY_RETURN_IF_ERROR(EnsureConnected());
    FERRY_ASSIGN_OR_RETURN(bool exists, MetaExists());
    if (exists) return Status::Ok();
  }
  return s;
}

Result<bool> PgStore::MetaExists() {
  FERRY_ASSIGN_OR_RETURN(
      PgResult r, Query("SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = $1 AND c.relname = $2",
                        "look up metadata table", {schema_, std::string(kMetaTable)}));
  return PQntuples(r.get()) > 0;
}

Result<std::vector<std::string>> PgStore::CreateStatements(const TableSchema& source,
                                                           const std::string& qualified) {
  FERRY_ASSIGN_OR_RETURN(const std::string alias, CheckTable(source));
  // Another engine's table: build everything from the neutral model.
  const bool native = source.dialect == kPgDialect;
  TableSchema foreign;
  if (!native) {
    FERRY_ASSIGN_OR_RETURN(foreign, NeutralSchema(source));
  }
  const TableSchema& table = native ? source : foreign;
  std::vector<std::string> out;
  if (native && table.create_verbatim) {
    out.push_back(table.create_sql);  // a spec's own create: as the operator wrote it
  } else {
    std::vector<std::string> defs, pk;
    if (!alias.empty()) {
      defs.push_back(PgQuoteIdent(alias) + " bigint NOT NULL");
      pk.push_back(PgQuoteIdent(alias));
    }
    for (const Column& c : table.columns) {
      std::string type = native ? c.type : PgDdlType(c.neutral.value_or(ColumnType{}));
      defs.push_back(
          fmt::format("{} {}{}", PgQuoteIdent(c.name), type, c.not_null ? " NOT NULL" : ""));
    }
    for (size_t p : table.key_columns) pk.push_back(PgQuoteIdent(table.columns[p].name));
    defs.push_back("PRIMARY KEY (" + Join(pk) + ")");
    out.push_back(fmt::format("CREATE TABLE {} ({})", qualified, Join(defs)));
  }
  for (size_t i = 0; i < table.index_sql.size(); ++i) {
    Result<std::string> sql = native ? RetargetPgIndex(table.index_sql[i], table.name, qualified)
                                     : PgIndexSql(table.indexes[i], table.name, qualified);
    if (!sql.ok()) return sql.status();
    out.push_back(std::move(sql).value());
  }
  return out;
}

Status PgStore::CreateOneTable(const TableSchema& table) {
  FERRY_ASSIGN_OR_RETURN(const std::string alias, CheckTable(table));
  const std::string q = Qualified(table.name);
  FERRY_ASSIGN_OR_RETURN(std::vector<std::string> statements, CreateStatements(table, q));
  const std::vector<std::string> want = CellNames(table, alias);
  FERRY_ASSIGN_OR_RETURN(
      PgResult have_r,
      Query("SELECT a.attname FROM pg_attribute a WHERE a.attrelid = (SELECT c.oid FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND "
            "c.relname = $2) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' "
            "ORDER BY a.attnum",
            fmt::format("look up table {}", table.name), {schema_, table.name}));
  if (PQntuples(have_r.get()) > 0) {
    std::vector<std::string> have;
    for (int i = 0; i < PQntuples(have_r.get()); ++i)
      have.push_back(PQgetvalue(have_r.get(), i, 0));
    FERRY_RETURN_IF_ERROR(CheckSameColumns(table.name, have, want));
  } else {
    Status s = Exec(statements[0], fmt::format("cannot create target table {}", table.name));
    if (!s.ok()) return s;
  }
  for (size_t i = 1; i < statements.size(); ++i) {
    FERRY_RETURN_IF_ERROR(Exec(
        statements[i],
        fmt::format("cannot create index of target table {} ({})", table.name, statements[i])));
  }
  return Status::Ok();
}

Status PgStore::CreateSchema(const std::vector<TableSchema>& tables) {
  if (role_ == StoreRole::kSource) return RefuseWrite();
  FERRY_RETURN_IF_ERROR(CheckNoMetaTable(tables));
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  PgTxn txn(conn_);
  FERRY_RETURN_IF_ERROR(Exec("BEGIN", "create schema"));
  txn.Started();
  FERRY_RETURN_IF_ERROR(Exec(fmt::format("CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, "
                                         "value bigint, bytes bytea)",
                                         Qualified(kMetaTable)),
                             "create metadata table"));
  for (const TableSchema& t : tables) {
    Status s = CreateOneTable(t);
    if (!s.ok()) {
      // DDL errors are bad input (unknown type, bad index), not transient.
      if (s.code() == Code::kPermanent) s = InvalidArgument(s.message());
      return s;
    }
  }
  FERRY_RETURN_IF_ERROR(Exec("COMMIT", "create schema"));
  txn.Done();
  info_.clear();
  writes_.clear();
  return Status::Ok();
}

}  // namespace ferry
