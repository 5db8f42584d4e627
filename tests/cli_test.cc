// The three executables as an operator runs them: flags, exit codes, one-line
// errors, the embedded one-command migration, version checks, the state-file
// lock, and ferryctl against a live coordinator with remote workers.
//
// Every check is a real outcome: exit codes of real processes, files on disk,
// and the stores compared row for row with plain SQL (CompareSqliteStores).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "tests/process_util.h"
#include "tests/test_util.h"

namespace ferry::testing {
namespace {

using Args = std::vector<std::string>;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool HasWord(const std::string& text, const std::string& word) {
  return std::regex_search(text, std::regex("(^|[^0-9A-Za-z_])" + word + "([^0-9A-Za-z_]|$)"));
}

// Everything in a coordinator state file, type-exact.
std::string DumpState(const std::string& state) {
  std::string out;
  for (const char* t : {"job", "ranges", "workers", "events"}) {
    out += std::string("== ") + t + "\n" + DumpTable(state, t);
  }
  return out;
}

// ---------------------------------------------------------------------------

TEST(CliTest, HelpAndVersionExitZero) {
  for (const char* name : {"ferry-coordinator", "ferry-worker", "ferryctl"}) {
    std::string out, err;
    EXPECT_EQ(RunCommandSplit({Bin(name), "--help"}, &out, &err, 10000), 0) << name << err;
    EXPECT_NE(out.find("--help"), std::string::npos) << name << " --help printed:\n" << out;
    out.clear();
    EXPECT_EQ(RunCommandSplit({Bin(name), "--version"}, &out, &err, 10000), 0) << name << err;
    EXPECT_TRUE(std::regex_search(out, std::regex("[0-9]+\\.[0-9]+\\.[0-9]+")))
        << name << " --version printed: " << out;
  }
}

TEST(CliTest, EmbeddedMigrationCompletesAndRerunIsANoOp) {
  TempDir dir;
  const std::string legacy = dir.File("legacy.db"), target = dir.File("new.db"),
                    state = dir.File("state.db");
  MakeDemoStore(legacy, 20000);
  const Args cmd = CoordinatorArgs(
      "sqlite:" + legacy, "sqlite:" + target, state,
      {"--local-workers", "2", "--range-rows", "1000", "--batch-rows", "250", "--exit-when-done"});
  std::string out, err;
  ASSERT_EQ(RunCommandSplit(cmd, &out, &err, 90000), 0) << out << err;
  EXPECT_EQ(CompareSqliteStores(legacy, target), "");
  EXPECT_EQ(StoreVersion(target), 2);
  EXPECT_EQ(QueryInt(target, "SELECT count(*) FROM __ferry_meta WHERE key='boundary'"), 0)
      << "the boundary must be cleared when the version is set";
  // The plan really was split into many ranges, all done.
  const int64_t ranges = QueryInt(state, "SELECT count(*) FROM ranges");
  EXPECT_GE(ranges, 15);
  EXPECT_EQ(QueryInt(state, "SELECT count(*) FROM ranges WHERE state=2"), ranges);
  // Indexes of the legacy store exist in the new one (schema before data).
  EXPECT_EQ(QueryInt(target,
                     "SELECT count(*) FROM sqlite_master WHERE type='index' AND "
                     "name='users_email'"),
            1);

  // Re-run: nothing to do, says so, changes nothing.
  const std::string state_before = DumpState(state);
  const std::string users_before = DumpTable(target, "users");
  const std::string meta_before = DumpTable(target, "__ferry_meta");
  out.clear();
  err.clear();
  ASSERT_EQ(RunCommandSplit(cmd, &out, &err, 30000), 0) << out << err;
  EXPECT_NE((out + err).find("already at version 2"), std::string::npos) << out << err;
  EXPECT_EQ(DumpState(state), state_before) << "a no-op re-run must not touch the state file";
  EXPECT_EQ(DumpTable(target, "users"), users_before);
  EXPECT_EQ(DumpTable(target, "__ferry_meta"), meta_before);
  EXPECT_EQ(CompareSqliteStores(legacy, target), "");
}

// --- version checks -------------------------------------------------------

class VersionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    legacy_ = dir_.File("legacy.db");
    target_ = dir_.File("new.db");
    state_ = dir_.File("state.db");
    MakeDemoStore(legacy_, 600);
  }
  void SetMeta(const std::string& path, int64_t version) {
    ExecSql(path,
            "CREATE TABLE IF NOT EXISTS __ferry_meta (key TEXT PRIMARY KEY, value); "
            "INSERT OR REPLACE INTO __ferry_meta VALUES ('version', " +
                std::to_string(version) + ");");
  }
  int Run(const Args& extra, std::string* out, std::string* err) {
    Args a = {"--local-workers", "2", "--range-rows", "100", "--batch-rows", "50"};
    a.insert(a.end(), extra.begin(), extra.end());
    return RunCommandSplit(CoordinatorArgs("sqlite:" + legacy_, "sqlite:" + target_, state_, a),
                           out, err, 60000);
  }
  TempDir dir_;
  std::string legacy_, target_, state_;
};

