#include "worker/batch_sizer.h"

#include <algorithm>
#include <cmath>

namespace ferry {
namespace {

constexpr size_t kFirstBatchRows = 1000;
constexpr double kBucketBaseMs = 0.1;
constexpr double kBucketStep = 1.1;

}  // namespace

BatchSizer::BatchSizer(uint32_t cap_rows, uint32_t target_ms)
    : cap_(cap_rows ? cap_rows : 1), target_ms_(target_ms) {}

size_t BatchSizer::Next() const {
  if (target_ms_ == 0) return cap_;
  size_t n = kFirstBatchRows;
  if (us_ > 0) {
    const double want = rows_ / us_ * 1000.0 * target_ms_;
    n = static_cast<size_t>(std::max(1.0, std::floor(want)));
    if (last_ > 0) n = std::min(n, 2 * last_);
  }
  return std::clamp<size_t>(n, 1, cap_);
}

void BatchSizer::Record(size_t rows, int64_t elapsed_us) {
  if (rows == 0) return;
  const double us = static_cast<double>(std::max<int64_t>(elapsed_us, 1));
  rows_ = kWeight * rows_ + static_cast<double>(rows);
  us_ = kWeight * us_ + us;
  last_ = rows;
  const double ms = us / 1000.0;
  int b = 0;
  if (ms > kBucketBaseMs) {
    b = static_cast<int>(std::ceil(std::log(ms / kBucketBaseMs) / std::log(kBucketStep)));
  }
  buckets_[std::clamp(b, 0, kBuckets)]++;
  batches_++;
  total_rows_ += rows;
  max_ms_ = std::max(max_ms_, ms);
}

double BatchSizer::rows_per_second() const { return us_ > 0 ? rows_ / us_ * 1e6 : 0; }

BatchSizer::Stats BatchSizer::stats() const {
  Stats s;
  s.batches = batches_;
  s.max_ms = max_ms_;
  if (batches_ == 0) return s;
  s.mean_rows = static_cast<double>(total_rows_) / static_cast<double>(batches_);
  auto quantile = [&](double q) {
    const uint64_t want = static_cast<uint64_t>(std::ceil(q * static_cast<double>(batches_)));
    uint64_t seen = 0;
    for (int b = 0; b <= kBuckets; ++b) {
      seen += buckets_[b];
      if (seen >= want) return std::min(max_ms_, kBucketBaseMs * std::pow(kBucketStep, b));
    }
    return max_ms_;
  };
  s.p50_ms = quantile(0.5);
  s.p90_ms = quantile(0.9);
  s.p99_ms = quantile(0.99);
  return s;
}

}  // namespace ferry
