// Helpers of the in-process --verify tests (verify_repair_test,
// verify_spec_test): a coordinator's options, the phase in which workers
// verify (real workers: tests/worker_thread.h), and integer keys as ferry
// prints and encodes them.
//
// Thread safety: called from the test's thread, which steps the coordinator.
#pragma once

#include <cstdint>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/status.h"
#include "coordinator/coordinator_server.h"
#include "coordinator/options.h"
#include "tests/worker_thread.h"

namespace ferry::testing {

// An in-process coordinator with --verify from SQLite file `legacy` to
// SQLite file `target`, its state in `state`: no TCP listener (workers use
// its inproc endpoint), the status socket on `status_endpoint`.
CoordinatorOptions VerifyingCoordinator(const std::string& legacy, const std::string& target,
                                        const std::string& state,
                                        const std::string& status_endpoint);

// Two workers that verify (verifier-a, verifier-b: FEATURE_VERIFY |
// FEATURE_SPLIT) against `c`, stepped until the migration is complete and
// both returned, for at most 60 s. Their results, a's then b's.
std::vector<Status> RunVerifiers(CoordinatorServer& c, zmq::context_t* ctx);

// A range bound holding one integer key as that integer; `unbounded` for
// "" (the table's start or end).
int64_t IntKeyBound(const std::string& encoded, int64_t unbounded);

// Integer key `k` as ferry prints it (KeyToString), e.g. in repair events.
std::string KeyName(int64_t k);

}  // namespace ferry::testing
