// SqliteCapture: change capture on a SQLite legacy file (see the header).
#include "stores/sqlite/sqlite_capture.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "common/key_codec.h"
#include "stores/sql_text.h"
#include "stores/table_checks.h"

namespace ferry {
namespace {

constexpr const char* kChanges = kChangesTable;
constexpr const char* kCapturePrefix = "__ferry_capture_";
constexpr const char* kGuardPrefix = "__ferry_guard_";
constexpr const char* kOps[] = {"insert", "update", "delete"};
// Commit time of the statement, Unix ms (julianday('now') is fixed per statement).
constexpr const char* kNowMs = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";
// Busy timeouts: what may run on the coordinator's event loop waits little.
constexpr int kLongBusyMs = 5000;
constexpr int kShortBusyMs = 20;

std::string Literal(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    out += c;
    if (c == '\'') out += '\'';
  }
  return out + "'";
}

std::string TriggerName(const char* prefix, const std::string& table, const char* op) {
  return fmt::format("{}{}_{}", prefix, table, op);
}

// The key cells of `table` as trigger expressions on `row` (NEW / OLD).
std::vector<std::string> KeyRefs(const TableSchema& table, const char* row) {
  std::vector<std::string> out;
  if (table.rowid_key()) {
    out.push_back(fmt::format("{}.{}", row, QuoteIdent(RowidAlias(table.columns))));
  } else {
    for (size_t p : table.key_columns) {
      out.push_back(fmt::format("{}.{}", row, QuoteIdent(table.columns[p].name)));
    }
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<SqliteCapture>> SqliteCapture::Open(const std::string& path) {
  const std::string what = fmt::format("legacy store sqlite:{}", path);
  if (::access(path.c_str(), F_OK) != 0) {
    return InvalidArgument(fmt::format("{} does not exist (check --source)", what));
  }
  auto db = Db::Open(path, SQLITE_OPEN_READWRITE, kLongBusyMs);
  if (!db.ok()) {
    return InvalidArgument(fmt::format(
        "{} cannot be opened for writing: {} (--online installs change capture in it: give the "
        "coordinator write access to the file and its directory)",
        what, db.status().message()));
  }
  std::unique_ptr<SqliteCapture> c(new SqliteCapture(path, std::move(db).value()));
  Status s = c->db_.Exec("SELECT count(*) FROM sqlite_master");
  if (!s.ok()) return InvalidArgument(fmt::format("{} cannot be read: {}", what, s.message()));
  return c;
}

SqliteCapture::~SqliteCapture() {
  if (frozen_) Thaw();
  stmts_.clear();
}

void SqliteCapture::SetTables(const std::vector<TableSchema>& tables) {
  tables_ = tables;
  arity_.clear();
  max_arity_ = 1;
  for (const TableSchema& t : tables_) {
    const size_t n = t.rowid_key() ? 1 : t.key_columns.size();
    arity_[t.name] = n;
    max_arity_ = std::max(max_arity_, n);
  }
}

Result<Stmt*> SqliteCapture::Cached(const std::string& sql) {
  auto it = stmts_.find(sql);
  if (it != stmts_.end()) return &it->second;
  FERRY_ASSIGN_OR_RETURN(Stmt stmt, db_.Prepare(sql));
  return &stmts_.emplace(sql, std::move(stmt)).first->second;
}

Status SqliteCapture::Run(const std::string& sql) {
  Status s = db_.Exec(sql);
  if (!s.ok()) return Status(s.code(), fmt::format("{}: {}", Describe(), s.message()));
  return s;
}

Result<std::vector<std::pair<std::string, std::string>>> SqliteCapture::Triggers(
    const std::string& prefix) {
  FERRY_ASSIGN_OR_RETURN(
      Stmt * s, Cached("SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger' AND "
                       "substr(name, 1, length(?1)) = ?1 ORDER BY name"));
  s->Bind(1, prefix);
  std::vector<std::pair<std::string, std::string>> out;
  int rc;
  while ((rc = s->Step()) == SQLITE_ROW) out.emplace_back(s->Str(0), s->Str(1));
  s->Reset();
  if (rc != SQLITE_DONE) return db_.Error(rc, "list ferry's triggers");
  return out;
}

Result<bool> SqliteCapture::ChangeTableExists() {
  FERRY_ASSIGN_OR_RETURN(Stmt * s,
                         Cached("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1"));
  s->Bind(1, std::string_view(kChanges));
  int rc = s->Step();
  s->Reset();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_.Error(rc, "look up the change table");
  return rc == SQLITE_ROW;
}

Result<size_t> SqliteCapture::KeyColumns() {
  FERRY_ASSIGN_OR_RETURN(bool exists, ChangeTableExists());
  if (!exists) return size_t{0};
  FERRY_ASSIGN_OR_RETURN(Stmt s, db_.Prepare(fmt::format("PRAGMA table_info({})", kChanges)));
  size_t n = 0;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    const std::string name = s.Str(1);
    if (name.size() > 1 && name[0] == 'k') ++n;
  }
  if (rc != SQLITE_DONE) return db_.Error(rc, "read the change table's columns");
  return n;
}

Status SqliteCapture::Check() {
  if (sqlite3_db_readonly(db_.get(), "main") == 1) {
    return InvalidArgument(fmt::format(
        "{} is read-only for ferry: --online installs change capture in it (triggers and the {} "
        "table); give the coordinator write access to the file and its directory",
        Describe(), kChanges));
  }
  FERRY_ASSIGN_OR_RETURN(auto guards, Triggers(kGuardPrefix));
  for (const TableSchema& t : tables_) {
    if (!t.unsupported.empty()) {
      return InvalidArgument(
          fmt::format("table {} cannot be captured: it {}", t.name, t.unsupported));
    }
    for (const auto& [name, table] : guards) {
      if (table == t.name) {
        return InvalidArgument(fmt::format(
            "table {} of {} refuses writes: a finished online migration moved it (trigger {}); "
            "remove the guard with `ferryctl unguard --source {} --tables {}` before migrating it "
            "again",
            t.name, Describe(), name, Describe(), t.name));
      }
    }
  }
  return Status::Ok();
}

Status SqliteCapture::Install() {
  db_.SetBusyTimeout(kLongBusyMs);
  FERRY_RETURN_IF_ERROR(Run("BEGIN IMMEDIATE"));
  auto body = [&]() -> Status {
    FERRY_ASSIGN_OR_RETURN(size_t have, KeyColumns());
    if (have == 0) {
      std::string cols;
      for (size_t i = 0; i < max_arity_; ++i) cols += fmt::format(", k{}", i);
      FERRY_RETURN_IF_ERROR(Run(fmt::format(
          "CREATE TABLE {} (id INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, ts INTEGER "
          "NOT NULL{})",
          kChanges, cols)));
    }
    for (size_t i = std::max<size_t>(have, 1); have > 0 && i < max_arity_; ++i) {
      FERRY_RETURN_IF_ERROR(Run(fmt::format("ALTER TABLE {} ADD COLUMN k{}", kChanges, i)));
    }
    for (const TableSchema& t : tables_) {
      const std::vector<std::string> neu = KeyRefs(t, "NEW"), old = KeyRefs(t, "OLD");
      std::string cols;
      for (size_t i = 0; i < neu.size(); ++i) cols += fmt::format(", k{}", i);
      const std::string into = fmt::format("INSERT INTO {} (tbl, ts{})", kChanges, cols);
      const std::string head = fmt::format("{}, {}", Literal(t.name), kNowMs);
      std::string moved;
      for (size_t i = 0; i < neu.size(); ++i) {
        moved += fmt::format("{}{} IS NOT {}", i ? " OR " : "", old[i], neu[i]);
      }
      const std::string stmts[] = {
          fmt::format("{} VALUES ({}, {});", into, head, Join(neu)),
          fmt::format("{} SELECT {}, {} WHERE {}; {} VALUES ({}, {});", into, head, Join(old),
                      moved, into, head, Join(neu)),
          fmt::format("{} VALUES ({}, {});", into, head, Join(old)),
      };
      for (int op = 0; op < 3; ++op) {
        const std::string name = QuoteIdent(TriggerName(kCapturePrefix, t.name, kOps[op]));
        FERRY_RETURN_IF_ERROR(Run(fmt::format("DROP TRIGGER IF EXISTS {}", name)));
        FERRY_RETURN_IF_ERROR(
            Run(fmt::format("CREATE TRIGGER {} AFTER {} ON {} FOR EACH ROW BEGIN "
                            "{} END",
                            name, kOps[op], QuoteIdent(t.name), stmts[op])));
      }
    }
    return Run("COMMIT");
  };
  Status s = body();
  if (!s.ok()) (void)db_.Exec("ROLLBACK");
  return s;
}

Result<CaptureState> SqliteCapture::Inspect() {
  CaptureState st;
  FERRY_ASSIGN_OR_RETURN(st.capture, ChangeTableExists());
  std::set<std::string> captured, guarded;
  FERRY_ASSIGN_OR_RETURN(auto caps, Triggers(kCapturePrefix));
  for (const auto& c : caps) captured.insert(c.second);
  FERRY_ASSIGN_OR_RETURN(auto guards, Triggers(kGuardPrefix));
  for (const auto& g : guards) guarded.insert(g.second);
  st.capture = st.capture || !captured.empty();
  st.captured.assign(captured.begin(), captured.end());
  st.guarded.assign(guarded.begin(), guarded.end());
  return st;
}

Result<int64_t> SqliteCapture::LastChangeId() {
  // sqlite_sequence exists once an AUTOINCREMENT table was created.
  FERRY_ASSIGN_OR_RETURN(bool exists, ChangeTableExists());
  if (!exists) return int64_t{0};
  FERRY_ASSIGN_OR_RETURN(Stmt * s, Cached("SELECT seq FROM sqlite_sequence WHERE name = ?1"));
  s->Bind(1, std::string_view(kChanges));
  int rc = s->Step();
  int64_t seq = rc == SQLITE_ROW ? s->Int(0) : 0;
  s->Reset();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_.Error(rc, "read the last change id");
  return seq;
}

Result<Backlog> SqliteCapture::Probe(int64_t position, uint64_t) {
  db_.SetBusyTimeout(kShortBusyMs);
  Backlog b;
  FERRY_ASSIGN_OR_RETURN(bool exists, ChangeTableExists());
  if (!exists) return b;
  FERRY_RETURN_IF_ERROR(Run("BEGIN"));
  auto body = [&]() -> Status {
    FERRY_ASSIGN_OR_RETURN(int64_t last, LastChangeId());
    b.pending = last > position ? static_cast<uint64_t>(last - position) : 0;
    FERRY_ASSIGN_OR_RETURN(
        Stmt * s,
        Cached(fmt::format("SELECT ts FROM {} WHERE id > ?1 ORDER BY id LIMIT 1", kChanges)));
    s->Bind(1, position);
    int rc = s->Step();
    if (rc == SQLITE_ROW) b.oldest_ms = s->Int(0);
    s->Reset();
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_.Error(rc, "read the oldest change");
    return Run("COMMIT");
  };
  Status s = body();
  if (!s.ok()) (void)db_.Exec("ROLLBACK");
  FERRY_RETURN_IF_ERROR(s);
  return b;
}

Result<ChangeBatch> SqliteCapture::Read(int64_t after, size_t max_changes) {
  db_.SetBusyTimeout(kLongBusyMs);
  ChangeBatch batch;
  batch.end = after;
  FERRY_ASSIGN_OR_RETURN(bool exists, ChangeTableExists());
  if (!exists) {
    return FailedPrecondition(fmt::format(
        "{}: the change table {} is gone (was the capture removed, e.g. by `ferryctl unguard`?); "
        "changes can no longer be replayed: start the migration again with a new --state",
        Describe(), kChanges));
  }
  std::string cols;
  for (size_t i = 0; i < max_arity_; ++i) cols += fmt::format(", k{}", i);
  FERRY_RETURN_IF_ERROR(Run("BEGIN"));
  auto body = [&]() -> Status {
    FERRY_ASSIGN_OR_RETURN(int64_t last, LastChangeId());
    FERRY_ASSIGN_OR_RETURN(
        Stmt * s, Cached(fmt::format("SELECT id, tbl, ts{} FROM {} WHERE id > ?1 ORDER BY id "
                                     "LIMIT ?2",
                                     cols, kChanges)));
    const size_t limit = std::max<size_t>(1, max_changes);
    s->Bind(1, after);
    s->Bind(2, static_cast<int64_t>(limit + 1));  // one more: the next change's time
    std::vector<Value> key;
    int rc;
    while ((rc = s->Step()) == SQLITE_ROW) {
      if (batch.changes == limit) {
        batch.more = true;
        batch.next_ms = s->Int(2);
        continue;
      }
      batch.end = s->Int(0);
      if (batch.changes++ == 0) batch.oldest_ms = s->Int(2);
      const std::string table = s->Str(1);
      auto it = arity_.find(table);
      if (it == arity_.end()) continue;  // a table this migration does not move
      key.clear();
      for (size_t i = 0; i < it->second; ++i)
        key.push_back(s->ColumnValue(static_cast<int>(3 + i)));
      batch.keys.push_back(ChangedKey{table, EncodeKey(key)});
    }
    s->Reset();
    if (rc != SQLITE_DONE) return db_.Error(rc, "read changes");
    batch.left = last > batch.end ? static_cast<uint64_t>(last - batch.end) : 0;
    if (!batch.more) batch.caught_up = std::max(last, after);
    return Run("COMMIT");
  };
  Status s = body();
  if (!s.ok()) (void)db_.Exec("ROLLBACK");
  FERRY_RETURN_IF_ERROR(s);
  return batch;
}

Status SqliteCapture::Acknowledge(int64_t upto) {
  if (frozen_) return Status::Ok();
  db_.SetBusyTimeout(kShortBusyMs);
  FERRY_ASSIGN_OR_RETURN(bool exists, ChangeTableExists());
  if (!exists) return Status::Ok();
  FERRY_ASSIGN_OR_RETURN(Stmt * s, Cached(fmt::format("DELETE FROM {} WHERE id <= ?1", kChanges)));
  s->Bind(1, upto);
  int rc = s->Step();
  s->Reset();
  if (rc != SQLITE_DONE) return db_.Error(rc, "drop applied changes");
  return Status::Ok();
}

Status SqliteCapture::Freeze(int wait_ms) {
  if (frozen_) return Status::Ok();
  db_.SetBusyTimeout(std::max(0, wait_ms));
  Status s = db_.Exec("BEGIN IMMEDIATE");
  db_.SetBusyTimeout(kShortBusyMs);
  if (!s.ok()) {
    (void)db_.Exec("ROLLBACK");
    return s.code() == Code::kUnavailable
               ? Unavailable(fmt::format("{} is busy (a writer holds its lock)", Describe()))
               : s;
  }
  frozen_ = true;
  guard_written_ = false;
  return Status::Ok();
}

Result<int64_t> SqliteCapture::FreezePoint() {
  if (!frozen_) return FailedPrecondition("not frozen");
  return LastChangeId();
}

Status SqliteCapture::DropCapture() {
  FERRY_ASSIGN_OR_RETURN(auto caps, Triggers(kCapturePrefix));
  for (const auto& c : caps) {
    FERRY_RETURN_IF_ERROR(Run(fmt::format("DROP TRIGGER IF EXISTS {}", QuoteIdent(c.first))));
  }
  return Run(fmt::format("DROP TABLE IF EXISTS {}", kChanges));
}

Status SqliteCapture::CommitGuard(const std::string& new_store) {
  if (!frozen_) return FailedPrecondition("cut-over: the legacy store is not frozen");
  if (!guard_written_) {
    Status s = [&]() -> Status {
      for (const TableSchema& t : tables_) {
        const std::string raise =
            fmt::format("SELECT RAISE(ABORT, {});", Literal(GuardMessage(t.name, new_store)));
        for (const char* op : kOps) {
          const std::string name = QuoteIdent(TriggerName(kGuardPrefix, t.name, op));
          FERRY_RETURN_IF_ERROR(Run(fmt::format("DROP TRIGGER IF EXISTS {}", name)));
          FERRY_RETURN_IF_ERROR(
              Run(fmt::format("CREATE TRIGGER {} BEFORE {} ON {} FOR EACH ROW BEGIN {} END", name,
                              op, QuoteIdent(t.name), raise)));
        }
      }
      return DropCapture();
    }();
    if (!s.ok()) {
      Thaw();
      return s;
    }
    guard_written_ = true;
  }
  // COMMIT needs every reader out of the file (rollback journal): a busy
  // commit keeps the transaction, and the caller tries again.
  Status s = db_.Exec("COMMIT");
  if (s.ok()) {
    frozen_ = false;
    guard_written_ = false;
    stmts_.clear();  // the change table is gone
    return s;
  }
  if (s.code() == Code::kUnavailable && sqlite3_get_autocommit(db_.get()) == 0) {
    return Unavailable(
        fmt::format("{}: commit of the guard is waiting for readers: {}", Describe(), s.message()));
  }
  Thaw();
  return s;
}

void SqliteCapture::Thaw() {
  if (sqlite3_get_autocommit(db_.get()) == 0) (void)db_.Exec("ROLLBACK");
  frozen_ = false;
  guard_written_ = false;
}

Status SqliteCapture::RemoveCapture() {
  db_.SetBusyTimeout(kLongBusyMs);
  FERRY_RETURN_IF_ERROR(Run("BEGIN IMMEDIATE"));
  Status s = DropCapture();
  if (s.ok()) s = Run("COMMIT");
  if (!s.ok()) (void)db_.Exec("ROLLBACK");
  stmts_.clear();
  return s;
}

Result<std::vector<std::string>> SqliteCapture::Unguard(const std::vector<std::string>& tables) {
  db_.SetBusyTimeout(kLongBusyMs);
  std::vector<std::string> removed;
  FERRY_RETURN_IF_ERROR(Run("BEGIN IMMEDIATE"));
  Status s = [&]() -> Status {
    FERRY_ASSIGN_OR_RETURN(auto guards, Triggers(kGuardPrefix));
    for (const auto& [name, table] : guards) {
      if (!tables.empty() && std::find(tables.begin(), tables.end(), table) == tables.end()) {
        continue;
      }
      FERRY_RETURN_IF_ERROR(Run(fmt::format("DROP TRIGGER IF EXISTS {}", QuoteIdent(name))));
      removed.push_back(fmt::format("guard trigger {} on table {}", name, table));
    }
    FERRY_ASSIGN_OR_RETURN(auto caps, Triggers(kCapturePrefix));
    for (const auto& [name, table] : caps) {
      removed.push_back(fmt::format("capture trigger {} on table {}", name, table));
    }
    FERRY_ASSIGN_OR_RETURN(bool exists, ChangeTableExists());
    if (exists) removed.push_back(fmt::format("change table {}", kChanges));
    FERRY_RETURN_IF_ERROR(DropCapture());
    return Run("COMMIT");
  }();
  if (!s.ok()) (void)db_.Exec("ROLLBACK");
  stmts_.clear();
  FERRY_RETURN_IF_ERROR(s);
  return removed;
}

}  // namespace ferry