// A legacy store with a full-text index: moving "all tables" is refused in
// one line naming the virtual table; leaving it out with --tables moves the
// rest, and neither the virtual table nor its shadow tables reach the target.
TEST(CliTest, VirtualTableIsRefusedUnlessLeftOut) {
  TempDir dir;
  const std::string legacy = dir.File("legacy.db"), target = dir.File("new.db"),
                    state = dir.File("state.db");
  MakeDemoStore(legacy, 2000);
  if (!ExecSql(legacy,
               "CREATE VIRTUAL TABLE docs USING fts5(body);"
               "INSERT INTO docs VALUES ('hello world'), ('ferry');")) {
    GTEST_SKIP() << "this SQLite has no fts5";
  }
  std::string out, err;
  const Args all = CoordinatorArgs("sqlite:" + legacy, "sqlite:" + target, state,
                                   {"--local-workers", "1", "--exit-when-done"});
  EXPECT_EQ(RunCommandSplit(all, &out, &err, 30000), 2) << out << err;
  EXPECT_NE(err.find("table docs is a virtual table"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_FALSE(Exists(target) && QueryInt(target,
                                          "SELECT count(*) FROM sqlite_master WHERE "
                                          "name = 'users'") > 0);

  out.clear();
  err.clear();
  const Args some =
      CoordinatorArgs("sqlite:" + legacy, "sqlite:" + target, dir.File("state2.db"),
                      {"--local-workers", "1", "--exit-when-done", "--tables", "events,kv,users"});
  ASSERT_EQ(RunCommandSplit(some, &out, &err, 60000), 0) << out << err;
  for (const char* t : {"users", "kv", "events"}) {
    EXPECT_EQ(DumpTable(target, t), DumpTable(legacy, t)) << t;
  }
  EXPECT_EQ(QueryInt(target, "SELECT count(*) FROM sqlite_master WHERE name LIKE 'docs%'"), 0);
  EXPECT_EQ(StoreVersion(target), 2);
}

TEST_F(VersionTest, TargetAtToVersionIsANoOp) {
  SetMeta(target_, 2);
  std::string out, err;
  ASSERT_EQ(Run({}, &out, &err), 0) << out << err;
  EXPECT_NE((out + err).find("already at version 2"), std::string::npos) << out << err;
  EXPECT_EQ(QueryInt(target_, "SELECT count(*) FROM sqlite_master WHERE name='users'"), 0)
      << "nothing may be copied into a store that is already at the target version";
  EXPECT_EQ(StoreVersion(target_), 2);
}

TEST_F(VersionTest, TargetAtFromVersionProceeds) {
  SetMeta(target_, 1);
  SetMeta(legacy_, 1);  // legacy at S is fine too
  std::string out, err;
  ASSERT_EQ(Run({}, &out, &err), 0) << out << err;
  EXPECT_EQ(CompareSqliteStores(legacy_, target_), "");
  EXPECT_EQ(StoreVersion(target_), 2);
}

TEST_F(VersionTest, TargetAbsentProceedsWithOtherVersions) {
  std::string out, err;
  ASSERT_EQ(Run({"--from-version", "5", "--to-version", "9"}, &out, &err), 0) << out << err;
  EXPECT_EQ(CompareSqliteStores(legacy_, target_), "");
  EXPECT_EQ(StoreVersion(target_), 9);
}

TEST_F(VersionTest, TargetAtAnotherVersionIsRefused) {
  SetMeta(target_, 7);
  std::string out, err;
  EXPECT_EQ(Run({}, &out, &err), 3) << out << err;
  auto lines = NonEmptyLines(err);
  ASSERT_EQ(lines.size(), 1u) << err;
  EXPECT_TRUE(HasWord(lines[0], "7")) << lines[0];
  EXPECT_TRUE(HasWord(lines[0], "1") || HasWord(lines[0], "2")) << lines[0];
  EXPECT_EQ(StoreVersion(target_), 7);
  EXPECT_EQ(QueryInt(target_, "SELECT count(*) FROM sqlite_master WHERE name='users'"), 0);
}

TEST_F(VersionTest, LegacyAtAnotherVersionIsRefused) {
  SetMeta(legacy_, 4);
  std::string out, err;
  EXPECT_EQ(Run({}, &out, &err), 3) << out << err;
  auto lines = NonEmptyLines(err);
  ASSERT_EQ(lines.size(), 1u) << err;
  EXPECT_TRUE(HasWord(lines[0], "4")) << lines[0];
  EXPECT_TRUE(HasWord(lines[0], "1")) << lines[0];
  EXPECT_FALSE(Exists(target_)) << "the new store must not be created";
}

TEST_F(VersionTest, BadVersionFlagsAreUsageErrors) {
  for (const Args& flags : {Args{"--from-version", "3", "--to-version", "3"},
                            Args{"--from-version", "4", "--to-version", "2"}}) {
    std::string out, err;
    EXPECT_EQ(Run(flags, &out, &err), 2) << flags[1] << " " << flags[3] << ": " << out << err;
    EXPECT_EQ(NonEmptyLines(err).size(), 1u) << err;
    EXPECT_FALSE(Exists(target_));
  }
}

// --- the state-file lock --------------------------------------------------

TEST(CliTest, SecondCoordinatorOnSameStateFailsFastNamingTheHolder) {
  TempDir dir;
  const std::string legacy = dir.File("legacy.db"), target = dir.File("new.db"),
                    state = dir.File("state.db");
  MakeDemoStore(legacy, 2000);
  Process first(CoordinatorArgs("sqlite:" + legacy, "sqlite:" + target, state,
                                {"--endpoints-file", dir.File("ep1.json")}),
                dir.File("first.log"));
  CoordinatorEndpoints ep;
  ASSERT_TRUE(ReadEndpointsFile(dir.File("ep1.json"), &ep, 20000))
      << ReadFile(dir.File("first.log"));
  EXPECT_EQ(ep.pid, first.pid());

  std::string out, err;
  const int64_t t0 = NowMs();
  int code = RunCommandSplit(
      CoordinatorArgs("sqlite:" + legacy, "sqlite:" + target, state, {"--local-workers", "1"}),
      &out, &err, 20000);
  const int64_t elapsed = NowMs() - t0;
  EXPECT_EQ(code, 4) << out << err;
  EXPECT_LT(elapsed, 2500) << "a second coordinator must fail fast";
  auto lines = NonEmptyLines(err);
  ASSERT_EQ(lines.size(), 1u) << err;
  EXPECT_TRUE(HasWord(lines[0], std::to_string(first.pid()))) << lines[0];
  EXPECT_TRUE(first.running()) << "the holder must be unaffected";

  // The holder still serves.
  std::string reply;
  EXPECT_TRUE(StatusCommand(ep.status, "status", &reply, 5000));
  first.Signal(SIGTERM);
  ASSERT_TRUE(first.Wait(20000));
  EXPECT_EQ(first.exit_code(), 0) << ReadFile(dir.File("first.log"));
}

// --- bad input ------------------------------------------------------------

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    legacy_ = dir_.File("legacy.db");
    target_ = dir_.File("new.db");
    state_ = dir_.File("state.db");
    MakeDemoStore(legacy_, 300);
  }
  // Runs the embedded mode and checks: exit `want`, exactly one non-empty
  // line on stderr, and the new store at `target_path` not created.
  void ExpectRejected(const std::string& source, const std::string& target_uri,
                      const std::string& target_path, int want, const Args& extra = {},
                      bool as_nobody = false) {
    Args flags = {"--local-workers", "1", "--range-rows", "100"};
    flags.insert(flags.end(), extra.begin(), extra.end());
    Args argv = CoordinatorArgs(source, target_uri, state_, flags);
    if (as_nobody && geteuid() == 0) {
      // Root ignores permission bits: run the coordinator as an unprivileged
      // user, with the test directory (state file, lock) open to it.
      ::chmod(dir_.path().c_str(), 0777);
      argv.insert(argv.begin(), {"/usr/sbin/runuser", "-u", "nobody", "--"});
    }
    std::string out, err;
    int code = RunCommandSplit(argv, &out, &err, 30000);
    EXPECT_EQ(code, want) << "stdout:\n" << out << "stderr:\n" << err;
    auto lines = NonEmptyLines(err);
    EXPECT_EQ(lines.size(), 1u) << "expected exactly one line on stderr (the error), got:\n" << err;
    size_t errors = 0;
    for (const std::string& l : lines) errors += l.find("error") != std::string::npos;
    EXPECT_GE(errors, 1u) << "no error line:\n" << err;
    if (!target_path.empty()) {
      EXPECT_FALSE(Exists(target_path)) << target_path << " must not be created";
    }
  }
  TempDir dir_;
  std::string legacy_, target_, state_;
};

