// SqliteStore::PlanSplits: split points from one ordered pass over the keys
// inside SQLite, or, for a dense INTEGER PRIMARY KEY, from its count, min and
// max alone.
#include <fmt/format.h>

#include "common/key_codec.h"
#include "stores/sqlite/sqlite_internal.h"
#include "stores/table_checks.h"

namespace ferry {

using sqlite_sql::KeySql;
using sqlite_sql::MakeKeySql;
using sqlite_sql::MakeRangeFilter;
using sqlite_sql::RangeFilter;
using sqlite_sql::WhereClause;

namespace {

// True when `key` (one column) is the table's rowid: SQLite then looks a
// value up in the table's own b-tree ("USING INTEGER PRIMARY KEY"). Such a
// key holds only distinct integers.
bool IsRowid(Db& db, const std::string& table, const std::string& key) {
  auto plan =
      db.Prepare(fmt::format("EXPLAIN QUERY PLAN SELECT {1} FROM {0} WHERE {1} = ?1", table, key));
  if (!plan.ok()) return false;
  bool rowid = false;
  while (plan->Step() == SQLITE_ROW) {
    if (plan->Str(3).find("USING INTEGER PRIMARY KEY") != std::string::npos) rowid = true;
  }
  return rowid;
}

}  // namespace

// With n keys min..max and n == max - min + 1, the key at position i of the
// ordered walk is min + i: the splits below are the ones the walk would pick,
// found in three lookups (count(*) reads the smallest b-tree, min and max
// one page path each) instead of a pass over every key.
Result<bool> SqliteStore::PlanDenseRowid(const TableSchema& table, const std::string& key,
                                         uint64_t rows_per_range, uint64_t* rows,
                                         std::vector<std::string>* splits) {
  const std::string name = QuoteIdent(table.name);
  if (!IsRowid(db_, name, key)) return false;
  FERRY_ASSIGN_OR_RETURN(
      Stmt q, db_.Prepare(fmt::format("SELECT (SELECT count(*) FROM {0}), (SELECT min({1}) FROM "
                                      "{0}), (SELECT max({1}) FROM {0})",
                                      name, key)));
  int rc = q.Step();
  if (rc != SQLITE_ROW) return db_.Error(rc, fmt::format("count keys of table {}", table.name));
  const int64_t n = q.Int(0);
  if (n == 0) {
    if (rows) *rows = 0;
    return true;
  }
  if (q.IsNull(1) || q.IsNull(2)) return false;
  const __int128 lo = q.Int(1), hi = q.Int(2);
  if (hi - lo + 1 != n) return false;
  for (uint64_t i = rows_per_range; i < static_cast<uint64_t>(n); i += rows_per_range) {
    splits->push_back(EncodeKey({Value(static_cast<int64_t>(lo + static_cast<__int128>(i)))}));
  }
  if (rows) *rows = static_cast<uint64_t>(n);
  return true;
}

Result<std::vector<std::string>> SqliteStore::PlanSplits(const TableSchema& table,
                                                         uint64_t rows_per_range, uint64_t* rows) {
  FERRY_ASSIGN_OR_RETURN(std::string alias, CheckTable(table));
  if (rows_per_range == 0) return InvalidArgument("rows_per_range must be at least 1");
  const std::string name = QuoteIdent(table.name);
  const KeySql key = MakeKeySql(table, alias);
  std::vector<std::string> splits;
  if (key.arity == 1) {
    FERRY_ASSIGN_OR_RETURN(bool dense,
                           PlanDenseRowid(table, key.list, rows_per_range, rows, &splits));
    if (dense) return splits;
    splits.clear();
  }

  if (!table.rowid_key()) {
    // A declared key may hold NULL in a rowid table (an SQLite quirk):
    // ferry cannot order such rows.
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

  // One ordered pass over the keys, inside SQLite: split i is the key
  // rows_per_range rows (the OFFSET, skipped without reading the key's
  // cells) after split i - 1; the rows after the last split are counted.
  std::string from;  // the last split; "" = the table's start
  Stmt first, next;  // prepared once: from the start, from a split
  int64_t tail = 0;
  for (;;) {
    FERRY_ASSIGN_OR_RETURN(RangeFilter f,
                           MakeRangeFilter(table, key, KeyRange{table.name, from, ""}, ""));
    const size_t n = f.params.size();
    Stmt& step = from.empty() ? first : next;
    if (!step) {
      FERRY_ASSIGN_OR_RETURN(
          step, db_.Prepare(fmt::format("SELECT {0} FROM {1}{2} ORDER BY {0} LIMIT 1 OFFSET ?{3}",
                                        key.list, name, WhereClause(f.conditions), n + 1)));
    }
    step.Reset();
    for (size_t i = 0; i < n; ++i) step.BindValue(static_cast<int>(i + 1), f.params[i]);
    step.Bind(static_cast<int>(n + 1), static_cast<int64_t>(rows_per_range));
    int rc = step.Step();
    if (rc == SQLITE_ROW) {
      std::vector<Value> values(key.arity);
      for (size_t i = 0; i < key.arity; ++i) values[i] = step.ColumnValue(static_cast<int>(i));
      from = EncodeKey(values);
      splits.push_back(from);
      continue;
    }
    if (rc != SQLITE_DONE) return db_.Error(rc, fmt::format("scan keys of table {}", table.name));
    FERRY_ASSIGN_OR_RETURN(
        Stmt count, db_.Prepare(fmt::format("SELECT count(*) FROM (SELECT 1 FROM {}{})", name,
                                            WhereClause(f.conditions))));
    for (size_t i = 0; i < n; ++i) count.BindValue(static_cast<int>(i + 1), f.params[i]);
    rc = count.Step();
    if (rc != SQLITE_ROW) return db_.Error(rc, fmt::format("count keys of table {}", table.name));
    tail = count.Int(0);
    break;
  }
  if (rows) *rows = splits.size() * rows_per_range + static_cast<uint64_t>(tail);
  return splits;
}

}  // namespace ferry
