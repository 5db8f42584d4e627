// LeaseTable: the range state machine with an injected clock.
#include "coordinator/lease_table.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <map>
#include <random>

#include "common/key_codec.h"

namespace ferry {
namespace {

constexpr int64_t kTtl = 10000;

std::vector<RangeRecord> Plan(size_t n, const std::string& table = "t") {
  std::vector<RangeRecord> out;
  for (size_t i = 0; i < n; ++i) {
    RangeRecord r;
    r.id = i + 1;
    r.table = table;
    r.lo = i == 0 ? "" : EncodeKey({Value{static_cast<int64_t>(i * 100)}});
    r.hi = i + 1 == n ? "" : EncodeKey({Value{static_cast<int64_t>((i + 1) * 100)}});
    out.push_back(r);
  }
  return out;
}

Progress At(const std::string& cursor, uint64_t rows) {
  return Progress{cursor, rows, rows * 10, rows};
}

TEST(LeaseTableTest, GrantTakesFirstPendingWithIncreasingEpochs) {
  FakeClock clock;
  LeaseTable t(&clock, kTtl);
  t.Load(Plan(3), 0);
  const RangeRecord* a = t.Grant("w1");
  const RangeRecord* b = t.Grant("w2");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(a->id, 1u);
  EXPECT_EQ(b->id, 2u);
  EXPECT_LT(a->epoch, b->epoch);
  EXPECT_EQ(a->deadline_ms, clock.NowMs() + kTtl);
  EXPECT_EQ(t.count(RangeState::kLeased), 2u);
}

TEST(LeaseTableTest, NoGrantWhileUnexpiredLeaseIsHeld) {
  FakeClock clock;
  LeaseTable t(&clock, kTtl);
  t.Load(Plan(1), 0);
  ASSERT_NE(t.Grant("w1"), nullptr);
  clock.Advance(kTtl - 1);
  EXPECT_TRUE(t.ExpireDue().empty());
  EXPECT_EQ(t.Grant("w2"), nullptr);
}

TEST(LeaseTableTest, ExpiredLeaseIsRegrantedWithHigherEpochKeepingCursor) {
  FakeClock clock;
  LeaseTable t(&clock, kTtl);
  t.Load(Plan(1), 41);
  const RangeRecord* r = t.Grant("w1");
  uint64_t first = r->epoch;
  EXPECT_EQ(first, 42u);
  std::string cursor = EncodeKey({Value{int64_t{57}}});
  ASSERT_TRUE(t.Heartbeat(1, first, "w1", At(cursor, 57)).ok());
  clock.Advance(kTtl);
  auto expired = t.ExpireDue();
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0].owner, "w1");
  r = t.Grant("w2");
  ASSERT_NE(r, nullptr);
  EXPECT_GT(r->epoch, first);
  EXPECT_EQ(r->cursor, cursor);
  EXPECT_EQ(r->rows, 57u);
}

// The stall clock counts leased time without the cursor moving across
// re-grants: a range that fails on every lease (a full disk) or whose owners
// keep expiring is stalled, while time spent pending is not counted, and
// moving the cursor starts it over.
TEST(LeaseTableTest, StallTimeAccumulatesAcrossRegrantsUntilTheCursorMoves) {
  FakeClock clock;
  LeaseTable t(&clock, kTtl);
  t.Load(Plan(2), 0);
  constexpr int64_t kStall = 30000;
  for (int i = 0; i < 8; ++i) {
    const RangeRecord* r = t.Grant("w");
    ASSERT_EQ(r->id, 1u);
    clock.Advance(4000);
    ASSERT_TRUE(t.ReportError(1, r->epoch, "w", /*permanent=*/false, "disk full").ok());
    clock.Advance(60000);  // pending: not counted
  }
  const RangeRecord* r = t.Grant("w");
  ASSERT_EQ(r->id, 1u);
  EXPECT_EQ(r->StalledForMs(clock.NowMs()), 8 * 4000);
  EXPECT_EQ(r->errors_since_progress, 8u);
  EXPECT_EQ(t.CountStalled(kStall), 1u);
  EXPECT_EQ(t.CountStalled(8 * 4000 + 1), 0u);

  // An expired owner adds its whole lease.
  clock.Advance(kTtl);
  ASSERT_EQ(t.ExpireDue().size(), 1u);
  r = t.Grant("w2");
  EXPECT_EQ(r->StalledForMs(clock.NowMs()), 8 * 4000 + kTtl);

  // Progress starts the clock over.
  clock.Advance(1000);
  ASSERT_TRUE(t.Heartbeat(1, r->epoch, "w2", At(EncodeKey({Value{int64_t{7}}}), 7)).ok());
  EXPECT_EQ(r->StalledForMs(clock.NowMs()), 0);
  EXPECT_EQ(r->errors_since_progress, 0u);
  EXPECT_EQ(t.CountStalled(kStall), 0u);
  clock.Advance(kStall);
  EXPECT_EQ(t.CountStalled(kStall), 1u);

  // A range that was never leased is never stalled, however long it waits.
  EXPECT_EQ(t.Find(2)->state, RangeState::kPending);
  EXPECT_EQ(t.Find(2)->StalledForMs(clock.NowMs()), 0);
}

