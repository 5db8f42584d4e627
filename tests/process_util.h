// Real child processes for fault tests: spawn ferry executables, signal them
// (SIGKILL, SIGSTOP, SIGCONT, SIGTERM), wait with a bound, read their output.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ferry::testing {

// Path of a ferry executable: beside the running program (/proc/self/exe's
// directory) if it is there, so a copied or installed set of executables
// (ferry-chaos next to ferry-coordinator and ferry-worker) uses its own; else
// in the build's bin directory (FERRY_BIN_DIR, compiled in).
std::string Bin(const std::string& name);
// The directory Bin() takes ferry-coordinator from.
std::string BinDir();

// ferry-coordinator's command line: `source` -> `target` (store URIs), its
// state in `state`, the worker and status sockets on ports picked at run
// time (tcp://127.0.0.1:0), then `extra`.
std::vector<std::string> CoordinatorArgs(const std::string& source, const std::string& target,
                                         const std::string& state,
                                         const std::vector<std::string>& extra = {});

// A free TCP port on 127.0.0.1 (bound and released; fine for tests).
int FreePort();

class Process {
 public:
  // Starts `argv` (argv[0] is the executable path) with stdout and stderr
  // appended to `log_path` (or /dev/null when empty).
  Process(std::vector<std::string> argv, const std::string& log_path = "");
  // Same, with stdout appended to `out_path` and stderr to `err_path`
  // (either may be empty: /dev/null).
  Process(std::vector<std::string> argv, const std::string& out_path, const std::string& err_path);
  ~Process();  // SIGKILLs and reaps the child if still running
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  void Signal(int sig);
  // Waits up to `timeout_ms` for exit; true if exited. exit_code() is then
  // the exit status, or 128+signal if killed by a signal.
  bool Wait(int timeout_ms);
  bool running();
  // Waits up to `timeout_ms` until the child has installed a handler for
  // `sig` (SigCgt in /proc/PID/status): before that, e.g. while a freshly
  // started process is still loading, `sig` would take its default action.
  bool WaitHandles(int sig, int timeout_ms);
  int exit_code() const { return exit_code_; }
  void Kill() {
    Signal(9);
    Wait(10000);
  }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  int exit_code_ = -1;
};

// Runs a command to completion (bounded); returns its exit code and
// captures stdout+stderr into *output.
int RunCommand(const std::vector<std::string>& argv, std::string* output, int timeout_ms = 120000);

// Like RunCommand, but captures stdout and stderr separately. Returns -1
// (and records a failure) on timeout.
int RunCommandSplit(const std::vector<std::string>& argv, std::string* out, std::string* err,
                    int timeout_ms = 120000);

// The endpoints a coordinator started with `--endpoints-file F` wrote to F.
struct CoordinatorEndpoints {
  std::string listen;
  std::string status;
  int64_t pid = 0;
};
// Waits up to `timeout_ms` for F to exist and parse; false on timeout.
bool ReadEndpointsFile(const std::string& path, CoordinatorEndpoints* out, int timeout_ms);

// One request on a coordinator's status socket (fresh REQ socket). Returns
// false if no answer came within `timeout_ms`.
bool StatusCommand(const std::string& endpoint, const std::string& command, std::string* reply,
                   int timeout_ms = 5000);

// Non-empty lines of `text`.
std::vector<std::string> NonEmptyLines(const std::string& text);

// Polls `pred` every 10 ms until it holds or `timeout_ms` passes.
bool WaitFor(const std::function<bool()>& pred, int timeout_ms);

std::string ReadFile(const std::string& path);

// True if `path` exists (any kind of file).
bool Exists(const std::string& path);

}  // namespace ferry::testing
