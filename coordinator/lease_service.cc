#include "coordinator/lease_service.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/key_codec.h"
#include "common/logging.h"
#include "common/text_util.h"

namespace ferry {

LeaseService::LeaseService(ServiceSettings settings, const Clock* clock)
    : settings_(std::move(settings)),
      clock_(clock),
      table_(clock, settings_.policy.ttl_ms, settings_.max_attempts),
      workers_(&settings_.policy, clock) {}

void LeaseService::Load(JobMeta job, std::vector<RangeRecord> ranges,
                        std::vector<WorkerRow> workers) {
  workers_.Load(std::move(workers));
  Restore(std::move(job), std::move(ranges));
}

void LeaseService::Restore(JobMeta job, std::vector<RangeRecord> ranges) {
  job_ = std::move(job);
  table_.Load(std::move(ranges), job_.last_epoch);
  table_.set_verify(job_.verify);
  RebuildWorkerLeases();
  events_.clear();
  (void)workers_.TakeDirty();
  job_dirty_ = false;
  // Requests held before the failed commit may have been completions whose
  // effect was just rolled back: answering them now ("your lease again")
  // would send a worker back over a range it believes it completed. Drop
  // them, as a restart does; their workers time out and ask again.
  waiting_.clear();
  // The applier's epoch may not be in the state: it is granted afresh.
  applier_.End();
  drain_to_ = 0;
  finishing_ = settings_.online && job_.phase == JobPhase::kComplete;
}

void LeaseService::RebuildWorkerLeases() {
  std::vector<std::pair<uint64_t, std::string>> leases;
  for (uint64_t id : table_.leased()) leases.emplace_back(id, table_.Find(id)->owner);
  workers_.SetCurrentRanges(leases);
}

std::optional<ErrorReply> LeaseService::RefuseWorker(const RegisterRequest& r) const {
  if (settings_.spec_text.empty() || r.supports_spec) return std::nullopt;
  return ErrorReply{ErrorCode::kVersionMismatch,
                    fmt::format("worker {} (ferry {}) predates migration specs and this job has "
                                "one: run the same ferry version on the workers and the "
                                "coordinator",
                                r.worker, r.version.substr(0, 64))};
}

RegisteredReply LeaseService::Register(const RegisterRequest& r) {
  // A (re)starting worker process holds no lease. Leases still owned by its
  // id (it was restarted with the same --id, or two processes share one)
  // go back to pending, so the next grant takes a new epoch and the old
  // process's writes are fenced — never two processes on one epoch.
  for (uint64_t id : table_.leased()) {
    const RangeRecord* held = table_.Find(id);
    if (held->owner != r.worker) continue;
    const uint64_t epoch = held->epoch;
    if (table_.Revoke(id).ok()) {
      Record(Event{clock_->NowMs(), "release", id, epoch, r.worker,
                   "the worker registered again: its lease is fenced"});
    }
  }
  if (applier_.held() && applier_.owner() == r.worker) {
    Record(Event{clock_->NowMs(), "release", 0, applier_.epoch(), r.worker,
                 "the worker registered again: its change applier lease ends"});
    applier_.End();
  }
  waiting_.erase(r.worker);
  WorkerInfo& w =
      workers_.Register(r.worker, r.host.substr(0, 256), r.pid, r.version.substr(0, 64));
  w.features = r.features;
  Record(Event{clock_->NowMs(), "register", 0, 0, r.worker,
               fmt::format("host={} pid={} version={}", w.row.host, w.row.pid, w.row.version)});
  RegisteredReply out;
  out.source_uri = settings_.source_uri;
  out.target_uri = settings_.target_uri;
  out.batch_rows = settings_.batch_rows;
  out.policy = settings_.policy;
  out.plan_id = job_.plan_id;
  out.to_version = job_.to_version;
  out.spec = settings_.spec_text;
  out.batch_time_ms = settings_.batch_time_ms;
  return out;
}

std::optional<Reply> LeaseService::RequestLease(uint64_t request_id, const LeaseRequest& r,
                                                bool may_wait) {
  metrics_.lease_requests++;
  WorkerInfo* w = workers_.Touch(r.worker);
  if (!w) return Reply(ErrorReply{ErrorCode::kUnknownWorker, "register first"});
  w->features = r.features;
  return LeaseReply(request_id, r.worker, w, may_wait, r.features);
}

std::optional<Reply> LeaseService::Report(uint64_t request_id, const ProgressReport& r,
                                          bool may_wait) {
  const LeaseRef& l = r.lease;
  WorkerInfo* w = workers_.Touch(l.worker);
  if (w) w->features = r.features;
  const RangeRecord* before = table_.Find(l.range);
  const uint64_t rows_before = before ? before->rows : 0;
  const uint64_t rejected_before = before ? before->rejected : 0;
  const bool was_done = before && before->state == RangeState::kDone;
  const bool verify_lease = before && before->state == RangeState::kLeased && before->verify_lease;
  Status s;
  switch (r.kind) {
    case ReportKind::kHeartbeat:
      s = table_.Heartbeat(l.range, l.epoch, l.worker, r.progress);
      break;
    case ReportKind::kComplete:
      s = table_.Complete(l.range, l.epoch, l.worker, r.progress);
      break;
    case ReportKind::kRelease:
      s = table_.Release(l.range, l.epoch, l.worker, r.progress);
      break;
  }
  if (!s.ok()) {
    metrics_.lease_lost++;
    // A late report of an older epoch leaves alone the newer lease of the
    // same range this worker may hold now.
    const RangeRecord* now = table_.Find(l.range);
    if (!now || now->state != RangeState::kLeased || now->owner != l.worker) {
      WorkerRegistry::Dropped(w, l.range);
    }
    LogEvent(spdlog::level::info, "lease_lost",
             {{"range", l.range}, {"epoch", l.epoch}, {"worker", l.worker}, {"why", s.message()}});
    return Reply(ErrorReply{ErrorCode::kLeaseLost, s.message(), l.range, l.epoch});
  }
  if (verify_lease && !was_done) RecordRepairs(r);
  if (!verify_lease && r.progress.rows > rows_before) {
    metrics_.progress_rows.Observe(static_cast<double>(r.progress.rows - rows_before));
    if (w) w->rows += r.progress.rows - rows_before;
  }
  if (!verify_lease && r.progress.rejected > rejected_before) {
    const RangeRecord* range = table_.Find(l.range);
    Record(Event{clock_->NowMs(), "rejected", l.range, l.epoch, l.worker,
                 fmt::format("{} row(s) of {} rejected (range total {}, job total {}; "
                             "--max-rejects {}): see __ferry_rejects in the new store",
                             r.progress.rejected - rejected_before, range ? range->table : "?",
                             r.progress.rejected, table_.rejected_total(), settings_.max_rejects)});
  }
  if (r.kind == ReportKind::kHeartbeat && !r.split_key.empty() && !verify_lease) {
    ApplySplitProposal(r);
  }
  if (r.kind == ReportKind::kComplete) {
    WorkerRegistry::Dropped(w, l.range);
    if (!was_done) {  // else a retry whose answer was lost
      if (verify_lease) {
        metrics_.verify_completions++;
      } else {
        metrics_.completions++;
      }
      if (spdlog::should_log(spdlog::level::info)) {
        LogRoutine(verify_lease ? "verified" : "complete", l.range, l.epoch, l.worker,
                   verify_lease ? fmt::format("repaired={}", r.progress.repaired)
                                : fmt::format("rows={} bytes={} digest={:016x}", r.progress.rows,
                                              r.progress.bytes, r.progress.digest));
      }
    }
    // A retried completion (our answer was lost) finds the range done under
    // the same epoch and gets the same next lease again.
    if (w && r.next) return LeaseReply(request_id, l.worker, w, may_wait, r.features);
  } else if (r.kind == ReportKind::kRelease) {
    WorkerRegistry::Dropped(w, l.range);
    if (w && r.leaving) workers_.SetState(w, "gone");
    metrics_.releases++;
    Record(
        Event{clock_->NowMs(), "release", l.range, l.epoch, l.worker,
              fmt::format("cursor={} rows={}", KeyToString(r.progress.cursor), r.progress.rows)});
  }
  return Reply(Ack(l.range, l.epoch, w));
}

Reply LeaseService::ReportError(const ErrorReport& r) {
  const LeaseRef& l = r.lease;
  const std::string msg = r.message.substr(0, 1024);
  WorkerInfo* w = workers_.Touch(l.worker);
  if (l.range == 0 && w) {
    // A registered worker that cannot use its stores (its new store is not
    // ours, its legacy store cannot be read) says so and leaves.
    workers_.SetState(w, "gone");
    last_range_error_ = fmt::format("worker {}: {}", l.worker, msg);
    Record(Event{clock_->NowMs(), "worker_refused", 0, 0, l.worker, msg});
    AckReply a;
    a.paused = job_.paused;
    return a;
  }
  Status s = table_.ReportError(l.range, l.epoch, l.worker, r.permanent, msg);
  if (!s.ok()) {
    metrics_.lease_lost++;
    return ErrorReply{ErrorCode::kLeaseLost, s.message(), l.range, l.epoch};
  }
  WorkerRegistry::Dropped(w, l.range);
  metrics_.range_errors++;
  const RangeRecord* range = table_.Find(l.range);
  last_range_error_ = fmt::format("range {} ({}): {}", range->id, range->table, msg);
  Record(Event{clock_->NowMs(),
               range->state == RangeState::kFailed ? "range_failed" : "range_error", l.range,
               l.epoch, l.worker, msg});
  AckReply a;
  a.range = l.range;
  a.epoch = l.epoch;
  a.paused = job_.paused;
  return a;
}

NoWorkReply LeaseService::NoWork(const WorkerInfo& w, uint32_t retry_ms) const {
  NoWorkReply n;
  n.retry_after_ms = retry_ms;
  n.complete = complete() && !finishing_;
  n.failed = failed();
  n.paused = job_.paused;
  n.draining = w.draining();
  return n;
}

GrantReply LeaseService::Grant(const RangeRecord& r) const {
  GrantReply g;
  g.range = r.id;
  g.epoch = r.epoch;
  g.table = r.table;
  g.lo = r.lo;
  g.hi = r.hi;
  g.verify = r.verify_lease;
  g.cursor = r.verify_lease ? r.verify_cursor : r.cursor;
  g.repaired = r.rows_repaired;
  g.parent = r.parent;
  g.rows = r.rows;
  g.bytes = r.bytes;
  g.digest = r.digest;
  g.rejected = r.rejected;
  g.ttl_ms = settings_.policy.ttl_ms;
  g.rows_per_second = ThrottleShare();
  return g;
}

AckReply LeaseService::Ack(uint64_t range, uint64_t epoch, const WorkerInfo* w) const {
  AckReply a;
  a.range = range;
  a.epoch = epoch;
  a.ttl_ms = settings_.policy.ttl_ms;
  a.paused = job_.paused;
  a.drain = w && w->draining();
  a.rows_per_second = ThrottleShare();
  const RangeRecord* r = table_.Find(range);
  if (r && r->state == RangeState::kLeased && r->epoch == epoch && !r->verify_lease) {
    a.hi_valid = true;
    a.hi = r->hi;
    // Only owners of a range the policy could split heartbeat faster.
    const uint64_t left = r->est_rows > r->rows ? r->est_rows - r->rows : 0;
    if (left >= settings_.split.min_rows) {
      a.waiting = static_cast<uint32_t>(std::min<size_t>(waiting_.size(), UINT32_MAX));
    }
    if (r->split_keep > 0 && w && (w->features & kFeatureSplit)) {
      // The ask reaches the owner a heartbeat after it was made: keep the
      // same share of what is left now, so that the tail still gets its part.
      a.split = true;
      a.split_keep = r->split_keep;
      if (r->split_left > 0 && left < r->split_left) {
        a.split_keep =
            std::max<uint64_t>(1, static_cast<uint64_t>(static_cast<double>(r->split_keep) *
                                                        static_cast<double>(left) /
                                                        static_cast<double>(r->split_left)));
      }
    }
  }
  return a;
}

std::optional<Reply> LeaseService::LeaseReply(uint64_t request_id, const std::string& id,
                                              WorkerInfo* w, bool may_wait, uint32_t features) {
  if (!complete() && !failed() && table_.Finished()) {
    MaybeFinish();  // this message completed the last range: say so now
  }
  if (complete() && finishing_) return Reply(NoWork(*w, 200));  // capture removal pending
  if (complete() || failed() || w->draining()) {
    if (complete() || failed()) w->told_done = true;
    return Reply(NoWork(*w, 0));
  }
  if (job_.phase == JobPhase::kCatchingUp || job_.phase == JobPhase::kCuttingOver) {
    // Online mode: every range is copied; the only work is the applier's.
    if (applier_.held() && applier_.owner() != id) return Reply(NoWork(*w, 1000));
    if (!applier_.held()) {
      if (job_.paused) return Reply(NoWork(*w, 500));
      applier_.Grant(id, table_.TakeEpoch(), clock_->NowMs(), settings_.policy.ttl_ms);
      metrics_.grants++;
      LogRoutine("applier_grant", 0, applier_.epoch(), id,
                 fmt::format("position={}", applier_.progress().position));
    }
    // (A holder asking again lost our answer: the same lease again.)
    ApplyGrantReply g;
    g.epoch = applier_.epoch();
    g.ttl_ms = settings_.policy.ttl_ms;
    g.ranges_total = table_.ranges().size();
    g.drain_to = drain_to_;
    g.tables = settings_.online_tables;
    return Reply(std::move(g));
  }
  const RangeRecord* r = nullptr;
  if (w->current_range) {
    // The worker lost our grant reply: give it the same lease again.
    const RangeRecord* held = table_.Find(w->current_range);
    if (held && held->state == RangeState::kLeased && held->owner == id) r = held;
  }
  if (!r) {
    if (job_.paused) return Reply(NoWork(*w, 500));
    r = table_.Grant(id, (features & kFeatureVerify) != 0);
    if (!r) {
      if (may_wait && table_.count(RangeState::kLeased) > 0) {
        // Nothing pending, but leased ranges may come back (expiry, release)
        // or finish the job: hold the request and answer it the moment one
        // of those happens, instead of having the worker poll.
        // A worker newly idle: the split policy looks at once.
        if (waiting_.count(id) == 0) next_split_check_ms_ = 0;
        waiting_[id] = Waiting{request_id, clock_->NowMs() + kLeaseWaitMs, features};
        return std::nullopt;
      }
      return Reply(NoWork(*w, may_wait ? 250 : 10));
    }
    metrics_.grants++;
    w->current_range = r->id;
    if (spdlog::should_log(spdlog::level::info)) {
      LogRoutine(r->verify_lease ? "grant_verify" : "grant", r->id, r->epoch, id,
                 fmt::format("table={} cursor={}", r->table,
                             KeyToString(r->verify_lease ? r->verify_cursor : r->cursor)));
    }
  }
  return Reply(Grant(*r));
}

std::vector<LeaseService::Answer> LeaseService::AnswerWaiting() {
  std::vector<Answer> out;
  if (waiting_.empty()) return out;
  const int64_t now = clock_->NowMs();
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    WorkerInfo* w = workers_.Find(it->first);
    const bool verifies = (it->second.features & kFeatureVerify) != 0;
    const bool online_work =
        (job_.phase == JobPhase::kCatchingUp || job_.phase == JobPhase::kCuttingOver) &&
        !applier_.held();
    const bool answer = !w || complete() || failed() || w->draining() || job_.paused ||
                        now >= it->second.deadline_ms || table_.count(RangeState::kPending) > 0 ||
                        (verifies && table_.verify_pending() > 0) ||
                        (!complete() && table_.Finished()) || online_work;
    if (!answer) {
      ++it;
      continue;
    }
    const uint64_t rid = it->second.request_id;
    std::optional<Reply> reply =
        w ? LeaseReply(rid, it->first, w, /*may_wait=*/false, it->second.features)
          : std::optional<Reply>(ErrorReply{ErrorCode::kUnknownWorker, "register first"});
    out.push_back(Answer{it->first, rid, std::move(*reply)});
    it = waiting_.erase(it);
  }
  return out;
}

