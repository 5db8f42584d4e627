#include "coordinator/lease_table.h"

#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <map>

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
  dirty_.clear();
  inserted_.clear();
  const int64_t now = clock_->NowMs();
  for (RangeRecord& r : ranges_) {
    if (r.epoch > last_epoch_) last_epoch_ = r.epoch;  // never reuse a token
    r.progress_ms = now;
    r.granted_ms = now;
    r.rows_at_grant = r.rows;
    r.split_asked_ms = 0;
    r.split_keep = 0;
  }
  RebuildIndexes();
}

void LeaseTable::set_verify(bool on) {
  if (verify_ == on) return;
  verify_ = on;
  verify_pending_.clear();
  for (const RangeRecord& r : ranges_) RefileVerify(r);
}

void LeaseTable::RebuildIndexes() {
  // Key order: tables in the order of their lowest id (the plan's order),
  // then lo (every range of a table has its own lo; "" = the table start).
  std::map<std::string, uint64_t> table_rank;
  for (const RangeRecord& r : ranges_) table_rank.emplace(r.table, r.id);  // ids ascend
  order_.resize(ranges_.size());
  for (size_t i = 0; i < ranges_.size(); ++i) order_[i] = ranges_[i].id;
  std::sort(order_.begin(), order_.end(), [&](uint64_t a, uint64_t b) {
    const RangeRecord& x = ranges_[a - 1];
    const RangeRecord& y = ranges_[b - 1];
    if (x.table != y.table) return table_rank[x.table] < table_rank[y.table];
    return x.lo < y.lo;
  });
  pos_.assign(ranges_.size(), 0);
  for (size_t p = 0; p < order_.size(); ++p) pos_[order_[p] - 1] = p;

  pending_.clear();
  verify_pending_.clear();
  by_deadline_.clear();
  rows_total_ = 0;
  bytes_total_ = 0;
  rejected_total_ = 0;
  estimate_total_ = 0;
  verified_ = 0;
  verify_leased_ = 0;
  repaired_total_ = 0;
  for (auto& c : counts_) c = 0;
  table_begin_.clear();
  table_leased_.clear();
  idle_key_.clear();
  idle_tables_.clear();
  for (size_t p = 0; p < order_.size(); ++p) {
    const RangeRecord& r = ranges_[order_[p] - 1];
    if (table_begin_.empty() || r.table != ranges_[order_[table_begin_.back()] - 1].table) {
      table_begin_.push_back(p);
      table_leased_.push_back(0);
      idle_key_.push_back(SIZE_MAX);
    }
    if (r.state == RangeState::kLeased && !r.verify_lease) table_leased_.back()++;
  }
  table_begin_.push_back(order_.size());  // end of the last table
  for (RangeRecord& r : ranges_) r.split_head = false;
  for (const RangeRecord& r : ranges_) {
    if (r.parent >= 1 && r.parent <= ranges_.size()) ranges_[r.parent - 1].split_head = true;
  }
  for (const RangeRecord& r : ranges_) {
    counts_[static_cast<int>(r.state)]++;
    rows_total_ += r.rows;
    bytes_total_ += r.bytes;
    rejected_total_ += r.rejected;
    estimate_total_ += EstimateOf(r);
    repaired_total_ += r.rows_repaired;
    verified_ += r.verified;
    if (r.state == RangeState::kPending) pending_.insert(Pos(r.id));
    if (r.state == RangeState::kLeased) {
      by_deadline_.emplace(r.deadline_ms, r.id);
      verify_leased_ += r.verify_lease;
    }
    RefileVerify(r);
  }
  for (uint32_t t = 0; t + 1 < table_begin_.size(); ++t) UpdateIdle(t);
  done_prefix_ = 0;
  AdvancePrefix();
}

uint32_t LeaseTable::TableOf(uint64_t id) const {
  return static_cast<uint32_t>(std::upper_bound(table_begin_.begin(), table_begin_.end(), Pos(id)) -
                               table_begin_.begin() - 1);
}

