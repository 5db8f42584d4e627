#include "common/pg_store.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <utility>

#include "common/key_codec.h"
#include "common/text_util.h"

namespace ferry {
namespace {

bool IsMetaTable(std::string_view name) { return IEquals(name, kMetaTable); }

Status RefuseMeta(std::string_view name) {
  return InvalidArgument(fmt::format(
      "table {} is ferry's reserved metadata table; it is never copied or written as user data",
      name));
}

// First of rowid, _rowid_, oid not shadowed by a column (as SqliteStore).
std::string RowidAlias(const std::vector<Column>& columns) {
  for (const char* alias : {"rowid", "_rowid_", "oid"}) {
    bool shadowed = std::any_of(columns.begin(), columns.end(),
                                [&](const Column& c) { return IEquals(c.name, alias); });
    if (!shadowed) return alias;
  }
  return "";
}

// ---- binary wire helpers ----

uint64_t ReadBe(const char* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

void PutBe(std::string* out, uint64_t v, int n) {
  for (int i = n - 1; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

std::string DoubleText(double d, bool sqlite_style) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  std::string s = fmt::format("{}", d);
  if (sqlite_style && s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

bool ParseInt(const std::string& s, int64_t* out) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || end != s.c_str() + s.size()) return false;
  *out = v;
  return true;
}

bool ParseDouble(const std::string& s, double* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size()) return false;
  *out = v;
  return true;
}

const char* KindName(const Value& v) {
  switch (v.index()) {
    case 1:
      return "integer";
    case 2:
      return "real";
    case 3:
      return "text";
    case 4:
      return "blob";
    default:
      return "null";
  }
}

// ---- DDL translation ----

// A tiny tokenizer for CREATE INDEX statements (SQLite's and PostgreSQL's).
struct Scanner {
  const std::string& s;
  size_t i = 0;

  void Ws() {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  }
  // A keyword (case-insensitive) if next; consumes it.
  bool Word(std::string_view w) {
    Ws();
    if (s.size() - i < w.size() || !IEquals(std::string_view(s).substr(i, w.size()), w)) {
      return false;
    }
    size_t e = i + w.size();
    if (e < s.size() && (std::isalnum(static_cast<unsigned char>(s[e])) || s[e] == '_')) {
      return false;
    }
    i = e;
    return true;
  }
  // An identifier: "quoted", [bracketed], `backticked` or bare. Returns the
  // unquoted name; empty if none.
  std::string Ident() {
    Ws();
    if (i >= s.size()) return "";
    char open = s[i];
    char close = open == '[' ? ']' : open;
    if (open == '"' || open == '[' || open == '`') {
      std::string out;
      for (++i; i < s.size(); ++i) {
        if (s[i] == close) {
          if (close != ']' && i + 1 < s.size() && s[i + 1] == close) {
            out += close;
            ++i;
            continue;
          }
          ++i;
          return out;
        }
        out += s[i];
      }
      return "";
    }
    size_t start = i;
    while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '_' ||
                            s[i] == '$' || static_cast<unsigned char>(s[i]) >= 0x80)) {
      ++i;
    }
    return s.substr(start, i - start);
  }
  // ident or schema.ident; returns the last part.
  std::string QualifiedIdent() {
    std::string name = Ident();
    Ws();
    if (i < s.size() && s[i] == '.') {
      ++i;
      name = Ident();
    }
    return name;
  }
};

// Splits "a, b COLLATE x DESC, (c+1)" at top-level commas.
std::vector<std::string> SplitTopLevel(std::string_view body) {
  std::vector<std::string> out;
  SqlNesting nest;
  size_t start = 0;
  for (size_t i = 0; i < body.size(); ++i) {
    if (nest.Feed(body[i]) && body[i] == ',' && nest.depth == 0) {
      out.emplace_back(body.substr(start, i - start));
      start = i + 1;
    }
  }
  out.emplace_back(body.substr(start));
  return out;
}

std::string TrimWs(std::string s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

// SQLite "CREATE [UNIQUE] INDEX [IF NOT EXISTS] name ON t (cols) [WHERE ...]"
// into PostgreSQL, for the target table `qualified` with `columns`: plain
// column references are quoted with the column's exact name, COLLATE clauses
// are dropped (keys and indexes order bytewise anyway), expressions and the
// WHERE clause are kept as written.
Result<std::string> TranslateSqliteIndex(const std::string& sql, const TableSchema& table,
                                         const std::string& qualified) {
  Scanner sc{sql};
  auto bad = [&]() {
    return InvalidArgument(fmt::format("table {}: cannot translate SQLite index to PostgreSQL: {}",
                                       table.name, sql.substr(0, 160)));
  };
  if (!sc.Word("create")) return bad();
  bool unique = sc.Word("unique");
  if (!sc.Word("index")) return bad();
  if (sc.Word("if")) {
    if (!sc.Word("not") || !sc.Word("exists")) return bad();
  }
  std::string name = sc.QualifiedIdent();
  if (name.empty() || !sc.Word("on")) return bad();
  if (sc.QualifiedIdent().empty()) return bad();
  sc.Ws();
  if (sc.i >= sql.size() || sql[sc.i] != '(') return bad();
  // Find the matching ')'.
  size_t open = sc.i;
  SqlNesting nest;
  size_t close = std::string::npos;
  for (size_t i = open; i < sql.size(); ++i) {
    if (nest.Feed(sql[i]) && sql[i] == ')' && nest.depth == 0) {
      close = i;
      break;
    }
  }
  if (close == std::string::npos) return bad();
  std::vector<std::string> elems;
  for (std::string e : SplitTopLevel(std::string_view(sql).substr(open + 1, close - open - 1))) {
    e = TrimWs(e);
    std::string order;
    std::string upper = ToUpper(e);
    for (const char* dir : {" ASC", " DESC"}) {
      size_t n = std::strlen(dir);
      if (upper.size() > n && upper.compare(upper.size() - n, n, dir) == 0) {
        order = dir;
        e = TrimWs(e.substr(0, e.size() - n));
        upper = ToUpper(e);
      }
    }
    size_t coll = upper.find(" COLLATE ");
    if (coll != std::string::npos) e = TrimWs(e.substr(0, coll));
    Scanner one{e};
    std::string ident = one.Ident();
    one.Ws();
    std::string out;
    if (!ident.empty() && one.i == e.size()) {
      auto it = std::find_if(table.columns.begin(), table.columns.end(),
                             [&](const Column& c) { return IEquals(c.name, ident); });
      out = PgQuoteIdent(it != table.columns.end() ? it->name : ident);
    } else {
      out = "(" + e + ")";
    }
    elems.push_back(out + order);
  }
  std::string rest = TrimWs(sql.substr(close + 1));
  return fmt::format("CREATE {}INDEX IF NOT EXISTS {} ON {} ({}){}{}", unique ? "UNIQUE " : "",
                     PgQuoteIdent(name), qualified, Join(elems), rest.empty() ? "" : " ", rest);
}

// pg_get_indexdef() text "CREATE [UNIQUE] INDEX name ON [ONLY] s.t USING ..."
// retargeted at `qualified`, with IF NOT EXISTS.
Result<std::string> RetargetPgIndex(const std::string& sql, const std::string& table,
                                    const std::string& qualified) {
  Scanner sc{sql};
  auto bad = [&]() {
    return InvalidArgument(fmt::format("table {}: cannot read PostgreSQL index definition: {}",
                                       table, sql.substr(0, 160)));
  };
  if (!sc.Word("create")) return bad();
  bool unique = sc.Word("unique");
  if (!sc.Word("index")) return bad();
  if (sc.Word("if")) {
    if (!sc.Word("not") || !sc.Word("exists")) return bad();
  }
  std::string name = sc.Ident();
  if (name.empty() || !sc.Word("on")) return bad();
  (void)sc.Word("only");
  if (sc.QualifiedIdent().empty()) return bad();
  sc.Ws();
  std::string rest = sql.substr(sc.i);
  return fmt::format("CREATE {}INDEX IF NOT EXISTS {} ON {} {}", unique ? "UNIQUE " : "",
                     PgQuoteIdent(name), qualified, rest);
}

constexpr int64_t kCollationDefault = 100;
constexpr int64_t kCollationC = 950;
constexpr int64_t kCollationPosix = 951;
constexpr uint64_t kExactPlanRows = 100000;  // ordered pass up to this many rows
constexpr uint64_t kSamplesPerRange = 32;

}  // namespace

// ---- transactions ----

// BEGIN on Begin(); ROLLBACK on destruction unless Commit() succeeded.
class PgTxn {
 public:
  // Holds the owner's pointer, which a lost connection resets.
  explicit PgTxn(const PgConnPtr& conn) : conn_(conn) {}
  ~PgTxn() {
    if (active_ && conn_ && PQstatus(conn_.get()) == CONNECTION_OK) {
      PgResult(PQexec(conn_.get(), "ROLLBACK"));
    }
  }
  void Started() { active_ = true; }
  void Done() { active_ = false; }