void LeaseService::Tick() {
  for (const LeaseTable::Expired& e : table_.ExpireDue()) {
    metrics_.expiries++;
    WorkerRegistry::Dropped(workers_.Find(e.owner), e.range);
    Record(Event{clock_->NowMs(), "expire", e.range, e.epoch, e.owner, "lease deadline passed"});
  }
  MaybeAskSplits();
  const std::string applier_owner = applier_.owner();
  const uint64_t applier_epoch = applier_.epoch();
  if (applier_.ExpireDue(clock_->NowMs())) {
    metrics_.expiries++;
    Record(Event{clock_->NowMs(), "expire", 0, applier_epoch, applier_owner,
                 "change applier lease deadline passed"});
  }
  MaybeFinish();
}

void LeaseService::MaybeAskSplits() {
  const int64_t now = clock_->NowMs();
  const bool forced = settings_.force_split_interval_ms > 0;
  if (now < next_split_check_ms_) return;
  if (!forced && waiting_.empty()) return;
  if (job_.paused || job_.phase != JobPhase::kCopying) return;
  next_split_check_ms_ =
      now + (forced ? settings_.force_split_interval_ms : std::max<int64_t>(100, kSplitCheckMs));
  // An ask the owner has not answered for a while (it could not find a key,
  // or it cannot split) is dropped; the range may be asked again after the
  // cool-down.
  const int64_t cooldown = forced ? settings_.force_split_interval_ms
                                  : std::max<int64_t>(1000, 2 * settings_.policy.heartbeat_ms);
  std::vector<SplitCandidate> candidates;
  for (uint64_t id : table_.leased()) {
    const RangeRecord* r = table_.Find(id);
    if (r->verify_lease) continue;
    bool asked = false;
    if (r->split_keep > 0) {
      if (now - r->split_asked_ms >= cooldown) {
        table_.ClearSplitAsk(id);
        continue;
      }
      asked = true;
    } else if (r->split_asked_ms != 0 && now - r->split_asked_ms < cooldown) {
      continue;
    }
    const WorkerInfo* w = workers_.Find(r->owner);
    if (!w || !(w->features & kFeatureSplit)) continue;
    SplitCandidate c;
    c.range = id;
    c.asked = asked;
    c.rows_left = r->est_rows > r->rows ? r->est_rows - r->rows : 0;
    c.leased_ms = now - r->granted_ms;
    if (c.leased_ms > 0 && r->rows > r->rows_at_grant) {
      c.rows_per_second = (r->rows - r->rows_at_grant) * 1000.0 / static_cast<double>(c.leased_ms);
    }
    candidates.push_back(c);
  }
  // Idle: workers whose lease requests wait (nothing was grantable).
  const std::vector<SplitAsk> asks =
      forced ? ForceSplits(candidates, settings_.split)
             : ChooseSplits(candidates, waiting_.size(), settings_.split);
  for (const SplitAsk& a : asks) {
    table_.AskSplit(a.range, a.keep_rows);
    metrics_.split_asks++;
    const RangeRecord* r = table_.Find(a.range);
    LogEvent(
        spdlog::level::debug, "split_ask",
        {{"range", a.range}, {"epoch", r->epoch}, {"worker", r->owner}, {"keep", a.keep_rows}});
  }
}

