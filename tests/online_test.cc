// Online migrations (DESIGN.md "Online mode") with real processes: a writer
// process (ferry-test-writer) inserts, updates (primary-key changes
// included) and deletes ~1,000 times a second on the legacy store from
// before the coordinator starts until after the cut-over, while
// ferry-coordinator --online and two ferry-worker processes copy, catch up
// and cut over (`ferryctl cutover`). Checked independently of ferry:
//   - every write the writer saw commit is in the new store, and nothing
//     else (its log replayed over the initial rows equals the new table);
//   - the legacy and the new store are equal row for row (plain SQL /
//     libpq, canonical cells);
//   - writes after the cut-over fail with the guard's error naming the new
//     store, while writes to a table that is not migrated go on;
//   - nothing of the capture is left (no __ferry_changes, no capture
//     trigger, no replication slot), only the guard, which `ferryctl
//     unguard` removes;
// for SQLite -> SQLite, SQLite -> PostgreSQL, PostgreSQL -> PostgreSQL and
// PostgreSQL -> SQLite (the PostgreSQL cases skip without
// FERRY_TEST_PG_URI). The bad-input cases are here too.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "common/clock.h"
#include "stores/store.h"
#include "tests/cluster.h"
#include "tests/process_util.h"
#include "tests/test_util.h"

