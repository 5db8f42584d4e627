// PgStore: the Store (stores/store.h) for `postgresql://...` / `postgres://...`
// (libpq connection URIs), on either side of a migration. One class,
// implemented by concern: pg_store.cc (connection, statements, errors, the
// catalog lookup), pg_schema.cc (ListTables, CreateSchema), pg_plan.cc
// (PlanSplits), pg_read.cc (ReadBatch, KeyAfter), pg_digest.cc (DigestRows), pg_write.cc
// (WriteBatch, DeleteRows, fences, the metadata table, markers, plans),
// pg_projection.cc (a migration spec's projections, rejects, its create
// parsed in a rolled-back transaction), pg_wire.cc (binary format helpers);
// pg_dialect.h maps PostgreSQL types and index definitions to and from the
// neutral schema model.
//
// Opening: the URI goes to libpq as it is (PQconnectdbParams with
// expand_dbname), so PGPASSFILE, PGPASSWORD, PGSSLMODE, ~/.pgpass and the
// rest of libpq's environment apply. Session settings: client_encoding UTF8,
// TimeZone UTC, DateStyle ISO, extra_float_digits 3. A source session is
// read-only (default_transaction_read_only). A target creates the metadata
// table at once, so a missing privilege fails at Open.
//
// Tables: those of the connection's current schema (the first schema of its
// search_path that exists; set it with `?options=-csearch_path%3Dmy_schema`
// or the role's default), ordinary and partitioned tables, sorted bytewise by
// name, without the metadata table. Generated columns are not listed. A
// table without a primary key is listed keyed by rowid (key_columns empty)
// but cannot be planned or read (kInvalidArgument): PostgreSQL has no stable
// rowid. Columns carry format_type() types and their neutral types (of the
// base type, for a domain); index_sql holds pg_get_indexdef() of every
// non-primary-key index, `indexes` their neutral form (pg_dialect.h).
//
// Keys and order: every key comparison and ORDER BY happens in PostgreSQL on
// the primary-key columns (row-value comparisons). Text-like key columns whose
// collation is not already bytewise get COLLATE "C", so text keys order
// bytewise on every store, as common/key_codec.h orders them.
//
// Values (see README, "PostgreSQL"): int2/int4/int8 → int64; float4/float8 →
// double (NaN, ±Infinity kept); bytea → Blob; bool → int64 0/1; everything
// else (numeric, text, varchar, uuid, date, timestamp, json, arrays, ...) →
// Text holding PostgreSQL's text form (numeric exactly), with TimeZone UTC.
//
// Writes: each batch is COPY (binary) into a per-connection temporary staging
// table of wire types (bigint / double precision / bytea / text), then ONE
// INSERT INTO t SELECT <casts to the column types> FROM staging ON CONFLICT
// (pk) DO UPDATE, in ONE transaction with the fence upsert on the metadata
// table. Any failure rolls the whole batch back.
//
// Metadata table `__ferry_meta (key text PRIMARY KEY, value bigint, bytes bytea)`:
//   'version'                     value = the data version
//   'boundary'                    bytes = the mirrored boundary; absent = none
//   'fence/<plan_id>/<range_id>'  value = the highest epoch that wrote the range,
//                                 bytes = the end a split gave the range (NULL = none)
//   'plan/<plan_id>'              value = 1: the coordinator of that plan created its schema here
//
// Connection loss: a call that finds the connection broken fails with
// kUnavailable ("connection lost"); the next call reconnects (re-preparing
// statements and re-creating staging tables). libpq and server messages are
// scrubbed of the URI's password; Describe() is the redacted URI.
//
// Thread safety: a PgStore is one connection; confine it to one thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/pg_util.h"
#include "common/status.h"
#include "common/value.h"
#include "stores/column_type.h"
#include "stores/store.h"

