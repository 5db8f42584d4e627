// Full disks (root only; each test skips, saying why, when it cannot mount):
// the new store, and separately the coordinator's state file, live on a
// small tmpfs the test mounts, which a filler file fills up mid-copy. Expect
// clear errors, `ranges_stalled` with its reason, nothing corrupt
// (PRAGMA integrity_check), and once the filler is deleted the migration
// completes by itself — no restart — with the stores equal (SQL EXCEPT both
// ways, independent of ferry).
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/cluster.h"
#include "tests/netns.h"
#include "tests/process_util.h"
#include "tests/test_util.h"

namespace ferry::testing {
namespace {

constexpr int kLong = 120000;

// A size-limited tmpfs mounted at `dir` for the lifetime of the object.
class SmallFs {
 public:
  SmallFs(const std::string& dir, const std::string& size) : dir_(dir) {
    std::filesystem::create_directories(dir);
    if (geteuid() != 0) {
      why_ = "not root: mounting a tmpfs needs CAP_SYS_ADMIN (run the tests as root)";
      return;
    }
    std::string out;
    if (Sh({"mount", "-t", "tmpfs", "-o", "size=" + size + ",mode=0755", "ferry-test-fs", dir},
           &out) != 0) {
      why_ = "cannot mount a tmpfs at " + dir + ": " + out;
      return;
    }
    mounted_ = true;
  }
  ~SmallFs() {
    if (!mounted_) return;
    if (Sh({"umount", dir_}) != 0) Sh({"umount", "-l", dir_});
  }
  bool mounted() const { return mounted_; }
  const std::string& why() const { return why_; }
  int64_t FreeBytes() const {
    struct statvfs s;
    return statvfs(dir_.c_str(), &s) == 0 ? static_cast<int64_t>(s.f_bavail) * s.f_frsize : -1;
  }
  // Writes `path` (on this fs) until only `leave` bytes are free, or the
  // disk is full when leave is 0. Returns the bytes written.
  int64_t Fill(const std::string& path, int64_t leave) {
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    std::string chunk(64 << 10, '\x5a');
    int64_t written = 0;
    for (;;) {
      int64_t room = FreeBytes() - leave;
      if (room <= 0) break;
      ssize_t n =
          write(fd, chunk.data(), static_cast<size_t>(std::min<int64_t>(room, chunk.size())));
      if (n <= 0) break;  // ENOSPC: full
      written += n;
    }
    close(fd);
    return written;
  }

