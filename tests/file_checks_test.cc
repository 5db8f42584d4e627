// Files named on the command line, tried the way a new user gets them wrong:
// common/file_checks classifies each mistake, and the real executables turn
// it into one line naming the flag and what to do, with exit code 2 and
// nothing created.
#include "common/file_checks.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "common/exit_codes.h"
#include "tests/process_util.h"
#include "tests/test_util.h"

namespace ferry::testing {
namespace {

using Args = std::vector<std::string>;

void WriteText(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// The message of a failed check ("" when it passed).
std::string Why(const Status& s) { return s.ok() ? "" : s.message(); }

class FileChecksTest : public ::testing::Test {
 protected:
  void SetUp() override {
    legacy_ = dir_.File("legacy.db");
    ASSERT_TRUE(ExecSql(legacy_,
                        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"
                        "INSERT INTO t VALUES (1, 'a'), (2, 'b');"));
    text_ = dir_.File("notes.txt");
    WriteText(text_, "this is a text file, not a database\n");
    ASSERT_EQ(::mkdir(dir_.File("adir").c_str(), 0755), 0);
  }

  TempDir dir_;
  std::string legacy_, text_;
};

TEST_F(FileChecksTest, AcceptsDatabasesNewPathsAndEmptyFiles) {
  EXPECT_TRUE(CheckSqliteFile("--state", legacy_, FileUse::kReadWrite).ok());
  EXPECT_TRUE(CheckSqliteFile("--source", legacy_, FileUse::kRead).ok());
  EXPECT_TRUE(CheckSqliteFile("--state", dir_.File("new.db"), FileUse::kReadWrite).ok());
  WriteText(dir_.File("empty.db"), "");  // SQLite takes an empty file as an empty database
  EXPECT_TRUE(CheckSqliteFile("--state", dir_.File("empty.db"), FileUse::kReadWrite).ok());
  EXPECT_TRUE(CheckOutputFile("--endpoints-file", dir_.File("ep.json")).ok());
  EXPECT_TRUE(CheckInputFile("--curve-allow-file", text_).ok());
}

TEST_F(FileChecksTest, ATextFileIsNotADatabase) {
  std::string why = Why(CheckSqliteFile("--state", text_, FileUse::kReadWrite));
  EXPECT_EQ(why.rfind("--state " + text_ + ": is not a SQLite database", 0), 0) << why;
  EXPECT_NE(why.find("a path that does not exist yet"), std::string::npos) << why;
  // shorter than the 16-byte header
  WriteText(dir_.File("short"), "SQLite");
  why = Why(CheckSqliteFile("--source", dir_.File("short"), FileUse::kRead));
  EXPECT_NE(why.find("is not a SQLite database"), std::string::npos) << why;
}

TEST_F(FileChecksTest, DirectoriesAndMissingPaths) {
  std::string why = Why(CheckSqliteFile("--state", dir_.File("adir"), FileUse::kReadWrite));
  EXPECT_NE(why.find("is a directory; give the path of a SQLite file (e.g. " + dir_.File("adir") +
                     "/state.db)"),
            std::string::npos)
      << why;
  why = Why(CheckSqliteFile("--state", dir_.File("nodir/state.db"), FileUse::kReadWrite));
  EXPECT_NE(why.find("the directory " + dir_.File("nodir") + " does not exist"), std::string::npos)
      << why;
  why = Why(CheckSqliteFile("--state", dir_.File("missing.db"), FileUse::kRead));
  EXPECT_NE(why.find("no such file"), std::string::npos) << why;
  why = Why(CheckSqliteFile("--state", text_ + "/state.db", FileUse::kReadWrite));
  EXPECT_NE(why.find(text_ + " is not a directory"), std::string::npos) << why;
  why = Why(CheckSqliteFile("--state", "", FileUse::kReadWrite));
  EXPECT_EQ(why, "--state: empty path; give a file path");
  why = Why(CheckOutputFile("--endpoints-file", dir_.File("adir")));
  EXPECT_NE(why.find("is a directory"), std::string::npos) << why;
  why = Why(CheckOutputFile("--endpoints-file", dir_.File("nodir/ep.json")));
  EXPECT_NE(why.find("does not exist"), std::string::npos) << why;
  why = Why(CheckInputFile("--curve-allow-file", dir_.File("missing")));
  EXPECT_NE(why.find("cannot be found"), std::string::npos) << why;
}

// The messages of `checks`, run as an ordinary user: in a child process that
// switched to nobody (65534) when this test runs as root (root passes every
// access() check), else here.
std::vector<std::string> AsOrdinaryUser(const std::vector<std::function<Status()>>& checks) {
  std::vector<std::string> out;
  if (::geteuid() != 0) {
    for (const auto& c : checks) out.push_back(Why(c()));
    return out;
  }
  int fds[2];
  if (::pipe(fds) != 0) return out;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(3);
    std::string all;
    for (const auto& c : checks) all += Why(c()) + '\n';
    ssize_t ignored = ::write(fds[1], all.data(), all.size());
    (void)ignored;
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string all;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) all.append(buf, n);
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the child could not become nobody";
  size_t start = 0;
  for (size_t nl; (nl = all.find('\n', start)) != std::string::npos; start = nl + 1) {
    out.push_back(all.substr(start, nl - start));
  }
  return out;
}

TEST_F(FileChecksTest, PermissionsAsAnOrdinaryUser) {
  ASSERT_EQ(::chmod(dir_.path().c_str(), 0755), 0);  // nobody may look inside
  ASSERT_EQ(::mkdir(dir_.File("ro").c_str(), 0555), 0);
  const std::string unreadable = dir_.File("unreadable.db");
  ASSERT_TRUE(ExecSql(unreadable, "CREATE TABLE t (x)"));
  ASSERT_EQ(::chmod(unreadable.c_str(), 0), 0);
  ASSERT_EQ(::chmod(legacy_.c_str(), 0444), 0);
  const std::string ro_state = dir_.File("ro/state.db");
  std::vector<std::string> why = AsOrdinaryUser({
      [&] { return CheckSqliteFile("--state", ro_state, FileUse::kReadWrite); },
      [&] { return CheckSqliteFile("--state", legacy_, FileUse::kReadWrite); },
      [&] { return CheckSqliteFile("--source", legacy_, FileUse::kRead); },
      [&] { return CheckSqliteFile("--source", unreadable, FileUse::kRead); },
      [&] { return CheckOutputFile("--endpoints-file", dir_.File("ro/ep.json")); },
  });
  ASSERT_EQ(why.size(), 5u);
  EXPECT_NE(why[0].find("the directory " + dir_.File("ro") + " is not writable by this user"),
            std::string::npos)
      << why[0];
  EXPECT_NE(why[1].find("--state " + legacy_ + ": is not writable by this user"), std::string::npos)
      << why[1];
  EXPECT_EQ(why[2], "") << "a read-only legacy file is fine for --source";
  EXPECT_NE(why[3].find("cannot be read by this user"), std::string::npos) << why[3];
  EXPECT_NE(why[4].find("is not writable by this user"), std::string::npos) << why[4];
}

TEST(SqlitePathOfTest, OnlySqliteUris) {
  EXPECT_EQ(SqlitePathOf("sqlite:a/b.db").value_or("-"), "a/b.db");
  EXPECT_EQ(SqlitePathOf("sqlite:///abs/b.db").value_or("-"), "/abs/b.db");
  EXPECT_FALSE(SqlitePathOf("postgresql://u@h/db").has_value());
}

// ---- the real executables ------------------------------------------------

// Runs argv; expects exit code 2 and exactly one stderr line starting with
// `program: error: ` + `starts`.
void ExpectOneLineUsageError(const Args& argv, const std::string& starts) {
  std::string out, err;
  EXPECT_EQ(RunCommandSplit(argv, &out, &err, 30000), kExitUsage) << err;
  std::vector<std::string> lines = NonEmptyLines(err);
  ASSERT_EQ(lines.size(), 1u) << err;
  const std::string program = argv[0].substr(argv[0].rfind('/') + 1);
  EXPECT_EQ(lines[0].rfind(program + ": error: " + starts, 0), 0) << lines[0];
}

// ferry-coordinator from SQLite file `legacy` to `target` with one local
// worker.
Args Coordinator(const std::string& legacy, const std::string& target, const std::string& state,
                 const Args& extra = {}) {
  Args a = {"--local-workers", "1"};
  a.insert(a.end(), extra.begin(), extra.end());
  return CoordinatorArgs("sqlite:" + legacy, "sqlite:" + target, state, a);
}

TEST_F(FileChecksTest, CoordinatorStateThatIsNotADatabaseIsUsageError) {
  const std::string target = dir_.File("new.db");
  ExpectOneLineUsageError(Coordinator(legacy_, target, text_),
                          "--state " + text_ + ": is not a SQLite database");
  // Nothing was created or changed: no lock file, no new store, the text intact.
  EXPECT_FALSE(Exists(text_ + ".lock"));
  EXPECT_FALSE(Exists(target));
  EXPECT_EQ(ReadFile(text_), "this is a text file, not a database\n");

  ExpectOneLineUsageError(Coordinator(legacy_, target, dir_.File("adir")),
                          "--state " + dir_.File("adir") + ": is a directory");
  ExpectOneLineUsageError(Coordinator(legacy_, target, dir_.File("nodir/state.db")),
                          "--state " + dir_.File("nodir/state.db") + ": the directory");
  EXPECT_FALSE(Exists(target));
}

TEST_F(FileChecksTest, CoordinatorEndpointsFileInAMissingDirectoryIsUsageError) {
  const std::string target = dir_.File("new.db");
  ExpectOneLineUsageError(Coordinator(legacy_, target, dir_.File("state.db"),
                                      {"--endpoints-file", dir_.File("nodir/ep.json")}),
                          "--endpoints-file " + dir_.File("nodir/ep.json") + ": the directory");
  ExpectOneLineUsageError(
      Coordinator(legacy_, target, dir_.File("state.db"), {"--endpoints-file", dir_.File("adir")}),
      "--endpoints-file " + dir_.File("adir") + ": is a directory");
  // Refused before the state file or the new store were made.
  EXPECT_FALSE(Exists(dir_.File("state.db")));
  EXPECT_FALSE(Exists(target));
}

TEST_F(FileChecksTest, KeyFilesThatAreDirectoriesSaySo) {
  const std::string adir = dir_.File("adir");
  ExpectOneLineUsageError(
      Coordinator(legacy_, dir_.File("new.db"), dir_.File("state.db"),
                  {"--curve-secret-key-file", adir, "--curve-allow-file", adir}),
      "--curve-secret-key-file " + adir + ": is a directory");
  ExpectOneLineUsageError(
      {Bin("ferry-worker"), "--coordinator", "tcp://127.0.0.1:1", "--curve-secret-key-file",
       dir_.File("missing.key"), "--curve-server-key-file", dir_.File("missing.key.pub")},
      "--curve-");
  EXPECT_FALSE(Exists(dir_.File("state.db")));
}

TEST_F(FileChecksTest, StoreFilesNameTheirFlag) {
  const std::string state = dir_.File("state.db");
  std::string out, err;
  for (const auto& [argv, flag] : std::vector<std::pair<Args, std::string>>{
           {Coordinator(text_, dir_.File("new.db"), state), "--source"},
           {Coordinator(dir_.File("missing.db"), dir_.File("new.db"), state), "--source"},
           {Coordinator(legacy_, text_, state), "--target"},
           {Coordinator(legacy_, dir_.File("nodir/new.db"), state), "--target"},
           {Coordinator(legacy_, dir_.File("adir"), state), "--target"}}) {
    err.clear();
    EXPECT_EQ(RunCommandSplit(argv, &out, &err, 30000), kExitUsage) << err;
    std::vector<std::string> lines = NonEmptyLines(err);
    ASSERT_EQ(lines.size(), 1u) << err;
    EXPECT_NE(lines[0].find("(check " + flag), std::string::npos) << lines[0];
  }
}

TEST_F(FileChecksTest, CtlVerifyAndWaitRefuseFilesThatAreNotDatabases) {
  ExpectOneLineUsageError({Bin("ferryctl"), "verify", "--state", text_},
                          "--state " + text_ + ": is not a SQLite database");
  ExpectOneLineUsageError({Bin("ferryctl"), "verify", "--state", dir_.File("missing.db")},
                          "--state " + dir_.File("missing.db") + ": no such file");
  // A new store that is not a database never becomes one: at once, not after --timeout.
  const int64_t t0 = ::time(nullptr);
  ExpectOneLineUsageError(
      {Bin("ferryctl"), "wait", "--target", "sqlite:" + text_, "--timeout", "30"},
      "--target " + text_ + ": is not a SQLite database");
  EXPECT_LT(::time(nullptr) - t0, 10);
  // One that does not exist yet may still be created: wait (here: time out, exit 6).
  std::string out, err;
  EXPECT_EQ(RunCommandSplit({Bin("ferryctl"), "wait", "--target", "sqlite:" + dir_.File("later.db"),
                             "--timeout", "1"},
                            &out, &err, 30000),
            kExitTimeout)
      << err;
  EXPECT_NE(err.find("does not exist yet"), std::string::npos) << err;
}

}  // namespace
}  // namespace ferry::testing
