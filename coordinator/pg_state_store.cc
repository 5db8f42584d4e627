#include "coordinator/pg_state_store.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cinttypes>
#include <map>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "common/version.h"
#include "coordinator/range_columns.h"
#include "stores/store.h"

namespace ferry {
namespace {

// Serializes schema creation and upgrades among coordinators starting at once.
constexpr int64_t kSchemaLockKey = 0x6665727279535431;  // "ferrySt1"
// Rows per INSERT when a plan is written.
constexpr size_t kPlanChunk = 5000;
// SQLSTATE the guard raises when the caller no longer leads.
constexpr const char* kDeposed = "FY001";

constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE ferry_state.job (
  id int PRIMARY KEY CHECK (id = 1),
  source_uri bytea NOT NULL, target_uri bytea NOT NULL,
  from_version bigint NOT NULL, to_version bigint NOT NULL,
  tables bytea NOT NULL, plan_id bytea NOT NULL, last_epoch bigint NOT NULL,
  phase int NOT NULL, boundary bytea NOT NULL, current_version bigint,
  paused boolean NOT NULL, throttle bigint NOT NULL, failure bytea NOT NULL,
  mirrored boolean NOT NULL);
CREATE TABLE ferry_state.ranges (
  id bigint PRIMARY KEY, table_name bytea NOT NULL, lo bytea NOT NULL, hi bytea NOT NULL,
  est_rows bigint NOT NULL, state int NOT NULL, owner bytea NOT NULL, epoch bigint NOT NULL,
  deadline_ms bigint NOT NULL, cursor bytea NOT NULL, rows bigint NOT NULL,
  bytes bigint NOT NULL, digest bigint NOT NULL, attempts bigint NOT NULL,
  errors bigint NOT NULL, last_error bytea NOT NULL);
CREATE TABLE ferry_state.workers (
  id bytea PRIMARY KEY, host bytea NOT NULL, pid bigint NOT NULL, version bytea NOT NULL,
  registered_ms bigint NOT NULL, last_seen_ms bigint NOT NULL, state bytea NOT NULL);
CREATE TABLE ferry_state.events (
  id bigserial PRIMARY KEY, ts_ms bigint NOT NULL, kind bytea NOT NULL,
  range_id bigint NOT NULL, epoch bigint NOT NULL, worker bytea NOT NULL,
  detail bytea NOT NULL, term bigint NOT NULL);
CREATE TABLE ferry_state.leader (
  id int PRIMARY KEY CHECK (id = 1), term bigint NOT NULL, holder bytea NOT NULL,
  listen bytea NOT NULL, status bytea NOT NULL, expires_at timestamptz NOT NULL);
INSERT INTO ferry_state.leader VALUES (1, 0, '', '', '', '-infinity');
CREATE TABLE ferry_state.terms (
  term bigint PRIMARY KEY, holder bytea NOT NULL, started_at timestamptz NOT NULL,
  last_commit_at timestamptz, commits bigint NOT NULL);
CREATE FUNCTION ferry_state.guard(t bigint, h bytea, ttl_ms bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE ferry_state.leader
     SET expires_at = clock_timestamp() + ttl_ms * interval '1 millisecond'
   WHERE id = 1 AND term = t AND holder = h AND expires_at > clock_timestamp();
  IF NOT FOUND THEN
    RAISE EXCEPTION 'deposed: this coordinator no longer leads (its term % is over)', t
      USING ERRCODE = 'FY001';
  END IF;
END $$;
)sql";

// Columns added after schema version 1 (ADD COLUMN IF NOT EXISTS: the
// upgrade is idempotent whatever version is recorded).
// 2: migration specs (the spec in the plan, rejected rows per range).
// 3: --verify and splits (see common/version.h).
constexpr const char* kAddedColumns =
    "ALTER TABLE ferry_state.job ADD COLUMN IF NOT EXISTS spec_text bytea NOT NULL DEFAULT '', "
    "ADD COLUMN IF NOT EXISTS spec_digest bytea NOT NULL DEFAULT ''; "
    "ALTER TABLE ferry_state.ranges ADD COLUMN IF NOT EXISTS rejected bigint NOT NULL DEFAULT 0; "
    "ALTER TABLE ferry_state.job ADD COLUMN IF NOT EXISTS verify boolean NOT NULL DEFAULT false; "
    "ALTER TABLE ferry_state.ranges ADD COLUMN IF NOT EXISTS parent bigint NOT NULL DEFAULT 0, "
    "ADD COLUMN IF NOT EXISTS verified boolean NOT NULL DEFAULT false, "
    "ADD COLUMN IF NOT EXISTS verify_lease boolean NOT NULL DEFAULT false, "
    "ADD COLUMN IF NOT EXISTS verify_cursor bytea NOT NULL DEFAULT '', "
    "ADD COLUMN IF NOT EXISTS rows_repaired bigint NOT NULL DEFAULT 0";

// The range columns (coordinator/range_columns.h) LoadRanges selects from a
// state of schema `version` (read-only opens do not upgrade it: columns
// added later read as their defaults); with kStateSchemaVersion, all of them.
std::string RangeColumnsFor(int version) {
  return JoinRangeColumns([version](const RangeColumn& c, const auto& field) -> std::string {
    using T = std::decay_t<decltype(field)>;
    if (c.since <= version) return c.name;
    if constexpr (std::is_same_v<T, std::string>) return "''::bytea";
    if constexpr (std::is_same_v<T, bool>) return "false";
    return "0";
  });
}

// The same for the job row: spec_text, spec_digest, verify.
std::string JobExtraColumnsFor(int version) {
  return fmt::format("{}, {}", version >= 2 ? "spec_text, spec_digest" : "''::bytea, ''::bytea",
                     version >= 3 ? "verify::int" : "0");
}

std::string Hex(std::string_view bytes) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

// bytea's text input form.
std::string Bytea(std::string_view bytes) { return "\\x" + Hex(bytes); }

int FromHex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return 0;
}

// bytea's text output form (bytea_output = hex) back to bytes.
std::string FromBytea(const char* text) {
  std::string_view t(text);
  if (t.size() < 2 || t[0] != '\\' || t[1] != 'x') return std::string(t);
  std::string out;
  out.reserve((t.size() - 2) / 2);
  for (size_t i = 2; i + 1 < t.size(); i += 2) {
    out += static_cast<char>(FromHex(t[i]) << 4 | FromHex(t[i + 1]));
  }
  return out;
}

// Array literals for unnest(): one element per row of a batch.
class ArrayText {
 public:
  void Int(int64_t v) {
    Sep();
    out_ += std::to_string(v);
  }
  void Bytes(std::string_view b) {
    Sep();
    out_ += "\"\\\\x";  // "\\x…" in the literal is the bytea text \x…
    out_ += Hex(b);
    out_ += '"';
  }
  std::string Done() { return "{" + out_ + "}"; }

