// A ferry deployment made of real processes on 127.0.0.1 for fault tests and
// the chaos driver: one coordinator (restartable on the same ports) and any
// number of ferry-worker processes, with status read over the real status
// socket and the state file read independently.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "tests/process_util.h"

namespace ferry::testing {

class Cluster {
 public:
  // Files live in `dir`; ports are picked now and kept across restarts.
  explicit Cluster(const std::string& dir);

  std::string legacy, target, state, log_dir;
  // When set, the coordinator's --target (e.g. a postgresql:// URI) instead
  // of sqlite:<target>.
  std::string target_uri;
  std::string TargetArg() const { return target_uri.empty() ? "sqlite:" + target : target_uri; }
  // When set, the coordinator's --source instead of sqlite:<legacy>.
  std::string source_uri;
  std::string SourceArg() const { return source_uri.empty() ? "sqlite:" + legacy : source_uri; }
  int port = 0, status_port = 0;
  // The address the coordinator's worker socket binds (and workers dial).
  std::string listen_host = "127.0.0.1";
  std::string listen() const { return "tcp://" + listen_host + ":" + std::to_string(port); }
  std::string status_endpoint() const { return "tcp://127.0.0.1:" + std::to_string(status_port); }

  // ferry-coordinator with the common flags plus `extra`.
  std::unique_ptr<Process> StartCoordinator(const std::vector<std::string>& extra = {});
  std::unique_ptr<Process> StartWorker(const std::string& id,
                                       const std::vector<std::string>& extra = {},
                                       const std::vector<std::string>& prefix = {});

  // `status` over the status socket; null json if no answer within 2 s.
  nlohmann::json Status();
  std::string Command(const std::string& line);
  // Waits (bounded) until status.state == `state`.
  bool WaitState(const std::string& state, int timeout_ms);

  // Every log line the processes wrote (for diagnostics).
  std::string Logs() const;

 private:
  zmq::context_t ctx_;
  int seq_ = 0;
};

}  // namespace ferry::testing
