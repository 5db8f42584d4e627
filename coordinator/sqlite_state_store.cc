#include "coordinator/sqlite_state_store.h"

#include <fmt/format.h>

#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>

#include "common/backoff.h"
#include "common/clock.h"
#include "common/version.h"
#include "coordinator/range_columns.h"

namespace ferry {
namespace {

constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE job (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  source_uri TEXT NOT NULL, target_uri TEXT NOT NULL,
  from_version INTEGER NOT NULL, to_version INTEGER NOT NULL,
  tables TEXT NOT NULL, plan_id TEXT NOT NULL, last_epoch INTEGER NOT NULL,
  phase INTEGER NOT NULL, boundary BLOB NOT NULL, current_version INTEGER,
  paused INTEGER NOT NULL, throttle INTEGER NOT NULL, failure TEXT NOT NULL,
  mirrored INTEGER NOT NULL);
CREATE TABLE ranges (
  id INTEGER PRIMARY KEY, table_name TEXT NOT NULL, lo BLOB NOT NULL, hi BLOB NOT NULL,
  est_rows INTEGER NOT NULL, state INTEGER NOT NULL, owner TEXT NOT NULL,
  epoch INTEGER NOT NULL, deadline_ms INTEGER NOT NULL, cursor BLOB NOT NULL,
  rows INTEGER NOT NULL, bytes INTEGER NOT NULL, digest INTEGER NOT NULL,
  attempts INTEGER NOT NULL, errors INTEGER NOT NULL, last_error TEXT NOT NULL);
CREATE TABLE workers (
  id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, version TEXT NOT NULL,
  registered_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL, state TEXT NOT NULL);
CREATE TABLE events (
  id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, kind TEXT NOT NULL, range_id INTEGER NOT NULL,
  epoch INTEGER NOT NULL, worker TEXT NOT NULL, detail TEXT NOT NULL);
)sql";

// Columns added after schema version 1 (in `since`), each with the default
// an older row gets. Added when missing (whatever the recorded version), so
// the upgrade is idempotent.
struct AddedColumn {
  int since;
  const char* table;
  const char* column;
  const char* decl;
};
constexpr AddedColumn kAddedColumns[] = {
    // 2: migration specs (the spec in the plan, rejected rows per range).
    {2, "job", "spec_text", "TEXT NOT NULL DEFAULT ''"},
    {2, "job", "spec_digest", "TEXT NOT NULL DEFAULT ''"},
    {2, "ranges", "rejected", "INTEGER NOT NULL DEFAULT 0"},
    // 3: --verify (job.verify; ranges verified, verify_lease, verify_cursor,
    // rows_repaired) and splits (ranges.parent; ranges are inserted after
    // the plan and their hi / est_rows change).
    {3, "job", "verify", "INTEGER NOT NULL DEFAULT 0"},
    {3, "ranges", "parent", "INTEGER NOT NULL DEFAULT 0"},
    {3, "ranges", "verified", "INTEGER NOT NULL DEFAULT 0"},
    {3, "ranges", "verify_lease", "INTEGER NOT NULL DEFAULT 0"},
    {3, "ranges", "verify_cursor", "BLOB NOT NULL DEFAULT x''"},
    {3, "ranges", "rows_repaired", "INTEGER NOT NULL DEFAULT 0"},
};

// The range columns (coordinator/range_columns.h) LoadRanges selects from a
// file of schema `version` (read-only opens are not upgraded: columns added
// later read as their defaults); with kStateSchemaVersion, all of them.
std::string RangeColumnsFor(int version) {
  return JoinRangeColumns([version](const RangeColumn& c, const auto& field) -> std::string {
    if (c.since <= version) return c.name;
    if constexpr (std::is_same_v<std::decay_t<decltype(field)>, std::string>) {
      return c.blob ? "x''" : "''";
    }
    return "0";
  });
}

// The same for the job row: spec_text, spec_digest, verify.
std::string JobExtraColumnsFor(int version) {
  return fmt::format("{}, {}", version >= 2 ? "spec_text, spec_digest" : "'', ''",
                     version >= 3 ? "verify" : "0");
}

std::string BlobCol(const Stmt& s, int col) { return s.Str(col); }

// INSERT of a whole range row: its parameters are the columns in order.
std::string RangeInsertSql() {
  return fmt::format(
      "INSERT INTO ranges ({}) VALUES ({})", RangeColumnsFor(kStateSchemaVersion),
      JoinRangeColumns([](const RangeColumn&, const auto&) { return std::string("?"); }));
}

// UPDATE of a range row: its parameters are the updated columns in order,
// then the id.
std::string RangeUpdateSql() {
  return fmt::format(
      "UPDATE ranges SET {} WHERE id=?", JoinRangeColumns([](const RangeColumn& c, const auto&) {
        return c.role == RangeColumnRole::kUpdated ? fmt::format("{}=?", c.name) : std::string();
      }));
}

// Binds a range field to parameter i of `s`.
template <typename T>
void BindRangeField(Stmt& s, int i, const RangeColumn& c, const T& field) {
  if constexpr (std::is_same_v<T, std::string>) {
    if (c.blob) {
      s.BindBlob(i, field);
    } else {
      s.Bind(i, std::string_view(field));
    }
  } else {
    s.Bind(i, static_cast<int64_t>(field));
  }
}

// A range row of a statement's result, for ReadRangeRow.
struct RangeRow {
  const Stmt& s;
  int64_t Int(int col) const { return s.Int(col); }
  bool Bool(int col) const { return s.Int(col) != 0; }
  std::string Bytes(int col) const { return s.Str(col); }
};

// ALTER TABLE ... ADD COLUMN for every kAddedColumns entry of schema
// `version` or older that the file lacks.
Status AddMissingColumns(Db& d, int version) {
  for (const AddedColumn& a : kAddedColumns) {
    if (a.since > version) continue;
    FERRY_ASSIGN_OR_RETURN(Stmt probe,
                           d.Prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2"));
    probe.Bind(1, std::string_view(a.table));
    probe.Bind(2, std::string_view(a.column));
    const int rc = probe.Step();
    if (rc == SQLITE_ROW) continue;
    if (rc != SQLITE_DONE) return d.Error(rc, "read the state schema");
    FERRY_RETURN_IF_ERROR(
        d.Exec(fmt::format("ALTER TABLE {} ADD COLUMN {} {}", a.table, a.column, a.decl)));
  }
  return Status::Ok();
}

// Brings the schema of a file at version `from` (0: empty) to version `to`,
// inside the caller's transaction.
Status UpgradeSchema(Db& d, int64_t from, int to) {
  if (from < 1) FERRY_RETURN_IF_ERROR(d.Exec(kSchemaV1));
  if (from < to) {
    FERRY_RETURN_IF_ERROR(AddMissingColumns(d, to));
    FERRY_RETURN_IF_ERROR(d.Exec(fmt::format("PRAGMA user_version={}", to)));
  }
  return Status::Ok();
}

// The file's PRAGMA user_version.
Result<int64_t> SchemaVersion(Db& d) {
  FERRY_ASSIGN_OR_RETURN(Stmt stmt, d.Prepare("PRAGMA user_version"));
  stmt.Step();
  return stmt.Int(0);
}

}  // namespace

Result<std::unique_ptr<SqliteStateStore>> SqliteStateStore::OpenReadOnly(const std::string& path) {
  auto db = Db::Open(path, SQLITE_OPEN_READONLY, 5000);
  if (!db.ok()) {
    return InvalidArgument(fmt::format("state file {} cannot be opened: {} (check --state)", path,
                                       db.status().message()));
  }
  auto store =
      std::unique_ptr<SqliteStateStore>(new SqliteStateStore(path, std::move(db).value(), nullptr));
  auto probe = store->db_.Prepare("SELECT plan_id FROM job WHERE id = 1");
  if (!probe.ok()) {
    return InvalidArgument(
        fmt::format("{} is not a ferry coordinator state file: {} (check --state)", path,
                    probe.status().message()));
  }
  auto version = store->db_.Prepare("PRAGMA user_version");
  if (version.ok() && version->Step() == SQLITE_ROW) store->schema_version_ = version->Int(0);
  return store;
}

Result<std::unique_ptr<SqliteStateStore>> SqliteStateStore::Open(const std::string& path,
                                                                 const Clock* clock) {
  FERRY_ASSIGN_OR_RETURN(std::unique_ptr<StateLock> lock, StateLock::Acquire(path));
  auto db = Db::Open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, 5000);
  if (!db.ok()) {
    return InvalidArgument(
        fmt::format("cannot open state file {}: {} (check --state and the "
                    "directory's permissions)",
                    path, db.status().message()));
  }
  auto store =
      std::unique_ptr<SqliteStateStore>(new SqliteStateStore(path, std::move(db).value(), clock));
  store->lock_ = std::move(lock);
  Db& d = store->db_;
  FERRY_RETURN_IF_ERROR(d.Exec("PRAGMA journal_mode=WAL"));
  FERRY_RETURN_IF_ERROR(d.Exec("PRAGMA synchronous=FULL"));

