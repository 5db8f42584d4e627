// A real Prometheus server (Debian's `prometheus`, installed by
// deploy/install-deps.sh) scrapes the coordinator's /metrics on 127.0.0.1
// with a 1 s interval and sees the row counter grow (~10 s).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/cluster.h"
#include "tests/process_util.h"
#include "tests/test_util.h"

namespace ferry::testing {
namespace {

// The latest scraped value of `metric`, or -1.
double Query(int prom_port, const std::string& metric) {
  httplib::Client cli("127.0.0.1", prom_port);
  cli.set_connection_timeout(2);
  auto res = cli.Get("/api/v1/query?query=" + metric);
  if (!res || res->status != 200) return -1;
  auto j = nlohmann::json::parse(res->body, nullptr, false);
  if (j.is_discarded() || j["data"]["result"].empty()) return -1;
  return std::stod(j["data"]["result"][0]["value"][1].get<std::string>());
}

TEST(PrometheusTest, RealServerScrapesTheRowCounterGrowing) {
  if (access("/usr/bin/prometheus", X_OK) != 0) GTEST_SKIP() << "prometheus not installed";
  TempDir dir;
  Cluster c(dir.path());
  ExecSql(c.legacy,
          "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB);"
          "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<100000) "
          "INSERT INTO t SELECT x, randomblob(40) FROM c;");
  const int http_port = FreePort();
  auto coord = c.StartCoordinator({"--http-listen", fmt::format("127.0.0.1:{}", http_port),
                                   "--batch-rows", "500", "--range-rows", "10000"});
  ASSERT_TRUE(c.WaitState("copying", 20000)) << c.Logs();
  c.Command("throttle 5000");  // ~20 s of copying: several scrapes see it grow
  const int prom_port = FreePort();
  {
    std::ofstream cfg(dir.File("prometheus.yml"));
    cfg << fmt::format(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: ferry\n    static_configs:\n"
        "      - targets: ['127.0.0.1:{}']\n",
        http_port);
  }
  Process prom({"/usr/bin/prometheus", "--config.file=" + dir.File("prometheus.yml"),
                "--storage.tsdb.path=" + dir.File("tsdb"),
                fmt::format("--web.listen-address=127.0.0.1:{}", prom_port)},
               dir.File("prometheus.log"));
  auto w = c.StartWorker("a");
  double first = -1;
  ASSERT_TRUE(WaitFor(
      [&] {
        first = Query(prom_port, "ferry_rows_copied_total");
        return first > 0;
      },
      60000))
      << ReadFile(dir.File("prometheus.log"));
  double later = first;
  EXPECT_TRUE(WaitFor(
      [&] {
        later = Query(prom_port, "ferry_rows_copied_total");
        return later > first;
      },
      30000))
      << "first " << first << ", later " << later;
  EXPECT_GT(later, first);
  EXPECT_EQ(Query(prom_port, "up"), 1.0);
  prom.Signal(SIGTERM);
  prom.Wait(10000);
  c.Command("throttle off");
  ASSERT_TRUE(c.WaitState("complete", 60000));
}

}  // namespace
}  // namespace ferry::testing