TEST_F(BadInputTest, MissingLegacyFile) {
  ExpectRejected("sqlite:" + dir_.File("nope.db"), "sqlite:" + target_, target_, 2);
  EXPECT_FALSE(Exists(dir_.File("nope.db"))) << "the legacy store must not be created";
}

TEST_F(BadInputTest, LegacyIsADirectory) {
  ::mkdir(dir_.File("adir").c_str(), 0755);
  ExpectRejected("sqlite:" + dir_.File("adir"), "sqlite:" + target_, target_, 2);
}

TEST_F(BadInputTest, LegacyIsNotADatabase) {
  FILE* f = fopen(dir_.File("junk.db").c_str(), "w");
  fputs(
      "this is not a sqlite database, just some text that is long enough to look like one..\n"
      "..................................................................................\n",
      f);
  fclose(f);
  ExpectRejected("sqlite:" + dir_.File("junk.db"), "sqlite:" + target_, target_, 2);
}

TEST_F(BadInputTest, UnreadableLegacyFile) {
  if (geteuid() == 0 && access("/usr/sbin/runuser", X_OK) != 0) GTEST_SKIP() << "no runuser";
  ASSERT_EQ(::chmod(legacy_.c_str(), 0), 0);
  ExpectRejected("sqlite:" + legacy_, "sqlite:" + target_, target_, 2, {}, /*as_nobody=*/true);
}

