// LeaseService: the coordinator's decisions on typed requests, without
// sockets, on a fake clock. Scenarios first, then a reference model of the
// protocol under random schedules.
#include "coordinator/lease_service.h"

#include <gtest/gtest.h>

#include <iostream>
#include <map>
#include <random>
#include <set>

#include "common/key_codec.h"

namespace ferry {
namespace {

constexpr int64_t kTtl = 10000;

std::vector<RangeRecord> Plan(size_t n) {
  std::vector<RangeRecord> out;
  for (size_t i = 0; i < n; ++i) {
    RangeRecord r;
    r.id = i + 1;
    r.table = "t";
    r.lo = i == 0 ? "" : EncodeKey({Value{static_cast<int64_t>(i * 100)}});
    r.hi = i + 1 == n ? "" : EncodeKey({Value{static_cast<int64_t>((i + 1) * 100)}});
    r.est_rows = 100;
    out.push_back(r);
  }
  return out;
}

// A service with a fresh job of `ranges` ranges and verbs that read like the
// protocol.
struct Service {
  explicit Service(size_t ranges) : svc(Settings(), &clock) {
    JobMeta job;
    job.plan_id = "plan1";
    job.from_version = 1;
    job.to_version = 2;
    svc.Load(job, Plan(ranges), {});
  }
  static ServiceSettings Settings() {
    ServiceSettings s;
    s.source_uri = "sqlite:legacy.db";
    s.target_uri = "sqlite:new.db";
    s.batch_rows = 77;
    s.policy = *LeasePolicy::ForTtl(kTtl);
    return s;
  }

  RegisteredReply Register(const std::string& w) {
    return svc.Register(RegisterRequest{w, "host", 1, "test"});
  }
  // The reply to a lease request (nullopt: it waits).
  std::optional<Reply> Ask(const std::string& w, bool may_wait = false) {
    return svc.RequestLease(++rid, LeaseRequest{w}, may_wait);
  }
  GrantReply Lease(const std::string& w) {
    auto r = Ask(w);
    EXPECT_TRUE(r && std::holds_alternative<GrantReply>(*r));
    return r && std::holds_alternative<GrantReply>(*r) ? std::get<GrantReply>(*r) : GrantReply{};
  }
  std::optional<Reply> Report(ReportKind kind, const std::string& w, uint64_t range, uint64_t epoch,
                              const std::string& cursor, uint64_t rows, bool next = false,
                              bool may_wait = false) {
    ProgressReport p;
    p.kind = kind;
    p.lease = LeaseRef{range, epoch, w};
    p.progress = Progress{cursor, rows, rows * 10, rows};
    p.next = next;
    return svc.Report(++rid, p, may_wait);
  }
  // "ack", "lease lost", "grant", "nowork" or "other".
  static std::string Kind(const std::optional<Reply>& r) {
    if (!r) return "waiting";
    if (std::holds_alternative<AckReply>(*r)) return "ack";
    if (std::holds_alternative<GrantReply>(*r)) return "grant";
    if (const auto* n = std::get_if<NoWorkReply>(&*r)) {
      if (n->complete) return "nowork complete";
      if (n->draining) return "nowork draining";
      if (n->paused) return "nowork paused";
      return "nowork";
    }
    if (const auto* e = std::get_if<ErrorReply>(&*r)) {
      if (e->code == ErrorCode::kLeaseLost) return "lease lost";
      if (e->code == ErrorCode::kUnknownWorker) return "unknown worker";
    }
    return "other";
  }
  // One pass's bookkeeping: Tick, then what would be committed.
  StateCommit Pass() {
    svc.Tick();
    return svc.TakeCommit();
  }

