// Tests of ChooseSplits / ForceSplits (coordinator/split_policy.h): which
// leased ranges the coordinator asks to split, with measured rates, with none
// yet (rows alone), and mixed.
#include "coordinator/split_policy.h"

#include <gtest/gtest.h>

#include <vector>

namespace ferry {
namespace {

SplitCandidate Measured(uint64_t range, uint64_t rows_left, double rows_per_second) {
  return SplitCandidate{range, rows_left, rows_per_second, 2000};
}

SplitCandidate Unmeasured(uint64_t range, uint64_t rows_left) {
  return SplitCandidate{range, rows_left, 0, 100};
}

std::vector<uint64_t> Ranges(const std::vector<SplitAsk>& asks) {
  std::vector<uint64_t> out;
  for (const SplitAsk& a : asks) out.push_back(a.range);
  return out;
}

TEST(SplitPolicyTest, NobodyIdleNoSplit) {
  EXPECT_TRUE(ChooseSplits({Measured(1, 900000, 1000)}, 0, {}).empty());
  EXPECT_TRUE(ChooseSplits({}, 3, {}).empty());
}

TEST(SplitPolicyTest, MeasuredRangeFarBehindTheFleetIsSplitInHalf) {
  // 90 s left against 1 s: the slow one is asked, keeping half its rows.
  const auto asks = ChooseSplits({Measured(1, 90000, 1000), Measured(2, 1000, 1000)}, 1, {});
  ASSERT_EQ(asks.size(), 1u);
  EXPECT_EQ(asks[0].range, 1u);
  EXPECT_EQ(asks[0].keep_rows, 45000u);
}

TEST(SplitPolicyTest, HysteresisKeepsSmallOrNearlyDoneRangesWhole) {
  SplitPolicyOptions o;
  // Under a second to go (min_finish_ms): not split, however far behind.
  EXPECT_TRUE(ChooseSplits({Measured(1, 900, 1000), Measured(2, 10, 1000)}, 1, o).empty());
  // Fewer than min_rows left: not split.
  o.min_finish_ms = 0;
  EXPECT_TRUE(ChooseSplits({Measured(1, 999, 10), Measured(2, 10, 10)}, 1, o).empty());
  // Even ranges: none is `behind` times the fleet's finish (50 s against
  // 150 s over 4 workers, 1.5x = 56 s).
  EXPECT_TRUE(
      ChooseSplits({Measured(1, 50000, 1000), Measured(2, 50000, 1000), Measured(3, 50000, 1000)},
                   1, SplitPolicyOptions{})
          .empty());
}

TEST(SplitPolicyTest, AtMostOneRangePerIdleWorkerLongestFirst) {
  const std::vector<SplitCandidate> c = {Measured(1, 60000, 1000), Measured(2, 90000, 1000),
                                         Measured(3, 80000, 1000), Measured(4, 100, 1000)};
  EXPECT_EQ(Ranges(ChooseSplits(c, 1, {})), (std::vector<uint64_t>{2}));
  // Two idle: the fleet's finish is (60+90+80+0.1)/6 s = 38 s; 1.5x = 57.5 s.
  EXPECT_EQ(Ranges(ChooseSplits(c, 2, {})), (std::vector<uint64_t>{2, 3}));
}

// The first seconds of a skewed job: no owner has a rate yet. Rows alone
// decide: the range with 90% of the rows is asked at once.
TEST(SplitPolicyTest, WithoutAnyRateRowsAloneDecide) {
  const std::vector<SplitCandidate> c = {Unmeasured(1, 900000), Unmeasured(2, 100000)};
  const auto asks = ChooseSplits(c, 2, {});
  ASSERT_EQ(asks.size(), 1u);
  EXPECT_EQ(asks[0].range, 1u);
  EXPECT_EQ(asks[0].keep_rows, 450000u);
  // Below min_rows_unmeasured, a range without a rate stays whole.
  SplitPolicyOptions o;
  o.min_rows_unmeasured = 1000000;
  EXPECT_TRUE(ChooseSplits(c, 2, o).empty());
  // Even unmeasured ranges are not split.
  EXPECT_TRUE(
      ChooseSplits({Unmeasured(1, 300000), Unmeasured(2, 300000), Unmeasured(3, 300000)}, 1, {})
          .empty());
}

// A fresh tail (no rate yet) is projected at the measured owners' mean
// rate: with 400,000 rows at ~10,000 rows/s it is the longest and is asked
// before the measured range with less left.
TEST(SplitPolicyTest, UnmeasuredTailIsProjectedAtTheMeanRate) {
  const std::vector<SplitCandidate> c = {Measured(1, 100000, 12000), Unmeasured(2, 400000),
                                         Measured(3, 5000, 8000)};
  const auto asks = ChooseSplits(c, 1, {});
  ASSERT_EQ(asks.size(), 1u);
  EXPECT_EQ(asks[0].range, 2u);
  EXPECT_EQ(asks[0].keep_rows, 200000u);
  // The same tail under min_rows_unmeasured is left alone, and the measured
  // range (8.3 s against a fleet's 12.2 s) is not behind.
  SplitPolicyOptions o;
  o.min_rows_unmeasured = 500000;
  EXPECT_TRUE(ChooseSplits(c, 1, o).empty());
}

// A range with an outstanding ask is not asked again and its tail takes an
// idle worker, but its rows still count in the fleet's work: a small range
// beside it is not split.
TEST(SplitPolicyTest, OutstandingAskCountsButIsNotAskedAgain) {
  SplitCandidate big = Unmeasured(1, 900000);
  big.asked = true;
  EXPECT_TRUE(ChooseSplits({big, Unmeasured(2, 100000)}, 2, {}).empty());  // one idle left
  // Without the big one's rows, the small one would look far behind.
  EXPECT_EQ(Ranges(ChooseSplits({Unmeasured(2, 100000)}, 1, {})), (std::vector<uint64_t>{2}));
  SplitCandidate asked = Measured(3, 5000, 0);
  asked.asked = true;
  EXPECT_TRUE(ForceSplits({asked}, {}).empty());
}

TEST(SplitPolicyTest, ForcedAsksEveryRangeWithEnoughRows) {
  SplitPolicyOptions o;
  const auto asks = ForceSplits({Measured(1, 5000, 0), Unmeasured(2, 999), Unmeasured(3, 1000)}, o);
  EXPECT_EQ(Ranges(asks), (std::vector<uint64_t>{1, 3}));
  EXPECT_EQ(asks[0].keep_rows, 2500u);
}

}  // namespace
}  // namespace ferry
