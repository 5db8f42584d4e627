// SqliteStore: the Store (stores/store.h) for `sqlite:PATH`, the embedded
// default on both sides of a migration. One class, implemented by concern:
// sqlite_store.cc (opening, shared per-file state, statement cache),
// sqlite_schema.cc (ListTables, CreateSchema), sqlite_plan.cc (PlanSplits),
// sqlite_read.cc (ReadBatch), sqlite_write.cc (WriteBatch, fences, the
// metadata table, markers, plans, SyncWrites), sqlite_copy.cc (direct copy,
// also through a projection), sqlite_projection.cc (a migration spec's
// projections, rejects, its create parsed in memory);
// sqlite_dialect.h maps SQLite's declared types and index DDL to and from
// the neutral schema model.
//
// Opening:
//   - kSource: opened SQLITE_OPEN_READONLY; the file must exist and be a SQLite
//     database, else kInvalidArgument naming the path. The source's journal
//     mode and contents are never changed.
//   - kTarget: opened read-write, created if missing, switched to
//     journal_mode=WAL and synchronous=NORMAL, and the metadata table is
//     created at once, so an unwritable file or directory fails at Open with
//     kInvalidArgument naming the path, before anything else happens.
//
// Durability (targets): a committed batch is atomic and visible at once, but
// is fsynced lazily (WAL, synchronous=NORMAL): SyncWrites fsyncs the WAL,
// which makes every batch committed so far by any connection durable
// (checkpoints fsync the database file themselves). CreateSchema and
// WriteMarker sync before they return. WAL checkpoints run on a thread per
// file and process (common/wal_checkpointer.h), never inside a batch's
// commit while other writers wait.
//
// Keys: a table's key is its declared primary key (columns in PK order);
// a table without one is keyed by its rowid, read and written through the
// first of `rowid`, `_rowid_`, `oid` that is not a column name (RowidAlias,
// stores/table_checks.h).
// All key comparisons happen in SQLite (row-value comparisons on the PK), so
// every row falls into exactly one range; keys and bounds cross the interface
// encoded with common/key_codec.h.
//
// Metadata table `__ferry_meta (key TEXT PRIMARY KEY, value)`:
//   'version'                    the data version (integer)
//   'boundary'                   the mirrored boundary (blob), absent = none
//   'fence/<plan_id>/<range_id>' the highest epoch that wrote the range
//   'fence_end/<plan_id>/<range_id>' (blob) the end a split gave the range
//   'plan/<plan_id>'             1: the coordinator of that plan created its schema here
// It is never listed, and a TableSchema naming it is refused
// (stores/table_checks.h).
//
// A store opened as kSource refuses CreateSchema, WriteBatch and WriteMarker
// with kFailedPrecondition (and is opened read-only besides).
//
// Prepared statements are cached per (table, statement shape) for the life of
// the store; a batch never re-prepares. Memory is bounded by one batch.
//
// Thread safety: a SqliteStore is one SQLite connection; confine it to one
// thread (or serialize all calls externally). Target stores of one process
// opened on the same file share a writer mutex, so their write transactions
// queue in-process rather than polling SQLite's file lock.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/sqlite_util.h"
#include "common/status.h"
#include "common/value.h"
#include "stores/store.h"
#include "stores/table_checks.h"

namespace ferry {

namespace sqlite_sql {
struct KeySql;
struct RangeFilter;
}  // namespace sqlite_sql

class SqliteStore : public Store {
 public:
  // Opens the SQLite file at `path` (no `sqlite:` prefix) in `role`; see the
  // file comment for what is checked. Errors: kInvalidArgument for a missing,
  // unreadable, unwritable or non-SQLite file (message names the path and the
  // flag to check); kUnavailable for a transient failure (e.g. locked).
  static Result<std::unique_ptr<SqliteStore>> Open(const std::string& path, StoreRole role);

  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  // "sqlite:PATH".
  std::string Describe() const override;