void LeaseService::ApplySplitProposal(const ProgressReport& r) {
  const LeaseRef& l = r.lease;
  const RangeRecord* range = table_.Find(l.range);
  if (!range) return;
  const bool repeat = range->hi == r.split_key;
  if (!repeat && range->split_keep == 0) {
    // Not asked (or the ask was dropped): refused; the ack's hi says so.
    LogEvent(spdlog::level::debug, "split_refused",
             {{"range", l.range}, {"worker", l.worker}, {"why", "not asked"}});
    return;
  }
  const std::string old_hi = range->hi;
  auto tail = table_.Split(l.range, l.epoch, l.worker, r.split_key, r.split_rows);
  if (!tail.ok()) {
    table_.ClearSplitAsk(l.range);
    LogEvent(spdlog::level::info, "split_refused",
             {{"range", l.range}, {"worker", l.worker}, {"why", tail.status().message()}});
    return;
  }
  if (repeat) return;  // committed before; the ack repeats the answer
  metrics_.splits++;
  const RangeRecord* head = table_.Find(l.range);
  Record(
      Event{clock_->NowMs(), "split", l.range, l.epoch, l.worker,
            fmt::format("at {}: range {} keeps [{}, {}) (~{} rows to go), new range {} takes "
                        "[{}, {}) (~{} rows)",
                        KeyToString(r.split_key), l.range,
                        head->lo.empty() ? "(start)" : KeyToString(head->lo), KeyToString(head->hi),
                        head->est_rows - std::min(head->est_rows, head->rows), (*tail)->id,
                        KeyToString((*tail)->lo), old_hi.empty() ? "(end)" : KeyToString(old_hi),
                        (*tail)->est_rows)});
}

