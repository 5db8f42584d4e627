// Network faults with real network namespaces (root only; each test skips,
// saying why, when it cannot build them): workers run in namespaces of
// their own, each joined to the root namespace by a veth pair on a private
// 10.231.X.0/24 picked at run time (tests/netns.h); the coordinator runs in
// the root namespace listening on a veth host address. Stores are compared
// row for row with SQL, independently of ferry.
#include "tests/netns.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "tests/cluster.h"
#include "tests/process_util.h"
#include "tests/test_util.h"

namespace ferry::testing {
namespace {

constexpr int kLong = 120000;

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void MakeTable(const std::string& path, int rows) {
  ExecSql(path,
          fmt::format("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB, note TEXT);"
                      "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<{}) "
                      "INSERT INTO t SELECT x, randomblob(40), 'row ' || x FROM c;",
                      rows));
}

// A worker process in namespace `ns` of `lab`, connecting to `endpoint`.
std::unique_ptr<Process> StartWorkerIn(const NetLab& lab, int ns, const Cluster& c,
                                       const std::string& endpoint, const std::string& id) {
  return std::make_unique<Process>(
      lab.InNamespace(ns, {Bin("ferry-worker"), "--coordinator", endpoint, "--id", id}),
      c.log_dir + "/worker-" + id + ".log");
}

void ExpectMigrated(const Cluster& c) {
  EXPECT_EQ(CompareSqliteStores(c.legacy, c.target), "");
  EXPECT_EQ(StoreVersion(c.target), 2);
  EXPECT_EQ(QueryInt(c.state, "SELECT count(*) FROM events WHERE kind='finalize'"), 1);
}

#define FERRY_NETLAB_OR_SKIP(lab, n)   \
  std::string why_;                    \
  auto lab = NetLab::Create(n, &why_); \
  if (!lab) GTEST_SKIP() << "network namespaces unavailable: " << why_;

// Three workers, each in its own namespace behind 20 ms ± 10 ms of delay and
// 1% packet loss on both directions: the migration completes and the stores
// are equal.
TEST(NetnsTest, WorkersBehindDelayAndLossComplete) {
  FERRY_NETLAB_OR_SKIP(lab, 3);
  TempDir dir;
  Cluster c(dir.path());
  MakeTable(c.legacy, 30000);
  auto coord = std::make_unique<Process>(
      std::vector<std::string>{Bin("ferry-coordinator"), "--source", "sqlite:" + c.legacy,
                               "--target", "sqlite:" + c.target, "--state", c.state, "--listen",
                               fmt::format("tcp://{}:{}", lab->coordinator_addr(), c.port),
                               "--status-endpoint", c.status_endpoint(), "--exit-when-done",
                               "--lease-ttl", "2", "--range-rows", "1000", "--batch-rows", "100"},
      c.log_dir + "/coordinator.log");
  ASSERT_TRUE(c.WaitState("copying", 20000)) << c.Logs();
  c.Command("throttle 6000");  // ~5 s of copying: many grants, heartbeats and completions
  std::vector<std::unique_ptr<Process>> workers;
  for (int i = 0; i < 3; ++i) {
    std::string why;
    ASSERT_TRUE(lab->Impair(i, 20, 10, 1.0, c.port, &why)) << why;
    workers.push_back(StartWorkerIn(*lab, i, c, lab->Endpoint(i, c.port), fmt::format("n{}", i)));
  }
  std::cout << "netns: impairment by " << lab->ImpairMode() << "\n";
  ASSERT_TRUE(coord->Wait(kLong)) << c.Logs();
  EXPECT_EQ(coord->exit_code(), 0) << c.Logs();
  for (auto& w : workers) {
    ASSERT_TRUE(w->Wait(30000)) << c.Logs();
    EXPECT_EQ(w->exit_code(), 0) << c.Logs();
  }
  int64_t dropped = 0;
  uint64_t relayed = 0;
  for (int i = 0; i < 3; ++i) {
    dropped += std::max<int64_t>(0, lab->Dropped(i));
    relayed += lab->RelayedBytes(i);
  }
  std::cout << "netns: packets dropped by the loss rules: " << dropped
            << ", bytes through the delay relays: " << relayed << "\n";
  if (lab->ImpairMode() != "netem") {
    EXPECT_GT(relayed, 0u) << "the workers bypassed the relays";
  }
  // Only the workers behind the impaired links took part.
  EXPECT_EQ(QueryInt(c.state, "SELECT count(*) FROM workers WHERE id NOT IN ('n0','n1','n2')"), 0);
  EXPECT_GE(QueryInt(c.state, "SELECT count(*) FROM workers"), 1);
  ExpectMigrated(c);
}

// Worker `a` (namespace 0) is cut off mid-lease for three lease TTLs while
// worker `b` (namespace 1) is waiting for work. `a` must stop writing
// before its lease deadline: every row it wrote under its epoch landed
// before (partition start + TTL), before the coordinator expired the lease
// and before b's first write under the new epoch. Checked in the new store
// itself: an audit trigger logs each row write with the range's fence epoch
// (__ferry_meta 'fence/<plan>/<range>', recorded in the same transaction)
// and the wall-clock time of the write.
TEST(NetnsTest, PartitionedWorkerStopsWritingBeforeItsDeadline) {
  FERRY_NETLAB_OR_SKIP(lab, 2);
  TempDir dir;
  Cluster c(dir.path());
  constexpr int kTtlMs = 1000;
  MakeTable(c.legacy, 20000);
  ExecSql(c.target, R"sql(
    CREATE TABLE __ferry_meta (key TEXT PRIMARY KEY, value);
    CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB, note TEXT);
    CREATE TABLE audit (seq INTEGER PRIMARY KEY, id INTEGER, epoch INTEGER, ts_ms INTEGER);
    CREATE TRIGGER t_audit AFTER INSERT ON t BEGIN
      INSERT INTO audit (id, epoch, ts_ms) VALUES (NEW.id,
        (SELECT max(value) FROM __ferry_meta WHERE key LIKE 'fence/%/1'),
        CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER));
    END;)sql");
  auto coord = std::make_unique<Process>(
      std::vector<std::string>{Bin("ferry-coordinator"), "--source", "sqlite:" + c.legacy,
                               "--target", "sqlite:" + c.target, "--state", c.state, "--listen",
                               fmt::format("tcp://{}:{}", lab->coordinator_addr(), c.port),
                               "--status-endpoint", c.status_endpoint(), "--exit-when-done",
                               "--lease-ttl", "1", "--range-rows", "1000000", "--batch-rows",
                               "100"},
      c.log_dir + "/coordinator.log");
  ASSERT_TRUE(c.WaitState("copying", 20000)) << c.Logs();
  c.Command("throttle 3000");
  auto a = StartWorkerIn(*lab, 0, c, lab->Endpoint(0, c.port), "a");
  ASSERT_TRUE(
      WaitFor([&] { return QueryInt(c.target, "SELECT count(*) FROM audit", 0) >= 1500; }, 30000))
      << c.Logs();
  auto b = StartWorkerIn(*lab, 1, c, lab->Endpoint(1, c.port), "b");
  const int64_t epoch_a = QueryInt(c.state, "SELECT epoch FROM ranges WHERE id=1");
  ASSERT_EQ(QueryText(c.state, "SELECT owner FROM ranges WHERE id=1"), "a");