  // User tables sorted by name: no sqlite_% tables, no metadata table, no
  // views. Generated columns are not listed (the target recomputes them from
  // create_sql). Each column carries its declared type and its neutral type,
  // each index its DDL and its neutral form (sqlite_dialect.h). Fails with
  // kInvalidArgument naming the table for a rowid table whose rowid aliases
  // are all shadowed by columns; virtual and shadow tables are listed as
  // unsupported.
  Result<std::vector<TableSchema>> ListTables() override;

  // Split i is the key of row i * rows_per_range (0-based), i >= 1, so
  // ranges are [split_{i-1}, split_i). One ordered pass over the keys, or
  // none for a dense rowid key (see PlanDenseRowid). Fails with
  // kInvalidArgument if a primary-key column holds NULL, or if
  // rows_per_range is 0.
  Result<std::vector<std::string>> PlanSplits(const TableSchema& table, uint64_t rows_per_range,
                                              uint64_t* rows) override;

  // See Store::ReadBatch. Returns at least one row when any is left in the
  // range, stops once out->bytes >= max_bytes. kInvalidArgument for a
  // malformed bound / cursor or a key whose arity does not match the table.
  Status ReadBatch(const TableSchema& table, const KeyRange& range, std::string_view after,
                   size_t max_rows, size_t max_bytes, RowBatch* out) override;

  // One transaction: the metadata table, then every table and its indexes,
  // each only if missing. A table of dialect "sqlite" is created from its
  // create_sql and index_sql as they are; a table another engine listed from
  // its neutral model (NeutralSchema, sqlite_dialect.h: types by kind,
  // indexes rebuilt). An existing table whose column names differ
  // (case-insensitively, in order) fails the whole call with
  // kFailedPrecondition naming the table and the difference.
  Status CreateSchema(const std::vector<TableSchema>& tables) override;

  // One BEGIN IMMEDIATE transaction: checks and records the fence, then
  // INSERT OR REPLACE of every row. kLeaseLost if a newer epoch is recorded
  // for the range; kUnavailable for busy / full / I/O / read-only failures;
  // kPermanent for constraint violations. On any error nothing is written.
  Status WriteBatch(const TableSchema& table, const RowBatch& batch, const Fence& fence) override;

  // One DELETE per key, in a BEGIN IMMEDIATE transaction as WriteBatch's.
  Status DeleteRows(const TableSchema& table, const std::vector<std::string>& keys,
                    const Fence& fence) override;

  // One ordered walk of the key (LIMIT 1 OFFSET skip), reading no other cell.
  Result<std::optional<std::string>> KeyAfter(const TableSchema& table, const KeyRange& range,
                                              std::string_view after, uint64_t skip) override;

  // One SELECT in key order, each row folded from the engine's cells.
  Status DigestRows(const TableSchema& table, const KeyRange& range, std::string_view after,
                    std::string_view through, size_t max_rows, DigestMode mode,
                    RowsDigest* out) override;

  // Direct copy (Store::CanCopyFrom / CopyBatch) from a SqliteStore opened as
  // the source: this target connection ATTACHes the source file read-only
  // (file:PATH?mode=ro, at most one source per connection) and copies each
  // batch with one INSERT OR REPLACE ... SELECT ... ORDER BY key LIMIT n in
  // which the function ferry_fold(cells) folds every selected row into the
  // digest (same bytes as FoldDigest) and stops the batch at max_bytes. False
  // when the query plan would sort instead of walking the key in order (the
  // fold must see exactly the rows copied, in key order). CopyBatch checks
  // that the rows folded equal the rows written (kInternal, rolled back, if
  // not). Errors as for WriteBatch.
  bool CanCopyFrom(Store& source, const TableSchema& table) override;
  Status CopyBatch(Store& source, const TableSchema& table, const KeyRange& range,
                   std::string_view after, size_t max_rows, size_t max_bytes, const Fence& fence,
                   CopiedBatch* out) override;

  // sqlite_apply.cc: `key IN (...)` in chunks of a few hundred keys.
  Status ReadKeys(const TableSchema& table, const std::vector<std::string>& keys,
                  RowBatch* out) override;
  // One BEGIN IMMEDIATE transaction; errors as for WriteBatch.
  Status ApplyChanges(const ChangeApply& apply) override;
  Result<ChangePosition> ReadChangePosition(const std::string& plan_id) override;

