#include "worker/lease_keeper.h"

#include <algorithm>

namespace ferry {

void LeaseKeeper::Start(int64_t sent_ms, int64_t ttl_ms) {
  deadline_ms_ = sent_ms + (ttl_ms > 0 ? ttl_ms : policy_.ttl_ms);
  last_heartbeat_ms_ = clock_->NowMs();
  first_ = true;
  quick_ = false;
}

void LeaseKeeper::Renewed(int64_t sent_ms, int64_t ttl_ms) {
  deadline_ms_ = std::max(deadline_ms_, sent_ms + (ttl_ms > 0 ? ttl_ms : policy_.ttl_ms));
}

}  // namespace ferry
