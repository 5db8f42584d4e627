// PgStore's write side: batches (binary COPY into a staging table, one
// upsert) under a fence, and the metadata table (version, boundary, plans).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/key_codec.h"
#include "stores/postgresql/pg_internal.h"
#include "stores/postgresql/pg_store.h"
#include "stores/sql_text.h"
#include "stores/table_checks.h"

namespace ferry {

using pg_wire::DoubleText;
using pg_wire::KindName;
using pg_wire::ParseDouble;
using pg_wire::ParseInt;
using pg_wire::PutBe;

Result<const PgStore::WritePlan*> PgStore::PlanWrite(const TableSchema& table,
                                                     const std::string& alias, TableInfo* info) {
  auto it = writes_.find(table.name);
  if (it != writes_.end()) return &it->second;
  WritePlan plan;
  const std::vector<std::string> cells = CellNames(table, alias);
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
  FERRY_ASSIGN_OR_RETURN(const std::string alias, CheckBatch(table, batch));
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  FERRY_ASSIGN_OR_RETURN(TableInfo * info, Info(table.name));
  FERRY_ASSIGN_OR_RETURN(const WritePlan* plan, PlanWrite(table, alias, info));
  if (!staged_.count(plan->stage)) {
    FERRY_RETURN_IF_ERROR(
        Exec(plan->create_stage, fmt::format("create staging table for {}", table.name)));
    staged_.insert(plan->stage);
  }
  const std::string what = fmt::format("write table {}", table.name);
  PgTxn txn(conn_);
  std::string end;
  FERRY_RETURN_IF_ERROR(BeginFenced(fence, what, &txn, &end));
  if (!end.empty()) {
    for (const std::string& k : batch.keys) {
      if (k >= end) return SplitFenced(fence, end, k);
    }
  }
  FERRY_RETURN_IF_ERROR(WriteRows(table, batch, *plan));
  FERRY_RETURN_IF_ERROR(Exec(plan->insert_sql, what));
  if (before_commit_) before_commit_();
  FERRY_RETURN_IF_ERROR(Exec("COMMIT", what));
  txn.Done();
  return Status::Ok();
}

Status PgStore::BeginFenced(const Fence& fence, const std::string& what, PgTxn* txn,
                            std::string* end) {
  // BEGIN and the fence in one round trip: the upsert only takes effect if no
  // newer epoch is recorded, and locks the fence row until COMMIT.
  const std::string fence_key = fmt::format("fence/{}/{}", fence.plan_id, fence.range_id);
  const std::string meta = Qualified(kMetaTable);
  FERRY_ASSIGN_OR_RETURN(
      PgResult r,
      Query(fmt::format("BEGIN; INSERT INTO {0} AS m (key, value) VALUES ({1}, {2}) "
                        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value "
                        "WHERE m.value IS NULL OR m.value <= EXCLUDED.value RETURNING value, "
                        "encode(bytes, 'hex')",
                        meta, PgQuoteLiteral(fence_key), static_cast<int64_t>(fence.epoch)),
            what));
  txn->Started();
  if (PQntuples(r.get()) == 0) {
    std::string recorded = "?";
    auto q = Query(
        fmt::format("SELECT value FROM {} WHERE key = {}", meta, PgQuoteLiteral(fence_key)), what);
    if (q.ok() && PQntuples(q->get()) > 0) recorded = PQgetvalue(q->get(), 0, 0);
    return LeaseLost(fmt::format("range {}: epoch {} is older than recorded epoch {}",
                                 fence.range_id, fence.epoch, recorded));
  }
  if (end) end->clear();
  if (end && !PQgetisnull(r.get(), 0, 1)) {
    const std::string hex = PQgetvalue(r.get(), 0, 1);
    for (size_t i = 0; i + 1 < hex.size(); i += 2) {
      end->push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    }
  }
  if (fence.parent_id != 0 && !fence.parent_end.empty()) {
    // A tail of a split: from now on its parent ends where it starts (the
    // smallest end wins). Recording locks the parent's fence row, so a batch
    // of the parent's owner either commits before this or sees the end. An
    // end already recorded at or before ours is left alone, unlocked, as
    // SqliteStore does: an upsert locks the row even when it changes nothing,
    // and every batch of the parent and of each of its tails would then
    // commit one at a time.
    std::string hex;
    for (unsigned char c : fence.parent_end) hex += fmt::format("{:02x}", c);
    FERRY_RETURN_IF_ERROR(Exec(
        fmt::format(
            "INSERT INTO {0} AS m (key, value, bytes) SELECT {1}, 0, decode('{2}', 'hex') "
            "WHERE NOT EXISTS (SELECT 1 FROM {0} WHERE key = {1} AND bytes IS NOT NULL AND "
            "bytes <= decode('{2}', 'hex')) ON CONFLICT (key) DO UPDATE SET bytes = "
            "EXCLUDED.bytes WHERE m.bytes IS NULL OR m.bytes > EXCLUDED.bytes",
            meta, PgQuoteLiteral(fmt::format("fence/{}/{}", fence.plan_id, fence.parent_id)), hex),
        what));
  }
  return Status::Ok();
}

Status PgStore::SplitFenced(const Fence& fence, const std::string& end, std::string_view key) {
  return LeaseLost(fmt::format(
      "range {}: split at {}, it ends there now; this batch writes {} (epoch {}): fenced",
      fence.range_id, KeyToString(end), KeyToString(key), fence.epoch));
}

Status PgStore::DeleteRows(const TableSchema& table, const std::vector<std::string>& keys,
                           const Fence& fence) {
  if (role_ == StoreRole::kSource) return RefuseWrite();
  FERRY_RETURN_IF_ERROR(CheckNotMetaTable(table.name));
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  FERRY_ASSIGN_OR_RETURN(TableInfo * info, Info(table.name));
  if (info->pk.empty()) {
    return FailedPrecondition(fmt::format("target table {} has no primary key", table.name));
  }
  const std::string what = fmt::format("delete rows of table {}", table.name);
  PgTxn txn(conn_);
  std::string end;
  FERRY_RETURN_IF_ERROR(BeginFenced(fence, what, &txn, &end));
  for (const std::string& k : keys) {
    if (!end.empty() && k >= end) return SplitFenced(fence, end, k);
    KeyBounds kb;
    FERRY_ASSIGN_OR_RETURN(std::string p, KeyParam(table, *info, k, "deleted", &kb));
    std::vector<std::string> cols;
    for (size_t c : info->pk) cols.push_back(PgQuoteIdent(info->cols[c].name));
    const std::string sql = fmt::format("DELETE FROM {} WHERE {} = {}", info->qualified,
                                        cols.size() == 1 ? cols[0] : "(" + Join(cols) + ")", p);
    FERRY_RETURN_IF_ERROR(ExecPrepared(sql, what, kb.params, kb.formats, false).status());
  }
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
