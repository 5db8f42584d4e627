// Online mode with migration specs (DESIGN.md "Online mode", "Migration
// spec"): what the change capture watches and which targets a change
// replay can keep exact.
//
// Replay re-reads each changed legacy key through the target's projection
// and Lua function and upserts the result, or deletes the key's row from the
// target when the legacy row is gone, filtered out by `where` or dropped by
// the function. A delete knows only the LEGACY key, so the target's key must
// be the legacy key: its key columns carry the legacy key columns as they
// are, in the legacy key's order (checked here, at start, for targets
// without Lua; with Lua a replayed row whose target key differs from its
// legacy key is rejected, worker/spec_replayer.h).
//
// Thread safety: pure functions.
#pragma once

#include <vector>

#include "common/status.h"
#include "spec/target_plan.h"

namespace ferry {

// The distinct legacy tables the targets read, in the targets' order: what
// the change capture is installed on.
std::vector<TableSchema> CapturedTables(const std::vector<TargetPlan>& targets);

// kInvalidArgument naming the target when a change replay cannot keep it
// exact (see the file comment); Ok for every target without a spec.
Status CheckReplayable(const TargetPlan& plan);

// The target key (encoded like the legacy key, key_codec.h) of a row of
// `plan.write` cells; for a target keyed by rowid, its first cell.
std::string TargetKeyOf(const TargetPlan& plan, const Value* row);

}  // namespace ferry
