// Internals shared by the files that implement SqliteStore
// (stores/sqlite/sqlite_store.h): the per-file shared state, the write
// transaction, and the SQL pieces that select a key range. Not for use
// outside stores/sqlite/.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/key_codec.h"
#include "common/mutex.h"
#include "common/sqlite_util.h"
#include "common/status.h"
#include "common/value.h"
#include "common/wal_checkpointer.h"
#include "stores/sqlite/sqlite_store.h"
#include "stores/store.h"

namespace ferry {

// What the target stores of one process share per SQLite file (by canonical
// path). SQLite has one writer per file: stores of the same process
// (embedded workers) queue on `writer` for it instead of polling the file
// lock, so the lock passes from one transaction to the next without sleeps.
// `checkpointer` runs the file's WAL checkpoints on its own thread, so a
// commit never waits for one while other writers queue behind it.
struct SqliteStore::SharedFile {
  explicit SharedFile(const std::string& path) : checkpointer(path) {}
  // Held for a whole write transaction (it guards the file's one writer
  // slot, not memory: nothing is GUARDED_BY it).
  Mutex writer;
  WalCheckpointer checkpointer;
};

// ---- transactions ----

// Takes the file's in-process writer mutex (targets), then BEGIN IMMEDIATE
// on construction (check ok()); ROLLBACK on destruction unless Commit()
// succeeded; the mutex is held until destruction.
class SqliteStore::Txn {
 public:
  explicit Txn(SqliteStore* store) : store_(store) {
    if (store_->shared_) writer_ = std::unique_lock<Mutex>(store_->shared_->writer);
    status_ = Run("BEGIN IMMEDIATE");
    active_ = status_.ok();
  }
  ~Txn() {
    if (active_) (void)Run("ROLLBACK");
  }
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;

  const Status& status() const { return status_; }
  Status Commit() {
    Status s = Run("COMMIT");
    if (s.ok()) {
      active_ = false;
      store_->unsynced_ = true;
    }
    return s;
  }

 private:
  Status Run(const char* sql) {
    FERRY_ASSIGN_OR_RETURN(Stmt * stmt, store_->Cached(sql));
    int rc = stmt->Step();
    stmt->Reset();
    if (rc != SQLITE_DONE) return store_->db_.Error(rc, sql);
    return Status::Ok();
  }

  SqliteStore* store_;
  std::unique_lock<Mutex> writer_;  // released after the destructor's ROLLBACK
  Status status_;
  bool active_ = false;
};

// ---- reading rows ----

// Appends the current row of `stmt` — the cells of `table`, in CellList
// order — to *out with its encoded key (the rowid, or the key columns), and
// counts their bytes.
inline void AppendStatementRow(const Stmt& stmt, const TableSchema& table, RowBatch* out) {
  const size_t width = table.width();
  for (size_t c = 0; c < width; ++c) {
    out->cells.push_back(stmt.ColumnValue(static_cast<int>(c)));
    out->bytes += PayloadBytes(out->cells.back());
  }
  const Value* row = out->cells.data() + out->cells.size() - width;
  std::string& k = out->keys.emplace_back();
  if (table.rowid_key()) {
    AppendKeyElement(row[0], &k);
  } else {
    for (size_t pos : table.key_columns) AppendKeyElement(row[pos], &k);
  }
  out->bytes += k.size();
}

namespace sqlite_sql {

// "(?a,?b)" or "?a" for one column; params numbered from `first`.
std::string Params(size_t n, size_t first);

// The key as a SQL expression list: "k" or ("k1","k2"), and the bare list.
struct KeySql {
  std::string tuple;  // for comparisons
  std::string list;   // for SELECT / ORDER BY
  size_t arity = 0;
};

// The key of `table` (its rowid as `rowid_alias` when it has no primary key).
// With `qualifier` (already quoted, e.g. "\"users\""), each column is
// written qualifier.column: a projection's select list may give its results
// the key columns' names.
KeySql MakeKeySql(const TableSchema& table, const std::string& rowid_alias,
                  const std::string& qualifier = "");

// The projection's SELECT without ORDER BY and LIMIT: the key columns
// (qualified), then the select list (CellList for "*"), FROM `from` (the
// table, possibly schema-qualified) AS the table's own name, WHERE the
// range `conditions` AND the projection's where on lines of its own.
std::string ProjectionSelect(const TableSchema& table, const std::string& rowid_alias,
                             const Projection& p, const std::string& from,
                             const std::vector<std::string>& conditions);

// The names of every cell of a row: [rowid alias,] columns, quoted.
std::string CellList(const TableSchema& table, const std::string& rowid_alias);

// The conditions selecting the rows of `range` after `after` (>= range.lo
// when `after` is empty), with parameters numbered from ?1, and the values
// to bind to them in order.
struct RangeFilter {
  std::vector<std::string> conditions;  // AND-ed; empty = the whole table
  std::vector<Value> params;
};

Result<RangeFilter> MakeRangeFilter(const TableSchema& table, const KeySql& key,
                                    const KeyRange& range, std::string_view after);
// Adds "key <= through" to `f` (nothing when `through` is empty).
Status AddThrough(const TableSchema& table, const KeySql& key, std::string_view through,
                  RangeFilter* f);

// " WHERE a AND b", or "" for no conditions.
std::string WhereClause(const std::vector<std::string>& conditions);

// AppendKeyElement for a cell the engine holds, without building a Value.
void AppendCell(sqlite3_value* v, std::string* out);
// AppendExactCell / AppendValueCell (stores/row_compare.h) for a cell the
// engine holds.
void AppendExactCell(sqlite3_value* v, std::string* out);
void AppendValueCell(sqlite3_value* v, std::string* out);

}  // namespace sqlite_sql
}  // namespace ferry
