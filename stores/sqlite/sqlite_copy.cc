// SqliteStore's direct copy (CanCopyFrom / CopyBatch): a target connection
// ATTACHes the source file and copies each batch with one INSERT ... SELECT.
#include <fmt/format.h>

#include <cctype>
#include <filesystem>

#include "common/digest.h"
#include "common/key_codec.h"
#include "stores/sql_text.h"
#include "stores/sqlite/sqlite_internal.h"
#include "stores/table_checks.h"

namespace ferry {

namespace fs = std::filesystem;
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
  std::string row;    // scratch: the row's digest bytes
  std::string key;    // scratch: the row's encoded key
};

namespace {

// AppendKeyElement for a cell the engine holds, without building a Value.
void AppendCell(sqlite3_value* v, std::string* out) {
  switch (sqlite3_value_type(v)) {
    case SQLITE_INTEGER:
      AppendKeyInt(sqlite3_value_int64(v), out);
      break;
    case SQLITE_FLOAT:
      AppendKeyReal(sqlite3_value_double(v), out);
      break;
    case SQLITE_TEXT: {
      const auto* p = reinterpret_cast<const char*>(sqlite3_value_text(v));
      AppendKeyText(std::string_view(p, static_cast<size_t>(sqlite3_value_bytes(v))), out);
      break;
    }
    case SQLITE_BLOB: {
      const auto* p = static_cast<const char*>(sqlite3_value_blob(v));
      size_t n = static_cast<size_t>(sqlite3_value_bytes(v));
      AppendKeyBlob(p ? std::string_view(p, n) : std::string_view(), out);
      break;
    }
    default:
      AppendKeyNull(out);
  }
}

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
  FERRY_ASSIGN_OR_RETURN(
      Stmt * copy, Cached(CopySql(table, alias, filter.conditions, filter.params.size() + 1)));

  Txn txn(this);
  FERRY_RETURN_IF_ERROR(txn.status());
  FERRY_RETURN_IF_ERROR(CheckAndRecordFence(fence));
  int p = 1;
  for (const Value& v : filter.params) copy->BindValue(p++, v);
  copy->Bind(p, static_cast<int64_t>(max_rows));

  std::vector<size_t> key_cells = table.rowid_key() ? std::vector<size_t>{0} : table.key_columns;
  FERRY_RETURN_IF_ERROR(
      RunCopy(copy, std::move(key_cells), 0, max_bytes,
              fmt::format("copy a batch of table {} from {}", table.name, source.Describe()), out));
  return txn.Commit();
}

Status SqliteStore::RunCopy(Stmt* copy, std::vector<size_t> key_cells, size_t first_cell,
                            size_t max_bytes, const std::string& what, CopiedBatch* out) {
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
  if (changed != static_cast<int64_t>(st.batch.rows)) {
    return Internal(
        fmt::format("{}: direct copy folded {} rows but wrote {}", what, st.batch.rows, changed));
  }
  *out = std::move(st.batch);
  return Status::Ok();
}

// WITH ferry_p(k1..ka, c1..cn) AS (<the projection's SELECT> ORDER BY key
// LIMIT ?n) INSERT OR REPLACE INTO main.into (cells) SELECT c1..cn FROM
// ferry_p WHERE ferry_fold(k.., c..). The LIMIT inside and the WHERE outside
// keep SQLite from flattening the WITH into the INSERT (which would evaluate
// each expression twice: once for the row, once for the fold).
std::string SqliteStore::ProjectedCopySql(const TableSchema& table, const std::string& alias,
                                          const Projection& p, const TableSchema& into,
                                          const std::string& into_alias, size_t width,
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
  return fmt::format(
      "WITH ferry_p({}) AS ({} ORDER BY {} LIMIT ?{}) INSERT OR REPLACE INTO main.{} ({}) "
      "SELECT {} FROM ferry_p WHERE ferry_fold({}, {})",
      Join(names), ProjectionSelect(table, alias, p, from, conditions), key.list, limit_param,
      QuoteIdent(into.name), CellList(into, into_alias), Join(cells), Join(keys), Join(cells));
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
  auto plan =
      db_.Prepare("EXPLAIN QUERY PLAN " + ProjectedCopySql(table, *alias, p, into, *into_alias,
                                                           cols->size(), conditions, next));
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
  FERRY_ASSIGN_OR_RETURN(Stmt * copy,
                         Cached(ProjectedCopySql(table, alias, p, into, into_alias, into.width(),
                                                 filter.conditions, filter.params.size() + 1)));
  Txn txn(this);
  FERRY_RETURN_IF_ERROR(txn.status());
  FERRY_RETURN_IF_ERROR(CheckAndRecordFence(fence));
  int at = 1;
  for (const Value& v : filter.params) copy->BindValue(at++, v);
  copy->Bind(at, static_cast<int64_t>(max_rows));
  std::vector<size_t> key_cells;
  for (size_t k = 0; k < key.arity; ++k) key_cells.push_back(k);
  FERRY_RETURN_IF_ERROR(RunCopy(copy, std::move(key_cells), key.arity, max_bytes,
                                fmt::format("copy a batch of table {} into {} from {}", table.name,
                                            into.name, source.Describe()),
                                out));
  return txn.Commit();
}

}  // namespace ferry
