// JobThread: one helper thread that runs one job at a time for its owner —
// TargetCopier's read-ahead (worker/target_copier.h). Start hands it a job,
// Wait blocks until that job has run; the thread lives as long as the
// object, so a copy does not start a thread (and, with glibc, a fresh malloc
// arena) per batch. Wait, and the destructor, make everything the job
// wrote visible to the owner (the mutex orders it).
//
// Thread safety: Start, Wait and busy() are the owner's (one thread; several
// objects of that thread may share it, one job at a time); the job runs on
// the helper thread, and touches nothing the owner uses until Wait returns.
#pragma once

#include <functional>
#include <thread>

#include "common/mutex.h"

namespace ferry {

class JobThread {
 public:
  JobThread() = default;
  ~JobThread();
  JobThread(const JobThread&) = delete;
  JobThread& operator=(const JobThread&) = delete;

  // Runs `job` on the helper thread (started on first use), after the job
  // before it (Start waits for that first). False if no thread could be
  // started (the job did not run and will not).
  bool Start(std::function<void()> job);
  // Blocks until the job Start handed over has run. At once when none.
  void Wait();
  // True between a Start that returned true and the Wait after it.
  bool busy() const { return busy_; }

 private:
  void Loop();

  bool busy_ = false;  // the owner's view
  Mutex mu_;
  CondVar cv_;
  std::function<void()> job_ GUARDED_BY(mu_);
  bool done_ GUARDED_BY(mu_) = false;
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace ferry
