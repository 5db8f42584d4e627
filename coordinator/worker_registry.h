// WorkerRegistry: the workers the coordinator has heard from, and THE rule
// for "live": registered and not gone, not draining, and heard from within
// the lease policy's liveness window. status (workers_live), metrics
// (ferry_workers_live), the workers command, the HTTP endpoint and
// --exit-when-done all use IsLive().
//
// Each change that must survive a restart (register, drain, gone) is queued
// as a WorkerRow for the next state commit (TakeDirty). last_seen_ms moves
// on every message and is persisted only with those changes.
//
// Thread safety: owned by the coordinator's event-loop thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/lease_policy.h"
#include "coordinator/state_store.h"

namespace ferry {

struct WorkerInfo {
  WorkerRow row;  // row.state: active | draining | gone
  uint64_t current_range = 0;
  uint64_t rows = 0;  // rows reported by this worker since it registered
  double rows_per_second = 0;
  int64_t rate_mark_ms = 0;
  uint64_t rate_mark_rows = 0;
  bool told_done = false;  // answered "complete" or "failed" to a lease request
  uint32_t features = 0;   // kFeatureVerify | kFeatureSplit, as its last message said

  bool draining() const { return row.state == "draining"; }
  bool gone() const { return row.state == "gone"; }
};

class WorkerRegistry {
 public:
  WorkerRegistry(const LeasePolicy* policy, const Clock* clock) : policy_(policy), clock_(clock) {}

  // Replaces the registry with the workers of the state (a restart): a
  // worker drained before the restart is still draining.
  void Load(std::vector<WorkerRow> rows);

  // (Re-)registers a worker: active again, last seen now. Queued for commit.
  WorkerInfo& Register(const std::string& id, const std::string& host, int64_t pid,
                       const std::string& version);
  // The worker, marked as heard from now; nullptr if it never registered.
  WorkerInfo* Touch(const std::string& id);
  WorkerInfo* Find(const std::string& id);
  const WorkerInfo* Find(const std::string& id) const;

  // Sets the worker's persisted state (draining, gone) and queues it.
  void SetState(WorkerInfo* w, const char* state);

  bool IsLive(const WorkerInfo& w) const;
  // "active", "draining" or "gone" (not heard from within the liveness
  // window counts as gone), as the workers command shows it.
  const char* StateOf(const WorkerInfo& w) const;
  size_t CountLive() const;
  // True once every live worker was told the migration is complete or failed.
  bool AllLiveToldDone() const;

  // The range each worker holds, from `owner_of` (range id -> owner).
  void SetCurrentRanges(const std::vector<std::pair<uint64_t, std::string>>& leases);
  // Clears `w`'s current range if it is `range`.
  static void Dropped(WorkerInfo* w, uint64_t range) {
    if (w && w->current_range == range) w->current_range = 0;
  }

  // Every 2 s: each worker's rows/s since the previous sample.
  void SampleRates();

  std::vector<WorkerRow> TakeDirty();
  const std::map<std::string, WorkerInfo>& all() const { return workers_; }

 private:
  const LeasePolicy* policy_;
  const Clock* clock_;
  std::map<std::string, WorkerInfo> workers_;
  std::vector<WorkerRow> dirty_;
};

}  // namespace ferry
