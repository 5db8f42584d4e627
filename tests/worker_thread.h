// A real Worker (worker/worker.h) on its own thread, for in-process tests
// that step a CoordinatorServer on the test's thread.
//
// Thread safety: the worker runs on its own thread; the methods are called
// from the test's thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <zmq.hpp>

#include "common/status.h"
#include "worker/worker.h"

namespace ferry::testing {

// Runs Worker(options).Run() on a thread of its own, with real-time
// deadlines (a SteadyClock); Stop() or the destructor stops and joins it,
// after which result() is its Run() status.
class WorkerThread {
 public:
  WorkerThread(zmq::context_t* ctx, WorkerOptions options);
  // A worker `id` of the coordinator at `endpoint` that tells it it can do
  // `features` (copy-only workers leave verification to others).
  WorkerThread(zmq::context_t* ctx, const std::string& endpoint, const std::string& id,
               uint32_t features);
  ~WorkerThread() { Stop(); }
  WorkerThread(const WorkerThread&) = delete;
  WorkerThread& operator=(const WorkerThread&) = delete;
  void RequestStop() { stop_ = true; }
  // Asks the worker to stop and waits until it returned.
  void Stop();
  bool finished() const { return finished_.load(); }
  const Status& result() const { return result_; }

 private:
  std::atomic<bool> stop_{false}, finished_{false};
  Status result_;
  std::thread thread_;
};

}  // namespace ferry::testing
