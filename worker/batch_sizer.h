// BatchSizer: how many rows the next copy batch takes. With a target batch
// time (--batch-time-ms) it sizes batches from the worker's measured rate so
// each takes about that long; without one every batch is the cap
// (--batch-rows). The cap always holds, and so does the throttle (the
// caller clamps to its share).
//
// The rate is an exponentially weighted average in the manner of PRIOR-ART
// ("Batch size"): decayed sums of rows and of time, each batch adding its own
// after the history is weighted by 0.75 —
//   rows' = 0.75 rows + n,   time' = 0.75 time + t,   rate = rows' / time'
// — so a batch counts by its length, a slow spell is followed within a few
// batches, and one odd batch does not swing the size. The first batch takes
// min(cap, 1000) rows; a size never more than doubles from one batch to the
// next (a fast first batch cannot jump straight to a huge one).
//
// Stats() keeps the distribution of batch times (commit included) for the
// worker's summary log line and the benchmark.
//
// Thread safety: owned by one worker thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace ferry {

class BatchSizer {
 public:
  // `cap_rows` >= 1; `target_ms` 0 = fixed batches of cap_rows.
  BatchSizer(uint32_t cap_rows, uint32_t target_ms);

  void set_cap(uint32_t cap_rows) { cap_ = cap_rows ? cap_rows : 1; }
  void set_target_ms(uint32_t target_ms) { target_ms_ = target_ms; }
  uint32_t target_ms() const { return target_ms_; }

  // Rows for the next batch: 1 <= n <= cap.
  size_t Next() const;
  // A batch of `rows` rows took `elapsed_us` (read, write and commit).
  void Record(size_t rows, int64_t elapsed_us);
  // The weighted rate in rows/s (0 until a batch was recorded).
  double rows_per_second() const;

  // Batch times recorded so far: count, quantiles (ms, from log-spaced
  // buckets: within ~10%) and the largest.
  struct Stats {
    uint64_t batches = 0;
    double p50_ms = 0, p90_ms = 0, p99_ms = 0, max_ms = 0;
    double mean_rows = 0;
  };
  Stats stats() const;

 private:
  static constexpr double kWeight = 0.75;
  static constexpr int kBuckets = 150;  // 10% steps from 0.1 ms: up to ~28 min

  uint32_t cap_;
  uint32_t target_ms_;
  double rows_ = 0;  // decayed sums
  double us_ = 0;
  size_t last_ = 0;  // the previous batch's size
  std::array<uint64_t, kBuckets + 1> buckets_{};
  uint64_t batches_ = 0;
  uint64_t total_rows_ = 0;
  double max_ms_ = 0;
};

}  // namespace ferry