namespace ferry {

class PgTxn;

class PgStore : public Store {
 public:
  // Connects to `uri` in `role`. Errors: kUnavailable when the server cannot
  // be reached (retry), kInvalidArgument for a malformed URI, an
  // authentication failure, a missing database or privilege (message names
  // the redacted URI and the flag to check).
  static Result<std::unique_ptr<PgStore>> Open(const std::string& uri, StoreRole role);

  ~PgStore() override;
  PgStore(const PgStore&) = delete;
  PgStore& operator=(const PgStore&) = delete;

  std::string Describe() const override;

  Result<std::vector<TableSchema>> ListTables() override;

  // Estimates the row count from pg_class (reltuples scaled to the current
  // relation size; ANALYZE first if the table was never analyzed) and, when
  // the table is larger than what an exact pass would need, takes split
  // points from an ordered TABLESAMPLE of the keys (about 32 sampled keys per
  // range); otherwise one ordered pass over the keys (exact).
  // Split points are real keys, ascending, distinct. *rows is the estimate
  // (exact in the ordered-pass case).
  Result<std::vector<std::string>> PlanSplits(const TableSchema& table, uint64_t rows_per_range,
                                              uint64_t* rows) override;

  // Keyset page with a prepared statement per (table, bound shape). The LIMIT
  // adapts to the table's average row size so a page stays near max_bytes.
  Status ReadBatch(const TableSchema& table, const KeyRange& range, std::string_view after,
                   size_t max_rows, size_t max_bytes, RowBatch* out) override;

  // One transaction: the metadata table, then each missing table and its
  // indexes (IF NOT EXISTS). A "postgresql" table keeps its format_type()
  // types and its index definitions (retargeted at this schema); a table
  // another engine listed is built from its neutral model (NeutralSchema,
  // pg_dialect.h). A rowid-keyed source table gets a leading `rowid bigint`
  // primary-key column (named by RowidAlias, stores/table_checks.h). An
  // existing table whose columns differ (case-insensitively, in order) fails
  // with kFailedPrecondition.
  Status CreateSchema(const std::vector<TableSchema>& tables) override;

  // See the file comment. kLeaseLost if a newer epoch is recorded;
  // kPermanent (naming table, column and row key) for a value the column
  // cannot hold, and for constraint / data errors from the server;
  // kUnavailable on connection loss and other transient failures.
  Status WriteBatch(const TableSchema& table, const RowBatch& batch, const Fence& fence) override;

  // One DELETE per key, pipelined in the fenced transaction.
  Status DeleteRows(const TableSchema& table, const std::vector<std::string>& keys,
                    const Fence& fence) override;

  // One binary-format keyset query, each row folded from the wire bytes.
  Status DigestRows(const TableSchema& table, const KeyRange& range, std::string_view after,
                    std::string_view through, size_t max_rows, DigestMode mode,
                    RowsDigest* out) override;

  // SELECT of the key columns only, ORDER BY key LIMIT 1 OFFSET skip.
  Result<std::optional<std::string>> KeyAfter(const TableSchema& table, const KeyRange& range,
                                              std::string_view after, uint64_t skip) override;

  // pg_apply.cc: `(pk) IN (VALUES ...)` in chunks, prepared, binary results.
  Status ReadKeys(const TableSchema& table, const std::vector<std::string>& keys,
                  RowBatch* out) override;
  // The rows go through WriteBatch's staging COPY + upsert.
  Status ApplyChanges(const ChangeApply& apply) override;
  Result<ChangePosition> ReadChangePosition(const std::string& plan_id) override;

  // Projections (pg_projection.cc): one SELECT over the table with the key
  // columns first (qualified by the table's name, cast as ReadBatch reads
  // them), the range conditions, the projection's WHERE on lines of its
  // own, ORDER BY key LIMIT n; results in text format, decoded by their
  // result type (integers, floats, bytea and booleans as ReadBatch reads
  // them, everything else as text). DescribeProjection prepares it (the
  // server parses and checks it) without running it.
  Result<std::vector<ProjectedColumn>> DescribeProjection(const TableSchema& table,
                                                          const Projection& p) override;
  Status ReadProjected(const TableSchema& table, const Projection& p, const KeyRange& range,
                       std::string_view after, size_t max_rows, size_t max_bytes,
                       RowBatch* out) override;

