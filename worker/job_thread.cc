#include "worker/job_thread.h"

#include <system_error>
#include <utility>

namespace ferry {

JobThread::~JobThread() {
  if (!thread_.joinable()) return;
  {
    MutexLock l(&mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  thread_.join();
}

bool JobThread::Start(std::function<void()> job) {
  Wait();
  if (!thread_.joinable()) {
    try {
      thread_ = std::thread([this] { Loop(); });
    } catch (const std::system_error&) {
      return false;
    }
  }
  {
    MutexLock l(&mu_);
    job_ = std::move(job);
    done_ = false;
  }
  cv_.SignalAll();
  busy_ = true;
  return true;
}

void JobThread::Wait() {
  if (!busy_) return;
  MutexLock l(&mu_);
  while (!done_) cv_.Wait(&mu_);
  busy_ = false;
}

void JobThread::Loop() {
  for (;;) {
    std::function<void()> job;
    {
      MutexLock l(&mu_);
      while (!job_ && !stop_) cv_.Wait(&mu_);
      if (!job_) return;  // stopping with nothing to run
      job = std::move(job_);
      job_ = nullptr;
    }
    job();
    {
      MutexLock l(&mu_);
      done_ = true;
    }
    cv_.SignalAll();
  }
}

}  // namespace ferry
