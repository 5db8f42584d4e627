// PgStore::ReadBatch: one keyset page of a range, in binary format.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "common/key_codec.h"
#include "stores/postgresql/pg_internal.h"
#include "stores/postgresql/pg_store.h"
#include "stores/sql_text.h"
#include "stores/table_checks.h"

namespace ferry {

using pg_wire::DoubleText;
using pg_wire::ReadBe;

Value PgStore::DecodeCell(Wire wire, const char* v, int len) {
  switch (wire) {
    case Wire::kInt:
    case Wire::kBool:
      return static_cast<int64_t>(len == 2   ? static_cast<int16_t>(ReadBe(v, 2))
                                  : len == 4 ? static_cast<int32_t>(ReadBe(v, 4))
                                             : static_cast<int64_t>(ReadBe(v, 8)));
    case Wire::kFloat:
      if (len == 4) {
        uint32_t bits = static_cast<uint32_t>(ReadBe(v, 4));
        float f;
        std::memcpy(&f, &bits, 4);
        return static_cast<double>(f);
      } else {
        uint64_t bits = ReadBe(v, 8);
        double d;
        std::memcpy(&d, &bits, 8);
        return d;
      }
    case Wire::kBytes:
      return Blob{std::string(v, len)};
    case Wire::kText:
      break;
  }
  return Text{std::string(v, len)};
}

std::string PgStore::CellSelect(const ColInfo& c) {
  std::string s = PgQuoteIdent(c.name);
  if (c.wire == Wire::kBool) {
    s += "::int4";
  } else if (c.wire == Wire::kText && c.type != "text") {
    s += "::text";
  }
  return s;
}

Result<std::string> PgStore::KeyParam(const TableSchema& table, const TableInfo& info,
                                      std::string_view encoded, std::string_view what_key,
                                      KeyBounds* kb) {
  const size_t arity = info.pk.size();
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
    const ColInfo& c = info.cols[info.pk[k]];
    const Value& v = (*values)[k];
    size_t n = kb->params.size() + 1;
    bool ok = true;
    if (c.wire == Wire::kBytes) {
      if (auto* b = std::get_if<Blob>(&v))
        kb->params.push_back(b->bytes);
      else if (auto* t = std::get_if<Text>(&v))
        kb->params.push_back(t->bytes);
      else
        ok = false;
      kb->formats.push_back(1);
      ps.push_back(fmt::format("${}::bytea", n));
      if (!ok) break;
      continue;
    }
    if (auto* i = std::get_if<int64_t>(&v))
      kb->params.push_back(std::to_string(*i));
    else if (auto* d = std::get_if<double>(&v))
      kb->params.push_back(DoubleText(*d, false));
    else if (auto* t = std::get_if<Text>(&v))
      kb->params.push_back(t->bytes);
    else
      ok = false;
    if (!ok) break;
    kb->formats.push_back(0);
    ps.push_back(fmt::format("${}::{}", n, c.type));
  }
  if (ps.size() != arity) {
    return InvalidArgument(fmt::format("table {}: {} key {} does not fit the table's key types",
                                       table.name, what_key, KeyToString(encoded)));
  }
  return arity == 1 ? ps[0] : "(" + Join(ps) + ")";
}

Result<PgStore::KeyBounds> PgStore::Bounds(const TableSchema& table, const TableInfo& info,
                                           const KeyRange& range, std::string_view after,
                                           std::string_view through) {
  KeyBounds kb;
  std::vector<std::string> tup;
  for (size_t p : info.pk) {
    const ColInfo& c = info.cols[p];
    tup.push_back(PgQuoteIdent(c.name) + (c.needs_c ? " COLLATE \"C\"" : ""));
  }
  kb.tuple = tup.size() == 1 ? tup[0] : "(" + Join(tup) + ")";
  kb.order = Join(tup);
  const bool exclusive = !after.empty();
  if (exclusive || !range.lo.empty()) {
    FERRY_ASSIGN_OR_RETURN(std::string p,
                           KeyParam(table, info, exclusive ? after : std::string_view(range.lo),
                                    exclusive ? "cursor" : "lower", &kb));
    kb.where += fmt::format(" WHERE {} {} {}", kb.tuple, exclusive ? ">" : ">=", p);
  }
  if (!range.hi.empty()) {
    FERRY_ASSIGN_OR_RETURN(std::string p, KeyParam(table, info, range.hi, "upper", &kb));
    kb.where += fmt::format(" {} {} < {}", kb.where.empty() ? "WHERE" : "AND", kb.tuple, p);
  }
  if (!through.empty()) {
    FERRY_ASSIGN_OR_RETURN(std::string p, KeyParam(table, info, through, "last", &kb));
    kb.where += fmt::format(" {} {} <= {}", kb.where.empty() ? "WHERE" : "AND", kb.tuple, p);
  }
  return kb;
}

