// SqliteStore's side of migration specs: projections (DescribeProjection,
// ReadProjected), the rejects table, and a spec's `create` parsed in an
// in-memory database (DescribeCreate) or the DDL of a derived table
// (CreateStatements). The projected direct copy is in sqlite_copy.cc.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "common/key_codec.h"
#include "stores/sql_text.h"
#include "stores/sqlite/sqlite_dialect.h"
#include "stores/sqlite/sqlite_internal.h"
#include "stores/table_checks.h"

namespace ferry {

using sqlite_sql::CellList;
using sqlite_sql::KeySql;
using sqlite_sql::MakeKeySql;
using sqlite_sql::MakeRangeFilter;
using sqlite_sql::ProjectionSelect;
using sqlite_sql::RangeFilter;

namespace {

// The engine's complaint about a select or where, as one line.
Status ProjectionError(const TableSchema& table, const std::string& message) {
  return InvalidArgument(
      fmt::format("the legacy store refuses it as a query of table {}: {}", table.name, message));
}

// The type of a select item written `CAST(<expr> AS <type>) [[AS] alias]`,
// else "": how a computed column gets a declared type (SQLite declares none
// for an expression).
std::string CastType(std::string_view item) {
  DdlScanner sc{item};
  std::string_view body;
  if (!sc.Word("cast") || !sc.Parenthesized(&body)) return "";
  // The last top-level AS of the body.
  SqlNesting nest;
  size_t as = std::string_view::npos;
  for (size_t i = 0; i < body.size(); ++i) {
    const bool outside = nest.Feed(body[i]);
    if (!outside || nest.depth != 0 || i + 2 > body.size()) continue;
    const bool word_start = i == 0 || std::isspace(static_cast<unsigned char>(body[i - 1]));
    const bool word_end =
        i + 2 == body.size() || std::isspace(static_cast<unsigned char>(body[i + 2]));
    if (word_start && word_end && IEquals(body.substr(i, 2), "as")) as = i;
  }
  if (as == std::string_view::npos) return "";
  return std::string(TrimWs(body.substr(as + 2)));
}

// Column `c` of the current row into *v, reusing a string buffer *v has
// (a batch's cells are overwritten batch after batch: no allocation per
// cell once they have grown).
void ReadCell(sqlite3_stmt* s, int c, Value* v) {
  switch (sqlite3_column_type(s, c)) {
    case SQLITE_INTEGER:
      *v = static_cast<int64_t>(sqlite3_column_int64(s, c));
      return;
    case SQLITE_FLOAT:
      *v = sqlite3_column_double(s, c);
      return;
    case SQLITE_TEXT: {
      const char* p = reinterpret_cast<const char*>(sqlite3_column_text(s, c));
      const size_t n = static_cast<size_t>(sqlite3_column_bytes(s, c));
      if (auto* t = std::get_if<Text>(v)) {
        t->bytes.assign(p, n);
      } else {
        *v = Text{std::string(p, n)};
      }
      return;
    }
    case SQLITE_BLOB: {
      const char* p = static_cast<const char*>(sqlite3_column_blob(s, c));
      const size_t n = static_cast<size_t>(sqlite3_column_bytes(s, c));
      if (auto* b = std::get_if<Blob>(v)) {
        b->bytes.assign(p ? p : "", n);
      } else {
        *v = Blob{std::string(p ? p : "", n)};
      }
      return;
    }
    default:
      *v = Null{};
  }
}

}  // namespace

Result<std::vector<ProjectedColumn>> SqliteStore::DescribeProjection(const TableSchema& table,
                                                                     const Projection& p) {
  FERRY_ASSIGN_OR_RETURN(std::string alias, CheckTable(table));
  const KeySql key = MakeKeySql(table, alias);
  const std::string sql = ProjectionSelect(table, alias, p, QuoteIdent(table.name), {});
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db_.get(), sql.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
    std::string msg = db_.ErrorMessage();
    sqlite3_finalize(raw);
    return ProjectionError(table, msg);
  }
  const std::vector<std::string> cells = CellNames(table, alias);
  std::vector<ProjectedColumn> out;
  const int n = sqlite3_column_count(raw);
  // The select's items, when they match the result columns one to one (no
  // `*` among them), for CastType.
  std::vector<std::string> items;
  if (!p.star()) items = SplitTopLevel(p.select);
  if (items.size() != static_cast<size_t>(n) - key.arity) items.clear();
  for (int i = static_cast<int>(key.arity); i < n; ++i) {
    ProjectedColumn c;
    c.name = sqlite3_column_name(raw, i) ? sqlite3_column_name(raw, i) : "";
    const char* origin_table = sqlite3_column_table_name(raw, i);
    const char* origin = sqlite3_column_origin_name(raw, i);
    if (origin_table && origin && IEquals(origin_table, table.name)) {
      if (IEquals(origin, "rowid")) {
        if (table.rowid_key()) c.source_cell = 0;
      } else {
        for (size_t k = 0; k < cells.size(); ++k) {
          if (cells[k] == origin) c.source_cell = static_cast<int>(k);
        }
      }
    }
    if (c.source_cell < 0 && !items.empty()) {
      c.type = CastType(items[static_cast<size_t>(i) - key.arity]);
    }
    if (c.source_cell >= 0) {
      const size_t col = table.rowid_key() ? static_cast<size_t>(c.source_cell) - 1
                                           : static_cast<size_t>(c.source_cell);
      if (table.rowid_key() && c.source_cell == 0) {
        c.type = "INTEGER";
        c.not_null = true;
      } else {
        c.type = table.columns[col].type;
        c.not_null = table.columns[col].not_null;
      }
    }
    out.push_back(std::move(c));
  }
  sqlite3_finalize(raw);
  if (out.empty()) return ProjectionError(table, "the select list has no columns");
  return out;
}

