// PgCapture: the ChangeCapture (stores/change_capture.h) of a PostgreSQL
// legacy database, by logical decoding.
//
// Capture: a logical replication slot "ferry_<16 hex digits>" (a hash of the
// database and the connection's current schema: one online migration per
// legacy schema at a time) with the wal2json output plugin (Debian
// postgresql-15-wal2json, on the SERVER), created before the copy starts, so
// every transaction that commits after it is decoded, in commit order,
// whichever role wrote it. Read peeks (pg_logical_slot_peek_changes,
// format-version 2, only the migrated tables) and keys each change by the
// table's primary key: an INSERT by its new row, a DELETE by its identity
// (the old key), an UPDATE by its identity and its new row's key (both, so a
// moved key is replayed at both places). Acknowledge advances the slot
// (pg_replication_slot_advance) once the changes are durable in the new
// store; until then the server keeps the WAL they are in. TRUNCATE is not a
// keyed change: while captured, each migrated table has a BEFORE TRUNCATE
// trigger "__ferry_capture" that refuses it (SQLSTATE FY003).
//
// Reading: the applier streams (START_REPLICATION on a replication=database
// connection, so every WAL record is decoded once; the SQL functions would
// decode from the slot's restart point on every call), and confirms applied
// positions with standby status updates; the coordinator's backlog probe
// peeks (pg_logical_slot_peek_changes) while no applier streams. The slot
// serves one reader at a time: the applier's Pause() (end of its lease)
// closes the stream.
//
// Positions are LSNs as int64: a batch ends at the end of the commit record
// of its last transaction. caught_up: streaming, the sender's position from
// its keepalives (every transaction that committed before it was sent);
// peeking, the flush LSN read just before a peek that was not cut short.
//
// Requirements (Check refuses each in one line, installing nothing):
// wal_level=logical, a free replication slot (max_replication_slots), a role
// with the REPLICATION attribute (or a superuser), every migrated table an
// ordinary table with a primary key and replica identity DEFAULT or FULL,
// the TRIGGER privilege on it (ownership), and no guard from a finished
// migration on it. A missing wal2json plugin fails Install before anything
// is created.
//
// Guard: a statement trigger "__ferry_guard" BEFORE INSERT OR UPDATE OR
// DELETE OR TRUNCATE on each migrated table, calling the function
// <schema>.__ferry_guard(message), which raises the message with SQLSTATE
// FY002.
//
// Session: TimeZone UTC, DateStyle ISO, extra_float_digits 3, bytea_output
// hex (the same text forms PgStore reads keys in).
//
// Thread safety: one connection; confine to one thread.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/pg_util.h"
#include "stores/change_capture.h"

namespace ferry {

class PgCapture : public ChangeCapture {
 public:
  static Result<std::unique_ptr<PgCapture>> Open(const std::string& uri);

  std::string Describe() const override;
  void SetTables(const std::vector<TableSchema>& tables) override;
  Status Check() override;
  Status Install() override;
  Result<CaptureState> Inspect() override;
  Result<Backlog> Probe(int64_t position, uint64_t limit) override;
  Result<ChangeBatch> Read(int64_t after, size_t max_changes) override;
  Status Acknowledge(int64_t upto) override;
  Status Flush() override;
  void Pause() override;
  Status Freeze(int wait_ms) override;
  Result<int64_t> FreezePoint() override;
  Status CommitGuard(const std::string& new_store) override;
  void Thaw() override;
  bool frozen() const override { return frozen_; }
  Status RemoveCapture() override;
  Result<std::vector<std::string>> Unguard(const std::vector<std::string>& tables) override;

  const std::string& slot() const { return slot_; }

  // Exposed for tests: the Unix ms of a timestamptz text in ISO style
  // ("2026-12-04 20:39:27.168228+00"); 0 if it cannot be read.
  static int64_t TimestampMs(const std::string& text);

 private:
  // How a key column's decoded JSON value becomes the Value PgStore reads.
  enum class KeyKind { kInt, kFloat, kBool, kBytes, kText };
  struct KeyCol {
    std::string name;
    KeyKind kind = KeyKind::kText;
  };
  struct TableKeys {
    std::vector<KeyCol> cols;
  };

  explicit PgCapture(std::string uri);
  Status Connect();
  Status EnsureConnected();
  Result<PgResult> Query(const std::string& sql, std::string_view what,
                         const std::vector<std::string>& params = {});
  Status Exec(const std::string& sql, std::string_view what);
  Status LoadKeys();
  std::string Qualified(const std::string& name) const;
  std::string TableList() const;  // "s"."a", "s"."b"
  Result<bool> SlotExists();
  Status DropCaptureTriggers();
  // wal2json's options: the add-tables list (sql: as a text value for the
  // SQL functions) or the whole option list of START_REPLICATION.
  std::string PluginOptions(bool sql) const;
  // One wal2json row at `lsn` into txn_ and, at its commit (if after
  // `after`), into *batch.
  Status DecodeRow(int64_t lsn, const char* data, size_t len, int64_t after, ChangeBatch* batch);
  // The SQL interface (pg_logical_slot_peek_changes): Probe's reads.
  Result<ChangeBatch> Peek(int64_t after, size_t max_changes);
  // The replication stream (Read's): a walsender connection decoding each
  // WAL record once, from `from`.
  Status StartStream(int64_t from);
  void StopStream();
  Status SendFeedback(int64_t lsn, bool reply);

  // The transaction being read: its keys wait for its commit.
  struct Txn {
    std::vector<ChangedKey> keys;
    uint64_t changes = 0;
    int64_t ms = 0;
  };

  std::string uri_;
  std::string password_;
  PgConnPtr conn_;
  std::string schema_;
  std::string slot_;
  std::vector<TableSchema> tables_;
  std::map<std::string, TableKeys> keys_;  // by table name; filled by LoadKeys
  bool frozen_ = false;
  bool guard_committing_ = false;
  Txn txn_;
  PgConnPtr stream_;            // replication connection while streaming
  int64_t stream_pos_ = -1;     // the stream has delivered everything up to here
  int64_t stream_sent_ = 0;     // the sender's position from its last keepalive
  int64_t acked_ = 0;           // last position confirmed to the sender
  int64_t last_commit_ms_ = 0;  // commit time of the last transaction received
};

}  // namespace ferry
