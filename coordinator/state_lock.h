// StateLock: only one coordinator may own a state file. The lock is an
// flock() on "<state>.lock", released by the kernel when the process dies
// (SIGKILL included), so a restarted coordinator never waits for a stale
// holder. The lock file records the holder (host, pid, start time) so a
// second coordinator can name it.
//
// Thread safety: create and destroy on one thread.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"

namespace ferry {

class StateLock {
 public:
  // kLocked naming the holder if another process holds it; kInvalidArgument
  // if the lock file cannot be created (names the path and the cause).
  static Result<std::unique_ptr<StateLock>> Acquire(const std::string& state_path);
  ~StateLock();
  StateLock(const StateLock&) = delete;
  StateLock& operator=(const StateLock&) = delete;

 private:
  explicit StateLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace ferry
