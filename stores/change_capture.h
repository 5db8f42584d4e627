// ChangeCapture: ferry's one, narrow write capability on a LEGACY store, for
// online migrations (DESIGN.md "Online mode", README "Online migrations").
// Everything else ferry does to a legacy store is a read (Store, opened
// read-only); this module is the only code that writes to one, and it writes
// only these objects:
//
//   capture  what records the keys the application changes while ferry
//            copies: SQLite — AFTER INSERT/UPDATE/DELETE triggers
//            "__ferry_capture_<table>_<op>" on each migrated table writing
//            into the change table `__ferry_changes`; PostgreSQL — a logical
//            replication slot "ferry_<hash of database and schema>" decoded
//            with wal2json (and a BEFORE TRUNCATE trigger refusing TRUNCATE,
//            which the slot would not carry as keys);
//   guard    after cut-over, BEFORE INSERT/UPDATE/DELETE (PostgreSQL also
//            TRUNCATE) triggers "__ferry_guard_<table>_<op>" that refuse every
//            write to a migrated table with the message GuardMessage() makes
//            ("ferry: table t has moved to <new store>; write there").
//
// Positions: a change's place in commit order, an int64 that only grows.
// SQLite: the change table's AUTOINCREMENT id (one writer at a time, so id
// order is commit order and a reader never sees id n+1 before id n).
// PostgreSQL: the end LSN of the commit record of the change's transaction.
// Position 0 is "before every change".
//
// Who calls what: the coordinator installs and inspects the capture, probes
// the backlog, freezes and guards the tables at cut-over and removes the
// capture at the end; the applier (worker/change_applier.h) reads changes
// and acknowledges the applied ones; `ferryctl unguard` removes guards and
// an abandoned capture. Each process opens its own ChangeCapture.
//
// Thread safety: a ChangeCapture is a connection; confine it to one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "stores/store.h"

namespace ferry {

// One changed key of a migrated table.
struct ChangedKey {
  std::string table;
  std::string key;  // encoded (common/key_codec.h) as Store::ReadBatch encodes the row's key
};

// Changes read after a position, in commit order.
struct ChangeBatch {
  // Every key a change touched: an UPDATE that moved a row's key gives its
  // old and its new key. Keys may repeat.
  std::vector<ChangedKey> keys;
  uint64_t changes = 0;  // change records (rows inserted, updated or deleted)
  // Position of the last change read (or of the last transaction read, on
  // PostgreSQL); the next Read continues after it. Equal to `after` when
  // nothing was read.
  int64_t end = 0;
  // When nonzero: every change committed before this position is in this
  // batch or before it (the read was not cut short by max_changes). The
  // cut-over's drain is complete once an applier applied a batch whose
  // caught_up reaches the freeze point.
  int64_t caught_up = 0;
  int64_t oldest_ms = 0;  // commit time (Unix ms) of the batch's first change; 0 if empty
  bool more = false;      // max_changes cut the read short
  // Changes known to follow the batch at the time of the read (SQLite:
  // exact; PostgreSQL: 0, or 1 while the decoder has not sent everything),
  // and the commit time of the first of them (SQLite), or a time it is not
  // older than (PostgreSQL: the last commit received); 0 when none.
  uint64_t left = 0;
  int64_t next_ms = 0;
};

// What is installed on the legacy store.
struct CaptureState {
  bool capture = false;               // change table / triggers / slot of ferry exist
  std::vector<std::string> captured;  // tables with capture triggers (SQLite)
  std::vector<std::string> guarded;   // tables with a write-refusal guard
  std::vector<std::string> slots;     // ferry's replication slots (PostgreSQL)
};

// The unapplied changes after a position.
struct Backlog {
  uint64_t pending = 0;   // changes after the position (PostgreSQL: at most the probe's limit)
  bool exact = true;      // false: `pending` is a lower bound
  int64_t oldest_ms = 0;  // commit time of the oldest one; 0 if none
};

class ChangeCapture {
 public:
  virtual ~ChangeCapture() = default;

  // The redacted URI.
  virtual std::string Describe() const = 0;