// The wall clock steps back an hour (NTP, a resumed VM) while a lease is
// held: its deadline is brought back to one TTL from the new now, so a dead
// owner's range comes free after a TTL, not after the hour.
TEST(LeaseTableTest, DeadlineIsClampedWhenTheClockStepsBack) {
  FakeClock clock;
  LeaseTable t(&clock, kTtl);
  t.Load(Plan(2), 0);
  const RangeRecord* a = t.Grant("w1");
  const RangeRecord* b = t.Grant("w2");
  ASSERT_NE(b, nullptr);
  t.TakeDirty();
  clock.Advance(5000);
  ASSERT_TRUE(t.Heartbeat(2, b->epoch, "w2", At("", 0)).ok());  // w2 is alive
  clock.Set(clock.NowMs() - 3600000);
  EXPECT_TRUE(t.ExpireDue().empty());
  EXPECT_EQ(a->deadline_ms, clock.NowMs() + kTtl);
  EXPECT_EQ(b->deadline_ms, clock.NowMs() + kTtl);
  EXPECT_EQ(t.NextDeadlineMs(), clock.NowMs() + kTtl);
  auto dirty = t.TakeDirty();
  std::sort(dirty.begin(), dirty.end());
  EXPECT_EQ(dirty, (std::vector<uint64_t>{1, 2}));  // the new deadlines get persisted
  clock.Advance(kTtl);
  auto expired = t.ExpireDue();
  ASSERT_EQ(expired.size(), 2u);
  EXPECT_EQ(expired[0].owner, "w1");
  EXPECT_EQ(t.count(RangeState::kPending), 2u);
}

TEST(LeaseTableTest, StaleEpochIsLeaseLostAndChangesNothing) {
  FakeClock clock;
  LeaseTable t(&clock, kTtl);
  t.Load(Plan(1), 0);
  uint64_t old_epoch = t.Grant("w1")->epoch;
  clock.Advance(kTtl + 1);
  t.ExpireDue();
  const RangeRecord* r = t.Grant("w2");
  uint64_t new_epoch = r->epoch;
  std::string c2 = EncodeKey({Value{int64_t{5}}});
  ASSERT_TRUE(t.Heartbeat(1, new_epoch, "w2", At(c2, 5)).ok());
  (void)t.TakeDirty();
  const RangeRecord before = *t.Find(1);

  std::string c1 = EncodeKey({Value{int64_t{90}}});
  EXPECT_EQ(t.Heartbeat(1, old_epoch, "w1", At(c1, 90)).code(), Code::kLeaseLost);
  EXPECT_EQ(t.Release(1, old_epoch, "w1", At(c1, 90)).code(), Code::kLeaseLost);
  EXPECT_EQ(t.Complete(1, old_epoch, "w1", At(c1, 90)).code(), Code::kLeaseLost);
  EXPECT_EQ(t.ReportError(1, old_epoch, "w1", true, "x").code(), Code::kLeaseLost);
  // Right epoch, wrong worker.
  EXPECT_EQ(t.Heartbeat(1, new_epoch, "w1", At(c1, 90)).code(), Code::kLeaseLost);
  EXPECT_EQ(t.Heartbeat(99, new_epoch, "w2", At(c1, 90)).code(), Code::kLeaseLost);

  const RangeRecord& after = *t.Find(1);
  EXPECT_EQ(after.state, RangeState::kLeased);
  EXPECT_EQ(after.owner, "w2");
  EXPECT_EQ(after.epoch, new_epoch);
  EXPECT_EQ(after.cursor, before.cursor);
  EXPECT_EQ(after.rows, before.rows);
  EXPECT_EQ(after.deadline_ms, before.deadline_ms);
  EXPECT_TRUE(t.TakeDirty().empty());
}

