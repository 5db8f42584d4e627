// Capped, jittered exponential backoff ("full jitter": a uniform draw in
// [base/2, min(cap, base * 2^attempt)]). Randomness is injected through the
// seed so tests are deterministic.
//
// Thread safety: one Backoff per retry loop; not shared.
#pragma once

#include <cstdint>
#include <random>

namespace ferry {

class Backoff {
 public:
  Backoff(int64_t base_ms, int64_t cap_ms, uint64_t seed);

  // Delay before the next attempt; increments the attempt count.
  int64_t NextDelayMs();
  void Reset() { attempt_ = 0; }
  int attempt() const { return attempt_; }

 private:
  int64_t base_ms_;
  int64_t cap_ms_;
  int attempt_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace ferry
