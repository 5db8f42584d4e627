// SqliteStore's write side: batches under a fence, the metadata table
// (fences, version, boundary, plans) and durability.
#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>

#include "common/key_codec.h"
#include "stores/sqlite/sqlite_internal.h"
#include "stores/table_checks.h"

namespace ferry {

using sqlite_sql::CellList;

Status SqliteStore::WriteBatch(const TableSchema& table, const RowBatch& batch,
                               const Fence& fence) {
  if (role_ == StoreRole::kSource) return RefuseWrite();
  FERRY_ASSIGN_OR_RETURN(std::string alias, CheckBatch(table, batch));
  const size_t width = table.width();
  auto sql = [&] {
    std::string params;
    for (size_t i = 1; i <= width; ++i) params += fmt::format("{}?{}", i > 1 ? "," : "", i);
    return fmt::format("INSERT OR REPLACE INTO {} ({}) VALUES ({})", QuoteIdent(table.name),
                       CellList(table, alias), params);
  };
  FERRY_ASSIGN_OR_RETURN(Stmt * insert, Cached(sql()));

  Txn txn(this);
  FERRY_RETURN_IF_ERROR(txn.status());
  std::string end;
  FERRY_RETURN_IF_ERROR(CheckAndRecordFence(fence, &end));
  for (const std::string& k : batch.keys) FERRY_RETURN_IF_ERROR(CheckBeforeEnd(fence, end, k));

  for (size_t r = 0; r < batch.rows(); ++r) {
    const Value* row = batch.row(r);
    for (size_t c = 0; c < width; ++c) insert->BindValue(static_cast<int>(c + 1), row[c]);
    int rc = insert->Step();
    insert->Reset();
    if (rc != SQLITE_DONE) {
      return db_.Error(
          rc, fmt::format("write row {} of table {}", KeyToString(batch.keys[r]), table.name));
    }
  }
  return txn.Commit();
}

Status SqliteStore::DeleteRows(const TableSchema& table, const std::vector<std::string>& keys,
                               const Fence& fence) {
  if (role_ == StoreRole::kSource) return RefuseWrite();
  FERRY_ASSIGN_OR_RETURN(std::string alias, CheckTable(table));
  const sqlite_sql::KeySql key = sqlite_sql::MakeKeySql(table, alias);
  FERRY_ASSIGN_OR_RETURN(Stmt * del,
                         Cached(fmt::format("DELETE FROM {} WHERE {} = {}", QuoteIdent(table.name),
                                            key.tuple, sqlite_sql::Params(key.arity, 1))));
  Txn txn(this);
  FERRY_RETURN_IF_ERROR(txn.status());
  std::string end;
  FERRY_RETURN_IF_ERROR(CheckAndRecordFence(fence, &end));
  for (const std::string& k : keys) {
    FERRY_RETURN_IF_ERROR(CheckBeforeEnd(fence, end, k));
    auto values = DecodeKey(k);
    if (!values.ok() || values->size() != key.arity) {
      return InvalidArgument(
          fmt::format("table {}: key {} does not fit the table's key", table.name, KeyToString(k)));
    }
    for (size_t i = 0; i < values->size(); ++i)
      del->BindValue(static_cast<int>(i + 1), (*values)[i]);
    int rc = del->Step();
    del->Reset();
    if (rc != SQLITE_DONE) {
      return db_.Error(rc, fmt::format("delete row {} of table {}", KeyToString(k), table.name));
    }
  }
  return txn.Commit();
}

Status SqliteStore::CheckAndRecordFence(const Fence& fence, std::string* end) {
  const std::string fence_key = fmt::format("fence/{}/{}", fence.plan_id, fence.range_id);
  FERRY_ASSIGN_OR_RETURN(std::optional<Value> recorded, MetaGet(fence_key));
  if (recorded && std::holds_alternative<int64_t>(*recorded) &&
      std::get<int64_t>(*recorded) > static_cast<int64_t>(fence.epoch)) {
    return LeaseLost(fmt::format("range {}: epoch {} is older than recorded epoch {}",
                                 fence.range_id, fence.epoch, std::get<int64_t>(*recorded)));
  }
  FERRY_RETURN_IF_ERROR(MetaPut(fence_key, static_cast<int64_t>(fence.epoch)));
  // The end a split gave this range, if any.
  if (end) {
    end->clear();
    FERRY_ASSIGN_OR_RETURN(std::optional<Value> own_end,
                           MetaGet(fmt::format("fence_end/{}/{}", fence.plan_id, fence.range_id)));
    if (own_end && std::holds_alternative<Blob>(*own_end)) *end = std::get<Blob>(*own_end).bytes;
  }
  if (fence.parent_id != 0 && !fence.parent_end.empty()) {
    // A tail of a split: from now on its parent ends where it starts.
    const std::string parent_key = fmt::format("fence_end/{}/{}", fence.plan_id, fence.parent_id);
    FERRY_ASSIGN_OR_RETURN(std::optional<Value> parent_end, MetaGet(parent_key));
    if (!parent_end || !std::holds_alternative<Blob>(*parent_end) ||
        std::get<Blob>(*parent_end).bytes > fence.parent_end) {
      FERRY_RETURN_IF_ERROR(MetaPut(parent_key, Blob{fence.parent_end}));
    }
  }
  return Status::Ok();
}

Status SqliteStore::CheckBeforeEnd(const Fence& fence, const std::string& end,
                                   std::string_view key) {
  if (end.empty() || key < std::string_view(end)) return Status::Ok();
  return LeaseLost(fmt::format(
      "range {}: split at {}, it ends there now; this batch writes {} (epoch {}): fenced",
      fence.range_id, KeyToString(end), KeyToString(key), fence.epoch));
}

// ---- metadata ----

Status SqliteStore::CreateMetaTable() {
  return db_.Exec(fmt::format("CREATE TABLE IF NOT EXISTS {} (key TEXT PRIMARY KEY, value)",
                              QuoteIdent(kMetaTable)));
}

Result<bool> SqliteStore::MetaTableExists() {
  FERRY_ASSIGN_OR_RETURN(Stmt * stmt,
                         Cached("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1"));
  stmt->Bind(1, std::string_view(kMetaTable));
  int rc = stmt->Step();
  stmt->Reset();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_.Error(rc, "look up metadata table");
  return rc == SQLITE_ROW;
}

Result<std::optional<Value>> SqliteStore::MetaGet(std::string_view key) {
  FERRY_ASSIGN_OR_RETURN(Stmt * stmt, Cached(fmt::format("SELECT value FROM {} WHERE key = ?1",
                                                         QuoteIdent(kMetaTable))));
  stmt->Bind(1, key);
  int rc = stmt->Step();
  std::optional<Value> out;
  if (rc == SQLITE_ROW) out = stmt->ColumnValue(0);
  stmt->Reset();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    return db_.Error(rc, fmt::format("read metadata key {}", key));
  }
  return out;
}