TEST(LeaseTableTest, ReleaseKeepsCursorAndRevokeFencesTheEpoch) {
  FakeClock clock;
  LeaseTable t(&clock, kTtl);
  t.Load(Plan(2), 0);
  uint64_t e1 = t.Grant("w1")->epoch;
  std::string c = EncodeKey({Value{int64_t{3}}});
  ASSERT_TRUE(t.Release(1, e1, "w1", At(c, 3)).ok());
  EXPECT_EQ(t.Find(1)->state, RangeState::kPending);
  const RangeRecord* r = t.Grant("w2");
  EXPECT_EQ(r->id, 1u);
  EXPECT_EQ(r->cursor, c);
  uint64_t e2 = r->epoch;
  ASSERT_TRUE(t.Revoke(1).ok());
  EXPECT_EQ(t.Heartbeat(1, e2, "w2", At(c, 3)).code(), Code::kLeaseLost);
  EXPECT_GT(t.Grant("w3")->epoch, e2);
  EXPECT_EQ(t.Revoke(2).code(), Code::kFailedPrecondition);
  EXPECT_EQ(t.Revoke(7).code(), Code::kNotFound);
}

TEST(LeaseTableTest, CompleteIsIdempotentForTheSameEpoch) {
  FakeClock clock;
  LeaseTable t(&clock, kTtl);
  t.Load(Plan(1), 0);
  uint64_t e = t.Grant("w1")->epoch;
  ASSERT_TRUE(t.Complete(1, e, "w1", At("", 0)).ok());
  EXPECT_TRUE(t.Complete(1, e, "w1", At("", 0)).ok());
  EXPECT_EQ(t.Complete(1, e + 1, "w1", At("", 0)).code(), Code::kLeaseLost);
  EXPECT_TRUE(t.AllDone());
  EXPECT_EQ(t.Boundary(), "");
}

TEST(LeaseTableTest, PermanentErrorsFailTheRangeAfterMaxAttemptsTransientNever) {
  FakeClock clock;
  LeaseTable t(&clock, kTtl, /*max_attempts=*/3);
  t.Load(Plan(2), 0);
  for (int i = 0; i < 10; ++i) {
    const RangeRecord* r = t.Grant("w");
    ASSERT_EQ(r->id, 1u);
    ASSERT_TRUE(t.ReportError(1, r->epoch, "w", /*permanent=*/false, "disk full").ok());
  }
  EXPECT_EQ(t.Find(1)->state, RangeState::kPending);
  EXPECT_EQ(t.Find(1)->last_error, "disk full");
  for (int i = 0; i < 3; ++i) {
    const RangeRecord* r = t.Grant("w");
    ASSERT_EQ(r->id, 1u);
    ASSERT_TRUE(t.ReportError(1, r->epoch, "w", /*permanent=*/true, "corrupt row").ok());
  }
  EXPECT_EQ(t.Find(1)->state, RangeState::kFailed);
  EXPECT_FALSE(t.Failed());  // range 2 still pending
  const RangeRecord* r = t.Grant("w");
  ASSERT_EQ(r->id, 2u);
  ASSERT_TRUE(t.Complete(2, r->epoch, "w", At("", 0)).ok());
  EXPECT_TRUE(t.Failed());
  EXPECT_FALSE(t.AllDone());
  EXPECT_EQ(t.RetryFailed(), 1u);
  EXPECT_EQ(t.Find(1)->state, RangeState::kPending);
}

