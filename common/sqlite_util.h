// Thin RAII over the SQLite C API, shared by SqliteStore and the
// coordinator's state store. Errors come back as Status, never exceptions.
//
// Thread safety: a Db and its Stmts belong to one thread.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/value.h"

namespace ferry {

class Stmt {
 public:
  Stmt() = default;
  explicit Stmt(sqlite3_stmt* s) : s_(s) {}
  Stmt(Stmt&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  Stmt& operator=(Stmt&& o) noexcept;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt();

  sqlite3_stmt* get() const { return s_; }
  explicit operator bool() const { return s_ != nullptr; }
  void Reset();

  // 1-based, like sqlite3_bind_*.
  void Bind(int i, int64_t v) { sqlite3_bind_int64(s_, i, v); }
  void Bind(int i, std::string_view text) {
    sqlite3_bind_text(s_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  }
  void BindBlob(int i, std::string_view bytes) {
    sqlite3_bind_blob(s_, i, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
  }
  void BindNull(int i) { sqlite3_bind_null(s_, i); }
  // Binds a Value without copying: the Value must outlive the step.
  void BindValue(int i, const Value& v);

  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return sqlite3_step(s_); }

  int64_t Int(int col) const { return sqlite3_column_int64(s_, col); }
  std::string Str(int col) const;
  bool IsNull(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }
  Value ColumnValue(int col) const;

 private:
  sqlite3_stmt* s_ = nullptr;
};

class Db {
 public:
  Db() = default;
  Db(Db&& o) noexcept : db_(o.db_) { o.db_ = nullptr; }
  Db& operator=(Db&& o) noexcept;
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  ~Db();

  // flags: SQLITE_OPEN_* ; busy_timeout_ms applies to every statement: a
  // locked database is retried with short sleeps (0.1 ms at first, 2 ms at
  // most) until they add up to it, then the call fails with SQLITE_BUSY.
  static Result<Db> Open(const std::string& path, int flags, int busy_timeout_ms = 30000);

  sqlite3* get() const { return db_; }
  // Replaces the busy timeout given to Open (same fine-grained retries).
  void SetBusyTimeout(int busy_timeout_ms);
  Status Exec(const std::string& sql);
  Result<Stmt> Prepare(const std::string& sql);
  std::string ErrorMessage() const { return db_ ? sqlite3_errmsg(db_) : "no database"; }
  // Status for a failed sqlite call: busy/locked/full/IO → kUnavailable;
  // readonly/perm → kUnavailable with the cause; others kInternal.
  Status Error(int rc, std::string_view what) const;

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  sqlite3* db_ = nullptr;
};

// Quotes an identifier for SQL: "na""me".
std::string QuoteIdent(std::string_view name);

}  // namespace ferry
