// PgStore's side of migration specs: projections (DescribeProjection,
// ReadProjected), the rejects table, and a spec's `create` parsed by the
// server inside a rolled-back transaction (DescribeCreate).
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "common/key_codec.h"
#include "stores/postgresql/pg_dialect.h"
#include "stores/postgresql/pg_internal.h"
#include "stores/postgresql/pg_store.h"
#include "stores/sql_text.h"
#include "stores/table_checks.h"

namespace ferry {

using pg_wire::ParseDouble;
using pg_wire::ParseInt;

namespace {

// Result type oids whose text form ferry reads as a number or bytes.
constexpr Oid kBoolOid = 16;
constexpr Oid kByteaOid = 17;
constexpr Oid kInt8Oid = 20;
constexpr Oid kInt2Oid = 21;
constexpr Oid kInt4Oid = 23;
constexpr Oid kFloat4Oid = 700;
constexpr Oid kFloat8Oid = 701;

int FromHex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return 0;
}

// One text-format result cell as a Value, by its result type.
Value TextCell(Oid type, const char* v, int len) {
  const std::string s(v, static_cast<size_t>(len));
  switch (type) {
    case kInt2Oid:
    case kInt4Oid:
    case kInt8Oid: {
      int64_t i = 0;
      if (ParseInt(s, &i)) return i;
      break;
    }
    case kFloat4Oid:
    case kFloat8Oid: {
      double d = 0;
      if (ParseDouble(s, &d)) return d;
      break;
    }
    case kBoolOid:
      return static_cast<int64_t>(s == "t" ? 1 : 0);
    case kByteaOid: {
      if (s.size() >= 2 && s[0] == '\\' && s[1] == 'x') {
        std::string out;
        out.reserve((s.size() - 2) / 2);
        for (size_t i = 2; i + 1 < s.size(); i += 2) {
          out += static_cast<char>(FromHex(s[i]) << 4 | FromHex(s[i + 1]));
        }
        return Blob{std::move(out)};
      }
      return Blob{s};
    }
    default:
      break;
  }
  return Text{s};
}

std::string RejectsDdl(const std::string& qualified) {
  return fmt::format(
      "CREATE TABLE IF NOT EXISTS {} (table_name text NOT NULL, source_key text NOT NULL, "
      "reason text NOT NULL, PRIMARY KEY (table_name, source_key))",
      qualified);
}

// The key columns, qualified by the table's own name and read as ReadBatch
// reads them (CellSelect), then the select list (every cell for "*").
std::string ProjectionSql(const std::string& qualified, const std::string& self,
                          const std::vector<std::string>& key_cells,
                          const std::vector<std::string>& star_cells, const Projection& p,
                          const std::string& range_where) {
  std::vector<std::string> where;
  if (!range_where.empty()) where.push_back(range_where);
  if (!p.where.empty()) where.push_back("(\n" + p.where + "\n)");
  std::string sql =
      fmt::format("SELECT {}, {} FROM {} AS {}", Join(key_cells),
                  p.star() ? Join(star_cells) : "\n" + p.select + "\n", qualified, self);
  for (size_t i = 0; i < where.size(); ++i) sql += (i ? " AND " : " WHERE ") + where[i];
  return sql;
}

}  // namespace