  // Create or upgrade the schema. Many processes may race here: take the
  // write lock up front, retry busy with jittered backoff under a cap.
  Backoff backoff(20, 1000, std::random_device{}());
  const int64_t give_up = MonotonicMs() + 30000;
  for (;;) {
    Status s = d.Exec("BEGIN IMMEDIATE");
    if (s.ok()) break;
    if (s.code() != Code::kUnavailable || MonotonicMs() > give_up) {
      return Status(s.code(), fmt::format("cannot lock state file {} to check its schema: {} "
                                          "(is another process holding it?)",
                                          path, s.message()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff.NextDelayMs()));
  }
  auto read = SchemaVersion(d);
  if (!read.ok()) return store->Rollback(read.status());
  const int64_t version = *read;
  if (version > kStateSchemaVersion) {
    return store->Rollback(FailedPrecondition(
        fmt::format("state file {} has schema version {}, newer than this ferry's {}: use a newer "
                    "ferry-coordinator",
                    path, version, kStateSchemaVersion)));
  }
  Status upgraded = UpgradeSchema(d, version, kStateSchemaVersion);
  if (!upgraded.ok()) return store->Rollback(upgraded);
  FERRY_RETURN_IF_ERROR(d.Exec("COMMIT"));
  FERRY_RETURN_IF_ERROR(store->Prepare());
  store->checkpointer_ = std::make_unique<WalCheckpointer>(path);
  store->checkpointer_->Attach(d.get());
  return store;
}

Status SqliteStateStore::WriteSchemaForTest(const std::string& path, int version) {
  if (version < 1 || version > kStateSchemaVersion) {
    return InvalidArgument(fmt::format("no state schema version {}", version));
  }
  FERRY_ASSIGN_OR_RETURN(Db d, Db::Open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, 5000));
  FERRY_RETURN_IF_ERROR(d.Exec("BEGIN IMMEDIATE"));
  auto from = SchemaVersion(d);
  Status s = from.ok() ? UpgradeSchema(d, *from, version) : from.status();
  if (s.ok()) s = d.Exec("COMMIT");
  if (!s.ok()) (void)d.Exec("ROLLBACK");
  return s;
}

