#include "tests/cluster.h"

#include <filesystem>

#include "ctl/ctl_client.h"

namespace ferry::testing {

Cluster::Cluster(const std::string& dir)
    : legacy(dir + "/legacy.db"),
      target(dir + "/new.db"),
      state(dir + "/state.db"),
      log_dir(dir),
      port(FreePort()),
      status_port(FreePort()) {
  while (status_port == port) status_port = FreePort();
}

std::unique_ptr<Process> Cluster::StartCoordinator(const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {Bin("ferry-coordinator"),
                                   "--source",
                                   SourceArg(),
                                   "--target",
                                   TargetArg(),
                                   "--state",
                                   state,
                                   "--listen",
                                   listen(),
                                   "--status-endpoint",
                                   status_endpoint()};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return std::make_unique<Process>(argv, log_dir + "/coordinator.log");
}

std::unique_ptr<Process> Cluster::StartWorker(const std::string& id,
                                              const std::vector<std::string>& extra,
                                              const std::vector<std::string>& prefix) {
  std::vector<std::string> argv = prefix;
  std::vector<std::string> w = {Bin("ferry-worker"), "--coordinator", listen(), "--id", id};
  argv.insert(argv.end(), w.begin(), w.end());
  argv.insert(argv.end(), extra.begin(), extra.end());
  return std::make_unique<Process>(argv, log_dir + "/worker-" + id + ".log");
}

nlohmann::json Cluster::Status() {
  auto st = ::ferry::StatusRequestJson(ctx_, status_endpoint(), "status", 2000);
  return st.ok() ? *st : nlohmann::json();
}

std::string Cluster::Command(const std::string& line) {
  auto r = ::ferry::StatusRequest(ctx_, status_endpoint(), line, 2000);
  return r.ok() ? *r : "";
}

bool Cluster::WaitState(const std::string& want, int timeout_ms) {
  return WaitFor(
      [&] {
        auto st = Status();
        return st.is_object() && st.value("state", "") == want;
      },
      timeout_ms);
}

std::string Cluster::Logs() const {
  std::string out;
  for (const auto& e : std::filesystem::directory_iterator(log_dir)) {
    if (e.path().extension() == ".log") {
      out += "==== " + e.path().filename().string() + "\n" + ReadFile(e.path().string());
    }
  }
  return out;
}

}  // namespace ferry::testing