  FakeClock clock;
  LeaseService svc;
  uint64_t rid = 0;
};

std::string Key(int64_t k) { return EncodeKey({Value{k}}); }

TEST(LeaseServiceTest, RegistrationSendsTheWholeLeasePolicy) {
  Service s(2);
  RegisteredReply r = s.Register("w1");
  EXPECT_EQ(r.plan_id, "plan1");
  EXPECT_EQ(r.to_version, 2);
  EXPECT_EQ(r.batch_rows, 77u);
  EXPECT_EQ(r.source_uri, "sqlite:legacy.db");
  EXPECT_EQ(r.policy.ttl_ms, kTtl);
  EXPECT_EQ(r.policy.heartbeat_ms, 1000);
  EXPECT_EQ(r.policy.safety_ms, 2000);
  EXPECT_EQ(r.policy.give_up_ms, 3 * kTtl);
  // The registration is persisted with the next commit, with an event.
  StateCommit c = s.Pass();
  ASSERT_EQ(c.workers.size(), 1u);
  EXPECT_EQ(c.workers[0].id, "w1");
  EXPECT_EQ(c.workers[0].state, "active");
  ASSERT_EQ(c.events.size(), 1u);
  EXPECT_EQ(c.events[0].kind, "register");
}

TEST(LeaseServiceTest, UnregisteredWorkerIsToldToRegister) {
  Service s(1);
  EXPECT_EQ(Service::Kind(s.Ask("stranger")), "unknown worker");
  EXPECT_EQ(s.svc.table().count(RangeState::kLeased), 0u);
}

TEST(LeaseServiceTest, GrantsTakeStrictlyIncreasingEpochsPersistedWithTheJob) {
  Service s(3);
  s.Register("w1");
  s.Register("w2");
  GrantReply a = s.Lease("w1");
  GrantReply b = s.Lease("w2");
  EXPECT_NE(a.range, b.range);
  EXPECT_LT(a.epoch, b.epoch);
  EXPECT_EQ(a.ttl_ms, kTtl);
  StateCommit c = s.Pass();
  ASSERT_NE(c.job, nullptr);
  EXPECT_EQ(c.job->last_epoch, b.epoch);  // durable before the grant leaves
  EXPECT_EQ(c.ranges.size(), 2u);
}

TEST(LeaseServiceTest, LostGrantIsResentUnchanged) {
  Service s(2);
  s.Register("w1");
  GrantReply a = s.Lease("w1");
  // The reply was lost; the worker asks again and gets the same lease.
  GrantReply again = s.Lease("w1");
  EXPECT_EQ(again.range, a.range);
  EXPECT_EQ(again.epoch, a.epoch);
  EXPECT_EQ(s.svc.table().count(RangeState::kLeased), 1u);
}

TEST(LeaseServiceTest, HeartbeatRenewsTheLeaseAndRecordsProgress) {
  Service s(1);
  s.Register("w1");
  GrantReply g = s.Lease("w1");
  s.clock.Advance(kTtl - 1);
  EXPECT_EQ(Service::Kind(s.Report(ReportKind::kHeartbeat, "w1", g.range, g.epoch, Key(40), 40)),
            "ack");
  s.clock.Advance(kTtl - 1);  // past the grant's deadline, within the renewal
  s.Pass();
  const RangeRecord* r = s.svc.table().Find(g.range);
  EXPECT_EQ(r->state, RangeState::kLeased);
  EXPECT_EQ(r->cursor, Key(40));
  EXPECT_EQ(r->rows, 40u);
  EXPECT_EQ(s.svc.table().rows_total(), 40u);
}

TEST(LeaseServiceTest, StaleEpochOrOtherOwnerIsLeaseLostAndChangesNothing) {
  Service s(1);
  s.Register("w1");
  s.Register("w2");
  GrantReply g = s.Lease("w1");
  s.Pass();
  for (auto [w, epoch] : {std::pair<std::string, uint64_t>{"w1", g.epoch - 1},
                          std::pair<std::string, uint64_t>{"w2", g.epoch},
                          std::pair<std::string, uint64_t>{"w1", g.epoch + 1}}) {
    for (ReportKind k : {ReportKind::kHeartbeat, ReportKind::kComplete, ReportKind::kRelease}) {
      EXPECT_EQ(Service::Kind(s.Report(k, w, g.range, epoch, Key(99), 99)), "lease lost");
    }
  }
  StateCommit c = s.Pass();
  EXPECT_TRUE(c.ranges.empty());
  const RangeRecord* r = s.svc.table().Find(g.range);
  EXPECT_EQ(r->state, RangeState::kLeased);
  EXPECT_EQ(r->owner, "w1");
  EXPECT_EQ(r->rows, 0u);
  EXPECT_EQ(s.svc.metrics().lease_lost, 9u);
}

TEST(LeaseServiceTest, CompletionWithNextGrantsTheNextRangeAndARetryGetsTheSameOne) {
  Service s(3);
  s.Register("w1");
  GrantReply g1 = s.Lease("w1");
  auto r = s.Report(ReportKind::kComplete, "w1", g1.range, g1.epoch, Key(99), 100, /*next=*/true);
  ASSERT_EQ(Service::Kind(r), "grant");
  GrantReply g2 = std::get<GrantReply>(*r);
  EXPECT_NE(g2.range, g1.range);
  // Our answer was lost: the retried completion is idempotent and gets the
  // same next lease, not a third range.
  auto again =
      s.Report(ReportKind::kComplete, "w1", g1.range, g1.epoch, Key(99), 100, /*next=*/true);
  ASSERT_EQ(Service::Kind(again), "grant");
  EXPECT_EQ(std::get<GrantReply>(*again).range, g2.range);
  EXPECT_EQ(std::get<GrantReply>(*again).epoch, g2.epoch);
  EXPECT_EQ(s.svc.metrics().completions, 1u);
  EXPECT_EQ(s.svc.table().count(RangeState::kLeased), 1u);
  EXPECT_EQ(s.svc.table().count(RangeState::kDone), 1u);
}

TEST(LeaseServiceTest, RequestWaitsWhileRangesAreLeasedAndIsAnsweredWhenOneIsReleased) {
  Service s(1);
  s.Register("w1");
  s.Register("w2");
  GrantReply g = s.Lease("w1");
  EXPECT_EQ(Service::Kind(s.Ask("w2", /*may_wait=*/true)), "waiting");
  EXPECT_EQ(s.svc.waiting(), 1u);
  EXPECT_TRUE(s.svc.AnswerWaiting().empty());  // nothing came free yet
  ASSERT_EQ(Service::Kind(s.Report(ReportKind::kRelease, "w1", g.range, g.epoch, Key(5), 5)),
            "ack");
  auto answers = s.svc.AnswerWaiting();
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].worker, "w2");
  EXPECT_EQ(answers[0].request_id, s.rid - 1);  // the request that waited
  ASSERT_TRUE(std::holds_alternative<GrantReply>(answers[0].reply));
  const GrantReply& g2 = std::get<GrantReply>(answers[0].reply);
  EXPECT_EQ(g2.range, g.range);
  EXPECT_GT(g2.epoch, g.epoch);
  EXPECT_EQ(g2.cursor, Key(5));  // resumes after the released cursor
  EXPECT_EQ(g2.rows, 5u);
}

TEST(LeaseServiceTest, WaitingRequestIsAnsweredNoWorkAfterTheWaitLimit) {
  Service s(1);
  s.Register("w1");
  s.Register("w2");
  s.Lease("w1");
  EXPECT_EQ(Service::Kind(s.Ask("w2", true)), "waiting");
  s.clock.Advance(LeaseService::kLeaseWaitMs);
  auto answers = s.svc.AnswerWaiting();
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(Service::Kind(answers[0].reply), "nowork");
}

TEST(LeaseServiceTest, ExpiryReturnsTheRangeWithAnEventAndTheNextOwnerResumes) {
  Service s(1);
  s.Register("w1");
  s.Register("w2");
  GrantReply g = s.Lease("w1");
  s.Report(ReportKind::kHeartbeat, "w1", g.range, g.epoch, Key(30), 30);
  s.Pass();
  s.clock.Advance(kTtl);
  StateCommit c = s.Pass();
  ASSERT_EQ(c.events.size(), 1u);
  EXPECT_EQ(c.events[0].kind, "expire");
  EXPECT_EQ(c.events[0].worker, "w1");
  EXPECT_EQ(s.svc.metrics().expiries, 1u);
  GrantReply g2 = s.Lease("w2");
  EXPECT_EQ(g2.range, g.range);
  EXPECT_GT(g2.epoch, g.epoch);
  EXPECT_EQ(g2.cursor, Key(30));
  // The expired owner's late heartbeat is fenced.
  EXPECT_EQ(Service::Kind(s.Report(ReportKind::kHeartbeat, "w1", g.range, g.epoch, Key(60), 60)),
            "lease lost");
}

