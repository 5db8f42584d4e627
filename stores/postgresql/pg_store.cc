// PgStore's connection core: opening, (re)connecting, running statements,
// error mapping, and the catalog lookup (TableInfo) every other part uses.
#include "stores/postgresql/pg_store.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "stores/postgresql/pg_dialect.h"
#include "stores/postgresql/pg_internal.h"
#include "stores/sql_text.h"

namespace ferry {
namespace {

constexpr int64_t kCollationDefault = 100;
constexpr int64_t kCollationC = 950;
constexpr int64_t kCollationPosix = 951;

}  // namespace

// ---- open ----

PgStore::PgStore(std::string uri, StoreRole role)
    : uri_(std::move(uri)), password_(PgPasswordOf(uri_)), role_(role) {}

PgStore::~PgStore() = default;

std::string PgStore::Describe() const { return RedactUri(uri_); }

int PgStore::BackendPid() const { return conn_ ? PQbackendPID(conn_.get()) : 0; }

Result<std::unique_ptr<PgStore>> PgStore::Open(const std::string& uri, StoreRole role) {
  std::unique_ptr<PgStore> store(new PgStore(uri, role));
  const bool source = role == StoreRole::kSource;
  const std::string what = fmt::format("{} store {}", source ? "legacy" : "new", store->Describe());
  const char* flag = source ? "--source" : "--target";
  Status s = store->Connect();
  if (!s.ok()) {
    return Status(s.code(), fmt::format("{}: {} (check {}, the server and its credentials)", what,
                                        s.message(), flag));
  }
  if (!source) {
    s = store->CreateMeta();
    if (!s.ok()) {
      return Status(s.code() == Code::kUnavailable ? Code::kUnavailable : Code::kInvalidArgument,
                    fmt::format("{} cannot be written: {} (check {} and the role's privileges)",
                                what, s.message(), flag));
    }
  }
  return store;
}

Status PgStore::Connect() {
  Disconnect();
  std::vector<const char*> keys, vals;
  if (!std::getenv("PGCONNECT_TIMEOUT")) {
    keys.push_back("connect_timeout");  // the URI may override it
    vals.push_back("10");
  }
  keys.push_back("dbname");
  vals.push_back(uri_.c_str());
  keys.push_back("fallback_application_name");
  vals.push_back("ferry");
  keys.push_back("client_encoding");
  vals.push_back("UTF8");
  keys.push_back(nullptr);
  vals.push_back(nullptr);
  PgConnPtr conn(PQconnectdbParams(keys.data(), vals.data(), 1));
  if (!conn) return Unavailable("cannot connect: out of memory");
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    std::string msg = PQerrorMessage(conn.get());
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    for (char& c : msg) {
      if (c == '\n') c = ' ';
    }
    msg = Scrub(msg, password_);
    bool bad_input = msg.find("authentication failed") != std::string::npos ||
                     msg.find("does not exist") != std::string::npos ||
                     msg.find("no password supplied") != std::string::npos ||
                     msg.find("invalid") != std::string::npos ||
                     msg.find("not permitted") != std::string::npos ||
                     msg.find("missing \"=\"") != std::string::npos;
    return Status(bad_input ? Code::kInvalidArgument : Code::kUnavailable,
                  "cannot connect: " + msg);
  }
  conn_ = std::move(conn);
  // Server notices ("already exists, skipping") are not errors: drop them.
  PQsetNoticeProcessor(
      conn_.get(), [](void*, const char*) {}, nullptr);
  std::string setup =
      "SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET IntervalStyle = 'postgres'; "
      "SET extra_float_digits = 3; SET bytea_output = 'hex'";
  if (role_ == StoreRole::kSource) setup += "; SET default_transaction_read_only = on";
  FERRY_RETURN_IF_ERROR(Exec(setup, "session set-up"));
  std::string probe =
      PQserverVersion(conn_.get()) >= 150000
          ? "SELECT current_schema(), (d.datcollate IN ('C', 'POSIX') AND d.datlocprovider = 'c')"
            "::int FROM pg_database d WHERE d.datname = current_database()"
          : "SELECT current_schema(), (d.datcollate IN ('C', 'POSIX'))::int FROM pg_database d "
            "WHERE d.datname = current_database()";
  FERRY_ASSIGN_OR_RETURN(PgResult r, Query(probe, "read current schema"));
  if (PQntuples(r.get()) != 1 || PQgetisnull(r.get(), 0, 0)) {
    Disconnect();
    return InvalidArgument(
        "the connection has no current schema (no schema of its search_path exists): create the "
        "schema or set search_path, e.g. ?options=-csearch_path%3Dmy_schema");
  }
  schema_ = PQgetvalue(r.get(), 0, 0);
  c_default_ = std::string(PQgetvalue(r.get(), 0, 1)) == "1";
  return Status::Ok();
}

void PgStore::Disconnect() {
  conn_.reset();
  prepared_.clear();
  staged_.clear();
}

Status PgStore::EnsureConnected() {
  if (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK) {
    Status s = Connect();
    if (!s.ok())
      return Unavailable(fmt::format("{}: reconnect failed: {}", Describe(), s.message()));
  }
  if (PQtransactionStatus(conn_.get()) != PQTRANS_IDLE) {
    FERRY_RETURN_IF_ERROR(Exec("ROLLBACK", "roll back"));
  }
  return Status::Ok();
}

Status PgStore::Error(const PGresult* res, std::string_view what) {
  Status s = PgError(conn_.get(), res, what);
  if (conn_ && PQstatus(conn_.get()) != CONNECTION_OK) Disconnect();
  return Status(s.code(), Scrub(s.message(), password_));
}