  std::string why;
  const int64_t cut_ms = WallMs();
  ASSERT_TRUE(lab->Partition(0, true, &why)) << why;
  std::this_thread::sleep_for(std::chrono::milliseconds(3 * kTtlMs));
  ASSERT_TRUE(lab->Partition(0, false, &why)) << why;
  c.Command("throttle off");

  ASSERT_TRUE(coord->Wait(kLong)) << c.Logs();
  EXPECT_EQ(coord->exit_code(), 0) << c.Logs();
  ASSERT_TRUE(a->Wait(30000)) << c.Logs();
  ASSERT_TRUE(b->Wait(30000)) << c.Logs();
  EXPECT_EQ(a->exit_code(), 0);
  EXPECT_EQ(b->exit_code(), 0);

  const int64_t last_a = QueryInt(
      c.target, fmt::format("SELECT max(ts_ms) FROM audit WHERE epoch <= {}", epoch_a), -1);
  const int64_t first_new =
      QueryInt(c.target, fmt::format("SELECT min(ts_ms) FROM audit WHERE epoch > {}", epoch_a), -1);
  const int64_t last_a_seq =
      QueryInt(c.target, fmt::format("SELECT max(seq) FROM audit WHERE epoch <= {}", epoch_a), -1);
  const int64_t first_new_seq =
      QueryInt(c.target, fmt::format("SELECT min(seq) FROM audit WHERE epoch > {}", epoch_a), -1);
  const int64_t expired_ms = QueryInt(
      c.state,
      fmt::format("SELECT min(ts_ms) FROM events WHERE kind='expire' AND range_id=1 AND epoch={}",
                  epoch_a),
      -1);
  ASSERT_GT(first_new, 0) << "the range was never granted again\n" << c.Logs();
  ASSERT_GT(expired_ms, 0) << "a's lease never expired\n" << c.Logs();
  EXPECT_LE(last_a, cut_ms + kTtlMs)
      << "a wrote " << (last_a - cut_ms) << " ms after it was cut off (TTL " << kTtlMs << " ms)";
  EXPECT_LT(last_a, expired_ms) << "a wrote after the coordinator expired its lease";
  EXPECT_LT(last_a_seq, first_new_seq) << "a batch of the old epoch landed after the new grant's "
                                          "first write";
  EXPECT_LE(last_a, first_new);
  // The destination's fence holds the last grant's epoch, above a's.
  EXPECT_GT(QueryInt(c.target, "SELECT max(value) FROM __ferry_meta WHERE key LIKE 'fence/%/1'"),
            epoch_a);
  EXPECT_NE(QueryText(c.state, "SELECT owner FROM ranges WHERE id=1"), "a");
  std::cout << fmt::format(
      "netns: a (epoch {}) cut at +0 ms, last write at {:+} ms, lease expired at {:+} ms, next "
      "epoch's first write at {:+} ms\n",
      epoch_a, last_a - cut_ms, expired_ms - cut_ms, first_new - cut_ms);
  ExecSql(c.target, "DROP TRIGGER t_audit; DROP TABLE audit;");
  ExpectMigrated(c);
}

}  // namespace
}  // namespace ferry::testing
