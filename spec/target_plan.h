// Target plans: how each table of the new store is filled, resolved against
// the stores (DESIGN.md "Migration spec"). The coordinator resolves them to
// validate a spec, plan ranges and create the new store's tables; every
// worker resolves them again from the same spec text and the same stores
// to copy; `ferryctl verify` and --dry-run to read transformed rows.
//
// Without a spec, every selected legacy table is its own target: identity
// projection, no Lua, the legacy schema (what ferry did before specs).
//
// With a spec, per [[table]] entry (checked in this order; the first problem
// is refused with kInvalidArgument naming the spec file and the entry, via
// SpecError):
//   - the source table exists in the legacy store and ferry can copy it;
//   - `select` (then `where`) is accepted by the legacy store: prepared, not
//     run (Store::DescribeProjection), e.g. a column that does not exist;
//   - the target schema: `create`, parsed by the new store's engine without
//     creating anything (DescribeCreateTable, store.h), which must declare a
//     primary key; or derived from the projection: a column per result
//     column, with the declared type of the column it carries (computed
//     columns: the type PostgreSQL gives the expression, untyped in SQLite),
//     keyed by the source key columns the select carries (under their own
//     or new names). A select that does not carry every source key column
//     has no derivable key: refused. select = "*" without `create` keeps
//     the legacy schema (a rowid-keyed SQLite table stays one; indexes are
//     kept only when the target has the source's own name);
//   - what a batch writes (`write`): without `lua`, the target columns the
//     select produces, in the select's order (each result column must be a
//     target column, matched by name, exactly then ASCII case-insensitively;
//     the target's key must be among them; target columns it does not
//     produce get their defaults); with `lua`, every target column in order
//     (the function's absent keys are NULL), and the Lua function is bound
//     to the select's columns and these (LuaTransform::Bind).
//
// Thread safety: pure functions over the given stores (each call uses them
// on the caller's thread).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "spec/lua_transform.h"
#include "spec/migration_spec.h"
#include "stores/store.h"

namespace ferry {

struct TargetPlan {
  TableSpec entry;                         // the spec's entry (identity values without a spec)
  TableSchema source;                      // the legacy table, as the legacy store lists it
  Projection projection;                   // entry.select / entry.where
  std::vector<ProjectedColumn> projected;  // the projection's result columns
  TableSchema target;                      // the new table, as CreateSchema makes it
  TableSchema write;                       // what a batch writes (see the file comment)
  std::vector<TargetColumn> lua_output;    // with lua: write's cells, for LuaTransform::Bind
  std::vector<std::string> lua_input;      // with lua: the projected columns' names

  bool has_lua() const { return !entry.lua.empty(); }
  // No spec semantics at all: the legacy table copied as it is.
  bool identity() const {
    return projection.identity() && !has_lua() && target.name == source.name;
  }
};

// Resolves the targets of `spec`, or (spec == nullptr) of `selected`
// (legacy tables already chosen with --tables), against the open legacy
// store `source` (whose listed tables are `source_tables`) and the new
// store at `target_uri` (only its engine is used, to parse `create`; for
// PostgreSQL a read-only connection). Sorted by target name: the plan's
// key order.
Result<std::vector<TargetPlan>> ResolveTargets(const MigrationSpec* spec, Store& source,
                                               const std::vector<TableSchema>& source_tables,
                                               const std::vector<TableSchema>& selected,
                                               const std::string& target_uri);

// A Lua row function for `plan` (has_lua()), bound to its columns.
Result<std::unique_ptr<LuaTransform>> MakeTransform(const TargetPlan& plan);

// The rows of `read` (source keys, projected cells, as ReadProjected reads
// them) as `plan` writes them: without Lua (`lua` null) *kept = read; with
// it, *kept gets the rows the function kept (source keys, write cells) and
// *rejects a Reject for each row it failed on (reason: the Lua error).
// Returns how many rows the function dropped (returned nil).
uint64_t TransformBatch(const TargetPlan& plan, LuaTransform* lua, const RowBatch& read,
                        RowBatch* kept, std::vector<Reject>* rejects);

// `s` as one line of valid UTF-8 without NUL bytes (control characters
// become spaces, invalid bytes '?'), at most 1000 bytes: for
// __ferry_rejects.reason.
std::string RejectReason(std::string_view s);

}  // namespace ferry
