#include "coordinator/lease_table.h"

#include <fmt/format.h>

#include <algorithm>
#include <climits>

#include "common/key_codec.h"

namespace ferry {

const char* RangeStateName(RangeState s) {
  switch (s) {
    case RangeState::kPending:
      return "pending";
    case RangeState::kLeased:
      return "leased";
    case RangeState::kDone:
      return "done";
    case RangeState::kFailed:
      return "failed";
  }
  return "unknown";
}

std::optional<RangeState> ParseRangeState(const std::string& s) {
  for (RangeState st :
       {RangeState::kPending, RangeState::kLeased, RangeState::kDone, RangeState::kFailed}) {
    if (s == RangeStateName(st)) return st;
  }
  return std::nullopt;
}

namespace {

// A range's share of LeaseTable::rows_estimated().
uint64_t EstimateOf(const RangeRecord& r) {
  return r.state == RangeState::kDone ? r.rows : std::max(r.est_rows, r.rows);
}

}  // namespace

LeaseTable::LeaseTable(const Clock* clock, int64_t ttl_ms, uint32_t max_attempts)
    : clock_(clock), ttl_ms_(ttl_ms), max_attempts_(max_attempts) {}

void LeaseTable::Load(std::vector<RangeRecord> ranges, uint64_t last_epoch) {
  ranges_ = std::move(ranges);
  last_epoch_ = last_epoch;
  pending_.clear();
  by_deadline_.clear();
  dirty_.clear();
  rows_total_ = 0;
  bytes_total_ = 0;
  rejected_total_ = 0;
  estimate_total_ = 0;
  for (auto& c : counts_) c = 0;
  int64_t now = clock_->NowMs();
  // Tables: each one's ranges are a contiguous block of ids (key order).
  table_begin_.clear();
  table_leased_.clear();
  idle_key_.clear();
  idle_tables_.clear();
  for (RangeRecord& r : ranges_) {
    if (table_begin_.empty() || r.table != ranges_[table_begin_.back() - 1].table) {
      table_begin_.push_back(r.id);
      table_leased_.push_back(0);
      idle_key_.push_back(0);
    }
    if (r.state == RangeState::kLeased) table_leased_.back()++;
  }
  table_begin_.push_back(ranges_.size() + 1);  // end of the last table
  for (RangeRecord& r : ranges_) {
    counts_[static_cast<int>(r.state)]++;
    rows_total_ += r.rows;
    bytes_total_ += r.bytes;
    rejected_total_ += r.rejected;
    estimate_total_ += EstimateOf(r);
    if (r.state == RangeState::kPending) pending_.insert(r.id);
    if (r.state == RangeState::kLeased) by_deadline_.emplace(r.deadline_ms, r.id);
    if (r.epoch > last_epoch_) last_epoch_ = r.epoch;  // never reuse a token
    r.progress_ms = now;
  }
  for (uint32_t t = 0; t + 1 < table_begin_.size(); ++t) UpdateIdle(t);
  done_prefix_ = 0;
  AdvancePrefix();
}

uint32_t LeaseTable::TableOf(uint64_t id) const {
  return static_cast<uint32_t>(std::upper_bound(table_begin_.begin(), table_begin_.end(), id) -
                               table_begin_.begin() - 1);
}

void LeaseTable::UpdateIdle(uint32_t t) {
  if (idle_key_[t] != 0) idle_tables_.erase(idle_key_[t]);
  idle_key_[t] = 0;
  if (table_leased_[t] != 0) return;
  auto it = pending_.lower_bound(table_begin_[t]);
  if (it == pending_.end() || *it >= table_begin_[t + 1]) return;
  idle_key_[t] = *it;
  idle_tables_.insert(*it);
}

void LeaseTable::SetState(RangeRecord* r, RangeState s) {
  const RangeState was = r->state;
  estimate_total_ -= EstimateOf(*r);
  counts_[static_cast<int>(r->state)]--;
  if (r->state == RangeState::kPending) pending_.erase(r->id);
  if (r->state == RangeState::kLeased) by_deadline_.erase({r->deadline_ms, r->id});
  if (was == RangeState::kLeased && s != RangeState::kLeased) {
    r->idle_leased_ms += clock_->NowMs() - r->progress_ms;
  }
  r->state = s;
  estimate_total_ += EstimateOf(*r);
  counts_[static_cast<int>(s)]++;
  if (s == RangeState::kPending) pending_.insert(r->id);
  if (s == RangeState::kLeased) by_deadline_.emplace(r->deadline_ms, r->id);
  dirty_.insert(r->id);
  const uint32_t t = TableOf(r->id);
  if (was == RangeState::kLeased) table_leased_[t]--;
  if (s == RangeState::kLeased) table_leased_[t]++;
  UpdateIdle(t);
}

void LeaseTable::SetDeadline(RangeRecord* r, int64_t deadline_ms) {
  if (r->deadline_ms == deadline_ms) return;
  if (r->state == RangeState::kLeased) {
    by_deadline_.erase({r->deadline_ms, r->id});
    by_deadline_.emplace(deadline_ms, r->id);
  }
  r->deadline_ms = deadline_ms;
}

const RangeRecord* LeaseTable::Grant(const std::string& worker) {
  if (pending_.empty()) return nullptr;
  const uint64_t id = idle_tables_.empty() ? *pending_.begin() : *idle_tables_.begin();
  RangeRecord* r = &ranges_[id - 1];
  SetState(r, RangeState::kLeased);
  r->owner = worker;
  r->epoch = ++last_epoch_;
  SetDeadline(r, clock_->NowMs() + ttl_ms_);
  r->attempts++;
  r->progress_ms = clock_->NowMs();
  return r;
}

RangeRecord* LeaseTable::Owned(uint64_t range, uint64_t epoch, const std::string& worker,
                               Status* why) {
  if (range == 0 || range > ranges_.size()) {
    *why = LeaseLost(fmt::format("range {} does not exist", range));
    return nullptr;
  }
  RangeRecord* r = &ranges_[range - 1];
  if (r->state != RangeState::kLeased || r->epoch != epoch || r->owner != worker) {
    *why = LeaseLost(fmt::format("range {} epoch {} is not leased to {} (state {}, epoch {})",
                                 range, epoch, worker, RangeStateName(r->state), r->epoch));
    return nullptr;
  }
  return r;
}

void LeaseTable::ApplyProgress(RangeRecord* r, const Progress& p) {
  if (!p.cursor.empty() && p.cursor != r->cursor) {
    r->cursor.assign(p.cursor);
    r->progress_ms = clock_->NowMs();
    r->idle_leased_ms = 0;
    r->errors_since_progress = 0;
  }
  // Unsigned wrap-around makes a smaller count (a rewind) subtract.
  rows_total_ += p.rows - r->rows;
  bytes_total_ += p.bytes - r->bytes;
  rejected_total_ += p.rejected - r->rejected;
  estimate_total_ -= EstimateOf(*r);
  r->rows = p.rows;
  r->bytes = p.bytes;
  r->rejected = p.rejected;
  estimate_total_ += EstimateOf(*r);
  r->digest = p.digest;
  dirty_.insert(r->id);
}

Status LeaseTable::Heartbeat(uint64_t range, uint64_t epoch, const std::string& worker,
                             const Progress& p) {
  Status why;
  RangeRecord* r = Owned(range, epoch, worker, &why);
  if (!r) return why;
  ApplyProgress(r, p);
  SetDeadline(r, clock_->NowMs() + ttl_ms_);
  return Status::Ok();
}

Status LeaseTable::Complete(uint64_t range, uint64_t epoch, const std::string& worker,
                            const Progress& p) {
  if (range >= 1 && range <= ranges_.size()) {
    const RangeRecord& r = ranges_[range - 1];
    if (r.state == RangeState::kDone && r.epoch == epoch && r.owner == worker) return Status::Ok();
  }
  Status why;
  RangeRecord* r = Owned(range, epoch, worker, &why);
  if (!r) return why;
  ApplyProgress(r, p);
  SetDeadline(r, 0);
  r->last_error.clear();
  SetState(r, RangeState::kDone);
  AdvancePrefix();
  return Status::Ok();
}

Status LeaseTable::Release(uint64_t range, uint64_t epoch, const std::string& worker,
                           const Progress& p) {
  Status why;
  RangeRecord* r = Owned(range, epoch, worker, &why);
  if (!r) return why;
  ApplyProgress(r, p);
  r->owner.clear();
  SetDeadline(r, 0);
  SetState(r, RangeState::kPending);
  return Status::Ok();
}

Status LeaseTable::ReportError(uint64_t range, uint64_t epoch, const std::string& worker,
                               bool permanent, const std::string& message) {
  Status why;
  RangeRecord* r = Owned(range, epoch, worker, &why);
  if (!r) return why;
  // Only errors the worker classified as permanent count towards failing
  // the range; transient ones (a full disk, a lost connection) put it back.
  if (permanent) r->errors++;
  r->errors_since_progress++;
  r->last_error = message;
  r->owner.clear();
  SetDeadline(r, 0);
  SetState(r, permanent && r->errors >= max_attempts_ ? RangeState::kFailed : RangeState::kPending);
  return Status::Ok();
}

Status LeaseTable::Revoke(uint64_t range) {
  if (range == 0 || range > ranges_.size()) {
    return NotFound(fmt::format("range {} does not exist", range));
  }
  RangeRecord* r = &ranges_[range - 1];
  if (r->state != RangeState::kLeased) {
    return FailedPrecondition(
        fmt::format("range {} is {}, not leased", range, RangeStateName(r->state)));
  }
  r->owner.clear();
  SetDeadline(r, 0);
  SetState(r, RangeState::kPending);
  return Status::Ok();
}

std::vector<LeaseTable::Expired> LeaseTable::ExpireDue() {
  std::vector<Expired> expired;
  const int64_t now = clock_->NowMs();
  while (!by_deadline_.empty() && by_deadline_.begin()->first <= now) {
    RangeRecord* r = &ranges_[by_deadline_.begin()->second - 1];
    expired.push_back(Expired{r->id, r->owner, r->epoch});
    r->owner.clear();
    SetState(r, RangeState::kPending);  // leaves by_deadline_
    SetDeadline(r, 0);
  }
  // No lease runs longer than one TTL from now. A deadline further out means
  // the wall clock stepped back since it was set (an NTP step, a resumed VM):
  // without this, a dead owner's range would wait out the whole step.
  while (!by_deadline_.empty() && by_deadline_.rbegin()->first > now + ttl_ms_) {
    RangeRecord* r = &ranges_[by_deadline_.rbegin()->second - 1];
    SetDeadline(r, now + ttl_ms_);
    dirty_.insert(r->id);
  }
  return expired;
}

size_t LeaseTable::RetryFailed() {
  size_t n = 0;
  for (RangeRecord& r : ranges_) {
    if (r.state != RangeState::kFailed) continue;
    r.errors = 0;
    r.errors_since_progress = 0;
    r.idle_leased_ms = 0;
    SetState(&r, RangeState::kPending);
    ++n;
  }
  return n;
}

int64_t LeaseTable::NextDeadlineMs() const {
  return by_deadline_.empty() ? INT64_MAX : by_deadline_.begin()->first;
}

size_t LeaseTable::CountStalled(int64_t stall_ms) const {
  const int64_t now = clock_->NowMs();
  size_t n = 0;
  for (const auto& [deadline, id] : by_deadline_) {
    if (ranges_[id - 1].StalledForMs(now) >= stall_ms) ++n;
  }
  return n;
}

std::vector<uint64_t> LeaseTable::leased() const {
  std::vector<uint64_t> ids;
  ids.reserve(by_deadline_.size());
  for (const auto& [deadline, id] : by_deadline_) ids.push_back(id);
  return ids;
}

const RangeRecord* LeaseTable::Find(uint64_t id) const {
  if (id == 0 || id > ranges_.size()) return nullptr;
  return &ranges_[id - 1];
}

void LeaseTable::AdvancePrefix() {
  while (done_prefix_ < ranges_.size() && ranges_[done_prefix_].state == RangeState::kDone) {
    ++done_prefix_;
  }
}

std::string LeaseTable::Boundary() const {
  if (done_prefix_ == 0 || AllDone()) return "";
  const RangeRecord& last = ranges_[done_prefix_ - 1];
  if (!last.hi.empty()) return last.table + std::string(1, '\0') + last.hi;
  // The prefix ends a table: everything before the next table is migrated.
  return ranges_[done_prefix_].table + std::string(1, '\0');
}

bool LeaseTable::Failed() const {
  return counts_[static_cast<int>(RangeState::kFailed)] > 0 && pending_.empty() &&
         by_deadline_.empty();
}

std::vector<uint64_t> LeaseTable::TakeDirty() {
  std::vector<uint64_t> out(dirty_.begin(), dirty_.end());
  dirty_.clear();
  return out;
}

std::string BoundaryToString(std::string_view boundary) {
  if (boundary.empty()) return "";
  size_t nul = boundary.find('\0');
  if (nul == std::string_view::npos) return std::string(boundary);
  std::string table(boundary.substr(0, nul));
  std::string_view key = boundary.substr(nul + 1);
  if (key.empty()) return table + ":(start)";
  return table + ":" + KeyToString(key);
}

}  // namespace ferry