TEST(LeaseServiceTest, RevokeFencesTheEpochAndRegrants) {
  Service s(1);
  s.Register("w1");
  GrantReply g = s.Lease("w1");
  auto fenced = s.svc.Revoke(g.range);
  ASSERT_TRUE(fenced.ok());
  EXPECT_EQ(*fenced, g.epoch);
  EXPECT_FALSE(s.svc.Revoke(g.range).ok());  // not leased any more
  EXPECT_FALSE(s.svc.Revoke(99).ok());
  EXPECT_EQ(Service::Kind(s.Report(ReportKind::kHeartbeat, "w1", g.range, g.epoch, Key(1), 1)),
            "lease lost");
  GrantReply g2 = s.Lease("w1");
  EXPECT_GT(g2.epoch, g.epoch);
  EXPECT_EQ(s.svc.metrics().revokes, 1u);
}

TEST(LeaseServiceTest, DrainedWorkerFinishesItsBatchGetsNoMoreWorkAndTheDrainSurvivesARestart) {
  Service s(2);
  s.Register("w1");
  GrantReply g = s.Lease("w1");
  ASSERT_TRUE(s.svc.Drain("w1").ok());
  EXPECT_FALSE(s.svc.Drain("nobody").ok());
  auto ack = s.Report(ReportKind::kHeartbeat, "w1", g.range, g.epoch, Key(3), 3);
  ASSERT_EQ(Service::Kind(ack), "ack");
  EXPECT_TRUE(std::get<AckReply>(*ack).drain);
  s.Report(ReportKind::kRelease, "w1", g.range, g.epoch, Key(3), 3);
  EXPECT_EQ(Service::Kind(s.Ask("w1")), "nowork draining");
  EXPECT_EQ(s.svc.workers().CountLive(), 0u);  // a draining worker is not live
  StateCommit c = s.Pass();
  std::vector<WorkerRow> rows = c.workers;
  ASSERT_FALSE(rows.empty());
  EXPECT_EQ(rows.back().state, "draining");

  // A restarted coordinator loads the worker rows: still draining.
  Service restarted(2);
  JobMeta job = s.svc.job();
  std::vector<RangeRecord> ranges = s.svc.table().ranges();
  restarted.svc.Load(job, ranges, {rows.back()});
  restarted.clock.Set(s.clock.NowMs());
  EXPECT_EQ(Service::Kind(restarted.Ask("w1")), "nowork draining");
}

TEST(LeaseServiceTest, PauseHoldsGrantsAndResumeReleasesThem) {
  Service s(2);
  s.Register("w1");
  EXPECT_TRUE(s.svc.SetPaused(true));
  EXPECT_FALSE(s.svc.SetPaused(true));  // no change, no event
  EXPECT_EQ(Service::Kind(s.Ask("w1")), "nowork paused");
  EXPECT_TRUE(s.svc.SetPaused(false));
  EXPECT_EQ(Service::Kind(s.Ask("w1")), "grant");
  StateCommit c = s.Pass();
  ASSERT_NE(c.job, nullptr);
  EXPECT_FALSE(c.job->paused);
  int pauses = 0;
  for (const Event& e : c.events) pauses += e.kind == "pause" || e.kind == "resume";
  EXPECT_EQ(pauses, 2);
}

TEST(LeaseServiceTest, ThrottleIsSharedAmongTheLeasesHeld) {
  Service s(4);
  s.Register("w1");
  s.Register("w2");
  s.svc.SetThrottle(1000);
  GrantReply a = s.Lease("w1");
  EXPECT_EQ(a.rows_per_second, 1000u);
  s.Lease("w2");
  auto ack = s.Report(ReportKind::kHeartbeat, "w1", a.range, a.epoch, Key(1), 1);
  EXPECT_EQ(std::get<AckReply>(*ack).rows_per_second, 500u);
  s.svc.SetThrottle(0);
  ack = s.Report(ReportKind::kHeartbeat, "w1", a.range, a.epoch, Key(2), 2);
  EXPECT_EQ(std::get<AckReply>(*ack).rows_per_second, 0u);
}

TEST(LeaseServiceTest, LastCompletionBoundaryClearAndVersionBumpAreOneChangeSet) {
  Service s(2);
  s.Register("w1");
  GrantReply g1 = s.Lease("w1");
  s.Report(ReportKind::kComplete, "w1", g1.range, g1.epoch, Key(99), 100);
  StateCommit c1 = s.Pass();
  ASSERT_NE(c1.job, nullptr);
  EXPECT_EQ(c1.job->phase, JobPhase::kCopying);
  EXPECT_FALSE(c1.job->boundary.empty());  // the done prefix advanced
  GrantReply g2 = s.Lease("w1");
  s.Report(ReportKind::kComplete, "w1", g2.range, g2.epoch, Key(199), 100);
  StateCommit c2 = s.Pass();
  ASSERT_NE(c2.job, nullptr);
  EXPECT_EQ(c2.job->phase, JobPhase::kComplete);
  EXPECT_EQ(c2.job->current_version, 2);
  EXPECT_TRUE(c2.job->boundary.empty());
  ASSERT_EQ(c2.ranges.size(), 1u);
  EXPECT_EQ(c2.ranges[0]->state, RangeState::kDone);
  int finalizes = 0;
  for (const Event& e : c2.events) finalizes += e.kind == "finalize";
  EXPECT_EQ(finalizes, 1);
  // Nobody gets work now; every live worker is told it is over.
  EXPECT_EQ(Service::Kind(s.Ask("w1")), "nowork complete");
  EXPECT_TRUE(s.svc.workers().AllLiveToldDone());
  EXPECT_TRUE(s.Pass().events.empty());  // finalized once
}