 private:
  void Sep() {
    if (!first_) out_ += ',';
    first_ = false;
  }
  std::string out_;
  bool first_ = true;
};

std::string I64(uint64_t v) { return std::to_string(static_cast<int64_t>(v)); }
std::string I64(int64_t v) { return std::to_string(v); }

int64_t Int(const PGresult* r, int row, int col) {
  return std::strtoll(PQgetvalue(r, row, col), nullptr, 10);
}
std::string Bytes(const PGresult* r, int row, int col) {
  return FromBytea(PQgetvalue(r, row, col));
}

// Row `row` of a result, for ReadRangeRow.
struct RangeRow {
  const PGresult* p;
  int row;
  int64_t Int(int col) const { return ferry::Int(p, row, col); }
  bool Bool(int col) const { return std::string_view(PQgetvalue(p, row, col)) == "t"; }
  std::string Bytes(int col) const { return ferry::Bytes(p, row, col); }
};

}  // namespace

Result<std::unique_ptr<PgStateStore>> PgStateStore::Open(const std::string& uri, const Clock* clock,
                                                         int64_t io_timeout_ms) {
  auto store = std::unique_ptr<PgStateStore>(new PgStateStore(uri, clock, io_timeout_ms));
  Status s = store->Connect();
  if (!s.ok()) {
    return Status(
        s.code(),
        fmt::format("state database {}: {} (check --state{})", RedactUri(uri), s.message(),
                    s.code() == Code::kUnavailable ? " and that the server is up and reachable"
                                                   : " and the role's privileges"));
  }
  s = store->CreateSchema();
  if (!s.ok()) {
    return Status(s.code(), fmt::format("state database {}: {}", RedactUri(uri), s.message()));
  }
  return store;
}