void LeaseTable::UpdateIdle(uint32_t t) {
  if (idle_key_[t] != SIZE_MAX) idle_tables_.erase(idle_key_[t]);
  idle_key_[t] = SIZE_MAX;
  if (table_leased_[t] != 0) return;
  auto it = pending_.lower_bound(table_begin_[t]);
  if (it == pending_.end() || *it >= table_begin_[t + 1]) return;
  idle_key_[t] = *it;
  idle_tables_.insert(*it);
}

void LeaseTable::RefileVerify(const RangeRecord& r) {
  if (verify_ && r.state == RangeState::kDone && !r.verified) {
    verify_pending_.insert(Pos(r.id));
  } else {
    verify_pending_.erase(Pos(r.id));
  }
}

void LeaseTable::SetState(RangeRecord* r, RangeState s) {
  const RangeState was = r->state;
  const bool was_copy_lease = was == RangeState::kLeased && !r->verify_lease;
  estimate_total_ -= EstimateOf(*r);
  counts_[static_cast<int>(r->state)]--;
  if (r->state == RangeState::kPending) pending_.erase(Pos(r->id));
  if (r->state == RangeState::kLeased) {
    by_deadline_.erase({r->deadline_ms, r->id});
    if (r->verify_lease) verify_leased_--;
  }
  if (was == RangeState::kLeased && s != RangeState::kLeased) {
    r->idle_leased_ms += clock_->NowMs() - r->progress_ms;
    r->verify_lease = false;
    r->split_asked_ms = 0;
    r->split_keep = 0;
  }
  r->state = s;
  estimate_total_ += EstimateOf(*r);
  counts_[static_cast<int>(s)]++;
  if (s == RangeState::kPending) pending_.insert(Pos(r->id));
  if (s == RangeState::kLeased) {
    by_deadline_.emplace(r->deadline_ms, r->id);
    if (r->verify_lease) verify_leased_++;
  }
  RefileVerify(*r);
  dirty_.insert(r->id);
  const bool copy_lease = s == RangeState::kLeased && !r->verify_lease;
  const uint32_t t = TableOf(r->id);
  if (was_copy_lease) table_leased_[t]--;
  if (copy_lease) table_leased_[t]++;
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

const RangeRecord* LeaseTable::Grant(const std::string& worker, bool may_verify) {
  const bool verify = may_verify && verify_ && !verify_pending_.empty();
  if (!verify && pending_.empty()) return nullptr;
  const uint64_t id = verify
                          ? AtPos(*verify_pending_.begin())
                          : AtPos(idle_tables_.empty() ? *pending_.begin() : *idle_tables_.begin());
  RangeRecord* r = &ranges_[id - 1];
  r->verify_lease = verify;  // before SetState: it files the lease by kind
  SetState(r, RangeState::kLeased);
  r->owner = worker;
  r->epoch = ++last_epoch_;
  SetDeadline(r, clock_->NowMs() + ttl_ms_);
  r->attempts++;
  r->progress_ms = clock_->NowMs();
  r->granted_ms = clock_->NowMs();
  r->rows_at_grant = r->rows;
  r->split_asked_ms = 0;
  r->split_keep = 0;
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

Status LeaseTable::PastEnd(RangeRecord* r, const Progress& p) {
  if (!r->split_head || r->verify_lease || r->hi.empty() || p.cursor.empty() || p.cursor < r->hi) {
    return Status::Ok();
  }
  // The owner copied past the end its range has had since a split (it
  // missed the split's answer): its lease is fenced, the head resumes from
  // the last cursor inside it.
  const std::string why =
      fmt::format("range {} ends at {} since a split; a cursor at {} is past it", r->id,
                  KeyToString(r->hi), KeyToString(p.cursor));
  r->owner.clear();
  SetDeadline(r, 0);
  SetState(r, RangeState::kPending);
  return LeaseLost(why);
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

void LeaseTable::ApplyVerifyProgress(RangeRecord* r, const Progress& p) {
  if (!p.cursor.empty() && p.cursor != r->verify_cursor) {
    r->verify_cursor.assign(p.cursor);
    r->progress_ms = clock_->NowMs();
    r->idle_leased_ms = 0;
    r->errors_since_progress = 0;
  }
  // The count only grows: a report that lost earlier repairs (a resumed
  // lease whose worker died before reporting them) never takes them back.
  if (p.repaired > r->rows_repaired) {
    repaired_total_ += p.repaired - r->rows_repaired;
    r->rows_repaired = p.repaired;
  }
  dirty_.insert(r->id);
}

Status LeaseTable::Heartbeat(uint64_t range, uint64_t epoch, const std::string& worker,
                             const Progress& p) {
  Status why;
  RangeRecord* r = Owned(range, epoch, worker, &why);
  if (!r) return why;
  FERRY_RETURN_IF_ERROR(PastEnd(r, p));
  if (r->verify_lease) {
    ApplyVerifyProgress(r, p);
  } else {
    ApplyProgress(r, p);
  }
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
  FERRY_RETURN_IF_ERROR(PastEnd(r, p));
  r->last_error.clear();
  if (r->verify_lease) {
    ApplyVerifyProgress(r, p);
    SetDeadline(r, 0);
    EndVerifyLease(r, /*verified=*/true);
    return Status::Ok();
  }
  ApplyProgress(r, p);
  SetDeadline(r, 0);
  SetState(r, RangeState::kDone);
  AdvancePrefix();
  return Status::Ok();
}

void LeaseTable::EndVerifyLease(RangeRecord* r, bool verified) {
  if (verified && !r->verified) verified_++;
  if (!verified && r->verified) verified_--;
  r->verified = verified;
  SetState(r, RangeState::kDone);  // clears verify_lease, refiles
}

Status LeaseTable::Release(uint64_t range, uint64_t epoch, const std::string& worker,
                           const Progress& p) {
  Status why;
  RangeRecord* r = Owned(range, epoch, worker, &why);
  if (!r) return why;
  FERRY_RETURN_IF_ERROR(PastEnd(r, p));
  SetDeadline(r, 0);
  if (r->verify_lease) {
    ApplyVerifyProgress(r, p);
    EndVerifyLease(r, false);
    return Status::Ok();
  }
  ApplyProgress(r, p);
  r->owner.clear();
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
  const bool fail = permanent && r->errors >= max_attempts_;
  if (r->verify_lease && !fail) {
    EndVerifyLease(r, false);
    return Status::Ok();
  }
  SetState(r, fail ? RangeState::kFailed : RangeState::kPending);
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
  if (r->verify_lease) {
    EndVerifyLease(r, false);
  } else {
    SetState(r, RangeState::kPending);
  }
  return Status::Ok();
}

Result<const RangeRecord*> LeaseTable::Split(uint64_t range, uint64_t epoch,
                                             const std::string& worker, std::string_view key,
                                             uint64_t keep_rows) {
  Status why;
  RangeRecord* r = Owned(range, epoch, worker, &why);
  if (!r) return why;
  if (r->verify_lease) {
    return InvalidArgument(fmt::format("range {} is leased for verification, not split", range));
  }
  if (!key.empty() && r->hi == key) {
    // A repeat whose answer was lost: the tail is the range that starts here.
    for (const RangeRecord& t : ranges_) {
      if (t.parent == range && t.lo == key) return &t;
    }
  }
  const std::string_view floor = r->cursor.empty() ? std::string_view(r->lo) : r->cursor;
  if (key.empty() || key <= floor || (!r->hi.empty() && key >= r->hi) || !DecodeKey(key).ok()) {
    return InvalidArgument(fmt::format("range {}: cannot split at {} (cursor {}, end {})", range,
                                       KeyToString(key), KeyToString(r->cursor),
                                       r->hi.empty() ? "(end)" : KeyToString(r->hi)));
  }
  const uint64_t left = r->est_rows > r->rows ? r->est_rows - r->rows : 0;
  const uint64_t keep = std::min(keep_rows, left);
  RangeRecord tail;
  tail.id = ranges_.size() + 1;
  tail.table = r->table;
  tail.lo = std::string(key);
  tail.hi = r->hi;
  tail.est_rows = left - keep;
  tail.parent = range;
  tail.progress_ms = clock_->NowMs();
  tail.granted_ms = tail.progress_ms;
  r->hi = std::string(key);
  r->est_rows = r->rows + keep;
  // Answered: the head may be asked again at once (the policy decides on
  // fresh numbers; the cool-down is for asks that went unanswered).
  r->split_keep = 0;
  r->split_asked_ms = 0;
  dirty_.insert(range);
  ranges_.push_back(std::move(tail));  // invalidates r
  inserted_.push_back(ranges_.size());
  const size_t prefix = done_prefix_;
  RebuildIndexes();
  // The tail lands right after its head, which is leased for copying: at or
  // after the end of the copied prefix, so the prefix's positions are what
  // they were; it never moves back.
  done_prefix_ = std::max(done_prefix_, prefix);
  return &ranges_.back();
}

void LeaseTable::AskSplit(uint64_t id, uint64_t keep_rows) {
  if (id == 0 || id > ranges_.size()) return;
  RangeRecord& r = ranges_[id - 1];
  if (r.state != RangeState::kLeased || r.verify_lease) return;
  r.split_asked_ms = clock_->NowMs();
  r.split_keep = std::max<uint64_t>(1, keep_rows);
  r.split_left = r.est_rows > r.rows ? r.est_rows - r.rows : 0;
}

void LeaseTable::ClearSplitAsk(uint64_t id) {
  if (id >= 1 && id <= ranges_.size()) ranges_[id - 1].split_keep = 0;
}

std::vector<LeaseTable::Expired> LeaseTable::ExpireDue() {
  std::vector<Expired> expired;
  const int64_t now = clock_->NowMs();
  while (!by_deadline_.empty() && by_deadline_.begin()->first <= now) {
    RangeRecord* r = &ranges_[by_deadline_.begin()->second - 1];
    expired.push_back(Expired{r->id, r->owner, r->epoch});
    r->owner.clear();
    if (r->verify_lease) {
      EndVerifyLease(r, false);  // leaves by_deadline_
    } else {
      SetState(r, RangeState::kPending);  // leaves by_deadline_
    }
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
  while (done_prefix_ < order_.size() && Copied(ranges_[order_[done_prefix_] - 1])) {
    ++done_prefix_;
  }
}

std::string LeaseTable::Boundary() const {
  if (done_prefix_ == 0 || done_prefix_ == order_.size()) return "";
  const RangeRecord& last = ranges_[order_[done_prefix_ - 1] - 1];
  if (!last.hi.empty()) return last.table + std::string(1, '\0') + last.hi;
  // The prefix ends a table: everything before the next table is migrated.
  return ranges_[order_[done_prefix_] - 1].table + std::string(1, '\0');
}

bool LeaseTable::Failed() const {
  return counts_[static_cast<int>(RangeState::kFailed)] > 0 && pending_.empty() &&
         by_deadline_.empty() && (!verify_ || verify_pending_.empty());
}

std::vector<uint64_t> LeaseTable::TakeDirty() {
  std::vector<uint64_t> out;
  out.reserve(dirty_.size());
  for (uint64_t id : dirty_) {
    if (std::find(inserted_.begin(), inserted_.end(), id) == inserted_.end()) out.push_back(id);
  }
  dirty_.clear();
  return out;
}

std::vector<uint64_t> LeaseTable::TakeInserted() {
  std::vector<uint64_t> out;
  out.swap(inserted_);
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
