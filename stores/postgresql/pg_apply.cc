// PgStore's side of online migrations: rows re-read by key (legacy store)
// and replayed changes written under the applier's fence (new store).
#include <fmt/format.h>

#include <algorithm>

#include "common/key_codec.h"
#include "stores/postgresql/pg_internal.h"
#include "stores/postgresql/pg_store.h"
#include "stores/sql_text.h"
#include "stores/table_checks.h"

namespace ferry {

using pg_wire::DoubleText;

namespace {

// Keys per statement: a padded chunk, so that one prepared statement serves
// a table.
constexpr size_t kKeysPerStatement = 500;

}  // namespace

Result<std::string> PgStore::KeyParams(const TableInfo& info, const std::string& table,
                                       std::string_view encoded,
                                       std::vector<std::optional<std::string>>* params,
                                       std::vector<int>* formats) {
  auto values = DecodeKey(encoded);
  const size_t arity = info.pk.size();
  if (!values.ok() || values->size() != arity) {
    return InvalidArgument(
        fmt::format("table {}: key {} does not fit the table's key", table, KeyToString(encoded)));
  }
  std::vector<std::string> ps;
  for (size_t k = 0; k < arity; ++k) {
    const ColInfo& c = info.cols[info.pk[k]];
    const Value& v = (*values)[k];
    const size_t n = params->size() + 1;
    const std::string* bytes = nullptr;
    if (auto* b = std::get_if<Blob>(&v)) bytes = &b->bytes;
    if (auto* t = std::get_if<Text>(&v)) bytes = &t->bytes;
    if (c.wire == Wire::kBytes && bytes) {
      params->push_back(*bytes);
      formats->push_back(1);
      ps.push_back(fmt::format("${}::bytea", n));
      continue;
    }
    if (auto* i = std::get_if<int64_t>(&v)) {
      params->push_back(std::to_string(*i));
    } else if (auto* d = std::get_if<double>(&v)) {
      params->push_back(DoubleText(*d, false));
    } else if (bytes) {
      params->push_back(*bytes);
    } else {
      return InvalidArgument(fmt::format("table {}: key {} does not fit the table's key types",
                                         table, KeyToString(encoded)));
    }
    formats->push_back(0);
    ps.push_back(fmt::format("${}::{}", n, c.type));
  }
  return arity == 1 ? ps[0] : "(" + Join(ps) + ")";
}

Status PgStore::ReadKeys(const TableSchema& table, const std::vector<std::string>& keys,
                         RowBatch* out) {
  out->Clear();
  out->width = table.width();
  FERRY_RETURN_IF_ERROR(CheckNotMetaTable(table.name));
  if (keys.empty()) return Status::Ok();
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  FERRY_ASSIGN_OR_RETURN(TableInfo * info, Info(table.name));
  if (info->pk.empty() || table.rowid_key()) {
    return InvalidArgument(fmt::format(
        "table {} has no primary key; ferry needs one to read a PostgreSQL table", table.name));
  }
  FERRY_ASSIGN_OR_RETURN(CellMap map, MapCells(table, *info));
  std::vector<std::string> sel, tup;
  for (size_t ci : map.cell_cols) sel.push_back(CellSelect(info->cols[ci]));
  for (size_t p : info->pk) tup.push_back(PgQuoteIdent(info->cols[p].name));
  const size_t arity = info->pk.size();
  const std::string tuple = arity == 1 ? tup[0] : "(" + Join(tup) + ")";
  const std::string what = fmt::format("read changed rows of table {}", table.name);
  for (size_t begin = 0; begin < keys.size(); begin += kKeysPerStatement) {
    const size_t n = std::min(kKeysPerStatement, keys.size() - begin);
    std::vector<std::optional<std::string>> params;
    std::vector<int> formats;
    std::vector<std::string> list;
    for (size_t i = 0; i < kKeysPerStatement; ++i) {
      FERRY_ASSIGN_OR_RETURN(
          std::string t,
          KeyParams(*info, table.name, keys[begin + std::min(i, n - 1)], &params, &formats));
      list.push_back(std::move(t));
    }
    const std::string sql = arity == 1 ? fmt::format("SELECT {} FROM {} WHERE {} IN ({})",
                                                     Join(sel), info->qualified, tuple, Join(list))
                                       : fmt::format("SELECT {} FROM {} WHERE {} IN (VALUES {})",
                                                     Join(sel), info->qualified, tuple, Join(list));
    FERRY_ASSIGN_OR_RETURN(PgResult r, ExecPrepared(sql, what, params, formats, /*binary=*/true));
    AppendRows(r.get(), *info, map, SIZE_MAX, out);
  }
  return Status::Ok();
}

Status PgStore::ApplyChanges(const ChangeApply& a) {
  if (role_ == StoreRole::kSource) return RefuseWrite();
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  struct Prepared {
    TableInfo* info = nullptr;
    const WritePlan* plan = nullptr;
  };
  std::vector<Prepared> prepared;
  for (const TableChanges& t : a.tables) {
    FERRY_ASSIGN_OR_RETURN(const std::string alias, CheckBatch(*t.table, t.upserts));
    Prepared p;
    FERRY_ASSIGN_OR_RETURN(p.info, Info(t.table->name));
    FERRY_ASSIGN_OR_RETURN(p.plan, PlanWrite(*t.table, alias, p.info));
    if (!staged_.count(p.plan->stage)) {
      FERRY_RETURN_IF_ERROR(
          Exec(p.plan->create_stage, fmt::format("create staging table for {}", t.table->name)));
      staged_.insert(p.plan->stage);
    }
    prepared.push_back(p);
  }
  const std::string what = "apply changes";
  const std::string meta = Qualified(kMetaTable);
  const std::string fence_key = fmt::format("fence/{}/0", a.plan_id);
  PgTxn txn(conn_);
  {
    FERRY_ASSIGN_OR_RETURN(
        PgResult r,
        Query(fmt::format("BEGIN; INSERT INTO {0} AS m (key, value) VALUES ({1}, {2}) "
                          "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value "
                          "WHERE m.value IS NULL OR m.value <= EXCLUDED.value RETURNING value",
                          meta, PgQuoteLiteral(fence_key), static_cast<int64_t>(a.epoch)),
              what));
    txn.Started();
    if (PQntuples(r.get()) == 0) {
      return LeaseLost(
          fmt::format("change applier: epoch {} is older than the one recorded", a.epoch));
    }
  }
  if (a.fence_ranges > 0) {
    FERRY_RETURN_IF_ERROR(
        Query(
            fmt::format("INSERT INTO {} AS m (key, value) SELECT 'fence/' || $1::text || '/' || g, "
                        "$2::bigint FROM generate_series(1, $3::bigint) g ON CONFLICT (key) DO "
                        "UPDATE SET value = GREATEST(m.value, EXCLUDED.value)",
                        meta),
            "record the applier's epoch on the range fences",
            {a.plan_id, std::to_string(a.epoch), std::to_string(a.fence_ranges)})
            .status());
  }
  const std::string pos_key = "changes/" + a.plan_id;
  const std::string applied_key = "changes_applied/" + a.plan_id;
  {
    FERRY_ASSIGN_OR_RETURN(
        PgResult r,
        Query(fmt::format("SELECT value FROM {} WHERE key = $1", meta), what, {pos_key}));
    const int64_t recorded = PQntuples(r.get()) > 0 && !PQgetisnull(r.get(), 0, 0)
                                 ? std::atoll(PQgetvalue(r.get(), 0, 0))
                                 : 0;
    if (recorded != a.from_position) {
      return LeaseLost(fmt::format(
          "the change position is {} in the new store, not {}: another applier moved it", recorded,
          a.from_position));
    }
  }
  FERRY_RETURN_IF_ERROR(
      Query(fmt::format("INSERT INTO {} AS m (key, value) VALUES ($1, $2::bigint), ($3, "
                        "$4::bigint) ON CONFLICT (key) DO UPDATE SET value = CASE WHEN m.key = $3 "
                        "THEN coalesce(m.value, 0) + EXCLUDED.value ELSE EXCLUDED.value END",
                        meta),
            "record the change position",
            {pos_key, std::to_string(a.to_position), applied_key, std::to_string(a.changes)})
          .status());
  for (size_t t = 0; t < a.tables.size(); ++t) {
    const TableChanges& tc = a.tables[t];
    const Prepared& p = prepared[t];
    const std::vector<std::string>& dels = tc.deletes;
    std::vector<std::string> tup;
    for (size_t k : p.info->pk) tup.push_back(PgQuoteIdent(p.info->cols[k].name));
    const std::string tuple = tup.size() == 1 ? tup[0] : "(" + Join(tup) + ")";
    for (size_t begin = 0; begin < dels.size(); begin += kKeysPerStatement) {
      const size_t n = std::min(kKeysPerStatement, dels.size() - begin);
      std::vector<std::optional<std::string>> params;
      std::vector<int> formats;
      std::vector<std::string> list;
      for (size_t i = 0; i < kKeysPerStatement; ++i) {
        FERRY_ASSIGN_OR_RETURN(std::string s,
                               KeyParams(*p.info, tc.table->name, dels[begin + std::min(i, n - 1)],
                                         &params, &formats));
        list.push_back(std::move(s));
      }
      const std::string sql =
          tup.size() == 1
              ? fmt::format("DELETE FROM {} WHERE {} IN ({})", p.info->qualified, tuple, Join(list))
              : fmt::format("DELETE FROM {} WHERE {} IN (VALUES {})", p.info->qualified, tuple,
                            Join(list));
      FERRY_RETURN_IF_ERROR(ExecPrepared(sql,
                                         fmt::format("delete rows of table {}", tc.table->name),
                                         params, formats, false)
                                .status());
    }
    if (tc.upserts.rows() > 0) {
      FERRY_RETURN_IF_ERROR(WriteRows(*tc.table, tc.upserts, *p.plan));
      FERRY_RETURN_IF_ERROR(
          Exec(p.plan->insert_sql, fmt::format("write table {}", tc.table->name)));
    }
  }
  FERRY_RETURN_IF_ERROR(Exec("COMMIT", what));
  txn.Done();
  return Status::Ok();
}

Result<ChangePosition> PgStore::ReadChangePosition(const std::string& plan_id) {
  ChangePosition out;
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  FERRY_ASSIGN_OR_RETURN(bool exists, MetaExists());
  if (!exists) return out;
  FERRY_ASSIGN_OR_RETURN(
      PgResult r,
      Query(fmt::format("SELECT key, value FROM {} WHERE key IN ($1, $2)", Qualified(kMetaTable)),
            "read the change position", {"changes/" + plan_id, "changes_applied/" + plan_id}));
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    if (PQgetisnull(r.get(), i, 1)) continue;
    const int64_t v = std::atoll(PQgetvalue(r.get(), i, 1));
    if (std::string(PQgetvalue(r.get(), i, 0)).rfind("changes/", 0) == 0) {
      out.position = v;
    } else {
      out.applied = static_cast<uint64_t>(v);
    }
  }
  return out;
}

}  // namespace ferry