void LeaseService::RecordRepairs(const ProgressReport& r) {
  if (r.repaired_keys.empty() && r.repaired_more == 0) return;
  std::string keys;
  for (const std::string& k : r.repaired_keys) {
    if (!keys.empty()) keys += ", ";
    keys += KeyToString(k);
  }
  const uint64_t n = r.repaired_keys.size() + r.repaired_more;
  Record(Event{clock_->NowMs(), "repair", r.lease.range, r.lease.epoch, r.lease.worker,
               fmt::format("{} row(s) re-copied or deleted: {}{}", n, keys,
                           r.repaired_more ? fmt::format(" and {} more", r.repaired_more) : "")});
}

void LeaseService::MaybeFinish() {
  if (job_.phase != JobPhase::kCopying) return;
  if (table_.rejected_total() > settings_.max_rejects) {
    // Checked before completion: the version is never bumped past them.
    std::vector<std::string> sample;
    if (settings_.sample_rejects) sample = settings_.sample_rejects(3);
    job_.phase = JobPhase::kFailed;
    job_.failure = fmt::format(
        "{} row(s) rejected, more than --max-rejects {}{}{}; every one is in __ferry_rejects "
        "in the new store; to accept them, raise --max-rejects",
        table_.rejected_total(), settings_.max_rejects, sample.empty() ? "" : ": ",
        Join(sample, "; "));
    job_dirty_ = true;
    Record(Event{clock_->NowMs(), "failed", 0, 0, "", job_.failure});
    return;
  }
  if (settings_.online && table_.Finished()) {
    // Every range is copied: the changes made meanwhile are replayed from
    // now on (the applier), until a cut-over bumps the version.
    job_.phase = JobPhase::kCatchingUp;
    job_.boundary.clear();
    job_dirty_ = true;
    Record(
        Event{clock_->NowMs(), "catching_up", 0, 0, "",
              fmt::format("every range copied, rows={}; replaying changes", table_.rows_total())});
    return;
  }
  if (table_.Finished()) {
    // The last completion, the boundary clear and the version bump commit
    // together (the server commits this pass's changes next).
    job_.phase = JobPhase::kComplete;
    job_.current_version = job_.to_version;
    job_.boundary.clear();
    job_.mirrored = false;
    job_dirty_ = true;
    Record(Event{clock_->NowMs(), "finalize", 0, 0, "",
                 fmt::format("version {} -> {}, rows={}", job_.from_version, job_.to_version,
                             table_.rows_total())});
    return;
  }
  if (table_.Failed()) {
    job_.phase = JobPhase::kFailed;
    for (const RangeRecord& r : table_.ranges()) {
      if (r.state == RangeState::kFailed) {
        job_.failure = fmt::format("range {} ({} from {}) failed: {}", r.id, r.table,
                                   r.lo.empty() ? "start" : KeyToString(r.lo), r.last_error);
        break;
      }
    }
    job_dirty_ = true;
    Record(Event{clock_->NowMs(), "failed", 0, 0, "", job_.failure});
    return;
  }
  std::string b = table_.Boundary();
  if (b != job_.boundary) {
    job_.boundary = std::move(b);
    job_dirty_ = true;
  }
}