  // Projections (Store::DescribeProjection, ReadProjected; sqlite_projection.cc):
  // one SELECT over the table with the key columns first, qualified by the
  // table's name (so an alias in the select list cannot change the key
  // order), the range conditions, the projection's WHERE on lines of its
  // own, ORDER BY key LIMIT n.
  Result<std::vector<ProjectedColumn>> DescribeProjection(const TableSchema& table,
                                                          const Projection& p) override;
  Status ReadProjected(const TableSchema& table, const Projection& p, const KeyRange& range,
                       std::string_view after, size_t max_rows, size_t max_bytes,
                       RowBatch* out) override;
  // Direct copy through a projection: as CopyBatch, with the projection in
  // a WITH clause (each expression evaluated once per row) whose result the
  // INSERT OR REPLACE takes and ferry_fold folds.
  bool CanCopyProjected(Store& source, const TableSchema& table, const Projection& p,
                        const TableSchema& into) override;
  Status CopyProjected(Store& source, const TableSchema& table, const Projection& p,
                       const TableSchema& into, const KeyRange& range, std::string_view after,
                       size_t max_rows, size_t max_bytes, const Fence& fence,
                       CopiedBatch* out) override;

  // __ferry_rejects (table_name TEXT, source_key TEXT, reason TEXT,
  // PRIMARY KEY (table_name, source_key)); WriteRejects is INSERT OR REPLACE
  // under the fence, in one BEGIN IMMEDIATE transaction.
  Status CreateRejectsTable() override;
  Status WriteRejects(const std::vector<Reject>& rejects, const Fence& fence) override;
  Result<std::vector<Reject>> ReadRejects(const std::string& table, size_t limit) override;

  // DescribeCreateTable for SQLite: runs `create_sql` in an in-memory
  // database and reads the table back (pragma table_xinfo; generated
  // columns are not listed).
  static Result<TableSchema> DescribeCreate(const std::string& create_sql);
  // The statements CreateSchema runs for `table` when it is missing: its
  // create_sql for a "sqlite" table that has one, else a CREATE TABLE from
  // its columns (declared types for "sqlite", the neutral model for another
  // dialect), then its indexes (IF NOT EXISTS).
  static Result<std::vector<std::string>> CreateStatements(const TableSchema& table);

  // nullopt when the metadata table or the 'version' key is absent.
  // kFailedPrecondition when the stored version is not an integer.
  Result<std::optional<int64_t>> ReadVersion() override;
  Result<Marker> ReadMarker() override;
  // Sets 'version' when marker.version has a value (an absent version leaves
  // the stored one alone); sets 'boundary', or deletes it when empty.
  Status WriteMarker(const Marker& marker) override;
  Status RecordPlan(const std::string& plan_id) override;
  Result<bool> HasPlan(const std::string& plan_id) override;
  // fsyncs the WAL if this connection committed since the last sync.
  Status SyncWrites() override;

  // The column name a rowid-keyed table's rowid is read and written as (see
  // RowidAlias in stores/table_checks.h).
  static std::string RowidAlias(const std::vector<Column>& columns) {
    return ferry::RowidAlias(columns);
  }

 private:
  class Txn;

  SqliteStore(std::string path, StoreRole role, Db db);

  // The prepared statement for `sql`, prepared on first use and kept for
  // the life of the store (keyed by the SQL text, so a different schema under
  // the same table name gets its own statement). Pointers stay valid.
  Result<Stmt*> Cached(const std::string& sql);

  // PlanSplits for a one-column key `key` (SQL) that is the table's rowid
  // and holds max - min + 1 keys: the splits and row count from count, min
  // and max. Returns false (nothing planned) for any other key.
  Result<bool> PlanDenseRowid(const TableSchema& table, const std::string& key,
                              uint64_t rows_per_range, uint64_t* rows,
                              std::vector<std::string>* splits);