 private:
  const PgConnPtr& conn_;
  bool active_ = false;
};

// ---- open ----

PgStore::PgStore(std::string uri, StoreRole role)
    : uri_(std::move(uri)), password_(PgPasswordOf(uri_)), role_(role) {}

PgStore::~PgStore() = default;

std::string PgStore::Describe() const { return RedactUri(uri_); }

int PgStore::BackendPid() const { return conn_ ? PQbackendPID(conn_.get()) : 0; }

std::string PgStore::MapSqliteType(const std::string& decl) {
  std::string t = ToUpper(decl);
  auto has = [&](const char* s) { return t.find(s) != std::string::npos; };
  if (has("INT")) return "bigint";
  if (has("CHAR") || has("CLOB") || has("TEXT")) return "text";
  if (has("BLOB") || TrimWs(t).empty()) return "bytea";
  if (has("REAL") || has("FLOA") || has("DOUB")) return "double precision";
  return "numeric";
}

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
            "  WHERE c.conrelid = a.attrelid AND c.contype = 'p'), 0) "
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

Result<std::vector<TableSchema>> PgStore::ListTables() {
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  FERRY_ASSIGN_OR_RETURN(
      PgResult tables,
      Query("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "ORDER BY c.relname COLLATE \"C\"",
            "list tables", {schema_}));
  std::vector<TableSchema> out;
  for (int i = 0; i < PQntuples(tables.get()); ++i) {
    TableSchema t;
    t.name = PQgetvalue(tables.get(), i, 0);
    if (IsMetaTable(t.name)) continue;
    t.dialect = "postgresql";
    info_.erase(t.name);
    FERRY_ASSIGN_OR_RETURN(TableInfo * info, Info(t.name));
    std::vector<std::string> defs;
    for (const ColInfo& c : info->cols) {
      t.columns.push_back(Column{c.name, c.type, c.not_null});
      defs.push_back(
          fmt::format("{} {}{}", PgQuoteIdent(c.name), c.type, c.not_null ? " NOT NULL" : ""));
    }
    t.key_columns = info->pk;
    if (!info->pk.empty()) {
      std::vector<std::string> pk;
      for (size_t p : info->pk) pk.push_back(PgQuoteIdent(info->cols[p].name));
      defs.push_back("PRIMARY KEY (" + Join(pk) + ")");
    }
    t.create_sql = fmt::format("CREATE TABLE {} ({})", info->qualified, Join(defs));
    FERRY_ASSIGN_OR_RETURN(
        PgResult idx, Query("SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i "
                            "JOIN pg_class ic ON ic.oid = i.indexrelid "
                            "WHERE i.indrelid = (SELECT c.oid FROM pg_class c JOIN pg_namespace n "
                            "  ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2) "
                            "AND NOT i.indisprimary ORDER BY ic.relname COLLATE \"C\"",
                            fmt::format("indexes of table {}", t.name), {schema_, t.name}));
    for (int j = 0; j < PQntuples(idx.get()); ++j)
      t.index_sql.push_back(PQgetvalue(idx.get(), j, 0));
    out.push_back(std::move(t));
  }
  return out;
}

// ---- source side ----

namespace {

// The key as SQL: comparison tuple, ORDER BY list, and casts for bounds.
struct PgKeySql {
  std::string tuple;
  std::string order;
  size_t arity = 0;
};

}  // namespace

Result<std::vector<std::string>> PgStore::PlanSplits(const TableSchema& table,
                                                     uint64_t rows_per_range, uint64_t* rows) {
  if (IsMetaTable(table.name)) return RefuseMeta(table.name);
  if (rows_per_range == 0) return InvalidArgument("rows_per_range must be at least 1");
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  FERRY_ASSIGN_OR_RETURN(TableInfo * info, Info(table.name));
  if (info->pk.empty()) {
    return InvalidArgument(fmt::format(
        "table {} has no primary key; ferry needs one to order a PostgreSQL table (add a primary "
        "key, or leave the table out with --tables)",
        table.name));
  }
  std::vector<std::string> keys, order;
  for (size_t p : info->pk) {
    const ColInfo& c = info->cols[p];
    std::string sel = PgQuoteIdent(c.name);
    if (c.wire == Wire::kBool)
      sel += "::int4";
    else if (c.wire == Wire::kText && c.type != "text")
      sel += "::text";
    keys.push_back(sel);
    order.push_back(PgQuoteIdent(c.name) + (c.needs_c ? " COLLATE \"C\"" : ""));
  }
  const std::string what = fmt::format("plan table {}", table.name);

  // Estimate.
  auto estimate = [&]() -> Result<double> {
    FERRY_ASSIGN_OR_RETURN(
        PgResult r,
        Query(fmt::format("SELECT c.reltuples::float8, c.relpages::int8, "
                          "(pg_relation_size(c.oid) / current_setting('block_size')::int8) "
                          "FROM pg_class c WHERE c.oid = {}::regclass",
                          PgQuoteLiteral(info->qualified)),
              what));
    double tuples = std::atof(PQgetvalue(r.get(), 0, 0));
    double relpages = std::atof(PQgetvalue(r.get(), 0, 1));
    double pages = std::atof(PQgetvalue(r.get(), 0, 2));
    if (tuples < 0) return -1.0;
    if (relpages > 0) return tuples / relpages * pages;
    return pages > 0 ? -1.0 : 0.0;  // analyzed while empty, grown since: unknown
  };
  FERRY_ASSIGN_OR_RETURN(double est, estimate());
  if (est < 0) {
    // Never analyzed: ANALYZE (statistics only; best effort, may lack privilege).
    if (Exec("ANALYZE " + info->qualified, what).ok()) {
      FERRY_ASSIGN_OR_RETURN(est, estimate());
    }
    FERRY_RETURN_IF_ERROR(EnsureConnected());
  }

  const uint64_t ranges_wanted =
      est < 0 ? 0 : static_cast<uint64_t>(std::ceil(est / static_cast<double>(rows_per_range)));
  const bool exact = est < 0 || est <= static_cast<double>(kExactPlanRows) ||
                     ranges_wanted * kSamplesPerRange >= static_cast<uint64_t>(est);
  std::string sql = fmt::format("SELECT {} FROM {}", Join(keys), info->qualified);
  if (!exact) {
    double pct =
        std::min(100.0, 100.0 * 1.25 * static_cast<double>(ranges_wanted) * kSamplesPerRange / est);
    sql += fmt::format(" TABLESAMPLE {} ({:.6f})", est > 5e6 ? "SYSTEM" : "BERNOULLI", pct);
  }
  sql += " ORDER BY " + Join(order);

  // Stream the keys (single-row mode: memory is one row, or the sample).
  if (!PQsendQueryParams(conn_.get(), sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 1) ||
      !PQsetSingleRowMode(conn_.get())) {
    return Error(nullptr, what);
  }
  std::vector<std::string> splits, sample;
  std::vector<Value> values(info->pk.size());
  uint64_t n = 0;
  Status failed;
  while (PGresult* raw = PQgetResult(conn_.get())) {
    PgResult r(raw);
    ExecStatusType st = PQresultStatus(r.get());
    if (st == PGRES_SINGLE_TUPLE) {
      if (!failed.ok()) continue;
      if (exact && !(n != 0 && n % rows_per_range == 0)) {
        ++n;
        continue;
      }
      for (size_t k = 0; k < values.size(); ++k) {
        const ColInfo& c = info->cols[info->pk[k]];
        const char* v = PQgetvalue(r.get(), 0, static_cast<int>(k));
        int len = PQgetlength(r.get(), 0, static_cast<int>(k));
        switch (c.wire) {
          case Wire::kInt:
          case Wire::kBool:
            values[k] = static_cast<int64_t>(len == 2   ? static_cast<int16_t>(ReadBe(v, 2))
                                             : len == 4 ? static_cast<int32_t>(ReadBe(v, 4))
                                                        : static_cast<int64_t>(ReadBe(v, 8)));
            break;
          case Wire::kFloat: {
            if (len == 4) {
              uint32_t bits = static_cast<uint32_t>(ReadBe(v, 4));
              float f;
              std::memcpy(&f, &bits, 4);
              values[k] = static_cast<double>(f);
            } else {
              uint64_t bits = ReadBe(v, 8);
              double d;
              std::memcpy(&d, &bits, 8);
              values[k] = d;
            }
            break;
          }
          case Wire::kBytes:
            values[k] = Blob{std::string(v, len)};
            break;
          case Wire::kText:
            values[k] = Text{std::string(v, len)};
            break;
        }
      }
      (exact ? splits : sample).push_back(EncodeKey(values));
      ++n;
    } else if (st != PGRES_TUPLES_OK && failed.ok()) {
      failed = Error(r.get(), what);
    }
  }
  FERRY_RETURN_IF_ERROR(failed);
  if (exact) {
    if (rows) *rows = n;
    return splits;
  }
  const size_t m = sample.size();
  if (rows) *rows = static_cast<uint64_t>(est);
  if (m == 0 || ranges_wanted <= 1) return splits;
  for (uint64_t i = 1; i < ranges_wanted; ++i) {
    size_t idx = static_cast<size_t>(i * m / ranges_wanted);
    if (idx == 0 || idx >= m) continue;
    if (!splits.empty() && splits.back() == sample[idx]) continue;
    splits.push_back(sample[idx]);
  }
  return splits;
}

Status PgStore::ReadBatch(const TableSchema& table, const KeyRange& range, std::string_view after,
                          size_t max_rows, size_t max_bytes, RowBatch* out) {
  out->Clear();
  out->width = table.width();
  if (IsMetaTable(table.name)) return RefuseMeta(table.name);
  if (!range.table.empty() && range.table != table.name) {
    return InvalidArgument(
        fmt::format("range of table {} read as table {}", range.table, table.name));
  }
  if (max_rows == 0) return InvalidArgument("max_rows must be at least 1");
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  FERRY_ASSIGN_OR_RETURN(TableInfo * info, Info(table.name));
  if (info->pk.empty() || table.rowid_key()) {
    return InvalidArgument(fmt::format(
        "table {} has no primary key; ferry needs one to read a PostgreSQL table", table.name));
  }
  // Cells in the schema's column order, matched by name.
  std::vector<size_t> cell_cols;
  for (const Column& c : table.columns) {
    auto it = std::find_if(info->cols.begin(), info->cols.end(),
                           [&](const ColInfo& ci) { return ci.name == c.name; });
    if (it == info->cols.end()) {
      return InvalidArgument(fmt::format("table {} has no column {}", table.name, c.name));
    }
    cell_cols.push_back(static_cast<size_t>(it - info->cols.begin()));
  }
  std::vector<size_t> key_cells;  // positions in the row of the key columns
  for (size_t p : info->pk) {
    auto it = std::find(cell_cols.begin(), cell_cols.end(), p);
    if (it == cell_cols.end()) {
      return InvalidArgument(fmt::format("table {}: key column {} is not in the schema", table.name,
                                         info->cols[p].name));
    }
    key_cells.push_back(static_cast<size_t>(it - cell_cols.begin()));
  }
  const size_t arity = info->pk.size();

  std::vector<std::string> sel;
  for (size_t ci : cell_cols) {
    const ColInfo& c = info->cols[ci];
    std::string s = PgQuoteIdent(c.name);
    if (c.wire == Wire::kBool)
      s += "::int4";
    else if (c.wire == Wire::kText && c.type != "text")
      s += "::text";
    sel.push_back(s);
  }
  std::vector<std::string> tup, order;
  for (size_t p : info->pk) {
    const ColInfo& c = info->cols[p];
    std::string e = PgQuoteIdent(c.name) + (c.needs_c ? " COLLATE \"C\"" : "");
    tup.push_back(e);
    order.push_back(e);
  }
  const std::string tuple = arity == 1 ? tup[0] : "(" + Join(tup) + ")";

  std::vector<std::optional<std::string>> params;
  std::vector<int> formats;
  auto bound = [&](std::string_view encoded, std::string_view what_key) -> Result<std::string> {
    auto values = DecodeKey(encoded);
    if (!values.ok()) {
      return InvalidArgument(fmt::format("table {}: malformed {} key: {}", table.name, what_key,
                                         values.status().message()));
    }
    if (values->size() != arity) {
      return InvalidArgument(fmt::format("table {}: {} key {} does not fit the table's key",
                                         table.name, what_key, KeyToString(encoded)));
    }
    std::vector<std::string> ps;
    for (size_t k = 0; k < arity; ++k) {
      const ColInfo& c = info->cols[info->pk[k]];
      const Value& v = (*values)[k];
      size_t n = params.size() + 1;
      bool ok = true;
      if (c.wire == Wire::kBytes) {
        if (auto* b = std::get_if<Blob>(&v))
          params.push_back(b->bytes);
        else if (auto* t = std::get_if<Text>(&v))
          params.push_back(t->bytes);
        else
          ok = false;
        formats.push_back(1);
        ps.push_back(fmt::format("${}::bytea", n));
        if (!ok) break;
        continue;
      }
      if (auto* i = std::get_if<int64_t>(&v))
        params.push_back(std::to_string(*i));
      else if (auto* d = std::get_if<double>(&v))
        params.push_back(DoubleText(*d, false));
      else if (auto* t = std::get_if<Text>(&v))
        params.push_back(t->bytes);
      else
        ok = false;
      if (!ok) break;
      formats.push_back(0);
      ps.push_back(fmt::format("${}::{}", n, c.type));
    }
    if (ps.size() != arity) {
      return InvalidArgument(fmt::format("table {}: {} key {} does not fit the table's key types",
                                         table.name, what_key, KeyToString(encoded)));
    }
    return arity == 1 ? ps[0] : "(" + Join(ps) + ")";
  };

  std::string where;
  const bool exclusive = !after.empty();
  if (exclusive || !range.lo.empty()) {
    FERRY_ASSIGN_OR_RETURN(std::string p, bound(exclusive ? after : std::string_view(range.lo),
                                                exclusive ? "cursor" : "lower"));
    where += fmt::format(" WHERE {} {} {}", tuple, exclusive ? ">" : ">=", p);
  }
  if (!range.hi.empty()) {
    FERRY_ASSIGN_OR_RETURN(std::string p, bound(range.hi, "upper"));
    where += fmt::format(" {} {} < {}", where.empty() ? "WHERE" : "AND", tuple, p);
  }
  size_t limit = max_rows;
  if (info->avg_row_bytes > 0) {
    limit = std::clamp<size_t>(
        static_cast<size_t>(static_cast<double>(max_bytes) / info->avg_row_bytes) + 1, 1, max_rows);
  }
  params.push_back(std::to_string(limit));
  formats.push_back(0);
  const std::string sql = fmt::format("SELECT {} FROM {}{} ORDER BY {} LIMIT ${}::int8", Join(sel),
                                      info->qualified, where, Join(order), params.size());
  FERRY_ASSIGN_OR_RETURN(PgResult r, ExecPrepared(sql, fmt::format("read table {}", table.name),
                                                  params, formats, /*binary=*/true));
  const size_t width = table.width();
  const int nrows = PQntuples(r.get());
  out->cells.reserve(static_cast<size_t>(nrows) * width);
  std::vector<Value> key_values(arity);
  for (int row = 0; row < nrows; ++row) {
    for (size_t c = 0; c < width; ++c) {
      const int col = static_cast<int>(c);
      if (PQgetisnull(r.get(), row, col)) {
        out->cells.emplace_back(Null{});
        continue;
      }
      const char* v = PQgetvalue(r.get(), row, col);
      const int len = PQgetlength(r.get(), row, col);
      switch (info->cols[cell_cols[c]].wire) {
        case Wire::kInt:
        case Wire::kBool:
          out->cells.emplace_back(static_cast<int64_t>(len == 2 ? static_cast<int16_t>(ReadBe(v, 2))
                                                       : len == 4
                                                           ? static_cast<int32_t>(ReadBe(v, 4))
                                                           : static_cast<int64_t>(ReadBe(v, 8))));
          break;
        case Wire::kFloat:
          if (len == 4) {
            uint32_t bits = static_cast<uint32_t>(ReadBe(v, 4));
            float f;
            std::memcpy(&f, &bits, 4);
            out->cells.emplace_back(static_cast<double>(f));
          } else {
            uint64_t bits = ReadBe(v, 8);
            double d;
            std::memcpy(&d, &bits, 8);
            out->cells.emplace_back(d);
          }
          break;
        case Wire::kBytes:
          out->cells.emplace_back(Blob{std::string(v, len)});
          break;
        case Wire::kText:
          out->cells.emplace_back(Text{std::string(v, len)});
          break;
      }
      out->bytes += PayloadBytes(out->cells.back());
    }
    const Value* cells = out->cells.data() + out->cells.size() - width;
    for (size_t k = 0; k < arity; ++k) key_values[k] = cells[key_cells[k]];
    out->keys.push_back(EncodeKey(key_values));
    out->bytes += out->keys.back().size();
    if (out->bytes >= max_bytes) break;
  }
  if (out->rows() > 0) {
    double avg = static_cast<double>(out->bytes) / static_cast<double>(out->rows());
    info->avg_row_bytes = info->avg_row_bytes > 0 ? (info->avg_row_bytes + avg) / 2 : avg;
  }
  return Status::Ok();
}

// ---- target side ----

Status PgStore::CreateMeta() {
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  Status s = Exec(fmt::format("CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, value bigint, "
                              "bytes bytea)",
                              Qualified(kMetaTable)),
                  "create metadata table");
  if (!s.ok() && s.code() == Code::kPermanent) {
    // A concurrent CREATE TABLE IF NOT EXISTS won the race (23505).
    FERRY_RETURN_IF_ERROR(EnsureConnected());
    FERRY_ASSIGN_OR_RETURN(bool exists, MetaExists());
    if (exists) return Status::Ok();
  }
  return s;
}

Result<bool> PgStore::MetaExists() {
  FERRY_ASSIGN_OR_RETURN(
      PgResult r, Query("SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = $1 AND c.relname = $2",
                        "look up metadata table", {schema_, std::string(kMetaTable)}));
  return PQntuples(r.get()) > 0;
}

Status PgStore::CreateOneTable(const TableSchema& table) {
  if (table.dialect != "sqlite" && table.dialect != "postgresql") {
    return InvalidArgument(
        fmt::format("table {}: unknown schema dialect '{}'", table.name, table.dialect));
  }
  const bool sqlite = table.dialect == "sqlite";
  std::string alias;
  if (table.rowid_key()) {
    alias = RowidAlias(table.columns);
    if (alias.empty()) {
      return InvalidArgument(fmt::format(
          "table {} has no primary key and its columns shadow rowid, _rowid_ and oid", table.name));
    }
  }
  std::vector<std::string> want;
  if (!alias.empty()) want.push_back(alias);
  for (const Column& c : table.columns) want.push_back(c.name);

  const std::string q = Qualified(table.name);
  FERRY_ASSIGN_OR_RETURN(
      PgResult have_r,
      Query("SELECT a.attname FROM pg_attribute a WHERE a.attrelid = (SELECT c.oid FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND "
            "c.relname = $2) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' "
            "ORDER BY a.attnum",
            fmt::format("look up table {}", table.name), {schema_, table.name}));
  if (PQntuples(have_r.get()) > 0) {
    std::vector<std::string> have;
    for (int i = 0; i < PQntuples(have_r.get()); ++i)
      have.push_back(PQgetvalue(have_r.get(), i, 0));
    FERRY_RETURN_IF_ERROR(CheckSameColumns(table.name, have, want));
  } else {
    std::vector<std::string> defs, pk;
    if (!alias.empty()) {
      defs.push_back(PgQuoteIdent(alias) + " bigint NOT NULL");
      pk.push_back(PgQuoteIdent(alias));
    }
    for (const Column& c : table.columns) {
      std::string type = sqlite ? MapSqliteType(c.type) : c.type;
      defs.push_back(
          fmt::format("{} {}{}", PgQuoteIdent(c.name), type, c.not_null ? " NOT NULL" : ""));
    }
    for (size_t p : table.key_columns) {
      if (p >= table.columns.size()) {
        return InvalidArgument(fmt::format("table {}: key column {} out of range", table.name, p));
      }
      pk.push_back(PgQuoteIdent(table.columns[p].name));
    }
    defs.push_back("PRIMARY KEY (" + Join(pk) + ")");
    Status s = Exec(fmt::format("CREATE TABLE {} ({})", q, Join(defs)),
                    fmt::format("cannot create target table {}", table.name));
    if (!s.ok()) return s;
  }
  for (const std::string& index : table.index_sql) {
    Result<std::string> sql =
        sqlite ? TranslateSqliteIndex(index, table, q) : RetargetPgIndex(index, table.name, q);
    if (!sql.ok()) return sql.status();
    FERRY_RETURN_IF_ERROR(
        Exec(*sql, fmt::format("cannot create index of target table {} ({})", table.name, *sql)));
  }
  return Status::Ok();
}

Status PgStore::CreateSchema(const std::vector<TableSchema>& tables) {
  if (role_ == StoreRole::kSource) return RefuseWrite();
  for (const TableSchema& t : tables) {
    if (IsMetaTable(t.name)) return RefuseMeta(t.name);
  }
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  PgTxn txn(conn_);
  FERRY_RETURN_IF_ERROR(Exec("BEGIN", "create schema"));
  txn.Started();
  FERRY_RETURN_IF_ERROR(Exec(fmt::format("CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, "
                                         "value bigint, bytes bytea)",
                                         Qualified(kMetaTable)),
                             "create metadata table"));
  for (const TableSchema& t : tables) {
    Status s = CreateOneTable(t);
    if (!s.ok()) {
      // DDL errors are bad input (unknown type, bad index), not transient.
      if (s.code() == Code::kPermanent) s = InvalidArgument(s.message());
      return s;
    }
  }
  FERRY_RETURN_IF_ERROR(Exec("COMMIT", "create schema"));
  txn.Done();
  info_.clear();
  writes_.clear();
  return Status::Ok();
}

Result<const PgStore::WritePlan*> PgStore::PlanWrite(const TableSchema& table, TableInfo* info) {
  auto it = writes_.find(table.name);
  if (it != writes_.end()) return &it->second;
  WritePlan plan;
  std::vector<std::string> cells;
  if (table.rowid_key()) {
    std::string alias = RowidAlias(table.columns);
    if (alias.empty()) return InvalidArgument(fmt::format("table {} cannot be keyed", table.name));
    cells.push_back(alias);
  }
  for (const Column& c : table.columns) cells.push_back(c.name);
  if (info->pk.empty()) {
    return FailedPrecondition(fmt::format(
        "target table {} has no primary key; ferry writes idempotent upserts and needs one (drop "
        "the table and let ferry create it, or add the primary key)",
        table.name));
  }
  std::vector<std::string> stage_cols, names, exprs;
  std::vector<size_t> targets;
  for (size_t i = 0; i < cells.size(); ++i) {
    auto found = std::find_if(info->cols.begin(), info->cols.end(),
                              [&](const ColInfo& c) { return c.name == cells[i]; });
    if (found == info->cols.end()) {
      found = std::find_if(info->cols.begin(), info->cols.end(),
                           [&](const ColInfo& c) { return IEquals(c.name, cells[i]); });
    }
    if (found == info->cols.end()) {
      return FailedPrecondition(
          fmt::format("target table {} has no column {}", table.name, cells[i]));
    }
    const ColInfo& c = *found;
    targets.push_back(static_cast<size_t>(found - info->cols.begin()));
    const char* stage_type = "text";
    std::string expr = fmt::format("c{}", i + 1);
    bool cast = true;
    switch (c.wire) {
      case Wire::kInt:
        stage_type = "bigint";
        cast = c.type != "bigint";
        break;
      case Wire::kFloat:
        stage_type = "double precision";
        cast = c.type != "double precision";
        break;
      case Wire::kBytes:
        stage_type = "bytea";
        cast = c.type != "bytea";
        break;
      case Wire::kText:
        cast = !c.string_type;
        break;  // varchar(n): assignment cast checks length
      case Wire::kBool:
        break;
    }
    if (cast) expr += "::" + c.type;
    stage_cols.push_back(fmt::format("c{} {}", i + 1, stage_type));
    plan.wires.push_back(c.wire);
    names.push_back(PgQuoteIdent(c.name));
    plan.names.push_back(c.name);
    exprs.push_back(expr);
  }
  std::vector<std::string> pk, updates;
  for (size_t p : info->pk) {
    if (std::find(targets.begin(), targets.end(), p) == targets.end()) {
      return FailedPrecondition(fmt::format(
          "target table {}: primary-key column {} is not written by the source's columns",
          table.name, info->cols[p].name));
    }
    pk.push_back(PgQuoteIdent(info->cols[p].name));
  }
  for (size_t i = 0; i < targets.size(); ++i) {
    if (std::find(info->pk.begin(), info->pk.end(), targets[i]) != info->pk.end()) continue;
    updates.push_back(fmt::format("{0} = EXCLUDED.{0}", names[i]));
  }
  const std::string stage_name = fmt::format("ferry_stage_{}", ++next_stage_);
  plan.stage = "pg_temp." + PgQuoteIdent(stage_name);
  plan.create_stage = fmt::format("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS",
                                  PgQuoteIdent(stage_name), Join(stage_cols));
  plan.copy_sql = fmt::format("COPY {} FROM STDIN (FORMAT binary)", plan.stage);
  plan.insert_sql = fmt::format(
      "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {} ON CONFLICT ({}) {}",
      info->qualified, Join(names), Join(exprs), plan.stage, Join(pk),
      updates.empty() ? "DO NOTHING" : "DO UPDATE SET " + Join(updates));
  return &writes_.emplace(table.name, std::move(plan)).first->second;
}

Status PgStore::WriteBatch(const TableSchema& table, const RowBatch& batch, const Fence& fence) {
  if (role_ == StoreRole::kSource) return RefuseWrite();
  if (IsMetaTable(table.name)) return RefuseMeta(table.name);
  const size_t width = table.width();
  if (batch.width != width || batch.cells.size() != batch.rows() * width) {
    return InvalidArgument(
        fmt::format("table {}: batch of width {} ({} cells, {} rows) does not "
                    "fit the table's {} cells per row",
                    table.name, batch.width, batch.cells.size(), batch.rows(), width));
  }
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  FERRY_ASSIGN_OR_RETURN(TableInfo * info, Info(table.name));
  FERRY_ASSIGN_OR_RETURN(const WritePlan* plan, PlanWrite(table, info));
  if (!staged_.count(plan->stage)) {
    FERRY_RETURN_IF_ERROR(
        Exec(plan->create_stage, fmt::format("create staging table for {}", table.name)));
    staged_.insert(plan->stage);
  }
  const std::string what = fmt::format("write table {}", table.name);
  PgTxn txn(conn_);
  // BEGIN and the fence in one round trip: the upsert only takes effect if no
  // newer epoch is recorded, and locks the fence row until COMMIT.
  const std::string fence_key = fmt::format("fence/{}/{}", fence.plan_id, fence.range_id);
  const std::string meta = Qualified(kMetaTable);
  {
    FERRY_ASSIGN_OR_RETURN(
        PgResult r,
        Query(fmt::format("BEGIN; INSERT INTO {0} AS m (key, value) VALUES ({1}, {2}) "
                          "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value "
                          "WHERE m.value IS NULL OR m.value <= EXCLUDED.value RETURNING value",
                          meta, PgQuoteLiteral(fence_key), static_cast<int64_t>(fence.epoch)),
              what));
    txn.Started();
    if (PQntuples(r.get()) == 0) {
      std::string recorded = "?";
      auto q =
          Query(fmt::format("SELECT value FROM {} WHERE key = {}", meta, PgQuoteLiteral(fence_key)),
                what);
      if (q.ok() && PQntuples(q->get()) > 0) recorded = PQgetvalue(q->get(), 0, 0);
      return LeaseLost(fmt::format("range {}: epoch {} is older than recorded epoch {}",
                                   fence.range_id, fence.epoch, recorded));
    }
  }
  FERRY_RETURN_IF_ERROR(WriteRows(table, batch, *plan));
  FERRY_RETURN_IF_ERROR(Exec(plan->insert_sql, what));
  if (before_commit_) before_commit_();
  FERRY_RETURN_IF_ERROR(Exec("COMMIT", what));
  txn.Done();
  return Status::Ok();
}

Status PgStore::WriteRows(const TableSchema& table, const RowBatch& batch, const WritePlan& plan) {
  const size_t width = batch.width;
  std::string buf("PGCOPY\n\xff\r\n\0", 11);
  PutBe(&buf, 0, 4);
  PutBe(&buf, 0, 4);
  for (size_t r = 0; r < batch.rows(); ++r) {
    const Value* row = batch.row(r);
    PutBe(&buf, width, 2);
    for (size_t c = 0; c < width; ++c) {
      const Value& v = row[c];
      if (std::holds_alternative<Null>(v)) {
        PutBe(&buf, 0xffffffffu, 4);
        continue;
      }
      auto fail = [&](std::string_view why) {
        return Permanent(
            fmt::format("table {}, column {}, row {}: {} value cannot be stored in a "
                        "{} column{}",
                        table.name, plan.names[c], KeyToString(batch.keys[r]), KindName(v),
                        plan.wires[c] == Wire::kInt     ? "integer"
                        : plan.wires[c] == Wire::kFloat ? "floating-point"
                        : plan.wires[c] == Wire::kBytes ? "bytea"
                                                        : "text-typed",
                        why));
      };
      auto put_bytes = [&](const std::string& s) {
        PutBe(&buf, s.size(), 4);
        buf += s;
      };
      switch (plan.wires[c]) {
        case Wire::kInt: {
          int64_t i = 0;
          if (auto* p = std::get_if<int64_t>(&v)) {
            i = *p;
          } else if (auto* d = std::get_if<double>(&v)) {
            if (!std::isfinite(*d) || std::trunc(*d) != *d || *d < -9.2233720368547758e18 ||
                *d >= 9.2233720368547758e18) {
              return fail(fmt::format(" ({})", DoubleText(*d, false)));
            }
            i = static_cast<int64_t>(*d);
          } else if (auto* t = std::get_if<Text>(&v)) {
            if (!ParseInt(t->bytes, &i)) return fail(" (not an integer)");
          } else {
            return fail("");
          }
          PutBe(&buf, 8, 4);
          PutBe(&buf, static_cast<uint64_t>(i), 8);
          break;
        }
        case Wire::kFloat: {
          double d = 0;
          if (auto* p = std::get_if<double>(&v))
            d = *p;
          else if (auto* i = std::get_if<int64_t>(&v))
            d = static_cast<double>(*i);
          else if (auto* t = std::get_if<Text>(&v)) {
            if (!ParseDouble(t->bytes, &d)) return fail(" (not a number)");
          } else {
            return fail("");
          }
          uint64_t bits;
          std::memcpy(&bits, &d, 8);
          PutBe(&buf, 8, 4);
          PutBe(&buf, bits, 8);
          break;
        }
        case Wire::kBytes:
          if (auto* b = std::get_if<Blob>(&v))
            put_bytes(b->bytes);
          else if (auto* t = std::get_if<Text>(&v))
            put_bytes(t->bytes);
          else if (auto* i = std::get_if<int64_t>(&v))
            put_bytes(std::to_string(*i));
          else
            put_bytes(DoubleText(std::get<double>(v), true));
          break;
        case Wire::kText:
        case Wire::kBool: {
          const std::string* s = nullptr;
          std::string tmp;
          if (auto* t = std::get_if<Text>(&v))
            s = &t->bytes;
          else if (auto* b = std::get_if<Blob>(&v))
            s = &b->bytes;
          else if (auto* i = std::get_if<int64_t>(&v))
            s = &(tmp = std::to_string(*i));
          else
            s = &(tmp = DoubleText(std::get<double>(v), plan.wires[c] == Wire::kText));
          if (s->find('\0') != std::string::npos) {
            return fail(" (PostgreSQL text cannot hold a 0x00 byte)");
          }
          put_bytes(*s);
          break;
        }
      }
    }
  }
  PutBe(&buf, 0xffff, 2);

  const std::string what = fmt::format("copy rows of table {}", table.name);
  {
    PgResult r(PQexec(conn_.get(), plan.copy_sql.c_str()));
    if (!r || PQresultStatus(r.get()) != PGRES_COPY_IN) return Error(r.get(), what);
  }
  constexpr size_t kChunk = 1 << 20;
  for (size_t off = 0; off < buf.size(); off += kChunk) {
    size_t n = std::min(kChunk, buf.size() - off);
    if (PQputCopyData(conn_.get(), buf.data() + off, static_cast<int>(n)) != 1) break;
  }
  PQputCopyEnd(conn_.get(), nullptr);
  Status status;
  while (PGresult* raw = PQgetResult(conn_.get())) {
    PgResult r(raw);
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK && status.ok()) status = Error(r.get(), what);
    if (!conn_) break;
  }
  if (status.ok() && (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK)) {
    status = Error(nullptr, what);
  }
  return status;
}