Result<PgStore::CellMap> PgStore::MapCells(const TableSchema& table, const TableInfo& info) {
  CellMap m;
  // Cells in the schema's column order, matched by name.
  for (const Column& c : table.columns) {
    auto it = std::find_if(info.cols.begin(), info.cols.end(),
                           [&](const ColInfo& ci) { return ci.name == c.name; });
    if (it == info.cols.end()) {
      return InvalidArgument(fmt::format("table {} has no column {}", table.name, c.name));
    }
    m.cell_cols.push_back(static_cast<size_t>(it - info.cols.begin()));
  }
  for (size_t p : info.pk) {
    auto it = std::find(m.cell_cols.begin(), m.cell_cols.end(), p);
    if (it == m.cell_cols.end()) {
      return InvalidArgument(fmt::format("table {}: key column {} is not in the schema", table.name,
                                         info.cols[p].name));
    }
    m.key_cells.push_back(static_cast<size_t>(it - m.cell_cols.begin()));
  }
  return m;
}

void PgStore::AppendRows(const PGresult* r, const TableInfo& info, const CellMap& map,
                         size_t max_bytes, RowBatch* out) {
  const size_t width = map.cell_cols.size();
  const size_t arity = map.key_cells.size();
  const int nrows = PQntuples(r);
  out->cells.reserve(out->cells.size() + static_cast<size_t>(nrows) * width);
  std::vector<Value> key_values(arity);
  for (int row = 0; row < nrows; ++row) {
    for (size_t c = 0; c < width; ++c) {
      const int col = static_cast<int>(c);
      if (PQgetisnull(r, row, col)) {
        out->cells.emplace_back(Null{});
        continue;
      }
      out->cells.push_back(DecodeCell(info.cols[map.cell_cols[c]].wire, PQgetvalue(r, row, col),
                                      PQgetlength(r, row, col)));
      out->bytes += PayloadBytes(out->cells.back());
    }
    const Value* cells = out->cells.data() + out->cells.size() - width;
    for (size_t k = 0; k < arity; ++k) key_values[k] = cells[map.key_cells[k]];
    out->keys.push_back(EncodeKey(key_values));
    out->bytes += out->keys.back().size();
    if (out->bytes >= max_bytes) break;
  }
}

Result<std::string> PgStore::RangeWhere(const TableSchema& table, const TableInfo& info,
                                        const std::string& qualifier, const KeyRange& range,
                                        std::string_view after,
                                        std::vector<std::optional<std::string>>* params,
                                        std::vector<int>* formats) {
  std::vector<std::string> tup;
  for (size_t p : info.pk) {
    const ColInfo& c = info.cols[p];
    tup.push_back((qualifier.empty() ? "" : qualifier + ".") + PgQuoteIdent(c.name) +
                  (c.needs_c ? " COLLATE \"C\"" : ""));
  }
  const std::string tuple = tup.size() == 1 ? tup[0] : "(" + Join(tup) + ")";
  auto bound = [&](std::string_view encoded, std::string_view what_key) -> Result<std::string> {
    KeyBounds kb;
    kb.params = std::move(*params);
    kb.formats = std::move(*formats);
    Result<std::string> p = KeyParam(table, info, encoded, what_key, &kb);
    *params = std::move(kb.params);
    *formats = std::move(kb.formats);
    return p;
  };

  std::string where;
  const bool exclusive = !after.empty();
  if (exclusive || !range.lo.empty()) {
    FERRY_ASSIGN_OR_RETURN(std::string p, bound(exclusive ? after : std::string_view(range.lo),
                                                exclusive ? "cursor" : "lower"));
    where += fmt::format("{} {} {}", tuple, exclusive ? ">" : ">=", p);
  }
  if (!range.hi.empty()) {
    FERRY_ASSIGN_OR_RETURN(std::string p, bound(range.hi, "upper"));
    where += fmt::format("{}{} < {}", where.empty() ? "" : " AND ", tuple, p);
  }
  return where;
}