Result<std::unique_ptr<PgStateStore>> PgStateStore::OpenReadOnly(const std::string& uri) {
  auto store = std::unique_ptr<PgStateStore>(new PgStateStore(uri, nullptr, 0));
  store->read_only_ = true;
  Status s = store->Connect();
  if (!s.ok()) {
    return Status(s.code(), fmt::format("state database {}: {} (check --state)", RedactUri(uri),
                                        s.message()));
  }
  auto probe =
      store->Run(Statement{"SELECT value FROM ferry_state.meta WHERE key = 'schema_version'", {}},
                 "read the schema version");
  if (!probe.ok() || PQntuples(probe->get()) != 1) {
    return InvalidArgument(
        fmt::format("{} holds no ferry coordinator state (no ferry_state schema; check --state)",
                    RedactUri(uri)));
  }
  store->schema_version_ = static_cast<int>(Int(probe->get(), 0, 0));
  return store;
}

std::string PgStateStore::Describe() const { return "state database " + RedactUri(uri_); }

Status PgStateStore::Connect() {
  conn_.reset();
  // application_name names the process, so an operator can find (and a
  // test can cut) one coordinator's state connections in pg_stat_activity.
  FERRY_ASSIGN_OR_RETURN(conn_, PgConnect(uri_, fmt::format("ferry-coordinator:{}", getpid()),
                                          static_cast<int>(io_timeout_ms_)));
  std::string setup = "SET TimeZone = 'UTC'; SET bytea_output = 'hex'";
  if (io_timeout_ms_ > 0) {
    // A statement (a commit waiting on the leader row's lock included)
    // never outlives a lease.
    setup += fmt::format("; SET statement_timeout = {}", io_timeout_ms_);
  }
  if (read_only_) setup += "; SET default_transaction_read_only = on";
  PgResult r(PQexec(conn_.get(), setup.c_str()));
  if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) return Fail(r.get(), "session set-up");
  return Status::Ok();
}

Status PgStateStore::EnsureConnected() {
  if (conn_ && PQstatus(conn_.get()) == CONNECTION_OK) return Status::Ok();
  return Connect();
}

Status PgStateStore::Fail(const PGresult* res, const std::string& what) {
  Status s = PgError(conn_.get(), res, what);
  s = Status(s.code(), Scrub(s.message(), PgPasswordOf(uri_)));
  if (conn_ && PQstatus(conn_.get()) != CONNECTION_OK) conn_.reset();
  return s;
}

Result<PgResult> PgStateStore::Run(const Statement& s, const char* what) {
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  std::vector<const char*> values;
  for (const auto& p : s.params) values.push_back(p ? p->c_str() : nullptr);
  PgResult r(PQexecParams(conn_.get(), s.sql.c_str(), static_cast<int>(values.size()), nullptr,
                          values.data(), nullptr, nullptr, 0));
  const ExecStatusType st = PQresultStatus(r.get());
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return Fail(r.get(), what);
  return r;
}

