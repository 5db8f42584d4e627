// --dry-run (DESIGN.md "Migration spec"): plans the job and shows what it
// would do, writing nothing anywhere — no state or lock file, no new store
// file or table, nothing in the legacy store (opened read-only). For each
// target, in plan order: the DDL the new store would run, the number of
// ranges, and its first 3 rows in key order as they would be written
// (through the spec's select, where and Lua function; a row the function
// fails on is shown as rejected with its reason).
//
// The new store is only inspected: its version (if it exists) and, for a
// PostgreSQL target, a spec's create parsed in a rolled-back transaction.
//
// Thread safety: one call, on the caller's thread.
#pragma once

#include <ostream>

#include "common/status.h"
#include "coordinator/options.h"

namespace ferry {

// Writes the plan to `out`. Errors as a real start would report them
// (a bad spec, an unreachable store: one line, the usual exit codes).
Status DryRun(const CoordinatorOptions& opt, std::ostream& out);

}  // namespace ferry