TEST_F(BadInputTest, TargetInReadOnlyDirectory) {
  if (geteuid() == 0 && access("/usr/sbin/runuser", X_OK) != 0) GTEST_SKIP() << "no runuser";
  const std::string ro = dir_.File("ro");
  ASSERT_EQ(::mkdir(ro.c_str(), 0555), 0);
  ::chmod(legacy_.c_str(), 0644);
  ExpectRejected("sqlite:" + legacy_, "sqlite:" + ro + "/new.db", ro + "/new.db", 2, {},
                 /*as_nobody=*/true);
}

TEST_F(BadInputTest, TargetUnderMissingDirectory) {
  const std::string t = dir_.File("no/such/dir/new.db");
  ExpectRejected("sqlite:" + legacy_, "sqlite:" + t, t, 2);
  EXPECT_FALSE(Exists(dir_.File("no")));
}

TEST_F(BadInputTest, TargetUnderProc) {
  // /proc refuses new files even for root.
  ExpectRejected("sqlite:" + legacy_, "sqlite:/proc/ferry-new.db", "/proc/ferry-new.db", 2);
}

TEST_F(BadInputTest, UnknownSourceScheme) {
  ExpectRejected("mysql://x", "sqlite:" + target_, target_, 2);
}

TEST_F(BadInputTest, UnknownTargetScheme) {
  ExpectRejected("sqlite:" + legacy_, "mysql://x", "", 2);
  EXPECT_FALSE(Exists(target_));
}

TEST_F(BadInputTest, TableWithNullKey) {
  const std::string bad = dir_.File("nullkey.db");
  ExecSql(bad,
          "CREATE TABLE t (k TEXT PRIMARY KEY, v); INSERT INTO t VALUES ('a', 1); "
          "INSERT INTO t VALUES (NULL, 2); INSERT INTO t VALUES ('b', 3);");
  ExpectRejected("sqlite:" + bad, "sqlite:" + target_, target_, 2);
}

TEST_F(BadInputTest, ZeroLocalWorkers) {
  Args flags = {"--local-workers", "0"};
  std::string out, err;
  int code = RunCommandSplit(
      CoordinatorArgs("sqlite:" + legacy_, "sqlite:" + target_, state_, flags), &out, &err, 30000);
  EXPECT_EQ(code, 2) << out << err;
  EXPECT_EQ(NonEmptyLines(err).size(), 1u) << err;
  EXPECT_FALSE(Exists(target_));
}