TEST(LeaseServiceTest, PermanentErrorsFailTheRangeAndTheJob) {
  Service s(1);
  s.Register("w1");
  for (int i = 0; i < 3; ++i) {
    GrantReply g = s.Lease("w1");
    ErrorReport e{LeaseRef{g.range, g.epoch, "w1"}, /*permanent=*/true, "constraint failed"};
    EXPECT_EQ(Service::Kind(s.svc.ReportError(e)), "ack");
  }
  s.Pass();
  EXPECT_TRUE(s.svc.failed());
  EXPECT_NE(s.svc.job().failure.find("constraint failed"), std::string::npos);
  EXPECT_EQ(s.svc.RetryFailed(), 1u);
  EXPECT_FALSE(s.svc.failed());
}

TEST(LeaseServiceTest, WorkerRefusingItsStoresIsGoneAndNamedInLastError) {
  Service s(1);
  s.Register("w1");
  ErrorReport e{LeaseRef{0, 0, "w1"}, true, "new store holds no record of plan plan1"};
  EXPECT_EQ(Service::Kind(s.svc.ReportError(e)), "ack");
  EXPECT_NE(s.svc.last_range_error().find("worker w1"), std::string::npos);
  EXPECT_EQ(s.svc.workers().CountLive(), 0u);
}

// Found by the protocol model (tests/model): a completion held waiting for
// the next range, whose commit then failed, must not be answered after the
// rollback ("your lease again" would send the worker back over a range it
// believes it completed, and its batches could land after the range is
// done): the held requests are dropped with the rolled-back changes.
TEST(LeaseServiceTest, HeldRequestsAreDroppedWithAFailedCommit) {
  Service s(1);
  s.Register("w1");
  s.Register("w2");
  GrantReply g = s.Lease("w1");
  StateCommit committed = s.Pass();
  const JobMeta job = s.svc.job();
  const std::vector<RangeRecord> ranges = s.svc.table().ranges();  // as committed
  // w2 waits for a range; w1 completes the last one (held for the next).
  EXPECT_EQ(Service::Kind(s.Ask("w2", /*may_wait=*/true)), "waiting");
  (void)s.Report(ReportKind::kComplete, "w1", g.range, g.epoch, Key(99), 100, /*next=*/true,
                 /*may_wait=*/true);
  StateCommit lost = s.Pass();  // this commit fails: back to what the state holds
  s.svc.Restore(job, ranges);
  EXPECT_EQ(s.svc.waiting(), 0u);
  EXPECT_TRUE(s.svc.AnswerWaiting().empty());
  EXPECT_EQ(s.svc.table().Find(g.range)->state, RangeState::kLeased);
  (void)committed;
  (void)lost;
}

// Found by the protocol model: a worker restarted with the same --id (or two
// processes sharing one) must never get its old lease back under the same
// epoch. Registering fences every lease its id still holds.
TEST(LeaseServiceTest, ReRegisteringFencesTheLeasesTheIdStillHolds) {
  Service s(2);
  s.Register("w1");
  GrantReply old = s.Lease("w1");
  s.Pass();
  s.Register("w1");  // the process was restarted with the same id
  StateCommit c = s.Pass();
  EXPECT_EQ(s.svc.table().Find(old.range)->state, RangeState::kPending);
  bool fenced_event = false;
  for (const Event& e : c.events) fenced_event |= e.kind == "release" && e.range == old.range;
  EXPECT_TRUE(fenced_event);
  GrantReply fresh = s.Lease("w1");
  EXPECT_EQ(fresh.range, old.range);
  EXPECT_GT(fresh.epoch, old.epoch);
  // The old process's reports are lease lost.
  EXPECT_EQ(Service::Kind(s.Report(ReportKind::kComplete, "w1", old.range, old.epoch, Key(1), 1)),
            "lease lost");
  EXPECT_EQ(
      Service::Kind(s.Report(ReportKind::kHeartbeat, "w1", fresh.range, fresh.epoch, Key(1), 1)),
      "ack");
  // The old epoch's late report did not make the service forget the newer
  // lease: a retried request (its grant reply lost) gets that lease again,
  // not a second range.
  GrantReply again = s.Lease("w1");
  EXPECT_EQ(again.range, fresh.range);
  EXPECT_EQ(again.epoch, fresh.epoch);
  EXPECT_EQ(s.svc.table().Find(3 - fresh.range)->state, RangeState::kPending);
}

// The one rule for "live": registered, neither gone nor draining, heard
// from within the policy's liveness window.
TEST(LeaseServiceTest, LiveWorkersAreHeardFromWithinTheLivenessWindowAndNotGoneOrDraining) {
  Service s(4);
  for (const char* w : {"a", "b", "c", "d"}) s.Register(w);
  EXPECT_EQ(s.svc.workers().CountLive(), 4u);
  ASSERT_TRUE(s.svc.Drain("b").ok());
  GrantReply g = s.Lease("c");
  s.Report(ReportKind::kRelease, "c", g.range, g.epoch, "", 0);  // not leaving: still live
  ProgressReport leave;
  leave.kind = ReportKind::kRelease;
  g = s.Lease("d");
  leave.lease = LeaseRef{g.range, g.epoch, "d"};
  leave.leaving = true;
  s.svc.Report(++s.rid, leave, false);
  EXPECT_EQ(s.svc.workers().CountLive(), 2u);  // a, c
  s.clock.Advance(3 * kTtl);
  s.Ask("a");  // heard from
  EXPECT_EQ(s.svc.workers().CountLive(), 2u);
  s.clock.Advance(1);  // c last heard 3 TTLs + 1 ms ago
  EXPECT_EQ(s.svc.workers().CountLive(), 1u);
  const WorkerInfo* c = s.svc.workers().Find("c");
  EXPECT_STREQ(s.svc.workers().StateOf(*c), "gone");
}

// ---- splitting a leased range in flight ----

// One range of 100,000 estimated rows, keys 0..99999.
std::vector<RangeRecord> BigRange() {
  RangeRecord r;
  r.id = 1;
  r.table = "t";
  r.est_rows = 100000;
  return {r};
}

