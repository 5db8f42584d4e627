// Crash safety with real processes, real signals and real files: ferry-
// coordinator and ferry-worker over tcp on 127.0.0.1 (ports picked at run
// time). Each test ends by comparing the stores row for row with SQL,
// independently of ferry's digests.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <random>
#include <thread>

#include "common/version.h"
#include "tests/cluster.h"
#include "tests/process_util.h"
#include "tests/test_util.h"

namespace ferry::testing {
namespace {

constexpr int kLong = 120000;  // bound for "the migration finishes"

void MakeTable(const std::string& path, int rows, int value_bytes = 40) {
  ExecSql(path,
          fmt::format("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB, note TEXT);"
                      "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<{}) "
                      "INSERT INTO t SELECT x, randomblob({}), 'row ' || x FROM c;",
                      rows, value_bytes));
}

// Pre-creates the target's table with an audit trigger: every row write
// (INSERT OR REPLACE fires the insert trigger once per write) is logged with
// the fencing epochs recorded in the same transaction.
void AddAudit(const std::string& target) {
  ExecSql(target, R"sql(
    CREATE TABLE __ferry_meta (key TEXT PRIMARY KEY, value);
    CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB, note TEXT);
    CREATE TABLE audit (seq INTEGER PRIMARY KEY, id INTEGER, fence TEXT);
    CREATE TRIGGER t_audit AFTER INSERT ON t BEGIN
      INSERT INTO audit (id, fence) VALUES (NEW.id,
        (SELECT group_concat(value) FROM __ferry_meta WHERE key LIKE 'fence/%'));
    END;)sql");
}

void DropAudit(const std::string& target) {
  ExecSql(target, "DROP TRIGGER t_audit; DROP TABLE audit;");
}

int64_t StateInt(const Cluster& c, const std::string& sql) { return QueryInt(c.state, sql, -1); }

void ExpectMigrated(const Cluster& c) {
  EXPECT_EQ(CompareSqliteStores(c.legacy, c.target), "");
  EXPECT_EQ(StoreVersion(c.target), 2);
  EXPECT_EQ(QueryInt(c.target, "SELECT count(*) FROM __ferry_meta WHERE key='boundary'"), 0);
  EXPECT_EQ(StateInt(c, "SELECT phase FROM job"), 1);
  EXPECT_EQ(StateInt(c, "SELECT current_version FROM job"), 2);
  EXPECT_EQ(StateInt(c, "SELECT length(boundary) FROM job"), 0);
  EXPECT_EQ(StateInt(c, "SELECT count(*) FROM events WHERE kind='finalize'"), 1)
      << "the version must be bumped exactly once";
}

// One table of 20,000 rows planned as a single range, copied by worker `a`
// under a throttle so that faults land mid-range; returns once `a` has
// heartbeated at least `rows` rows. The target is audited (AddAudit).
std::unique_ptr<Process> StartAuditedSingleRange(Cluster& c, int throttle, int64_t rows,
                                                 std::unique_ptr<Process>* a) {
  MakeTable(c.legacy, 20000);
  AddAudit(c.target);
  auto coord = c.StartCoordinator(
      {"--exit-when-done", "--lease-ttl", "1", "--batch-rows", "100", "--range-rows", "1000000"});
  EXPECT_TRUE(c.WaitState("copying", 20000)) << c.Logs();
  c.Command("throttle " + std::to_string(throttle));
  *a = c.StartWorker("a");
  EXPECT_TRUE(
      WaitFor([&] { return StateInt(c, "SELECT rows FROM ranges WHERE id=1") >= rows; }, 30000))
      << c.Logs();
  return coord;
}

// 1. SIGKILL a worker mid-range: the lease expires, the range is re-granted
// with a higher epoch, and the next owner resumes after the last heartbeated
// cursor. Rows copied twice are at most those the dead worker committed
// after that cursor.
TEST(FaultTest, KilledWorkerRangeIsRegrantedAndResumesAfterCursor) {
  TempDir dir;
  Cluster c(dir.path());
  std::unique_ptr<Process> a;
  auto coord = StartAuditedSingleRange(c, 4000, 2000, &a);
  ASSERT_FALSE(::testing::Test::HasFailure());
  a->Signal(SIGKILL);
  a->Wait(5000);
  const int64_t epoch_a = StateInt(c, "SELECT epoch FROM ranges WHERE id=1");
  const int64_t committed_at_kill = QueryInt(c.target, "SELECT count(*) FROM t");
  const int64_t heartbeat_rows = StateInt(c, "SELECT rows FROM ranges WHERE id=1");
  ASSERT_GE(committed_at_kill, heartbeat_rows);
  c.Command("throttle off");
  auto b = c.StartWorker("b");
  ASSERT_TRUE(coord->Wait(kLong)) << c.Logs();
  EXPECT_EQ(coord->exit_code(), 0) << c.Logs();
  ASSERT_TRUE(b->Wait(10000));
  EXPECT_EQ(b->exit_code(), 0);
  EXPECT_GT(StateInt(c, "SELECT epoch FROM ranges WHERE id=1"), epoch_a);
  EXPECT_GE(StateInt(c, "SELECT count(*) FROM events WHERE kind='expire' AND range_id=1"), 1);
  const int64_t writes = QueryInt(c.target, "SELECT count(*) FROM audit");
  const int64_t duplicated = writes - 20000;
  EXPECT_GE(duplicated, 0);
  EXPECT_LE(duplicated, committed_at_kill - heartbeat_rows)
      << "rows copied twice must be only those after the last heartbeated cursor";
  DropAudit(c.target);
  ExpectMigrated(c);
}

// 2. SIGSTOP a worker until its lease has expired and been re-granted, then
// SIGCONT it: it is told `lease lost`, and none of its batches reaches the
// new store after the new owner's first batch (fencing observed in the store).
TEST(FaultTest, PausedWorkerIsFencedAfterItsLeaseMoves) {
  TempDir dir;
  Cluster c(dir.path());
  std::unique_ptr<Process> a;
  auto coord = StartAuditedSingleRange(c, 3000, 1000, &a);
  ASSERT_FALSE(::testing::Test::HasFailure());
  a->Signal(SIGSTOP);
  const int64_t epoch_a = StateInt(c, "SELECT epoch FROM ranges WHERE id=1");
  auto b = c.StartWorker("b");
  // The range moves to b (after expiry) and b commits a batch.
  auto b_wrote = [&] {
    return QueryInt(c.target, fmt::format("SELECT count(*) FROM audit WHERE fence > {}", epoch_a)) >
           0;
  };
  ASSERT_TRUE(WaitFor(
      [&] { return QueryText(c.state, "SELECT owner FROM ranges WHERE id=1") == "b"; }, 30000))
      << c.Logs();
  // SQLite has one writer per file: if `a` froze inside its batch's
  // transaction, nobody writes until it runs again. Its batch began under
  // its still-valid epoch and commits before b's first one.
  const bool b_wrote_while_a_stopped = WaitFor(b_wrote, 10000);
  a->Signal(SIGCONT);
  ASSERT_TRUE(b_wrote_while_a_stopped || WaitFor(b_wrote, 30000)) << c.Logs();
  c.Command("throttle off");
  ASSERT_TRUE(coord->Wait(kLong)) << c.Logs();
  EXPECT_EQ(coord->exit_code(), 0);
  ASSERT_TRUE(a->Wait(20000));
  ASSERT_TRUE(b->Wait(20000));
  EXPECT_EQ(a->exit_code(), 0);
  EXPECT_EQ(b->exit_code(), 0);
  const int64_t first_new =
      QueryInt(c.target, fmt::format("SELECT min(seq) FROM audit WHERE fence > {}", epoch_a));
  EXPECT_EQ(QueryInt(c.target, fmt::format("SELECT count(*) FROM audit WHERE seq > {} AND fence "
                                           "<= {}",
                                           first_new, epoch_a)),
            0)
      << "a batch of the old epoch landed after the new owner's first batch";
  std::string log_a = ReadFile(c.log_dir + "/worker-a.log");
  EXPECT_TRUE(log_a.find("lease_lost") != std::string::npos ||
              log_a.find("lease_expired") != std::string::npos)
      << log_a;
  DropAudit(c.target);
  ExpectMigrated(c);
}

// 3 + 4. SIGKILL the coordinator (and, in the second variant, the workers
// too) at random points including planning and the end, restart with the
// same arguments: nothing committed is lost, the version is bumped once.
void KillCoordinatorRepeatedly(bool kill_workers_too, uint64_t seed) {
  TempDir dir;
  Cluster c(dir.path());
  MakeDemoStore(c.legacy, 60000, seed);
  std::vector<std::string> args = {"--lease-ttl",  "2",   "--batch-rows", "300",
                                   "--range-rows", "3000"};
  std::vector<std::unique_ptr<Process>> workers;
  auto start_workers = [&] {
    workers.clear();
    for (int i = 0; i < 3; ++i) workers.push_back(c.StartWorker("w" + std::to_string(i)));
  };
  start_workers();
  std::mt19937_64 rng(seed);
  int kills = 0;
  for (int round = 0; round < 6; ++round) {
    auto coord = c.StartCoordinator(args);
    if (round == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 15));  // during planning
    } else {
      if (!c.WaitState("copying", 20000)) break;  // already complete
      c.Command("throttle 12000");                // persisted: keeps the copy long enough
      if (round == 5) {
        // While finishing: once all but one range are done.
        WaitFor(
            [&] {
              auto st = c.Status();
              return st.is_object() &&
                     st.value("ranges_done", 0) + 1 >= st.value("ranges_total", 1);
            },
            30000);
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 700));
      }
    }
    coord->Signal(SIGKILL);
    coord->Wait(5000);
    ++kills;
    if (kill_workers_too) {
      for (auto& w : workers) w->Signal(SIGKILL);
      for (auto& w : workers) w->Wait(5000);
      start_workers();
    }
  }
  EXPECT_GE(kills, 4);
  auto coord = c.StartCoordinator(args);
  if (coord->Wait(1000)) {
    // Killed right after it finished: the restart finds the new store at
    // version 2 and exits 0 as a no-op. Workers that registered after the
    // last kill never heard "complete": they are stopped like any fleet,
    // once running (a SIGTERM while one still loads would kill it: 143).
    ASSERT_EQ(coord->exit_code(), 0) << c.Logs();
    for (auto& w : workers) ASSERT_TRUE(w->WaitHandles(SIGTERM, 30000)) << c.Logs();
    for (auto& w : workers) w->Signal(SIGTERM);
    for (auto& w : workers) {
      ASSERT_TRUE(w->Wait(30000)) << c.Logs();
      EXPECT_EQ(w->exit_code(), 0);
    }
  } else {
    if (c.WaitState("copying", 10000)) c.Command("throttle off");
    ASSERT_TRUE(c.WaitState("complete", kLong)) << c.Logs();
    for (auto& w : workers) {
      ASSERT_TRUE(w->Wait(30000)) << c.Logs();
      EXPECT_EQ(w->exit_code(), 0);
    }
    coord->Signal(SIGTERM);
    ASSERT_TRUE(coord->Wait(10000));
    EXPECT_EQ(coord->exit_code(), 0);
  }
  ExpectMigrated(c);
  // A restart after completion is a no-op.
  std::string out;
  EXPECT_EQ(RunCommand({Bin("ferry-coordinator"), "--source", "sqlite:" + c.legacy, "--target",
                        "sqlite:" + c.target, "--state", c.state, "--listen", c.listen(),
                        "--status-endpoint", c.status_endpoint(), "--exit-when-done"},
                       &out),
            0)
      << out;
  EXPECT_NE(out.find("already at version 2"), std::string::npos) << out;
  EXPECT_EQ(StateInt(c, "SELECT count(*) FROM events WHERE kind='finalize'"), 1);
}

