// A fleet over real TCP: one ferry-coordinator process in batch-job service
// mode (--exit-when-done, no in-process workers) and three separate
// ferry-worker processes. Everything must exit 0 and the stores must be equal.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/process_util.h"
#include "tests/test_util.h"

namespace ferry::testing {
namespace {

TEST(RemoteWorkersTest, ThreeWorkerProcessesOverTcp) {
  TempDir dir;
  const std::string legacy = dir.File("legacy.db"), target = dir.File("new.db"),
                    state = dir.File("state.db");
  MakeDemoStore(legacy, 30000, 7);
  Process coord({Bin("ferry-coordinator"), "--source", "sqlite:" + legacy, "--target",
                 "sqlite:" + target, "--state", state, "--listen", "tcp://127.0.0.1:0",
                 "--status-endpoint", "tcp://127.0.0.1:0", "--endpoints-file", dir.File("ep.json"),
                 "--range-rows", "1000", "--batch-rows", "300", "--exit-when-done"},
                dir.File("coord.log"));
  CoordinatorEndpoints ep;
  ASSERT_TRUE(ReadEndpointsFile(dir.File("ep.json"), &ep, 20000))
      << ReadFile(dir.File("coord.log"));
  ASSERT_EQ(ep.listen.rfind("tcp://127.0.0.1:", 0), 0u) << ep.listen;
  EXPECT_EQ(ep.pid, coord.pid());

  std::vector<std::unique_ptr<Process>> workers;
  for (int i = 0; i < 3; ++i) {
    workers.push_back(std::make_unique<Process>(
        std::vector<std::string>{Bin("ferry-worker"), "--coordinator", ep.listen, "--id",
                                 "remote-" + std::to_string(i)},
        dir.File("w" + std::to_string(i) + ".log")));
  }

  // While it runs, the coordinator sees the workers register.
  EXPECT_TRUE(WaitFor(
      [&] {
        std::string reply;
        if (!StatusCommand(ep.status, "workers", &reply, 2000)) return false;
        auto j = nlohmann::json::parse(reply, nullptr, false);
        return j.is_object() && j["workers"].is_array() && j["workers"].size() == 3;
      },
      30000))
      << "three workers never registered (the migration may simply have finished first)";

  ASSERT_TRUE(coord.Wait(90000)) << ReadFile(dir.File("coord.log"));
  EXPECT_EQ(coord.exit_code(), 0) << ReadFile(dir.File("coord.log"));
  for (int i = 0; i < 3; ++i) {
    const std::string log = dir.File("w" + std::to_string(i) + ".log");
    ASSERT_TRUE(workers[i]->Wait(30000)) << "worker " << i << " did not exit:\n"
                                         << ReadFile(log) << "==== coordinator:\n"
                                         << ReadFile(dir.File("coord.log"));
    EXPECT_EQ(workers[i]->exit_code(), 0) << ReadFile(log);
  }

  EXPECT_EQ(CompareSqliteStores(legacy, target), "");
  EXPECT_EQ(StoreVersion(target), 2);
  EXPECT_EQ(QueryInt(target, "SELECT count(*) FROM __ferry_meta WHERE key='boundary'"), 0);
  const int64_t total = QueryInt(state, "SELECT count(*) FROM ranges");
  EXPECT_GE(total, 25);
  EXPECT_EQ(QueryInt(state, "SELECT count(*) FROM ranges WHERE state=2"), total);
  EXPECT_EQ(QueryInt(state, "SELECT sum(rows) FROM ranges"), 30000);
  // Every range was granted to one of the three remote workers.
  EXPECT_EQ(QueryInt(state, "SELECT count(*) FROM ranges WHERE owner NOT LIKE 'remote-%'"), 0);
  EXPECT_GE(QueryInt(state, "SELECT count(DISTINCT owner) FROM ranges"), 2)
      << "the work was not shared";
}

}  // namespace
}  // namespace ferry::testing
