#include "coordinator/status_queries.h"

#include <fmt/format.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/clock.h"
#include "coordinator/status_commands.h"

namespace ferry {

Result<std::unique_ptr<StatusQueries>> StatusQueries::Create() {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return Unavailable(fmt::format("eventfd: {}", std::strerror(errno)));
  return std::unique_ptr<StatusQueries>(new StatusQueries(fd));
}

StatusQueries::~StatusQueries() { close(fd_); }

Result<std::string> StatusQueries::Ask(const std::string& command, int timeout_ms) {
  if (!StatusCommands::IsReadOnly(command)) {
    return InvalidArgument(
        fmt::format("'{}' changes the migration: use the status socket", command.substr(0, 64)));
  }
  auto p = std::make_shared<Pending>();
  p->command = command;
  MutexLock lock(&mu_);
  queue_.push_back(p);
  const uint64_t one = 1;
  if (write(fd_, &one, sizeof one) < 0 && errno != EAGAIN) {
    return Unavailable(fmt::format("cannot wake the coordinator: {}", std::strerror(errno)));
  }
  const int64_t deadline = MonotonicMs() + timeout_ms;
  while (!p->answered) {
    const int64_t left = deadline - MonotonicMs();
    if (left <= 0) break;
    answered_.WaitFor(&mu_, left);
  }
  if (!p->answered) {
    return Unavailable(fmt::format("the coordinator did not answer '{}' within {} ms",
                                   command.substr(0, 64), timeout_ms));
  }
  return std::move(p->answer);
}

void StatusQueries::Serve(const std::function<std::string(const std::string&)>& answer) {
  uint64_t n = 0;
  while (read(fd_, &n, sizeof n) > 0) {
  }
  std::deque<std::shared_ptr<Pending>> batch;
  {
    MutexLock lock(&mu_);
    batch.swap(queue_);
  }
  if (batch.empty()) return;
  std::vector<std::string> answers;
  answers.reserve(batch.size());
  for (const auto& p : batch) answers.push_back(answer(p->command));
  MutexLock lock(&mu_);
  for (size_t i = 0; i < batch.size(); ++i) {
    batch[i]->answer = std::move(answers[i]);
    batch[i]->answered = true;
  }
  answered_.SignalAll();
}

}  // namespace ferry
