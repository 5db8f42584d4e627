// Range planning: splits each selected table of the legacy store into ranges
// of about --range-rows rows, ids 1..n in key order (table name, then key).
// An empty table still gets one range, so every table is created, checked
// and marked done the same way.
//
// Thread safety: pure functions over the given store.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/range_record.h"
#include "stores/store.h"

namespace ferry {

// Filters `all` by a comma-separated list of table names ("" = all).
// kInvalidArgument naming an unknown table, or a selected table that ferry
// cannot copy (TableSchema::unsupported) with the reason.
Result<std::vector<TableSchema>> SelectTables(const std::vector<TableSchema>& all,
                                              const std::string& selection);

// Appends the ranges of `table` to *plan, numbering on from plan->size()+1.
Status PlanTable(Store& source, const TableSchema& table, uint64_t range_rows,
                 std::vector<RangeRecord>* plan);

}  // namespace ferry