bool LeaseService::SetPaused(bool paused) {
  if (job_.paused == paused) return false;
  job_.paused = paused;
  job_dirty_ = true;
  Record(Event{clock_->NowMs(), paused ? "pause" : "resume", 0, 0, "", "operator"});
  return true;
}

void LeaseService::SetThrottle(uint64_t rows_per_second) {
  job_.throttle_rows_per_s = rows_per_second;
  job_dirty_ = true;
  Record(Event{clock_->NowMs(), "throttle", 0, 0, "",
               rows_per_second ? fmt::format("{} rows/s", rows_per_second) : "off"});
}

Status LeaseService::Drain(const std::string& worker) {
  WorkerInfo* w = workers_.Find(worker);
  if (worker.empty() || !w) return NotFound("drain takes a registered worker id; see 'workers'");
  workers_.SetState(w, "draining");
  Record(Event{clock_->NowMs(), "drain", w->current_range, 0, worker, "operator"});
  return Status::Ok();
}

Result<uint64_t> LeaseService::Revoke(uint64_t range) {
  const RangeRecord* r = table_.Find(range);
  const std::string owner = r ? r->owner : "";
  const uint64_t epoch = r ? r->epoch : 0;
  FERRY_RETURN_IF_ERROR(table_.Revoke(range));
  WorkerRegistry::Dropped(workers_.Find(owner), range);
  metrics_.revokes++;
  Record(Event{clock_->NowMs(), "revoke", range, epoch, owner, "operator"});
  return epoch;
}