Status SqliteStateStore::Rollback(Status cause) {
  (void)db_.Exec("ROLLBACK");
  return cause;
}

Status SqliteStateStore::Prepare() {
  FERRY_ASSIGN_OR_RETURN(
      job_upsert_,
      db_.Prepare("INSERT OR REPLACE INTO job (id, source_uri, target_uri, from_version, "
                  "to_version, tables, plan_id, last_epoch, phase, boundary, current_version, "
                  "paused, throttle, failure, mirrored, spec_text, spec_digest, verify) VALUES "
                  "(1,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"));
  FERRY_ASSIGN_OR_RETURN(range_insert_, db_.Prepare(RangeInsertSql()));
  FERRY_ASSIGN_OR_RETURN(range_update_, db_.Prepare(RangeUpdateSql()));
  FERRY_ASSIGN_OR_RETURN(event_insert_, db_.Prepare("INSERT INTO events (ts_ms, kind, range_id, "
                                                    "epoch, worker, detail) VALUES (?,?,?,?,?,?)"));
  FERRY_ASSIGN_OR_RETURN(worker_upsert_,
                         db_.Prepare("INSERT OR REPLACE INTO workers VALUES (?,?,?,?,?,?,?)"));
  return Status::Ok();
}

Status SqliteStateStore::Step(Stmt& s, const char* what) {
  int rc = (fail_at_ >= 0 && step_count_++ == fail_at_) ? SQLITE_IOERR : s.Step();
  s.Reset();
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
    return db_.Error(rc, fmt::format("state file {}: {}", path_, what));
  }
  return Status::Ok();
}

