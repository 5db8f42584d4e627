#include "tests/worker_thread.h"

#include <utility>

#include "common/clock.h"

namespace ferry::testing {
namespace {

WorkerOptions WithFeatures(const std::string& endpoint, const std::string& id, uint32_t features) {
  WorkerOptions o;
  o.coordinator = endpoint;
  o.id = id;
  o.features = features;
  return o;
}

}  // namespace

WorkerThread::WorkerThread(zmq::context_t* ctx, WorkerOptions options) {
  thread_ = std::thread([this, o = std::move(options), ctx] {
    SteadyClock steady;  // the worker's own deadlines run in real time
    Worker w(o, ctx, &stop_, &steady);
    result_ = w.Run();
    finished_ = true;
  });
}

WorkerThread::WorkerThread(zmq::context_t* ctx, const std::string& endpoint, const std::string& id,
                           uint32_t features)
    : WorkerThread(ctx, WithFeatures(endpoint, id, features)) {}

void WorkerThread::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

}  // namespace ferry::testing