TEST(FaultTest, CoordinatorKilledAtRandomPointsLosesNothing) {
  KillCoordinatorRepeatedly(/*kill_workers_too=*/false, 7);
}

TEST(FaultTest, CoordinatorAndWorkersKilledTogetherLoseNothing) {
  KillCoordinatorRepeatedly(/*kill_workers_too=*/true, 11);
}

// 5. Coordinator unreachable for longer than a lease: workers stop writing
// before their lease deadline, and carry on when it returns.
TEST(FaultTest, WorkersStopWritingWhileCoordinatorIsUnreachable) {
  TempDir dir;
  Cluster c(dir.path());
  MakeTable(c.legacy, 40000);
  auto coord = c.StartCoordinator(
      {"--exit-when-done", "--lease-ttl", "1", "--batch-rows", "100", "--range-rows", "5000"});
  ASSERT_TRUE(c.WaitState("copying", 20000));
  c.Command("throttle 6000");
  auto a = c.StartWorker("a");
  auto b = c.StartWorker("b");
  ASSERT_TRUE(
      WaitFor([&] { return QueryInt(c.target, "SELECT count(*) FROM t", 0) >= 2000; }, 30000))
      << c.Logs();
  coord->Signal(SIGSTOP);
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));  // one TTL and a bit
  const int64_t after_deadline = QueryInt(c.target, "SELECT count(*) FROM t");
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  const int64_t later = QueryInt(c.target, "SELECT count(*) FROM t");
  EXPECT_EQ(later, after_deadline) << "a worker wrote after its lease deadline";
  coord->Signal(SIGCONT);
  c.Command("throttle off");
  ASSERT_TRUE(coord->Wait(kLong)) << c.Logs();
  EXPECT_EQ(coord->exit_code(), 0);
  ASSERT_TRUE(a->Wait(20000));
  ASSERT_TRUE(b->Wait(20000));
  ExpectMigrated(c);
}