Status SqliteStateStore::WriteJob(const JobMeta& j) {
  Stmt& s = job_upsert_;
  s.Bind(1, j.source_uri);
  s.Bind(2, j.target_uri);
  s.Bind(3, j.from_version);
  s.Bind(4, j.to_version);
  s.Bind(5, j.tables);
  s.Bind(6, j.plan_id);
  s.Bind(7, static_cast<int64_t>(j.last_epoch));
  s.Bind(8, static_cast<int64_t>(j.phase));
  s.BindBlob(9, j.boundary);
  if (j.current_version) {
    s.Bind(10, *j.current_version);
  } else {
    s.BindNull(10);
  }
  s.Bind(11, int64_t{j.paused});
  s.Bind(12, static_cast<int64_t>(j.throttle_rows_per_s));
  s.Bind(13, j.failure);
  s.Bind(14, int64_t{j.mirrored});
  s.Bind(15, j.spec_text);
  s.Bind(16, j.spec_digest);
  s.Bind(17, int64_t{j.verify});
  return Step(s, "write job");
}

Status SqliteStateStore::WriteRange(const RangeRecord& r, bool insert) {
  Stmt& s = insert ? range_insert_ : range_update_;
  int i = 0;
  VisitRangeColumns(r, [&](const RangeColumn& c, const auto& field) {
    if (insert || c.role == RangeColumnRole::kUpdated) BindRangeField(s, ++i, c, field);
  });
  if (!insert) s.Bind(++i, static_cast<int64_t>(r.id));
  return Step(s, insert ? "insert range" : "update range");
}

Status SqliteStateStore::WriteEvent(const Event& e) {
  event_insert_.Bind(1, e.ts_ms);
  event_insert_.Bind(2, e.kind);
  event_insert_.Bind(3, static_cast<int64_t>(e.range));
  event_insert_.Bind(4, static_cast<int64_t>(e.epoch));
  event_insert_.Bind(5, e.worker);
  event_insert_.Bind(6, e.detail);
  return Step(event_insert_, "insert event");
}

Status SqliteStateStore::CreateJob(const JobMeta& job, const std::vector<RangeRecord>& plan) {
  FERRY_RETURN_IF_ERROR(db_.Exec("BEGIN IMMEDIATE"));
  auto existing = LoadJob();
  if (!existing.ok()) return Rollback(existing.status());
  if (existing->has_value()) {
    return Rollback(FailedPrecondition(fmt::format("state file {} already holds a job", path_)));
  }
  Status s = WriteJob(job);
  for (size_t i = 0; s.ok() && i < plan.size(); ++i) s = WriteRange(plan[i], /*insert=*/true);
  if (s.ok()) {
    s = WriteEvent(Event{clock_->NowMs(), "plan", 0, 0, "",
                         fmt::format("{} ranges, plan {}", plan.size(), job.plan_id)});
  }
  if (s.ok()) s = db_.Exec("COMMIT");
  if (!s.ok()) return Rollback(s);
  return Status::Ok();
}

Status SqliteStateStore::Commit(const StateCommit& c) {
  step_count_ = 0;
  Status s = db_.Exec("BEGIN IMMEDIATE");
  if (!s.ok()) return s;
  if (c.job) s = WriteJob(*c.job);
  for (size_t i = 0; s.ok() && i < c.inserted.size(); ++i) s = WriteRange(*c.inserted[i], true);
  for (size_t i = 0; s.ok() && i < c.ranges.size(); ++i) s = WriteRange(*c.ranges[i], false);
  for (size_t i = 0; s.ok() && i < c.events.size(); ++i) s = WriteEvent(c.events[i]);
  for (size_t i = 0; s.ok() && i < c.workers.size(); ++i) {
    const WorkerRow& w = c.workers[i];
    worker_upsert_.Bind(1, w.id);
    worker_upsert_.Bind(2, w.host);
    worker_upsert_.Bind(3, w.pid);
    worker_upsert_.Bind(4, w.version);
    worker_upsert_.Bind(5, w.registered_ms);
    worker_upsert_.Bind(6, w.last_seen_ms);
    worker_upsert_.Bind(7, w.state);
    s = Step(worker_upsert_, "upsert worker");
  }
  if (s.ok() && fail_at_ >= 0 && step_count_++ == fail_at_) {
    s = Unavailable(fmt::format("state file {}: injected commit failure", path_));
  }
  if (s.ok()) s = db_.Exec("COMMIT");
  if (!s.ok()) return Rollback(s);
  return Status::Ok();
}

