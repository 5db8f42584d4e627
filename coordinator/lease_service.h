// LeaseService: the coordinator's decisions, without sockets. It takes typed,
// already decoded worker requests (coordinator/messages.h) and operator
// actions, and returns typed replies; every change it makes is collected for
// the next state commit (TakeCommit). The clock is injected.
//
// The rules it implements (DESIGN.md "Coordinator"):
//   - grants take a new, strictly increasing epoch (LeaseTable);
//   - heartbeat, completion, release and error reports carry a LeaseRef;
//     any mismatch is answered kLeaseLost and changes nothing;
//   - a lease request that finds nothing pending while ranges are leased
//     waits (up to kLeaseWaitMs) instead of polling: RequestLease returns
//     nullopt and AnswerWaiting() answers it the moment a range comes free,
//     the job ends, the worker is drained or the job is paused;
//   - the last completion, the boundary clear and the version bump are one
//     change set (Tick finishes the job in the pass of the last completion);
//   - rows a migration spec rejected are counted per range with its
//     progress; more than max_rejects fails the job, checked before the
//     finish, so the version is never bumped past them.
//   - with --verify (JobMeta::verify) every done range is leased again to a
//     worker that can verify (kFeatureVerify) and the job finishes only once
//     every range is verified; each report listing repaired keys is an event
//     `repair`;
//   - splitting: while workers wait for work, Tick asks the owners of ranges
//     whose projected finish is far behind the rest (split_policy.h) to
//     propose a split (AckReply::split); a heartbeat carrying a proposal is
//     applied (LeaseTable::Split, event `split`) and every ack of a copy
//     lease carries the range's current end, so the owner learns the answer.
//
// The caller (CoordinatorServer) must commit TakeCommit() and only then send
// the replies of the same pass; if the commit fails it calls Restore() with
// what the state holds and drops the replies (workers retry).
//
// Thread safety: owned by the coordinator's event-loop thread.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/lease_policy.h"
#include "common/status.h"
#include "coordinator/applier_lease.h"
#include "coordinator/lease_table.h"
#include "coordinator/messages.h"
#include "coordinator/metrics.h"
#include "coordinator/split_policy.h"
#include "coordinator/state_store.h"
#include "coordinator/worker_registry.h"

namespace ferry {

// What the service tells workers at registration.
struct ServiceSettings {
  std::string source_uri;  // as given (may hold credentials: sent to workers, never logged)
  std::string target_uri;
  uint32_t batch_rows = 10000;
  LeasePolicy policy;
  uint32_t max_attempts = 3;
  // Online mode (DESIGN.md "Online mode"): once every range is done the job
  // is catching_up, not complete; the legacy tables whose changes the
  // applier replays.
  bool online = false;
  std::vector<std::string> online_tables;
  // The migration spec's canonical text, sent to workers at registration;
  // empty without --spec.
  std::string spec_text;
  // More rows rejected than this (the sum over ranges of Progress::rejected)
  // fails the job, before the version bump (--max-rejects).
  uint64_t max_rejects = 0;
  // "table (key): reason" of up to n recorded rejects, for the failure
  // message (reads the new store's __ferry_rejects); may be empty.
  std::function<std::vector<std::string>(size_t n)> sample_rejects;
  uint32_t batch_time_ms = 0;  // --batch-time-ms, sent at registration (0 = off)
  // --force-split-interval-ms (tests): ask every splittable owner to split
  // this often, whether workers wait or not. 0 = the split policy decides.
  int64_t force_split_interval_ms = 0;
  SplitPolicyOptions split;
};

class LeaseService {
 public:
  // How long a lease request may wait for a range to come free before it is
  // answered "no work, ask again": well under a worker's 2 s request timeout.
  static constexpr int64_t kLeaseWaitMs = 1000;
  // How often the split policy looks at the leases while workers wait.
  static constexpr int64_t kSplitCheckMs = 200;

  LeaseService(ServiceSettings settings, const Clock* clock);

  // Replaces everything with a loaded job: its ranges and workers.
  void Load(JobMeta job, std::vector<RangeRecord> ranges, std::vector<WorkerRow> workers);
  // After a failed commit: back to what the state holds (workers are kept;
  // queued events and changes are dropped).
  void Restore(JobMeta job, std::vector<RangeRecord> ranges);

  // ---- worker requests ----
  // The answer to a worker that cannot serve this job (a spec, and a worker
  // that predates specs: it would copy tables as they are), or nullopt.
  std::optional<ErrorReply> RefuseWorker(const RegisterRequest& r) const;
  RegisteredReply Register(const RegisterRequest& r);
  // A grant, NoWork, or (may_wait, nothing pending while ranges are leased)
  // nullopt: the request waits and AnswerWaiting() answers it.
  std::optional<Reply> RequestLease(uint64_t request_id, const LeaseRequest& r, bool may_wait);
  // Heartbeat / completion / release. A completion with `next` is answered
  // like a lease request (and may wait the same way).
  std::optional<Reply> Report(uint64_t request_id, const ProgressReport& r, bool may_wait);
  Reply ReportError(const ErrorReport& r);

  struct Answer {
    std::string worker;
    uint64_t request_id = 0;
    Reply reply;
  };
  // Answers the waiting lease requests that now have an answer.
  std::vector<Answer> AnswerWaiting();
  size_t waiting() const { return waiting_.size(); }

