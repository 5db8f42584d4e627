#include "common/sqlite_store.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <regex>
#include <utility>

#include "common/digest.h"
#include "common/key_codec.h"
#include "common/text_util.h"
#include "common/wal_checkpointer.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

bool IsMetaTable(std::string_view name) { return IEquals(name, kMetaTable); }

Status RefuseMeta(std::string_view name) {
  return InvalidArgument(fmt::format(
      "table {} is ferry's reserved metadata table; it is never copied or written as user data",
      name));
}

// "(?a,?b)" or "?a" for one column; params numbered from `first`.
std::string Params(size_t n, size_t first) {
  if (n == 1) return fmt::format("?{}", first);
  std::string out = "(";
  for (size_t i = 0; i < n; ++i) out += fmt::format("{}?{}", i ? "," : "", first + i);
  return out + ")";
}

// The key as a SQL expression list: "k" or ("k1","k2"), and the bare list.
struct KeySql {
  std::string tuple;  // for comparisons
  std::string list;   // for SELECT / ORDER BY
  size_t arity = 0;
};

KeySql MakeKeySql(const TableSchema& table, const std::string& rowid_alias) {
  KeySql k;
  std::vector<std::string> cols;
  if (table.rowid_key()) {
    cols.push_back(QuoteIdent(rowid_alias));
  } else {
    for (size_t pos : table.key_columns) cols.push_back(QuoteIdent(table.columns[pos].name));
  }
  k.arity = cols.size();
  k.list = Join(cols);
  k.tuple = cols.size() == 1 ? cols[0] : "(" + k.list + ")";
  return k;
}

// The names of every cell of a row: [rowid alias,] columns, quoted.
std::string CellList(const TableSchema& table, const std::string& rowid_alias) {
  std::vector<std::string> cols;
  if (table.rowid_key()) cols.push_back(QuoteIdent(rowid_alias));
  for (const Column& c : table.columns) cols.push_back(QuoteIdent(c.name));
  return Join(cols);
}

// Checks what ReadBatch/PlanSplits/WriteBatch need of a schema, and returns
// the rowid alias (empty for PK tables).
Result<std::string> CheckTable(const TableSchema& table) {
  if (IsMetaTable(table.name)) return RefuseMeta(table.name);
  for (size_t pos : table.key_columns) {
    if (pos >= table.columns.size()) {
      return InvalidArgument(
          fmt::format("table {}: key column position {} is out of range", table.name, pos));
    }
  }
  if (!table.rowid_key()) return std::string();
  std::string alias = SqliteStore::RowidAlias(table.columns);
  if (alias.empty()) {
    return InvalidArgument(fmt::format(
        "table {} has no primary key and its columns shadow rowid, _rowid_ and oid; ferry "
        "cannot key it (give it a primary key)",
        table.name));
  }
  return alias;
}

// Decodes an encoded bound into exactly `arity` values.
Result<std::vector<Value>> DecodeBound(std::string_view encoded, size_t arity, bool rowid,
                                       std::string_view what, std::string_view table) {
  auto values = DecodeKey(encoded);
  if (!values.ok()) {
    return InvalidArgument(
        fmt::format("table {}: malformed {} key: {}", table, what, values.status().message()));
  }
  if (values->size() != arity || (rowid && !std::holds_alternative<int64_t>((*values)[0]))) {
    return InvalidArgument(fmt::format("table {}: {} key {} does not fit the table's key", table,
                                       what, KeyToString(encoded)));
  }
  return values;
}

// The conditions selecting the rows of `range` after `after` (>= range.lo
// when `after` is empty), with parameters numbered from ?1, and the values
// to bind to them in order.
struct RangeFilter {
  std::vector<std::string> conditions;  // AND-ed; empty = the whole table
  std::vector<Value> params;
};

