#include "tests/process_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <zmq.hpp>

#include "ctl/ctl_client.h"
#include "tests/test_util.h"

namespace ferry::testing {

namespace {

// The directory of the running executable ("" if /proc is unavailable).
std::string SelfDir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  std::string self(buf, static_cast<size_t>(n));
  return self.substr(0, self.rfind('/'));
}

}  // namespace

std::string Bin(const std::string& name) {
  static const std::string self_dir = SelfDir();
  if (!self_dir.empty() && access((self_dir + "/" + name).c_str(), X_OK) == 0) {
    return self_dir + "/" + name;
  }
  return std::string(FERRY_BIN_DIR) + "/" + name;
}

std::string BinDir() {
  const std::string coordinator = Bin("ferry-coordinator");
  return coordinator.substr(0, coordinator.rfind('/'));
}

std::vector<std::string> CoordinatorArgs(const std::string& source, const std::string& target,
                                         const std::string& state,
                                         const std::vector<std::string>& extra) {
  std::vector<std::string> a = {Bin("ferry-coordinator"),
                                "--source",
                                source,
                                "--target",
                                target,
                                "--state",
                                state,
                                "--listen",
                                "tcp://127.0.0.1:0",
                                "--status-endpoint",
                                "tcp://127.0.0.1:0"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

Process::Process(std::vector<std::string> argv, const std::string& log_path)
    : Process(std::move(argv), log_path, log_path) {}

Process::Process(std::vector<std::string> argv, const std::string& out_path,
                 const std::string& err_path) {
  pid_ = fork();
  if (pid_ == 0) {
    int out = open(out_path.empty() ? "/dev/null" : out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                   0644);
    int err = open(err_path.empty() ? "/dev/null" : err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                   0644);
    dup2(out, 1);
    dup2(err, 2);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
}

Process::~Process() {
  if (pid_ > 0 && !exited_) {
    kill(pid_, SIGKILL);
    Wait(10000);
  }
}

void Process::Signal(int sig) {
  if (pid_ > 0 && !exited_) kill(pid_, sig);
}

bool Process::Wait(int timeout_ms) {
  if (exited_) return true;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

bool Process::running() { return !Wait(0); }

bool Process::WaitHandles(int sig, int timeout_ms) {
  return WaitFor(
      [&] {
        std::ifstream f("/proc/" + std::to_string(pid_) + "/status");
        for (std::string line; std::getline(f, line);) {
          if (line.rfind("SigCgt:", 0) != 0) continue;
          const uint64_t caught = std::stoull(line.substr(7), nullptr, 16);
          return ((caught >> (sig - 1)) & 1) != 0;
        }
        return false;
      },
      timeout_ms);
}

int RunCommand(const std::vector<std::string>& argv, std::string* output, int timeout_ms) {
  TempDir dir;
  std::string log = dir.File("out.txt");
  Process p(argv, log);
  if (!p.Wait(timeout_ms)) {
    p.Kill();
    if (output) *output = ReadFile(log);
    ADD_FAILURE() << "command timed out: " << argv[0];
    return -1;
  }
  if (output) *output = ReadFile(log);
  return p.exit_code();
}

int RunCommandSplit(const std::vector<std::string>& argv, std::string* out, std::string* err,
                    int timeout_ms) {
  TempDir dir;
  std::string out_path = dir.File("stdout.txt"), err_path = dir.File("stderr.txt");
  Process p(argv, out_path, err_path);
  bool done = p.Wait(timeout_ms);
  if (!done) p.Kill();
  if (out) *out = ReadFile(out_path);
  if (err) *err = ReadFile(err_path);
  if (!done) {
    ADD_FAILURE() << "command timed out: " << argv[0];
    return -1;
  }
  return p.exit_code();
}

bool ReadEndpointsFile(const std::string& path, CoordinatorEndpoints* out, int timeout_ms) {
  return WaitFor(
      [&] {
        std::string text = ReadFile(path);
        if (text.empty()) return false;
        nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
        if (j.is_discarded() || !j.is_object() || !j.contains("listen") || !j.contains("status")) {
          return false;
        }
        out->listen = j["listen"].get<std::string>();
        out->status = j["status"].get<std::string>();
        out->pid = j.value("pid", int64_t{0});
        return true;
      },
      timeout_ms);
}

bool StatusCommand(const std::string& endpoint, const std::string& command, std::string* reply,
                   int timeout_ms) {
  static zmq::context_t ctx;
  auto r = ::ferry::StatusRequest(ctx, endpoint, command, timeout_ms);
  if (!r.ok()) return false;
  if (reply) *reply = *r;
  return true;
}

std::vector<std::string> NonEmptyLines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") != std::string::npos) out.push_back(line);
  }
  return out;
}

bool WaitFor(const std::function<bool()>& pred, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace ferry::testing