  // __ferry_rejects (table_name text, source_key text, reason text,
  // PRIMARY KEY (table_name, source_key)); WriteRejects upserts under the
  // fence in one transaction.
  Status CreateRejectsTable() override;
  Status WriteRejects(const std::vector<Reject>& rejects, const Fence& fence) override;
  Result<std::vector<Reject>> ReadRejects(const std::string& table, size_t limit) override;

  // DescribeCreateTable for PostgreSQL: a read-only session (nothing can be
  // written to the database), then BEGIN READ WRITE; SET LOCAL search_path
  // TO pg_temp, <schema>; the statement (a temporary table); the catalog;
  // ROLLBACK.
  static Result<TableSchema> DescribeCreate(const std::string& uri, const std::string& create_sql);
  // The statements CreateSchema runs for `table` when it is missing, with
  // the table named `qualified` (already quoted).
  static Result<std::vector<std::string>> CreateStatements(const TableSchema& table,
                                                           const std::string& qualified);

  Result<std::optional<int64_t>> ReadVersion() override;
  Result<Marker> ReadMarker() override;
  Status WriteMarker(const Marker& marker) override;
  Status RecordPlan(const std::string& plan_id) override;
  Result<bool> HasPlan(const std::string& plan_id) override;

  // ---- for tests and diagnostics ----
  // The server process id of the current connection (0 if disconnected).
  int BackendPid() const;
  // Called inside WriteBatch's transaction, after the rows are written and
  // before COMMIT (test seam for connection-loss tests).
  void SetBeforeCommitHookForTest(std::function<void()> hook) { before_commit_ = std::move(hook); }

 private:
  // How a column's values travel: the staging type and the Value kind.
  enum class Wire { kInt, kFloat, kBytes, kText, kBool };
  struct ColInfo {
    std::string name;
    std::string type;  // format_type
    Wire wire = Wire::kText;
    bool string_type = false;  // text/varchar/bpchar/name: assignment cast
    bool needs_c = false;      // collatable, collation not bytewise
    bool not_null = false;
    ColumnType neutral;  // of the type, or of a domain's base type
  };
  struct TableInfo {
    std::string qualified;  // "schema"."table"
    std::vector<ColInfo> cols;
    std::vector<size_t> pk;  // positions in cols
    double avg_row_bytes = 0;
  };
  struct WritePlan {
    std::string stage;  // pg_temp."ferry_stage_N"
    std::string create_stage, copy_sql, insert_sql;
    std::vector<Wire> wires;  // per batch cell
    std::vector<std::string> names;
  };

  PgStore(std::string uri, StoreRole role);

  Status Connect();
  Status EnsureConnected();
  void Disconnect();
  Status Exec(const std::string& sql, std::string_view what);
  Result<PgResult> Query(const std::string& sql, std::string_view what,
                         const std::vector<std::optional<std::string>>& params = {},
                         bool binary = false);
  Result<PgResult> ExecPrepared(const std::string& sql, std::string_view what,
                                const std::vector<std::optional<std::string>>& params,
                                const std::vector<int>& formats, bool binary);
  Status Error(const PGresult* res, std::string_view what);
  Status RefuseWrite() const;
  std::string Qualified(const std::string& table) const;