Status SqliteStore::MetaPut(std::string_view key, const Value& value) {
  FERRY_ASSIGN_OR_RETURN(
      Stmt * stmt, Cached(fmt::format("INSERT OR REPLACE INTO {} (key, value) VALUES (?1, ?2)",
                                      QuoteIdent(kMetaTable))));
  stmt->Bind(1, key);
  stmt->BindValue(2, value);
  int rc = stmt->Step();
  stmt->Reset();
  if (rc != SQLITE_DONE) return db_.Error(rc, fmt::format("write metadata key {}", key));
  return Status::Ok();
}

Status SqliteStore::MetaDelete(std::string_view key) {
  FERRY_ASSIGN_OR_RETURN(
      Stmt * stmt, Cached(fmt::format("DELETE FROM {} WHERE key = ?1", QuoteIdent(kMetaTable))));
  stmt->Bind(1, key);
  int rc = stmt->Step();
  stmt->Reset();
  if (rc != SQLITE_DONE) return db_.Error(rc, fmt::format("delete metadata key {}", key));
  return Status::Ok();
}

Result<std::optional<int64_t>> SqliteStore::ReadVersion() {
  FERRY_ASSIGN_OR_RETURN(bool exists, MetaTableExists());
  if (!exists) return std::optional<int64_t>();
  FERRY_ASSIGN_OR_RETURN(std::optional<Value> v, MetaGet("version"));
  if (!v || std::holds_alternative<Null>(*v)) return std::optional<int64_t>();
  if (std::holds_alternative<int64_t>(*v)) return std::optional<int64_t>(std::get<int64_t>(*v));
  if (std::holds_alternative<Text>(*v)) {
    const std::string& s = std::get<Text>(*v).bytes;
    char* end = nullptr;
    errno = 0;
    long long n = std::strtoll(s.c_str(), &end, 10);
    if (!s.empty() && errno == 0 && end == s.c_str() + s.size()) {
      return std::optional<int64_t>(static_cast<int64_t>(n));
    }
  }
  return FailedPrecondition(fmt::format(
      "{}: the version recorded in {} is not an integer; fix or delete the 'version' row",
      Describe(), kMetaTable));
}

