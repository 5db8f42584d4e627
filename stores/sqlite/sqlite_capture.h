// SqliteCapture: the ChangeCapture (stores/change_capture.h) of a SQLite
// legacy file.
//
// Change table (created by Install, in the legacy file):
//   __ferry_changes (id INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL,
//                    ts INTEGER NOT NULL, k0, k1, ...)
// one row per changed key: the table, the commit time in Unix ms and the key
// cells k0..k(n-1) in primary-key order (the rowid for a table without a
// primary key), typeless so that every value keeps its storage class (1,
// '1' and x'31' stay three keys). Triggers "__ferry_capture_<table>_insert"
// / "_update" / "_delete" (AFTER, FOR EACH ROW) fill it: an INSERT records
// the new key, a DELETE the old, an UPDATE the new key and, when the key
// changed, the old one too. SQLite has one writer at a time, so ids follow
// commit order and a reader never sees id n+1 committed before id n.
//
// Not captured (SQLite fires no trigger for them; README "Online
// migrations"): rows that INSERT OR REPLACE deletes through a UNIQUE
// constraint other than the primary key (unless the writer enables
// PRAGMA recursive_triggers), and rowids that VACUUM renumbers in a table
// without an INTEGER PRIMARY KEY.
//
// Guard: "__ferry_guard_<table>_insert" / "_update" / "_delete" (BEFORE)
// raise ABORT with GuardMessage.
//
// Locking: the connection's busy timeout is short for what may run on the
// coordinator's event loop (Freeze, CommitGuard, Probe, Acknowledge) and
// longer for Install, RemoveCapture and Unguard.
//
// Thread safety: one connection; confine to one thread.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/sqlite_util.h"
#include "stores/change_capture.h"

namespace ferry {

class SqliteCapture : public ChangeCapture {
 public:
  // The existing SQLite file at `path`, opened read-write.
  static Result<std::unique_ptr<SqliteCapture>> Open(const std::string& path);
  ~SqliteCapture() override;

  std::string Describe() const override { return "sqlite:" + path_; }
  void SetTables(const std::vector<TableSchema>& tables) override;
  Status Check() override;
  Status Install() override;
  Result<CaptureState> Inspect() override;
  Result<Backlog> Probe(int64_t position, uint64_t limit) override;
  Result<ChangeBatch> Read(int64_t after, size_t max_changes) override;
  Status Acknowledge(int64_t upto) override;
  Status Freeze(int wait_ms) override;
  Result<int64_t> FreezePoint() override;
  Status CommitGuard(const std::string& new_store) override;
  void Thaw() override;
  bool frozen() const override { return frozen_; }
  Status RemoveCapture() override;
  Result<std::vector<std::string>> Unguard(const std::vector<std::string>& tables) override;

 private:
  SqliteCapture(std::string path, Db db) : path_(std::move(path)), db_(std::move(db)) {}
  Result<Stmt*> Cached(const std::string& sql);
  Status Run(const std::string& sql);
  // Names of ferry's triggers (capture or guard) and the tables they are on.
  Result<std::vector<std::pair<std::string, std::string>>> Triggers(const std::string& prefix);
  Result<bool> ChangeTableExists();
  // The number of k columns the change table has (0 if it does not exist).
  Result<size_t> KeyColumns();
  Status DropCapture();  // inside a write transaction
  Result<int64_t> LastChangeId();

  std::string path_;
  Db db_;
  std::map<std::string, Stmt> stmts_;
  std::vector<TableSchema> tables_;
  std::map<std::string, size_t> arity_;  // key cells per migrated table
  size_t max_arity_ = 1;
  bool frozen_ = false;
  bool guard_written_ = false;  // CommitGuard ran its DDL; only COMMIT is left
};

}  // namespace ferry
