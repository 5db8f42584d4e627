// The Store interface: what the coordinator and workers need from a legacy
// (source) or new (target) store. Implementations, one folder each:
// SqliteStore (stores/sqlite/, sqlite:PATH) and PgStore (stores/postgresql/,
// postgresql://...); OpenStore (stores/store_factory.cc) picks one by URI.
//
// Schemas cross engines through the neutral model (stores/column_type.h,
// stores/index_def.h): a store lists its tables with both its own DDL and the
// neutral description, and creates a table listed by another engine from the
// neutral description only. The preconditions every engine applies to a
// TableSchema and a batch are in stores/table_checks.h.
//
// Key space: (table name, encoded key). A KeyRange is [lo, hi) inside one
// table; an empty lo / hi means the table's start / end. Scans compare keys in
// the store itself (so every row falls into exactly one range), in the order
// common/key_codec.h preserves.
//
// Thread safety: a Store is a connection; use one per thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/value.h"
#include "stores/column_type.h"
#include "stores/index_def.h"

namespace ferry {

// Name of the reserved metadata table every store holds. Never copied, never
// listed as a user table.
inline constexpr const char* kMetaTable = "__ferry_meta";
// Name of the change table online capture keeps in a SQLite legacy store
// (stores/change_capture.h). Never listed as a user table.
inline constexpr const char* kChangesTable = "__ferry_changes";
// Name of the reserved table of rows a migration spec could not move
// (DESIGN.md "Migration spec"), in the new store: (table_name, source_key,
// reason), keyed on (table_name, source_key). Reserved like kMetaTable.
inline constexpr const char* kRejectsTable = "__ferry_rejects";

struct Column {
  // A constructor rather than aggregate initialization, so that `{name, type,
  // not_null}` leaves `neutral` unset without a missing-initializer warning.
  Column(std::string name = "", std::string type = "", bool not_null = false,
         std::optional<ColumnType> neutral = std::nullopt)
      : name(std::move(name)),
        type(std::move(type)),
        not_null(not_null),
        neutral(std::move(neutral)) {}

  std::string name;
  std::string type;  // declared type, in the store's dialect
  bool not_null = false;
  // `type` in the neutral model, set by the lister (ListTables). Unset in a
  // hand-built schema: NeutralSchema derives it from `type` and the dialect.
  std::optional<ColumnType> neutral;
};

struct TableSchema {
  std::string name;
  std::string dialect;  // "sqlite" or "postgresql"
  std::vector<Column> columns;
  // Positions in `columns` of the primary key, in key order. Empty: the table
  // is keyed by its rowid, which is then the first cell of every row.
  std::vector<size_t> key_columns;
  std::string create_sql;              // the source's own DDL
  std::vector<std::string> index_sql;  // the source's own index DDL
  // index_sql in the neutral model, one per entry, set by the lister; empty
  // in a hand-built schema (NeutralSchema derives it).
  std::vector<IndexDef> indexes;
  // Why ferry cannot copy this table ("is a virtual table, ..."); empty when
  // it can. Listed anyway, so that leaving it out of --tables works.
  std::string unsupported;
  // create_sql is a migration spec's `create` in this store's own dialect:
  // a target of that dialect runs it as it is (a statement for the
  // connection's default schema).
  bool create_verbatim = false;

