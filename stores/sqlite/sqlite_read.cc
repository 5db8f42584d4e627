// SqliteStore::ReadBatch: one keyset page of a range.
#include <fmt/format.h>

#include "common/digest.h"
#include "common/key_codec.h"
#include "stores/row_compare.h"
#include "stores/sqlite/sqlite_internal.h"
#include "stores/table_checks.h"

namespace ferry {

using sqlite_sql::AddThrough;
using sqlite_sql::AppendCell;
using sqlite_sql::CellList;
using sqlite_sql::KeySql;
using sqlite_sql::MakeKeySql;
using sqlite_sql::MakeRangeFilter;
using sqlite_sql::RangeFilter;
using sqlite_sql::WhereClause;

Status SqliteStore::ReadBatch(const TableSchema& table, const KeyRange& range,
                              std::string_view after, size_t max_rows, size_t max_bytes,
                              RowBatch* out) {
  out->Clear();
  out->width = table.width();
  FERRY_ASSIGN_OR_RETURN(std::string alias, CheckTable(table));
  if (max_rows == 0) return InvalidArgument("max_rows must be at least 1");
  const KeySql key = MakeKeySql(table, alias);
  FERRY_ASSIGN_OR_RETURN(RangeFilter filter, MakeRangeFilter(table, key, range, after));

  // SELECT [rowid,] cols FROM t WHERE key >|>= lower AND key < upper ORDER BY key LIMIT n
  FERRY_ASSIGN_OR_RETURN(
      Stmt * stmt,
      Cached(fmt::format("SELECT {} FROM {}{} ORDER BY {} LIMIT ?{}", CellList(table, alias),
                         QuoteIdent(table.name), WhereClause(filter.conditions), key.list,
                         filter.params.size() + 1)));
  int p = 1;
  for (const Value& v : filter.params) stmt->BindValue(p++, v);
  stmt->Bind(p, static_cast<int64_t>(max_rows));

  int rc;
  while ((rc = stmt->Step()) == SQLITE_ROW) {
    AppendStatementRow(*stmt, table, out);
    if (out->bytes >= max_bytes) break;
  }
  stmt->Reset();  // ends the read transaction; bound values are still alive
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    out->Clear();
    out->width = table.width();
    return db_.Error(rc, fmt::format("read table {}", table.name));
  }
  return Status::Ok();
}

}  // namespace ferry

namespace ferry {

using sqlite_sql::AddThrough;
using sqlite_sql::AppendCell;
using sqlite_sql::CellList;
using sqlite_sql::KeySql;
using sqlite_sql::MakeKeySql;
using sqlite_sql::MakeRangeFilter;
using sqlite_sql::RangeFilter;
using sqlite_sql::WhereClause;

Result<std::optional<std::string>> SqliteStore::KeyAfter(const TableSchema& table,
                                                         const KeyRange& range,
                                                         std::string_view after, uint64_t skip) {
  FERRY_ASSIGN_OR_RETURN(std::string alias, CheckTable(table));
  const KeySql key = MakeKeySql(table, alias);
  FERRY_ASSIGN_OR_RETURN(RangeFilter filter, MakeRangeFilter(table, key, range, after));
  const size_t n = filter.params.size();
  FERRY_ASSIGN_OR_RETURN(
      Stmt * stmt,
      Cached(fmt::format("SELECT {0} FROM {1}{2} ORDER BY {0} LIMIT 1 OFFSET ?{3}", key.list,
                         QuoteIdent(table.name), WhereClause(filter.conditions), n + 1)));
  int p = 1;
  for (const Value& v : filter.params) stmt->BindValue(p++, v);
  stmt->Bind(p, static_cast<int64_t>(skip));
  std::optional<std::string> out;
  int rc = stmt->Step();
  if (rc == SQLITE_ROW) {
    std::string k;
    for (int c = 0; c < static_cast<int>(key.arity); ++c) {
      AppendCell(sqlite3_column_value(stmt->get(), c), &k);
    }
    out = std::move(k);
  }
  stmt->Reset();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    return db_.Error(rc, fmt::format("find a split key in table {}", table.name));
  }
  return out;
}

Status SqliteStore::DigestRows(const TableSchema& table, const KeyRange& range,
                               std::string_view after, std::string_view through, size_t max_rows,
                               DigestMode mode, RowsDigest* out) {
  *out = RowsDigest{};
  FERRY_ASSIGN_OR_RETURN(std::string alias, CheckTable(table));
  if (max_rows == 0) return Status::Ok();
  const KeySql key = MakeKeySql(table, alias);
  FERRY_ASSIGN_OR_RETURN(RangeFilter filter, MakeRangeFilter(table, key, range, after));
  FERRY_RETURN_IF_ERROR(AddThrough(table, key, through, &filter));
  FERRY_ASSIGN_OR_RETURN(
      Stmt * stmt,
      Cached(fmt::format("SELECT {} FROM {}{} ORDER BY {} LIMIT ?{}", CellList(table, alias),
                         QuoteIdent(table.name), WhereClause(filter.conditions), key.list,
                         filter.params.size() + 1)));
  int p = 1;
  for (const Value& v : filter.params) stmt->BindValue(p++, v);
  stmt->Bind(p, static_cast<int64_t>(std::min<size_t>(max_rows, INT64_MAX)));
  std::vector<int> key_cells;
  if (table.rowid_key()) {
    key_cells = {0};
  } else {
    for (size_t pos : table.key_columns) key_cells.push_back(static_cast<int>(pos));
  }
  const int width = static_cast<int>(table.width());
  std::string row;
  int rc;
  sqlite3_stmt* st = stmt->get();
  while ((rc = stmt->Step()) == SQLITE_ROW) {
    row.clear();
    for (int c : key_cells) AppendCell(sqlite3_column_value(st, c), &row);
    const size_t key_len = row.size();
    for (int c = 0; c < width; ++c) {
      if (mode == DigestMode::kExact) {
        sqlite_sql::AppendExactCell(sqlite3_column_value(st, c), &row);
      } else {
        sqlite_sql::AppendValueCell(sqlite3_column_value(st, c), &row);
      }
    }
    out->digest = FoldRowBytes(out->digest, row);
    out->rows++;
    out->last_key.assign(row, 0, key_len);
  }
  stmt->Reset();
  if (rc != SQLITE_DONE) {
    *out = RowsDigest{};
    return db_.Error(rc, fmt::format("digest rows of table {}", table.name));
  }
  return Status::Ok();
}

}  // namespace ferry