// ---- metadata ----

Result<std::optional<int64_t>> PgStore::ReadVersion() {
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  FERRY_ASSIGN_OR_RETURN(bool exists, MetaExists());
  if (!exists) return std::optional<int64_t>();
  FERRY_ASSIGN_OR_RETURN(PgResult r, Query(fmt::format("SELECT value FROM {} WHERE key = 'version'",
                                                       Qualified(kMetaTable)),
                                           "read version"));
  if (PQntuples(r.get()) == 0 || PQgetisnull(r.get(), 0, 0)) return std::optional<int64_t>();
  return std::optional<int64_t>(std::atoll(PQgetvalue(r.get(), 0, 0)));
}

Result<Marker> PgStore::ReadMarker() {
  Marker marker;
  FERRY_ASSIGN_OR_RETURN(marker.version, ReadVersion());
  FERRY_ASSIGN_OR_RETURN(bool exists, MetaExists());
  if (!exists) return marker;
  FERRY_ASSIGN_OR_RETURN(
      PgResult r,
      Query(fmt::format("SELECT bytes FROM {} WHERE key = 'boundary'", Qualified(kMetaTable)),
            "read boundary", {}, /*binary=*/true));
  if (PQntuples(r.get()) > 0 && !PQgetisnull(r.get(), 0, 0)) {
    marker.boundary.assign(PQgetvalue(r.get(), 0, 0), PQgetlength(r.get(), 0, 0));
  }
  return marker;
}

