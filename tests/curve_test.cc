// CURVE on the worker endpoint: key files as `ferryctl keygen` writes them,
// and a real coordinator that admits only the workers in its allow file
// (real processes over tcp on 127.0.0.1, stores compared row for row).
#include "common/curve.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/exit_codes.h"
#include "tests/cluster.h"
#include "tests/process_util.h"
#include "tests/test_util.h"

namespace ferry::testing {
namespace {

void WriteText(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// The public key `ferryctl keygen FILE` printed, and FILE.pub holds.
std::string Keygen(const std::string& file) {
  std::string out, err;
  EXPECT_EQ(RunCommandSplit({Bin("ferryctl"), "keygen", file}, &out, &err), 0) << err;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

TEST(CurveKeysTest, KeygenWritesAPairItNeverOverwrites) {
  TempDir dir;
  const std::string key = dir.File("coord.key");
  const std::string pub = Keygen(key);
  ASSERT_TRUE(IsCurveKey(pub)) << pub;
  auto loaded = LoadCurveSecretKey(key, "--flag");
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->public_z85, pub);
  auto from_pub = LoadCurvePublicKey(key + ".pub", "--flag");
  ASSERT_TRUE(from_pub.ok()) << from_pub.status().ToString();
  EXPECT_EQ(*from_pub, pub);
  struct stat st;
  ASSERT_EQ(::stat(key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // A second keygen to the same path fails and leaves the first pair alone.
  std::string out, err;
  EXPECT_EQ(RunCommandSplit({Bin("ferryctl"), "keygen", key}, &out, &err), 2);
  EXPECT_NE(err.find("never overwritten"), std::string::npos) << err;
  EXPECT_EQ(LoadCurveSecretKey(key, "--flag")->public_z85, pub);
}

TEST(CurveKeysTest, KeyFilesSkipCommentsAndBlankLines) {
  TempDir dir;
  // '#' is a Z85 digit, but no key starts with it: "#" + 39 digits overflows.
  auto pair = NewCurveKeyPair();
  auto other = NewCurveKeyPair();
  ASSERT_TRUE(pair.ok() && other.ok());
  EXPECT_FALSE(IsCurveKey("#" + pair->public_z85.substr(1)));
  EXPECT_FALSE(IsCurveKey(pair->public_z85.substr(1)));
  WriteText(dir.File("allow"),
            "# workers of fleet A\n\n  " + pair->public_z85 + "  \n" + other->public_z85 + "\r\n");
  auto allow = LoadCurveAllowList(dir.File("allow"), "--curve-allow-file");
  ASSERT_TRUE(allow.ok()) << allow.status().ToString();
  EXPECT_EQ(*allow, (std::set<std::string>{pair->public_z85, other->public_z85}));

  WriteText(dir.File("bad"), "# fleet\n" + pair->public_z85 + "\nnot-a-key\n");
  auto bad = LoadCurveAllowList(dir.File("bad"), "--curve-allow-file");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("line 3"), std::string::npos) << bad.status().message();
  WriteText(dir.File("empty"), "# nobody yet\n");
  EXPECT_FALSE(LoadCurveAllowList(dir.File("empty"), "--curve-allow-file").ok());
  EXPECT_FALSE(LoadCurveSecretKey(dir.File("missing"), "--curve-secret-key-file").ok());
}

// Only the worker whose key is in the allow file gets through: a worker with
// another key and one without CURVE are refused at the handshake (they never
// register, nothing is leased to them), and the allowed worker migrates
// everything.
TEST(CurveTest, OnlyWorkersInTheAllowFileAreServed) {
  TempDir dir;
  Cluster c(dir.path());
  ASSERT_TRUE(ExecSql(c.legacy,
                      "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"
                      "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM n WHERE x<3000) "
                      "INSERT INTO t SELECT x, 'row ' || x FROM n;"));
  Keygen(dir.File("coord.key"));
  const std::string good_pub = Keygen(dir.File("good.key"));
  Keygen(dir.File("intruder.key"));
  WriteText(dir.File("allow"), "# the fleet\n" + good_pub + "\n");
  auto coord =
      c.StartCoordinator({"--exit-when-done", "--range-rows", "1000", "--curve-secret-key-file",
                          dir.File("coord.key"), "--curve-allow-file", dir.File("allow")});
  ASSERT_TRUE(c.WaitState("copying", 20000)) << c.Logs();
  const std::vector<std::string> server = {"--curve-server-key-file", dir.File("coord.key.pub")};
  std::vector<std::string> intruder_args = server;
  intruder_args.insert(intruder_args.end(), {"--curve-secret-key-file", dir.File("intruder.key")});
  auto intruder = c.StartWorker("intruder", intruder_args);
  auto plain = c.StartWorker("plain");
  ASSERT_TRUE(WaitFor(
      [&] {
        return c.Command("metrics").find("\nferry_auth_rejected_total 0\n") == std::string::npos;
      },
      20000))
      << c.Logs();
  // Let the plaintext worker try too; neither may register or lease.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  auto st = c.Status();
  ASSERT_TRUE(st.is_object()) << "the coordinator must still be waiting for a worker\n" << c.Logs();
  EXPECT_EQ(st.value("workers_live", -1), 0) << st.dump();
  EXPECT_EQ(st.value("ranges_leased", -1), 0) << st.dump();
  EXPECT_EQ(nlohmann::json::parse(c.Command("workers"))["workers"].size(), 0u);
  EXPECT_NE(ReadFile(c.log_dir + "/coordinator.log").find("auth_rejected"), std::string::npos);

  std::vector<std::string> good_args = server;
  good_args.insert(good_args.end(), {"--curve-secret-key-file", dir.File("good.key")});
  auto good = c.StartWorker("good", good_args);
  ASSERT_TRUE(coord->Wait(120000)) << c.Logs();
  EXPECT_EQ(coord->exit_code(), 0);
  ASSERT_TRUE(good->Wait(20000));
  EXPECT_EQ(good->exit_code(), 0);
  EXPECT_EQ(CompareSqliteStores(c.legacy, c.target), "");
  EXPECT_EQ(StoreVersion(c.target), 2);
  // The refused worker says what to check once its retries reach the log.
  EXPECT_TRUE(WaitFor(
      [&] {
        return ReadFile(c.log_dir + "/worker-intruder.log").find("--curve-allow-file") !=
               std::string::npos;
      },
      30000))
      << ReadFile(c.log_dir + "/worker-intruder.log");
  for (auto* p : {intruder.get(), plain.get()}) {
    EXPECT_TRUE(p->running()) << "a refused worker keeps retrying until stopped";
    p->Signal(SIGTERM);
    ASSERT_TRUE(p->Wait(10000));
  }
}

TEST(CurveTest, HalfAKeyConfigurationIsAUsageError) {
  TempDir dir;
  Keygen(dir.File("k"));
  std::string out, err;
  EXPECT_EQ(RunCommandSplit({Bin("ferry-coordinator"), "--source", "sqlite:" + dir.File("a.db"),
                             "--target", "sqlite:" + dir.File("b.db"), "--state", dir.File("s.db"),
                             "--curve-secret-key-file", dir.File("k")},
                            &out, &err),
            2);
  EXPECT_NE(err.find("--curve-allow-file"), std::string::npos) << err;
  EXPECT_EQ(RunCommandSplit({Bin("ferry-worker"), "--coordinator", "tcp://127.0.0.1:1",
                             "--curve-secret-key-file", dir.File("k")},
                            &out, &err),
            2);
  EXPECT_NE(err.find("--curve-server-key-file"), std::string::npos) << err;
  WriteText(dir.File("garbage.pub"), "hello\n");
  EXPECT_EQ(RunCommandSplit({Bin("ferry-worker"), "--coordinator", "tcp://127.0.0.1:1",
                             "--curve-server-key-file", dir.File("garbage.pub"),
                             "--curve-secret-key-file", dir.File("k")},
                            &out, &err),
            2);
  EXPECT_NE(err.find("garbage.pub"), std::string::npos) << err;
}

// CURVE on the status socket: a plain client and one with a key that is not
// in --status-curve-allow-file get no answer to anything (and a `pause`
// they send changes nothing); an allowed ferryctl reads status and pauses
// and resumes.
TEST(CurveTest, StatusSocketAnswersOnlyAllowedOperators) {
  TempDir dir;
  Cluster c(dir.path());
  ASSERT_TRUE(ExecSql(c.legacy,
                      "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"
                      "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM n WHERE x<3000) "
                      "INSERT INTO t SELECT x, 'row ' || x FROM n;"));
  const std::string status_pub = Keygen(dir.File("status.key"));
  const std::string admin_pub = Keygen(dir.File("admin.key"));
  Keygen(dir.File("stranger.key"));
  WriteText(dir.File("admins"), "# operators\n" + admin_pub + "\n");
  auto coord =
      c.StartCoordinator({"--range-rows", "1000", "--status-curve-secret-key-file",
                          dir.File("status.key"), "--status-curve-allow-file", dir.File("admins")});
  auto ctl = [&](const std::vector<std::string>& args, const std::string& key, std::string* out) {
    std::vector<std::string> argv = {Bin("ferryctl"), "--endpoint", c.status_endpoint(),
                                     "--request-timeout", "2"};
    if (!key.empty()) {
      argv.insert(argv.end(), {"--curve-server-key-file", dir.File("status.key.pub"),
                               "--curve-secret-key-file", key});
    }
    argv.insert(argv.end(), args.begin(), args.end());
    std::string err;
    const int code = RunCommandSplit(argv, out, &err, 30000);
    *out += err;
    return code;
  };
  std::string out;
  // The allowed operator is answered.
  ASSERT_TRUE(WaitFor(
      [&] {
        return ctl({"status", "--json"}, dir.File("admin.key"), &out) == 0;
      },
      20000))
      << out << ReadFile(dir.File("coordinator.log"));
  EXPECT_NE(out.find("\"state\""), std::string::npos) << out;
  // A plain client and a stranger's key get nothing, whatever they ask.
  for (const std::string& key : {std::string(), dir.File("stranger.key")}) {
    for (const std::vector<std::string>& args :
         {std::vector<std::string>{"status"}, std::vector<std::string>{"pause"}}) {
      EXPECT_EQ(ctl(args, key, &out), kExitUnavailable) << out;
      EXPECT_NE(out.find("no answer"), std::string::npos) << out;
    }
  }
  std::string raw;
  EXPECT_FALSE(StatusCommand(c.status_endpoint(), "pause", &raw, 1000)) << raw;
  // Nothing changed: not paused.
  ASSERT_EQ(ctl({"status", "--json"}, dir.File("admin.key"), &out), 0) << out;
  EXPECT_NE(out.find("\"paused\": false"), std::string::npos) << out;
  // The allowed operator pauses and resumes.
  ASSERT_EQ(ctl({"pause"}, dir.File("admin.key"), &out), 0) << out;
  ASSERT_EQ(ctl({"status", "--json"}, dir.File("admin.key"), &out), 0) << out;
  EXPECT_NE(out.find("\"paused\": true"), std::string::npos) << out;
  ASSERT_EQ(ctl({"resume"}, dir.File("admin.key"), &out), 0) << out;
  ASSERT_EQ(ctl({"status", "--json"}, dir.File("admin.key"), &out), 0) << out;
  EXPECT_NE(out.find("\"paused\": false"), std::string::npos) << out;
  // The refusals were counted and logged with what to do.
  const std::string log = ReadFile(dir.File("coordinator.log"));
  EXPECT_NE(log.find("auth_rejected"), std::string::npos);
  EXPECT_NE(log.find("--status-curve-allow-file"), std::string::npos);
  (void)status_pub;
  coord->Signal(SIGTERM);
  EXPECT_TRUE(coord->Wait(15000));
}

}  // namespace
}  // namespace ferry::testing