Status PgStateStore::RunTransaction(const std::vector<Statement>& statements, const char* what) {
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  PGconn* c = conn_.get();
  if (PQenterPipelineMode(c) != 1) return Fail(nullptr, std::string(what) + ": pipeline mode");
  // The statements up to the sync form one implicit transaction: all of
  // them commit at the sync, or none (the first error rolls back the rest).
  bool sent = true;
  for (const Statement& s : statements) {
    std::vector<const char*> values;
    for (const auto& p : s.params) values.push_back(p ? p->c_str() : nullptr);
    if (PQsendQueryParams(c, s.sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(),
                          nullptr, nullptr, 0) != 1) {
      sent = false;
      break;
    }
  }
  if (!sent || PQpipelineSync(c) != 1) {
    Status s = Fail(nullptr, what);
    conn_.reset();  // a half-sent pipeline: start over on a fresh connection
    return s;
  }
  Status first;
  bool synced = false;
  while (!synced) {
    PgResult r(PQgetResult(c));
    if (!r) {
      if (PQstatus(c) != CONNECTION_OK) break;
      continue;  // the end of one statement's results
    }
    switch (PQresultStatus(r.get())) {
      case PGRES_PIPELINE_SYNC:
        synced = true;
        break;
      case PGRES_COMMAND_OK:
      case PGRES_TUPLES_OK:
      case PGRES_PIPELINE_ABORTED:
        break;
      default:
        if (first.ok()) {
          const char* state = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
          if (state && std::string_view(state) == kDeposed) {
            first = LeaseLost(
                fmt::format("{}: {}", what, PQresultErrorField(r.get(), PG_DIAG_MESSAGE_PRIMARY)));
          } else {
            first = Fail(r.get(), what);
          }
        }
        break;
    }
  }
  if (!synced) {
    Status s = first.ok() ? Fail(nullptr, what) : first;
    conn_.reset();
    return s;
  }
  PQexitPipelineMode(c);
  if (PQtransactionStatus(c) != PQTRANS_IDLE) {
    PgResult rb(PQexec(c, "ROLLBACK"));
  }
  return first;
}

Status PgStateStore::CreateSchema() {
  std::vector<Statement> txn;
  txn.push_back(Statement{"SELECT pg_advisory_xact_lock($1)", {I64(kSchemaLockKey)}});
  txn.push_back(Statement{"CREATE SCHEMA IF NOT EXISTS ferry_state", {}});
  txn.push_back(Statement{
      "CREATE TABLE IF NOT EXISTS ferry_state.meta (key text PRIMARY KEY, value bigint NOT NULL)",
      {}});
  FERRY_RETURN_IF_ERROR(RunTransaction(txn, "create the ferry_state schema"));
  // Under the same lock: read the version, create or refuse.
  FERRY_ASSIGN_OR_RETURN(PgResult begin, Run(Statement{"BEGIN", {}}, "begin"));
  auto body = [&]() -> Status {
    FERRY_RETURN_IF_ERROR(
        Run(Statement{"SELECT pg_advisory_xact_lock($1)", {I64(kSchemaLockKey)}}, "lock schema")
            .status());
    FERRY_ASSIGN_OR_RETURN(
        PgResult v,
        Run(Statement{"SELECT value FROM ferry_state.meta WHERE key = 'schema_version'", {}},
            "read the schema version"));
    const int64_t version = PQntuples(v.get()) == 1 ? Int(v.get(), 0, 0) : 0;
    if (version > kStateSchemaVersion) {
      return FailedPrecondition(fmt::format(
          "the ferry_state schema has version {}, newer than this ferry's {}: use a newer "
          "ferry-coordinator",
          version, kStateSchemaVersion));
    }
    if (version < 1) {
      PgResult r(PQexec(conn_.get(), kSchemaV1));
      if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) return Fail(r.get(), "create tables");
    }
    if (version < kStateSchemaVersion) {
      PgResult r(PQexec(conn_.get(), kAddedColumns));
      if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) return Fail(r.get(), "upgrade tables");
    }
    return Run(Statement{"INSERT INTO ferry_state.meta VALUES ('schema_version', $1) ON CONFLICT "
                         "(key) DO UPDATE SET value = EXCLUDED.value",
                         {std::to_string(kStateSchemaVersion)}},
               "record the schema version")
        .status();
  };
  Status s = body();
  if (!conn_) return s;
  PgResult end(PQexec(conn_.get(), s.ok() ? "COMMIT" : "ROLLBACK"));
  if (s.ok() && PQresultStatus(end.get()) != PGRES_COMMAND_OK) return Fail(end.get(), "commit");
  return s;
}