Status PgStore::Exec(const std::string& sql, std::string_view what) {
  if (!conn_) return Unavailable(fmt::format("{}: connection lost", what));
  PgResult r(PQexec(conn_.get(), sql.c_str()));
  ExecStatusType st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return Error(r.get(), what);
  return Status::Ok();
}

Result<PgResult> PgStore::Query(const std::string& sql, std::string_view what,
                                const std::vector<std::optional<std::string>>& params,
                                bool binary) {
  if (!conn_) return Unavailable(fmt::format("{}: connection lost", what));
  std::vector<const char*> values;
  std::vector<int> lengths;
  for (const auto& p : params) {
    values.push_back(p ? p->c_str() : nullptr);
    lengths.push_back(p ? static_cast<int>(p->size()) : 0);
  }
  PgResult r(params.empty() && !binary
                 ? PQexec(conn_.get(), sql.c_str())
                 : PQexecParams(conn_.get(), sql.c_str(), static_cast<int>(params.size()), nullptr,
                                values.data(), lengths.data(), nullptr, binary ? 1 : 0));
  ExecStatusType st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return Error(r.get(), what);
  return r;
}

Result<PgResult> PgStore::ExecPrepared(const std::string& sql, std::string_view what,
                                       const std::vector<std::optional<std::string>>& params,
                                       const std::vector<int>& formats, bool binary) {
  if (!conn_) return Unavailable(fmt::format("{}: connection lost", what));
  auto it = prepared_.find(sql);
  if (it == prepared_.end()) {
    std::string name = fmt::format("ferry_{}", ++next_stmt_);
    PgResult p(PQprepare(conn_.get(), name.c_str(), sql.c_str(), static_cast<int>(params.size()),
                         nullptr));
    if (!p || PQresultStatus(p.get()) != PGRES_COMMAND_OK) return Error(p.get(), what);
    it = prepared_.emplace(sql, name).first;
  }
  std::vector<const char*> values;
  std::vector<int> lengths;
  for (const auto& p : params) {
    values.push_back(p ? p->data() : nullptr);
    lengths.push_back(p ? static_cast<int>(p->size()) : 0);
  }
  PgResult r(PQexecPrepared(conn_.get(), it->second.c_str(), static_cast<int>(params.size()),
                            values.data(), lengths.data(), formats.data(), binary ? 1 : 0));
  ExecStatusType st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return Error(r.get(), what);
  return r;
}

Status PgStore::RefuseWrite() const {
  return FailedPrecondition(fmt::format(
      "{} is opened as the legacy store (read-only); ferry never writes to it", Describe()));
}

std::string PgStore::Qualified(const std::string& table) const {
  return PgQuoteIdent(schema_) + "." + PgQuoteIdent(table);
}

// ---- catalog ----

Result<PgStore::TableInfo*> PgStore::Info(const std::string& table) {
  auto it = info_.find(table);
  if (it != info_.end()) return &it->second;
  TableInfo info;
  info.qualified = Qualified(table);
  FERRY_ASSIGN_OR_RETURN(
      PgResult r,
      Query("SELECT a.attname, format_type(a.atttypid, a.atttypmod), "
            "CASE WHEN t.typtype = 'd' THEN bt.typname ELSE t.typname END, "
            "a.attcollation::int8, a.attnotnull::int, "
            "coalesce((SELECT array_position(c.conkey, a.attnum) FROM pg_constraint c "
            "  WHERE c.conrelid = a.attrelid AND c.contype = 'p'), 0), "
            "CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) "
            "  ELSE format_type(a.atttypid, a.atttypmod) END "
            "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "LEFT JOIN pg_type bt ON bt.oid = t.typbasetype "
            "WHERE a.attrelid = (SELECT c.oid FROM pg_class c JOIN pg_namespace n "
            "  ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 "
            "  AND c.relkind IN ('r', 'p')) "
            "AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum",
            fmt::format("columns of table {}", table), {schema_, table}));
  if (PQntuples(r.get()) == 0) {
    return NotFound(
        fmt::format("{}: table {} does not exist in schema {}", Describe(), table, schema_));
  }
  std::vector<std::pair<int64_t, size_t>> pk;
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    ColInfo c;
    c.name = PQgetvalue(r.get(), i, 0);
    c.type = PQgetvalue(r.get(), i, 1);
    std::string base = PQgetvalue(r.get(), i, 2);
    int64_t coll = std::atoll(PQgetvalue(r.get(), i, 3));
    c.not_null = std::string(PQgetvalue(r.get(), i, 4)) == "1";
    int64_t pk_pos = std::atoll(PQgetvalue(r.get(), i, 5));
    c.neutral = PgNeutralType(PQgetvalue(r.get(), i, 6));  // a domain's base type
    if (base == "int2" || base == "int4" || base == "int8")
      c.wire = Wire::kInt;
    else if (base == "float4" || base == "float8")
      c.wire = Wire::kFloat;
    else if (base == "bytea")
      c.wire = Wire::kBytes;
    else if (base == "bool")
      c.wire = Wire::kBool;
    else
      c.wire = Wire::kText;
    c.string_type = base == "text" || base == "varchar" || base == "bpchar" || base == "name";
    c.needs_c = coll != 0 && coll != kCollationC && coll != kCollationPosix &&
                !(coll == kCollationDefault && c_default_);
    if (pk_pos > 0) pk.emplace_back(pk_pos, info.cols.size());
    info.cols.push_back(std::move(c));
  }
  std::sort(pk.begin(), pk.end());
  for (const auto& p : pk) info.pk.push_back(p.second);
  return &info_.emplace(table, std::move(info)).first->second;
}

}  // namespace ferry
