// ApplierLease: the coordinator's record of an online migration's one change
// applier (worker/change_applier.h): who holds the lease, under which epoch,
// until when, and the progress it last reported. In memory only: the
// applier's epoch comes from the range epochs' counter (persisted with the
// job before the grant is sent), and the position it reached is durable in
// the new store (Store::ReadChangePosition), so a restarted coordinator
// grants a new lease with a higher epoch and the new applier resumes from
// the new store's position; a zombie applier is fenced out there.
//
// Thread safety: owned by the coordinator's event-loop thread (LeaseService).
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "coordinator/messages.h"

namespace ferry {

class ApplierLease {
 public:
  // What the applier last reported (kept across leases).
  struct Progress {
    int64_t position = 0;   // durable in the new store
    int64_t caught_up = 0;  // every change committed before it is applied
    uint64_t applied = 0;
    uint64_t pending = 0;
    int64_t oldest_pending_ms = 0;
    int64_t reported_ms = 0;  // when (coordinator clock); 0 = never
    std::string error;        // the last batch's error, empty when it went through
  };

  bool held() const { return !owner_.empty(); }
  const std::string& owner() const { return owner_; }
  uint64_t epoch() const { return epoch_; }
  int64_t deadline_ms() const { return deadline_ms_; }
  const Progress& progress() const { return progress_; }

  void Grant(const std::string& owner, uint64_t epoch, int64_t now_ms, int64_t ttl_ms);
  // kLeaseLost (naming why) unless `ref` is the current lease.
  Status Check(const LeaseRef& ref) const;
  // A report of the current lease: renews it and records its progress
  // (positions never move back).
  void Report(const ApplyReportRequest& r, int64_t now_ms, int64_t ttl_ms);
  void End();
  // True (and the lease ended) if its deadline has passed.
  bool ExpireDue(int64_t now_ms);
  // The progress the new store records, at start.
  void Seed(int64_t position, uint64_t applied);

 private:
  std::string owner_;
  uint64_t epoch_ = 0;
  int64_t deadline_ms_ = 0;
  Progress progress_;
};

}  // namespace ferry