Result<RangeFilter> MakeRangeFilter(const TableSchema& table, const KeySql& key,
                                    const KeyRange& range, std::string_view after) {
  if (!range.table.empty() && range.table != table.name) {
    return InvalidArgument(
        fmt::format("range of table {} read as table {}", range.table, table.name));
  }
  const bool rowid = table.rowid_key();
  RangeFilter f;
  if (!after.empty() || !range.lo.empty()) {
    const bool exclusive = !after.empty();
    FERRY_ASSIGN_OR_RETURN(std::vector<Value> lo,
                           DecodeBound(exclusive ? after : std::string_view(range.lo), key.arity,
                                       rowid, exclusive ? "cursor" : "lower", table.name));
    f.conditions.push_back(fmt::format(
        "{} {} {}", key.tuple, exclusive ? ">" : ">=", Params(key.arity, f.params.size() + 1)));
    f.params.insert(f.params.end(), lo.begin(), lo.end());
  }
  if (!range.hi.empty()) {
    FERRY_ASSIGN_OR_RETURN(std::vector<Value> hi,
                           DecodeBound(range.hi, key.arity, rowid, "upper", table.name));
    f.conditions.push_back(
        fmt::format("{} < {}", key.tuple, Params(key.arity, f.params.size() + 1)));
    f.params.insert(f.params.end(), hi.begin(), hi.end());
  }
  return f;
}

// " WHERE a AND b", or "" for no conditions.
std::string WhereClause(const std::vector<std::string>& conditions) {
  std::string out;
  for (const std::string& c : conditions) out += (out.empty() ? " WHERE " : " AND ") + c;
  return out;
}

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

std::string MapPgType(const std::string& pg_type) {
  std::string t = ToLower(pg_type);
  auto has = [&](const char* s) { return t.find(s) != std::string::npos; };
  if (has("bool")) return "INTEGER";  // PgStore reads booleans as 0 / 1
  if (has("int") || has("serial")) return "INTEGER";
  if (has("double") || has("real") || has("float")) return "REAL";
  if (has("bytea")) return "BLOB";
  if (has("numeric") || has("decimal")) return "NUMERIC";
  return "TEXT";  // text, varchar, char, and everything else
}

// CREATE TABLE from the column list, for dialects whose DDL SQLite cannot run.
std::string CreateFromColumns(const TableSchema& table, bool map_pg_types) {
  std::string sql = fmt::format("CREATE TABLE {} (", QuoteIdent(table.name));
  for (size_t i = 0; i < table.columns.size(); ++i) {
    const Column& c = table.columns[i];
    std::string type = map_pg_types ? MapPgType(c.type) : c.type;
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

// PostgreSQL's pg_indexes.indexdef form into SQLite:
// CREATE [UNIQUE] INDEX name ON [ONLY] [schema.]table [USING btree] (cols) [WHERE ...]
Result<std::string> TranslatePgIndex(const std::string& sql, const std::string& table) {
  static const std::regex kIndex(
      R"(^\s*CREATE\s+(UNIQUE\s+)?INDEX\s+(?:IF\s+NOT\s+EXISTS\s+)?("[^"]+"|\S+)\s+ON\s+(?:ONLY\s+)?)"
      R"(\S+?\s*(?:USING\s+btree\s*)?(\(.*\))\s*$)",
      std::regex::icase);
  std::smatch m;
  if (!std::regex_match(sql, m, kIndex)) {
    return InvalidArgument(fmt::format("table {}: cannot translate PostgreSQL index to SQLite: {}",
                                       table, sql.substr(0, 160)));
  }
  return fmt::format("CREATE {}INDEX IF NOT EXISTS {} ON {} {}", m[1].matched ? "UNIQUE " : "",
                     m[2].str(), QuoteIdent(table), m[3].str());
}

}  // namespace

// What the target stores of one process share per SQLite file (by canonical
// path). SQLite has one writer per file: stores of the same process
// (embedded workers) queue on `writer` for it instead of polling the file
// lock, so the lock passes from one transaction to the next without sleeps.
// `checkpointer` runs the file's WAL checkpoints on its own thread, so a
// commit never waits for one while other writers queue behind it.
struct SqliteStore::SharedFile {
  explicit SharedFile(const std::string& path) : checkpointer(path) {}
  std::mutex writer;
  WalCheckpointer checkpointer;
};