Result<std::vector<ProjectedColumn>> PgStore::DescribeProjection(const TableSchema& table,
                                                                 const Projection& p) {
  FERRY_RETURN_IF_ERROR(CheckNotMetaTable(table.name));
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  FERRY_ASSIGN_OR_RETURN(TableInfo * info, Info(table.name));
  if (info->pk.empty()) {
    return InvalidArgument(fmt::format(
        "table {} has no primary key; ferry needs one to read a PostgreSQL table", table.name));
  }
  const std::string self = PgQuoteIdent(table.name);
  std::vector<std::string> keys, star;
  for (size_t k : info->pk) keys.push_back(self + "." + CellSelect(info->cols[k]));
  for (const Column& c : table.columns) {
    auto it = std::find_if(info->cols.begin(), info->cols.end(),
                           [&](const ColInfo& ci) { return ci.name == c.name; });
    if (it == info->cols.end()) {
      return InvalidArgument(fmt::format("table {} has no column {}", table.name, c.name));
    }
    star.push_back(self + "." + CellSelect(*it));
  }
  const std::string sql = ProjectionSql(info->qualified, self, keys, star, p, "");
  PgResult prep(PQprepare(conn_.get(), "", sql.c_str(), 0, nullptr));
  if (!prep || PQresultStatus(prep.get()) != PGRES_COMMAND_OK) {
    Status s = Error(prep.get(), fmt::format("query table {}", table.name));
    if (s.code() == Code::kUnavailable) return s;
    std::string msg = PQresultErrorField(prep.get(), PG_DIAG_MESSAGE_PRIMARY)
                          ? PQresultErrorField(prep.get(), PG_DIAG_MESSAGE_PRIMARY)
                          : s.message();
    return InvalidArgument(fmt::format("the legacy store refuses it as a query of table {}: {}",
                                       table.name, Scrub(msg, password_)));
  }
  PgResult desc(PQdescribePrepared(conn_.get(), ""));
  if (!desc || PQresultStatus(desc.get()) != PGRES_COMMAND_OK) {
    return Error(desc.get(), fmt::format("describe a query of table {}", table.name));
  }
  FERRY_ASSIGN_OR_RETURN(PgResult oid_r, Query(fmt::format("SELECT {}::regclass::oid::int8",
                                                           PgQuoteLiteral(info->qualified)),
                                               "look up the table"));
  const Oid table_oid = static_cast<Oid>(std::strtoull(PQgetvalue(oid_r.get(), 0, 0), nullptr, 10));
  std::vector<ProjectedColumn> out;
  const int n = PQnfields(desc.get());
  for (int i = static_cast<int>(info->pk.size()); i < n; ++i) {
    ProjectedColumn c;
    c.name = PQfname(desc.get(), i);
    const Oid from = PQftable(desc.get(), i);
    const int attnum = PQftablecol(desc.get(), i);
    if (from == table_oid && attnum > 0) {
      FERRY_ASSIGN_OR_RETURN(
          PgResult a, Query(fmt::format("SELECT attname FROM pg_attribute WHERE attrelid = {} AND "
                                        "attnum = {}",
                                        table_oid, attnum),
                            "look up a column"));
      if (PQntuples(a.get()) == 1) {
        const std::string name = PQgetvalue(a.get(), 0, 0);
        for (size_t k = 0; k < table.columns.size(); ++k) {
          if (table.columns[k].name == name) {
            c.source_cell = static_cast<int>(k);
            c.type = table.columns[k].type;
            c.not_null = table.columns[k].not_null;
          }
        }
      }
    }
    if (c.source_cell < 0) {
      FERRY_ASSIGN_OR_RETURN(PgResult t,
                             Query(fmt::format("SELECT format_type({}, {})", PQftype(desc.get(), i),
                                               PQfmod(desc.get(), i)),
                                   "look up a result type"));
      c.type = PQgetvalue(t.get(), 0, 0);
      if (c.type == "unknown") c.type = "text";  // an untyped literal: text
    }
    out.push_back(std::move(c));
  }
  if (out.empty()) {
    return InvalidArgument(fmt::format(
        "the legacy store refuses it as a query of table {}: the select list has no columns",
        table.name));
  }
  return out;
}

