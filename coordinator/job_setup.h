// Start-up of a coordinator: from flags to a job ready to serve.
//
// OpenJob validates the flags, opens the legacy store, reads the versions
// without creating anything in the new store, and then either
//   - says the new store is already at --to-version (already_done), or
//   - loads the state's job, refusing flags that differ from it (naming the
//     difference), or
//   - plans a new job (planner.h) and writes it with CreateJob.
// In the last two cases the target schema is created and the plan recorded
// in the new store before it returns: migrations before lifecycle, no range
// is leased before its table exists. Every bad-input error surfaces here, as
// one line, before any socket is bound.
//
// Thread safety: call on the thread that will own the result.
#pragma once

#include <memory>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "coordinator/lease_service.h"
#include "coordinator/options.h"
#include "coordinator/state_store.h"
#include "spec/target_plan.h"
#include "stores/change_capture.h"
#include "stores/store.h"

namespace ferry {

struct OpenedJob {
  bool already_done = false;  // nothing to do; the fields below are empty
  bool resumed = false;       // loaded from the state (else planned now)
  std::unique_ptr<Store> source;
  std::unique_ptr<Store> target;
  // What fills each table of the new store (spec/target_plan.h), by target
  // name: with --spec its entries, else each selected legacy table.
  std::vector<TargetPlan> targets;
  JobMeta job;
  std::vector<RangeRecord> ranges;
  std::vector<WorkerRow> workers;
  // --online: the coordinator's connection to the legacy store's change
  // capture, installed (new job) or found (resumed job) before planning.
  std::unique_ptr<ChangeCapture> capture;
};

// The flags that must not change while a job runs. kInvalidArgument naming
// the difference between `opt` and the job the state holds (for the spec:
// its first difference, SpecDifference).
Status ValidateFlags(const CoordinatorOptions& opt);
Status CheckJobMatches(const CoordinatorOptions& opt, const JobMeta& stored);

// With a spec: opens the legacy store read-only and resolves every target
// (ResolveTargets: the select and where prepared by the legacy store, each
// create parsed by the new store's engine in memory or in a rolled-back
// transaction), so a spec that does not fit the stores is refused — one
// line naming the spec file and the entry — before anything is created:
// no state file, no lock, no new store. Ok without a spec.
Status CheckSpecAgainstStores(const CoordinatorOptions& opt);

// The targets of `opt` over the open legacy store `source`: the spec's, or
// the legacy tables --tables selects (`tables`: the selection to apply).
Result<std::vector<TargetPlan>> ResolveJobTargets(const CoordinatorOptions& opt, Store& source,
                                                  const std::string& tables);

// `state` is open and led by this process (StateStore::TryLead).
// `serve_done`: a job the state holds as complete is opened to be served
// (status `complete`, workers told so) instead of being reported
// already_done — what a standby that takes over after the end does.
Result<OpenedJob> OpenJob(const CoordinatorOptions& opt, StateStore* state,
                          bool serve_done = false);

// What the lease service is told by the flags: store URIs, batch rows and
// time, the lease policy, attempts, split settings (a range is split only
// with at least max(1000, 2 x --batch-rows) rows left).
ServiceSettings ServiceSettingsFor(const CoordinatorOptions& opt, const LeasePolicy& policy);

}  // namespace ferry