 private:
  std::string dir_, why_;
  bool mounted_ = false;
};

void MakeTable(const std::string& path, int rows, int value_bytes) {
  ExecSql(path,
          fmt::format("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB, note TEXT);"
                      "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<{}) "
                      "INSERT INTO t SELECT x, randomblob({}), 'row ' || x FROM c;",
                      rows, value_bytes));
}

std::string IntegrityCheck(const std::string& path) {
  return QueryText(path, "PRAGMA integrity_check");
}

// The new store fills up mid-copy: workers report the write error, the
// ranges they hold show as stalled with the reason "repeated write errors",
// nothing is bumped or corrupt; deleting the filler lets the migration
// finish without any restart.
TEST(DiskFullTest, NewStoreFillsUpThenCompletesOnceSpaceIsFreed) {
  TempDir dir;
  SmallFs fs(dir.File("small"), "12m");
  if (!fs.mounted()) GTEST_SKIP() << fs.why();
  Cluster c(dir.path());
  c.target = dir.File("small/new.db");
  MakeTable(c.legacy, 20000, 200);  // ~4.5 MB in the new store
  auto coord = c.StartCoordinator({"--exit-when-done", "--lease-ttl", "2", "--batch-rows", "200",
                                   "--range-rows", "5000", "--stall-after", "4"});
  ASSERT_TRUE(c.WaitState("copying", 20000)) << c.Logs();
  // Leave room for about a third of the rows.
  const std::string filler = dir.File("small/filler");
  ASSERT_GT(fs.Fill(filler, 1500 << 10), 0);
  auto a = c.StartWorker("a");
  auto b = c.StartWorker("b");
  ASSERT_TRUE(WaitFor(
      [&] {
        auto st = c.Status();
        return st.is_object() && st.value("ranges_stalled", 0) >= 1;
      },
      60000))
      << c.Logs();
  auto st = c.Status();
  EXPECT_LT(st.value("ranges_done", 0), st.value("ranges_total", 0)) << st.dump();
  EXPECT_NE(st.value("last_error", "").find("full"), std::string::npos)
      << "the error names the cause: " << st.dump();
  auto stalled = nlohmann::json::parse(c.Command("ranges stalled"))["ranges"];
  ASSERT_GE(stalled.size(), 1u) << stalled.dump();
  EXPECT_EQ(stalled[0]["reason"], "repeated write errors") << stalled.dump();
  EXPECT_NE(stalled[0]["last_error"].get<std::string>().find("full"), std::string::npos)
      << stalled.dump();
  EXPECT_EQ(StoreVersion(c.target), -1);
  EXPECT_EQ(IntegrityCheck(c.target), "ok");
  std::cout << "disk_full: new store full: last_error: " << st.value("last_error", "")
            << "\ndisk_full: stalled: " << stalled[0].dump() << "\n";

  ASSERT_EQ(unlink(filler.c_str()), 0);
  ASSERT_TRUE(coord->Wait(kLong)) << c.Logs();
  EXPECT_EQ(coord->exit_code(), 0) << c.Logs();
  ASSERT_TRUE(a->Wait(20000));
  ASSERT_TRUE(b->Wait(20000));
  EXPECT_EQ(a->exit_code(), 0);
  EXPECT_EQ(b->exit_code(), 0);
  EXPECT_EQ(IntegrityCheck(c.target), "ok");
  EXPECT_EQ(CompareSqliteStores(c.legacy, c.target), "");
  EXPECT_EQ(StoreVersion(c.target), 2);
  EXPECT_EQ(QueryInt(c.state, "SELECT count(*) FROM events WHERE kind='finalize'"), 1);
}

// The state file's file system, filled up mid-copy (StateFileTest below).
struct StateFileFull {
  TempDir dir;
  SmallFs fs{dir.File("small"), "4m"};
  Cluster c{dir.path()};
  std::unique_ptr<Process> coord, a, b;
  std::string filler = dir.File("small/filler");