TEST_F(BadInputTest, UnknownFlagAndMissingRequiredFlag) {
  for (const Args& argv : {Args{Bin("ferry-coordinator"), "--source", "sqlite:" + legacy_,
                                "--target", "sqlite:" + target_, "--state", state_, "--bogus"},
                           Args{Bin("ferry-coordinator"), "--source", "sqlite:" + legacy_},
                           Args{Bin("ferry-worker")}, Args{Bin("ferryctl"), "frobnicate"}}) {
    std::string out, err;
    EXPECT_EQ(RunCommandSplit(argv, &out, &err, 10000), 2) << argv[0] << out << err;
    EXPECT_EQ(NonEmptyLines(err).size(), 1u) << argv[0] << ":\n" << err;
  }
  EXPECT_FALSE(Exists(target_));
}

// --- ferryctl ---------------------------------------------------------------

TEST(CtlTest, StatusThenRemoteWorkersThenWait) {
  TempDir dir;
  const std::string legacy = dir.File("legacy.db"), target = dir.File("new.db"),
                    state = dir.File("state.db");
  MakeDemoStore(legacy, 8000);
  Process coord(CoordinatorArgs("sqlite:" + legacy, "sqlite:" + target, state,
                                {"--range-rows", "500", "--batch-rows", "200", "--endpoints-file",
                                 dir.File("ep.json")}),
                dir.File("coord.log"));
  CoordinatorEndpoints ep;
  ASSERT_TRUE(ReadEndpointsFile(dir.File("ep.json"), &ep, 20000))
      << ReadFile(dir.File("coord.log"));

  std::string out, err;
  ASSERT_EQ(RunCommandSplit({Bin("ferryctl"), "--endpoint", ep.status, "status", "--json"}, &out,
                            &err, 15000),
            0)
      << out << err;
  nlohmann::json st = nlohmann::json::parse(out, nullptr, false);
  ASSERT_TRUE(st.is_object()) << out;
  for (const char* key :
       {"state", "from_version", "to_version", "current_version", "ranges_total", "ranges_pending",
        "ranges_leased", "ranges_done", "rows_copied", "rows_rejected", "bytes_copied",
        "rows_estimated", "rows_per_second", "eta_seconds", "workers_live", "boundary"}) {
    EXPECT_TRUE(st.contains(key)) << "status lacks " << key << ": " << out;
  }
  ASSERT_TRUE(st["state"].is_string());
  EXPECT_TRUE(st["state"] == "planning" || st["state"] == "copying") << st["state"];
  EXPECT_EQ(st["from_version"], 1);
  EXPECT_EQ(st["to_version"], 2);
  EXPECT_EQ(st["workers_live"], 0);
  EXPECT_EQ(st["rows_copied"], 0);
  EXPECT_EQ(st["rows_rejected"], 0);  // always present, 0 without a spec
  EXPECT_FALSE(Exists(target) && StoreVersion(target) == 2);

  // Plain (human) status also works.
  out.clear();
  EXPECT_EQ(
      RunCommandSplit({Bin("ferryctl"), "--endpoint", ep.status, "status"}, &out, &err, 15000), 0)
      << err;
  EXPECT_NE(out.find("ranges_total"), std::string::npos) << out;

  Process w1({Bin("ferry-worker"), "--coordinator", ep.listen, "--id", "w1"}, dir.File("w1.log"));
  Process w2({Bin("ferry-worker"), "--coordinator", ep.listen, "--id", "w2"}, dir.File("w2.log"));
  out.clear();
  err.clear();
  EXPECT_EQ(RunCommandSplit({Bin("ferryctl"), "--endpoint", ep.status, "wait", "--timeout", "60"},
                            &out, &err, 90000),
            0)
      << out << err << ReadFile(dir.File("coord.log"));
  ASSERT_TRUE(w1.Wait(20000)) << ReadFile(dir.File("w1.log"));
  ASSERT_TRUE(w2.Wait(20000)) << ReadFile(dir.File("w2.log"));
  EXPECT_EQ(w1.exit_code(), 0) << ReadFile(dir.File("w1.log"));
  EXPECT_EQ(w2.exit_code(), 0) << ReadFile(dir.File("w2.log"));
  EXPECT_EQ(CompareSqliteStores(legacy, target), "");
  EXPECT_EQ(StoreVersion(target), 2);

  // After completion the coordinator keeps answering, state complete.
  out.clear();
  ASSERT_EQ(RunCommandSplit({Bin("ferryctl"), "--endpoint", ep.status, "status", "--json"}, &out,
                            &err, 15000),
            0)
      << err;
  st = nlohmann::json::parse(out, nullptr, false);
  ASSERT_TRUE(st.is_object()) << out;
  EXPECT_EQ(st["state"], "complete");
  EXPECT_EQ(st["current_version"], 2);
  EXPECT_EQ(st["ranges_done"], st["ranges_total"]);
  EXPECT_EQ(st["rows_copied"], 8000);
  // Both workers did work.
  EXPECT_GE(QueryInt(state, "SELECT count(DISTINCT owner) FROM ranges WHERE state=2"), 1);

  coord.Signal(SIGTERM);
  ASSERT_TRUE(coord.Wait(20000));
  EXPECT_EQ(coord.exit_code(), 0) << ReadFile(dir.File("coord.log"));

  // wait --target answers from the new store alone, no coordinator needed.
  out.clear();
  const int64_t t0 = NowMs();
  EXPECT_EQ(RunCommandSplit({Bin("ferryctl"), "wait", "--target", "sqlite:" + target,
                             "--to-version", "2", "--timeout", "10"},
                            &out, &err, 20000),
            0)
      << out << err;
  EXPECT_LT(NowMs() - t0, 5000);
  // ...and a higher version than the store has is not "done".
  EXPECT_NE(RunCommandSplit({Bin("ferryctl"), "wait", "--target", "sqlite:" + target,
                             "--to-version", "3", "--timeout", "1"},
                            &out, &err, 20000),
            0);
}