  // Expires due leases, then finishes or fails the job or advances the
  // boundary. Once per loop pass, before the commit.
  void Tick();

  // ---- operator actions (status socket) ----
  // Each records an event; false / an error if nothing changed.
  bool SetPaused(bool paused);
  void SetThrottle(uint64_t rows_per_second);  // 0 = off
  Status Drain(const std::string& worker);
  // The fenced epoch of the revoked lease.
  Result<uint64_t> Revoke(uint64_t range);
  // Failed ranges back to pending (--retry-failed); a failed job copies again.
  size_t RetryFailed();

  // Marks the job's new-store marker as written (version mirrored).
  void MarkMirrored();

  // ---- online mode (coordinator/online_phase.h drives the cut-over) ----
  // In catching_up / cutting_over a lease request is answered with the
  // change applier's lease (ApplyGrantReply) when nobody holds it, else
  // NoWork. The applier's reports renew it and record its progress.
  std::optional<Reply> ApplyReport(const ApplyReportRequest& r);
  const ApplierLease& applier() const { return applier_; }
  // The new store's recorded change position, at start.
  void SeedApplier(int64_t position, uint64_t applied) { applier_.Seed(position, applied); }
  // catching_up -> cutting_over (an event names `detail`); kFailedPrecondition
  // naming the state otherwise.
  Status BeginCutover(const std::string& detail);
  // cutting_over -> catching_up, with `why` as last_error and an event.
  void CutoverFailed(const std::string& why);
  // cutting_over -> complete: the version bump (one change set with the
  // boundary clear, like the last completion of an offline job). Capture
  // removal follows (finishing()).
  void FinishOnline(const std::string& detail);
  // The freeze point the applier must reach (Ack.drainTo); 0 = none.
  void SetDrainTo(int64_t position) { drain_to_ = position; }
  // Complete, but the capture is not removed yet: workers are not told the
  // migration is complete (they would exit before it is).
  void SetFinishing(bool finishing) { finishing_ = finishing; }
  bool finishing() const { return finishing_; }
  // Records an operator-visible event (logged, committed with the pass).
  void Note(Event e) { Record(std::move(e)); }
  // The job's last error shown in status (cut-over failures included).
  void SetLastError(const std::string& e) { last_range_error_ = e; }

  // ---- the change set ----
  // Everything changed since the last call (empty() if nothing), pointing
  // into this service: valid until its next mutation. The job row is part
  // of every non-empty change set.
  StateCommit TakeCommit();

  // ---- views ----
  const LeaseTable& table() const { return table_; }
  const JobMeta& job() const { return job_; }
  const WorkerRegistry& workers() const { return workers_; }
  const LeaseMetrics& metrics() const { return metrics_; }
  const ServiceSettings& settings() const { return settings_; }
  const std::string& last_range_error() const { return last_range_error_; }
  bool complete() const { return job_.phase == JobPhase::kComplete; }
  bool failed() const { return job_.phase == JobPhase::kFailed; }
  // The rows/s of the whole job over the last 10 s (0 until known).
  double RowsPerSecond() const;
  // Samples throughput (every 500 ms at most) and the workers' rates.
  void SampleRates();
  // A worker's share of the fleet-wide throttle (rows/s; 0 = none).
  uint64_t ThrottleShare() const;

 private:
  struct Waiting {
    uint64_t request_id = 0;
    int64_t deadline_ms = 0;
    uint32_t features = 0;
  };

  // The answer to a lease request (or a completion asking for the next).
  std::optional<Reply> LeaseReply(uint64_t request_id, const std::string& id, WorkerInfo* w,
                                  bool may_wait, uint32_t features);
  // A split proposal in a heartbeat of (range, epoch, worker).
  void ApplySplitProposal(const ProgressReport& r);
  // Records the keys a verify lease's report says it repaired.
  void RecordRepairs(const ProgressReport& r);
  // Split asks: while workers wait (or forced), per split_policy.h.
  void MaybeAskSplits();
  NoWorkReply NoWork(const WorkerInfo& w, uint32_t retry_ms) const;
  GrantReply Grant(const RangeRecord& r) const;
  AckReply Ack(uint64_t range, uint64_t epoch, const WorkerInfo* w) const;
  void MaybeFinish();
  void RebuildWorkerLeases();
  // Logs `e` and queues it for the state's event log (committed with the
  // pass). Operator-visible events only: plan, register, release, expire,
  // range_error/range_failed, finalize, failed and operator actions.
  void Record(Event e);
  // Routine per-range events (grant, complete) are logged (info) but not
  // written to the state: the range row holds the latest owner, epoch and
  // counters, and a row per message would double the state writes.
  void LogRoutine(const char* kind, uint64_t range, uint64_t epoch, const std::string& worker,
                  const std::string& detail) const;

  ServiceSettings settings_;
  const Clock* clock_;
  LeaseTable table_;
  JobMeta job_;
  bool job_dirty_ = false;
  WorkerRegistry workers_;
  std::vector<Event> events_;
  std::map<std::string, Waiting> waiting_;  // one per worker: a resent request replaces it
  std::string last_range_error_;            // "range N (table): cause", for status
  std::deque<std::pair<int64_t, uint64_t>> rate_samples_;  // (ms, rows copied)
  LeaseMetrics metrics_;
  int64_t next_split_check_ms_ = 0;
  ApplierLease applier_;
  int64_t drain_to_ = 0;
  bool finishing_ = false;
};

}  // namespace ferry