namespace ferry::testing {
namespace {

constexpr int64_t kInitialLive = 3000;

// ---- the writer's log ----

struct WriterLog {
  std::map<int64_t, int64_t> rows;  // id -> n (val is "v<n>"; initial rows: n = id, val v<id>)
  uint64_t committed = 0, refused = 0, errors = 0;
  uint64_t side_after_refusal = 0;  // side-table writes that committed after the first refusal
  std::string first_refusal;
};

WriterLog ReadWriterLog(const std::string& path, int64_t initial) {
  WriterLog w;
  for (int64_t i = 1; i <= initial; ++i) w.rows[i] = i;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::istringstream ls(line.substr(2));
    int64_t a = 0, b = 0;
    switch (line[0]) {
      case 'I':
      case 'U':
        ls >> a >> b;
        w.rows[a] = b;
        ++w.committed;
        break;
      case 'M':
        ls >> a >> b;
        w.rows[b] = w.rows[a];
        w.rows.erase(a);
        ++w.committed;
        break;
      case 'D':
        ls >> a;
        w.rows.erase(a);
        ++w.committed;
        break;
      case 'S':
        ++w.committed;
        if (w.refused > 0) ++w.side_after_refusal;
        break;
      case 'R':
        if (w.refused++ == 0) w.first_refusal = line;
        break;
      case 'E':
        ++w.errors;
        break;
    }
  }
  return w;
}

// The model as canonical rows of `live (id, val, n)`, sorted like the helpers'.
std::vector<std::string> ModelRows(const WriterLog& w) {
  std::vector<std::string> out;
  for (const auto& [id, n] : w.rows) {
    out.push_back("i:" + std::to_string(id) + "|t:v" + std::to_string(n) +
                  "|i:" + std::to_string(n));
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

int64_t LogLines(const std::string& path) {
  std::ifstream in(path);
  return std::count(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>(), '\n');
}

// ---- stores ----

struct Endpoint {
  bool pg = false;
  std::string path;     // SQLite file
  std::string uri;      // ferry's URI (sqlite:PATH or the admin postgresql:// URI)
  std::string app_uri;  // the writer's URI (PostgreSQL: a non-superuser role)
  std::unique_ptr<PgTestDb> db;
};

// The legacy tables: live (the writer's), side (the writer's too, never
// migrated) and kv + events (bulk rows, composite and blob keys).
void FillSqliteLegacy(const std::string& path, bool wal) {
  ASSERT_TRUE(ExecSql(
      path, std::string(wal ? "PRAGMA journal_mode=WAL;" : "") +
                "CREATE TABLE live (id INTEGER PRIMARY KEY, val TEXT NOT NULL, n INTEGER NOT "
                "NULL);"
                "CREATE TABLE side (id INTEGER PRIMARY KEY, n INTEGER);"
                "INSERT INTO side VALUES (1, 0);"
                "CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB);"
                "CREATE TABLE events (tenant TEXT, seq INTEGER, body TEXT, PRIMARY KEY "
                "(tenant, seq)) WITHOUT ROWID;"
                "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < " +
                std::to_string(kInitialLive) +
                ") INSERT INTO live SELECT i, 'v' || i, i FROM g;"
                "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < "
                "12000) INSERT INTO kv SELECT randomblob(12), randomblob(60) FROM g;"
                "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < "
                "12000) INSERT INTO events SELECT 't' || (i % 7), i, printf('%080d', i) "
                "FROM g;"));
}

void FillPgLegacy(const std::string& uri) {
  ASSERT_TRUE(PgExec(
      uri,
      "CREATE TABLE live (id bigint PRIMARY KEY, val text NOT NULL, n bigint NOT NULL);"
      "CREATE TABLE side (id int PRIMARY KEY, n bigint); INSERT INTO side VALUES (1, 0);"
      "CREATE TABLE kv (k bytea PRIMARY KEY, v bytea);"
      "CREATE TABLE events (tenant text, seq bigint, body text, PRIMARY KEY (tenant, seq));"
      "INSERT INTO live SELECT g, 'v' || g, g FROM generate_series(1, " +
          std::to_string(kInitialLive) +
          ") g;"
          "INSERT INTO kv SELECT decode(md5(g::text), 'hex'), decode(repeat(md5(g::text), 2), "
          "'hex') FROM generate_series(1, 12000) g;"
          "INSERT INTO events SELECT 't' || (g % 7), g, lpad(g::text, 80, '0') FROM "
          "generate_series(1, 12000) g;"
          "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ferry_app') THEN "
          "CREATE ROLE ferry_app LOGIN; END IF; END$$;"
          "GRANT USAGE ON SCHEMA public TO ferry_app;"
          "GRANT SELECT, INSERT, UPDATE, DELETE ON live, side TO ferry_app;"));
}

// A store of the given kind in `dir` / a fresh database; `legacy` fills it.
// SQLite legacy stores in the rollback journal (the default, where readers
// hold off a commit) unless `wal`.
Endpoint MakeEndpoint(bool pg, const TempDir& dir, const std::string& name, bool legacy,
                      bool wal = false) {
  Endpoint e;
  e.pg = pg;
  if (!pg) {
    e.path = dir.File(name + ".db");
    e.uri = "sqlite:" + e.path;
    e.app_uri = e.uri;
    if (legacy) FillSqliteLegacy(e.path, wal);
    return e;
  }
  e.db = std::make_unique<PgTestDb>(PgAdminUri(), "ferry_online_");
  e.uri = e.db->uri();
  // The application writes as a non-superuser role.
  const std::string admin = e.db->uri();
  const size_t at = admin.find('@');
  e.app_uri = "postgresql://ferry_app" + admin.substr(at);
  if (legacy) FillPgLegacy(e.uri);
  return e;
}

std::vector<std::string> CanonicalRows(const Endpoint& e, const std::string& table) {
  return Sorted(e.pg ? PgCanonicalRows(e.uri, table) : SqliteCanonicalRows(e.path, table));
}

// What of ferry is installed on a legacy store: "capture: ..." / "guard: ...".
struct Installed {
  int changes_table = 0, capture_triggers = 0, guard_triggers = 0, slots = 0;
};

Installed Inspect(const Endpoint& e) {
  Installed i;
  if (!e.pg) {
    i.changes_table = static_cast<int>(
        QueryInt(e.path, "SELECT count(*) FROM sqlite_master WHERE name = '__ferry_changes'"));
    i.capture_triggers = static_cast<int>(
        QueryInt(e.path,
                 "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE "
                 "'\\_\\_ferry\\_capture\\_%' ESCAPE '\\'"));
    i.guard_triggers = static_cast<int>(
        QueryInt(e.path,
                 "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE "
                 "'\\_\\_ferry\\_guard\\_%' ESCAPE '\\'"));
    return i;
  }
  i.capture_triggers = static_cast<int>(
      PgQueryInt(e.uri, "SELECT count(*) FROM pg_trigger WHERE tgname = '__ferry_capture'"));
  i.guard_triggers = static_cast<int>(
      PgQueryInt(e.uri, "SELECT count(*) FROM pg_trigger WHERE tgname = '__ferry_guard'"));
  i.slots = static_cast<int>(PgQueryInt(
      e.uri, "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()"));
  return i;
}

// One write through the application's connection; "" when it committed.
std::string AppWrite(const Endpoint& e, const std::string& sql) {
  if (!e.pg) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(e.path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      sqlite3_close(db);
      return "cannot open " + e.path;
    }
    sqlite3_busy_timeout(db, 10000);
    char* err = nullptr;
    std::string out;
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      out = err ? err : "error";
    }
    sqlite3_free(err);
    sqlite3_close(db);
    return out;
  }
  const std::string r = PgQueryText(e.app_uri, sql + " RETURNING 'ok'");
  return r == "ok" ? "" : r;
}

int RunCtl(const Cluster& c, const std::vector<std::string>& args, std::string* out,
           int timeout_ms = 120000) {
  std::vector<std::string> argv = {Bin("ferryctl"), "--endpoint", c.status_endpoint()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, out, timeout_ms);
}

// ---- the scenario ----

class OnlineTest : public ::testing::Test {
 protected:
  void Migrate(bool source_pg, bool target_pg) {
    if ((source_pg || target_pg) && PgAdminUri().empty()) {
      GTEST_SKIP() << "FERRY_TEST_PG_URI is not set (deploy/test.sh sets it)";
    }
    // SQLite -> PostgreSQL reads a legacy file in WAL mode, SQLite -> SQLite
    // one in the rollback journal.
    Endpoint legacy = MakeEndpoint(source_pg, dir_, "legacy", true, /*wal=*/target_pg);
    Endpoint target = MakeEndpoint(target_pg, dir_, "new", false);
    if (HasFatalFailure()) return;
    Cluster c(dir_.path());
    c.source_uri = legacy.uri;
    c.target_uri = target.uri;
    const std::string log = dir_.File("writes.log");

    // The application writes from before the capture until after the cut-over.
    Process writer({Bin("ferry-test-writer"), "--store", legacy.app_uri, "--table", "live",
                    "--initial", std::to_string(kInitialLive), "--rate", "1000", "--log", log,
                    "--side", "side", "--seed", "7"},
                   dir_.File("writer.out"), dir_.File("writer.err"));
    ASSERT_TRUE(WaitFor([&] { return LogLines(log) >= 200; }, 20000))
        << ReadFile(dir_.File("writer.err"));

    auto coord = c.StartCoordinator({"--online", "--tables", "events,kv,live", "--lease-ttl", "2",
                                     "--range-rows", "2000", "--batch-rows", "500"});
    ASSERT_TRUE(WaitFor([&] { return c.Status().is_object(); }, 30000)) << c.Logs();
    c.Command("throttle 8000");  // the copy takes a few seconds of the writer's traffic
    auto w1 = c.StartWorker("w1");
    auto w2 = c.StartWorker("w2");

    ASSERT_TRUE(c.WaitState("catching_up", 90000)) << c.Status().dump() << c.Logs();
    nlohmann::json st = c.Status();
    for (const char* f : {"changes_pending", "changes_applied", "lag_seconds"}) {
      EXPECT_TRUE(st.contains(f)) << f << " missing: " << st.dump();
    }
    EXPECT_TRUE(st["cutover_freeze_ms"].is_null()) << st.dump();
    // The applier replays what the writer did during the copy.
    ASSERT_TRUE(WaitFor([&] { return c.Status().value("changes_applied", 0) > 100; }, 30000))
        << c.Status().dump() << c.Logs();
    const int64_t before_cutover = LogLines(log);

    std::string out;
    const int rc = RunCtl(c, {"cutover", "--timeout", "60"}, &out);
    ASSERT_EQ(rc, 0) << out << c.Logs();
    st = c.Status();
    EXPECT_EQ(st.value("state", ""), "complete") << st.dump();
    EXPECT_EQ(st.value("current_version", 0), 2);
    ASSERT_TRUE(st["cutover_freeze_ms"].is_number()) << st.dump();
    const int64_t freeze_ms = st["cutover_freeze_ms"].get<int64_t>();
    std::cerr << "cut-over froze writes for " << freeze_ms << " ms; changes applied "
              << st.value("changes_applied", 0) << "\n";
    EXPECT_LE(freeze_ms, 1000) << "freeze longer than 1 s at 1,000 writes/s";

    // The application goes on for a moment: its writes to the migrated
    // table are refused, the unmigrated table still takes them.
    ASSERT_TRUE(WaitFor([&] { return ReadWriterLog(log, kInitialLive).refused >= 100; }, 20000));
    writer.Signal(SIGTERM);
    ASSERT_TRUE(writer.Wait(20000));
    for (auto* w : {w1.get(), w2.get()}) EXPECT_TRUE(w->Wait(30000)) << c.Logs();
    coord->Signal(SIGTERM);
    EXPECT_TRUE(coord->Wait(30000));

    if (const char* keep = std::getenv("FERRY_ONLINE_TEST_LOGS")) {
      std::ofstream(keep) << c.Logs();  // for a look at the timings
    }
    const WriterLog wl = ReadWriterLog(log, kInitialLive);
    EXPECT_GT(static_cast<int64_t>(wl.committed), before_cutover / 2);
    EXPECT_EQ(wl.errors, 0u) << "writes that failed otherwise than refused";
    EXPECT_NE(wl.first_refusal.find("has moved to " + RedactUri(target.uri)), std::string::npos)
        << wl.first_refusal;
    EXPECT_GT(wl.side_after_refusal, 0u) << "writes to an unmigrated table must go on";

    // Every committed write is in the new store, and nothing else.
    const std::vector<std::string> model = ModelRows(wl);
    const std::vector<std::string> got = CanonicalRows(target, "live");
    EXPECT_EQ(got.size(), model.size());
    EXPECT_TRUE(got == model) << "the new store's live table differs from the writer's log";
    // The stores are equal row for row.
    for (const char* t : {"live", "kv", "events"}) {
      EXPECT_TRUE(CanonicalRows(legacy, t) == CanonicalRows(target, t)) << "table " << t;
    }

    // Only the guard is left, and `ferryctl unguard` removes it.
    Installed i = Inspect(legacy);
    EXPECT_EQ(i.changes_table, 0);
    EXPECT_EQ(i.capture_triggers, 0);
    EXPECT_EQ(i.slots, 0);
    EXPECT_EQ(i.guard_triggers, legacy.pg ? 3 : 9);
    EXPECT_NE(AppWrite(legacy, "UPDATE live SET n = n WHERE id = (SELECT min(id) FROM live)"), "");
    ASSERT_EQ(RunCommand({Bin("ferryctl"), "unguard", "--source", legacy.uri}, &out), 0) << out;
    EXPECT_NE(out.find("removed guard"), std::string::npos) << out;
    EXPECT_EQ(Inspect(legacy).guard_triggers, 0);
    EXPECT_EQ(AppWrite(legacy, "UPDATE live SET n = n WHERE id = (SELECT min(id) FROM live)"), "");
  }