Result<std::optional<JobMeta>> SqliteStateStore::LoadJob() {
  FERRY_ASSIGN_OR_RETURN(
      Stmt s, db_.Prepare(fmt::format(
                  "SELECT source_uri, target_uri, from_version, to_version, tables, plan_id, "
                  "last_epoch, phase, boundary, current_version, paused, throttle, failure, "
                  "mirrored, {} FROM job WHERE id=1",
                  JobExtraColumnsFor(schema_version_))));
  int rc = s.Step();
  if (rc == SQLITE_DONE) return std::optional<JobMeta>();
  if (rc != SQLITE_ROW) return db_.Error(rc, "read job");
  JobMeta j;
  j.source_uri = s.Str(0);
  j.target_uri = s.Str(1);
  j.from_version = s.Int(2);
  j.to_version = s.Int(3);
  j.tables = s.Str(4);
  j.plan_id = s.Str(5);
  j.last_epoch = static_cast<uint64_t>(s.Int(6));
  j.phase = static_cast<JobPhase>(s.Int(7));
  j.boundary = BlobCol(s, 8);
  if (!s.IsNull(9)) j.current_version = s.Int(9);
  j.paused = s.Int(10) != 0;
  j.throttle_rows_per_s = static_cast<uint64_t>(s.Int(11));
  j.failure = s.Str(12);
  j.mirrored = s.Int(13) != 0;
  j.spec_text = s.Str(14);
  j.spec_digest = s.Str(15);
  j.verify = s.Int(16) != 0;
  return std::optional<JobMeta>(std::move(j));
}

Result<std::vector<RangeRecord>> SqliteStateStore::LoadRanges() {
  FERRY_ASSIGN_OR_RETURN(Stmt s, db_.Prepare(fmt::format("SELECT {} FROM ranges ORDER BY id",
                                                         RangeColumnsFor(schema_version_))));
  std::vector<RangeRecord> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    FERRY_ASSIGN_OR_RETURN(RangeRecord r, ReadRangeRow(RangeRow{s}));
    if (r.id != out.size() + 1)
      return Internal(fmt::format("range ids not contiguous at {}", r.id));
    out.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return db_.Error(rc, "read ranges");
  return out;
}

Result<std::vector<WorkerRow>> SqliteStateStore::LoadWorkers() {
  FERRY_ASSIGN_OR_RETURN(Stmt s, db_.Prepare("SELECT id, host, pid, version, registered_ms, "
                                             "last_seen_ms, state FROM workers ORDER BY id"));
  std::vector<WorkerRow> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    out.push_back(WorkerRow{s.Str(0), s.Str(1), s.Int(2), s.Str(3), s.Int(4), s.Int(5), s.Str(6)});
  }
  if (rc != SQLITE_DONE) return db_.Error(rc, "read workers");
  return out;
}

Result<std::vector<Event>> SqliteStateStore::LoadEvents(size_t limit) {
  FERRY_ASSIGN_OR_RETURN(Stmt s, db_.Prepare("SELECT ts_ms, kind, range_id, epoch, worker, detail "
                                             "FROM events ORDER BY id DESC LIMIT ?"));
  s.Bind(1, static_cast<int64_t>(limit));
  std::vector<Event> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    out.push_back(Event{s.Int(0), s.Str(1), static_cast<uint64_t>(s.Int(2)),
                        static_cast<uint64_t>(s.Int(3)), s.Str(4), s.Str(5)});
  }
  if (rc != SQLITE_DONE) return db_.Error(rc, "read events");
  return out;
}

}  // namespace ferry
