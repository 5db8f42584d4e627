// Test helpers: temporary directories, SQLite fixtures and an independent
// row-for-row comparison of two SQLite stores (plain SQL via ATTACH and
// EXCEPT, never ferry's own digest).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ferry::testing {

// A fresh directory under $TMPDIR, removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Runs `sql` (several statements allowed) on the SQLite file at `path`;
// aborts the test (ADD_FAILURE + returns false) on error.
bool ExecSql(const std::string& path, const std::string& sql);
// First column of the first row as int64 (or `fallback` if no row).
int64_t QueryInt(const std::string& path, const std::string& sql, int64_t fallback = -1);
// First column of the first row as text ("" if none or NULL).
std::string QueryText(const std::string& path, const std::string& sql);

// Compares every user table of two SQLite files: same tables, same row
// counts, and no row (including rowid for tables without a declared
// primary key) of one missing from the other, compared with SQL EXCEPT
// both ways (EXCEPT compares values with their types: 1 != '1' != x'31').
// Returns "" if equal, else a description of the first difference.
std::string CompareSqliteStores(const std::string& a, const std::string& b);

// Creates a store with several tables: `users` (INTEGER PRIMARY KEY, text,
// real, blob, NULLs; an index), `kv` (k BLOB PRIMARY KEY, v BLOB) and
// `events` (composite primary key, WITHOUT ROWID), `rows` rows spread over them.
void MakeDemoStore(const std::string& path, int64_t rows, uint64_t seed = 1);

// Every row of `table` (ordered by all columns), each cell rendered with SQL quote() (type-exact),
// one row per line. "" for an empty table; "<error: ...>" if the table cannot be read.
std::string DumpTable(const std::string& path, const std::string& table);

// Version marker of a store (sqlite:PATH), -1 if absent.
int64_t StoreVersion(const std::string& path);

}  // namespace ferry::testing

// ---- PostgreSQL (tests skip unless FERRY_TEST_PG_URI is set) ----
namespace ferry::testing {

// FERRY_TEST_PG_URI, or "" when unset.
std::string PgAdminUri();

// A fresh database <prefix><random> created through `admin_uri` (default:
// PgAdminUri()) and dropped (WITH (FORCE)) on destruction unless Keep() was
// called. ok() is false (with a test failure recorded) if it could not be
// created.
class PgTestDb {
 public:
  explicit PgTestDb(std::string admin_uri = PgAdminUri(), const std::string& prefix = "ferry_t_");
  ~PgTestDb();
  PgTestDb(const PgTestDb&) = delete;
  PgTestDb& operator=(const PgTestDb&) = delete;
  bool ok() const { return ok_; }
  const std::string& uri() const { return uri_; }
  const std::string& name() const { return name_; }
  void Keep() { keep_ = true; }  // leave the database for inspection

 private:
  std::string admin_, name_, uri_;
  bool ok_ = false, keep_ = false;
};

// `uri` with its database name replaced by `db`.
std::string PgUriWithDb(const std::string& uri, const std::string& db);
// Runs `sql` (several statements allowed); ADD_FAILURE and false on error.
bool PgExec(const std::string& uri, const std::string& sql);
// First cell of the first row as text ("" if none or NULL; "<error: ...>" on error).
std::string PgQueryText(const std::string& uri, const std::string& sql);
int64_t PgQueryInt(const std::string& uri, const std::string& sql, int64_t fallback = -1);

// Every row of `table` in a canonical, store-independent form, sorted:
// cells joined by '|', each NULL as N, integer as i:<n>, float as r:<shortest
// repr>, blob/bytea as b:<hex>, anything else as t:<text>. Read with plain
// libpq / sqlite3, never through ferry. For comparing stores across engines.
std::vector<std::string> PgCanonicalRows(const std::string& uri, const std::string& table);
// with_rowid: prepend the rowid as the first cell (a SQLite table without a
// primary key becomes a PostgreSQL table with a leading `rowid bigint` key).
std::vector<std::string> SqliteCanonicalRows(const std::string& path, const std::string& table,
                                             bool with_rowid = false);

}  // namespace ferry::testing
