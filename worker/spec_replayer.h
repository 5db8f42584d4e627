// SpecReplayer: the change applier's re-read step (worker/change_applier.h)
// through the job's targets (spec/target_plan.h), so that a replayed change
// lands exactly as a copied row would.
//
// For each target whose legacy table changed:
//   - identity projection, no Lua (every job without a spec): the changed
//     keys are re-read with Store::ReadKeys (a few statements per batch);
//   - otherwise each key is re-read through the target's projection
//     (Store::ReadProjected from the key, one row: the legacy store evaluates
//     select and where) and passed through the target's Lua function;
// a key with a row that survives is upserted, every other key (row gone,
// filtered out by `where`, dropped by the function, or rejected) is deleted
// from the target by its legacy key (spec/replay_plan.h: the target is keyed
// by it). A row the Lua function fails on, or whose target key is not its
// legacy key, is rejected: collected in rejects() for __ferry_rejects (the
// applier records them under its fence before the batch).
//
// Thread safety: confined to the applier's worker thread, like its stores.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "spec/target_plan.h"
#include "worker/change_applier.h"

namespace ferry {

class SpecReplayer : public ChangeReplayer {
 public:
  // `plans` and `source` must outlive the replayer. Creates each target's
  // Lua function (an error if one cannot be created).
  static Result<std::unique_ptr<SpecReplayer>> Create(const std::vector<TargetPlan>* plans,
                                                      Store* source);

  Status Replay(const std::string& table, const std::vector<std::string>& keys,
                std::vector<TableChanges>* out) override;
  std::vector<Reject>* rejects() override { return &rejects_; }

 private:
  struct Target {
    const TargetPlan* plan = nullptr;
    std::unique_ptr<LuaTransform> lua;
  };
  SpecReplayer(Store* source) : source_(source) {}
  Status ReadProjectedKeys(const TargetPlan& p, const std::vector<std::string>& keys,
                           RowBatch* out);

  Store* source_;
  std::multimap<std::string, Target> by_source_;  // legacy table -> its targets
  std::vector<Reject> rejects_;
  RowBatch one_, read_;
};

}  // namespace ferry