// 6. Eight coordinators at the same instant on one fresh state file: exactly
// one runs, the others exit non-zero at once naming the holder. Then sixteen
// workers started at the same instant all register.
TEST(FaultTest, OnlyOneOfEightSimultaneousCoordinatorsRuns) {
  TempDir dir;
  Cluster c(dir.path());
  MakeTable(c.legacy, 2000);
  std::vector<std::unique_ptr<Process>> coords;
  for (int i = 0; i < 8; ++i) {
    coords.push_back(std::make_unique<Process>(
        std::vector<std::string>{Bin("ferry-coordinator"), "--source", "sqlite:" + c.legacy,
                                 "--target", "sqlite:" + c.target, "--state", c.state, "--listen",
                                 c.listen(), "--status-endpoint", c.status_endpoint(),
                                 "--exit-when-done"},
        dir.File("coord" + std::to_string(i) + ".out")));
  }
  int exited = 0, running_index = -1;
  ASSERT_TRUE(WaitFor(
      [&] {
        exited = 0;
        for (auto& p : coords) exited += !p->running();
        return exited >= 7;
      },
      10000));
  for (int i = 0; i < 8; ++i) {
    if (coords[i]->running()) {
      running_index = i;
      continue;
    }
    EXPECT_EQ(coords[i]->exit_code(), 4);
    std::string out = ReadFile(dir.File("coord" + std::to_string(i) + ".out"));
    EXPECT_NE(out.find("held by another coordinator (pid "), std::string::npos) << out;
  }
  ASSERT_GE(running_index, 0);
  ASSERT_TRUE(c.WaitState("copying", 20000));
  EXPECT_EQ(StateInt(c, "SELECT count(*) FROM events WHERE kind='plan'"), 1);
  EXPECT_EQ(StateInt(c, "PRAGMA user_version"), kStateSchemaVersion);
  c.Command("pause");  // keep the job open while the fleet joins
  std::vector<std::unique_ptr<Process>> workers;
  for (int i = 0; i < 16; ++i) workers.push_back(c.StartWorker("w" + std::to_string(i)));
  EXPECT_TRUE(WaitFor([&] { return StateInt(c, "SELECT count(*) FROM workers") == 16; }, 20000))
      << c.Logs();
  c.Command("resume");
  ASSERT_TRUE(coords[running_index]->Wait(kLong)) << c.Logs();
  EXPECT_EQ(coords[running_index]->exit_code(), 0);
  for (auto& w : workers) {
    ASSERT_TRUE(w->Wait(20000));
    EXPECT_EQ(w->exit_code(), 0);
  }
  ExpectMigrated(c);
}

