#include "coordinator/planner.h"

#include <fmt/format.h>

#include <set>
#include <sstream>

namespace ferry {

Result<std::vector<TableSchema>> SelectTables(const std::vector<TableSchema>& all,
                                              const std::string& selection) {
  auto check = [](std::vector<TableSchema> tables) -> Result<std::vector<TableSchema>> {
    for (const TableSchema& t : tables) {
      if (!t.unsupported.empty()) {
        return InvalidArgument(fmt::format(
            "table {} {} (leave it out of the tables to move: list the others with --tables)",
            t.name, t.unsupported));
      }
    }
    return tables;
  };
  if (selection.empty()) return check(all);
  std::set<std::string> wanted;
  std::stringstream ss(selection);
  std::string name;
  while (std::getline(ss, name, ',')) {
    if (!name.empty()) wanted.insert(name);
  }
  std::vector<TableSchema> out;
  for (const TableSchema& t : all) {
    if (wanted.erase(t.name)) out.push_back(t);
  }
  if (!wanted.empty()) {
    return InvalidArgument(
        fmt::format("--tables names '{}', which the legacy store does not have", *wanted.begin()));
  }
  return check(std::move(out));
}

Status PlanTable(Store& source, const TableSchema& table, uint64_t range_rows,
                 std::vector<RangeRecord>* plan) {
  uint64_t rows = 0;
  FERRY_ASSIGN_OR_RETURN(std::vector<std::string> splits,
                         source.PlanSplits(table, range_rows, &rows));
  const size_t n = splits.size() + 1;
  for (size_t i = 0; i < n; ++i) {
    RangeRecord r;
    r.id = plan->size() + 1;
    r.table = table.name;
    r.lo = i == 0 ? std::string() : splits[i - 1];
    r.hi = i + 1 == n ? std::string() : splits[i];
    r.est_rows = i + 1 == n ? rows - std::min<uint64_t>(rows, range_rows * (n - 1)) : range_rows;
    plan->push_back(std::move(r));
  }
  return Status::Ok();
}

}  // namespace ferry