Result<Marker> SqliteStore::ReadMarker() {
  Marker marker;
  FERRY_ASSIGN_OR_RETURN(marker.version, ReadVersion());
  if (!marker.version.has_value()) {
    FERRY_ASSIGN_OR_RETURN(bool exists, MetaTableExists());
    if (!exists) return marker;
  }
  FERRY_ASSIGN_OR_RETURN(std::optional<Value> b, MetaGet("boundary"));
  if (b && std::holds_alternative<Blob>(*b)) marker.boundary = std::get<Blob>(*b).bytes;
  if (b && std::holds_alternative<Text>(*b)) marker.boundary = std::get<Text>(*b).bytes;
  return marker;
}

Status SqliteStore::WriteMarker(const Marker& marker) {
  if (role_ == StoreRole::kSource) return RefuseWrite();
  Txn txn(this);
  FERRY_RETURN_IF_ERROR(txn.status());
  FERRY_RETURN_IF_ERROR(CreateMetaTable());
  if (marker.version) FERRY_RETURN_IF_ERROR(MetaPut("version", *marker.version));
  if (marker.boundary.empty()) {
    FERRY_RETURN_IF_ERROR(MetaDelete("boundary"));
  } else {
    FERRY_RETURN_IF_ERROR(MetaPut("boundary", Blob{marker.boundary}));
  }
  FERRY_RETURN_IF_ERROR(txn.Commit());
  return SyncWrites();
}

Status SqliteStore::RecordPlan(const std::string& plan_id) {
  if (role_ == StoreRole::kSource) return RefuseWrite();
  Txn txn(this);
  FERRY_RETURN_IF_ERROR(txn.status());
  FERRY_RETURN_IF_ERROR(CreateMetaTable());
  FERRY_RETURN_IF_ERROR(MetaPut("plan/" + plan_id, int64_t{1}));
  FERRY_RETURN_IF_ERROR(txn.Commit());
  return SyncWrites();
}

Result<bool> SqliteStore::HasPlan(const std::string& plan_id) {
  FERRY_ASSIGN_OR_RETURN(bool exists, MetaTableExists());
  if (!exists) return false;
  FERRY_ASSIGN_OR_RETURN(std::optional<Value> v, MetaGet("plan/" + plan_id));
  return v.has_value();
}

Status SqliteStore::SyncWrites() {
  if (!unsynced_) return Status::Ok();
  sqlite3_file* wal = nullptr;
  int rc = sqlite3_file_control(db_.get(), "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal);
  if (rc != SQLITE_OK || wal == nullptr || wal->pMethods == nullptr) {
    return Internal(fmt::format("{}: no write-ahead log to sync (rc {})", Describe(), rc));
  }
  rc = wal->pMethods->xSync(wal, SQLITE_SYNC_NORMAL);
  if (rc != SQLITE_OK) {
    return Unavailable(
        fmt::format("{}: fsync of the write-ahead log failed: {}", Describe(), sqlite3_errstr(rc)));
  }
  unsynced_ = false;
  return Status::Ok();
}

}  // namespace ferry
