// Process exit codes shared by ferry-coordinator, ferry-worker and ferryctl.
// Documented in README.md ("Exit codes"); changing a value is a breaking change.
#pragma once

#include "common/status.h"

namespace ferry {

enum ExitCode : int {
  kExitOk = 0,               // done, or nothing to do
  kExitFailed = 1,           // the migration failed (see status / log)
  kExitUsage = 2,            // bad flags or bad input (URI, file, table)
  kExitVersionConflict = 3,  // store versions do not fit --from/--to-version
  kExitLocked = 4,           // the state file is held by another coordinator
  kExitUnavailable = 5,      // a store or the coordinator cannot be reached
  kExitTimeout = 6,          // ferryctl wait: timed out
  kExitDiffer = 7,           // ferryctl verify: the stores differ
  kExitInterrupted = 8,      // stopped by SIGTERM/SIGINT before completing: start again to resume
  kExitInternal = 70,        // a bug: please report it
};

// Maps an expected failure to the exit code an operator sees.
inline int ExitCodeFor(const Status& s) {
  switch (s.code()) {
    case Code::kOk:
      return kExitOk;
    case Code::kInvalidArgument:
    case Code::kNotFound:
      return kExitUsage;
    case Code::kVersionConflict:
      return kExitVersionConflict;
    case Code::kLocked:
      return kExitLocked;
    case Code::kUnavailable:
      return kExitUnavailable;
    case Code::kFailedPrecondition:
    case Code::kLeaseLost:
    case Code::kPermanent:
      return kExitFailed;
    case Code::kInternal:
      return kExitInternal;
  }
  return kExitInternal;
}

}  // namespace ferry