Status PgStore::ReadProjected(const TableSchema& table, const Projection& p, const KeyRange& range,
                              std::string_view after, size_t max_rows, size_t max_bytes,
                              RowBatch* out) {
  if (p.identity()) return ReadBatch(table, range, after, max_rows, max_bytes, out);
  out->Clear();
  FERRY_RETURN_IF_ERROR(CheckNotMetaTable(table.name));
  if (!range.table.empty() && range.table != table.name) {
    return InvalidArgument(
        fmt::format("range of table {} read as table {}", range.table, table.name));
  }
  if (max_rows == 0) return InvalidArgument("max_rows must be at least 1");
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  FERRY_ASSIGN_OR_RETURN(TableInfo * info, Info(table.name));
  if (info->pk.empty()) {
    return InvalidArgument(fmt::format(
        "table {} has no primary key; ferry needs one to read a PostgreSQL table", table.name));
  }
  const std::string self = PgQuoteIdent(table.name);
  std::vector<std::string> keys, order, star;
  for (size_t k : info->pk) {
    const ColInfo& c = info->cols[k];
    keys.push_back(self + "." + CellSelect(c));
    order.push_back(self + "." + PgQuoteIdent(c.name) + (c.needs_c ? " COLLATE \"C\"" : ""));
  }
  for (const Column& c : table.columns) {
    auto it = std::find_if(info->cols.begin(), info->cols.end(),
                           [&](const ColInfo& ci) { return ci.name == c.name; });
    if (it == info->cols.end()) {
      return InvalidArgument(fmt::format("table {} has no column {}", table.name, c.name));
    }
    star.push_back(self + "." + CellSelect(*it));
  }
  std::vector<std::optional<std::string>> params;
  std::vector<int> formats;
  FERRY_ASSIGN_OR_RETURN(std::string where,
                         RangeWhere(table, *info, self, range, after, &params, &formats));
  params.push_back(std::to_string(max_rows));
  formats.push_back(0);
  const std::string sql = fmt::format("{} ORDER BY {} LIMIT ${}::int8",
                                      ProjectionSql(info->qualified, self, keys, star, p, where),
                                      Join(order), params.size());
  FERRY_ASSIGN_OR_RETURN(
      PgResult r,
      ExecPrepared(sql, fmt::format("read table {} through the spec's select", table.name), params,
                   formats, /*binary=*/false));
  const size_t arity = info->pk.size();
  const size_t total = static_cast<size_t>(PQnfields(r.get()));
  const size_t width = total - arity;
  out->width = width;
  std::vector<Oid> types(total);
  for (size_t c = 0; c < total; ++c) types[c] = PQftype(r.get(), static_cast<int>(c));
  std::vector<Value> key_values(arity);
  const int nrows = PQntuples(r.get());
  for (int row = 0; row < nrows; ++row) {
    for (size_t c = 0; c < total; ++c) {
      const int col = static_cast<int>(c);
      Value v = PQgetisnull(r.get(), row, col) ? Value(Null{})
                                               : TextCell(types[c], PQgetvalue(r.get(), row, col),
                                                          PQgetlength(r.get(), row, col));
      if (c < arity) {
        key_values[c] = std::move(v);
      } else {
        out->bytes += PayloadBytes(v);
        out->cells.push_back(std::move(v));
      }
    }
    out->keys.push_back(EncodeKey(key_values));
    out->bytes += out->keys.back().size();
    if (out->bytes >= max_bytes) break;
  }
  return Status::Ok();
}

// ---- rejects ----

Status PgStore::CreateRejectsTable() {
  if (role_ == StoreRole::kSource) return RefuseWrite();
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  Status s = Exec(RejectsDdl(Qualified(kRejectsTable)), "create the rejects table");
  if (!s.ok() && s.code() == Code::kPermanent) {
    // A concurrent CREATE TABLE IF NOT EXISTS won the race (23505).
    FERRY_RETURN_IF_ERROR(EnsureConnected());
    FERRY_ASSIGN_OR_RETURN(
        PgResult r, Query("SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = "
                          "c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
                          "look up the rejects table", {schema_, std::string(kRejectsTable)}));
    if (PQntuples(r.get()) > 0) return Status::Ok();
  }
  return s;
}

Status PgStore::WriteRejects(const std::vector<Reject>& rejects, const Fence& fence) {
  if (role_ == StoreRole::kSource) return RefuseWrite();
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  const std::string what = "record rejected rows";
  PgTxn txn(conn_);
  FERRY_RETURN_IF_ERROR(BeginFenced(fence, what, &txn));
  // One row per (table, key) in the statement: ON CONFLICT cannot touch a
  // row twice.
  std::vector<const Reject*> unique;
  for (const Reject& r : rejects) {
    auto same = [&](const Reject* o) {
      return o->table == r.table && o->source_key == r.source_key;
    };
    auto it = std::find_if(unique.begin(), unique.end(), same);
    if (it == unique.end()) {
      unique.push_back(&r);
    } else {
      *it = &r;
    }
  }
  for (const Reject* r : unique) {
    FERRY_RETURN_IF_ERROR(
        Query(fmt::format("INSERT INTO {} (table_name, source_key, reason) VALUES ($1, $2, $3) "
                          "ON CONFLICT (table_name, source_key) DO UPDATE SET reason = "
                          "EXCLUDED.reason",
                          Qualified(kRejectsTable)),
              what, {r->table, r->source_key, r->reason})
            .status());
  }
  FERRY_RETURN_IF_ERROR(Exec("COMMIT", what));
  txn.Done();
  return Status::Ok();
}