TEST(LeaseTableTest, LoadNeverReusesAnEpoch) {
  FakeClock clock;
  LeaseTable t(&clock, kTtl);
  auto plan = Plan(2);
  plan[1].epoch = 77;  // persisted range epoch above the stored counter
  plan[1].state = RangeState::kLeased;
  plan[1].owner = "w";
  plan[1].deadline_ms = clock.NowMs() + 5;
  t.Load(plan, 10);
  EXPECT_GT(t.Grant("x")->epoch, 77u);
}

// The boundary is always the end of the contiguous done prefix, whatever
// order ranges complete in: a randomized run against a reference model.
TEST(LeaseTableTest, BoundaryMatchesReferenceModelUnderRandomSchedules) {
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    std::mt19937_64 rng(seed);
    FakeClock clock;
    LeaseTable t(&clock, kTtl);
    size_t n = 1 + rng() % 40;
    // Ranges over three tables; some end their table (hi empty).
    std::vector<RangeRecord> plan;
    size_t per = std::max<size_t>(1, n / 3);
    for (size_t i = 0; i < n; ++i) {
      RangeRecord r;
      r.id = i + 1;
      r.table = "t" + std::to_string(std::min<size_t>(2, i / per));
      plan.push_back(r);
    }
    for (size_t i = 0; i < n; ++i) {
      bool last_of_table = i + 1 == n || plan[i + 1].table != plan[i].table;
      plan[i].hi = last_of_table ? "" : EncodeKey({Value{static_cast<int64_t>(i)}});
      plan[i].lo = i == 0 || plan[i - 1].table != plan[i].table ? "" : plan[i - 1].hi;
    }
    t.Load(plan, 0);
    std::vector<bool> done(n, false);
    std::map<uint64_t, std::pair<std::string, uint64_t>> held;  // range -> (worker, epoch)
    int steps = 0;
    while (!t.AllDone()) {
      ASSERT_LT(++steps, 100000) << "seed " << seed;
      int action = static_cast<int>(rng() % 4);
      if (action == 0 || held.empty()) {
        std::string w = "w" + std::to_string(rng() % 5);
        if (const RangeRecord* r = t.Grant(w)) held[r->id] = {w, r->epoch};
      } else {
        auto it = held.begin();
        std::advance(it, rng() % held.size());
        auto [id, owner] = *it;
        if (action == 1) {
          ASSERT_TRUE(t.Complete(id, owner.second, owner.first, At("", 1)).ok());
          done[id - 1] = true;
        } else if (action == 2) {
          ASSERT_TRUE(t.Release(id, owner.second, owner.first, At("", 0)).ok());
        } else {
          clock.Advance(kTtl);
          for (const auto& e : t.ExpireDue()) held.erase(e.range);
          continue;
        }
        held.erase(id);
      }
      // Reference model: the prefix of done ranges.
      size_t prefix = 0;
      while (prefix < n && done[prefix]) ++prefix;
      ASSERT_EQ(t.done_prefix(), prefix) << "seed " << seed;
      std::string expect;
      if (prefix > 0 && prefix < n) {
        const RangeRecord& last = plan[prefix - 1];
        expect = last.hi.empty() ? plan[prefix].table + std::string(1, '\0')
                                 : last.table + std::string(1, '\0') + last.hi;
      }
      ASSERT_EQ(t.Boundary(), expect) << "seed " << seed << " prefix " << prefix;
    }
    EXPECT_EQ(t.Boundary(), "");
  }
}

