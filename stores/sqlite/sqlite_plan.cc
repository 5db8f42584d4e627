// SqliteStore::PlanSplits: split points from one ordered pass over the keys.
#include <fmt/format.h>

#include "common/key_codec.h"
#include "stores/sqlite/sqlite_internal.h"
#include "stores/table_checks.h"

namespace ferry {

using sqlite_sql::KeySql;
using sqlite_sql::MakeKeySql;

Result<std::vector<std::string>> SqliteStore::PlanSplits(const TableSchema& table,
                                                         uint64_t rows_per_range, uint64_t* rows) {
  FERRY_ASSIGN_OR_RETURN(std::string alias, CheckTable(table));
  if (rows_per_range == 0) return InvalidArgument("rows_per_range must be at least 1");
  const std::string name = QuoteIdent(table.name);
  const KeySql key = MakeKeySql(table, alias);

  if (!table.rowid_key()) {
    std::string is_null, any_null;
    for (size_t pos : table.key_columns) {
      std::string col = QuoteIdent(table.columns[pos].name);
      is_null += fmt::format("{}{} IS NULL", is_null.empty() ? "" : ", ", col);
      any_null += fmt::format("{}{} IS NULL", any_null.empty() ? "" : " OR ", col);
    }
    FERRY_ASSIGN_OR_RETURN(Stmt check, db_.Prepare(fmt::format("SELECT {} FROM {} WHERE {} LIMIT 1",
                                                               is_null, name, any_null)));
    int rc = check.Step();
    if (rc == SQLITE_ROW) {
      for (size_t i = 0; i < table.key_columns.size(); ++i) {
        if (check.Int(static_cast<int>(i)) != 0) {
          return InvalidArgument(
              fmt::format("table {} has NULL in primary-key column {}; ferry cannot order it",
                          table.name, table.columns[table.key_columns[i]].name));
        }
      }
    } else if (rc != SQLITE_DONE) {
      return db_.Error(rc, fmt::format("check keys of table {}", table.name));
    }
  }

  FERRY_ASSIGN_OR_RETURN(
      Stmt scan, db_.Prepare(fmt::format("SELECT {0} FROM {1} ORDER BY {0}", key.list, name)));
  std::vector<std::string> splits;
  std::vector<Value> values(key.arity);
  uint64_t n = 0;
  int rc;
  while ((rc = scan.Step()) == SQLITE_ROW) {
    if (n != 0 && n % rows_per_range == 0) {
      for (size_t i = 0; i < key.arity; ++i) values[i] = scan.ColumnValue(static_cast<int>(i));
      splits.push_back(EncodeKey(values));
    }
    ++n;
  }
  if (rc != SQLITE_DONE) return db_.Error(rc, fmt::format("scan keys of table {}", table.name));
  if (rows) *rows = n;
  return splits;
}

}  // namespace ferry