  // Starts the migration with the state file on the small fs and fills the
  // fs once two ranges are done.
  void Start() {
    c.state = dir.File("small/state.db");
    MakeTable(c.legacy, 20000, 40);
    coord = c.StartCoordinator({"--exit-when-done", "--lease-ttl", "2", "--batch-rows", "100",
                                "--range-rows", "500", "--stall-after", "4"});
    ASSERT_TRUE(c.WaitState("copying", 20000)) << c.Logs();
    c.Command("throttle 4000");
    a = c.StartWorker("a");
    b = c.StartWorker("b");
    ASSERT_TRUE(WaitFor(
        [&] {
          auto st = c.Status();
          return st.is_object() && st.value("ranges_done", 0) >= 2;
        },
        30000))
        << c.Logs();
    ASSERT_GT(fs.Fill(filler, 0), 0);
  }
  int64_t FailedCommitLines() {
    const std::string log = ReadFile(c.log_dir + "/coordinator.log");
    int64_t n = 0;
    for (size_t at = log.find("state_commit_failed"); at != std::string::npos;
         at = log.find("state_commit_failed", at + 1)) {
      ++n;
    }
    return n;
  }
  // Frees the space; the migration must then finish by itself.
  void FreeAndExpectCompletion(int64_t done_while_full) {
    ASSERT_EQ(unlink(filler.c_str()), 0);
    c.Command("throttle off");
    ASSERT_TRUE(coord->Wait(kLong)) << c.Logs();
    EXPECT_EQ(coord->exit_code(), 0) << c.Logs();
    ASSERT_TRUE(a->Wait(20000));
    ASSERT_TRUE(b->Wait(20000));
    EXPECT_EQ(a->exit_code(), 0);
    EXPECT_EQ(b->exit_code(), 0);
    EXPECT_GE(QueryInt(c.state, "SELECT count(*) FROM ranges WHERE state=2"), done_while_full);
    EXPECT_EQ(IntegrityCheck(c.state), "ok");
    EXPECT_EQ(CompareSqliteStores(c.legacy, c.target), "");
    EXPECT_EQ(StoreVersion(c.target), 2);
    EXPECT_EQ(QueryInt(c.state, "SELECT count(*) FROM events WHERE kind='finalize'"), 1);
  }
};

// The coordinator's state file fills up mid-copy: state commits fail with a
// clear error naming the cause, the coordinator neither crashes nor
// commits anything half-way (integrity_check), and once the filler is
// deleted the migration finishes by itself, with the stores equal.
TEST(DiskFullTest, StateFileFillsUpThenCompletesOnceSpaceIsFreed) {
  StateFileFull t;
  if (!t.fs.mounted()) GTEST_SKIP() << t.fs.why();
  t.Start();
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  ASSERT_TRUE(WaitFor([&] { return t.FailedCommitLines() >= 1; }, 30000)) << t.c.Logs();
  std::this_thread::sleep_for(std::chrono::seconds(3));  // full for a while
  EXPECT_TRUE(t.coord->running()) << t.c.Logs();
  const std::string log = ReadFile(t.c.log_dir + "/coordinator.log");
  const auto at = log.find("state_commit_failed");
  ASSERT_NE(at, std::string::npos);
  const std::string line = log.substr(at, log.find('\n', at) - at);
  EXPECT_NE(line.find("database or disk is full"), std::string::npos) << line;
  EXPECT_FALSE(t.c.Command("status").empty()) << "the status socket went silent";
  EXPECT_EQ(IntegrityCheck(t.c.state), "ok");
  const int64_t done_while_full = QueryInt(t.c.state, "SELECT count(*) FROM ranges WHERE state=2");
  std::cout << "disk_full: state file full for 3 s: " << t.FailedCommitLines()
            << " state_commit_failed lines; " << line << "\n";
  t.FreeAndExpectCompletion(done_while_full);
}

// What a full state disk should also keep (disabled: fails today, see the
// report of issue 20 point 5): after a failed commit the coordinator backs
// off instead of re-expiring the reloaded leases and retrying in a busy
// loop (today: thousands of `expire` + `state_commit_failed` lines a second
// at 100% CPU), and read-only status commands still answer with their own
// content (today every reply in a failed pass is replaced by "state commit
// failed", so `metrics` and `status` are unreadable while the disk is full).
TEST(DiskFullTest, StateFileFullBacksOffAndKeepsStatusReadable) {
  StateFileFull t;
  if (!t.fs.mounted()) GTEST_SKIP() << t.fs.why();
  t.Start();
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  ASSERT_TRUE(WaitFor([&] { return t.FailedCommitLines() >= 1; }, 30000)) << t.c.Logs();
  const int64_t before = t.FailedCommitLines();
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_LT(t.FailedCommitLines() - before, 60) << "failed commits are retried in a busy loop";
  const std::string metrics = t.c.Command("metrics");
  EXPECT_NE(metrics.find("\nferry_state_commit_failures_total "), std::string::npos) << metrics;
  auto st = t.c.Status();
  ASSERT_TRUE(st.is_object() && st.contains("state")) << st.dump();
  EXPECT_NE(st.value("last_error", "").find("full"), std::string::npos) << st.dump();
  t.FreeAndExpectCompletion(0);
}

}  // namespace
}  // namespace ferry::testing