std::shared_ptr<SqliteStore::SharedFile> SqliteStore::Shared(const std::string& path) {
  static std::mutex registry_mu;
  static std::map<std::string, std::weak_ptr<SharedFile>> registry;
  std::error_code ec;
  fs::path canonical = fs::weakly_canonical(path, ec);
  const std::string key = ec ? path : canonical.string();
  std::lock_guard<std::mutex> lock(registry_mu);
  for (auto it = registry.begin(); it != registry.end();) {
    it = it->second.expired() ? registry.erase(it) : std::next(it);
  }
  std::shared_ptr<SharedFile> shared = registry[key].lock();
  if (!shared) {
    shared = std::make_shared<SharedFile>(path);
    registry[key] = shared;
  }
  return shared;
}

// ---- transactions ----

// Takes the file's in-process writer mutex (targets), then BEGIN IMMEDIATE
// on construction (check ok()); ROLLBACK on destruction unless Commit()
// succeeded; the mutex is held until destruction.
class SqliteStore::Txn {
 public:
  explicit Txn(SqliteStore* store) : store_(store) {
    if (store_->shared_) writer_ = std::unique_lock<std::mutex>(store_->shared_->writer);
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
  std::unique_lock<std::mutex> writer_;  // released after the destructor's ROLLBACK
  Status status_;
  bool active_ = false;
};

// ---- open ----

SqliteStore::SqliteStore(std::string path, StoreRole role, Db db)
    : path_(std::move(path)), role_(role), db_(std::move(db)) {}

SqliteStore::~SqliteStore() {
  stmts_.clear();  // finalize statements before the connection closes
}

std::string SqliteStore::Describe() const { return "sqlite:" + path_; }

std::string SqliteStore::RowidAlias(const std::vector<Column>& columns) {
  for (const char* alias : {"rowid", "_rowid_", "oid"}) {
    bool shadowed = std::any_of(columns.begin(), columns.end(),
                                [&](const Column& c) { return IEquals(c.name, alias); });
    if (!shadowed) return alias;
  }
  return "";
}

Result<std::unique_ptr<SqliteStore>> SqliteStore::Open(const std::string& path, StoreRole role) {
  const bool source = role == StoreRole::kSource;
  const std::string what = fmt::format("{} store sqlite:{}", source ? "legacy" : "new", path);
  const char* flag = source ? "--source" : "--target";
  if (path.empty()) return InvalidArgument(fmt::format("{}: empty path (check {})", what, flag));

  struct stat st;
  bool exists = ::stat(path.c_str(), &st) == 0;
  if (exists && S_ISDIR(st.st_mode)) {
    return InvalidArgument(
        fmt::format("{} is a directory, not a SQLite file (check {})", what, flag));
  }
  if (source) {
    if (!exists) return InvalidArgument(fmt::format("{} does not exist (check {})", what, flag));
    if (::access(path.c_str(), R_OK) != 0) {
      return InvalidArgument(
          fmt::format("{} is not readable: {} (check {} and the file's permissions)", what,
                      std::strerror(errno), flag));
    }
  }

  if (!source && !exists) {
    std::string dir = fs::path(path).parent_path().string();
    if (dir.empty()) dir = ".";
    struct stat dir_st;
    int err = 0;
    if (::stat(dir.c_str(), &dir_st) != 0) {
      err = errno;
    } else if (!S_ISDIR(dir_st.st_mode)) {
      err = ENOTDIR;
    } else if (::access(dir.c_str(), W_OK | X_OK) != 0) {
      err = errno;
    }
    if (err != 0) {
      return InvalidArgument(fmt::format(
          "{} cannot be created: directory {}: {} (check {}: the directory must exist and be "
          "writable)",
          what, dir, std::strerror(err), flag));
    }
  }

  // Targets accept URI file names so that CanCopyFrom can ATTACH the source
  // read-only; a path that itself starts with "file:" is opened as ./file:...
  int flags = source ? SQLITE_OPEN_READONLY
                     : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI);
  const std::string open_path = !source && path.rfind("file:", 0) == 0 ? "./" + path : path;
  auto db = Db::Open(open_path, flags);
  if (!db.ok()) {
    const std::string& m = db.status().message();
    size_t colon = m.rfind(": ");
    return InvalidArgument(fmt::format("{} cannot be opened: {} (check {})", what,
                                       colon == std::string::npos ? m : m.substr(colon + 2), flag));
  }
  std::unique_ptr<SqliteStore> store(new SqliteStore(path, role, std::move(db).value()));
  if (!source) {
    store->shared_ = Shared(open_path);
    store->shared_->checkpointer.Attach(store->db_.get());
  }
  // Turns a failure of the first statements into a one-line, actionable error.
  auto open_error = [&](const Status& s) -> Status {
    const std::string cause = store->db_.ErrorMessage();
    const int code = sqlite3_errcode(store->db_.get()) & 0xff;
    if (code == SQLITE_BUSY || code == SQLITE_LOCKED) {
      return Unavailable(
          fmt::format("{} is locked by another process ({}); retry, or stop the process holding it",
                      what, cause));
    }
    if (code == SQLITE_NOTADB || s.code() == Code::kPermanent) {
      return InvalidArgument(
          fmt::format("{} is not a SQLite database ({}) (check {})", what, cause, flag));
    }
    if (source) {
      return InvalidArgument(fmt::format("{} cannot be read: {} (check {})", what, cause, flag));
    }
    return InvalidArgument(fmt::format(
        "{} cannot be written: {} (check {}: the file and its directory must be writable)", what,
        cause, flag));
  };
  if (source) {
    // Touches the file so a non-database fails here, not mid-plan.
    Status s = store->db_.Exec("SELECT count(*) FROM sqlite_master");
    if (!s.ok()) return open_error(s);
    return store;
  }