  // CREATE TABLE IF NOT EXISTS for the metadata table (inside the caller's
  // transaction).
  Status CreateMetaTable();
  Result<bool> MetaTableExists();
  Result<std::optional<Value>> MetaGet(std::string_view key);
  Status MetaPut(std::string_view key, const Value& value);
  Status MetaDelete(std::string_view key);
  Status CreateOneTable(const TableSchema& table);
  // In a write transaction: kLeaseLost if a newer epoch than fence.epoch is
  // recorded for the range, else records fence.epoch; sets *end to the end
  // a split gave the range ('fence_end/<plan>/<range>', "" = none), and for
  // a split's tail records its parent's end. `end` may be null (writes
  // outside the range's keys: rejects).
  Status CheckAndRecordFence(const Fence& fence, std::string* end = nullptr);
  // kLeaseLost if `key` is at or past `end` (non-empty).
  static Status CheckBeforeEnd(const Fence& fence, const std::string& end, std::string_view key);

  // Targets of one process share, per file, a writer mutex held by every
  // write transaction and a WalCheckpointer (see the .cc).
  struct SharedFile;
  static std::shared_ptr<SharedFile> Shared(const std::string& path);

  struct FoldState;
  static void FoldRow(sqlite3_context* ctx, int argc, sqlite3_value** argv);
  static std::string CopySql(const TableSchema& table, const std::string& alias,
                             std::vector<std::string> conditions, size_t limit_param);
  // The projected copy's statement (see CopyProjected): `flat` lets SQLite
  // merge the projection into the copy (its expressions are evaluated twice:
  // for the row and for ferry_fold), else the projection runs as a
  // co-routine (once, but each cell is copied between the two).
  static std::string ProjectedCopySql(const TableSchema& table, const std::string& alias,
                                      const Projection& p, const TableSchema& into,
                                      const std::string& into_alias, size_t width, bool flat,
                                      std::vector<std::string> conditions, size_t limit_param);
  // True when the projection's select list calls no function and runs no
  // subquery: evaluating it twice costs less than the co-routine's copies.
  // Remembered per table and select list.
  bool FlatProjection(const TableSchema& table, const std::string& alias, const Projection& p);
  // Once a batch of `table` ended on max_bytes, its statement went on
  // scanning to the range's end (ferry_fold refuses the rest; the LIMIT
  // counts only copied rows). From then on every batch of the table first
  // finds the key of the last row it may scan (an OFFSET walk of the key,
  // which reads no cells; counting only rows `where` keeps, when not empty)
  // and adds "key <= it" to `filter`. How many rows it may scan follows the
  // rows that fitted (RunCopy): a quarter more than the last full batch,
  // twice as many after a batch that ended on the bound. *bound: the rows
  // the bound allows, 0 if none was added.
  Status BoundBatch(const TableSchema& table, const sqlite_sql::KeySql& key,
                    const std::string& where, size_t max_rows, sqlite_sql::RangeFilter* filter,
                    size_t* bound);
  // ATTACHes `src` (a source SqliteStore) for direct copies; false if this
  // connection cannot (another source attached, a failure).
  bool AttachSource(SqliteStore* src);
  // Runs the prepared copy `copy` (params bound) with FoldRow folding into
  // a batch that starts at `digest`: key cells at `key_cells`, row cells from
  // argument `first_cell` on. Inside the caller's transaction.
  // `bound`: what BoundBatch allowed; the batch's end sets the next bound.
  Status RunCopy(Stmt* copy, const TableSchema& table, size_t bound, std::vector<size_t> key_cells,
                 size_t first_cell, size_t max_bytes, const std::string& what, CopiedBatch* out);
  Status RefuseWrite() const;  // for writes to a source

  std::string path_;
  StoreRole role_;
  std::shared_ptr<SharedFile> shared_;  // targets only; outlives db_
  Db db_;
  std::unordered_map<std::string, Stmt> stmts_;  // by SQL text
  std::string attached_;                         // path of the source attached for direct copy
  FoldState* fold_ = nullptr;                    // the running CopyBatch's state, else null
  std::unordered_map<std::string, size_t> scan_rows_;  // BoundBatch's rows per table
  std::unordered_map<std::string, bool> flat_;         // FlatProjection's answers
  bool unsynced_ = false;                              // committed since the last SyncWrites
  std::vector<Value> key_values_;                      // ReadProjected's scratch
};

}  // namespace ferry