  Result<TableInfo*> Info(const std::string& table);
  // The schema's cells matched by name to the table's columns, and where
  // the key columns are among them.
  struct CellMap {
    std::vector<size_t> cell_cols;  // per cell: position in TableInfo::cols
    std::vector<size_t> key_cells;  // per key column: position among the cells
  };
  static Result<CellMap> MapCells(const TableSchema& table, const TableInfo& info);
  // Appends rows [0, PQntuples) of `r` (binary, the cells of `map` in
  // order) to *out with their encoded keys, stopping after the row that
  // takes out->bytes to `max_bytes` (SIZE_MAX: every row).
  static void AppendRows(const PGresult* r, const TableInfo& info, const CellMap& map,
                         size_t max_bytes, RowBatch* out);
  // The key predicate of a range (after `after`, through `through` when not
  // empty) as SQL with its parameters: keyset reads, split keys, digests.
  struct KeyBounds {
    std::string tuple;  // the key as a row value, collated
    std::string order;  // ORDER BY list
    std::string where;  // " WHERE ..." or ""
    std::vector<std::optional<std::string>> params;
    std::vector<int> formats;
  };
  Result<KeyBounds> Bounds(const TableSchema& table, const TableInfo& info, const KeyRange& range,
                           std::string_view after, std::string_view through);
  // Appends the parameters of one encoded key; returns its SQL ($n::type, ...).
  Result<std::string> KeyParam(const TableSchema& table, const TableInfo& info,
                               std::string_view encoded, std::string_view what_key, KeyBounds* kb);
  // Inside a write transaction just begun: checks and records `fence` (see
  // stores/store.h: epoch, a split's end) and sets *end to the end recorded
  // for the range ("" = none). Sends BEGIN itself (with the fence upsert, one
  // round trip); `txn` is started on success. kLeaseLost when a newer epoch
  // is recorded. `end` may be null (writes outside the range's keys).
  Status BeginFenced(const Fence& fence, const std::string& what, PgTxn* txn,
                     std::string* end = nullptr);
  static Status SplitFenced(const Fence& fence, const std::string& end, std::string_view key);
  // `alias`: the rowid alias CheckBatch returned ("" for a primary key).
  Result<const WritePlan*> PlanWrite(const TableSchema& table, const std::string& alias,
                                     TableInfo* info);
  Status CreateOneTable(const TableSchema& table);
  // The range conditions (without WHERE; "" for the whole table) on the
  // primary key of `info`, columns qualified by `qualifier` when set;
  // appends their parameters and formats.
  Result<std::string> RangeWhere(const TableSchema& table, const TableInfo& info,
                                 const std::string& qualifier, const KeyRange& range,
                                 std::string_view after,
                                 std::vector<std::optional<std::string>>* params,
                                 std::vector<int>* formats);
  Result<TableSchema> DescribeCreateHere(const std::string& create_sql);
  Status CreateMeta();
  Result<bool> MetaExists();
  Status WriteRows(const TableSchema& table, const RowBatch& batch, const WritePlan& plan);
  // `encoded` (a key of the table `info` describes) as parameters cast to
  // the key columns' types, appended to params / formats; returns the SQL
  // tuple "($1::t1, $2::t2)" (or "$1::t" for one column). kInvalidArgument
  // when a value cannot be one of the key's types.
  static Result<std::string> KeyParams(const TableInfo& info, const std::string& table,
                                       std::string_view encoded,
                                       std::vector<std::optional<std::string>>* params,
                                       std::vector<int>* formats);
  // One binary-format cell of a result as the Value its wire type reads as.
  static Value DecodeCell(Wire wire, const char* bytes, int len);
  // The SELECT expression reading column `c` in its wire type (booleans as
  // int4, text-like non-text types as text).
  static std::string CellSelect(const ColInfo& c);

  std::string uri_;
  std::string password_;
  StoreRole role_;
  PgConnPtr conn_;
  std::string schema_;
  bool c_default_ = false;                       // the database's default collation is bytewise
  std::map<std::string, std::string> prepared_;  // SQL → statement name
  std::map<std::string, TableInfo> info_;
  std::map<std::string, WritePlan> writes_;
  std::set<std::string> staged_;  // staging tables created on this connection
  int next_stmt_ = 0;
  int next_stage_ = 0;
  std::function<void()> before_commit_;
};

}  // namespace ferry
