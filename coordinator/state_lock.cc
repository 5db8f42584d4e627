#include "coordinator/state_lock.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "common/file_checks.h"

namespace ferry {
namespace {

std::string ReadAll(int fd) {
  std::string out;
  char buf[512];
  ssize_t n;
  if (lseek(fd, 0, SEEK_SET) < 0) return out;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  while (!out.empty() && (out.back() == '\n' || out.back() == '\0')) out.pop_back();
  return out;
}

}  // namespace

Result<std::unique_ptr<StateLock>> StateLock::Acquire(const std::string& state_path) {
  // Before the lock file is made: a --state that cannot be a state file is
  // one line naming --state, with nothing created.
  FERRY_RETURN_IF_ERROR(CheckSqliteFile("--state", state_path, FileUse::kReadWrite));
  std::string path = state_path + ".lock";
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return InvalidArgument(
        fmt::format("cannot create lock file {}: {} (check --state and the "
                    "directory's permissions)",
                    path, std::strerror(errno)));
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    // The holder writes its name right after locking: give it a moment.
    std::string holder = ReadAll(fd);
    for (int i = 0; holder.empty() && i < 50; ++i) {
      usleep(10000);
      holder = ReadAll(fd);
    }
    close(fd);
    if (err == EWOULDBLOCK) {
      return Locked(
          fmt::format("state file {} is held by another coordinator ({}); stop it or use "
                      "another --state",
                      state_path, holder.empty() ? "holder unknown" : holder));
    }
    return InvalidArgument(fmt::format("cannot lock {}: {}", path, std::strerror(err)));
  }
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  std::string me = fmt::format("pid {} on host {}, since {}", getpid(), host,
                               static_cast<long long>(std::time(nullptr)));
  if (ftruncate(fd, 0) == 0) {
    ssize_t ignored = pwrite(fd, me.data(), me.size(), 0);
    (void)ignored;
  }
  return std::unique_ptr<StateLock>(new StateLock(fd));
}

StateLock::~StateLock() {
  if (fd_ >= 0) close(fd_);  // releases the flock
}

}  // namespace ferry
