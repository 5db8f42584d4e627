// SqliteStore's direct copy (CanCopyFrom / CopyBatch): a target connection
// ATTACHes the source file and copies each batch with one INSERT ... SELECT.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "common/digest.h"
#include "common/key_codec.h"
#include "stores/sql_text.h"
#include "stores/sqlite/sqlite_internal.h"
#include "stores/table_checks.h"

namespace ferry {

namespace fs = std::filesystem;
using sqlite_sql::AddThrough;
using sqlite_sql::AppendCell;
using sqlite_sql::CellList;
using sqlite_sql::KeySql;
using sqlite_sql::MakeKeySql;
using sqlite_sql::MakeRangeFilter;
using sqlite_sql::Params;
using sqlite_sql::ProjectionSelect;
using sqlite_sql::RangeFilter;
using sqlite_sql::WhereClause;

// The state of the copy statement running on this connection, read and
// updated by FoldRow once per row the statement selects, in key order.
struct SqliteStore::FoldState {
  std::vector<size_t> key_cells;  // positions of the key among the arguments
  size_t first_cell = 0;          // the row's cells are the arguments from here on
  size_t max_bytes = 0;
  CopiedBatch batch;  // rows, bytes, last key, digest so far
  bool full = false;  // a row was refused: the batch holds max_bytes
  std::string row;    // scratch: the row's digest bytes
  std::string key;    // scratch: the row's encoded key
};

namespace {

// PayloadBytes for a cell the engine holds.
uint64_t CellBytes(sqlite3_value* v) {
  switch (sqlite3_value_type(v)) {
    case SQLITE_INTEGER:
    case SQLITE_FLOAT:
      return 8;
    case SQLITE_TEXT:
    case SQLITE_BLOB:
      return static_cast<uint64_t>(sqlite3_value_bytes(v));
    default:
      return 0;
  }
}

// A file name as a read-only SQLite URI: file:/abs/path?mode=ro, with every
// byte outside [A-Za-z0-9/._~-] percent-encoded.
std::string ReadOnlyUri(const std::string& path) {
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec);
  const std::string p = ec ? path : abs.string();
  std::string out = "file:";
  for (unsigned char c : p) {
    if (std::isalnum(c) || c == '/' || c == '.' || c == '_' || c == '~' || c == '-') {
      out.push_back(static_cast<char>(c));
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out + "?mode=ro";
}

constexpr const char* kSourceSchema = "ferry_src";

}  // namespace

// ferry_fold(cells...): folds the row into the running copy's digest and
// returns 1, or returns 0 (the row is not copied) once the batch holds
// max_bytes, exactly where ReadBatch stops.
void SqliteStore::FoldRow(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  auto* store = static_cast<SqliteStore*>(sqlite3_user_data(ctx));
  FoldState* st = store->fold_;
  if (st == nullptr) {
    sqlite3_result_error(ctx, "ferry_fold called outside a ferry copy", -1);
    return;
  }
  CopiedBatch& b = st->batch;
  if (b.rows > 0 && b.bytes >= st->max_bytes) {
    st->full = true;
    sqlite3_result_int(ctx, 0);
    return;
  }
  st->key.clear();
  for (size_t pos : st->key_cells) {
    if (pos >= static_cast<size_t>(argc)) {
      sqlite3_result_error(ctx, "ferry_fold: key cell out of range", -1);
      return;
    }
    AppendCell(argv[pos], &st->key);
  }
  st->row.assign(st->key);
  for (int i = static_cast<int>(st->first_cell); i < argc; ++i) {
    AppendCell(argv[i], &st->row);
    b.bytes += CellBytes(argv[i]);
  }
  b.digest = FoldRowBytes(b.digest, st->row);
  b.bytes += st->key.size();
  b.last_key.swap(st->key);
  ++b.rows;
  sqlite3_result_int(ctx, 1);
}

// The statement copying the next batch: INSERT OR REPLACE INTO main.t (cells)
// SELECT cells FROM ferry_src.t WHERE <range> AND ferry_fold(cells)
// ORDER BY key LIMIT ?n. ferry_fold is the last condition, so it sees only
// rows inside the range.
std::string SqliteStore::CopySql(const TableSchema& table, const std::string& alias,
                                 std::vector<std::string> conditions, size_t limit_param) {
  const KeySql key = MakeKeySql(table, alias);
  const std::string cells = CellList(table, alias);
  conditions.push_back(fmt::format("ferry_fold({})", cells));
  return fmt::format(
      "INSERT OR REPLACE INTO main.{0} ({1}) SELECT {1} FROM {2}.{0}{3} ORDER BY {4} LIMIT ?{5}",
      QuoteIdent(table.name), cells, kSourceSchema, WhereClause(conditions), key.list, limit_param);
}

bool SqliteStore::AttachSource(SqliteStore* src) {
  if (src == nullptr || src->role_ != StoreRole::kSource || role_ != StoreRole::kTarget) {
    return false;
  }
  if (attached_ == src->path_) return true;
  if (!attached_.empty()) return false;  // one source per target connection
  if (sqlite3_create_function_v2(db_.get(), "ferry_fold", -1, SQLITE_UTF8 | SQLITE_DIRECTONLY, this,
                                 &SqliteStore::FoldRow, nullptr, nullptr, nullptr) != SQLITE_OK) {
    return false;
  }
  auto attach = db_.Prepare(fmt::format("ATTACH DATABASE ?1 AS {}", kSourceSchema));
  if (!attach.ok()) return false;
  attach->Bind(1, ReadOnlyUri(src->path_));
  if (attach->Step() != SQLITE_DONE) return false;
  attached_ = src->path_;
  return true;
}

bool SqliteStore::CanCopyFrom(Store& source, const TableSchema& table) {
  Result<std::string> alias = CheckTable(table);
  if (!alias.ok()) return false;
  if (!AttachSource(dynamic_cast<SqliteStore*>(&source))) return false;
  // The rows must come out of an ordered walk of the key: a sort would run
  // ferry_fold on every row of the range, not only on the ones copied.
  const KeySql key = MakeKeySql(table, *alias);
  std::vector<std::string> conditions;
  size_t next = 1;
  for (const char* op : {">", "<"}) {
    conditions.push_back(fmt::format("{} {} {}", key.tuple, op, Params(key.arity, next)));
    next += key.arity;
  }
  auto plan = db_.Prepare("EXPLAIN QUERY PLAN " + CopySql(table, *alias, conditions, next));
  if (!plan.ok()) return false;
  int rc;
  while ((rc = plan->Step()) == SQLITE_ROW) {
    if (plan->Str(3).find("TEMP B-TREE") != std::string::npos) return false;
  }
  return rc == SQLITE_DONE;
}

Status SqliteStore::CopyBatch(Store& source, const TableSchema& table, const KeyRange& range,
                              std::string_view after, size_t max_rows, size_t max_bytes,
                              const Fence& fence, CopiedBatch* out) {
  if (role_ == StoreRole::kSource) return RefuseWrite();
  auto* src = dynamic_cast<SqliteStore*>(&source);
  if (src == nullptr || attached_.empty() || attached_ != src->path_) {
    return FailedPrecondition(
        fmt::format("{}: CopyBatch without a successful CanCopyFrom", Describe()));
  }
  FERRY_ASSIGN_OR_RETURN(std::string alias, CheckTable(table));
  if (max_rows == 0) return InvalidArgument("max_rows must be at least 1");
  const KeySql key = MakeKeySql(table, alias);
  FERRY_ASSIGN_OR_RETURN(RangeFilter filter, MakeRangeFilter(table, key, range, after));
  size_t bound = 0;
  FERRY_RETURN_IF_ERROR(BoundBatch(table, key, "", max_rows, &filter, &bound));
  FERRY_ASSIGN_OR_RETURN(
      Stmt * copy, Cached(CopySql(table, alias, filter.conditions, filter.params.size() + 1)));

  Txn txn(this);
  FERRY_RETURN_IF_ERROR(txn.status());
  std::string end;
  FERRY_RETURN_IF_ERROR(CheckAndRecordFence(fence, &end));
  int p = 1;
  for (const Value& v : filter.params) copy->BindValue(p++, v);
  copy->Bind(p, static_cast<int64_t>(max_rows));

  std::vector<size_t> key_cells = table.rowid_key() ? std::vector<size_t>{0} : table.key_columns;
  FERRY_RETURN_IF_ERROR(
      RunCopy(copy, table, bound, std::move(key_cells), 0, max_bytes,
              fmt::format("copy a batch of table {} from {}", table.name, source.Describe()), out));
  // Rows are in key order: the last one is the largest (rolled back if fenced).
  FERRY_RETURN_IF_ERROR(CheckBeforeEnd(fence, end, out->last_key));
  return txn.Commit();
}

Status SqliteStore::BoundBatch(const TableSchema& table, const KeySql& key,
                               const std::string& where, size_t max_rows, RangeFilter* filter,
                               size_t* bound) {
  *bound = 0;
  auto it = scan_rows_.find(table.name);
  if (it == scan_rows_.end()) return Status::Ok();
  const size_t n = std::max<size_t>(1, std::min(max_rows, it->second));
  const std::string self = QuoteIdent(table.name);
  std::vector<std::string> conditions = filter->conditions;
  if (!where.empty()) conditions.push_back("(\n" + where + "\n)");
  FERRY_ASSIGN_OR_RETURN(
      Stmt * last,
      Cached(fmt::format("SELECT {0} FROM {1}.{2} AS {2}{3} ORDER BY {0} LIMIT 1 OFFSET ?{4}",
                         key.list, kSourceSchema, self, WhereClause(conditions),
                         filter->params.size() + 1)));
  int p = 1;
  for (const Value& v : filter->params) last->BindValue(p++, v);
  last->Bind(p, static_cast<int64_t>(n - 1));
  const int rc = last->Step();
  std::string through;
  if (rc == SQLITE_ROW) {
    *bound = n;
    std::vector<Value> values(key.arity);
    for (size_t i = 0; i < key.arity; ++i) values[i] = last->ColumnValue(static_cast<int>(i));
    through = EncodeKey(values);
  }
  last->Reset();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    return db_.Error(rc, fmt::format("find the end of a batch of table {}", table.name));
  }
  return AddThrough(table, key, through, filter);
}

Status SqliteStore::RunCopy(Stmt* copy, const TableSchema& table, size_t bound,
                            std::vector<size_t> key_cells, size_t first_cell, size_t max_bytes,
                            const std::string& what, CopiedBatch* out) {
  FoldState st;
  st.key_cells = std::move(key_cells);
  st.first_cell = first_cell;
  st.max_bytes = max_bytes;
  st.batch.digest = out->digest;
  fold_ = &st;
  int rc = copy->Step();
  const int64_t changed = sqlite3_changes64(db_.get());
  copy->Reset();
  fold_ = nullptr;
  if (rc != SQLITE_DONE) return db_.Error(rc, what);
  if (st.full) {
    // The next batch scans a quarter more rows than fitted in this one.
    scan_rows_[table.name] = st.batch.rows + st.batch.rows / 4 + 1;
  } else if (bound != 0 && st.batch.rows >= bound) {
    scan_rows_[table.name] = bound * 2;  // it ended on the bound: smaller rows
  }
  if (changed != static_cast<int64_t>(st.batch.rows)) {
    return Internal(
        fmt::format("{}: direct copy folded {} rows but wrote {}", what, st.batch.rows, changed));
  }
  *out = std::move(st.batch);
  return Status::Ok();
}

// Flat: WITH ferry_p(k1..ka, c1..cn) AS NOT MATERIALIZED (<the projection's
// SELECT>) INSERT OR REPLACE INTO main.into (cells) SELECT c1..cn FROM
// ferry_p WHERE ferry_fold(k.., c..) ORDER BY k.. LIMIT ?n. SQLite merges
// the WITH into the INSERT, so each expression is evaluated twice (for the
// row, for the fold); the projection's where comes first in the merged
// WHERE, so ferry_fold sees only the rows it keeps.
// Else: WITH ferry_p(...) AS (<SELECT> ORDER BY key LIMIT ?n) INSERT ...
// SELECT c1..cn FROM ferry_p WHERE ferry_fold(k.., c..): the LIMIT inside
// keeps the WITH a co-routine, each expression evaluated once.
std::string SqliteStore::ProjectedCopySql(const TableSchema& table, const std::string& alias,
                                          const Projection& p, const TableSchema& into,
                                          const std::string& into_alias, size_t width, bool flat,
                                          std::vector<std::string> conditions, size_t limit_param) {
  const KeySql key = MakeKeySql(table, alias, QuoteIdent(table.name));
  std::vector<std::string> names, keys, cells;
  for (size_t k = 0; k < key.arity; ++k) {
    keys.push_back(fmt::format("k{}", k + 1));
    names.push_back(keys.back());
  }
  for (size_t c = 0; c < width; ++c) {
    cells.push_back(fmt::format("c{}", c + 1));
    names.push_back(cells.back());
  }
  const std::string from = fmt::format("{}.{}", kSourceSchema, QuoteIdent(table.name));
  if (flat) {
    return fmt::format(
        "WITH ferry_p({}) AS NOT MATERIALIZED ({}) INSERT OR REPLACE INTO main.{} ({}) "
        "SELECT {} FROM ferry_p WHERE ferry_fold({}, {}) ORDER BY {} LIMIT ?{}",
        Join(names), ProjectionSelect(table, alias, p, from, conditions), QuoteIdent(into.name),
        CellList(into, into_alias), Join(cells), Join(keys), Join(cells), Join(keys), limit_param);
  }
  return fmt::format(
      "WITH ferry_p({}) AS ({} ORDER BY {} LIMIT ?{}) INSERT OR REPLACE INTO main.{} ({}) "
      "SELECT {} FROM ferry_p WHERE ferry_fold({}, {})",
      Join(names), ProjectionSelect(table, alias, p, from, conditions), key.list, limit_param,
      QuoteIdent(into.name), CellList(into, into_alias), Join(cells), Join(keys), Join(cells));
}

bool SqliteStore::FlatProjection(const TableSchema& table, const std::string& alias,
                                 const Projection& p) {
  const std::string memo = table.name + '\n' + p.select;
  auto it = flat_.find(memo);
  if (it != flat_.end()) return it->second;
  bool flat = false;
  auto program = db_.Prepare(fmt::format(
      "EXPLAIN {}",
      ProjectionSelect(table, alias, p, fmt::format("{}.{}", kSourceSchema, QuoteIdent(table.name)),
                       {})));
  if (program.ok()) {
    flat = true;
    int rc;
    while ((rc = program->Step()) == SQLITE_ROW) {
      const std::string op = program->Str(1);
      if (op == "Function" || op == "PureFunc" || op == "Once" || op == "BeginSubrtn" ||
          op == "OpenEphemeral" || op == "Gosub") {
        flat = false;
      }
    }
    if (rc != SQLITE_DONE) flat = false;
  }
  flat_.emplace(memo, flat);
  return flat;
}

bool SqliteStore::CanCopyProjected(Store& source, const TableSchema& table, const Projection& p,
                                   const TableSchema& into) {
  if (p.identity() && table.name == into.name) return CanCopyFrom(source, table);
  Result<std::string> alias = CheckTable(table);
  Result<std::string> into_alias = CheckTable(into);
  if (!alias.ok() || !into_alias.ok()) return false;
  auto* src = dynamic_cast<SqliteStore*>(&source);
  if (!AttachSource(src)) return false;
  Result<std::vector<ProjectedColumn>> cols = src->DescribeProjection(table, p);
  if (!cols.ok() || cols->size() != into.width()) return false;
  const KeySql key = MakeKeySql(table, *alias, QuoteIdent(table.name));
  std::vector<std::string> conditions;
  size_t next = 1;
  for (const char* op : {">", "<"}) {
    conditions.push_back(fmt::format("{} {} {}", key.tuple, op, Params(key.arity, next)));
    next += key.arity;
  }
  auto plan = db_.Prepare("EXPLAIN QUERY PLAN " +
                          ProjectedCopySql(table, *alias, p, into, *into_alias, cols->size(),
                                           FlatProjection(table, *alias, p), conditions, next));
  if (!plan.ok()) return false;
  int rc;
  while ((rc = plan->Step()) == SQLITE_ROW) {
    if (plan->Str(3).find("TEMP B-TREE") != std::string::npos) return false;
  }
  return rc == SQLITE_DONE;
}

Status SqliteStore::CopyProjected(Store& source, const TableSchema& table, const Projection& p,
                                  const TableSchema& into, const KeyRange& range,
                                  std::string_view after, size_t max_rows, size_t max_bytes,
                                  const Fence& fence, CopiedBatch* out) {
  if (p.identity() && table.name == into.name) {
    return CopyBatch(source, table, range, after, max_rows, max_bytes, fence, out);
  }
  if (role_ == StoreRole::kSource) return RefuseWrite();
  auto* src = dynamic_cast<SqliteStore*>(&source);
  if (src == nullptr || attached_.empty() || attached_ != src->path_) {
    return FailedPrecondition(
        fmt::format("{}: CopyProjected without a successful CanCopyProjected", Describe()));
  }
  FERRY_ASSIGN_OR_RETURN(std::string alias, CheckTable(table));
  FERRY_ASSIGN_OR_RETURN(std::string into_alias, CheckTable(into));
  if (max_rows == 0) return InvalidArgument("max_rows must be at least 1");
  const KeySql key = MakeKeySql(table, alias, QuoteIdent(table.name));
  FERRY_ASSIGN_OR_RETURN(RangeFilter filter, MakeRangeFilter(table, key, range, after));
  const bool flat = FlatProjection(table, alias, p);
  size_t bound = 0;
  if (flat) FERRY_RETURN_IF_ERROR(BoundBatch(table, key, p.where, max_rows, &filter, &bound));
  FERRY_ASSIGN_OR_RETURN(
      Stmt * copy, Cached(ProjectedCopySql(table, alias, p, into, into_alias, into.width(), flat,
                                           filter.conditions, filter.params.size() + 1)));
  Txn txn(this);
  FERRY_RETURN_IF_ERROR(txn.status());
  std::string end;
  FERRY_RETURN_IF_ERROR(CheckAndRecordFence(fence, &end));
  int at = 1;
  for (const Value& v : filter.params) copy->BindValue(at++, v);
  copy->Bind(at, static_cast<int64_t>(max_rows));
  std::vector<size_t> key_cells;
  for (size_t k = 0; k < key.arity; ++k) key_cells.push_back(k);
  FERRY_RETURN_IF_ERROR(RunCopy(copy, table, bound, std::move(key_cells), key.arity, max_bytes,
                                fmt::format("copy a batch of table {} into {} from {}", table.name,
                                            into.name, source.Describe()),
                                out));
  // Rows are in key order: the last one is the largest (rolled back if fenced).
  FERRY_RETURN_IF_ERROR(CheckBeforeEnd(fence, end, out->last_key));
  return txn.Commit();
}

}  // namespace ferry
