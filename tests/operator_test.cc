// The operator surface against a running migration of real processes:
// HTTP /healthz /readyz /metrics (format checked by promtool), ferryctl watch
// in a pseudo-terminal, throttle measured over a window, drain and revoke.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <regex>
#include <set>
#include <thread>

#include "tests/cluster.h"
#include "tests/process_util.h"
#include "tests/test_util.h"

namespace ferry::testing {
namespace {

void MakeTable(const std::string& path, int rows) {
  ExecSql(path,
          fmt::format("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB);"
                      "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<{}) "
                      "INSERT INTO t SELECT x, randomblob(60) FROM c;",
                      rows));
}

int64_t Rows(Cluster& c) {
  auto st = c.Status();
  return st.is_object() ? st.value("rows_copied", int64_t{0}) : -1;
}

TEST(OperatorTest, HttpEndpointsMetricsFormatAndReadiness) {
  TempDir dir;
  Cluster c(dir.path());
  MakeTable(c.legacy, 20000);
  const int http_port = FreePort();
  auto coord = c.StartCoordinator({"--http-listen", fmt::format("127.0.0.1:{}", http_port),
                                   "--batch-rows", "200", "--range-rows", "2000"});
  ASSERT_TRUE(c.WaitState("copying", 20000)) << c.Logs();
  httplib::Client http("127.0.0.1", http_port);
  http.set_connection_timeout(2);
  auto health = http.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto ready = http.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);
  EXPECT_NE(ready->body.find("copying"), std::string::npos);

  auto w = c.StartWorker("a");
  ASSERT_TRUE(c.WaitState("complete", 60000)) << c.Logs();
  ready = http.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->body.find("ferry_rows_copied_total 20000"), std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("ferry_ranges{state=\"done\"} 10"), std::string::npos);
  // The exposition format, checked by Prometheus' own tool.
  if (access("/usr/bin/promtool", X_OK) != 0) GTEST_SKIP() << "promtool not installed";
  std::string file = dir.File("metrics.txt");
  {
    FILE* f = fopen(file.c_str(), "w");
    fwrite(metrics->body.data(), 1, metrics->body.size(), f);
    fclose(f);
  }
  std::string out;
  EXPECT_EQ(RunCommand({"/bin/sh", "-c", "/usr/bin/promtool check metrics < " + file}, &out), 0)
      << out;
  ASSERT_TRUE(w->Wait(20000));
  coord->Signal(SIGTERM);
  ASSERT_TRUE(coord->Wait(10000));
  EXPECT_EQ(coord->exit_code(), 0);
}

// `ferryctl watch` in a pseudo-terminal redraws a progress bar in place and
// exits 0 at completion.
TEST(OperatorTest, WatchInATerminalShowsTheBarAdvancingAndExitsZero) {
  TempDir dir;
  Cluster c(dir.path());
  MakeTable(c.legacy, 30000);
  auto coord = c.StartCoordinator({"--batch-rows", "200", "--range-rows", "3000"});
  ASSERT_TRUE(c.WaitState("copying", 20000));
  c.Command("throttle 10000");
  auto w = c.StartWorker("a");
  int master = -1;
  pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::string bin = Bin("ferryctl");
    std::string ep = c.status_endpoint();
    execl(bin.c_str(), bin.c_str(), "--endpoint", ep.c_str(), "watch", "--interval", "0.3",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  std::string screen;
  int status = -1;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    char buf[4096];
    fd_set fds;
    FD_ZERO(&fds);
    FD_SET(master, &fds);
    timeval tv{0, 100000};
    if (select(master + 1, &fds, nullptr, nullptr, &tv) > 0) {
      ssize_t n = read(master, buf, sizeof buf);
      if (n > 0) screen.append(buf, static_cast<size_t>(n));
    }
    if (waitpid(pid, &status, WNOHANG) == pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      FAIL() << "watch did not exit: " << screen;
    }
  }
  close(master);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << screen;
  // Redrawn in place (carriage return + clear line), with several distinct
  // percentages on the way to 100%.
  EXPECT_NE(screen.find("\r\033[2K["), std::string::npos);
  std::set<std::string> percents;
  std::regex pct(R"((\d+\.\d)% )");
  for (auto it = std::sregex_iterator(screen.begin(), screen.end(), pct);
       it != std::sregex_iterator(); ++it) {
    percents.insert((*it)[1]);
  }
  EXPECT_GE(percents.size(), 3u) << screen;
  EXPECT_TRUE(percents.count("100.0")) << screen;
  EXPECT_NE(screen.find("complete"), std::string::npos);
  ASSERT_TRUE(w->Wait(20000));
}

