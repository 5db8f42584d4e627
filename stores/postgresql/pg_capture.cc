// PgCapture: change capture on a PostgreSQL legacy database (see the header).
#include "stores/postgresql/pg_capture.h"

#include <fmt/format.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <nlohmann/json.hpp>

#include "common/key_codec.h"
#include "common/text_util.h"
#include "stores/table_checks.h"

namespace ferry {
namespace {

constexpr const char* kGuard = "__ferry_guard";
constexpr const char* kCapture = "__ferry_capture";
constexpr const char* kNoTruncate = "__ferry_capture_no_truncate";
constexpr const char* kSlotPrefix = "ferry_";

// ---- wal2json (format-version 2) rows ----

struct JsonCell {
  enum Kind { kNull, kBool, kInt, kNum, kStr } kind = kNull;
  bool b = false;
  int64_t i = 0;
  std::string text;  // strings; numbers as written (exact for numeric)
};

struct DecodedChange {
  std::string action, timestamp, schema, table;
  std::vector<std::pair<std::string, JsonCell>> columns, identity;
};

// A SAX handler that keeps what ferry needs of one row, numbers as their
// text (a numeric key must not pass through a double).
class ChangeSax {
 public:
  using json = nlohmann::json;
  explicit ChangeSax(DecodedChange* out) : out_(out) {}

  bool null() { return Scalar(JsonCell{}); }
  bool boolean(bool v) {
    JsonCell c;
    c.kind = JsonCell::kBool;
    c.b = v;
    return Scalar(std::move(c));
  }
  bool number_integer(json::number_integer_t v) {
    JsonCell c;
    c.kind = JsonCell::kInt;
    c.i = v;
    c.text = std::to_string(v);
    return Scalar(std::move(c));
  }
  bool number_unsigned(json::number_unsigned_t v) {
    JsonCell c;
    c.text = std::to_string(v);
    if (v <= static_cast<json::number_unsigned_t>(INT64_MAX)) {
      c.kind = JsonCell::kInt;
      c.i = static_cast<int64_t>(v);
    } else {
      c.kind = JsonCell::kNum;
    }
    return Scalar(std::move(c));
  }
  bool number_float(json::number_float_t, const json::string_t& raw) {
    JsonCell c;
    c.kind = JsonCell::kNum;
    c.text = raw;
    return Scalar(std::move(c));
  }
  bool string(json::string_t& v) {
    JsonCell c;
    c.kind = JsonCell::kStr;
    c.text = std::move(v);
    return Scalar(std::move(c));
  }
  bool binary(json::binary_t&) { return Scalar(JsonCell{}); }
  bool start_object(std::size_t) {
    stack_.push_back('o');
    if (stack_.size() == 3) {
      name_.clear();
      value_ = JsonCell{};
    }
    return true;
  }
  bool end_object() {
    if (stack_.size() == 3 && stack_[1] == 'a') {
      auto* list = top_key_ == "columns"    ? &out_->columns
                   : top_key_ == "identity" ? &out_->identity
                                            : nullptr;
      if (list) list->emplace_back(std::move(name_), std::move(value_));
    }
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) {
    stack_.push_back('a');
    return true;
  }
  bool end_array() {
    stack_.pop_back();
    return true;
  }
  bool key(json::string_t& k) {
    if (stack_.size() == 1) top_key_ = k;
    if (stack_.size() == 3) elem_key_ = k;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) {
    return false;
  }

 private:
  bool Scalar(JsonCell c) {
    if (stack_.size() == 1) {
      if (top_key_ == "action") out_->action = std::move(c.text);
      if (top_key_ == "timestamp") out_->timestamp = std::move(c.text);
      if (top_key_ == "schema") out_->schema = std::move(c.text);
      if (top_key_ == "table") out_->table = std::move(c.text);
    } else if (stack_.size() == 3) {
      if (elem_key_ == "name") name_ = std::move(c.text);
      if (elem_key_ == "value") value_ = std::move(c);
    }
    return true;
  }