size_t LeaseService::RetryFailed() {
  const size_t n = table_.RetryFailed();
  // A job failed by its failed ranges, or by rejected rows (no range
  // failed: the check runs again with this run's --max-rejects).
  if (job_.phase == JobPhase::kFailed) {
    job_.phase = JobPhase::kCopying;
    job_.failure.clear();
    job_dirty_ = true;
  }
  return n;
}

void LeaseService::MarkMirrored() {
  if (job_.mirrored) return;
  job_.mirrored = true;
  job_dirty_ = true;
}

std::optional<Reply> LeaseService::ApplyReport(const ApplyReportRequest& r) {
  WorkerInfo* w = workers_.Touch(r.lease.worker);
  if (complete()) {
    applier_.End();
    return Reply(ErrorReply{ErrorCode::kLeaseLost, "the migration is complete", 0, r.lease.epoch});
  }
  Status s = applier_.Check(r.lease);
  if (!s.ok()) {
    metrics_.lease_lost++;
    return Reply(ErrorReply{ErrorCode::kLeaseLost, s.message(), 0, r.lease.epoch});
  }
  const bool had_error = !applier_.progress().error.empty();
  applier_.Report(r, clock_->NowMs(), settings_.policy.ttl_ms);
  if (!r.error.empty()) {
    last_range_error_ = "change applier: " + r.error;
    if (!had_error) {
      Record(Event{clock_->NowMs(), "applier_error", 0, r.lease.epoch, r.lease.worker, r.error});
    }
  }
  if (r.release) {
    applier_.End();
    if (w && r.leaving) workers_.SetState(w, "gone");
    metrics_.releases++;
    Record(Event{clock_->NowMs(), "release", 0, r.lease.epoch, r.lease.worker,
                 fmt::format("change applier at position {}", r.position)});
  }
  AckReply a = Ack(0, r.lease.epoch, w);
  a.drain_to = drain_to_;
  return Reply(a);
}

