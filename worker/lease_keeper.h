// LeaseKeeper: a worker's own view of the lease it holds, on an injected
// clock (a SteadyClock in production, a FakeClock in tests).
//
// The deadline is measured from when the worker SENT the request that
// earned it (the grant's request, or an acknowledged heartbeat), never from
// when the answer arrived, so the worker's deadline is never later than the
// coordinator's: the coordinator set its own deadline after receiving the
// request. The worker writes a batch only while MayWrite() — more than the
// policy's safety margin before its deadline — and stops once Expired(),
// even if the coordinator is unreachable.
//
// Thread safety: owned by one worker thread.
#pragma once

#include <algorithm>
#include <cstdint>

#include "common/clock.h"
#include "common/lease_policy.h"

namespace ferry {

class LeaseKeeper {
 public:
  LeaseKeeper(const LeasePolicy& policy, const Clock* clock) : policy_(policy), clock_(clock) {}

  // A grant answering a request sent at `sent_ms` for `ttl_ms` (0: the
  // policy's TTL).
  void Start(int64_t sent_ms, int64_t ttl_ms);
  // An acknowledged heartbeat sent at `sent_ms` renews the lease until
  // sent_ms + ttl_ms (never moving the deadline back).
  void Renewed(int64_t sent_ms, int64_t ttl_ms);

  // Time for the next heartbeat: the policy's heartbeat interval since the
  // last one, an eighth of it for the first one of a lease (the coordinator
  // learns the rate, and can ask for a split, early) and while Quick().
  bool HeartbeatDue() const {
    const int64_t every =
        first_ || quick_ ? std::max<int64_t>(1, policy_.heartbeat_ms / 8) : policy_.heartbeat_ms;
    return clock_->NowMs() - last_heartbeat_ms_ >= every;
  }
  void HeartbeatSent() {
    last_heartbeat_ms_ = clock_->NowMs();
    first_ = false;
  }
  // Heartbeat 8 times as often (the coordinator says workers wait for work).
  void Quick(bool quick) { quick_ = quick; }

  // More than the safety margin left before the deadline.
  bool MayWrite() const { return clock_->NowMs() + policy_.safety_ms < deadline_ms_; }
  bool Expired() const { return clock_->NowMs() >= deadline_ms_; }
  int64_t deadline_ms() const { return deadline_ms_; }

 private:
  LeasePolicy policy_;
  const Clock* clock_;
  int64_t deadline_ms_ = 0;
  int64_t last_heartbeat_ms_ = 0;
  bool first_ = false;
  bool quick_ = false;
};

// A deadline for giving up on something (an unanswered completion, a
// coordinator that never answers registration), on an injected clock.
class GiveUpTimer {
 public:
  // `after_ms` <= 0: never gives up.
  GiveUpTimer(const Clock* clock, int64_t after_ms)
      : clock_(clock), after_ms_(after_ms), start_ms_(clock->NowMs()) {}
  void Restart() { start_ms_ = clock_->NowMs(); }
  bool Expired() const { return after_ms_ > 0 && clock_->NowMs() - start_ms_ >= after_ms_; }
  int64_t elapsed_ms() const { return clock_->NowMs() - start_ms_; }

 private:
  const Clock* clock_;
  int64_t after_ms_;
  int64_t start_ms_;
};

}  // namespace ferry