  auto mode = store->db_.Prepare("PRAGMA journal_mode=WAL");
  if (!mode.ok()) return open_error(mode.status());
  int rc = mode->Step();
  if (rc != SQLITE_ROW) return open_error(store->db_.Error(rc, "PRAGMA journal_mode=WAL"));
  std::string got = mode->Str(0);
  mode->Reset();
  if (sqlite3_db_readonly(store->db_.get(), "main") == 1) {
    return InvalidArgument(fmt::format(
        "{} is read-only (check {}: the file and its directory must be writable)", what, flag));
  }
  if (!IEquals(got, "wal")) {
    return InvalidArgument(
        fmt::format("{} cannot use WAL journal mode (it stays '{}'); use a regular file (check {})",
                    what, got, flag));
  }
  Status s = store->db_.Exec("PRAGMA synchronous=NORMAL");
  if (!s.ok()) return open_error(s);
  {
    Txn txn(store.get());
    if (!txn.status().ok()) return open_error(txn.status());
    s = store->CreateMetaTable();
    if (s.ok()) s = txn.Commit();
    if (!s.ok()) return open_error(s);
  }
  return store;
}

Status SqliteStore::RefuseWrite() const {
  return FailedPrecondition(fmt::format(
      "{} is opened as the legacy store (read-only); ferry never writes to it", Describe()));
}

// ---- statement cache ----

Result<Stmt*> SqliteStore::Cached(const std::string& sql) {
  auto it = stmts_.find(sql);
  if (it != stmts_.end()) return &it->second;
  FERRY_ASSIGN_OR_RETURN(Stmt stmt, db_.Prepare(sql));
  return &stmts_.emplace(sql, std::move(stmt)).first->second;
}

// ---- source side ----

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
    if (IsMetaTable(t.name)) continue;
    t.dialect = "sqlite";
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
      Column c{cols.Str(0), cols.Str(1), cols.Int(2) != 0};
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
      if (alias.empty() || alias != RowidAlias(t.columns)) {
        return InvalidArgument(fmt::format(
            "table {} has no primary key and its columns shadow rowid, _rowid_ and oid; ferry "
            "cannot key it (give it a primary key)",
            t.name));
      }
    }

    indexes.Bind(1, t.name);
    while ((rc = indexes.Step()) == SQLITE_ROW) t.index_sql.push_back(indexes.Str(0));
    indexes.Reset();
    if (rc != SQLITE_DONE) return db_.Error(rc, fmt::format("indexes of table {}", t.name));
    out.push_back(std::move(t));
  }
  if (rc != SQLITE_DONE) return db_.Error(rc, "list tables");
  return out;
}

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

// ---- target side ----