Result<std::optional<JobMeta>> PgStateStore::LoadJob() {
  FERRY_ASSIGN_OR_RETURN(
      PgResult r,
      Run(Statement{fmt::format("SELECT source_uri, target_uri, from_version, to_version, tables, "
                                "plan_id, last_epoch, phase, boundary, current_version, "
                                "paused::int, throttle, failure, mirrored::int, {} FROM "
                                "ferry_state.job WHERE id = 1",
                                JobExtraColumnsFor(schema_version_)),
                    {}},
          "read the job"));
  if (PQntuples(r.get()) == 0) return std::optional<JobMeta>();
  const PGresult* p = r.get();
  JobMeta j;
  j.source_uri = Bytes(p, 0, 0);
  j.target_uri = Bytes(p, 0, 1);
  j.from_version = Int(p, 0, 2);
  j.to_version = Int(p, 0, 3);
  j.tables = Bytes(p, 0, 4);
  j.plan_id = Bytes(p, 0, 5);
  j.last_epoch = static_cast<uint64_t>(Int(p, 0, 6));
  j.phase = static_cast<JobPhase>(Int(p, 0, 7));
  j.boundary = Bytes(p, 0, 8);
  if (!PQgetisnull(p, 0, 9)) j.current_version = Int(p, 0, 9);
  j.paused = Int(p, 0, 10) != 0;
  j.throttle_rows_per_s = static_cast<uint64_t>(Int(p, 0, 11));
  j.failure = Bytes(p, 0, 12);
  j.mirrored = Int(p, 0, 13) != 0;
  j.spec_text = Bytes(p, 0, 14);
  j.spec_digest = Bytes(p, 0, 15);
  j.verify = Int(p, 0, 16) != 0;
  return std::optional<JobMeta>(std::move(j));
}

Result<std::vector<RangeRecord>> PgStateStore::LoadRanges() {
  FERRY_ASSIGN_OR_RETURN(PgResult r,
                         Run(Statement{fmt::format("SELECT {} FROM ferry_state.ranges ORDER BY id",
                                                   RangeColumnsFor(schema_version_)),
                                       {}},
                             "read the ranges"));
  const PGresult* p = r.get();
  std::vector<RangeRecord> out;
  out.reserve(PQntuples(p));
  for (int i = 0; i < PQntuples(p); ++i) {
    FERRY_ASSIGN_OR_RETURN(RangeRecord rr, ReadRangeRow(RangeRow{p, i}));
    if (rr.id != out.size() + 1) {
      return Internal(fmt::format("range ids not contiguous at {}", rr.id));
    }
    out.push_back(std::move(rr));
  }
  return out;
}

Result<std::vector<WorkerRow>> PgStateStore::LoadWorkers() {
  FERRY_ASSIGN_OR_RETURN(
      PgResult r, Run(Statement{"SELECT id, host, pid, version, registered_ms, last_seen_ms, "
                                "state FROM ferry_state.workers ORDER BY id",
                                {}},
                      "read the workers"));
  std::vector<WorkerRow> out;
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    const PGresult* p = r.get();
    out.push_back(WorkerRow{Bytes(p, i, 0), Bytes(p, i, 1), Int(p, i, 2), Bytes(p, i, 3),
                            Int(p, i, 4), Int(p, i, 5), Bytes(p, i, 6)});
  }
  return out;
}

Result<std::vector<Event>> PgStateStore::LoadEvents(size_t limit) {
  FERRY_ASSIGN_OR_RETURN(PgResult r,
                         Run(Statement{"SELECT ts_ms, kind, range_id, epoch, worker, detail FROM "
                                       "ferry_state.events ORDER BY id DESC LIMIT $1",
                                       {std::to_string(limit)}},
                             "read the events"));
  std::vector<Event> out;
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    const PGresult* p = r.get();
    out.push_back(Event{Int(p, i, 0), Bytes(p, i, 1), static_cast<uint64_t>(Int(p, i, 2)),
                        static_cast<uint64_t>(Int(p, i, 3)), Bytes(p, i, 4), Bytes(p, i, 5)});
  }
  return out;
}

PgStateStore::Statement PgStateStore::Guard() const {
  return Statement{"SELECT ferry_state.guard($1, $2, $3)",
                   {I64(me_.term), Bytea(me_.id), I64(ttl_ms_)}};
}

