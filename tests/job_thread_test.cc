// JobThread (worker/job_thread.h): every job handed over runs exactly once,
// on one helper thread that is not the owner's, and what it wrote is seen
// after Wait; destroying it while a job runs waits for the job.
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