  bool rowid_key() const { return key_columns.empty(); }
  size_t width() const { return columns.size() + (rowid_key() ? 1 : 0); }
};

struct KeyRange {
  std::string table;
  std::string lo;  // inclusive; empty = table start
  std::string hi;  // exclusive; empty = table end
};

// Destination-side fencing token: a batch for (plan, range) under `epoch`
// aborts if the store has recorded a higher epoch for that range.
//
// Splits: a range split in flight ends at the split key from then on. The
// tail's writes (parent_id != 0) record in the same transaction that the
// parent range now ends at `parent_end` (the tail's lo; the smallest end
// recorded wins), and every batch of a range whose end is recorded aborts
// with kLeaseLost if it writes a key at or past that end: a late batch of
// the parent's owner, which missed the split, cannot write into the tail.
struct Fence {
  std::string plan_id;
  uint64_t range_id = 0;
  uint64_t epoch = 0;
  uint64_t parent_id = 0;       // the range this one was split off; 0 = planned
  std::string parent_end = {};  // this range's lo: where the parent ends now
};

// The digest of some rows of a range (Store::DigestRows).
struct RowsDigest {
  uint64_t rows = 0;
  uint64_t digest = 0;   // rows' bytes (DigestMode) chained, common/digest.h
  std::string last_key;  // encoded key of the last row; empty when none
};

// How DigestRows folds a row: its encoded key, then each cell
// (stores/row_compare.h). kExact: the cell's storage class and bytes.
// kValues: the cell as its value's text (NULL apart; integers in decimal,
// reals as their shortest round-trip text, text and blobs as their bytes), so
// that the cells the SQLite <-> PostgreSQL type mapping converts (an integer
// into bytea, a real into numeric, text into bytea) digest alike on both
// engines.
// Equal kValues digests mean equal values cell by cell (up to the hash);
// unequal ones need a row-by-row look (stores/row_compare.h).
enum class DigestMode { kExact, kValues };

// What one batch copied, as the worker's cursor and digest need it. For
// CopyBatch, `digest` is the range digest before the batch on entry and after
// it on return (common/digest.h).
struct CopiedBatch {
  size_t rows = 0;
  uint64_t bytes = 0;    // as RowBatch::bytes counts them
  std::string last_key;  // encoded key of the last row copied; empty if none
  uint64_t digest = 0;
};

// ---- online migrations: change replay (DESIGN.md "Online mode") ----

// One table's share of a replayed batch of changes: what the new store must
// hold for the changed keys now.
struct TableChanges {
  const TableSchema* table = nullptr;  // the new store's table (its key and cells)
  RowBatch upserts;                    // current rows, cells as ReadBatch reads them
  std::vector<std::string> deletes;    // encoded keys that have no row any more
};

// One fenced transaction of the change applier (worker/change_applier.h).
// Metadata keys: 'fence/<plan>/0' (the applier's fence), 'changes/<plan>'
// (the change position), 'changes_applied/<plan>' (changes applied so far).
struct ChangeApply {
  std::string plan_id;
  uint64_t epoch = 0;         // the applier's lease, checked and recorded on fence/<plan>/0
  uint64_t fence_ranges = 0;  // > 0: the epoch is also recorded on fence/<plan>/1..fence_ranges
  int64_t from_position = 0;  // the change position must be this (compare-and-set) ...
  int64_t to_position = 0;    // ... and becomes this
  uint64_t changes = 0;       // change records applied (added to the applied counter)
  std::vector<TableChanges> tables;
};

// Where the change applier is, as the new store records it.
struct ChangePosition {
  int64_t position = 0;  // 0: nothing applied yet
  uint64_t applied = 0;
};

// A target table read through a migration spec: a select list and a filter
// over ONE legacy table, in the legacy store's dialect (spec/migration_spec.h).
struct Projection {
  // "*" (exactly): the row's cells as ReadBatch reads them ([rowid,]
  // columns); anything else: a SQL select list, evaluated by the store.
  std::string select = "*";
  std::string where;  // empty: every row; else a SQL condition
  bool star() const { return select == "*"; }
  bool identity() const { return star() && where.empty(); }
};

// One result column of a projection, as the legacy store describes it.
struct ProjectedColumn {
  std::string name;  // as the select names it (its alias, or the column's name)
  // Declared type in the legacy store's dialect: the type of the column it
  // carries as is, or of the expression when the engine knows it
  // (PostgreSQL); empty when untyped (a computed SQLite column).
  std::string type;
  bool not_null = false;  // carries a NOT NULL column as is
  // Position among the source row's cells ([rowid alias,] columns) of the
  // column this one carries as is; -1 for a computed column.
  int source_cell = -1;
};

// A row a migration spec could not move: for __ferry_rejects.
struct Reject {
  std::string table;       // the target table
  std::string source_key;  // the source key as text (KeyToFullString)
  std::string reason;      // one line
};

// What the coordinator mirrors into the new store's metadata table.
struct Marker {
  std::optional<int64_t> version;  // the data version, when known
  std::string boundary;            // encoded "table\0key" boundary; empty = none
};

class Store {
 public:
  virtual ~Store() = default;

