// SqliteStore's side of online migrations: rows re-read by key (legacy
// store) and replayed changes written under the applier's fence (new store).
#include <fmt/format.h>

#include "common/key_codec.h"
#include "stores/sqlite/sqlite_internal.h"
#include "stores/table_checks.h"

namespace ferry {

using sqlite_sql::CellList;
using sqlite_sql::KeySql;
using sqlite_sql::MakeKeySql;
using sqlite_sql::Params;

namespace {

// Keys per statement: a padded chunk, so that one statement serves a table.
constexpr size_t kKeysPerStatement = 200;

Result<std::vector<Value>> KeyValues(const std::string& encoded, size_t arity,
                                     const std::string& table) {
  auto values = DecodeKey(encoded);
  if (!values.ok() || values->size() != arity) {
    return InvalidArgument(
        fmt::format("table {}: key {} does not fit the table's key", table, KeyToString(encoded)));
  }
  return values;
}

}  // namespace

Status SqliteStore::ReadKeys(const TableSchema& table, const std::vector<std::string>& keys,
                             RowBatch* out) {
  out->Clear();
  out->width = table.width();
  FERRY_ASSIGN_OR_RETURN(std::string alias, CheckTable(table));
  if (keys.empty()) return Status::Ok();
  const KeySql key = MakeKeySql(table, alias);
  std::string in;
  for (size_t i = 0; i < kKeysPerStatement; ++i) {
    in += (i ? "," : "") + Params(key.arity, i * key.arity + 1);
  }
  const std::string sql =
      key.arity == 1 ? fmt::format("SELECT {} FROM {} WHERE {} IN ({})", CellList(table, alias),
                                   QuoteIdent(table.name), key.tuple, in)
                     : fmt::format("SELECT {} FROM {} WHERE {} IN (VALUES {})",
                                   CellList(table, alias), QuoteIdent(table.name), key.tuple, in);
  FERRY_ASSIGN_OR_RETURN(Stmt * stmt, Cached(sql));
  const size_t width = table.width();
  std::vector<std::vector<Value>> bound(kKeysPerStatement);
  for (size_t begin = 0; begin < keys.size(); begin += kKeysPerStatement) {
    const size_t n = std::min(kKeysPerStatement, keys.size() - begin);
    for (size_t i = 0; i < kKeysPerStatement; ++i) {
      // Past the last key, repeat it: the IN list may hold a key twice.
      FERRY_ASSIGN_OR_RETURN(bound[i],
                             KeyValues(keys[begin + std::min(i, n - 1)], key.arity, table.name));
      for (size_t k = 0; k < key.arity; ++k) {
        stmt->BindValue(static_cast<int>(i * key.arity + k + 1), bound[i][k]);
      }
    }
    int rc;
    while ((rc = stmt->Step()) == SQLITE_ROW) AppendStatementRow(*stmt, table, out);
    stmt->Reset();
    if (rc != SQLITE_DONE) {
      out->Clear();
      out->width = width;
      return db_.Error(rc, fmt::format("read changed rows of table {}", table.name));
    }
  }
  return Status::Ok();
}

Status SqliteStore::ApplyChanges(const ChangeApply& a) {
  if (role_ == StoreRole::kSource) return RefuseWrite();
  struct Prepared {
    Stmt* upsert = nullptr;
    Stmt* remove = nullptr;
    size_t arity = 0;
  };
  std::vector<Prepared> prepared;
  for (const TableChanges& t : a.tables) {
    FERRY_ASSIGN_OR_RETURN(std::string alias, CheckBatch(*t.table, t.upserts));
    const KeySql key = MakeKeySql(*t.table, alias);
    std::string params;
    for (size_t i = 1; i <= t.table->width(); ++i)
      params += fmt::format("{}?{}", i > 1 ? "," : "", i);
    Prepared p;
    p.arity = key.arity;
    FERRY_ASSIGN_OR_RETURN(
        p.upsert,
        Cached(fmt::format("INSERT OR REPLACE INTO {} ({}) VALUES ({})", QuoteIdent(t.table->name),
                           CellList(*t.table, alias), params)));
    FERRY_ASSIGN_OR_RETURN(
        p.remove, Cached(fmt::format("DELETE FROM {} WHERE {} = {}", QuoteIdent(t.table->name),
                                     key.tuple, Params(key.arity, 1))));
    prepared.push_back(p);
  }
  FERRY_ASSIGN_OR_RETURN(
      Stmt * fence_all,
      Cached(fmt::format("INSERT INTO {} (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE "
                         "SET value = max(value, excluded.value)",
                         QuoteIdent(kMetaTable))));

  Txn txn(this);
  FERRY_RETURN_IF_ERROR(txn.status());
  FERRY_RETURN_IF_ERROR(CheckAndRecordFence(Fence{a.plan_id, 0, a.epoch}));
  for (uint64_t r = 1; r <= a.fence_ranges; ++r) {
    fence_all->Bind(1, fmt::format("fence/{}/{}", a.plan_id, r));
    fence_all->Bind(2, static_cast<int64_t>(a.epoch));
    int rc = fence_all->Step();
    fence_all->Reset();
    if (rc != SQLITE_DONE) return db_.Error(rc, "record the applier's epoch on the range fences");
  }
  const std::string pos_key = "changes/" + a.plan_id;
  const std::string applied_key = "changes_applied/" + a.plan_id;
  FERRY_ASSIGN_OR_RETURN(std::optional<Value> pos, MetaGet(pos_key));
  const int64_t recorded =
      pos && std::holds_alternative<int64_t>(*pos) ? std::get<int64_t>(*pos) : 0;
  if (recorded != a.from_position) {
    return LeaseLost(
        fmt::format("the change position is {} in the new store, not {}: another applier moved it",
                    recorded, a.from_position));
  }
  FERRY_RETURN_IF_ERROR(MetaPut(pos_key, a.to_position));
  FERRY_ASSIGN_OR_RETURN(std::optional<Value> applied, MetaGet(applied_key));
  const int64_t before =
      applied && std::holds_alternative<int64_t>(*applied) ? std::get<int64_t>(*applied) : 0;
  FERRY_RETURN_IF_ERROR(MetaPut(applied_key, before + static_cast<int64_t>(a.changes)));

  for (size_t t = 0; t < a.tables.size(); ++t) {
    const TableChanges& tc = a.tables[t];
    const Prepared& p = prepared[t];
    for (const std::string& k : tc.deletes) {
      FERRY_ASSIGN_OR_RETURN(std::vector<Value> values, KeyValues(k, p.arity, tc.table->name));
      for (size_t i = 0; i < values.size(); ++i)
        p.remove->BindValue(static_cast<int>(i + 1), values[i]);
      int rc = p.remove->Step();
      p.remove->Reset();
      if (rc != SQLITE_DONE) {
        return db_.Error(rc,
                         fmt::format("delete row {} of table {}", KeyToString(k), tc.table->name));
      }
    }
    const size_t width = tc.table->width();
    for (size_t r = 0; r < tc.upserts.rows(); ++r) {
      const Value* row = tc.upserts.row(r);
      for (size_t c = 0; c < width; ++c) p.upsert->BindValue(static_cast<int>(c + 1), row[c]);
      int rc = p.upsert->Step();
      p.upsert->Reset();
      if (rc != SQLITE_DONE) {
        return db_.Error(rc, fmt::format("write row {} of table {}",
                                         KeyToString(tc.upserts.keys[r]), tc.table->name));
      }
    }
  }
  return txn.Commit();
}

Result<ChangePosition> SqliteStore::ReadChangePosition(const std::string& plan_id) {
  ChangePosition out;
  FERRY_ASSIGN_OR_RETURN(bool exists, MetaTableExists());
  if (!exists) return out;
  FERRY_ASSIGN_OR_RETURN(std::optional<Value> pos, MetaGet("changes/" + plan_id));
  if (pos && std::holds_alternative<int64_t>(*pos)) out.position = std::get<int64_t>(*pos);
  FERRY_ASSIGN_OR_RETURN(std::optional<Value> applied, MetaGet("changes_applied/" + plan_id));
  if (applied && std::holds_alternative<int64_t>(*applied)) {
    out.applied = static_cast<uint64_t>(std::get<int64_t>(*applied));
  }
  return out;
}

}  // namespace ferry