Status PgStore::WriteMarker(const Marker& marker) {
  if (role_ == StoreRole::kSource) return RefuseWrite();
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  const std::string meta = Qualified(kMetaTable);
  PgTxn txn(conn_);
  FERRY_RETURN_IF_ERROR(Exec("BEGIN", "write marker"));
  txn.Started();
  FERRY_RETURN_IF_ERROR(Exec(
      fmt::format("CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, value bigint, bytes bytea)",
                  meta),
      "write marker"));
  if (marker.version) {
    FERRY_RETURN_IF_ERROR(
        Exec(fmt::format("INSERT INTO {} (key, value) VALUES ('version', {}) ON CONFLICT (key) DO "
                         "UPDATE SET value = EXCLUDED.value",
                         meta, *marker.version),
             "write version"));
  }
  if (marker.boundary.empty()) {
    FERRY_RETURN_IF_ERROR(
        Exec(fmt::format("DELETE FROM {} WHERE key = 'boundary'", meta), "clear boundary"));
  } else {
    const char* values[] = {marker.boundary.data()};
    int lengths[] = {static_cast<int>(marker.boundary.size())};
    int formats[] = {1};
    PgResult r(PQexecParams(
        conn_.get(),
        fmt::format("INSERT INTO {} (key, bytes) VALUES ('boundary', $1::bytea) ON CONFLICT (key) "
                    "DO UPDATE SET bytes = EXCLUDED.bytes",
                    meta)
            .c_str(),
        1, nullptr, values, lengths, formats, 0));
    if (!r || PQresultStatus(r.get()) != PGRES_COMMAND_OK) return Error(r.get(), "write boundary");
  }
  FERRY_RETURN_IF_ERROR(Exec("COMMIT", "write marker"));
  txn.Done();
  return Status::Ok();
}

Status PgStore::RecordPlan(const std::string& plan_id) {
  if (role_ == StoreRole::kSource) return RefuseWrite();
  FERRY_RETURN_IF_ERROR(CreateMeta());
  return Query(
             fmt::format("INSERT INTO {} (key, value) VALUES ($1, 1) ON CONFLICT (key) DO NOTHING",
                         Qualified(kMetaTable)),
             "record plan", {"plan/" + plan_id})
      .status();
}

Result<bool> PgStore::HasPlan(const std::string& plan_id) {
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  FERRY_ASSIGN_OR_RETURN(bool exists, MetaExists());
  if (!exists) return false;
  FERRY_ASSIGN_OR_RETURN(
      PgResult r, Query(fmt::format("SELECT 1 FROM {} WHERE key = $1", Qualified(kMetaTable)),
                        "look up plan", {"plan/" + plan_id}));
  return PQntuples(r.get()) > 0;
}

}  // namespace ferry
