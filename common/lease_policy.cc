#include "common/lease_policy.h"

#include <algorithm>

namespace ferry {

Result<LeasePolicy> LeasePolicy::ForTtl(int64_t ttl_ms) {
  if (ttl_ms < 100) return InvalidArgument("--lease-ttl must be at least 0.1 seconds");
  LeasePolicy p;
  p.ttl_ms = ttl_ms;
  p.heartbeat_ms = std::clamp<int64_t>(ttl_ms / 5, 20, 1000);
  p.safety_ms = std::max<int64_t>(ttl_ms / 5, 50);
  p.liveness_ms = 3 * ttl_ms;
  p.give_up_ms = 3 * ttl_ms;
  return p;
}

}  // namespace ferry