  // The migrated tables (as the legacy store lists them): what Read keys by
  // and what Install, Freeze and CommitGuard act on. Call once, first.
  virtual void SetTables(const std::vector<TableSchema>& tables) = 0;

  // ---- install (coordinator, before planning) ----
  // Refuses, changing nothing, what cannot be captured: kInvalidArgument
  // naming the setting (PostgreSQL wal_level, max_replication_slots, the
  // wal2json plugin) or the table (no primary key, replica identity NOTHING,
  // a guard already installed by a finished migration) and what to do.
  virtual Status Check() = 0;
  // Installs the capture for SetTables' tables; idempotent (a restart
  // installs nothing twice and loses no change recorded so far).
  virtual Status Install() = 0;
  virtual Result<CaptureState> Inspect() = 0;
  // The changes after `position` that are not applied yet. PostgreSQL
  // counts by decoding (at most `limit` changes: a lower bound beyond it).
  virtual Result<Backlog> Probe(int64_t position, uint64_t limit) = 0;

  // ---- the applier ----
  // Up to about `max_changes` changes after `after`, in commit order
  // (PostgreSQL reads whole transactions, so a batch may hold a few more).
  virtual Result<ChangeBatch> Read(int64_t after, size_t max_changes) = 0;
  // Drops the changes up to `upto` (applied and durable in the new store):
  // SQLite deletes them from the change table, PostgreSQL advances the
  // slot. Best effort and quick: kUnavailable if the store is busy (the
  // next call drops them).
  virtual Status Acknowledge(int64_t upto) = 0;
  // Makes every change committed so far readable by Read (PostgreSQL with
  // synchronous_commit=off: forces the WAL to disk). Default: nothing.
  virtual Status Flush() { return Status::Ok(); }
  // The applier's lease ended: let go of what Read holds (PostgreSQL: the
  // replication stream, so the slot is free). Default: nothing.
  virtual void Pause() {}

  // ---- cut-over (coordinator) ----
  // Begins the freezing transaction: writes to the migrated tables wait
  // until CommitGuard or Thaw (reads go on). SQLite: BEGIN IMMEDIATE on
  // this connection; PostgreSQL: LOCK TABLE ... IN EXCLUSIVE MODE. Waits at
  // most `wait_ms`; kUnavailable if the lock was not free by then (retry).
  virtual Status Freeze(int wait_ms) = 0;
  // Inside the freeze: the position of the last change committed before it.
  virtual Result<int64_t> FreezePoint() = 0;
  // Inside the freeze: installs the guard on the migrated tables, raising
  // GuardMessage(table, new_store), removes the capture triggers (SQLite:
  // and the change table), and commits. kUnavailable: not committed yet
  // (busy; the freeze holds, call again); any other error: the freeze was
  // rolled back.
  virtual Status CommitGuard(const std::string& new_store) = 0;
  // Rolls the freezing transaction back (writes flow again, capture intact).
  virtual void Thaw() = 0;
  virtual bool frozen() const = 0;

  // ---- removal ----
  // Removes ferry's capture (change table, capture triggers, slot), keeping
  // the guard. kUnavailable when the slot is in use (retry).
  virtual Status RemoveCapture() = 0;
  // Removes the guard of `tables` (every guarded table when empty) and all
  // of ferry's capture. Returns what it removed, one line each.
  virtual Result<std::vector<std::string>> Unguard(const std::vector<std::string>& tables) = 0;
};

// Opens the legacy store at `uri` for capture: a read-write connection of
// its own (SQLite: the file must be writable; PostgreSQL: the role needs
// the REPLICATION attribute for the slot and ownership (or TRIGGER) of the
// migrated tables). kInvalidArgument naming the problem; kUnavailable when
// the server cannot be reached.
Result<std::unique_ptr<ChangeCapture>> OpenChangeCapture(const std::string& uri);

// The error the guard raises for a write to `table`, naming the new store by
// its redacted URI.
std::string GuardMessage(const std::string& table, const std::string& target_redacted);

}  // namespace ferry