Status SqliteStore::CreateOneTable(const TableSchema& table) {
  if (table.dialect != "sqlite" && table.dialect != "postgresql") {
    return InvalidArgument(
        fmt::format("table {}: unknown schema dialect '{}'", table.name, table.dialect));
  }
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
    std::string create = table.dialect == "sqlite" && !table.create_sql.empty()
                             ? table.create_sql
                             : CreateFromColumns(table, table.dialect == "postgresql");
    Status s = db_.Exec(create);
    if (!s.ok()) {
      return Status(s.code() == Code::kUnavailable ? Code::kUnavailable : Code::kInvalidArgument,
                    fmt::format("cannot create target table {}: {}", table.name, s.message()));
    }
  }

  for (const std::string& index : table.index_sql) {
    Result<std::string> sql =
        table.dialect == "sqlite" ? IndexIfNotExists(index) : TranslatePgIndex(index, table.name);
    if (!sql.ok()) return sql.status();
    Status s = db_.Exec(*sql);
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
  for (const TableSchema& t : tables) {
    if (IsMetaTable(t.name)) return RefuseMeta(t.name);
  }
  Txn txn(this);
  FERRY_RETURN_IF_ERROR(txn.status());
  FERRY_RETURN_IF_ERROR(CreateMetaTable());
  for (const TableSchema& t : tables) FERRY_RETURN_IF_ERROR(CreateOneTable(t));
  FERRY_RETURN_IF_ERROR(txn.Commit());
  return SyncWrites();
}

Status SqliteStore::WriteBatch(const TableSchema& table, const RowBatch& batch,
                               const Fence& fence) {
  if (role_ == StoreRole::kSource) return RefuseWrite();
  FERRY_ASSIGN_OR_RETURN(std::string alias, CheckTable(table));
  const size_t width = table.width();
  if (batch.width != width || batch.cells.size() != batch.rows() * width) {
    return InvalidArgument(
        fmt::format("table {}: batch of width {} ({} cells, {} rows) does not "
                    "fit the table's {} cells per row",
                    table.name, batch.width, batch.cells.size(), batch.rows(), width));
  }
  auto sql = [&] {
    std::string params;
    for (size_t i = 1; i <= width; ++i) params += fmt::format("{}?{}", i > 1 ? "," : "", i);
    return fmt::format("INSERT OR REPLACE INTO {} ({}) VALUES ({})", QuoteIdent(table.name),
                       CellList(table, alias), params);
  };
  FERRY_ASSIGN_OR_RETURN(Stmt * insert, Cached(sql()));

  Txn txn(this);
  FERRY_RETURN_IF_ERROR(txn.status());
  FERRY_RETURN_IF_ERROR(CheckAndRecordFence(fence));

  for (size_t r = 0; r < batch.rows(); ++r) {
    const Value* row = batch.row(r);
    for (size_t c = 0; c < width; ++c) insert->BindValue(static_cast<int>(c + 1), row[c]);
    int rc = insert->Step();
    insert->Reset();
    if (rc != SQLITE_DONE) {
      return db_.Error(
          rc, fmt::format("write row {} of table {}", KeyToString(batch.keys[r]), table.name));
    }
  }
  return txn.Commit();
}

Status SqliteStore::CheckAndRecordFence(const Fence& fence) {
  const std::string fence_key = fmt::format("fence/{}/{}", fence.plan_id, fence.range_id);
  FERRY_ASSIGN_OR_RETURN(std::optional<Value> recorded, MetaGet(fence_key));
  if (recorded && std::holds_alternative<int64_t>(*recorded) &&
      std::get<int64_t>(*recorded) > static_cast<int64_t>(fence.epoch)) {
    return LeaseLost(fmt::format("range {}: epoch {} is older than recorded epoch {}",
                                 fence.range_id, fence.epoch, std::get<int64_t>(*recorded)));
  }
  return MetaPut(fence_key, static_cast<int64_t>(fence.epoch));
}

// ---- direct copy ----

