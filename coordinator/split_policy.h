// SplitPolicy: which leased copy ranges the coordinator asks their owners
// to split, so that the last range does not keep one worker busy while the
// rest of the fleet idles (DESIGN.md "Verification with repair; splitting;
// batch sizing"; PRIOR-ART.md "Splitting work in flight").
//
// A range is a candidate when it is leased for copying, its owner can split
// (featureSplit) and it was not asked within the cool-down. Its projected
// finish is the rows it still has (its planned estimate minus the rows
// done) over its owner's measured rate on this lease. A lease too young to
// have a rate (under `min_leased_ms`, or no progress reported yet) is
// projected at the mean rate of the measured ones; when none is measured
// (the first seconds of a job), every finish is projected by rows alone, as
// if all owners copied equally fast — so a skewed plan is split at once,
// not after its owners' first rates. The policy asks only while workers wait
// for work (idle > 0), and only ranges whose projected finish is `behind`
// times later than the fleet's (the remaining work of all candidates spread
// over the candidates' owners and the idle workers), at least
// `min_finish_ms` away (when a rate stands behind it), and with at least
// `min_rows` left (`min_rows_unmeasured` without a rate of its own) — the
// hysteresis that keeps small or nearly finished ranges whole. Longest
// projected finish first, at most one range per idle worker not already
// promised the tail of an outstanding ask. The owner keeps about half of
// what is left.
//
// Forced mode (--force-split-interval-ms, for chaos tests): every candidate
// with at least `min_rows` left is asked, whatever the rates.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ferry {

struct SplitCandidate {
  uint64_t range = 0;
  uint64_t rows_left = 0;      // est_rows - rows (0 when past the estimate)
  double rows_per_second = 0;  // on the current lease; 0 = not measured yet
  int64_t leased_ms = 0;       // how long the current lease has run
  bool asked = false;          // an ask is outstanding: its work counts, it is not asked again
};

struct SplitPolicyOptions {
  uint64_t min_rows = 1000;
  uint64_t min_rows_unmeasured = 50000;
  int64_t min_finish_ms = 1000;
  double behind = 1.5;
  int64_t min_leased_ms = 500;  // a rate measured over less is not used
};

struct SplitAsk {
  uint64_t range = 0;
  uint64_t keep_rows = 0;  // rows after the cursor the owner keeps
};

std::vector<SplitAsk> ChooseSplits(const std::vector<SplitCandidate>& candidates, size_t idle,
                                   const SplitPolicyOptions& options);

// Forced mode: every candidate with at least min_rows left, keeping half.
std::vector<SplitAsk> ForceSplits(const std::vector<SplitCandidate>& candidates,
                                  const SplitPolicyOptions& options);

}  // namespace ferry
