// StatusQueries: lets other threads of the coordinator's process (the HTTP
// endpoint's) ask the event loop the status socket's read-only commands and
// get exactly the answer the status socket would give, without a socket or
// a JSON round trip.
//
// Ask() queues the command and wakes the loop through an eventfd
// (wake_fd(), which the loop polls beside its sockets); the loop answers
// every queued command in its next pass (Serve) with the same
// StatusCommands the status socket uses. A command that is not read-only is
// refused without reaching the loop. An answer that does not come within
// the timeout (the loop is stopped or busy) is kUnavailable.
//
// Thread safety: Ask() from any thread; Serve() and wake_fd() from the
// event-loop thread only.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "common/mutex.h"
#include "common/status.h"

namespace ferry {

class StatusQueries {
 public:
  static Result<std::unique_ptr<StatusQueries>> Create();
  ~StatusQueries();
  StatusQueries(const StatusQueries&) = delete;
  StatusQueries& operator=(const StatusQueries&) = delete;

  Result<std::string> Ask(const std::string& command, int timeout_ms) EXCLUDES(mu_);

  int wake_fd() const { return fd_; }
  // Answers every queued command with `answer`, on the calling (loop) thread.
  void Serve(const std::function<std::string(const std::string&)>& answer) EXCLUDES(mu_);

 private:
  struct Pending {
    std::string command;
    bool answered = false;  // guarded by StatusQueries::mu_
    std::string answer;     // guarded by StatusQueries::mu_
  };
  explicit StatusQueries(int fd) : fd_(fd) {}

  const int fd_;
  Mutex mu_;
  CondVar answered_;
  std::deque<std::shared_ptr<Pending>> queue_ GUARDED_BY(mu_);
};

}  // namespace ferry