// The state of the copy statement running on this connection, read and
// updated by FoldRow once per row the statement selects, in key order.
struct SqliteStore::FoldState {
  std::vector<size_t> key_cells;  // positions of the key among the cells
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
  for (int i = 0; i < argc; ++i) {
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

bool SqliteStore::CanCopyFrom(Store& source, const TableSchema& table) {
  auto* src = dynamic_cast<SqliteStore*>(&source);
  if (src == nullptr || src->role_ != StoreRole::kSource || role_ != StoreRole::kTarget) {
    return false;
  }
  Result<std::string> alias = CheckTable(table);
  if (!alias.ok()) return false;
  if (attached_ != src->path_) {
    if (!attached_.empty()) return false;  // one source per target connection
    if (sqlite3_create_function_v2(db_.get(), "ferry_fold", -1, SQLITE_UTF8 | SQLITE_DIRECTONLY,
                                   this, &SqliteStore::FoldRow, nullptr, nullptr,
                                   nullptr) != SQLITE_OK) {
      return false;
    }
    auto attach = db_.Prepare(fmt::format("ATTACH DATABASE ?1 AS {}", kSourceSchema));
    if (!attach.ok()) return false;
    attach->Bind(1, ReadOnlyUri(src->path_));
    if (attach->Step() != SQLITE_DONE) return false;
    attached_ = src->path_;
  }
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

  FoldState st;
  if (table.rowid_key()) {
    st.key_cells = {0};
  } else {
    st.key_cells = table.key_columns;
  }
  st.max_bytes = max_bytes;
  st.batch.digest = out->digest;
  fold_ = &st;
  int rc = copy->Step();
  const int64_t changed = sqlite3_changes64(db_.get());
  copy->Reset();
  fold_ = nullptr;
  if (rc != SQLITE_DONE) {
    return db_.Error(
        rc, fmt::format("copy a batch of table {} from {}", table.name, source.Describe()));
  }
  if (changed != static_cast<int64_t>(st.batch.rows)) {
    return Internal(fmt::format("table {}: direct copy folded {} rows but wrote {}", table.name,
                                st.batch.rows, changed));
  }
  FERRY_RETURN_IF_ERROR(txn.Commit());
  *out = std::move(st.batch);
  return Status::Ok();
}

// ---- metadata ----

Status SqliteStore::CreateMetaTable() {
  return db_.Exec(fmt::format("CREATE TABLE IF NOT EXISTS {} (key TEXT PRIMARY KEY, value)",
                              QuoteIdent(kMetaTable)));
}

Result<bool> SqliteStore::MetaTableExists() {
  FERRY_ASSIGN_OR_RETURN(Stmt * stmt,
                         Cached("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1"));
  stmt->Bind(1, std::string_view(kMetaTable));
  int rc = stmt->Step();
  stmt->Reset();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_.Error(rc, "look up metadata table");
  return rc == SQLITE_ROW;
}

Result<std::optional<Value>> SqliteStore::MetaGet(std::string_view key) {
  FERRY_ASSIGN_OR_RETURN(Stmt * stmt, Cached(fmt::format("SELECT value FROM {} WHERE key = ?1",
                                                         QuoteIdent(kMetaTable))));
  stmt->Bind(1, key);
  int rc = stmt->Step();
  std::optional<Value> out;
  if (rc == SQLITE_ROW) out = stmt->ColumnValue(0);
  stmt->Reset();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    return db_.Error(rc, fmt::format("read metadata key {}", key));
  }
  return out;
}

Status SqliteStore::MetaPut(std::string_view key, const Value& value) {
  FERRY_ASSIGN_OR_RETURN(
      Stmt * stmt, Cached(fmt::format("INSERT OR REPLACE INTO {} (key, value) VALUES (?1, ?2)",
                                      QuoteIdent(kMetaTable))));
  stmt->Bind(1, key);
  stmt->BindValue(2, value);
  int rc = stmt->Step();
  stmt->Reset();
  if (rc != SQLITE_DONE) return db_.Error(rc, fmt::format("write metadata key {}", key));
  return Status::Ok();
}

Status SqliteStore::MetaDelete(std::string_view key) {
  FERRY_ASSIGN_OR_RETURN(
      Stmt * stmt, Cached(fmt::format("DELETE FROM {} WHERE key = ?1", QuoteIdent(kMetaTable))));
  stmt->Bind(1, key);
  int rc = stmt->Step();
  stmt->Reset();
  if (rc != SQLITE_DONE) return db_.Error(rc, fmt::format("delete metadata key {}", key));
  return Status::Ok();
}

Result<std::optional<int64_t>> SqliteStore::ReadVersion() {
  FERRY_ASSIGN_OR_RETURN(bool exists, MetaTableExists());
  if (!exists) return std::optional<int64_t>();
  FERRY_ASSIGN_OR_RETURN(std::optional<Value> v, MetaGet("version"));
  if (!v || std::holds_alternative<Null>(*v)) return std::optional<int64_t>();
  if (std::holds_alternative<int64_t>(*v)) return std::optional<int64_t>(std::get<int64_t>(*v));
  if (std::holds_alternative<Text>(*v)) {
    const std::string& s = std::get<Text>(*v).bytes;
    char* end = nullptr;
    errno = 0;
    long long n = std::strtoll(s.c_str(), &end, 10);
    if (!s.empty() && errno == 0 && end == s.c_str() + s.size()) {
      return std::optional<int64_t>(static_cast<int64_t>(n));
    }
  }
  return FailedPrecondition(fmt::format(
      "{}: the version recorded in {} is not an integer; fix or delete the 'version' row",
      Describe(), kMetaTable));
}

Result<Marker> SqliteStore::ReadMarker() {
  Marker marker;
  FERRY_ASSIGN_OR_RETURN(marker.version, ReadVersion());
  if (!marker.version.has_value()) {
    FERRY_ASSIGN_OR_RETURN(bool exists, MetaTableExists());
    if (!exists) return marker;
  }
  FERRY_ASSIGN_OR_RETURN(std::optional<Value> b, MetaGet("boundary"));
  if (b && std::holds_alternative<Blob>(*b)) marker.boundary = std::get<Blob>(*b).bytes;
  if (b && std::holds_alternative<Text>(*b)) marker.boundary = std::get<Text>(*b).bytes;
  return marker;
}

Status SqliteStore::WriteMarker(const Marker& marker) {
  if (role_ == StoreRole::kSource) return RefuseWrite();
  Txn txn(this);
  FERRY_RETURN_IF_ERROR(txn.status());
  FERRY_RETURN_IF_ERROR(CreateMetaTable());
  if (marker.version) FERRY_RETURN_IF_ERROR(MetaPut("version", *marker.version));
  if (marker.boundary.empty()) {
    FERRY_RETURN_IF_ERROR(MetaDelete("boundary"));
  } else {
    FERRY_RETURN_IF_ERROR(MetaPut("boundary", Blob{marker.boundary}));
  }
  FERRY_RETURN_IF_ERROR(txn.Commit());
  return SyncWrites();
}

Status SqliteStore::RecordPlan(const std::string& plan_id) {
  if (role_ == StoreRole::kSource) return RefuseWrite();
  Txn txn(this);
  FERRY_RETURN_IF_ERROR(txn.status());
  FERRY_RETURN_IF_ERROR(CreateMetaTable());
  FERRY_RETURN_IF_ERROR(MetaPut("plan/" + plan_id, int64_t{1}));
  FERRY_RETURN_IF_ERROR(txn.Commit());
  return SyncWrites();
}

Result<bool> SqliteStore::HasPlan(const std::string& plan_id) {
  FERRY_ASSIGN_OR_RETURN(bool exists, MetaTableExists());
  if (!exists) return false;
  FERRY_ASSIGN_OR_RETURN(std::optional<Value> v, MetaGet("plan/" + plan_id));
  return v.has_value();
}

Status SqliteStore::SyncWrites() {
  if (!unsynced_) return Status::Ok();
  sqlite3_file* wal = nullptr;
  int rc = sqlite3_file_control(db_.get(), "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal);
  if (rc != SQLITE_OK || wal == nullptr || wal->pMethods == nullptr) {
    return Internal(fmt::format("{}: no write-ahead log to sync (rc {})", Describe(), rc));
  }
  rc = wal->pMethods->xSync(wal, SQLITE_SYNC_NORMAL);
  if (rc != SQLITE_OK) {
    return Unavailable(
        fmt::format("{}: fsync of the write-ahead log failed: {}", Describe(), sqlite3_errstr(rc)));
  }
  unsynced_ = false;
  return Status::Ok();
}

}  // namespace ferry