Status LeaseService::BeginCutover(const std::string& detail) {
  if (job_.phase != JobPhase::kCatchingUp) {
    return FailedPrecondition("not catching_up");
  }
  job_.phase = JobPhase::kCuttingOver;
  job_dirty_ = true;
  Record(Event{clock_->NowMs(), "cutover", 0, 0, "", detail});
  return Status::Ok();
}

void LeaseService::CutoverFailed(const std::string& why) {
  drain_to_ = 0;
  last_range_error_ = "cut-over failed: " + why;
  if (job_.phase == JobPhase::kCuttingOver) {
    job_.phase = JobPhase::kCatchingUp;
    job_dirty_ = true;
  }
  Record(Event{clock_->NowMs(), "cutover_failed", 0, 0, "", why});
}

void LeaseService::FinishOnline(const std::string& detail) {
  drain_to_ = 0;
  if (job_.phase == JobPhase::kComplete) return;
  job_.phase = JobPhase::kComplete;
  job_.current_version = job_.to_version;
  job_.boundary.clear();
  job_.mirrored = false;
  job_dirty_ = true;
  finishing_ = true;
  Record(Event{
      clock_->NowMs(), "finalize", 0, 0, "",
      fmt::format("version {} -> {}, rows={}, changes applied={}; {}", job_.from_version,
                  job_.to_version, table_.rows_total(), applier_.progress().applied, detail)});
}