struct SplitService : Service {
  SplitService() : Service(1) {
    JobMeta job;
    job.plan_id = "plan1";
    svc.Load(job, BigRange(), {});
  }
  std::optional<Reply> Heartbeat(const std::string& w, const GrantReply& g, int64_t cursor,
                                 uint64_t rows, const std::string& split_key = "",
                                 uint64_t split_rows = 0) {
    ProgressReport p;
    p.kind = ReportKind::kHeartbeat;
    p.lease = LeaseRef{g.range, g.epoch, w};
    const std::string c = Key(cursor);
    p.progress = Progress{c, rows, rows, 0};
    p.features = kFeatureVerify | kFeatureSplit;
    p.split_key = split_key;
    p.split_rows = split_rows;
    return svc.Report(++rid, p, false);
  }
  GrantReply LeaseSplitting(const std::string& w) {
    auto r = svc.RequestLease(++rid, LeaseRequest{w, kFeatureVerify | kFeatureSplit}, false);
    EXPECT_TRUE(r && std::holds_alternative<GrantReply>(*r));
    return r && std::holds_alternative<GrantReply>(*r) ? std::get<GrantReply>(*r) : GrantReply{};
  }
};

TEST(LeaseServiceTest, IdleWorkersGetTheTailOfASlowRangeSplitAtTheOwnersKey) {
  SplitService s;
  s.svc.Register(RegisterRequest{"w1", "h", 1, "t", false, kFeatureVerify | kFeatureSplit});
  s.svc.Register(RegisterRequest{"w2", "h", 2, "t", false, kFeatureVerify | kFeatureSplit});
  GrantReply g = s.LeaseSplitting("w1");
  s.clock.Advance(2000);
  auto ack = s.Heartbeat("w1", g, 9999, 10000);  // 5,000 rows/s: 18 s to go
  ASSERT_EQ(Service::Kind(ack), "ack");
  EXPECT_FALSE(std::get<AckReply>(*ack).split);  // nobody waits: no split
  EXPECT_EQ(std::get<AckReply>(*ack).waiting, 0u);
  EXPECT_TRUE(std::get<AckReply>(*ack).hi_valid);
  // w2 finds nothing pending and waits; the policy asks w1 to split.
  EXPECT_EQ(Service::Kind(s.svc.RequestLease(++s.rid, LeaseRequest{"w2", 3}, true)), "waiting");
  s.Pass();
  ack = s.Heartbeat("w1", g, 10999, 11000);
  ASSERT_EQ(Service::Kind(ack), "ack");
  const AckReply asked = std::get<AckReply>(*ack);
  ASSERT_TRUE(asked.split);
  EXPECT_EQ(asked.waiting, 1u);  // the owner heartbeats 4x as often meanwhile
  // Asked at 10,000 rows to keep half of the 90,000 left; 1,000 more rows
  // are done when the ask arrives: half of the 89,000 left now.
  EXPECT_EQ(asked.split_keep, (100000u - 11000) / 2);
  // w1 proposes the key 44,500 rows after its cursor; the split commits.
  ack = s.Heartbeat("w1", g, 10999, 11000, Key(55499), 44500);
  ASSERT_EQ(Service::Kind(ack), "ack");
  EXPECT_EQ(std::get<AckReply>(*ack).hi, Key(55499));  // the answer: the range ends there
  StateCommit c = s.Pass();
  ASSERT_EQ(c.inserted.size(), 1u);
  EXPECT_EQ(c.inserted[0]->parent, 1u);
  EXPECT_EQ(c.inserted[0]->lo, Key(55499));
  EXPECT_EQ(c.inserted[0]->hi, "");
  EXPECT_EQ(c.inserted[0]->est_rows, 100000u - 11000 - 44500);
  int splits = 0;
  for (const Event& e : c.events) splits += e.kind == "split";
  EXPECT_EQ(splits, 1);
  const RangeRecord* head = s.svc.table().Find(1);
  EXPECT_EQ(head->hi, Key(55499));
  EXPECT_EQ(head->est_rows, 11000u + 44500);
  EXPECT_EQ(head->state, RangeState::kLeased);
  EXPECT_EQ(head->epoch, g.epoch);  // the owner keeps the head under its epoch
  // The waiting worker gets the tail.
  auto answers = s.svc.AnswerWaiting();
  ASSERT_EQ(answers.size(), 1u);
  ASSERT_TRUE(std::holds_alternative<GrantReply>(answers[0].reply));
  const GrantReply tail = std::get<GrantReply>(answers[0].reply);
  EXPECT_EQ(tail.range, 2u);
  EXPECT_EQ(tail.parent, 1u);
  EXPECT_EQ(tail.lo, Key(55499));
  EXPECT_GT(tail.epoch, g.epoch);
  // Key order: the tail right after its head.
  EXPECT_EQ(s.svc.table().order(), (std::vector<uint64_t>{1, 2}));
}

// The owner never hears the answer to its proposal (the ack is lost): a
// re-sent proposal gets the same answer (no second tail), and a report
// whose cursor is past the new end — an owner that copied on regardless —
// is fenced: the lease is revoked and the head resumes from its last cursor
// inside it.
TEST(LeaseServiceTest, SplitWhoseAnswerIsLostCannotBeCopiedPast) {
  SplitService s;
  s.svc.Register(RegisterRequest{"w1", "h", 1, "t", false, 3});
  s.svc.Register(RegisterRequest{"w2", "h", 2, "t", false, 3});
  GrantReply g = s.LeaseSplitting("w1");
  s.clock.Advance(2000);
  s.Heartbeat("w1", g, 9999, 10000);
  EXPECT_EQ(Service::Kind(s.svc.RequestLease(++s.rid, LeaseRequest{"w2", 3}, true)), "waiting");
  s.Pass();
  ASSERT_TRUE(std::get<AckReply>(*s.Heartbeat("w1", g, 10999, 11000)).split);
  (void)s.Heartbeat("w1", g, 10999, 11000, Key(55499), 44500);  // the answer is lost
  s.Pass();
  GrantReply tail = std::get<GrantReply>(s.svc.AnswerWaiting().at(0).reply);
  ASSERT_EQ(tail.range, 2u);
  // The owner repeats its proposal: the same answer, nothing new.
  auto again = s.Heartbeat("w1", g, 20999, 21000, Key(55499), 44500);
  ASSERT_EQ(Service::Kind(again), "ack");
  EXPECT_EQ(std::get<AckReply>(*again).hi, Key(55499));
  StateCommit c = s.Pass();
  EXPECT_TRUE(c.inserted.empty());
  EXPECT_EQ(s.svc.table().ranges().size(), 2u);
  // An owner that copied past the split: fenced, its lease revoked; the
  // head keeps the last cursor inside it.
  EXPECT_EQ(Service::Kind(s.Heartbeat("w1", g, 60000, 61000)), "lease lost");
  const RangeRecord* head = s.svc.table().Find(1);
  EXPECT_EQ(head->state, RangeState::kPending);
  EXPECT_EQ(head->cursor, Key(20999));
  EXPECT_EQ(head->rows, 21000u);
  // Its completion too (the lease is gone).
  EXPECT_EQ(Service::Kind(s.Report(ReportKind::kComplete, "w1", 1, g.epoch, Key(99999), 100000)),
            "lease lost");
  // The head is granted again ending at the split.
  GrantReply again_head = s.LeaseSplitting("w1");
  EXPECT_EQ(again_head.range, 1u);
  EXPECT_EQ(again_head.hi, Key(55499));
  EXPECT_EQ(again_head.cursor, Key(20999));
  EXPECT_GT(again_head.epoch, tail.epoch);
}