  // The URI with credentials removed, for logs and status.
  virtual std::string Describe() const = 0;

  // ---- source side ----
  // User tables (never the metadata table), sorted by name; tables ferry
  // cannot copy are listed with TableSchema::unsupported set.
  virtual Result<std::vector<TableSchema>> ListTables() = 0;

  // Split points of `table` so that consecutive points are about
  // `rows_per_range` rows apart, ascending; sets *rows to the table's row
  // count. Fails with kInvalidArgument if the key cannot order every row
  // (e.g. NULL in a primary-key column).
  virtual Result<std::vector<std::string>> PlanSplits(const TableSchema& table,
                                                      uint64_t rows_per_range, uint64_t* rows) = 0;

  // Reads up to `max_rows` rows (stopping early past `max_bytes`) of `range`
  // with key > `after` (or >= range.lo when `after` is empty), in key order,
  // into *out (cleared first).
  virtual Status ReadBatch(const TableSchema& table, const KeyRange& range, std::string_view after,
                           size_t max_rows, size_t max_bytes, RowBatch* out) = 0;

  // The key of the row `skip` rows after `after` (0: the first row after
  // it) inside `range`, in key order; nullopt when the range has fewer rows
  // after `after`. Where a split in flight cuts a range (its owner picks the
  // key from its legacy store). Default: reads the rows (ReadBatch); the
  // engines walk only the key.
  virtual Result<std::optional<std::string>> KeyAfter(const TableSchema& table,
                                                      const KeyRange& range, std::string_view after,
                                                      uint64_t skip);

  // Digests up to `max_rows` rows of `range` with key > `after` (>= range.lo
  // when empty) and, when `through` is not empty, key <= `through`, in key
  // order (verification compares chunks of both stores this way). Default:
  // ReadBatch and fold (every engine digests alike); an engine may fold
  // without building Values.
  virtual Status DigestRows(const TableSchema& table, const KeyRange& range, std::string_view after,
                            std::string_view through, size_t max_rows, DigestMode mode,
                            RowsDigest* out);

  // ---- target side ----
  // Creates the tables and their indexes if they do not exist yet, and the
  // metadata table; fails if a table exists with different columns.
  virtual Status CreateSchema(const std::vector<TableSchema>& tables) = 0;

  // Writes `batch` as idempotent upserts in ONE transaction that first checks
  // and records `fence` (kLeaseLost, nothing written, if a newer epoch is
  // recorded for the range).
  virtual Status WriteBatch(const TableSchema& table, const RowBatch& batch,
                            const Fence& fence) = 0;

  // Deletes the rows with the given keys (encoded, as ReadBatch gives them;
  // any order) in ONE transaction that first checks and records `fence`
  // like WriteBatch (kLeaseLost, nothing deleted, if a newer epoch or an
  // end at or before one of the keys is recorded). Keys absent from the
  // store are no error. `table` is the schema WriteBatch takes (the legacy
  // store's). Verification removes rows the legacy store does not have.
  virtual Status DeleteRows(const TableSchema& table, const std::vector<std::string>& keys,
                            const Fence& fence) = 0;

  // Makes every batch this store has committed durable (they are atomic and
  // visible once committed, but may be made durable lazily). A worker calls
  // it before it reports a cursor, so every row before a cursor the
  // coordinator records survives a power loss. Default: nothing to do.
  virtual Status SyncWrites() { return Status::Ok(); }

