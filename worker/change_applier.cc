#include "worker/change_applier.h"

#include <capnp/message.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <random>
#include <set>
#include <thread>
#include <unordered_set>

#include "common/backoff.h"
#include "common/logging.h"

namespace ferry {
namespace {

// How long an idle applier waits between reads of the capture, and how
// often it reports while idle: a cut-over's drain target arrives in the
// answer to a report, so an idle applier learns of a freeze within this.
constexpr int kIdlePollMs = 50;
constexpr int64_t kIdleReportMs = 25;
constexpr int kDrainPollMs = 5;
// An idle applier still records a moved position (PostgreSQL: transactions
// of other tables) this often, so the slot does not hold their WAL.
constexpr int64_t kEmptyCommitMs = 1000;
// Largest batch a refused batch grows to.
constexpr size_t kMaxRetryChanges = 1 << 20;

uint64_t Seed() {
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd() ^ static_cast<uint64_t>(getpid());
}

}  // namespace

Status IdentityReplayer::Replay(const std::string& table, const std::vector<std::string>& keys,
                                std::vector<TableChanges>* out) {
  auto it = schemas_->find(table);
  if (it == schemas_->end()) {
    return Permanent(fmt::format("changed table {} is not in the legacy store", table));
  }
  TableChanges tc;
  tc.table = &it->second;
  FERRY_RETURN_IF_ERROR(source_->ReadKeys(it->second, keys, &tc.upserts));
  const std::unordered_set<std::string> found(tc.upserts.keys.begin(), tc.upserts.keys.end());
  for (const std::string& k : keys) {
    if (!found.count(k)) tc.deletes.push_back(k);
  }
  out->push_back(std::move(tc));
  return Status::Ok();
}

void ChangeApplier::Sleep(int64_t ms) {
  const int64_t until = ctx_.clock->NowMs() + ms;
  while (!lost_ && !Stopping() && ctx_.clock->NowMs() < until) {
    if (!Poll(static_cast<int>(std::clamp<int64_t>(until - ctx_.clock->NowMs(), 1, 50)))) return;
  }
}

bool ChangeApplier::Poll(int timeout_ms) {
  if (lost_) return false;
  int wait = timeout_ms;
  while (auto env = ctx_.client->Poll(wait)) {
    wait = 0;
    try {
      auto root = env->root();
      auto body = root.getBody();
      if (body.isAck()) {
        auto a = body.getAck();
        if (a.getRangeId() != 0 || a.getEpoch() != epoch_) continue;
        auto it = sent_.find(root.getRequestId());
        if (it != sent_.end()) {
          deadline_ms_ =
              std::max(deadline_ms_, it->second + static_cast<int64_t>(a.getLeaseTtlMs()));
          sent_.erase(sent_.begin(), std::next(it));
        }
        last_ack_ms_ = ctx_.clock->NowMs();
        paused_ = a.getPaused();
        drain_ = a.getDrain();
        if (a.getDrainTo() != drain_to_) {
          drain_to_ = a.getDrainTo();
          if (drain_to_ > 0) {
            LogEvent(spdlog::level::info, "applier_drain",
                     {{"worker", ctx_.worker_id},
                      {"epoch", epoch_},
                      {"drain_to", drain_to_},
                      {"position", position_}});
          }
        }
      } else if (body.isError()) {
        auto e = body.getError();
        if (e.getCode() == Error::Code::UNAVAILABLE) {
          ctx_.client->Rotate();  // a standby: report to the coordinator that leads
          sent_.clear();
          continue;
        }
        if (e.getCode() == Error::Code::LEASE_LOST && e.getRangeId() == 0 &&
            e.getEpoch() == epoch_) {
          LogEvent(spdlog::level::info, "applier_lease_lost",
                   {{"worker", ctx_.worker_id},
                    {"epoch", epoch_},
                    {"why", std::string(AsView(e.getMessage()))}});
          lost_ = true;
          return false;
        }
      } else if (body.isApplyGrant() && body.getApplyGrant().getEpoch() == epoch_) {
        // Our own lease again (an answer to a request we had given up on).
      } else if (ctx_.on_other) {
        ctx_.on_other(*env);
      }
    } catch (const kj::Exception&) {
      // a malformed reply is ignored
    }
  }
  return true;
}

ApplyReport::Builder ChangeApplier::StartReport(capnp::MallocMessageBuilder* b, uint64_t rid,
                                                bool release, bool leaving) const {
  auto r = NewEnvelope(*b, rid).getBody().initApplyReport();
  SetLeaseRef(r.initLease(), 0, epoch_, ctx_.worker_id);
  r.setPosition(position_);
  r.setCaughtUp(caught_up_);
  r.setApplied(applied_);
  r.setRelease(release);
  r.setLeaving(leaving);
  return r;
}

void ChangeApplier::SendReport(bool release, bool leaving) {
  capnp::MallocMessageBuilder b;
  const uint64_t rid = ctx_.client->NextRequestId();
  auto r = StartReport(&b, rid, release, leaving);
  r.setPending(pending_);
  r.setOldestPendingMs(oldest_pending_ms_);
  r.setError(error_.substr(0, 1000));
  r.setPermanent(permanent_);
  const int64_t now = ctx_.clock->NowMs();
  sent_[rid] = now;
  if (sent_.size() > 1024) sent_.erase(sent_.begin());
  last_report_ms_ = now;
  if (drain_to_ > 0 && caught_up_ >= drain_to_) reported_drain_ = drain_to_;
  ctx_.client->SendAsync(b);
}

bool ChangeApplier::Release() {
  capnp::MallocMessageBuilder b;
  const uint64_t rid = ctx_.client->NextRequestId();
  StartReport(&b, rid, /*release=*/true, /*leaving=*/true);
  auto reply = ctx_.client->Call(b, rid, ctx_.request_timeout_ms, ctx_.on_other);
  LogEvent(spdlog::level::info, "applier_released",
           {{"worker", ctx_.worker_id},
            {"epoch", epoch_},
            {"position", position_},
            {"applied", applied_},
            {"answered", reply != nullptr}});
  return reply != nullptr;
}

ChangeApplier::Outcome ChangeApplier::Run(const ApplyLease& lease) {
  Outcome out = RunLease(lease);
  ctx_.capture->Pause();  // the slot is free for whoever applies next
  return out;
}

ChangeApplier::Outcome ChangeApplier::RunLease(const ApplyLease& lease) {
  epoch_ = lease.epoch;
  deadline_ms_ = lease.sent_ms + lease.ttl_ms;
  drain_to_ = lease.drain_to;
  last_ack_ms_ = ctx_.clock->NowMs();
  const LeasePolicy& pol = ctx_.policy;
  uint64_t fence_ranges = lease.ranges_total;
  size_t max_changes = std::max<size_t>(1, ctx_.max_changes);
  Backoff backoff(100, 2000, Seed());

  // Where the new store says the replay is.
  for (;;) {
    auto p = ctx_.target->ReadChangePosition(ctx_.plan_id);
    if (p.ok()) {
      position_ = read_pos_ = p->position;
      applied_ = p->applied;
      break;
    }
    LogEvent(RetryLevel(backoff.attempt()), "applier_position_retry",
             {{"worker", ctx_.worker_id}, {"error", p.status().message()}});
    Sleep(backoff.NextDelayMs());
    if (lost_ || ctx_.clock->NowMs() >= deadline_ms_) return Outcome::kLost;
    if (Stopping()) {
      Release();
      return Outcome::kStopped;
    }
  }
  backoff.Reset();
  LogEvent(spdlog::level::info, "applier_start",
           {{"worker", ctx_.worker_id},
            {"epoch", epoch_},
            {"position", position_},
            {"applied", applied_},
            {"capture", ctx_.capture->Describe()}});
  // The first report follows the first read: a report says what is pending.
  last_report_ms_ = ctx_.clock->NowMs();

  int64_t last_commit_ms = 0;
  for (;;) {
    if (!Poll(0)) return Outcome::kLost;
    if (Stopping()) {
      Release();
      return Outcome::kStopped;
    }
    if (drain_) {
      Release();
      return Outcome::kDrained;
    }
    const int64_t now = ctx_.clock->NowMs();
    if (now >= deadline_ms_) {
      LogEvent(spdlog::level::warn, "applier_lease_expired",
               {{"worker", ctx_.worker_id},
                {"epoch", epoch_},
                {"check", "no answer from the coordinator within the lease TTL"}});
      return Outcome::kLost;
    }
    if (now - last_report_ms_ >= pol.heartbeat_ms) SendReport(false, false);
    if (ctx_.client->endpoint_count() > 1 && now - last_ack_ms_ > pol.ttl_ms / 2) {
      ctx_.client->Rotate();  // another coordinator of the list may lead now
      sent_.clear();
      last_ack_ms_ = now;
    }
    if (paused_ || now + pol.safety_ms >= deadline_ms_) {
      if (!Poll(50)) return Outcome::kLost;
      continue;
    }

    auto batch = ctx_.capture->Read(read_pos_, max_changes);
    if (!batch.ok()) {
      error_ = batch.status().message();
      permanent_ = batch.status().code() != Code::kUnavailable;
      read_pos_ = position_;
      LogEvent(RetryLevel(backoff.attempt() + 1), "applier_read_failed",
               {{"worker", ctx_.worker_id}, {"epoch", epoch_}, {"error", error_}});
      SendReport(false, false);
      Sleep(backoff.NextDelayMs());
      if (lost_) return Outcome::kLost;
      continue;
    }
    if (batch->changes == 0 && batch->keys.empty()) {
      if (batch->caught_up > 0) caught_up_ = std::max(caught_up_, batch->caught_up);
      pending_ = batch->left;
      oldest_pending_ms_ = batch->left > 0 ? batch->next_ms : 0;
      // Transactions without changes to the migrated tables (PostgreSQL)
      // move the read position; the new store records it now and then.
      read_pos_ = std::max(read_pos_, batch->end);
      const bool moved = read_pos_ > position_;
      if (!moved || now - last_commit_ms < kEmptyCommitMs) {
        if (drain_to_ > 0 && caught_up_ < drain_to_) {
          // A cut-over waits: make what committed before the freeze
          // readable now (PostgreSQL with asynchronous commits) and read again.
          Status f = ctx_.capture->Flush();
          if (!f.ok()) {
            LogEvent(spdlog::level::debug, "applier_flush_failed",
                     {{"worker", ctx_.worker_id}, {"error", f.message()}});
          }
          if (!Poll(kDrainPollMs)) return Outcome::kLost;
          continue;
        }
        if ((drain_to_ > 0 && reported_drain_ < drain_to_) ||
            now - last_report_ms_ >= kIdleReportMs) {
          SendReport(false, false);
        }
        if (!Poll(drain_to_ > 0 ? kDrainPollMs : kIdlePollMs)) return Outcome::kLost;
        continue;
      }
      // else: record the moved position (no rows) so the capture can let go.
    }

    // Distinct keys per table, in first-seen order.
    std::map<std::string, std::vector<std::string>> by_table;
    {
      std::set<std::pair<std::string, std::string>> seen;
      for (const ChangedKey& k : batch->keys) {
        if (seen.insert({k.table, k.key}).second) by_table[k.table].push_back(k.key);
      }
    }
    std::vector<TableChanges> changes;
    Status s;
    for (const auto& [table, keys] : by_table) {
      s = ctx_.replayer->Replay(table, keys, &changes);
      if (!s.ok()) break;
    }
    std::vector<Reject>* rejects = ctx_.replayer->rejects();
    if (s.ok() && rejects && !rejects->empty()) {
      // Before the batch, under the applier's fence (idempotent: a batch
      // read again rejects the same rows again).
      s = ctx_.target->WriteRejects(*rejects, Fence{ctx_.plan_id, 0, epoch_});
    }
    if (rejects) rejects->clear();
    if (s.ok()) {
      ChangeApply apply;
      apply.plan_id = ctx_.plan_id;
      apply.epoch = epoch_;
      apply.fence_ranges = fence_ranges;
      apply.from_position = position_;
      apply.to_position = std::max(read_pos_, batch->end);
      apply.changes = batch->changes;
      apply.tables = std::move(changes);
      s = ctx_.target->ApplyChanges(apply);
      if (s.ok()) s = ctx_.target->SyncWrites();
    }
    if (s.code() == Code::kLeaseLost) {
      LogEvent(spdlog::level::warn, "applier_fenced",
               {{"worker", ctx_.worker_id}, {"epoch", epoch_}, {"why", s.message()}});
      return Outcome::kLost;
    }
    if (!s.ok()) {
      error_ = s.message();
      permanent_ = s.code() != Code::kUnavailable;
      if (permanent_ && batch->more) {
        // A later change may resolve what the new store refused (a unique
        // value that moved between rows): take more of them next time.
        max_changes = std::min(kMaxRetryChanges, max_changes * 4);
      }
      LogEvent(RetryLevel(backoff.attempt() + 1), "applier_batch_failed",
               {{"worker", ctx_.worker_id},
                {"epoch", epoch_},
                {"position", position_},
                {"changes", batch->changes},
                {"error", error_}});
      read_pos_ = position_;  // read that batch again
      SendReport(false, false);
      Sleep(backoff.NextDelayMs());
      if (lost_) return Outcome::kLost;
      continue;
    }
    if (spdlog::should_log(spdlog::level::debug)) {
      LogEvent(spdlog::level::debug, "applier_batch",
               {{"worker", ctx_.worker_id},
                {"changes", batch->changes},
                {"keys", batch->keys.size()},
                {"position", batch->end},
                {"caught_up", batch->caught_up},
                {"ms", ctx_.clock->NowMs() - now}});
    }
    backoff.Reset();
    error_.clear();
    permanent_ = false;
    max_changes = std::max<size_t>(1, ctx_.max_changes);
    fence_ranges = 0;
    last_commit_ms = now;
    position_ = read_pos_ = std::max(read_pos_, batch->end);
    applied_ += batch->changes;
    ++batches_;
    if (batch->caught_up > 0) caught_up_ = std::max(caught_up_, batch->caught_up);
    pending_ = batch->left;
    oldest_pending_ms_ =
        batch->more || batch->left > 0 ? (batch->next_ms ? batch->next_ms : batch->oldest_ms) : 0;
    Status ack = ctx_.capture->Acknowledge(position_);
    if (!ack.ok()) {
      LogEvent(spdlog::level::debug, "applier_ack_deferred",
               {{"worker", ctx_.worker_id}, {"position", position_}, {"error", ack.message()}});
    }
    SendReport(false, false);
  }
}

}  // namespace ferry