Status SqliteStore::ReadProjected(const TableSchema& table, const Projection& p,
                                  const KeyRange& range, std::string_view after, size_t max_rows,
                                  size_t max_bytes, RowBatch* out) {
  if (p.identity()) return ReadBatch(table, range, after, max_rows, max_bytes, out);
  // The cells and keys of the last batch are overwritten in place.
  out->bytes = 0;
  FERRY_ASSIGN_OR_RETURN(std::string alias, CheckTable(table));
  if (max_rows == 0) return InvalidArgument("max_rows must be at least 1");
  const KeySql key = MakeKeySql(table, alias, QuoteIdent(table.name));
  FERRY_ASSIGN_OR_RETURN(RangeFilter filter, MakeRangeFilter(table, key, range, after));
  FERRY_ASSIGN_OR_RETURN(
      Stmt * stmt, Cached(fmt::format(
                       "{} ORDER BY {} LIMIT ?{}",
                       ProjectionSelect(table, alias, p, QuoteIdent(table.name), filter.conditions),
                       key.list, filter.params.size() + 1)));
  int p_at = 1;
  for (const Value& v : filter.params) stmt->BindValue(p_at++, v);
  stmt->Bind(p_at, static_cast<int64_t>(max_rows));

  sqlite3_stmt* s = stmt->get();
  const size_t total = static_cast<size_t>(sqlite3_column_count(s));
  const size_t width = total - key.arity;
  out->width = width;
  key_values_.resize(key.arity);
  size_t rows = 0;
  int rc;
  while ((rc = stmt->Step()) == SQLITE_ROW) {
    for (size_t k = 0; k < key.arity; ++k) ReadCell(s, static_cast<int>(k), &key_values_[k]);
    if (out->cells.size() < (rows + 1) * width) out->cells.resize((rows + 1) * width);
    Value* row = out->cells.data() + rows * width;
    for (size_t c = 0; c < width; ++c) {
      ReadCell(s, static_cast<int>(key.arity + c), &row[c]);
      out->bytes += PayloadBytes(row[c]);
    }
    if (out->keys.size() <= rows) out->keys.emplace_back();
    std::string& k = out->keys[rows];
    k.clear();
    for (const Value& v : key_values_) AppendKeyElement(v, &k);
    out->bytes += k.size();
    ++rows;
    if (out->bytes >= max_bytes) break;
  }
  out->cells.resize(rows * width);
  out->keys.resize(rows);
  stmt->Reset();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    out->Clear();
    out->width = width;
    return db_.Error(rc, fmt::format("read table {} through the spec's select", table.name));
  }
  return Status::Ok();
}

// ---- rejects ----

Status SqliteStore::CreateRejectsTable() {
  if (role_ == StoreRole::kSource) return RefuseWrite();
  Txn txn(this);
  FERRY_RETURN_IF_ERROR(txn.status());
  FERRY_RETURN_IF_ERROR(db_.Exec(fmt::format(
      "CREATE TABLE IF NOT EXISTS {} (table_name TEXT NOT NULL, source_key TEXT NOT NULL, "
      "reason TEXT NOT NULL, PRIMARY KEY (table_name, source_key))",
      QuoteIdent(kRejectsTable))));
  FERRY_RETURN_IF_ERROR(txn.Commit());
  return SyncWrites();
}

