// SqliteStore::ReadBatch: one keyset page of a range.
#include <fmt/format.h>

#include "common/key_codec.h"
#include "stores/sqlite/sqlite_internal.h"
#include "stores/table_checks.h"

namespace ferry {

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
  const bool rowid = table.rowid_key();
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

  const size_t width = table.width();
  int rc;
  while ((rc = stmt->Step()) == SQLITE_ROW) {
    for (size_t c = 0; c < width; ++c) {
      out->cells.push_back(stmt->ColumnValue(static_cast<int>(c)));
      out->bytes += PayloadBytes(out->cells.back());
    }
    const Value* row = out->cells.data() + out->cells.size() - width;
    std::string& k = out->keys.emplace_back();
    if (rowid) {
      AppendKeyElement(row[0], &k);
    } else {
      for (size_t pos : table.key_columns) AppendKeyElement(row[pos], &k);
    }
    out->bytes += k.size();
    if (out->bytes >= max_bytes) break;
  }
  stmt->Reset();  // ends the read transaction; bound values are still alive
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    out->Clear();
    out->width = width;
    return db_.Error(rc, fmt::format("read table {}", table.name));
  }
  return Status::Ok();
}

}  // namespace ferry