  DecodedChange* out_;
  std::vector<char> stack_;
  std::string top_key_, elem_key_, name_;
  JsonCell value_;
};

int HexNibble(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string LsnText(int64_t lsn) {
  const uint64_t v = static_cast<uint64_t>(lsn);
  return fmt::format("{:X}/{:X}", v >> 32, v & 0xffffffffu);
}

// wal2json's add-tables: schema.table, with , . space * and \ escaped.
std::string WalName(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == ',' || c == '.' || c == ' ' || c == '*' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

int64_t PgCapture::TimestampMs(const std::string& text) {
  int y, mo, d, h, mi, s;
  int used = 0;
  if (std::sscanf(text.c_str(), "%d-%d-%d %d:%d:%d%n", &y, &mo, &d, &h, &mi, &s, &used) != 6) {
    return 0;
  }
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  int64_t ms = static_cast<int64_t>(timegm(&tm)) * 1000;
  size_t p = static_cast<size_t>(used);
  if (p < text.size() && text[p] == '.') {
    int64_t frac = 0, scale = 1000;
    for (++p; p < text.size() && std::isdigit(static_cast<unsigned char>(text[p])); ++p) {
      if (scale > 1) {
        scale /= 10;
        frac += (text[p] - '0') * scale;
      }
    }
    ms += frac;
  }
  if (p < text.size() && (text[p] == '+' || text[p] == '-')) {
    const int sign = text[p] == '+' ? 1 : -1;
    int oh = 0, om = 0;
    std::sscanf(text.c_str() + p + 1, "%2d:%2d", &oh, &om);
    ms -= sign * (oh * 3600 + om * 60) * int64_t{1000};
  }
  return ms;
}

// ---- connection ----

PgCapture::PgCapture(std::string uri) : uri_(std::move(uri)), password_(PgPasswordOf(uri_)) {}

std::string PgCapture::Describe() const { return RedactUri(uri_); }

Result<std::unique_ptr<PgCapture>> PgCapture::Open(const std::string& uri) {
  std::unique_ptr<PgCapture> c(new PgCapture(uri));
  Status s = c->Connect();
  if (!s.ok()) {
    return Status(s.code(),
                  fmt::format("legacy store {}: {} (check --source)", c->Describe(), s.message()));
  }
  return c;
}

Status PgCapture::Connect() {
  conn_.reset();
  FERRY_ASSIGN_OR_RETURN(conn_, PgConnect(uri_, "ferry-capture"));
  FERRY_RETURN_IF_ERROR(
      Exec("SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; "
           "SET extra_float_digits = 3; SET bytea_output = 'hex'; "
           "SET statement_timeout = '60s'",
           "session set-up"));
  FERRY_ASSIGN_OR_RETURN(
      PgResult r, Query("SELECT current_schema(), current_database()", "read current schema"));
  if (PQntuples(r.get()) != 1 || PQgetisnull(r.get(), 0, 0)) {
    return InvalidArgument(
        "the connection has no current schema (no schema of its search_path "
        "exists)");
  }
  schema_ = PQgetvalue(r.get(), 0, 0);
  const std::string id = std::string(PQgetvalue(r.get(), 0, 1)) + "." + schema_;
  slot_ = fmt::format("{}{:016x}", kSlotPrefix, XXH64(id.data(), id.size(), 0));
  frozen_ = false;
  guard_committing_ = false;
  return Status::Ok();
}

Status PgCapture::EnsureConnected() {
  if (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK) {
    if (frozen_) {
      frozen_ = false;  // the server rolled the freeze back with the connection
    }
    Status s = Connect();
    if (!s.ok())
      return Unavailable(fmt::format("{}: reconnect failed: {}", Describe(), s.message()));
  }
  return Status::Ok();
}

Result<PgResult> PgCapture::Query(const std::string& sql, std::string_view what,
                                  const std::vector<std::string>& params) {
  if (!conn_) return Unavailable(fmt::format("{}: connection lost", what));
  std::vector<const char*> values;
  for (const std::string& p : params) values.push_back(p.c_str());
  PgResult r(params.empty()
                 ? PQexec(conn_.get(), sql.c_str())
                 : PQexecParams(conn_.get(), sql.c_str(), static_cast<int>(params.size()), nullptr,
                                values.data(), nullptr, nullptr, 0));
  ExecStatusType st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
  Status s = PgError(conn_.get(), r.get(), what);
  const char* state = r ? PQresultErrorField(r.get(), PG_DIAG_SQLSTATE) : nullptr;
  Code code = s.code();
  if (state && std::string(state) == "55006") code = Code::kUnavailable;  // slot in use
  if (conn_ && PQstatus(conn_.get()) != CONNECTION_OK) conn_.reset();
  return Status(code, Scrub(fmt::format("{}: {}", Describe(), s.message()), password_));
}

Status PgCapture::Exec(const std::string& sql, std::string_view what) {
  return Query(sql, what).status();
}

std::string PgCapture::Qualified(const std::string& name) const {
  return PgQuoteIdent(schema_) + "." + PgQuoteIdent(name);
}

std::string PgCapture::TableList() const {
  std::vector<std::string> out;
  for (const TableSchema& t : tables_) out.push_back(Qualified(t.name));
  return Join(out);
}

void PgCapture::SetTables(const std::vector<TableSchema>& tables) {
  tables_ = tables;
  keys_.clear();
}

Status PgCapture::LoadKeys() {
  if (!keys_.empty() || tables_.empty()) return Status::Ok();
  std::map<std::string, TableKeys> keys;
  for (const TableSchema& t : tables_) {
    FERRY_ASSIGN_OR_RETURN(
        PgResult r,
        Query("SELECT a.attname, CASE WHEN ty.typtype = 'd' THEN bt.typname ELSE ty.typname END "
              "FROM pg_constraint c "
              "JOIN LATERAL unnest(c.conkey) WITH ORDINALITY k(attnum, ord) ON true "
              "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum "
              "JOIN pg_type ty ON ty.oid = a.atttypid LEFT JOIN pg_type bt ON bt.oid = "
              "ty.typbasetype "
              "WHERE c.contype = 'p' AND c.conrelid = (SELECT c2.oid FROM pg_class c2 JOIN "
              "pg_namespace n ON n.oid = c2.relnamespace WHERE n.nspname = $1 AND c2.relname = $2) "
              "ORDER BY k.ord",
              fmt::format("key columns of table {}", t.name), {schema_, t.name}));
    TableKeys tk;
    for (int i = 0; i < PQntuples(r.get()); ++i) {
      KeyCol c;
      c.name = PQgetvalue(r.get(), i, 0);
      const std::string base = PQgetvalue(r.get(), i, 1);
      c.kind = (base == "int2" || base == "int4" || base == "int8") ? KeyKind::kInt
               : (base == "float4" || base == "float8")             ? KeyKind::kFloat
               : base == "bool"                                     ? KeyKind::kBool
               : base == "bytea"                                    ? KeyKind::kBytes
                                                                    : KeyKind::kText;
      tk.cols.push_back(std::move(c));
    }
    if (tk.cols.empty()) {
      return InvalidArgument(fmt::format(
          "table {} of {} has no primary key: ferry cannot capture its changes (add a primary "
          "key, or leave the table out with --tables)",
          t.name, Describe()));
    }
    keys.emplace(t.name, std::move(tk));
  }
  keys_ = std::move(keys);
  return Status::Ok();
}

// ---- install ----

Status PgCapture::Check() {
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  FERRY_ASSIGN_OR_RETURN(PgResult w, Query("SELECT current_setting('wal_level'), "
                                           "current_setting('max_replication_slots')::int, "
                                           "(SELECT count(*) FROM pg_replication_slots), "
                                           "(SELECT rolsuper OR rolreplication FROM pg_roles WHERE "
                                           "rolname = current_user)::int, current_user",
                                           "read the server's settings"));
  const std::string wal_level = PQgetvalue(w.get(), 0, 0);
  if (wal_level != "logical") {
    return InvalidArgument(fmt::format(
        "legacy store {}: wal_level is '{}', but --online reads PostgreSQL changes by logical "
        "decoding, which needs wal_level=logical (set it in postgresql.conf or with ALTER SYSTEM "
        "SET wal_level = logical, restart the server, and start again)",
        Describe(), wal_level));
  }
  FERRY_ASSIGN_OR_RETURN(bool have_slot, SlotExists());
  if (!have_slot &&
      std::atoll(PQgetvalue(w.get(), 0, 2)) >= std::atoll(PQgetvalue(w.get(), 0, 1))) {
    return InvalidArgument(fmt::format(
        "legacy store {}: every replication slot is in use (max_replication_slots = {}); raise "
        "max_replication_slots, or drop an unused slot, and start again",
        Describe(), PQgetvalue(w.get(), 0, 1)));
  }
  if (std::string(PQgetvalue(w.get(), 0, 3)) != "1") {
    return InvalidArgument(fmt::format(
        "legacy store {}: role {} cannot read changes by logical decoding: it needs the "
        "REPLICATION "
        "attribute (ALTER ROLE {} REPLICATION) for --online",
        Describe(), PQgetvalue(w.get(), 0, 4), PgQuoteIdent(PQgetvalue(w.get(), 0, 4))));
  }
  for (const TableSchema& t : tables_) {
    FERRY_ASSIGN_OR_RETURN(
        PgResult r,
        Query("SELECT c.relkind, c.relreplident, has_table_privilege(c.oid, 'TRIGGER')::int, "
              "EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = c.oid AND g.tgname = $3)::int "
              "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
              "WHERE n.nspname = $1 AND c.relname = $2",
              fmt::format("inspect table {}", t.name), {schema_, t.name, kGuard}));
    if (PQntuples(r.get()) != 1) {
      return InvalidArgument(fmt::format("table {} does not exist in {}", t.name, Describe()));
    }
    const std::string kind = PQgetvalue(r.get(), 0, 0), ident = PQgetvalue(r.get(), 0, 1);
    if (kind != "r") {
      return InvalidArgument(fmt::format(
          "table {} of {} is partitioned: logical decoding reports its changes per partition, "
          "which ferry cannot capture yet (leave it out with --tables, or migrate it offline)",
          t.name, Describe()));
    }
    if (t.rowid_key()) {
      return InvalidArgument(fmt::format(
          "table {} of {} has no primary key: ferry cannot capture its changes (add a primary "
          "key, or leave the table out with --tables)",
          t.name, Describe()));
    }
    if (ident == "n" || ident == "i") {
      return InvalidArgument(fmt::format(
          "table {} of {} has REPLICA IDENTITY {}: ferry keys captured changes by the primary "
          "key (ALTER TABLE {} REPLICA IDENTITY DEFAULT)",
          t.name, Describe(), ident == "n" ? "NOTHING" : "USING INDEX", Qualified(t.name)));
    }
    if (std::string(PQgetvalue(r.get(), 0, 2)) != "1") {
      return InvalidArgument(fmt::format(
          "table {} of {}: the role lacks the TRIGGER privilege on it (ferry installs a TRUNCATE "
          "refusal while capturing and the write-refusal guard at cut-over; use the table's "
          "owner, or GRANT TRIGGER)",
          t.name, Describe()));
    }
    if (std::string(PQgetvalue(r.get(), 0, 3)) == "1") {
      return InvalidArgument(fmt::format(
          "table {} of {} refuses writes: a finished online migration moved it (trigger {}); "
          "remove the guard with `ferryctl unguard --source {} --tables {}` before migrating it "
          "again",
          t.name, Describe(), kGuard, Describe(), t.name));
    }
  }
  return LoadKeys();
}

Result<bool> PgCapture::SlotExists() {
  FERRY_ASSIGN_OR_RETURN(PgResult r,
                         Query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                               "look up the replication slot", {slot_}));
  return PQntuples(r.get()) > 0;
}

Status PgCapture::Install() {
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  FERRY_ASSIGN_OR_RETURN(bool have_slot, SlotExists());
  if (!have_slot) {
    auto r = Query("SELECT pg_create_logical_replication_slot($1, 'wal2json')",
                   "create the replication slot", {slot_});
    if (!r.ok()) {
      const std::string& m = r.status().message();
      if (m.find("wal2json") != std::string::npos &&
          (m.find("could not access file") != std::string::npos ||
           m.find("No such file") != std::string::npos)) {
        return InvalidArgument(fmt::format(
            "legacy store {}: the server has no wal2json output plugin, which --online decodes "
            "changes with (install the package postgresql-<version>-wal2json on the database "
            "server)",
            Describe()));
      }
      return r.status();
    }
  }
  std::string sql = fmt::format(
      "BEGIN; CREATE OR REPLACE FUNCTION {0}() RETURNS trigger LANGUAGE plpgsql AS $ferry$ BEGIN "
      "RAISE EXCEPTION USING MESSAGE = format('ferry: table %s is being migrated online; TRUNCATE "
      "would not reach the new store (delete the rows instead, or truncate after the cut-over)', "
      "TG_TABLE_NAME), ERRCODE = 'FY003'; END $ferry$;",
      Qualified(kNoTruncate));
  for (const TableSchema& t : tables_) {
    sql += fmt::format(
        " CREATE OR REPLACE TRIGGER {} BEFORE TRUNCATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION "
        "{}();",
        PgQuoteIdent(kCapture), Qualified(t.name), Qualified(kNoTruncate));
  }
  sql += " COMMIT";
  Status s = Exec(sql, "install the TRUNCATE refusal");
  if (!s.ok() && conn_) (void)Exec("ROLLBACK", "roll back");
  FERRY_RETURN_IF_ERROR(s);
  return LoadKeys();
}

Result<CaptureState> PgCapture::Inspect() {
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  CaptureState st;
  FERRY_ASSIGN_OR_RETURN(bool have_slot, SlotExists());
  if (have_slot) st.slots.push_back(slot_);
  FERRY_ASSIGN_OR_RETURN(
      PgResult r,
      Query("SELECT g.tgname, c.relname FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND g.tgname IN "
            "($2, $3) ORDER BY c.relname COLLATE \"C\"",
            "list ferry's triggers", {schema_, kGuard, kCapture}));
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    (std::string(PQgetvalue(r.get(), i, 0)) == kGuard ? st.guarded : st.captured)
        .push_back(PQgetvalue(r.get(), i, 1));
  }
  st.capture = have_slot || !st.captured.empty();
  return st;
}

// ---- reading changes ----

Status PgCapture::DecodeRow(int64_t lsn, const char* data, size_t len, int64_t after,
                            ChangeBatch* batch) {
  DecodedChange ch;
  ChangeSax sax(&ch);
  if (!nlohmann::json::sax_parse(data, data + len, &sax)) {
    return Internal(fmt::format("{}: cannot read a decoded change: {}", Describe(),
                                std::string(data, std::min<size_t>(len, 200))));
  }
  if (ch.action == "B") {
    txn_ = Txn{};
    return Status::Ok();
  }
  if (ch.action == "C") {
    last_commit_ms_ = TimestampMs(ch.timestamp);
    if (lsn > after) {
      if (txn_.changes > 0 && batch->oldest_ms == 0) batch->oldest_ms = txn_.ms;
      batch->changes += txn_.changes;
      for (ChangedKey& k : txn_.keys) batch->keys.push_back(std::move(k));
      batch->end = std::max(batch->end, lsn);
    }
    txn_ = Txn{};
    return Status::Ok();
  }
  if (ch.action != "I" && ch.action != "U" && ch.action != "D") return Status::Ok();
  if (ch.schema != schema_) return Status::Ok();
  auto it = keys_.find(ch.table);
  if (it == keys_.end()) return Status::Ok();
  ++txn_.changes;
  if (txn_.ms == 0) txn_.ms = TimestampMs(ch.timestamp);
  std::vector<Value> key;
  // The key from `cells` (name -> value) in primary-key order.
  auto add = [&](const std::vector<std::pair<std::string, JsonCell>>& cells) -> Status {
    key.clear();
    for (const KeyCol& col : it->second.cols) {
      auto c = std::find_if(cells.begin(), cells.end(),
                            [&](const auto& p) { return p.first == col.name; });
      if (c == cells.end()) {
        return Internal(fmt::format("{}: a decoded change of table {} lacks key column {}",
                                    Describe(), ch.table, col.name));
      }
      const JsonCell& v = c->second;
      switch (v.kind == JsonCell::kNull ? KeyKind::kText : col.kind) {
        case KeyKind::kInt:
          key.push_back(
              v.kind == JsonCell::kInt ? v.i : static_cast<int64_t>(std::atoll(v.text.c_str())));
          break;
        case KeyKind::kFloat:
          key.push_back(std::strtod(v.text.c_str(), nullptr));
          break;
        case KeyKind::kBool:
          key.push_back(
              int64_t{v.kind == JsonCell::kBool ? v.b : (v.text == "t" || v.text == "true")});
          break;
        case KeyKind::kBytes: {
          std::string bytes;
          size_t p = v.text.rfind("\\x", 0) == 0 ? 2 : 0;
          for (; p + 1 < v.text.size(); p += 2) {
            bytes += static_cast<char>(HexNibble(v.text[p]) * 16 + HexNibble(v.text[p + 1]));
          }
          key.push_back(Blob{std::move(bytes)});
          break;
        }
        case KeyKind::kText:
          if (v.kind == JsonCell::kNull) {
            key.push_back(Null{});
          } else if (v.kind == JsonCell::kBool) {
            key.push_back(Text{v.b ? "true" : "false"});
          } else {
            key.push_back(Text{v.text});
          }
          break;
      }
    }
    txn_.keys.push_back(ChangedKey{ch.table, EncodeKey(key)});
    return Status::Ok();
  };
  if (!ch.identity.empty()) FERRY_RETURN_IF_ERROR(add(ch.identity));
  if (ch.action != "D") {
    const std::string before = ch.identity.empty() ? std::string() : txn_.keys.back().key;
    FERRY_RETURN_IF_ERROR(add(ch.columns));
    if (!before.empty() && txn_.keys.back().key == before) txn_.keys.pop_back();
  }
  return Status::Ok();
}

std::string PgCapture::PluginOptions(bool sql) const {
  std::vector<std::string> names;
  for (const TableSchema& t : tables_) names.push_back(WalName(schema_) + "." + WalName(t.name));
  const std::string tables = Join(names, ",");
  if (sql) return tables;
  return fmt::format(
      "(\"format-version\" '2', \"include-timestamp\" 'true', \"include-types\" 'false', "
      "\"add-tables\" {})",
      PgQuoteLiteral(tables));
}

Result<ChangeBatch> PgCapture::Peek(int64_t after, size_t max_changes) {
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  FERRY_RETURN_IF_ERROR(LoadKeys());
  ChangeBatch batch;
  batch.end = after;
  FERRY_ASSIGN_OR_RETURN(PgResult f,
                         Query("SELECT (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::int8",
                               "read the flush position"));
  const int64_t flushed = std::atoll(PQgetvalue(f.get(), 0, 0));
  const size_t limit = std::max<size_t>(1, max_changes);
  auto r = Query(
      "SELECT (lsn - '0/0'::pg_lsn)::int8, data FROM pg_logical_slot_peek_changes($1, NULL, "
      "$2::int, 'format-version', '2', 'include-timestamp', 'true', 'include-types', 'false', "
      "'add-tables', $3)",
      "read changes", {slot_, std::to_string(limit), PluginOptions(/*sql=*/true)});
  if (!r.ok()) return r.status();
  txn_ = Txn{};
  const int rows = PQntuples(r->get());
  for (int i = 0; i < rows; ++i) {
    FERRY_RETURN_IF_ERROR(
        DecodeRow(std::atoll(PQgetvalue(r->get(), i, 0)), PQgetvalue(r->get(), i, 1),
                  static_cast<size_t>(PQgetlength(r->get(), i, 1)), after, &batch));
  }
  txn_ = Txn{};
  batch.more = static_cast<size_t>(rows) >= limit;
  if (!batch.more) batch.caught_up = std::max(flushed, after);
  batch.left = batch.more ? 1 : 0;
  return batch;
}

// ---- the replication stream ----

namespace {

// Microseconds since 2000-01-01, the replication protocol's clock.
int64_t PgEpochMicros() {
  using namespace std::chrono;
  constexpr int64_t kUnixToPg = 946684800LL * 1000000;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count() - kUnixToPg;
}

void PutBe64(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t GetBe64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

}  // namespace

void PgCapture::StopStream() {
  stream_.reset();
  stream_pos_ = -1;
  txn_ = Txn{};
}

Status PgCapture::StartStream(int64_t from) {
  StopStream();
  std::vector<const char*> keys = {"dbname", "replication", "application_name", "client_encoding",
                                   nullptr};
  std::vector<const char*> vals = {uri_.c_str(), "database", "ferry-applier", "UTF8", nullptr};
  PgConnPtr c(PQconnectdbParams(keys.data(), vals.data(), 1));
  if (!c || PQstatus(c.get()) != CONNECTION_OK) {
    return Unavailable(Scrub(fmt::format("{}: cannot open a replication connection: {}", Describe(),
                                         c ? PQerrorMessage(c.get()) : "out of memory"),
                             password_));
  }
  PQsetNoticeProcessor(
      c.get(), [](void*, const char*) {}, nullptr);
  const std::string start =
      fmt::format("START_REPLICATION SLOT {} LOGICAL {} {}", PgQuoteIdent(slot_),
                  LsnText(std::max<int64_t>(0, from)), PluginOptions(/*sql=*/false));
  PgResult r(PQexec(c.get(), start.c_str()));
  if (!r || PQresultStatus(r.get()) != PGRES_COPY_BOTH) {
    Status s = PgError(c.get(), r.get(), "start streaming changes");
    const char* state = r ? PQresultErrorField(r.get(), PG_DIAG_SQLSTATE) : nullptr;
    Code code = s.code();
    if (state && std::string(state) == "55006") code = Code::kUnavailable;  // slot in use
    if (s.message().find("does not exist") != std::string::npos) {
      return FailedPrecondition(fmt::format(
          "{}: the replication slot {} is gone (was the capture removed, e.g. by `ferryctl "
          "unguard`?); changes can no longer be replayed: start the migration again with a new "
          "--state",
          Describe(), slot_));
    }
    return Status(code, Scrub(fmt::format("{}: {}", Describe(), s.message()), password_));
  }
  stream_ = std::move(c);
  stream_pos_ = from;
  stream_sent_ = 0;
  return Status::Ok();
}

Status PgCapture::SendFeedback(int64_t lsn, bool reply) {
  if (!stream_) return Status::Ok();
  std::string msg = "r";
  for (int i = 0; i < 3; ++i) PutBe64(&msg, static_cast<uint64_t>(std::max<int64_t>(0, lsn)));
  PutBe64(&msg, static_cast<uint64_t>(PgEpochMicros()));
  msg.push_back(reply ? 1 : 0);
  if (PQputCopyData(stream_.get(), msg.data(), static_cast<int>(msg.size())) != 1 ||
      PQflush(stream_.get()) != 0) {
    const std::string why = PQerrorMessage(stream_.get());
    StopStream();
    return Unavailable(fmt::format("{}: the replication stream broke: {}", Describe(), why));
  }
  return Status::Ok();
}

Result<ChangeBatch> PgCapture::Read(int64_t after, size_t max_changes) {
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  FERRY_RETURN_IF_ERROR(LoadKeys());
  if (!stream_ || stream_pos_ != after) FERRY_RETURN_IF_ERROR(StartStream(after));
  // What the stream must have sent for this read to be caught up.
  FERRY_ASSIGN_OR_RETURN(PgResult f,
                         Query("SELECT (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::int8",
                               "read the flush position"));
  const int64_t flushed = std::atoll(PQgetvalue(f.get(), 0, 0));
  ChangeBatch batch;
  batch.end = after;
  const size_t limit = std::max<size_t>(1, max_changes);
  bool consumed = false;
  for (;;) {
    char* buf = nullptr;
    const int n = PQgetCopyData(stream_.get(), &buf, /*async=*/1);
    if (n == 0) {
      if (consumed) break;  // nothing more right now
      if (PQconsumeInput(stream_.get()) != 1) {
        const std::string why = PQerrorMessage(stream_.get());
        StopStream();
        return Unavailable(fmt::format("{}: the replication stream broke: {}", Describe(), why));
      }
      consumed = true;
      continue;
    }
    if (n < 0) {
      const std::string why = PQerrorMessage(stream_.get());
      StopStream();
      return Unavailable(fmt::format("{}: the replication stream ended: {}", Describe(), why));
    }
    const std::unique_ptr<char, void (*)(void*)> hold(buf, PQfreemem);
    const size_t len = static_cast<size_t>(n);
    if (buf[0] == 'k' && len >= 18) {  // keepalive: walEnd, sendTime, replyRequested
      stream_sent_ = std::max(stream_sent_, static_cast<int64_t>(GetBe64(buf + 1)));
      if (buf[17]) FERRY_RETURN_IF_ERROR(SendFeedback(acked_, false));
      continue;
    }
    if (buf[0] != 'w' || len < 25) continue;  // XLogData: dataStart, walEnd, sendTime, data
    const int64_t lsn = static_cast<int64_t>(GetBe64(buf + 1));
    const uint64_t before = batch.changes;
    Status s = DecodeRow(lsn, buf + 25, len - 25, after, &batch);
    if (!s.ok()) {
      StopStream();
      return s;
    }
    if (batch.end > stream_pos_) stream_pos_ = batch.end;
    if (batch.changes != before || txn_.changes == 0) {
      // A commit was taken: cut the batch here once it is full.
      if (batch.changes >= limit && txn_.keys.empty() && txn_.changes == 0) {
        batch.more = true;
        break;
      }
    }
  }
  if (!batch.more) {
    batch.caught_up = std::max({stream_sent_, batch.end, after});
    if (txn_.changes > 0) batch.caught_up = 0;  // a transaction is half received
  }
  if (batch.more || batch.caught_up < flushed) {
    // More is on its way: how much is unknown, and the oldest of it is no
    // older than the last commit received. Ask the sender where it is.
    batch.left = 1;
    batch.next_ms = last_commit_ms_;
    FERRY_RETURN_IF_ERROR(SendFeedback(acked_, true));
  }
  return batch;
}

void PgCapture::Pause() { StopStream(); }

Result<Backlog> PgCapture::Probe(int64_t position, uint64_t limit) {
  if (stream_) StopStream();
  FERRY_ASSIGN_OR_RETURN(ChangeBatch b,
                         Peek(position, static_cast<size_t>(std::max<uint64_t>(1, limit))));
  Backlog out;
  out.pending = b.changes;
  out.exact = !b.more;
  out.oldest_ms = b.oldest_ms;
  return out;
}

Status PgCapture::Acknowledge(int64_t upto) {
  if (upto <= 0) return Status::Ok();
  if (stream_) {
    // Streaming: the status update moves the slot (no round trip).
    acked_ = std::max(acked_, upto);
    return SendFeedback(acked_, false);
  }
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  return Query("SELECT pg_replication_slot_advance($1, $2::pg_lsn)", "advance the replication slot",
               {slot_, LsnText(upto)})
      .status();
}

Status PgCapture::Flush() {
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  // Ask the sender where it is (its answer, a keepalive, says how far every
  // transaction has been sent: Read's caught_up).
  FERRY_RETURN_IF_ERROR(SendFeedback(acked_, true));
  // A transaction with an xid, committed synchronously: the WAL up to its
  // commit (every commit before it) reaches the disk, and the decoder.
  Status s = Exec("BEGIN; SET LOCAL synchronous_commit = on; SELECT txid_current(); COMMIT",
                  "flush the WAL");
  if (!s.ok() && conn_) (void)Exec("ROLLBACK", "roll back");
  return s;
}

// ---- cut-over ----

Status PgCapture::Freeze(int wait_ms) {
  if (frozen_) return Status::Ok();
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  Status s = Exec(fmt::format("BEGIN; SET LOCAL lock_timeout = '{}ms'; LOCK TABLE {} IN EXCLUSIVE "
                              "MODE",
                              std::max(1, wait_ms), TableList()),
                  "freeze writes to the migrated tables");
  if (!s.ok()) {
    if (conn_) (void)Exec("ROLLBACK", "roll back");
    return s.message().find("55P03") != std::string::npos
               ? Unavailable(fmt::format("{}: a writer holds a migrated table", Describe()))
               : s;
  }
  frozen_ = true;
  guard_committing_ = false;
  return Status::Ok();
}

Result<int64_t> PgCapture::FreezePoint() {
  if (!frozen_) return FailedPrecondition("not frozen");
  FERRY_ASSIGN_OR_RETURN(PgResult r,
                         Query("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::int8",
                               "read the freeze position"));
  return static_cast<int64_t>(std::atoll(PQgetvalue(r.get(), 0, 0)));
}

Status PgCapture::CommitGuard(const std::string& new_store) {
  if (!frozen_ || !conn_) {
    frozen_ = false;
    return FailedPrecondition("cut-over: the legacy store is not frozen");
  }
  std::string sql = fmt::format(
      "CREATE OR REPLACE FUNCTION {0}() RETURNS trigger LANGUAGE plpgsql AS $ferry$ BEGIN RAISE "
      "EXCEPTION USING MESSAGE = TG_ARGV[0], ERRCODE = 'FY002'; END $ferry$;",
      Qualified(kGuard));
  for (const TableSchema& t : tables_) {
    sql += fmt::format(
        " CREATE OR REPLACE TRIGGER {0} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {1} FOR "
        "EACH STATEMENT EXECUTE FUNCTION {2}({3}); DROP TRIGGER IF EXISTS {4} ON {1};",
        PgQuoteIdent(kGuard), Qualified(t.name), Qualified(kGuard),
        PgQuoteLiteral(GuardMessage(t.name, new_store)), PgQuoteIdent(kCapture));
  }
  sql += " COMMIT";
  Status s = Exec(sql, "install the write-refusal guard");
  frozen_ = false;
  if (!s.ok() && conn_) (void)Exec("ROLLBACK", "roll back");
  return s.ok() || s.code() != Code::kUnavailable
             ? s
             : Status(Code::kPermanent, s.message());  // the freeze is gone either way
}

void PgCapture::Thaw() {
  if (frozen_ && conn_ && PQstatus(conn_.get()) == CONNECTION_OK) {
    (void)Exec("ROLLBACK", "thaw");
  }
  frozen_ = false;
}

// ---- removal ----

Status PgCapture::DropCaptureTriggers() {
  FERRY_ASSIGN_OR_RETURN(
      PgResult r,
      Query("SELECT c.relname FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid JOIN "
            "pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND g.tgname = $2",
            "list capture triggers", {schema_, kCapture}));
  std::string sql = "BEGIN;";
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    sql += fmt::format(" DROP TRIGGER IF EXISTS {} ON {};", PgQuoteIdent(kCapture),
                       Qualified(PQgetvalue(r.get(), i, 0)));
  }
  sql += fmt::format(" DROP FUNCTION IF EXISTS {}(); COMMIT", Qualified(kNoTruncate));
  Status s = Exec(sql, "remove the TRUNCATE refusal");
  if (!s.ok() && conn_) (void)Exec("ROLLBACK", "roll back");
  return s;
}

Status PgCapture::RemoveCapture() {
  StopStream();
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  FERRY_RETURN_IF_ERROR(DropCaptureTriggers());
  return Query(
             "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE "
             "slot_name = $1",
             "drop the replication slot", {slot_})
      .status();
}

Result<std::vector<std::string>> PgCapture::Unguard(const std::vector<std::string>& tables) {
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  std::vector<std::string> removed;
  FERRY_ASSIGN_OR_RETURN(CaptureState st, Inspect());
  std::string sql = "BEGIN;";
  size_t kept = 0;
  for (const std::string& t : st.guarded) {
    if (!tables.empty() && std::find(tables.begin(), tables.end(), t) == tables.end()) {
      ++kept;
      continue;
    }
    sql += fmt::format(" DROP TRIGGER IF EXISTS {} ON {};", PgQuoteIdent(kGuard), Qualified(t));
    removed.push_back(fmt::format("guard trigger {} on table {}", kGuard, t));
  }
  if (kept == 0) sql += fmt::format(" DROP FUNCTION IF EXISTS {}();", Qualified(kGuard));
  sql += " COMMIT";
  Status s = Exec(sql, "remove the write-refusal guard");
  if (!s.ok() && conn_) (void)Exec("ROLLBACK", "roll back");
  FERRY_RETURN_IF_ERROR(s);
  for (const std::string& t : st.captured) {
    removed.push_back(fmt::format("TRUNCATE refusal {} on table {}", kCapture, t));
  }
  for (const std::string& slot : st.slots) removed.push_back("replication slot " + slot);
  FERRY_RETURN_IF_ERROR(RemoveCapture());
  return removed;
}

}  // namespace ferry