// 7. SIGTERM a worker: it finishes its batch, reports its cursor, releases
// the lease (re-granted at once, not after expiry) and exits 0.
TEST(FaultTest, TerminatedWorkerReleasesItsLease) {
  TempDir dir;
  Cluster c(dir.path());
  MakeTable(c.legacy, 20000);
  auto coord = c.StartCoordinator(
      {"--exit-when-done", "--lease-ttl", "600", "--batch-rows", "100", "--range-rows", "1000000"});
  ASSERT_TRUE(c.WaitState("copying", 20000));
  c.Command("throttle 3000");
  auto a = c.StartWorker("a");
  ASSERT_TRUE(
      WaitFor([&] { return StateInt(c, "SELECT rows FROM ranges WHERE id=1") >= 500; }, 30000));
  a->Signal(SIGTERM);
  ASSERT_TRUE(a->Wait(10000));
  EXPECT_EQ(a->exit_code(), 0);
  EXPECT_EQ(StateInt(c, "SELECT state FROM ranges WHERE id=1"), 0) << "released to pending";
  const int64_t cursor_rows = StateInt(c, "SELECT rows FROM ranges WHERE id=1");
  EXPECT_EQ(cursor_rows, QueryInt(c.target, "SELECT count(*) FROM t"))
      << "the reported cursor covers exactly what was committed";
  EXPECT_EQ(StateInt(c, "SELECT count(*) FROM events WHERE kind='release' AND worker='a'"), 1);
  c.Command("throttle off");
  auto b = c.StartWorker("b");
  // With a 600 s TTL, only a release lets b have the range now.
  ASSERT_TRUE(coord->Wait(60000)) << c.Logs();
  EXPECT_EQ(coord->exit_code(), 0);
  ASSERT_TRUE(b->Wait(10000)) << c.Logs();
  ExpectMigrated(c);
}

