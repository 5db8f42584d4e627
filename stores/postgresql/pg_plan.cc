// PgStore::PlanSplits: a row-count estimate, then split points from one
// ordered pass over the keys or from an ordered sample of them.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "common/key_codec.h"
#include "stores/postgresql/pg_internal.h"
#include "stores/postgresql/pg_store.h"
#include "stores/sql_text.h"
#include "stores/table_checks.h"

namespace ferry {
namespace {

constexpr uint64_t kExactPlanRows = 100000;  // ordered pass up to this many rows
constexpr uint64_t kSamplesPerRange = 32;

}  // namespace

Result<std::vector<std::string>> PgStore::PlanSplits(const TableSchema& table,
                                                     uint64_t rows_per_range, uint64_t* rows) {
  FERRY_RETURN_IF_ERROR(CheckNotMetaTable(table.name));
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
    keys.push_back(CellSelect(c));
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
        values[k] = DecodeCell(c.wire, v, len);
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

}  // namespace ferry