TEST(LeaseServiceTest, UnaskedOrBadSplitProposalsAreRefused) {
  SplitService s;
  s.svc.Register(RegisterRequest{"w1", "h", 1, "t", false, 3});
  GrantReply g = s.LeaseSplitting("w1");
  s.clock.Advance(2000);
  // Not asked: the ack keeps the old end.
  auto ack = s.Heartbeat("w1", g, 9999, 10000, Key(50000), 40000);
  EXPECT_EQ(std::get<AckReply>(*ack).hi, "");
  EXPECT_EQ(s.svc.table().ranges().size(), 1u);
  // Asked (forced), but the key is not beyond the cursor.
  ServiceSettings forced = Service::Settings();
  forced.force_split_interval_ms = 100;
  LeaseService f(forced, &s.clock);
  JobMeta job;
  job.plan_id = "p";
  f.Load(job, BigRange(), {});
  f.Register(RegisterRequest{"w1", "h", 1, "t", false, 3});
  auto r = f.RequestLease(1, LeaseRequest{"w1", 3}, false);
  const GrantReply fg = std::get<GrantReply>(*r);
  f.Tick();
  ProgressReport p;
  p.kind = ReportKind::kHeartbeat;
  p.lease = LeaseRef{fg.range, fg.epoch, "w1"};
  const std::string cursor = Key(5000);
  p.progress = Progress{cursor, 5001, 0, 0};
  p.features = 3;
  auto a = f.Report(2, p, false);
  ASSERT_TRUE(std::get<AckReply>(*a).split);
  const std::string behind = Key(100);
  p.split_key = behind;
  a = f.Report(3, p, false);
  EXPECT_EQ(std::get<AckReply>(*a).hi, "");
  EXPECT_EQ(f.table().ranges().size(), 1u);
}

// ---- a reference model under random schedules ----
//
// Several workers send random requests — lease, heartbeat, complete,
// release, stale reports with old epochs — while the clock jumps and leases
// expire. A simple model predicts every answer from its own map of range ->
// (state, owner, epoch); the service must agree, and after every pass:
// epochs only grow, the boundary is the done prefix, the job finalizes once
// and only when every range is done.
struct ModelRange {
  RangeState state = RangeState::kPending;
  std::string owner;
  uint64_t epoch = 0;
  int64_t deadline = 0;
};