// Leases expire exactly at their (renewed) deadline: the deadline index
// follows grants, heartbeats, releases, revokes, errors and completions.
TEST(LeaseTableTest, ExpiryFollowsRenewalsAndIgnoresReturnedLeases) {
  FakeClock clock;
  const int64_t t0 = clock.NowMs();
  LeaseTable t(&clock, kTtl);
  t.Load(Plan(6), 0);
  EXPECT_EQ(t.NextDeadlineMs(), INT64_MAX);
  uint64_t e[7] = {};
  for (uint64_t id = 1; id <= 6; ++id) {
    const RangeRecord* r = t.Grant("w" + std::to_string(id));
    ASSERT_EQ(r->id, id);
    e[id] = r->epoch;
    clock.Advance(100);  // range id's deadline: t0 + (id - 1) * 100 + kTtl
  }
  EXPECT_EQ(t.NextDeadlineMs(), t0 + kTtl);
  // Range 1 renews (now t0 + 600), so range 2 holds the earliest deadline.
  ASSERT_TRUE(t.Heartbeat(1, e[1], "w1", At("", 1)).ok());
  EXPECT_EQ(t.Find(1)->deadline_ms, t0 + 600 + kTtl);
  EXPECT_EQ(t.NextDeadlineMs(), t0 + 100 + kTtl);
  // Ranges 2..5 leave the leased state four different ways.
  ASSERT_TRUE(t.Release(2, e[2], "w2", At("", 0)).ok());
  ASSERT_TRUE(t.Revoke(3).ok());
  ASSERT_TRUE(t.Complete(4, e[4], "w4", At("", 4)).ok());
  ASSERT_TRUE(t.ReportError(5, e[5], "w5", /*permanent=*/false, "disk full").ok());
  EXPECT_EQ(t.NextDeadlineMs(), t0 + 500 + kTtl);  // range 6
  // A stale heartbeat (old epoch) renews nothing.
  EXPECT_EQ(t.Heartbeat(2, e[2], "w2", At("", 0)).code(), Code::kLeaseLost);
  EXPECT_EQ(t.NextDeadlineMs(), t0 + 500 + kTtl);

  clock.Set(t0 + 500 + kTtl - 1);
  EXPECT_TRUE(t.ExpireDue().empty());
  clock.Set(t0 + 500 + kTtl);  // deadline <= now expires
  auto expired = t.ExpireDue();
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0].range, 6u);
  EXPECT_EQ(expired[0].owner, "w6");
  EXPECT_EQ(expired[0].epoch, e[6]);
  EXPECT_EQ(t.Find(6)->state, RangeState::kPending);
  EXPECT_EQ(t.Find(6)->deadline_ms, 0);
  EXPECT_EQ(t.NextDeadlineMs(), t0 + 600 + kTtl);  // renewed range 1

  clock.Set(t0 + 600 + kTtl - 1);
  EXPECT_TRUE(t.ExpireDue().empty());
  clock.Set(t0 + 600 + kTtl);
  expired = t.ExpireDue();
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0].range, 1u);
  EXPECT_EQ(t.NextDeadlineMs(), INT64_MAX);
  EXPECT_EQ(t.count(RangeState::kLeased), 0u);
  EXPECT_EQ(t.count(RangeState::kDone), 1u);
}

// Expiries come out earliest deadline first, ties by range id, and a lease
// persisted by a previous incarnation expires at its stored deadline.
TEST(LeaseTableTest, ExpiryOrderAndPersistedDeadlinesAfterLoad) {
  FakeClock clock;
  const int64_t now = clock.NowMs();
  LeaseTable t(&clock, kTtl);
  auto plan = Plan(4);
  const int64_t deadline[4] = {now + 300, now + 100, now + 300, now + 200};
  for (size_t i = 0; i < 4; ++i) {
    plan[i].state = RangeState::kLeased;
    plan[i].owner = "w";
    plan[i].epoch = i + 1;
    plan[i].deadline_ms = deadline[i];
  }
  t.Load(plan, 4);
  EXPECT_EQ(t.NextDeadlineMs(), now + 100);
  clock.Set(now + 1000);
  auto expired = t.ExpireDue();
  ASSERT_EQ(expired.size(), 4u);
  EXPECT_EQ(expired[0].range, 2u);
  EXPECT_EQ(expired[1].range, 4u);
  EXPECT_EQ(expired[2].range, 1u);
  EXPECT_EQ(expired[3].range, 3u);
  EXPECT_EQ(t.NextDeadlineMs(), INT64_MAX);
  // Reloading (what a failed commit does) rebuilds the index from the records.
  t.Load(plan, 4);
  EXPECT_EQ(t.NextDeadlineMs(), now + 100);
  EXPECT_EQ(t.count(RangeState::kLeased), 4u);
}