  // ---- direct copy (optional) ----
  // True when this target can copy `table` straight from `source` with
  // CopyBatch: the engine copies rows itself, without them crossing into the
  // caller as Values. Default: false (use ReadBatch + WriteBatch).
  virtual bool CanCopyFrom(Store& source, const TableSchema& table) {
    (void)source;
    (void)table;
    return false;
  }
  // Only after CanCopyFrom(source, table) returned true. The same rows,
  // cursor, bytes and digest as source.ReadBatch(table, range, after, n,
  // max_bytes) followed by WriteBatch(table, batch, fence) and FoldDigest,
  // for an n in [1, max_rows] (the store may end a batch early; n = max_rows
  // unless max_bytes ended an earlier batch of the table), in ONE
  // transaction that first checks and records `fence` (kLeaseLost, nothing
  // written, if a newer epoch is recorded). out->rows is 0 only when the
  // range has no rows after `after`.
  virtual Status CopyBatch(Store& source, const TableSchema& table, const KeyRange& range,
                           std::string_view after, size_t max_rows, size_t max_bytes,
                           const Fence& fence, CopiedBatch* out) {
    (void)source, (void)table, (void)range, (void)after, (void)max_rows, (void)max_bytes;
    (void)fence, (void)out;
    return FailedPrecondition("this store cannot copy directly from another store");
  }

  // ---- online migrations (DESIGN.md "Online mode") ----
  // Source side: the current rows of `keys` (distinct encoded keys of
  // `table`), in any order, cells as ReadBatch reads them; a key without a
  // row is simply absent from *out (cleared first). A few statements per
  // call, never one per key.
  virtual Status ReadKeys(const TableSchema& table, const std::vector<std::string>& keys,
                          RowBatch* out) {
    (void)table, (void)keys, (void)out;
    return FailedPrecondition("this store cannot read rows by key");
  }
  // Target side, ONE transaction: checks and records the applier's fence
  // (kLeaseLost, nothing written, if a newer epoch is recorded), records the
  // epoch on the range fences when asked, compare-and-sets the change
  // position (kLeaseLost if another applier moved it), deletes and upserts
  // each table's keys, and adds to the applied counter. kPermanent for a
  // value or constraint the target refuses; kUnavailable for transient
  // failures. On any error nothing is written.
  virtual Status ApplyChanges(const ChangeApply& apply) {
    (void)apply;
    return FailedPrecondition("this store cannot apply changes");
  }
  // The change position and applied counter of `plan_id` ({0, 0} if none).
  virtual Result<ChangePosition> ReadChangePosition(const std::string& plan_id) {
    (void)plan_id;
    return ChangePosition{};
  }

  // ---- projections (migration specs; DESIGN.md "Migration spec") ----
  // The result columns of `p` over `table` (a source table), prepared by the
  // store but not run. kInvalidArgument with the engine's own message (a
  // column that does not exist, a syntax error) when it refuses the SQL.
  virtual Result<std::vector<ProjectedColumn>> DescribeProjection(const TableSchema& table,
                                                                  const Projection& p) {
    (void)table, (void)p;
    return FailedPrecondition("this store cannot evaluate a migration spec's select");
  }
  // ReadBatch through `p`: the rows of `range` after `after` for which
  // p.where holds, in key order; out->keys are their SOURCE keys (cursors and
  // fences stay in the source's key space), out->cells p's result columns
  // (out->width of them). A projection that is identity() reads exactly
  // what ReadBatch reads.
  virtual Status ReadProjected(const TableSchema& table, const Projection& p, const KeyRange& range,
                               std::string_view after, size_t max_rows, size_t max_bytes,
                               RowBatch* out) {
    if (p.identity()) return ReadBatch(table, range, after, max_rows, max_bytes, out);
    (void)table, (void)range, (void)after, (void)max_rows, (void)max_bytes, (void)out;
    return FailedPrecondition("this store cannot evaluate a migration spec's select");
  }
  // Direct copy through a projection: `p`'s result cells of each row of
  // source table `table` go into the cells of `into` (a target table whose
  // cells, in order, take them), with the same rows, cursor, bytes and
  // digest as source.ReadProjected + WriteBatch(into) + FoldDigest, in ONE
  // fenced transaction. Default: not supported.
  virtual bool CanCopyProjected(Store& source, const TableSchema& table, const Projection& p,
                                const TableSchema& into) {
    (void)source, (void)table, (void)p, (void)into;
    return false;
  }
  virtual Status CopyProjected(Store& source, const TableSchema& table, const Projection& p,
                               const TableSchema& into, const KeyRange& range,
                               std::string_view after, size_t max_rows, size_t max_bytes,
                               const Fence& fence, CopiedBatch* out) {
    (void)source, (void)table, (void)p, (void)into, (void)range, (void)after, (void)max_rows;
    (void)max_bytes, (void)fence, (void)out;
    return FailedPrecondition("this store cannot copy directly from another store");
  }