// 8. The new store becomes unwritable mid-migration (a file-size limit on the
// worker makes its writes fail with EFBIG, as a full disk would): the range is
// not marked done, the error shows in status with the range and cause, the
// range — re-granted after every failed lease, each shorter than the stall
// time — is reported stalled, and the migration completes once the limit is
// lifted, with no coordinator restart.
TEST(FaultTest, UnwritableTargetIsReportedAndRecoveredWithoutRestart) {
  TempDir dir;
  Cluster c(dir.path());
  MakeTable(c.legacy, 20000, 200);
  auto coord = c.StartCoordinator({"--exit-when-done", "--lease-ttl", "2", "--batch-rows", "200",
                                   "--range-rows", "5000", "--stall-after", "6"});
  ASSERT_TRUE(c.WaitState("copying", 20000));
  // The target is ~4.5 MB when complete: stop it at 1 MB.
  auto a = c.StartWorker("a", {}, {"/usr/bin/prlimit", "--fsize=1000000:unlimited"});
  ASSERT_TRUE(WaitFor(
      [&] {
        auto st = c.Status();
        return st.is_object() && !st.value("last_error", "").empty();
      },
      60000))
      << c.Logs();
  auto st = c.Status();
  EXPECT_LT(st.value("ranges_done", 0), st.value("ranges_total", 0));
  EXPECT_NE(st.value("last_error", "").find("range "), std::string::npos) << st.dump();
  EXPECT_NE(ReadFile(c.log_dir + "/coordinator.log").find("range_error"), std::string::npos);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto s = c.Status();
        return s.is_object() && s.value("ranges_stalled", 0) >= 1;
      },
      60000))
      << c.Logs();
  auto stalled = nlohmann::json::parse(c.Command("ranges stalled"))["ranges"];
  ASSERT_GE(stalled.size(), 1u) << stalled.dump();
  EXPECT_EQ(stalled[0]["reason"], "repeated write errors") << stalled.dump();
  EXPECT_GE(stalled[0]["attempts"].get<int>(), 2) << "stalled across re-grants";
  std::string out;
  ASSERT_EQ(RunCommand({"/usr/bin/prlimit", "--pid", std::to_string(a->pid()), "--fsize=unlimited"},
                       &out),
            0)
      << out;
  ASSERT_TRUE(coord->Wait(kLong)) << c.Logs();
  EXPECT_EQ(coord->exit_code(), 0);
  ASSERT_TRUE(a->Wait(20000));
  EXPECT_EQ(a->exit_code(), 0);
  ExpectMigrated(c);
}