// The deadline index and the running totals agree with a brute-force scan of
// every range after every operation of random schedules.
TEST(LeaseTableTest, IndexesAndTotalsMatchAScanUnderRandomSchedules) {
  for (uint64_t seed = 1; seed <= 100; ++seed) {
    std::mt19937_64 rng(seed);
    FakeClock clock;
    LeaseTable t(&clock, kTtl, /*max_attempts=*/2);
    auto plan = Plan(1 + rng() % 30);
    for (RangeRecord& r : plan) r.est_rows = rng() % 50;
    t.Load(plan, 0);
    std::map<uint64_t, std::pair<std::string, uint64_t>> held;  // range -> (worker, epoch)
    for (int step = 0; step < 400; ++step) {
      const int action = static_cast<int>(rng() % 8);
      auto pick = [&] {
        auto it = held.begin();
        std::advance(it, rng() % held.size());
        return *it;
      };
      const Progress p = At("", rng() % 100);
      if (action == 0 || held.empty()) {
        std::string w = "w" + std::to_string(rng() % 4);
        if (const RangeRecord* r = t.Grant(w)) held[r->id] = {w, r->epoch};
      } else if (action == 1) {
        auto [id, h] = pick();
        ASSERT_TRUE(t.Heartbeat(id, h.second, h.first, p).ok());
      } else if (action == 2) {
        auto [id, h] = pick();
        ASSERT_TRUE(t.Complete(id, h.second, h.first, p).ok());
        held.erase(id);
      } else if (action == 3) {
        auto [id, h] = pick();
        ASSERT_TRUE(t.Release(id, h.second, h.first, p).ok());
        held.erase(id);
      } else if (action == 4) {
        auto [id, h] = pick();
        ASSERT_TRUE(t.Revoke(id).ok());
        held.erase(id);
      } else if (action == 5) {
        auto [id, h] = pick();
        ASSERT_TRUE(t.ReportError(id, h.second, h.first, rng() % 2 == 0, "x").ok());
        held.erase(id);
      } else if (action == 6) {
        clock.Advance(static_cast<int64_t>(rng() % (kTtl / 2)));
        for (const auto& e : t.ExpireDue()) {
          ASSERT_EQ(held.count(e.range), 1u) << "seed " << seed;
          held.erase(e.range);
        }
      } else {
        t.RetryFailed();
      }
      int64_t next = INT64_MAX;
      uint64_t rows = 0, bytes = 0, est = 0;
      for (const RangeRecord& r : t.ranges()) {
        if (r.state == RangeState::kLeased) next = std::min(next, r.deadline_ms);
        rows += r.rows;
        bytes += r.bytes;
        est += r.state == RangeState::kDone ? r.rows : std::max(r.est_rows, r.rows);
      }
      ASSERT_EQ(t.NextDeadlineMs(), next) << "seed " << seed << " step " << step;
      ASSERT_EQ(t.rows_total(), rows) << "seed " << seed << " step " << step;
      ASSERT_EQ(t.bytes_total(), bytes) << "seed " << seed << " step " << step;
      ASSERT_EQ(t.rows_estimated(), est) << "seed " << seed << " step " << step;
      ASSERT_EQ(t.count(RangeState::kLeased), held.size()) << "seed " << seed;
    }
  }
}

// A plan of several tables: sizes[i] ranges of table "t<i>", ids in order.
std::vector<RangeRecord> TablesPlan(const std::vector<size_t>& sizes) {
  std::vector<RangeRecord> out;
  for (size_t t = 0; t < sizes.size(); ++t) {
    for (RangeRecord r : Plan(sizes[t], "t" + std::to_string(t))) {
      r.id = out.size() + 1;
      out.push_back(r);
    }
  }
  return out;
}

