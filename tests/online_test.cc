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

}  // namespace
}  // namespace ferry::testing