  TempDir dir_;
};

TEST_F(OnlineTest, SqliteToSqliteLosesNoWriteAndRefusesWritesAfterCutover) {
  Migrate(false, false);
}
TEST_F(OnlineTest, SqliteToPostgresLosesNoWriteAndRefusesWritesAfterCutover) {
  Migrate(false, true);
}
TEST_F(OnlineTest, PostgresToPostgresLosesNoWriteAndRefusesWritesAfterCutover) {
  Migrate(true, true);
}
TEST_F(OnlineTest, PostgresToSqliteLosesNoWriteAndRefusesWritesAfterCutover) {
  Migrate(true, false);
}

// ---- bad input and failed cut-overs ----

// A small SQLite legacy store, the coordinator (--online) and one worker.
struct SmallOnline {
  explicit SmallOnline(const TempDir& dir, bool wal = false) : c(dir.path()) {
    legacy = MakeEndpoint(false, dir, "legacy", true, wal);
    c.source_uri = legacy.uri;
  }
  void Start(const std::vector<std::string>& extra, int throttle = 0, int ttl = 2) {
    std::vector<std::string> args = {"--online",    "--tables",          "events,kv,live",
                                     "--lease-ttl", std::to_string(ttl), "--range-rows",
                                     "2000",        "--batch-rows",      "500"};
    args.insert(args.end(), extra.begin(), extra.end());
    coord = c.StartCoordinator(args);
    ASSERT_TRUE(WaitFor([&] { return c.Status().is_object(); }, 30000)) << c.Logs();
    if (throttle > 0) c.Command("throttle " + std::to_string(throttle));
    worker = c.StartWorker("w1");
  }
  Endpoint legacy;
  Cluster c;
  std::unique_ptr<Process> coord, worker;
};

// True once the new store holds `live` row `id` with n = `n`.
bool NewStoreHas(const Cluster& c, int64_t id, int64_t n) {
  return QueryInt(c.target, "SELECT n FROM live WHERE id = " + std::to_string(id), -1) == n;
}

TEST(OnlineBadInput, CutoverBeforeCatchingUpIsAClearError) {
  TempDir dir;
  SmallOnline s(dir);
  s.Start({}, /*throttle=*/300);  // a slow copy: still copying when asked
  ASSERT_TRUE(s.c.WaitState("copying", 30000)) << s.c.Logs();
  const nlohmann::json answer = nlohmann::json::parse(s.c.Command("cutover"), nullptr, false);
  ASSERT_TRUE(answer.is_object());
  EXPECT_NE(answer.value("error", "").find("still copying"), std::string::npos) << answer.dump();
  std::string out;
  EXPECT_EQ(RunCtl(s.c, {"cutover", "--timeout", "5"}, &out), 1) << out;
  EXPECT_NE(out.find("catching_up"), std::string::npos) << out;
  EXPECT_EQ(s.c.Status().value("state", ""), "copying");
  EXPECT_EQ(Inspect(s.legacy).capture_triggers, 9);  // capture untouched
  EXPECT_EQ(Inspect(s.legacy).guard_triggers, 0);
}

TEST(OnlineBadInput, CutoverOfAnOfflineMigrationIsRefused) {
  TempDir dir;
  Cluster c(dir.path());
  MakeDemoStore(c.legacy, 2000);
  auto coord = c.StartCoordinator({});  // no worker: it stays copying
  ASSERT_TRUE(WaitFor([&] { return c.Status().is_object(); }, 30000)) << c.Logs();
  const std::string answer = c.Command("cutover");
  EXPECT_NE(answer.find("not online"), std::string::npos) << answer;
}

TEST(OnlineBadInput, CutoverThatTimesOutReturnsToCatchingUpWithWritesAllowed) {
  TempDir dir;
  SmallOnline s(dir);
  s.Start({});
  ASSERT_TRUE(s.c.WaitState("catching_up", 60000)) << s.c.Logs();
  // Another writer holds the legacy store's write lock: the freeze never gets it.
  sqlite3* holder = nullptr;
  ASSERT_EQ(sqlite3_open(s.legacy.path.c_str(), &holder), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(holder, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  std::string out;
  const int64_t t0 = MonotonicMs();
  EXPECT_EQ(RunCtl(s.c, {"cutover", "--timeout", "2"}, &out), 6) << out;
  EXPECT_LT(MonotonicMs() - t0, 15000);
  EXPECT_NE(out.find("timed out"), std::string::npos) << out;
  nlohmann::json st = s.c.Status();
  EXPECT_EQ(st.value("state", ""), "catching_up") << st.dump();
  EXPECT_EQ(st.value("cutover_result", ""), "timed_out");
  EXPECT_NE(st.value("last_error", "").find("cut-over 1"), std::string::npos) << st.dump();
  ASSERT_EQ(sqlite3_exec(holder, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(holder);
  // Legacy writes are allowed again, and still captured and replayed.
  EXPECT_EQ(AppWrite(s.legacy, "UPDATE live SET n = 424242 WHERE id = 7"), "");
  EXPECT_TRUE(WaitFor([&] { return NewStoreHas(s.c, 7, 424242); }, 20000));
  EXPECT_EQ(Inspect(s.legacy).guard_triggers, 0);
  // A later cut-over succeeds.
  EXPECT_EQ(RunCtl(s.c, {"cutover", "--timeout", "30"}, &out), 0) << out;
  EXPECT_EQ(CanonicalRows(s.legacy, "live"), Sorted(SqliteCanonicalRows(s.c.target, "live")));
}

TEST(OnlineBadInput, FreezeThatTheApplierCannotDrainIsRolledBack) {
  TempDir dir;
  // WAL: the stopped applier's read does not hold writers off; a lease
  // longer than the test's steps keeps the stopped applier's lease alive; a
  // lag gate that the held change cannot close.
  SmallOnline s(dir, /*wal=*/true);
  s.Start({"--cutover-max-freeze", "1", "--cutover-max-lag", "60"}, /*throttle=*/0, /*ttl=*/20);
  ASSERT_TRUE(s.c.WaitState("catching_up", 60000)) << s.c.Logs();
  // The applier has caught up with a first change (its reports are fresh).
  EXPECT_EQ(AppWrite(s.legacy, "UPDATE live SET n = 414141 WHERE id = 8"), "");
  ASSERT_TRUE(WaitFor([&] { return NewStoreHas(s.c, 8, 414141); }, 20000)) << s.c.Logs();
  ASSERT_TRUE(WaitFor([&] { return s.c.Status().value("changes_pending", -1) == 0; }, 20000));
  // Another writer holds the write lock with a change in it: the cut-over
  // passes its gate (a live, idle applier) and waits for the lock.
  sqlite3* holder = nullptr;
  ASSERT_EQ(sqlite3_open(s.legacy.path.c_str(), &holder), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(holder, "BEGIN IMMEDIATE; UPDATE live SET n = 515151 WHERE id = 9",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  std::string out;
  int rc = -1;
  std::thread ctl([&] { rc = RunCtl(s.c, {"cutover", "--timeout", "30"}, &out); });
  const bool cutting =
      WaitFor([&] { return s.c.Status().value("state", "") == "cutting_over"; }, 20000);
  // The applier stops (a stalled process) just before the lock is free: the
  // freeze comes with a change left to apply that nobody applies.
  s.worker->Signal(SIGSTOP);
  EXPECT_EQ(sqlite3_exec(holder, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(holder);
  ctl.join();
  ASSERT_TRUE(cutting) << s.c.Logs();
  EXPECT_EQ(rc, 1) << out << s.c.Logs();
  EXPECT_NE(out.find("freeze point"), std::string::npos) << out;
  nlohmann::json st = s.c.Status();
  EXPECT_EQ(st.value("state", ""), "catching_up") << st.dump();
  EXPECT_EQ(st.value("cutover_result", ""), "failed");
  // The freeze was rolled back: the legacy store takes writes at once.
  EXPECT_EQ(AppWrite(s.legacy, "UPDATE live SET n = 616161 WHERE id = 10"), "");
  EXPECT_EQ(Inspect(s.legacy).guard_triggers, 0);
  s.worker->Signal(SIGCONT);
  EXPECT_TRUE(
      WaitFor([&] { return NewStoreHas(s.c, 9, 515151) && NewStoreHas(s.c, 10, 616161); }, 30000))
      << s.c.Logs();
}

// A PostgreSQL cluster of the test's own (initdb, pg_ctl), for settings the
// shared test server does not have. ok() is false when it cannot start
// (no server binaries, or root without the ferrytest user deploy/test.sh makes).
class ScratchPg {
 public:
  ScratchPg(const TempDir& dir, const std::string& settings) : dir_(dir.File("pg")) {
    std::string initdb;
    for (const auto& e : std::filesystem::directory_iterator("/usr/lib/postgresql")) {
      const std::string p = e.path().string() + "/bin/initdb";
      if (Exists(p) && p > initdb) initdb = p;
    }
    if (initdb.empty()) return;
    bin_ = std::filesystem::path(initdb).parent_path().string();
    if (getuid() == 0) {
      if (RunCommand({"/usr/bin/id", "-u", "ferrytest"}, nullptr) != 0) return;
      as_ = {"/usr/sbin/runuser", "-u", "ferrytest", "--"};
    }
    std::filesystem::create_directories(dir_);
    chmod(dir.path().c_str(), 0755);
    if (getuid() == 0 && RunCommand({"/bin/chown", "ferrytest:", dir_}, nullptr) != 0) return;
    chmod(dir_.c_str(), 0700);
    const std::string user = getuid() == 0    ? "ferrytest"
                             : getenv("USER") ? getenv("USER")
                                              : "postgres";
    std::string out;
    if (Run({bin_ + "/initdb", "-D", dir_ + "/data", "-U", user, "--auth=trust", "-E", "UTF8",
             "--no-sync"},
            &out) != 0) {
      std::cerr << "initdb failed: " << out;
      return;
    }
    const int port = FreePort();
    if (Run({bin_ + "/pg_ctl", "-D", dir_ + "/data", "-l", dir_ + "/server.log", "-w", "-t", "30",
             "-o",
             "-c listen_addresses=127.0.0.1 -p " + std::to_string(port) + " -k " + dir_ +
                 " -c fsync=off " + settings,
             "start"},
            &out) != 0) {
      std::cerr << "pg_ctl start failed: " << out << ReadFile(dir_ + "/server.log");
      return;
    }
    started_ = true;
    uri_ = "postgresql://" + user + "@127.0.0.1:" + std::to_string(port) + "/postgres";
  }
  ~ScratchPg() {
    if (started_) Run({bin_ + "/pg_ctl", "-D", dir_ + "/data", "-m", "immediate", "stop"}, nullptr);
  }
  bool ok() const { return started_; }
  const std::string& uri() const { return uri_; }

 private:
  int Run(std::vector<std::string> argv, std::string* out) {
    std::vector<std::string> full = as_;
    full.insert(full.end(), argv.begin(), argv.end());
    return RunCommand(full, out, 60000);
  }
  std::string dir_, bin_, uri_;
  std::vector<std::string> as_;
  bool started_ = false;
};

TEST(OnlineBadInput, PostgresWithoutLogicalWalLevelIsRefusedInstallingNothing) {
  if (PgAdminUri().empty()) GTEST_SKIP() << "FERRY_TEST_PG_URI is not set";
  TempDir dir;
  ScratchPg pg(dir, "-c wal_level=replica");
  if (!pg.ok()) GTEST_SKIP() << "cannot start a PostgreSQL cluster of the test's own";
  ASSERT_TRUE(PgExec(pg.uri(),
                     "CREATE TABLE live (id bigint PRIMARY KEY, n bigint);"
                     "INSERT INTO live VALUES (1, 1)"));
  Cluster c(dir.path());
  c.source_uri = pg.uri();
  std::string out, err;
  const int rc = RunCommandSplit(
      {Bin("ferry-coordinator"), "--source", pg.uri(), "--target", "sqlite:" + c.target, "--state",
       c.state, "--online", "--listen", c.listen(), "--status-endpoint", c.status_endpoint()},
      &out, &err, 60000);
  EXPECT_EQ(rc, 2) << err;
  EXPECT_EQ(NonEmptyLines(err).size(), 1u) << err;
  EXPECT_NE(err.find("wal_level"), std::string::npos) << err;
  EXPECT_NE(err.find("wal_level=logical"), std::string::npos) << err;
  EXPECT_EQ(PgQueryInt(pg.uri(), "SELECT count(*) FROM pg_replication_slots"), 0);
  EXPECT_EQ(PgQueryInt(pg.uri(), "SELECT count(*) FROM pg_trigger WHERE tgname LIKE '__ferry%'"),
            0);
}

TEST(OnlineBadInput, TableFerryCannotCaptureIsRefusedNamingIt) {
  if (PgAdminUri().empty()) GTEST_SKIP() << "FERRY_TEST_PG_URI is not set";
  TempDir dir;
  PgTestDb db(PgAdminUri(), "ferry_online_");
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(PgExec(db.uri(),
                     "CREATE TABLE keyed (id bigint PRIMARY KEY, n bigint);"
                     "CREATE TABLE audit_trail (at timestamptz, what text);"
                     "INSERT INTO keyed VALUES (1, 1)"));
  Cluster c(dir.path());
  std::string out, err;
  const int rc = RunCommandSplit(
      {Bin("ferry-coordinator"), "--source", db.uri(), "--target", "sqlite:" + c.target, "--state",
       c.state, "--online", "--listen", c.listen(), "--status-endpoint", c.status_endpoint()},
      &out, &err, 60000);
  EXPECT_EQ(rc, 2) << err;
  EXPECT_EQ(NonEmptyLines(err).size(), 1u) << err;
  EXPECT_NE(err.find("audit_trail"), std::string::npos) << err;
  EXPECT_NE(err.find("primary key"), std::string::npos) << err;
  EXPECT_EQ(PgQueryInt(db.uri(),
                       "SELECT count(*) FROM pg_replication_slots WHERE database = "
                       "current_database()"),
            0);
  EXPECT_EQ(PgQueryInt(db.uri(), "SELECT count(*) FROM pg_trigger WHERE tgname LIKE '__ferry%'"),
            0);
}

// ---- online state in a PostgreSQL state store ----

// The online phase (catching_up, the applier's epochs, a cut-over) lives in
// the coordinator's state like the rest of the job: with --state
// postgresql://…, a coordinator SIGKILLed while catching up is restarted,
// finds the job catching up, replays what was written while it was down,
// and cuts over.
TEST(OnlinePgState, CatchingUpSurvivesACoordinatorRestartOnAPostgresqlState) {
  if (PgAdminUri().empty()) GTEST_SKIP() << "FERRY_TEST_PG_URI is not set";
  TempDir dir;
  PgTestDb state(PgAdminUri(), "ferry_online_state_");
  ASSERT_TRUE(state.ok());
  SmallOnline s(dir);
  s.c.state = state.uri();
  s.Start({});
  ASSERT_TRUE(s.c.WaitState("catching_up", 60000)) << s.c.Logs();
  EXPECT_EQ(AppWrite(s.legacy, "UPDATE live SET n = 777 WHERE id = 7"), "");
  ASSERT_TRUE(WaitFor([&] { return NewStoreHas(s.c, 7, 777); }, 20000)) << s.c.Logs();

  s.coord->Signal(SIGKILL);
  ASSERT_TRUE(s.coord->Wait(10000));
  EXPECT_EQ(AppWrite(s.legacy, "UPDATE live SET n = 888 WHERE id = 8"), "");
  EXPECT_EQ(AppWrite(s.legacy, "DELETE FROM live WHERE id = 9"), "");
  s.coord = s.c.StartCoordinator({"--online", "--tables", "events,kv,live", "--lease-ttl", "2",
                                  "--range-rows", "2000", "--batch-rows", "500"});
  ASSERT_TRUE(s.c.WaitState("catching_up", 30000)) << s.c.Logs();
  ASSERT_TRUE(WaitFor(
      [&] {
        return NewStoreHas(s.c, 8, 888) &&
               QueryInt(s.c.target, "SELECT count(*) FROM live WHERE id = 9", -1) == 0;
      },
      30000))
      << s.c.Logs();
  std::string out;
  ASSERT_EQ(RunCtl(s.c, {"cutover", "--timeout", "60"}, &out), 0) << out << s.c.Logs();
  EXPECT_EQ(s.c.Status().value("state", ""), "complete");
  EXPECT_EQ(CanonicalRows(s.legacy, "live"), Sorted(SqliteCanonicalRows(s.c.target, "live")));
  Installed i = Inspect(s.legacy);
  EXPECT_EQ(i.changes_table, 0);
  EXPECT_EQ(i.capture_triggers, 0);
  EXPECT_EQ(i.guard_triggers, 9);
}

// ---- online with a migration spec ----

// The writer's `live` table moved into `items` through a spec with a
// projection, a filter and a Lua function that drops some rows: what the
// applier replays goes through the same transform as what was copied.
constexpr const char* kOnlineSpec = R"spec(from_version = 1
to_version = 2
[[table]]
target = "items"
source = "live"
select = "id AS item_id, val, n"
where = "n % 3 <> 0"
create = """
CREATE TABLE items (item_id INTEGER PRIMARY KEY, label TEXT NOT NULL, doubled INTEGER NOT NULL)"""
lua = '''
return function(row)
  if row.n % 5 == 0 then return nil end
  return { item_id = row.item_id, label = string.upper(row.val), doubled = row.n * 2 }
end
'''
)spec";

TEST(OnlineSpec, ReplayedChangesGoThroughTheSpecsProjectionAndLuaFunction) {
  TempDir dir;
  Endpoint legacy = MakeEndpoint(false, dir, "legacy", true);
  if (HasFatalFailure()) return;
  Cluster c(dir.path());
  c.source_uri = legacy.uri;
  const std::string spec = dir.File("spec.toml");
  std::ofstream(spec) << kOnlineSpec;
  const std::string log = dir.File("writes.log");
  Process writer({Bin("ferry-test-writer"), "--store", legacy.app_uri, "--table", "live",
                  "--initial", std::to_string(kInitialLive), "--rate", "1000", "--log", log,
                  "--side", "side", "--seed", "11"},
                 dir.File("writer.out"), dir.File("writer.err"));
  ASSERT_TRUE(WaitFor([&] { return LogLines(log) >= 200; }, 20000))
      << ReadFile(dir.File("writer.err"));
  auto coord = c.StartCoordinator({"--online", "--spec", spec, "--lease-ttl", "2", "--range-rows",
                                   "1000", "--batch-rows", "200"});
  ASSERT_TRUE(WaitFor([&] { return c.Status().is_object(); }, 30000)) << c.Logs();
  c.Command("throttle 1500");  // a copy of ~2 s of the writer's traffic
  auto w1 = c.StartWorker("w1");
  ASSERT_TRUE(c.WaitState("catching_up", 60000)) << c.Status().dump() << c.Logs();
  ASSERT_TRUE(WaitFor([&] { return c.Status().value("changes_applied", 0) > 100; }, 30000))
      << c.Status().dump() << c.Logs();
  std::string out;
  ASSERT_EQ(RunCtl(c, {"cutover", "--timeout", "60"}, &out), 0) << out << c.Logs();
  ASSERT_TRUE(WaitFor([&] { return ReadWriterLog(log, kInitialLive).refused >= 20; }, 20000));
  writer.Signal(SIGTERM);
  ASSERT_TRUE(writer.Wait(20000));
  EXPECT_TRUE(w1->Wait(30000)) << c.Logs();
  coord->Signal(SIGTERM);
  EXPECT_TRUE(coord->Wait(30000));

  // The spec applied to the writer's committed rows, computed here.
  const WriterLog wl = ReadWriterLog(log, kInitialLive);
  EXPECT_EQ(wl.errors, 0u);
  std::vector<std::string> want;
  for (const auto& [id, n] : wl.rows) {
    if (n % 3 == 0 || n % 5 == 0) continue;
    want.push_back("i:" + std::to_string(id) + "|t:V" + std::to_string(n) +
                   "|i:" + std::to_string(2 * n));
  }
  std::sort(want.begin(), want.end());
  const std::vector<std::string> got = Sorted(SqliteCanonicalRows(c.target, "items"));
  EXPECT_EQ(got.size(), want.size());
  EXPECT_TRUE(got == want) << "the new store's items differ from the spec applied to the log";
  EXPECT_EQ(QueryInt(c.target, "SELECT count(*) FROM __ferry_rejects", -1), 0);
  Installed i = Inspect(legacy);
  EXPECT_EQ(i.changes_table, 0);
  EXPECT_EQ(i.capture_triggers, 0);
  EXPECT_EQ(i.guard_triggers, 3);  // live only: the spec's one source table
}

TEST(OnlineSpec, TargetNotKeyedByTheLegacyKeyIsRefusedInstallingNothing) {
  TempDir dir;
  Endpoint legacy = MakeEndpoint(false, dir, "legacy", true);
  if (HasFatalFailure()) return;
  Cluster c(dir.path());
  const std::string spec = dir.File("spec.toml");
  std::ofstream(spec) << "from_version = 1\nto_version = 2\n[[table]]\ntarget = \"by_n\"\n"
                         "source = \"live\"\nselect = \"n AS k, id AS src\"\n"
                         "create = \"CREATE TABLE by_n (k INTEGER PRIMARY KEY, src INTEGER)\"\n";
  std::string out, err;
  const int rc =
      RunCommandSplit({Bin("ferry-coordinator"), "--source", legacy.uri, "--target",
                       "sqlite:" + c.target, "--state", c.state, "--online", "--spec", spec,
                       "--listen", c.listen(), "--status-endpoint", c.status_endpoint()},
                      &out, &err, 60000);
  EXPECT_EQ(rc, 2) << err;
  EXPECT_EQ(NonEmptyLines(err).size(), 1u) << err;
  EXPECT_NE(err.find("by_n"), std::string::npos) << err;
  EXPECT_NE(err.find("--online"), std::string::npos) << err;
  Installed i = Inspect(legacy);
  EXPECT_EQ(i.changes_table, 0);
  EXPECT_EQ(i.capture_triggers, 0);
}

}  // namespace
}  // namespace ferry::testing