namespace {

// The job row, inserted or replaced.
std::vector<std::optional<std::string>> JobParams(const JobMeta& j) {
  return {Bytea(j.source_uri),
          Bytea(j.target_uri),
          I64(j.from_version),
          I64(j.to_version),
          Bytea(j.tables),
          Bytea(j.plan_id),
          I64(j.last_epoch),
          I64(static_cast<int64_t>(j.phase)),
          Bytea(j.boundary),
          j.current_version ? std::optional<std::string>(I64(*j.current_version)) : std::nullopt,
          j.paused ? "true" : "false",
          I64(j.throttle_rows_per_s),
          Bytea(j.failure),
          j.mirrored ? "true" : "false",
          Bytea(j.spec_text),
          Bytea(j.spec_digest),
          j.verify ? "true" : "false"};
}

constexpr const char* kJobUpsert =
    "INSERT INTO ferry_state.job (id, source_uri, target_uri, from_version, to_version, tables, "
    "plan_id, last_epoch, phase, boundary, current_version, paused, throttle, failure, mirrored, "
    "spec_text, spec_digest, verify) VALUES "
    "(1,$1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17) "
    "ON CONFLICT (id) DO UPDATE SET source_uri=EXCLUDED.source_uri, "
    "target_uri=EXCLUDED.target_uri, from_version=EXCLUDED.from_version, "
    "to_version=EXCLUDED.to_version, tables=EXCLUDED.tables, plan_id=EXCLUDED.plan_id, "
    "last_epoch=EXCLUDED.last_epoch, phase=EXCLUDED.phase, boundary=EXCLUDED.boundary, "
    "current_version=EXCLUDED.current_version, paused=EXCLUDED.paused, "
    "throttle=EXCLUDED.throttle, failure=EXCLUDED.failure, mirrored=EXCLUDED.mirrored, "
    "spec_text=EXCLUDED.spec_text, spec_digest=EXCLUDED.spec_digest, verify=EXCLUDED.verify";

// The element type of the array a range field is sent in (a bool as an int:
// the statement compares it with 0).
template <typename T>
const char* RangeArrayType() {
  if constexpr (std::is_same_v<T, std::string>) return "bytea";
  if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, RangeState>) return "int";
  return "bigint";
}

// Appends a range field to the array of its column.
template <typename T>
void AppendRangeField(ArrayText& a, const T& field) {
  if constexpr (std::is_same_v<T, std::string>) {
    a.Bytes(field);
  } else {
    a.Int(static_cast<int64_t>(field));
  }
}

// What a statement writing ranges[at, at + n) with unnest() needs: the
// columns it takes (all for an insert; for an update the key and the
// updated ones) as a list of names, their v.<name> values (a bool, sent as
// an int, compared with 0) and the arrays ($1::<type>[], ...: one parameter
// per column, an element per range).
struct RangeArrays {
  std::string names, values, arrays;
  std::vector<std::optional<std::string>> params;
};
RangeArrays RangeUnnest(const std::vector<const RangeRecord*>& ranges, size_t at, size_t n,
                        bool update) {
  auto taken = [update](const RangeColumn& c) {
    return !update || c.role != RangeColumnRole::kFixed;
  };
  std::vector<ArrayText> columns;
  for (size_t i = at; i < std::min(ranges.size(), at + n); ++i) {
    size_t col = 0;
    VisitRangeColumns(*ranges[i], [&](const RangeColumn& c, const auto& field) {
      if (!taken(c)) return;
      if (columns.size() <= col) columns.emplace_back();
      AppendRangeField(columns[col++], field);
    });
  }
  RangeArrays out;
  for (ArrayText& a : columns) out.params.push_back(a.Done());
  out.names = JoinRangeColumns([&](const RangeColumn& c, const auto&) {
    return taken(c) ? std::string(c.name) : std::string();
  });
  out.values = JoinRangeColumns([&](const RangeColumn& c, const auto& field) {
    if (!taken(c)) return std::string();
    const bool flag = std::is_same_v<std::decay_t<decltype(field)>, bool>;
    return fmt::format("v.{}{}", c.name, flag ? " <> 0" : "");
  });
  int param = 0;
  out.arrays = JoinRangeColumns([&](const RangeColumn& c, const auto& field) {
    if (!taken(c)) return std::string();
    return fmt::format("${}::{}[]", ++param, RangeArrayType<std::decay_t<decltype(field)>>());
  });
  return out;
}

