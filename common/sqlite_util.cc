#include "common/sqlite_util.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdint>
#include <mutex>

namespace ferry {
namespace {

// Microseconds slept in total before busy-handler retry `count` (0-based):
// 0.1 ms steps for the first 4 ms, 0.5 ms steps for the next 30 ms, then
// 2 ms steps. A writer waiting for another connection's transaction
// (typically a few milliseconds) gets the lock soon after it is released,
// instead of after SQLite's default 1, 2, 5, 10, ... 100 ms steps.
int64_t SleptBeforeUs(int64_t count) {
  if (count <= 40) return count * 100;
  if (count <= 100) return 4000 + (count - 40) * 500;
  return 34000 + (count - 100) * 2000;
}

// sqlite3_busy_handler callback; `arg` carries the timeout in milliseconds.
// Gives up (SQLITE_BUSY reaches the caller) once the sleeps add up to it.
int FineBusyHandler(void* arg, int count) {
  const int64_t timeout_us = static_cast<int64_t>(reinterpret_cast<intptr_t>(arg)) * 1000;
  if (SleptBeforeUs(count) >= timeout_us) return 0;
  ::usleep(static_cast<useconds_t>(SleptBeforeUs(count + 1) - SleptBeforeUs(count)));
  return 1;
}

}  // namespace

Stmt& Stmt::operator=(Stmt&& o) noexcept {
  if (this != &o) {
    if (s_) sqlite3_finalize(s_);
    s_ = o.s_;
    o.s_ = nullptr;
  }
  return *this;
}

Stmt::~Stmt() {
  if (s_) sqlite3_finalize(s_);
}

void Stmt::Reset() {
  sqlite3_reset(s_);
  sqlite3_clear_bindings(s_);
}

void Stmt::BindValue(int i, const Value& v) {
  switch (v.index()) {
    case 0:
      sqlite3_bind_null(s_, i);
      break;
    case 1:
      sqlite3_bind_int64(s_, i, std::get<int64_t>(v));
      break;
    case 2:
      sqlite3_bind_double(s_, i, std::get<double>(v));
      break;
    case 3: {
      const std::string& b = std::get<Text>(v).bytes;
      sqlite3_bind_text(s_, i, b.data(), static_cast<int>(b.size()), SQLITE_STATIC);
      break;
    }
    case 4: {
      const std::string& b = std::get<Blob>(v).bytes;
      sqlite3_bind_blob(s_, i, b.data(), static_cast<int>(b.size()), SQLITE_STATIC);
      break;
    }
  }
}

std::string Stmt::Str(int col) const {
  const void* p = sqlite3_column_blob(s_, col);
  int n = sqlite3_column_bytes(s_, col);
  return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

Value Stmt::ColumnValue(int col) const {
  switch (sqlite3_column_type(s_, col)) {
    case SQLITE_INTEGER:
      return sqlite3_column_int64(s_, col);
    case SQLITE_FLOAT:
      return sqlite3_column_double(s_, col);
    case SQLITE_TEXT: {
      const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
      return Text{std::string(p, static_cast<size_t>(sqlite3_column_bytes(s_, col)))};
    }
    case SQLITE_BLOB: {
      const void* p = sqlite3_column_blob(s_, col);
      int n = sqlite3_column_bytes(s_, col);
      return Blob{p ? std::string(static_cast<const char*>(p), static_cast<size_t>(n))
                    : std::string()};
    }
    default:
      return Null{};
  }
}

Db& Db::operator=(Db&& o) noexcept {
  if (this != &o) {
    if (db_) sqlite3_close_v2(db_);
    db_ = o.db_;
    o.db_ = nullptr;
  }
  return *this;
}

Db::~Db() {
  if (db_) sqlite3_close_v2(db_);
}

Result<Db> Db::Open(const std::string& path, int flags, int busy_timeout_ms) {
  static std::once_flag configured;
  std::call_once(configured, [] {
    // Memory statistics take a process-wide mutex on every SQLite
    // allocation (several per row copied); ferry never reads them. Only
    // possible before SQLite initialises; otherwise a harmless no-op.
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  });
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  Db db(raw);
  if (rc != SQLITE_OK) {
    std::string msg = raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    return Unavailable(fmt::format("cannot open SQLite database {}: {}", path, msg));
  }
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_handler(raw, &FineBusyHandler,
                       reinterpret_cast<void*>(static_cast<intptr_t>(busy_timeout_ms)));
  return db;
}

void Db::SetBusyTimeout(int busy_timeout_ms) {
  if (!db_) return;
  sqlite3_busy_handler(db_, &FineBusyHandler,
                       reinterpret_cast<void*>(static_cast<intptr_t>(busy_timeout_ms)));
}

Status Db::Exec(const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return Status::Ok();
  std::string msg = err ? err : sqlite3_errstr(rc);
  sqlite3_free(err);
  return Error(rc, fmt::format("{} ({})", sql.substr(0, 80), msg));
}

Result<Stmt> Db::Prepare(const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &s, nullptr);
  if (rc != SQLITE_OK) return Error(rc, fmt::format("prepare {}", sql.substr(0, 120)));
  return Stmt(s);
}

Status Db::Error(int rc, std::string_view what) const {
  std::string msg = fmt::format("{}: {}", what, db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
      return Unavailable(std::move(msg));
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Permanent(std::move(msg));
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG:
      return Permanent(std::move(msg));
    default:
      return Internal(std::move(msg));
  }
}

std::string QuoteIdent(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    out += c;
    if (c == '"') out += '"';
  }
  return out + "\"";
}

}  // namespace ferry