Status PgStore::ReadBatch(const TableSchema& table, const KeyRange& range, std::string_view after,
                          size_t max_rows, size_t max_bytes, RowBatch* out) {
  out->Clear();
  out->width = table.width();
  FERRY_RETURN_IF_ERROR(CheckNotMetaTable(table.name));
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
  FERRY_ASSIGN_OR_RETURN(CellMap map, MapCells(table, *info));
  std::vector<std::string> sel;
  for (size_t ci : map.cell_cols) sel.push_back(CellSelect(info->cols[ci]));
  FERRY_ASSIGN_OR_RETURN(KeyBounds kb, Bounds(table, *info, range, after, ""));
  std::vector<std::optional<std::string>>& params = kb.params;
  std::vector<int>& formats = kb.formats;
  size_t limit = max_rows;
  if (info->avg_row_bytes > 0) {
    limit = std::clamp<size_t>(
        static_cast<size_t>(static_cast<double>(max_bytes) / info->avg_row_bytes) + 1, 1, max_rows);
  }
  params.push_back(std::to_string(limit));
  formats.push_back(0);
  const std::string sql = fmt::format("SELECT {} FROM {}{} ORDER BY {} LIMIT ${}::int8", Join(sel),
                                      info->qualified, kb.where, kb.order, params.size());
  FERRY_ASSIGN_OR_RETURN(PgResult r, ExecPrepared(sql, fmt::format("read table {}", table.name),
                                                  params, formats, /*binary=*/true));
  AppendRows(r.get(), *info, map, max_bytes, out);
  if (out->rows() > 0) {
    double avg = static_cast<double>(out->bytes) / static_cast<double>(out->rows());
    info->avg_row_bytes = info->avg_row_bytes > 0 ? (info->avg_row_bytes + avg) / 2 : avg;
  }
  return Status::Ok();
}

Result<std::optional<std::string>> PgStore::KeyAfter(const TableSchema& table,
                                                     const KeyRange& range, std::string_view after,
                                                     uint64_t skip) {
  FERRY_RETURN_IF_ERROR(CheckNotMetaTable(table.name));
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  FERRY_ASSIGN_OR_RETURN(TableInfo * info, Info(table.name));
  if (info->pk.empty()) {
    return InvalidArgument(fmt::format(
        "table {} has no primary key; ferry needs one to read a PostgreSQL table", table.name));
  }
  FERRY_ASSIGN_OR_RETURN(KeyBounds kb, Bounds(table, *info, range, after, ""));
  std::vector<std::string> sel;
  for (size_t p : info->pk) sel.push_back(CellSelect(info->cols[p]));
  kb.params.push_back(std::to_string(skip));
  kb.formats.push_back(0);
  const std::string sql =
      fmt::format("SELECT {} FROM {}{} ORDER BY {} LIMIT 1 OFFSET ${}::int8", Join(sel),
                  info->qualified, kb.where, kb.order, kb.params.size());
  FERRY_ASSIGN_OR_RETURN(PgResult r,
                         ExecPrepared(sql, fmt::format("find a split key in table {}", table.name),
                                      kb.params, kb.formats, /*binary=*/true));
  if (PQntuples(r.get()) == 0) return std::optional<std::string>();
  std::vector<Value> key;
  for (size_t k = 0; k < info->pk.size(); ++k) {
    const int col = static_cast<int>(k);
    if (PQgetisnull(r.get(), 0, col)) {
      key.emplace_back(Null{});
    } else {
      key.push_back(DecodeCell(info->cols[info->pk[k]].wire, PQgetvalue(r.get(), 0, col),
                               PQgetlength(r.get(), 0, col)));
    }
  }
  return std::optional<std::string>(EncodeKey(key));
}

}  // namespace ferry
