// JobThread (worker/job_thread.h): every job handed over runs exactly once,
// on one helper thread that is not the owner's, and what it wrote is seen
// after Wait; a Start while a job runs waits for it; destroying it while a
// job runs waits for the job.
#include "worker/job_thread.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>
#include <vector>

namespace ferry {
namespace {

TEST(JobThreadTest, EachJobRunsOnceOnOneHelperThreadAndIsSeenAfterWait) {
  JobThread t;
  EXPECT_FALSE(t.busy());
  t.Wait();              // nothing handed over: returns at once
  std::vector<int> out;  // written by the jobs, read by the owner after Wait
  std::set<std::thread::id> ran_on;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(t.Start([&, i] {
      out.push_back(i);
      ran_on.insert(std::this_thread::get_id());
    }));
    EXPECT_TRUE(t.busy());
    t.Wait();
    EXPECT_FALSE(t.busy());
    ASSERT_EQ(out.size(), static_cast<size_t>(i + 1));
    EXPECT_EQ(out.back(), i);
  }
  ASSERT_EQ(ran_on.size(), 1u);
  EXPECT_NE(*ran_on.begin(), std::this_thread::get_id());
}

// Copiers of one worker thread share one JobThread: a Start while a job
// runs waits for it, so jobs never overlap and run in order.
TEST(JobThreadTest, AStartWhileAJobRunsRunsAfterIt) {
  JobThread t;
  std::vector<int> order;
  ASSERT_TRUE(t.Start([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    order.push_back(1);
  }));
  ASSERT_TRUE(t.Start([&] { order.push_back(2); }));
  t.Wait();
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

TEST(JobThreadTest, DestroyingItWhileAJobRunsWaitsForTheJob) {
  std::atomic<bool> finished{false};
  {
    JobThread t;
    ASSERT_TRUE(t.Start([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      finished = true;
    }));
  }
  EXPECT_TRUE(finished.load());
}

}  // namespace
}  // namespace ferry
