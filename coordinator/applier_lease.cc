#include "coordinator/applier_lease.h"

#include <fmt/format.h>

#include <algorithm>

namespace ferry {

void ApplierLease::Grant(const std::string& owner, uint64_t epoch, int64_t now_ms, int64_t ttl_ms) {
  owner_ = owner;
  epoch_ = epoch;
  deadline_ms_ = now_ms + ttl_ms;
  // A new applier has reported nothing yet: its pending count is unknown.
  progress_.reported_ms = 0;
  progress_.error.clear();
}

Status ApplierLease::Check(const LeaseRef& ref) const {
  if (!held()) {
    return LeaseLost(fmt::format("no change applier lease is held (epoch {} ended)", ref.epoch));
  }
  if (ref.range != 0 || ref.epoch != epoch_ || ref.worker != owner_) {
    return LeaseLost(
        fmt::format("the change applier lease is epoch {} held by {}, not epoch {} "
                    "of {}",
                    epoch_, owner_, ref.epoch, ref.worker));
  }
  return Status::Ok();
}

void ApplierLease::Report(const ApplyReportRequest& r, int64_t now_ms, int64_t ttl_ms) {
  deadline_ms_ = std::max(deadline_ms_, now_ms + ttl_ms);
  progress_.position = std::max(progress_.position, r.position);
  progress_.caught_up = std::max(progress_.caught_up, r.caught_up);
  progress_.applied = std::max(progress_.applied, r.applied);
  progress_.pending = r.pending;
  progress_.oldest_pending_ms = r.oldest_pending_ms;
  progress_.reported_ms = now_ms;
  progress_.error = r.error;
}

void ApplierLease::End() {
  owner_.clear();
  deadline_ms_ = 0;
}

bool ApplierLease::ExpireDue(int64_t now_ms) {
  if (!held() || now_ms < deadline_ms_) return false;
  End();
  return true;
}

void ApplierLease::Seed(int64_t position, uint64_t applied) {
  progress_.position = std::max(progress_.position, position);
  progress_.applied = std::max(progress_.applied, applied);
}

}  // namespace ferry