// Ranges inserted whole: the plan, and the tails of splits.
PgStateStore::Statement RangeInserts(const std::vector<const RangeRecord*>& ranges, size_t at,
                                     size_t n) {
  RangeArrays u = RangeUnnest(ranges, at, n, /*update=*/false);
  return PgStateStore::Statement{
      fmt::format("INSERT INTO ferry_state.ranges ({}) SELECT {} FROM unnest({}) AS v({})", u.names,
                  u.values, u.arrays, u.names),
      std::move(u.params)};
}

// The updated columns of ranges already written.
PgStateStore::Statement RangeUpdates(const std::vector<const RangeRecord*>& ranges) {
  RangeArrays u = RangeUnnest(ranges, 0, ranges.size(), /*update=*/true);
  const std::string set = JoinRangeColumns([](const RangeColumn& c, const auto& field) {
    if (c.role != RangeColumnRole::kUpdated) return std::string();
    const bool flag = std::is_same_v<std::decay_t<decltype(field)>, bool>;
    return fmt::format("{0} = v.{0}{1}", c.name, flag ? " <> 0" : "");
  });
  return PgStateStore::Statement{
      fmt::format("UPDATE ferry_state.ranges r SET {} FROM unnest({}) AS v({}) WHERE r.id = v.id",
                  set, u.arrays, u.names),
      std::move(u.params)};
}

}  // namespace

Status PgStateStore::CreateJob(const JobMeta& job, const std::vector<RangeRecord>& plan) {
  FERRY_ASSIGN_OR_RETURN(std::optional<JobMeta> existing, LoadJob());
  if (existing) {
    return FailedPrecondition(fmt::format("{} already holds a job", Describe()));
  }
  std::vector<Statement> txn;
  txn.push_back(Guard());
  txn.push_back(Statement{kJobUpsert, JobParams(job)});
  std::vector<const RangeRecord*> ranges;
  ranges.reserve(plan.size());
  for (const RangeRecord& r : plan) ranges.push_back(&r);
  for (size_t at = 0; at < ranges.size(); at += kPlanChunk) {
    txn.push_back(RangeInserts(ranges, at, kPlanChunk));
  }
  txn.push_back(Statement{
      "INSERT INTO ferry_state.events (ts_ms, kind, range_id, epoch, worker, detail, term) "
      "VALUES ($1, $2, 0, 0, '', $3, $4)",
      {I64(clock_->NowMs()), Bytea("plan"),
       Bytea(fmt::format("{} ranges, plan {}", plan.size(), job.plan_id)), I64(me_.term)}});
  return RunTransaction(txn, "write the plan");
}