// 8b. A worker whose --target names another store with the same tables (a
// staging database, a mistyped path holding an earlier copy) refuses before
// writing a row: exit 2 and one line naming the store and the flag, also
// shown in the coordinator's status. Before
// the plan check it copied its ranges there, the coordinator marked them done
// and bumped the version of a store that lacked them.
TEST(FaultTest, WorkerPointedAtAnotherTargetRefusesAndWritesNothing) {
  TempDir dir;
  Cluster c(dir.path());
  MakeTable(c.legacy, 5000);
  const std::string other = dir.File("other.db");
  ASSERT_TRUE(ExecSql(other, "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB, note TEXT);"));
  auto coord = c.StartCoordinator({"--exit-when-done", "--range-rows", "1000"});
  ASSERT_TRUE(c.WaitState("copying", 20000)) << c.Logs();
  auto stray = c.StartWorker("stray", {"--target", "sqlite:" + other});
  ASSERT_TRUE(stray->Wait(30000)) << c.Logs();
  EXPECT_EQ(stray->exit_code(), 2) << c.Logs();
  const std::string log = ReadFile(c.log_dir + "/worker-stray.log");
  EXPECT_NE(log.find("sqlite:" + other + " is not the one coordinator"), std::string::npos) << log;
  EXPECT_NE(log.find("--target"), std::string::npos) << log;
  EXPECT_EQ(QueryInt(other, "SELECT count(*) FROM t"), 0);
  // It said so before leaving: the operator sees why, and the coordinator
  // does not wait for it at the end.
  auto st = c.Status();
  EXPECT_EQ(st.value("ranges_done", -1), 0);
  EXPECT_NE(st.value("last_error", "").find("worker stray: the new store sqlite:" + other),
            std::string::npos)
      << st.dump();
  auto workers = nlohmann::json::parse(c.Command("workers"))["workers"];
  ASSERT_EQ(workers.size(), 1u) << workers.dump();
  EXPECT_EQ(workers[0]["state"], "gone") << workers.dump();

  auto good = c.StartWorker("good");
  ASSERT_TRUE(coord->Wait(kLong)) << c.Logs();
  EXPECT_EQ(coord->exit_code(), 0);
  ASSERT_TRUE(good->Wait(20000));
  EXPECT_EQ(good->exit_code(), 0);
  ExpectMigrated(c);
}

// 9. A permanent source fault on one range (a corrupt page in the legacy
// file) is classified permanent after a bounded number of attempts: the
// range fails with its cause, the others finish, status says failed and
// `ferryctl wait` exits non-zero.
TEST(FaultTest, PermanentSourceFaultFailsOnlyThatRange) {
  TempDir dir;
  Cluster c(dir.path());
  MakeTable(c.legacy, 20000, 100);
  ExecSql(c.legacy, "PRAGMA journal_mode=DELETE;");
  auto coord =
      c.StartCoordinator({"--lease-ttl", "2", "--batch-rows", "200", "--range-rows", "2000"});
  ASSERT_TRUE(c.WaitState("copying", 20000)) << c.Logs();
  // Corrupt one leaf page in the middle of table t.
  const int64_t page_size = QueryInt(c.legacy, "PRAGMA page_size");
  const int64_t page = QueryInt(c.legacy,
                                "SELECT pageno FROM dbstat WHERE name='t' AND pagetype='leaf' "
                                "ORDER BY pageno LIMIT 1 OFFSET 100");
  ASSERT_GT(page, 1);
  {
    std::fstream f(c.legacy, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp((page - 1) * page_size);
    std::string junk(static_cast<size_t>(page_size), '\xff');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  auto a = c.StartWorker("a");
  auto b = c.StartWorker("b");
  ASSERT_TRUE(c.WaitState("failed", kLong)) << c.Logs();
  auto st = c.Status();
  EXPECT_NE(st.value("failure", "").find("failed"), std::string::npos) << st.dump();
  EXPECT_EQ(st.value("ranges_failed", 0), 1);
  EXPECT_EQ(st.value("ranges_done", 0) + 1, st.value("ranges_total", 0));
  EXPECT_LE(StateInt(c,
                     "SELECT count(*) FROM events WHERE kind IN ('range_error', "
                     "'range_failed')"),
            3)
      << "a permanent fault is not retried forever";
  std::string out;
  EXPECT_EQ(
      RunCommand({Bin("ferryctl"), "--endpoint", c.status_endpoint(), "wait", "--timeout", "10"},
                 &out),
      1)
      << out;
  ASSERT_TRUE(a->Wait(20000));
  ASSERT_TRUE(b->Wait(20000));
  EXPECT_NE(a->exit_code(), 0);
  EXPECT_NE(b->exit_code(), 0);
  EXPECT_EQ(StoreVersion(c.target), -1) << "a failed migration must not bump the version";
}

}  // namespace
}  // namespace ferry::testing
