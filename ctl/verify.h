// Offline verification of a migration (`ferryctl verify`): for every done
// range of a coordinator's state file, reads the range from the legacy store
// and from the new store, both in key order, and compares them row for row —
// key and every cell, storage class included (between SQLite and PostgreSQL:
// value included, see SameValueAcrossEngines) — and the legacy rows against
// the digest (and row count) the worker reported when it copied them.
//
// A job with a migration spec (its canonical text is in the state) is
// compared as the spec says: each range's legacy rows read through the
// target's select and where, transformed by its Lua function (the same
// spec/target_plan.h resolution the workers use), without the rows the new
// store's __ferry_rejects lists (expected absent; a row the function fails
// on must be listed there), against the new store's rows of the target,
// matched by the target key; columns the spec does not write are not
// compared; a value the target column converted (an affinity, a type) is
// compared by value.
//
// It never writes: both stores are opened read-only (StoreRole::kSource) and
// the state file with SQLITE_OPEN_READONLY, so it may run beside a live
// coordinator (ranges not done yet are counted as skipped, not read).
//
// What a difference means: a row missing from or extra in the new store, or
// a cell that differs, is a difference between the stores now; a legacy
// digest that no longer matches the recorded one means the legacy rows
// changed after they were copied (the legacy store was written to during the
// migration).
//
// Thread confinement: one call runs on the caller's thread with its own
// connections.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"

namespace ferry {

struct VerifyOptions {
  std::string state_path;  // the coordinator's --state file
  std::string source_uri;  // empty: the job's own legacy store URI
  std::string target_uri;  // empty: the job's own new store URI
  size_t batch_rows = 10000;
  size_t max_differences = 20;  // described in full; the rest only counted
};

struct VerifyReport {
  uint64_t ranges_total = 0;
  uint64_t ranges_checked = 0;  // done ranges compared
  uint64_t ranges_skipped = 0;  // not done yet (pending, leased, failed)
  uint64_t ranges_differing = 0;
  uint64_t rows_checked = 0;  // legacy rows read
  // Cells equal in value whose storage class the SQLite <-> PostgreSQL type
  // mapping changed (an integer in a bytea column, a real in numeric): not
  // differences; counted so the report can say so.
  uint64_t cells_converted = 0;
  // Ranges of a migration spec's target whose expected rows have keys
  // outside the range's legacy keys (a Lua function computing other keys):
  // looked up row by row, without a search for extra rows.
  uint64_t ranges_looked_up = 0;
  uint64_t differences = 0;            // rows missing/extra/differing, digest mismatches
  std::vector<std::string> described;  // the first max_differences, one line each
  std::string source;                  // URIs as compared, credentials redacted
  std::string target;
  bool equal() const { return differences == 0; }
};

// Compares the stores range by range. Fails (and compares nothing further)
// only when a store or the state file cannot be read; differences are
// reported in the VerifyReport, not as an error. `progress`, if set, is
// called after each range with (ranges checked or skipped, ranges total).
Result<VerifyReport> VerifyMigration(const VerifyOptions& opt,
                                     const std::function<void(uint64_t, uint64_t)>& progress = {});

// The report as `ferryctl verify` prints it: one line per described
// difference, a note on converted cells, then one summary line.
std::string RenderVerifyReport(const VerifyReport& report);
// The same for --json.
nlohmann::json VerifyReportJson(const VerifyReport& report);

}  // namespace ferry
