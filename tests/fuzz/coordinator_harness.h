// An in-memory coordinator for the libFuzzer targets status_command and
// worker_frame: one per fuzzing process, on a small legacy SQLite store in a
// scratch directory (under /dev/shm when it exists, so state commits cost no
// disk flush), a FakeClock, no TCP socket.
//
// What the targets call — the only two lines to re-point when the
// coordinator is split into LeaseService (typed requests) and
// CoordinatorServer (sockets), see tests/fuzz/README.md:
//   Command(line)        -> CoordinatorServer::HandleCommand(line) (status_commands.cc)
//   Frames(worker, msgs) -> each frame sent by an inproc DEALER named `worker`
//                           to CoordinatorServer::inproc_endpoint(), then one
//                           CoordinatorServer::Step(0) (decode, route to LeaseService, commit)
// Every reply is checked: a status reply is one JSON document (or
// Prometheus text for `metrics`), a worker reply decodes as an Envelope.
// A violated check aborts (libFuzzer records the input).
//
// Thread confinement: everything runs on the fuzzing thread.
#pragma once

#include <memory>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/clock.h"
#include "coordinator/coordinator_server.h"

namespace ferry::fuzz {

class CoordinatorHarness {
 public:
  // The process's harness, started on first use (aborts if it cannot start).
  static CoordinatorHarness& Get();
  ~CoordinatorHarness();

  // One status command line; returns the reply after checking its shape.
  std::string Command(const std::string& line);
  // Sends each frame from the worker socket `worker` (0..kWorkers-1),
  // pumping the coordinator after each; returns the replies received.
  std::vector<std::string> Frames(size_t worker, const std::vector<std::string>& frames);
  void Advance(int64_t ms) { clock_.Advance(ms); }
  // Every `every` calls, starts a fresh coordinator on a fresh copy of the
  // state (also once the migration completed or failed), so one long run
  // does not drift into a finished migration. True if it did.
  bool MaybeReset(int every);

  static constexpr size_t kWorkers = 3;

 private:
  CoordinatorHarness();
  void Start();
  void Stop();

  std::string dir_;
  FakeClock clock_;
  zmq::context_t ctx_;
  std::unique_ptr<CoordinatorServer> coordinator_;
  std::vector<zmq::socket_t> workers_;
  int calls_ = 0;
  int generation_ = 0;
};

}  // namespace ferry::fuzz
