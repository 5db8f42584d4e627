// The worker's view of its lease (LeaseKeeper), its give-up timers and the
// lease policy both sides share — on a fake clock, without sleeping.
#include "worker/lease_keeper.h"

#include <gtest/gtest.h>

#include "common/backoff.h"
#include "common/lease_policy.h"

namespace ferry {
namespace {

TEST(LeasePolicyTest, EveryMarginFollowsFromTheTtl) {
  auto p = LeasePolicy::ForTtl(10000);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->ttl_ms, 10000);
  EXPECT_EQ(p->heartbeat_ms, 1000);  // ttl / 5, at most 1 s
  EXPECT_EQ(p->safety_ms, 2000);     // ttl / 5
  EXPECT_EQ(p->liveness_ms, 30000);  // 3 ttl
  EXPECT_EQ(p->give_up_ms, 30000);
  auto fast = LeasePolicy::ForTtl(100);
  ASSERT_TRUE(fast.ok());
  EXPECT_EQ(fast->heartbeat_ms, 20);  // at least 20 ms
  EXPECT_EQ(fast->safety_ms, 50);     // at least 50 ms
  EXPECT_LT(fast->safety_ms, fast->ttl_ms);
  auto bad = LeasePolicy::ForTtl(99);
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("--lease-ttl"), std::string::npos);
  EXPECT_TRUE(p->HeardRecently(0, 30000));
  EXPECT_FALSE(p->HeardRecently(0, 30001));
}

TEST(LeaseKeeperTest, DeadlineCountsFromWhenTheRequestWasSent) {
  FakeClock clock(1000);
  const LeasePolicy policy = *LeasePolicy::ForTtl(10000);
  LeaseKeeper k(policy, &clock);
  const int64_t sent = clock.NowMs();
  clock.Advance(700);  // the grant took 700 ms to arrive
  k.Start(sent, 10000);
  EXPECT_EQ(k.deadline_ms(), sent + 10000);
  EXPECT_TRUE(k.MayWrite());
  // No write within the safety margin of the deadline...
  clock.Set(sent + 10000 - policy.safety_ms - 1);
  EXPECT_TRUE(k.MayWrite());
  clock.Advance(1);
  EXPECT_FALSE(k.MayWrite());
  EXPECT_FALSE(k.Expired());
  // ...and expired at the deadline, with or without an answer.
  clock.Set(sent + 10000);
  EXPECT_TRUE(k.Expired());
}

TEST(LeaseKeeperTest, AnAcknowledgedHeartbeatRenewsFromItsSendTimeAndNeverShortens) {
  FakeClock clock(0);
  LeaseKeeper k(*LeasePolicy::ForTtl(10000), &clock);
  k.Start(0, 10000);
  clock.Set(4000);
  const int64_t hb_sent = clock.NowMs();
  clock.Set(9500);  // the ack arrives late
  k.Renewed(hb_sent, 10000);
  EXPECT_EQ(k.deadline_ms(), 14000);  // from the send, not the arrival
  k.Renewed(1000, 10000);             // an older heartbeat's ack comes last
  EXPECT_EQ(k.deadline_ms(), 14000);
  EXPECT_TRUE(k.MayWrite());
  clock.Set(12000);
  EXPECT_FALSE(k.MayWrite());
  clock.Set(14000);
  EXPECT_TRUE(k.Expired());
}

TEST(LeaseKeeperTest, ZeroTtlInAReplyMeansThePolicyTtl) {
  FakeClock clock(0);
  LeaseKeeper k(*LeasePolicy::ForTtl(3000), &clock);
  k.Start(0, 0);
  EXPECT_EQ(k.deadline_ms(), 3000);
  k.Renewed(1000, 0);
  EXPECT_EQ(k.deadline_ms(), 4000);
}

// The first heartbeat of a lease after an eighth of the interval, then one
// every interval; an eighth again while Quick(), until the next lease.
TEST(LeaseKeeperTest, HeartbeatIsDueEveryHeartbeatInterval) {
  FakeClock clock(0);
  const LeasePolicy policy = *LeasePolicy::ForTtl(2000);  // heartbeat every 400 ms
  ASSERT_EQ(policy.heartbeat_ms, 400);
  LeaseKeeper k(policy, &clock);
  k.Start(0, 2000);
  EXPECT_FALSE(k.HeartbeatDue());
  clock.Advance(49);
  EXPECT_FALSE(k.HeartbeatDue());
  clock.Advance(1);
  EXPECT_TRUE(k.HeartbeatDue());
  k.HeartbeatSent();
  EXPECT_FALSE(k.HeartbeatDue());
  clock.Advance(policy.heartbeat_ms - 1);
  EXPECT_FALSE(k.HeartbeatDue());
  clock.Advance(1);
  EXPECT_TRUE(k.HeartbeatDue());
  k.HeartbeatSent();
  k.Quick(true);
  clock.Advance(49);
  EXPECT_FALSE(k.HeartbeatDue());
  clock.Advance(1);
  EXPECT_TRUE(k.HeartbeatDue());
  k.HeartbeatSent();
  k.Quick(false);
  clock.Advance(50);
  EXPECT_FALSE(k.HeartbeatDue());
  clock.Advance(policy.heartbeat_ms - 50);
  EXPECT_TRUE(k.HeartbeatDue());
  k.HeartbeatSent();
  k.Quick(true);
  k.Start(clock.NowMs(), 2000);  // a new lease: quick no more, its first heartbeat early
  clock.Advance(50);
  EXPECT_TRUE(k.HeartbeatDue());
  k.HeartbeatSent();
  clock.Advance(50);
  EXPECT_FALSE(k.HeartbeatDue());
}

TEST(GiveUpTimerTest, ExpiresAfterItsTimeAndRestarts) {
  FakeClock clock(0);
  GiveUpTimer t(&clock, 30000);
  clock.Advance(29999);
  EXPECT_FALSE(t.Expired());
  clock.Advance(1);
  EXPECT_TRUE(t.Expired());
  EXPECT_EQ(t.elapsed_ms(), 30000);
  t.Restart();
  EXPECT_FALSE(t.Expired());
  GiveUpTimer never(&clock, 0);
  clock.Advance(1'000'000'000);
  EXPECT_FALSE(never.Expired());
}

TEST(BackoffTest, DelaysGrowCappedAndJitteredDeterministically) {
  Backoff a(100, 5000, 7), b(100, 5000, 7);
  int64_t prev_cap = 0;
  for (int i = 0; i < 12; ++i) {
    const int64_t da = a.NextDelayMs();
    EXPECT_EQ(da, b.NextDelayMs());  // same seed, same schedule
    EXPECT_GE(da, 50);
    EXPECT_LE(da, 5000);
    prev_cap = std::max(prev_cap, da);
  }
  EXPECT_GT(prev_cap, 1000);  // it did grow
  a.Reset();
  EXPECT_EQ(a.attempt(), 0);
  EXPECT_LE(a.NextDelayMs(), 100);
}

}  // namespace
}  // namespace ferry
