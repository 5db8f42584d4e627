// OnlinePhase: the coordinator's part of an online migration (DESIGN.md
// "Online mode", README "Online migrations") once the job is open: the
// backlog probe for status, the cut-over, and the capture's removal. The
// capture itself is installed by job_setup (before planning); the applier's
// lease lives in LeaseService.
//
// Cut-over (`cutover [SECONDS]`, or --auto-cutover), driven one step per
// loop pass, never blocking the loop for more than a short lock wait:
//   1. requested: catching_up -> cutting_over (committed with the pass);
//   2. gate: wait until an applier holds the lease, reported within the
//      last 3 s without error, and its oldest unapplied change is at most
//      --cutover-max-lag old;
//   3. freeze: ChangeCapture::Freeze (SQLite BEGIN IMMEDIATE, PostgreSQL
//      LOCK TABLE ... IN EXCLUSIVE MODE) with a 20 ms wait, retried each
//      pass; the freeze point (last change position) goes to the applier in
//      its Acks (drainTo);
//   4. drain: once the applier reports caught_up >= the freeze point, IN THE
//      FREEZING TRANSACTION the guard is installed and the capture triggers
//      dropped, and it commits (CommitGuard) — the legacy store now refuses
//      writes to the migrated tables, naming the new store;
//   5. bump: LeaseService::FinishOnline (phase complete, version, boundary
//      cleared), committed by this pass, then mirrored to the new store;
//   6. removal: the capture (SQLite change table, PostgreSQL slot) is
//      dropped; only then is the job reported complete and workers told.
// Any failure in 2-4 (the request's timeout, --cutover-max-freeze exceeded
// while frozen, the applier lost, a lost connection) rolls the freezing
// transaction back (writes flow again, capture intact) and returns to
// catching_up with the reason as last_error and an event. The guard is
// committed before the version bump, never after: a coordinator that dies
// between the two finds the guard installed on restart (phase cutting_over)
// and completes the bump; one that dies before the guard commit lost its
// freeze with its connection and starts the cut-over again.
//
// Thread safety: owned by the coordinator's event-loop thread.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "common/clock.h"
#include "coordinator/job_setup.h"
#include "coordinator/lease_service.h"
#include "coordinator/options.h"
#include "stores/change_capture.h"

namespace ferry {

struct OnlineSettings {
  bool auto_cutover = false;
  int64_t max_lag_ms = 1000;     // --cutover-max-lag: freeze only when the backlog is younger
  int64_t max_freeze_ms = 5000;  // --cutover-max-freeze: longest writes may stay frozen
  // A cut-over resumed after a restart (its request's timeout is not
  // persisted) gives up after this.
  int64_t resumed_timeout_ms = 300000;
  std::string target;  // the new store, redacted: named by the guard's error
};

class OnlinePhase {
 public:
  OnlinePhase(std::unique_ptr<ChangeCapture> capture, LeaseService* service, const Clock* clock,
              OnlineSettings settings);
  ~OnlinePhase();

  // Once the job is open: the new store's change position, and what the
  // loaded phase needs (a cut-over to finish or resume, a capture to remove).
  void Start(const ChangePosition& recorded);
  // One step, each loop pass before the state commit.
  void Step();

  // The status command `cutover [SECONDS]`: JSON, at once.
  std::string Cutover(const std::string& arg);
  // Adds the online fields to `status` and to `metrics`.
  void AddStatus(nlohmann::json* status) const;
  void AddMetrics(std::string* out) const;

 private:
  enum class Cut { kIdle, kWaitLag, kFrozen, kRemoving, kDone };

  void DriveCutover(int64_t now);
  void Abort(const std::string& why, bool timed_out);
  void RemoveCapture(int64_t now);
  void MaybeProbe(int64_t now);
  bool GateOpen(int64_t now, std::string* why) const;
  // Pending changes and the oldest one's commit time, from the applier's
  // fresh report or else the last probe.
  void CurrentBacklog(int64_t now, uint64_t* pending, int64_t* oldest_ms) const;

  std::unique_ptr<ChangeCapture> capture_;
  LeaseService* service_;
  const Clock* clock_;
  OnlineSettings settings_;
  Cut cut_ = Cut::kIdle;
  int64_t probe_every_ms_ = 1000;
  int64_t next_probe_ms_ = 0;
  Backlog probe_;
  int64_t next_auto_ms_ = 0;
  int64_t next_remove_ms_ = 0;
  int remove_attempts_ = 0;
  // The current or last cut-over.
  uint64_t attempt_ = 0;
  int64_t deadline_ms_ = 0;  // 0 = none
  int64_t freeze_start_mono_ = 0;
  int64_t freeze_point_ = 0;
  int64_t last_freeze_ms_ = -1;  // of the completed cut-over; -1 = none
  std::string result_ = "none";  // none | running | complete | failed | timed_out
  std::string error_;
  uint64_t completed_ = 0, failed_ = 0, timed_out_ = 0;
};

// The OnlinePhase of an opened --online job (job->capture, installed by
// OpenJob), started from the change position `target` records.
std::unique_ptr<OnlinePhase> OpenOnlinePhase(const CoordinatorOptions& opt, OpenedJob* job,
                                             LeaseService* service, Store* target,
                                             const Clock* clock);

}  // namespace ferry