Status SqliteStore::WriteRejects(const std::vector<Reject>& rejects, const Fence& fence) {
  if (role_ == StoreRole::kSource) return RefuseWrite();
  Txn txn(this);
  FERRY_RETURN_IF_ERROR(txn.status());
  FERRY_RETURN_IF_ERROR(CheckAndRecordFence(fence));
  FERRY_RETURN_IF_ERROR(db_.Exec(fmt::format(
      "CREATE TABLE IF NOT EXISTS {} (table_name TEXT NOT NULL, source_key TEXT NOT NULL, "
      "reason TEXT NOT NULL, PRIMARY KEY (table_name, source_key))",
      QuoteIdent(kRejectsTable))));
  FERRY_ASSIGN_OR_RETURN(
      Stmt * insert,
      Cached(fmt::format("INSERT OR REPLACE INTO {} (table_name, source_key, reason) "
                         "VALUES (?1, ?2, ?3)",
                         QuoteIdent(kRejectsTable))));
  for (const Reject& r : rejects) {
    insert->Bind(1, r.table);
    insert->Bind(2, r.source_key);
    insert->Bind(3, r.reason);
    const int rc = insert->Step();
    insert->Reset();
    if (rc != SQLITE_DONE)
      return db_.Error(rc, fmt::format("record a rejected row of {}", r.table));
  }
  return txn.Commit();
}

Result<std::vector<Reject>> SqliteStore::ReadRejects(const std::string& table, size_t limit) {
  std::vector<Reject> out;
  FERRY_ASSIGN_OR_RETURN(Stmt exists,
                         db_.Prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                     "name = ?1"));
  exists.Bind(1, std::string_view(kRejectsTable));
  int rc = exists.Step();
  if (rc == SQLITE_DONE) return out;
  if (rc != SQLITE_ROW) return db_.Error(rc, "look up the rejects table");
  FERRY_ASSIGN_OR_RETURN(
      Stmt s, db_.Prepare(fmt::format(
                  "SELECT table_name, source_key, reason FROM {} WHERE ?1 = '' OR table_name = ?1 "
                  "ORDER BY table_name, source_key LIMIT ?2",
                  QuoteIdent(kRejectsTable))));
  s.Bind(1, table);
  s.Bind(2, static_cast<int64_t>(std::min<size_t>(limit, INT64_MAX)));
  while ((rc = s.Step()) == SQLITE_ROW) out.push_back(Reject{s.Str(0), s.Str(1), s.Str(2)});
  if (rc != SQLITE_DONE) return db_.Error(rc, "read the rejects table");
  return out;
}

// ---- a spec's create, and derived tables ----

Result<TableSchema> SqliteStore::DescribeCreate(const std::string& create_sql) {
  FERRY_ASSIGN_OR_RETURN(Db db, Db::Open(":memory:", SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
  Status s = db.Exec(create_sql);
  if (!s.ok()) {
    return InvalidArgument(fmt::format("the new store (SQLite) refuses it: {}", db.ErrorMessage()));
  }
  FERRY_ASSIGN_OR_RETURN(
      Stmt tables, db.Prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT "
                              "LIKE 'sqlite\\_%' ESCAPE '\\'"));
  std::vector<std::string> names;
  while (tables.Step() == SQLITE_ROW) names.push_back(tables.Str(0));
  if (names.size() != 1) {
    return InvalidArgument(
        fmt::format("makes {} tables in SQLite, not one", static_cast<int>(names.size())));
  }
  TableSchema t;
  t.name = names[0];
  t.dialect = kSqliteDialect;
  t.create_sql = create_sql;
  t.create_verbatim = true;
  FERRY_ASSIGN_OR_RETURN(
      Stmt cols,
      db.Prepare("SELECT name, type, \"notnull\", pk, hidden FROM pragma_table_xinfo(?1)"));
  cols.Bind(1, t.name);
  std::vector<std::pair<int64_t, size_t>> pk;
  int rc;
  while ((rc = cols.Step()) == SQLITE_ROW) {
    if (cols.Int(4) != 0) continue;  // generated: SQLite computes it
    if (cols.Int(3) > 0) pk.emplace_back(cols.Int(3), t.columns.size());
    t.columns.emplace_back(cols.Str(0), cols.Str(1), cols.Int(2) != 0,
                           SqliteNeutralType(cols.Str(1)));
  }
  if (rc != SQLITE_DONE) return db.Error(rc, "columns of the created table");
  std::sort(pk.begin(), pk.end());
  for (const auto& p : pk) t.key_columns.push_back(p.second);
  return t;
}

}  // namespace ferry
