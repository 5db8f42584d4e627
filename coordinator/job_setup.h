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
#include "coordinator/options.h"
#include "coordinator/state_store.h"
#include "stores/change_capture.h"
#include "stores/store.h"

namespace ferry {

struct OpenedJob {
  bool already_done = false;  // nothing to do; the fields below are empty
  bool resumed = false;       // loaded from the state (else planned now)
  std::unique_ptr<Store> source;
  std::unique_ptr<Store> target;
  std::vector<TableSchema> tables;
  JobMeta job;
  std::vector<RangeRecord> ranges;
  std::vector<WorkerRow> workers;
  // --online: the coordinator's connection to the legacy store's change
  // capture, installed (new job) or found (resumed job) before planning.
  std::unique_ptr<ChangeCapture> capture;
};

// The flags that must not change while a job runs. kInvalidArgument naming
// the difference between `opt` and the job the state holds.
Status ValidateFlags(const CoordinatorOptions& opt);
Status CheckJobMatches(const CoordinatorOptions& opt, const JobMeta& stored);

// `state` is open and led by this process (StateStore::TryLead).
// `serve_done`: a job the state holds as complete is opened to be served
// (status `complete`, workers told so) instead of being reported
// already_done — what a standby that takes over after the end does.
Result<OpenedJob> OpenJob(const CoordinatorOptions& opt, StateStore* state,
                          bool serve_done = false);

}  // namespace ferry