StateCommit LeaseService::TakeCommit() {
  StateCommit c;
  if (table_.last_epoch() != job_.last_epoch) {
    job_.last_epoch = table_.last_epoch();
    job_dirty_ = true;
  }
  for (uint64_t id : table_.TakeDirty()) c.ranges.push_back(table_.Find(id));
  for (uint64_t id : table_.TakeInserted()) c.inserted.push_back(table_.Find(id));
  c.events = std::move(events_);
  events_.clear();
  c.workers = workers_.TakeDirty();
  if (job_dirty_ || !c.empty()) c.job = &job_;
  job_dirty_ = false;
  return c;
}

void LeaseService::Record(Event e) {
  const auto level = (e.kind == "range_error" || e.kind == "range_failed" || e.kind == "expire" ||
                      e.kind == "worker_refused" || e.kind == "repair" || e.kind == "rejected")
                         ? spdlog::level::warn
                         : spdlog::level::info;
  if (spdlog::should_log(level)) {
    LogEvent(level, e.kind,
             {{"range", e.range}, {"epoch", e.epoch}, {"worker", e.worker}, {"detail", e.detail}});
  }
  events_.push_back(std::move(e));
}

void LeaseService::LogRoutine(const char* kind, uint64_t range, uint64_t epoch,
                              const std::string& worker, const std::string& detail) const {
  LogEvent(spdlog::level::info, kind,
           {{"range", range}, {"epoch", epoch}, {"worker", worker}, {"detail", detail}});
}

uint64_t LeaseService::ThrottleShare() const {
  if (job_.throttle_rows_per_s == 0) return 0;
  // One share per lease held (a worker holds at most one): O(1), where
  // counting workers would cost O(workers) on every grant and ack.
  const uint64_t active = table_.count(RangeState::kLeased);
  return std::max<uint64_t>(1, job_.throttle_rows_per_s / std::max<uint64_t>(1, active));
}

void LeaseService::SampleRates() {
  const int64_t now = clock_->NowMs();
  workers_.SampleRates();
  if (!rate_samples_.empty() && now - rate_samples_.back().first < 500) return;
  rate_samples_.emplace_back(now, table_.rows_total());
  while (rate_samples_.size() > 2 && now - rate_samples_.front().first > 10000) {
    rate_samples_.pop_front();
  }
}

double LeaseService::RowsPerSecond() const {
  if (rate_samples_.size() < 2) return 0;
  const auto& [t0, r0] = rate_samples_.front();
  const auto& [t1, r1] = rate_samples_.back();
  if (t1 <= t0 || r1 < r0) return 0;
  return (r1 - r0) * 1000.0 / (t1 - t0);
}

}  // namespace ferry
