// The row sources (worker/verifier.h) of a verify lease on a target of a
// migration spec (spec/target_plan.h): verification compares the legacy rows
// as the spec makes them with the new store's rows, and repairs through the
// same transform.
//
// SpecLegacySource: the range's legacy rows read through the target's
// projection (Store::ReadProjected: select, where) and its Lua function
// (TransformBatch), minus the rows that are not expected in the new store:
// those the function drops (nil), those it fails on, and those
// __ferry_rejects lists for the target (`rejected`: source keys as
// KeyToFullString prints them) — a rejected row is never "repaired" into
// the new store. Rows come with the cells a batch writes (plan.write), so
// that the Repairer writes them as the copy does. Their key is the legacy
// key, which must also be the row's target key (the target's key columns
// carry the legacy key, in order: a select like `id AS account_id`, or a
// Lua function that returns the key it was given); a row whose target key
// differs fails the read with kPermanent naming both — verification
// compares by key and bisects by key ranges, so it needs one key order
// (`ferryctl verify` checks such targets by lookup, without repair).
//
// SpecTargetSource: the range's rows of the new table, each reduced to the
// cells the spec writes (matched by name, exactly then ASCII
// case-insensitively, as the copy matches them); columns the spec does not
// write are not compared.
//
// Both digest by reading and folding (AppendRowBytes in `mode`) the rows
// they return: the two sides of a chunk fold the same cells.
//
// Thread safety: confined to the verify lease's thread, like the stores.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "spec/lua_transform.h"
#include "spec/target_plan.h"
#include "stores/store.h"
#include "worker/verifier.h"

namespace ferry {

class SpecLegacySource final : public RowSource {
 public:
  // `plan`, `source`, `lua` (null without a function) and `rejected` must
  // outlive the source. `range` is in the source table's key space.
  SpecLegacySource(const TargetPlan* plan, Store* source, LuaTransform* lua,
                   const std::set<std::string>* rejected, KeyRange range, DigestMode mode)
      : plan_(plan),
        source_(source),
        lua_(lua),
        rejected_(rejected),
        range_(std::move(range)),
        mode_(mode) {}
  Status Digest(std::string_view after, std::string_view through, size_t max_rows,
                RowsDigest* out) override;
  Status Read(std::string_view after, std::string_view through, size_t max_rows,
              RowBatch* out) override;

 private:
  // The expected rows after `after`: at most max_rows, none past `through`
  // (empty: the range end).
  Status ReadExpected(std::string_view after, std::string_view through, size_t max_rows,
                      RowBatch* out);

  const TargetPlan* plan_;
  Store* source_;
  LuaTransform* lua_;
  const std::set<std::string>* rejected_;
  KeyRange range_;
  DigestMode mode_;
  RowBatch read_, kept_;
  std::vector<size_t> key_cells_;  // the target key among the write cells
};

class SpecTargetSource final : public RowSource {
 public:
  // `have`: the new store's table as it lists it. kPermanent (from Create)
  // when it lacks a column the spec writes.
  static Result<SpecTargetSource> Create(const TargetPlan* plan, Store* target,
                                         const TableSchema* have, KeyRange range, DigestMode mode);
  Status Digest(std::string_view after, std::string_view through, size_t max_rows,
                RowsDigest* out) override;
  Status Read(std::string_view after, std::string_view through, size_t max_rows,
              RowBatch* out) override;

 private:
  SpecTargetSource(Store* target, const TableSchema* have, KeyRange range, DigestMode mode,
                   std::vector<size_t> at)
      : target_(target), have_(have), range_(std::move(range)), mode_(mode), at_(std::move(at)) {}

  Store* target_;
  const TableSchema* have_;
  KeyRange range_;
  DigestMode mode_;
  std::vector<size_t> at_;  // write cell i is have's cell at_[i]
  RowBatch read_;
};

}  // namespace ferry