TEST(LeaseServiceTest, AgreesWithAReferenceModelUnderRandomSchedules) {
  int completed = 0;
  uint64_t lost = 0, expired = 0;
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    std::mt19937_64 rng(seed);
    const size_t n = 1 + rng() % 6;
    Service s(n);
    std::map<uint64_t, ModelRange> model;
    for (uint64_t i = 1; i <= n; ++i) model[i] = ModelRange{};
    const std::vector<std::string> workers = {"w1", "w2", "w3"};
    for (const auto& w : workers) s.Register(w);
    std::map<std::string, std::pair<uint64_t, uint64_t>> held;  // worker -> (range, epoch)
    uint64_t last_epoch = 0;
    int finalizes = 0;
    for (int step = 0; step < 400 && !s.svc.complete(); ++step) {
      const std::string& w = workers[rng() % workers.size()];
      const int op = static_cast<int>(rng() % 7);
      if (op == 0 || !held.count(w)) {
        auto r = s.Ask(w);
        if (auto* g = r ? std::get_if<GrantReply>(&*r) : nullptr) {
          ModelRange& m = model[g->range];
          if (m.state == RangeState::kLeased && m.owner == w && m.epoch == g->epoch) {
            held[w] = {g->range, g->epoch};  // our grant, resent
          } else {
            EXPECT_EQ(m.state, RangeState::kPending) << "seed " << seed;
            EXPECT_GT(g->epoch, last_epoch) << "seed " << seed;
            last_epoch = g->epoch;
            m = ModelRange{RangeState::kLeased, w, g->epoch, s.clock.NowMs() + kTtl};
            held[w] = {g->range, g->epoch};
          }
        } else {
          for (const auto& [id, m] : model) {
            EXPECT_NE(m.state, RangeState::kPending) << "seed " << seed << ": nowork with pending";
          }
        }
      } else {
        auto [range, epoch] = held[w];
        if (op == 6 && epoch > 1) --epoch;  // a stale report
        const ReportKind kind = op <= 2   ? ReportKind::kHeartbeat
                                : op == 3 ? ReportKind::kRelease
                                          : ReportKind::kComplete;
        ModelRange& m = model[range];
        const bool owns = m.state == RangeState::kLeased && m.owner == w && m.epoch == epoch;
        const bool done_retry = kind == ReportKind::kComplete && m.state == RangeState::kDone &&
                                m.owner == w && m.epoch == epoch;
        auto r = s.Report(kind, w, range, epoch, Key(static_cast<int64_t>(step)), step);
        if (owns || done_retry) {
          EXPECT_EQ(Service::Kind(r), "ack") << "seed " << seed << " step " << step;
          if (owns && kind == ReportKind::kHeartbeat) m.deadline = s.clock.NowMs() + kTtl;
          if (owns && kind == ReportKind::kRelease) m = ModelRange{RangeState::kPending, "", epoch};
          if (owns && kind == ReportKind::kComplete) m.state = RangeState::kDone;
        } else {
          EXPECT_EQ(Service::Kind(r), "lease lost") << "seed " << seed << " step " << step;
        }
        if (kind != ReportKind::kHeartbeat || !owns) held.erase(w);
      }
      if (rng() % 5 == 0) s.clock.Advance(static_cast<int64_t>(rng() % (kTtl + 2000)));
      StateCommit c = s.Pass();
      for (auto& [id, m] : model) {
        if (m.state == RangeState::kLeased && m.deadline <= s.clock.NowMs()) {
          m = ModelRange{RangeState::kPending, "", m.epoch};
        }
      }
      for (const Event& e : c.events) finalizes += e.kind == "finalize";
      // The service's ranges are the model's.
      size_t prefix = 0;
      bool in_prefix = true;
      for (const auto& [id, m] : model) {
        const RangeRecord* r = s.svc.table().Find(id);
        ASSERT_EQ(r->state, m.state) << "seed " << seed << " step " << step << " range " << id;
        if (m.state == RangeState::kLeased) {
          EXPECT_EQ(r->owner, m.owner);
          EXPECT_EQ(r->epoch, m.epoch);
        }
        if (in_prefix && m.state == RangeState::kDone) {
          ++prefix;
        } else {
          in_prefix = false;
        }
      }
      EXPECT_EQ(s.svc.table().done_prefix(), prefix) << "seed " << seed;
      EXPECT_LE(s.svc.job().last_epoch, s.svc.table().last_epoch());
      const bool all_done = prefix == n;
      EXPECT_EQ(s.svc.complete(), all_done) << "seed " << seed;
      if (all_done) {
        EXPECT_EQ(s.svc.job().current_version, 2);
      }
    }
    EXPECT_LE(finalizes, 1) << "seed " << seed;
    EXPECT_EQ(finalizes == 1, s.svc.complete()) << "seed " << seed;
    completed += s.svc.complete();
    lost += s.svc.metrics().lease_lost;
    expired += s.svc.metrics().expiries;
  }
  // The schedules exercised what they are for.
  EXPECT_GE(completed, 20);
  EXPECT_GE(lost, 40u);
  EXPECT_GE(expired, 10u);
  std::cout << "model: " << completed << " of 40 jobs completed, " << lost << " lease lost, "
            << expired << " expiries\n";
}

// The same kind of reference model with splits forced on every lease: owners
// propose split keys (valid or not) at random, and report cursors that are
// sometimes past their range's end. Acceptance is observed (the ack's hi),
// and checked against what the model allows; after every pass the ranges
// must match the model and still tile the key space in key order.
struct SplitModelRange {
  RangeState state = RangeState::kPending;
  std::string owner;
  uint64_t epoch = 0;
  int64_t deadline = 0;
  int64_t lo = INT64_MIN, hi = INT64_MAX;  // INT64_MIN / MAX: table start / end
  std::optional<int64_t> cursor;
  bool split_head = false;
};

std::string Bound(int64_t k, int64_t open) { return k == open ? "" : Key(k); }

