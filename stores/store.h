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
struct Fence {
  std::string plan_id;
  uint64_t range_id = 0;
  uint64_t epoch = 0;
};

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

  // ---- target side ----
  // Creates the tables and their indexes if they do not exist yet, and the
  // metadata table; fails if a table exists with different columns.
  virtual Status CreateSchema(const std::vector<TableSchema>& tables) = 0;

  // Writes `batch` as idempotent upserts in ONE transaction that first checks
  // and records `fence` (kLeaseLost, nothing written, if a newer epoch is
  // recorded for the range).
  virtual Status WriteBatch(const TableSchema& table, const RowBatch& batch,
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
  // cursor, bytes and digest as source.ReadBatch(table, range, after,
  // max_rows, max_bytes) followed by WriteBatch(table, batch, fence) and
  // FoldDigest, in ONE transaction that first checks and records `fence`
  // (kLeaseLost, nothing written, if a newer epoch is recorded). out->rows is
  // 0 when the range has no rows after `after`.
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