  // ---- rejects (targets; DESIGN.md "Migration spec") ----
  // Creates kRejectsTable if it does not exist.
  virtual Status CreateRejectsTable() {
    return FailedPrecondition("this store keeps no rejected rows");
  }
  // Records `rejects` idempotently (one row per (table, source_key): a
  // re-copied range does not duplicate them) in ONE transaction that first
  // checks and records `fence`, like WriteBatch.
  virtual Status WriteRejects(const std::vector<Reject>& rejects, const Fence& fence) {
    (void)rejects, (void)fence;
    return FailedPrecondition("this store keeps no rejected rows");
  }
  // Up to `limit` recorded rejects of `table` (every table when empty),
  // ordered by table and source key; none when kRejectsTable does not exist.
  virtual Result<std::vector<Reject>> ReadRejects(const std::string& table, size_t limit) {
    (void)table, (void)limit;
    return std::vector<Reject>();
  }

  // ---- metadata (both sides) ----
  // The data version recorded in the metadata table; nullopt if absent.
  virtual Result<std::optional<int64_t>> ReadVersion() = 0;
  virtual Result<Marker> ReadMarker() = 0;
  // Idempotently records `marker` (version and boundary) in one transaction.
  virtual Status WriteMarker(const Marker& marker) = 0;

  // ---- job identity (targets) ----
  // The coordinator records its plan id in the new store it created the
  // schema in (metadata key 'plan/<plan_id>', idempotent, durable on
  // return); a worker refuses to write to a store without its plan's record,
  // so a worker whose --target names another store (a typo, a staging
  // database with the same tables) stops instead of copying rows where the
  // version bump will never look.
  virtual Status RecordPlan(const std::string& plan_id) = 0;
  virtual Result<bool> HasPlan(const std::string& plan_id) = 0;
};

enum class StoreRole { kSource, kTarget };

// Opens `uri` (`sqlite:PATH` or `postgresql://...`). A source is opened
// read-only and must exist; a target is created if missing.
Result<std::unique_ptr<Store>> OpenStore(const std::string& uri, StoreRole role);

// The table `create_sql` (one CREATE TABLE statement in the dialect of the
// store at `target_uri`) makes, as that engine parses it, WITHOUT creating
// anything and without touching a SQLite file: SQLite runs it in an
// in-memory database; PostgreSQL in a read-only session, as a temporary
// table inside a transaction that is rolled back. The result has
// create_verbatim set, its columns with their declared types, its primary
// key (empty key_columns: none declared). kInvalidArgument with the
// engine's message when it refuses the statement; kUnavailable when the
// server cannot be reached.
Result<TableSchema> DescribeCreateTable(const std::string& target_uri,
                                        const std::string& create_sql);

// The statements CreateSchema of the store at `target_uri` would run to
// create `table` (CREATE TABLE, then its indexes), for --dry-run; nothing is
// opened. The table name is unqualified.
Result<std::vector<std::string>> TargetDdl(const std::string& target_uri, const TableSchema& table);

// "sqlite" or "postgresql": the schema dialect of the store at `uri`;
// kInvalidArgument for an unknown scheme.
Result<std::string> DialectOf(const std::string& uri);

// `uri` with any password replaced by "***".
std::string RedactUri(const std::string& uri);

// `table` with its neutral model complete: every Column::neutral and
// TableSchema::indexes that the lister left unset is derived from the
// declared text by the mapping of the engine that speaks `table.dialect`
// (stores/store_factory.cc knows them all). What a target calls before it
// creates a table listed by another engine. kInvalidArgument naming the
// table for an unknown dialect.
Result<TableSchema> NeutralSchema(const TableSchema& table);

}  // namespace ferry
