// PgStore::DigestRows: a verification chunk's digest straight from the
// binary result (the same bytes Store::DigestRows folds from Values).
#include <fmt/format.h>

#include <cstring>

#include "common/digest.h"
#include "common/key_codec.h"
#include "stores/postgresql/pg_internal.h"
#include "stores/postgresql/pg_store.h"
#include "stores/row_compare.h"
#include "stores/sql_text.h"
#include "stores/table_checks.h"

namespace ferry {

using pg_wire::ReadBe;

namespace {

int64_t WireInt(const char* v, int len) {
  return len == 2   ? static_cast<int16_t>(ReadBe(v, 2))
         : len == 4 ? static_cast<int32_t>(ReadBe(v, 4))
                    : static_cast<int64_t>(ReadBe(v, 8));
}

double WireFloat(const char* v, int len) {
  if (len == 4) {
    const uint32_t bits = static_cast<uint32_t>(ReadBe(v, 4));
    float f;
    std::memcpy(&f, &bits, 4);
    return static_cast<double>(f);
  }
  const uint64_t bits = ReadBe(v, 8);
  double d;
  std::memcpy(&d, &bits, 8);
  return d;
}

}  // namespace

Status PgStore::DigestRows(const TableSchema& table, const KeyRange& range, std::string_view after,
                           std::string_view through, size_t max_rows, DigestMode mode,
                           RowsDigest* out) {
  *out = RowsDigest{};
  FERRY_RETURN_IF_ERROR(CheckNotMetaTable(table.name));
  if (max_rows == 0) return Status::Ok();
  FERRY_RETURN_IF_ERROR(EnsureConnected());
  FERRY_ASSIGN_OR_RETURN(TableInfo * info, Info(table.name));
  if (info->pk.empty() || table.rowid_key()) {
    return InvalidArgument(fmt::format(
        "table {} has no primary key; ferry needs one to read a PostgreSQL table", table.name));
  }
  FERRY_ASSIGN_OR_RETURN(CellMap map, MapCells(table, *info));
  FERRY_ASSIGN_OR_RETURN(KeyBounds kb, Bounds(table, *info, range, after, through));
  std::vector<std::string> sel;
  std::vector<Wire> wires;
  for (size_t ci : map.cell_cols) {
    sel.push_back(CellSelect(info->cols[ci]));
    wires.push_back(info->cols[ci].wire);
  }
  kb.params.push_back(std::to_string(max_rows));
  kb.formats.push_back(0);
  const std::string sql = fmt::format("SELECT {} FROM {}{} ORDER BY {} LIMIT ${}::int8", Join(sel),
                                      info->qualified, kb.where, kb.order, kb.params.size());
  FERRY_ASSIGN_OR_RETURN(PgResult r, ExecPrepared(sql, fmt::format("digest table {}", table.name),
                                                  kb.params, kb.formats, /*binary=*/true));
  const PGresult* res = r.get();
  const int nrows = PQntuples(res);
  const int width = static_cast<int>(wires.size());
  std::string row;
  for (int i = 0; i < nrows; ++i) {
    row.clear();
    for (size_t k : map.key_cells) {
      const int col = static_cast<int>(k);
      if (PQgetisnull(res, i, col)) {
        AppendKeyNull(&row);
        continue;
      }
      const char* v = PQgetvalue(res, i, col);
      const int len = PQgetlength(res, i, col);
      switch (wires[k]) {
        case Wire::kInt:
        case Wire::kBool:
          AppendKeyInt(WireInt(v, len), &row);
          break;
        case Wire::kFloat:
          AppendKeyReal(WireFloat(v, len), &row);
          break;
        case Wire::kBytes:
          AppendKeyBlob(std::string_view(v, static_cast<size_t>(len)), &row);
          break;
        case Wire::kText:
          AppendKeyText(std::string_view(v, static_cast<size_t>(len)), &row);
          break;
      }
    }
    const size_t key_len = row.size();
    for (int c = 0; c < width; ++c) {
      if (PQgetisnull(res, i, c)) {
        if (mode == DigestMode::kExact) {
          AppendExactNull(&row);
        } else {
          row.push_back('n');
        }
        continue;
      }
      const char* v = PQgetvalue(res, i, c);
      const std::string_view bytes(v, static_cast<size_t>(PQgetlength(res, i, c)));
      const int len = static_cast<int>(bytes.size());
      switch (wires[static_cast<size_t>(c)]) {
        case Wire::kInt:
        case Wire::kBool:
          if (mode == DigestMode::kExact) {
            AppendExactInt(WireInt(v, len), &row);
          } else {
            AppendValueInt(WireInt(v, len), &row);
          }
          break;
        case Wire::kFloat:
          if (mode == DigestMode::kExact) {
            AppendExactReal(WireFloat(v, len), &row);
          } else {
            AppendValueReal(WireFloat(v, len), &row);
          }
          break;
        case Wire::kBytes:
        case Wire::kText:
          if (mode == DigestMode::kExact) {
            AppendExactBytes(wires[static_cast<size_t>(c)] == Wire::kBytes ? 'b' : 't', bytes,
                             &row);
          } else {
            AppendValueBytes(bytes, &row);
          }
          break;
      }
    }
    out->digest = FoldRowBytes(out->digest, row);
    out->rows++;
    out->last_key.assign(row, 0, key_len);
  }
  return Status::Ok();
}

}  // namespace ferry