// throttle bounds the measured fleet rate within 20% over a 10 s window, and
// pause stops progress while leases stay alive.
TEST(OperatorTest, ThrottleBoundsMeasuredRateAndPauseHolds) {
  TempDir dir;
  Cluster c(dir.path());
  MakeTable(c.legacy, 120000);
  auto coord =
      c.StartCoordinator({"--batch-rows", "500", "--range-rows", "10000", "--lease-ttl", "3"});
  ASSERT_TRUE(c.WaitState("copying", 20000));
  ASSERT_NE(c.Command("throttle 5000").find("\"ok\":true"), std::string::npos);
  auto a = c.StartWorker("a");
  auto b = c.StartWorker("b");
  ASSERT_TRUE(WaitFor([&] { return Rows(c) > 2000; }, 20000));
  const int64_t r0 = Rows(c);
  auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(3));
  auto st_early = c.Status();  // rate window filled: an ETA from measured throughput
  std::this_thread::sleep_for(std::chrono::seconds(7));
  const int64_t r1 = Rows(c);
  auto st_late = c.Status();
  ASSERT_TRUE(st_early["eta_seconds"].is_number()) << st_early.dump();
  ASSERT_TRUE(st_late["eta_seconds"].is_number()) << st_late.dump();
  EXPECT_LT(st_late["eta_seconds"].get<int64_t>(), st_early["eta_seconds"].get<int64_t>())
      << "ETA must fall as rows are copied";
  EXPECT_GT(st_late.value("rows_per_second", 0), 3000) << st_late.dump();
  EXPECT_LT(st_late.value("rows_per_second", 0), 7000) << st_late.dump();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double rate = (r1 - r0) / secs;
  EXPECT_GT(rate, 5000 * 0.8) << rate;
  EXPECT_LT(rate, 5000 * 1.2) << rate;

  c.Command("pause");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // current batches finish
  const int64_t p0 = Rows(c);
  std::this_thread::sleep_for(std::chrono::milliseconds(4000));  // longer than the 3 s TTL
  EXPECT_EQ(Rows(c), p0) << "progress while paused";
  EXPECT_NE(c.Command("status").find("\"state\":\"paused\""), std::string::npos);
  EXPECT_EQ(QueryInt(c.state, "SELECT count(*) FROM events WHERE kind='expire'"), 0)
      << "leases must stay alive while paused";
  c.Command("resume");
  c.Command("throttle off");
  ASSERT_TRUE(c.WaitState("complete", 60000)) << c.Logs();
  EXPECT_EQ(CompareSqliteStores(c.legacy, c.target), "");
}

// drain: the worker finishes its batch, releases its range and gets no new
// work; revoke: the lease is taken back now and re-granted with a new epoch.
TEST(OperatorTest, DrainAndRevokeMoveTheRange) {
  TempDir dir;
  Cluster c(dir.path());
  MakeTable(c.legacy, 40000);
  auto coord =
      c.StartCoordinator({"--batch-rows", "200", "--range-rows", "20000", "--lease-ttl", "600"});
  ASSERT_TRUE(c.WaitState("copying", 20000));
  c.Command("throttle 2000");
  auto a = c.StartWorker("a");
  ASSERT_TRUE(WaitFor(
      [&] { return QueryText(c.state, "SELECT owner FROM ranges WHERE id=1") == "a"; }, 20000));
  const int64_t epoch1 = QueryInt(c.state, "SELECT epoch FROM ranges WHERE id=1");
  // revoke range 1: a loses it; the next grant of range 1 has a higher epoch.
  std::string r = c.Command("revoke 1");
  ASSERT_NE(r.find("\"ok\":true"), std::string::npos) << r;
  ASSERT_TRUE(WaitFor(
      [&] { return QueryInt(c.state, "SELECT epoch FROM ranges WHERE id=1") > epoch1; }, 20000))
      << c.Logs();
  EXPECT_EQ(QueryInt(c.state, "SELECT count(*) FROM events WHERE kind='revoke' AND range_id=1"), 1);
  // drain a: it releases what it holds, exits 0 and gets nothing more.
  r = c.Command("drain a");
  ASSERT_NE(r.find("\"ok\":true"), std::string::npos) << r;
  ASSERT_TRUE(a->Wait(20000)) << c.Logs();
  EXPECT_EQ(a->exit_code(), 0);
  EXPECT_EQ(QueryInt(c.state, "SELECT count(*) FROM ranges WHERE state=1"), 0)
      << "a drained worker must not keep a lease";
  auto workers = nlohmann::json::parse(c.Command("workers"));
  ASSERT_EQ(workers["workers"].size(), 1u);
  EXPECT_EQ(workers["workers"][0].value("state", ""), "gone") << workers.dump();
  EXPECT_EQ(QueryInt(c.state, "SELECT count(*) FROM events WHERE kind='drain'"), 1);
  c.Command("throttle off");
  auto b = c.StartWorker("b");
  ASSERT_TRUE(c.WaitState("complete", 60000)) << c.Logs();
  EXPECT_EQ(CompareSqliteStores(c.legacy, c.target), "");
}

}  // namespace
}  // namespace ferry::testing
