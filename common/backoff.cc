#include "common/backoff.h"

#include <algorithm>

namespace ferry {

Backoff::Backoff(int64_t base_ms, int64_t cap_ms, uint64_t seed)
    : base_ms_(std::max<int64_t>(1, base_ms)), cap_ms_(std::max(base_ms, cap_ms)), rng_(seed) {}

int64_t Backoff::NextDelayMs() {
  int shift = std::min(attempt_, 30);
  ++attempt_;
  int64_t ceiling = std::min(cap_ms_, base_ms_ << shift);
  int64_t floor = std::min(ceiling, base_ms_ / 2 + 1);
  std::uniform_int_distribution<int64_t> dist(floor, ceiling);
  return dist(rng_);
}

}  // namespace ferry