TEST(LeaseServiceTest, AgreesWithAReferenceModelWithSplitsUnderRandomSchedules) {
  int completed = 0, splits = 0, past_end = 0;
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    std::mt19937_64 rng(seed);
    const size_t n = 1 + rng() % 4;
    ServiceSettings settings = Service::Settings();
    settings.force_split_interval_ms = 1;
    settings.split.min_rows = 1;
    FakeClock clock;
    LeaseService svc(settings, &clock);
    std::vector<RangeRecord> plan = Plan(n);
    for (RangeRecord& r : plan) r.est_rows = 1000000;
    JobMeta job;
    job.plan_id = "p";
    svc.Load(job, plan, {});
    std::map<uint64_t, SplitModelRange> model;
    for (uint64_t i = 1; i <= n; ++i) {
      SplitModelRange m;
      m.lo = i == 1 ? INT64_MIN : static_cast<int64_t>((i - 1) * 100);
      m.hi = i == n ? INT64_MAX : static_cast<int64_t>(i * 100);
      model[i] = m;
    }
    const std::vector<std::string> workers = {"w1", "w2", "w3"};
    for (const auto& w : workers) svc.Register(RegisterRequest{w, "h", 1, "t", false, 3});
    std::map<std::string, std::pair<uint64_t, uint64_t>> held;
    uint64_t rid = 0;
    int finalizes = 0;
    auto report = [&](ReportKind kind, const std::string& w, uint64_t range, uint64_t epoch,
                      int64_t cursor, const std::string& split_key) {
      ProgressReport p;
      p.kind = kind;
      p.lease = LeaseRef{range, epoch, w};
      const std::string c = Key(cursor);
      p.progress = Progress{c, 1, 1, 1};
      p.features = 3;
      p.split_key = split_key;
      p.split_rows = 1;
      return svc.Report(++rid, p, false);
    };
    for (int step = 0; step < 500 && !svc.complete(); ++step) {
      const std::string& w = workers[rng() % workers.size()];
      const int op = static_cast<int>(rng() % 8);
      if (op == 0 || !held.count(w)) {
        auto r = svc.RequestLease(++rid, LeaseRequest{w, 3}, false);
        if (auto* g = r ? std::get_if<GrantReply>(&*r) : nullptr) {
          SplitModelRange& m = model.at(g->range);
          if (!(m.state == RangeState::kLeased && m.owner == w && m.epoch == g->epoch)) {
            ASSERT_EQ(m.state, RangeState::kPending) << "seed " << seed;
            m.state = RangeState::kLeased;
            m.owner = w;
            m.epoch = g->epoch;
            m.deadline = clock.NowMs() + kTtl;
          }
          EXPECT_EQ(g->lo, Bound(m.lo, INT64_MIN)) << "seed " << seed;
          EXPECT_EQ(g->hi, Bound(m.hi, INT64_MAX)) << "seed " << seed;
          held[w] = {g->range, g->epoch};
        }
      } else {
        auto [range, epoch] = held[w];
        SplitModelRange& m = model.at(range);
        const bool owns = m.state == RangeState::kLeased && m.owner == w && m.epoch == epoch;
        const int64_t floor = m.cursor ? *m.cursor : (m.lo == INT64_MIN ? -50 : m.lo);
        const int64_t top = m.hi == INT64_MAX ? floor + 200 : m.hi;
        // A cursor inside the range, sometimes past its end.
        const auto span = [](int64_t n) { return static_cast<uint64_t>(std::max<int64_t>(1, n)); };
        const int64_t cursor = floor + 1 + static_cast<int64_t>(rng() % span(top - floor + 20));
        if (op == 7) {
          // A split proposal at a random key (sometimes behind the cursor
          // or past the end: refused).
          const int64_t at = floor + static_cast<int64_t>(rng() % span(top - floor + 10));
          auto r = report(ReportKind::kHeartbeat, w, range, epoch, floor, Key(at));
          if (!owns) {
            EXPECT_EQ(Service::Kind(r), "lease lost") << "seed " << seed;
            held.erase(w);
          } else {
            ASSERT_EQ(Service::Kind(r), "ack") << "seed " << seed << " step " << step;
            const AckReply& a = std::get<AckReply>(*r);
            if (m.cursor) m.cursor = floor;
            m.deadline = clock.NowMs() + kTtl;
            if (a.hi == Key(at) && m.hi != at) {
              // Accepted: only strictly inside what is left.
              EXPECT_GT(at, floor) << "seed " << seed;
              EXPECT_LT(at, m.hi) << "seed " << seed;
              SplitModelRange tail;
              tail.lo = at;
              tail.hi = m.hi;
              m.hi = at;
              m.split_head = true;
              model[model.size() + 1] = tail;
              ++splits;
            } else {
              EXPECT_EQ(a.hi, Bound(m.hi, INT64_MAX)) << "seed " << seed;
            }
          }
          if (m.cursor || owns) m.cursor = floor;
        } else {
          const ReportKind kind = op <= 3   ? ReportKind::kHeartbeat
                                  : op == 4 ? ReportKind::kRelease
                                            : ReportKind::kComplete;
          const bool done_retry = kind == ReportKind::kComplete && m.state == RangeState::kDone &&
                                  m.owner == w && m.epoch == epoch;
          auto r = report(kind, w, range, epoch, cursor, "");
          if (owns && m.split_head && cursor >= m.hi) {
            // Past the end its split gave it: fenced, revoked.
            EXPECT_EQ(Service::Kind(r), "lease lost") << "seed " << seed << " step " << step;
            m.state = RangeState::kPending;
            m.owner.clear();
            ++past_end;
            held.erase(w);
          } else if (owns || done_retry) {
            EXPECT_EQ(Service::Kind(r), "ack") << "seed " << seed << " step " << step;
            if (owns) m.cursor = cursor;
            if (owns && kind == ReportKind::kHeartbeat) m.deadline = clock.NowMs() + kTtl;
            if (owns && kind == ReportKind::kRelease) {
              m.state = RangeState::kPending;
              m.owner.clear();
            }
            if (owns && kind == ReportKind::kComplete) m.state = RangeState::kDone;
            if (kind != ReportKind::kHeartbeat) held.erase(w);
          } else {
            EXPECT_EQ(Service::Kind(r), "lease lost") << "seed " << seed << " step " << step;
            held.erase(w);
          }
        }
      }
      if (rng() % 5 == 0) clock.Advance(static_cast<int64_t>(rng() % (kTtl + 2000)));
      svc.Tick();
      StateCommit c = svc.TakeCommit();
      for (auto& [id, m] : model) {
        if (m.state == RangeState::kLeased && m.deadline <= clock.NowMs()) {
          m.state = RangeState::kPending;
          m.owner.clear();
        }
      }
      for (const Event& e : c.events) finalizes += e.kind == "finalize";
      // The service's ranges are the model's, and tile the key space.
      ASSERT_EQ(svc.table().ranges().size(), model.size()) << "seed " << seed;
      for (const auto& [id, m] : model) {
        const RangeRecord* r = svc.table().Find(id);
        ASSERT_EQ(r->state, m.state) << "seed " << seed << " step " << step << " range " << id;
        EXPECT_EQ(r->lo, Bound(m.lo, INT64_MIN));
        EXPECT_EQ(r->hi, Bound(m.hi, INT64_MAX));
        if (m.state == RangeState::kLeased) {
          EXPECT_EQ(r->owner, m.owner);
          EXPECT_EQ(r->epoch, m.epoch);
        }
      }
      const std::vector<uint64_t>& order = svc.table().order();
      ASSERT_EQ(order.size(), model.size());
      size_t prefix = 0;
      bool in_prefix = true;
      for (size_t i = 0; i < order.size(); ++i) {
        const SplitModelRange& m = model.at(order[i]);
        if (i == 0) {
          EXPECT_EQ(m.lo, INT64_MIN) << "seed " << seed;
        }
        if (i + 1 < order.size()) {
          EXPECT_EQ(m.hi, model.at(order[i + 1]).lo) << "seed " << seed << ": a gap or overlap";
        } else {
          EXPECT_EQ(m.hi, INT64_MAX) << "seed " << seed;
        }
        if (in_prefix && m.state == RangeState::kDone) {
          ++prefix;
        } else {
          in_prefix = false;
        }
      }
      EXPECT_EQ(svc.table().done_prefix(), prefix) << "seed " << seed;
      EXPECT_EQ(svc.complete(), prefix == model.size()) << "seed " << seed;
    }
    EXPECT_LE(finalizes, 1) << "seed " << seed;
    completed += svc.complete();
  }
  EXPECT_GE(completed, 10);
  EXPECT_GE(splits, 20);
  EXPECT_GE(past_end, 5);
  std::cout << "model with splits: " << completed << " of 40 jobs completed, " << splits
            << " splits, " << past_end << " owners fenced past their new end\n";
}

}  // namespace
}  // namespace ferry