TEST(LeaseTableTest, GrantSpreadsWorkersOverTablesAndKeepsEachTableInKeyOrder) {
  FakeClock clock;
  LeaseTable t(&clock, kTtl);
  t.Load(TablesPlan({3, 2, 1}), 0);  // t0: ids 1-3, t1: 4-5, t2: 6
  auto grant = [&](const std::string& w) {
    const RangeRecord* r = t.Grant(w);
    return r == nullptr ? uint64_t{0} : r->id;
  };
  EXPECT_EQ(grant("w1"), 1u);  // each worker starts a table no one copies
  EXPECT_EQ(grant("w2"), 4u);
  EXPECT_EQ(grant("w3"), 6u);
  EXPECT_EQ(grant("w4"), 2u);  // every table busy: the first pending range
  const uint64_t e1 = t.Find(1)->epoch, e4 = t.Find(4)->epoch;
  ASSERT_TRUE(t.Complete(4, e4, "w2", At("", 1)).ok());
  EXPECT_EQ(grant("w2"), 5u);  // t1 is free again: its next range, not t0's 3
  ASSERT_TRUE(t.Complete(1, e1, "w1", At("", 1)).ok());
  EXPECT_EQ(grant("w1"), 3u);  // only t0 has pending ranges left
  EXPECT_EQ(grant("w5"), 0u);
  // An expired lease makes its table free again.
  clock.Advance(kTtl);
  EXPECT_EQ(t.ExpireDue().size(), 4u);
  EXPECT_EQ(grant("w6"), 2u);
  EXPECT_EQ(grant("w7"), 5u);
}

TEST(LeaseTableTest, GrantAfterLoadSeesTheLeasesInTheStateFile) {
  FakeClock clock;
  LeaseTable t(&clock, kTtl);
  auto plan = TablesPlan({2, 2});       // t0: ids 1-2, t1: 3-4
  plan[0].state = RangeState::kLeased;  // a restarted coordinator keeps live leases
  plan[0].owner = "w1";
  plan[0].epoch = 7;
  plan[0].deadline_ms = clock.NowMs() + kTtl;
  t.Load(plan, 7);
  const RangeRecord* r = t.Grant("w2");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->id, 3u);  // t0 is being copied by w1
  EXPECT_EQ(r->epoch, 8u);
}

TEST(LeaseTableTest, GrantMatchesAScanUnderRandomSchedules) {
  for (uint64_t seed = 1; seed <= 100; ++seed) {
    std::mt19937_64 rng(seed);
    FakeClock clock;
    LeaseTable t(&clock, kTtl, /*max_attempts=*/2);
    std::vector<size_t> sizes(1 + rng() % 5);
    for (size_t& n : sizes) n = 1 + rng() % 6;
    t.Load(TablesPlan(sizes), 0);
    std::map<uint64_t, std::pair<std::string, uint64_t>> held;  // range -> (worker, epoch)
    for (int step = 0; step < 300; ++step) {
      const int action = static_cast<int>(rng() % 5);
      if (action <= 1 || held.empty()) {
        // Expected: the first pending range of a table with nothing leased,
        // else the first pending range.
        std::map<std::string, bool> busy;
        for (const RangeRecord& r : t.ranges()) busy[r.table] |= r.state == RangeState::kLeased;
        uint64_t want = 0, first = 0;
        for (const RangeRecord& r : t.ranges()) {
          if (r.state != RangeState::kPending) continue;
          if (first == 0) first = r.id;
          if (want == 0 && !busy[r.table]) want = r.id;
        }
        if (want == 0) want = first;
        const std::string w = "w" + std::to_string(rng() % 4);
        const RangeRecord* r = t.Grant(w);
        ASSERT_EQ(r == nullptr ? 0 : r->id, want) << "seed " << seed << " step " << step;
        if (r) held[r->id] = {w, r->epoch};
        continue;
      }
      auto it = held.begin();
      std::advance(it, rng() % held.size());
      const auto [id, h] = *it;
      if (action == 2) {
        ASSERT_TRUE(t.Complete(id, h.second, h.first, At("", 1)).ok());
      } else if (action == 3) {
        ASSERT_TRUE(t.Release(id, h.second, h.first, At("", 1)).ok());
      } else {
        ASSERT_TRUE(t.ReportError(id, h.second, h.first, rng() % 2 == 0, "x").ok());
        if (rng() % 3 == 0) t.RetryFailed();
      }
      held.erase(id);
    }
  }
}

TEST(LeaseTableTest, BoundaryPrintsTableAndKey) {
  EXPECT_EQ(BoundaryToString(""), "");
  EXPECT_EQ(BoundaryToString(std::string("users\0", 6)), "users:(start)");
  EXPECT_EQ(BoundaryToString("users" + std::string(1, '\0') + EncodeKey({Value{int64_t{5}}})),
            "users:(5)");
}

}  // namespace
}  // namespace ferry