Result<std::vector<Reject>> PgStore::ReadRejects(const std::string& table, size_t limit) {
  std::vector<Reject> out;
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  FERRY_ASSIGN_OR_RETURN(
      PgResult e, Query("SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = $1 AND c.relname = $2",
                        "look up the rejects table", {schema_, std::string(kRejectsTable)}));
  if (PQntuples(e.get()) == 0 || limit == 0) return out;
  FERRY_ASSIGN_OR_RETURN(
      PgResult r,
      Query(fmt::format("SELECT table_name, source_key, reason FROM {} WHERE $1 = '' OR "
                        "table_name = $1 ORDER BY table_name COLLATE \"C\", source_key COLLATE "
                        "\"C\" LIMIT $2::int8",
                        Qualified(kRejectsTable)),
            "read the rejects table", {table, std::to_string(std::min<size_t>(limit, INT64_MAX))}));
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    out.push_back(
        Reject{PQgetvalue(r.get(), i, 0), PQgetvalue(r.get(), i, 1), PQgetvalue(r.get(), i, 2)});
  }
  return out;
}

// ---- a spec's create ----

Result<TableSchema> PgStore::DescribeCreate(const std::string& uri, const std::string& create_sql) {
  FERRY_ASSIGN_OR_RETURN(std::unique_ptr<PgStore> store, Open(uri, StoreRole::kSource));
  return store->DescribeCreateHere(create_sql);
}

Result<TableSchema> PgStore::DescribeCreateHere(const std::string& create_sql) {
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  PgTxn txn(conn_);
  FERRY_RETURN_IF_ERROR(Exec("BEGIN READ WRITE", "check a create statement"));
  txn.Started();
  FERRY_RETURN_IF_ERROR(Exec("SET LOCAL search_path TO pg_temp, " + PgQuoteIdent(schema_),
                             "check a create statement"));
  {
    PgResult r(PQexec(conn_.get(), create_sql.c_str()));
    const ExecStatusType st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK) {
      Status s = Error(r.get(), "create");
      if (s.code() == Code::kUnavailable) return s;
      const char* primary = r ? PQresultErrorField(r.get(), PG_DIAG_MESSAGE_PRIMARY) : nullptr;
      return InvalidArgument(fmt::format("the new store (PostgreSQL) refuses it: {}",
                                         primary ? Scrub(primary, password_) : s.message()));
    }
  }
  FERRY_ASSIGN_OR_RETURN(
      PgResult rel, Query("SELECT c.oid::int8, c.relname FROM pg_class c WHERE c.relnamespace = "
                          "pg_my_temp_schema() AND c.relkind IN ('r', 'p')",
                          "read the created table"));
  if (PQntuples(rel.get()) != 1) {
    return InvalidArgument(
        fmt::format("makes {} tables in PostgreSQL, not one", PQntuples(rel.get())));
  }
  TableSchema t;
  t.name = PQgetvalue(rel.get(), 0, 1);
  t.dialect = kPgDialect;
  t.create_sql = create_sql;
  t.create_verbatim = true;
  FERRY_ASSIGN_OR_RETURN(
      PgResult cols,
      Query(fmt::format(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull::int, "
                "coalesce((SELECT array_position(c.conkey, a.attnum) FROM pg_constraint c "
                "  WHERE c.conrelid = a.attrelid AND c.contype = 'p'), 0), "
                "CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) "
                "  ELSE format_type(a.atttypid, a.atttypmod) END "
                "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid WHERE a.attrelid = {} "
                "AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY "
                "a.attnum",
                PQgetvalue(rel.get(), 0, 0)),
            "read the created table's columns"));
  std::vector<std::pair<int64_t, size_t>> pk;
  for (int i = 0; i < PQntuples(cols.get()); ++i) {
    const int64_t pk_pos = std::atoll(PQgetvalue(cols.get(), i, 3));
    if (pk_pos > 0) pk.emplace_back(pk_pos, t.columns.size());
    t.columns.emplace_back(PQgetvalue(cols.get(), i, 0), PQgetvalue(cols.get(), i, 1),
                           std::string(PQgetvalue(cols.get(), i, 2)) == "1",
                           PgNeutralType(PQgetvalue(cols.get(), i, 4)));
  }
  std::sort(pk.begin(), pk.end());
  for (const auto& p : pk) t.key_columns.push_back(p.second);
  return t;  // ~PgTxn rolls back: nothing was created
}

}  // namespace ferry