Status PgStateStore::Commit(const StateCommit& c) {
  if (fail_next_) {
    fail_next_ = false;
    return Unavailable(fmt::format("{}: injected commit failure", Describe()));
  }
  std::vector<Statement> txn;
  txn.push_back(Guard());
  if (c.job) txn.push_back(Statement{kJobUpsert, JobParams(*c.job)});
  for (size_t at = 0; at < c.inserted.size(); at += kPlanChunk) {
    txn.push_back(RangeInserts(c.inserted, at, kPlanChunk));
  }
  if (!c.ranges.empty()) txn.push_back(RangeUpdates(c.ranges));
  if (!c.events.empty()) {
    ArrayText ts, kind, range, epoch, worker, detail;
    for (const Event& e : c.events) {
      ts.Int(e.ts_ms);
      kind.Bytes(e.kind);
      range.Int(static_cast<int64_t>(e.range));
      epoch.Int(static_cast<int64_t>(e.epoch));
      worker.Bytes(e.worker);
      detail.Bytes(e.detail);
    }
    txn.push_back(Statement{
        "INSERT INTO ferry_state.events (ts_ms, kind, range_id, epoch, worker, detail, term) "
        "SELECT v.*, $7 FROM unnest($1::bigint[], $2::bytea[], $3::bigint[], $4::bigint[], "
        "$5::bytea[], $6::bytea[]) AS v",
        {ts.Done(), kind.Done(), range.Done(), epoch.Done(), worker.Done(), detail.Done(),
         I64(me_.term)}});
  }
  if (!c.workers.empty()) {
    // One row per worker: ON CONFLICT cannot touch a row twice in a statement.
    std::map<std::string, const WorkerRow*> last;
    for (const WorkerRow& w : c.workers) last[w.id] = &w;
    ArrayText id, host, pid, version, registered, seen, state;
    for (const auto& [key, w] : last) {
      id.Bytes(w->id);
      host.Bytes(w->host);
      pid.Int(w->pid);
      version.Bytes(w->version);
      registered.Int(w->registered_ms);
      seen.Int(w->last_seen_ms);
      state.Bytes(w->state);
    }
    txn.push_back(Statement{
        "INSERT INTO ferry_state.workers SELECT * FROM unnest($1::bytea[], $2::bytea[], "
        "$3::bigint[], $4::bytea[], $5::bigint[], $6::bigint[], $7::bytea[]) ON CONFLICT (id) DO "
        "UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, version = EXCLUDED.version, "
        "registered_ms = EXCLUDED.registered_ms, last_seen_ms = EXCLUDED.last_seen_ms, "
        "state = EXCLUDED.state",
        {id.Done(), host.Done(), pid.Done(), version.Done(), registered.Done(), seen.Done(),
         state.Done()}});
  }
  txn.push_back(
      Statement{"UPDATE ferry_state.terms SET last_commit_at = clock_timestamp(), "
                "commits = commits + 1 WHERE term = $1",
                {I64(me_.term)}});
  return RunTransaction(txn, "commit the coordinator's state");
}

Result<bool> PgStateStore::TryLead(const LeaderInfo& me, int64_t ttl_ms) {
  FERRY_ASSIGN_OR_RETURN(
      PgResult r,
      Run(Statement{"WITH won AS (UPDATE ferry_state.leader SET term = term + 1, holder = $1, "
                    "listen = $2, status = $3, expires_at = clock_timestamp() + $4 * interval '1 "
                    "millisecond' WHERE id = 1 AND expires_at <= clock_timestamp() RETURNING "
                    "term) INSERT INTO ferry_state.terms (term, holder, started_at, commits) "
                    "SELECT term, $1, clock_timestamp(), 0 FROM won RETURNING term",
                    {Bytea(me.id), Bytea(me.listen), Bytea(me.status), I64(ttl_ms)}},
          "take the lead"));
  if (PQntuples(r.get()) != 1) return false;
  me_ = me;
  me_.term = Int(r.get(), 0, 0);
  ttl_ms_ = ttl_ms;
  return true;
}

Status PgStateStore::RenewLead() {
  if (me_.term == 0) return LeaseLost("this coordinator does not lead");
  return RunTransaction({Guard()}, "renew the lead");
}

void PgStateStore::ResignLead() {
  if (me_.term == 0) return;
  (void)Run(Statement{"UPDATE ferry_state.leader SET expires_at = '-infinity' WHERE id = 1 AND "
                      "term = $1 AND holder = $2",
                      {I64(me_.term), Bytea(me_.id)}},
            "resign the lead");
  me_.term = 0;
}

Result<std::optional<LeaderInfo>> PgStateStore::Leader() {
  FERRY_ASSIGN_OR_RETURN(
      PgResult r,
      Run(Statement{"SELECT holder, listen, status, term FROM ferry_state.leader WHERE id = 1 "
                    "AND expires_at > clock_timestamp()",
                    {}},
          "read the leader"));
  if (PQntuples(r.get()) != 1) return std::optional<LeaderInfo>();
  const PGresult* p = r.get();
  return std::optional<LeaderInfo>(
      LeaderInfo{Bytes(p, 0, 0), Bytes(p, 0, 1), Bytes(p, 0, 2), Int(p, 0, 3)});
}

}  // namespace ferry