TEST(CtlTest, WaitAgainstNothingTimesOut) {
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(FreePort());
  std::string out, err;
  const int64_t t0 = NowMs();
  int code = RunCommandSplit({Bin("ferryctl"), "--endpoint", endpoint, "wait", "--timeout", "1"},
                             &out, &err, 20000);
  EXPECT_NE(code, 0) << out << err;
  EXPECT_NE(code, -1);
  EXPECT_LT(NowMs() - t0, 5000);
  EXPECT_EQ(NonEmptyLines(err).size(), 1u) << err;

  // status against nothing: an unavailable error, bounded by --request-timeout.
  const int64_t t1 = NowMs();
  code =
      RunCommandSplit({Bin("ferryctl"), "--endpoint", endpoint, "--request-timeout", "1", "status"},
                      &out, &err, 20000);
  EXPECT_NE(code, 0);
  EXPECT_LT(NowMs() - t1, 5000);

  // wait --target on a store that does not exist yet: times out, non-zero.
  TempDir dir;
  code = RunCommandSplit(
      {Bin("ferryctl"), "wait", "--target", "sqlite:" + dir.File("none.db"), "--timeout", "1"},
      &out, &err, 20000);
  EXPECT_NE(code, 0);
  EXPECT_FALSE(Exists(dir.File("none.db"))) << "wait --target must not create the store";
}

// A worker that arrives after the migration ended (its coordinator exited)
// or whose coordinator never comes does not retry forever: after
// --give-up-after without an answer it exits 5 naming the endpoint and what
// to check.
TEST(CliTest, WorkerWithNoCoordinatorGivesUpWithExit5) {
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(FreePort());
  std::string out, err;
  const auto t0 = std::chrono::steady_clock::now();
  const int code = RunCommandSplit(
      {Bin("ferry-worker"), "--coordinator", endpoint, "--give-up-after", "2"}, &out, &err, 30000);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(code, 5) << err;
  EXPECT_GE(secs, 2.0);
  EXPECT_LT(secs, 15.0);
  const std::vector<std::string> lines = NonEmptyLines(err);
  ASSERT_FALSE(lines.empty());
  const std::string& last = lines.back();
  EXPECT_NE(last.find("ferry-worker: error: no coordinator answered at " + endpoint),
            std::string::npos)
      << last;
  EXPECT_NE(last.find("ferryctl wait --target"), std::string::npos) << last;
  // A bad value is a usage error.
  EXPECT_EQ(
      RunCommandSplit({Bin("ferry-worker"), "--coordinator", endpoint, "--give-up-after", "-1"},
                      &out, &err, 30000),
      2);
}

}  // namespace
}  // namespace ferry::testing
