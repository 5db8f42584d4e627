// ferry-chaos: runs migrations with real ferry-coordinator and ferry-worker
// processes over tcp on 127.0.0.1 while killing (SIGKILL), pausing (SIGSTOP,
// then SIGCONT after a random delay), terminating (SIGTERM) and restarting
// random workers and the coordinator, then checks the result independently
// with plain SQL (ATTACH + joins on the key), never with ferry's digests:
//
//   lost                 rows of the legacy store whose key is missing from the new store
//   duplicated-or-extra  rows of the new store whose key is not in the legacy store
//   mismatched           rows with the same key but a different value (type-exact)
//
// and that the version was bumped exactly once (one `finalize` event in the
// state file, the new store's __ferry_meta version == --to-version) and the
// boundary was cleared (no `boundary` key in __ferry_meta, empty job.boundary).
//
// With --target-pg URI (or --target-pg-env NAME) the new store is a fresh
// PostgreSQL database created on that server for each run; the same counts
// are then computed from canonical row dumps of both stores (plain sqlite3 /
// libpq, see SqliteCanonicalRows / PgCanonicalRows), matched on the primary
// key (or the rowid, which PostgreSQL holds as a leading `rowid` column).
//
// With --netem (root) each run's workers live in network namespaces of their
// own behind 20 ms ± 10 ms of delay and 1% packet loss (tests/netns.h: tc
// netem, or nftables loss and a delaying relay where the kernel has no
// netem), and the coordinator listens on a veth host address; without the
// rights for that it prints `chaos: skipped (netem: …)` and exits 0.
//
// With --coordinators N --state-pg URI (or --state-pg-env NAME) each run's
// coordinator state lives in a fresh PostgreSQL database and N coordinators
// share it (one leads, the others stand by); every coordinator is a target
// of the chaos, workers get every endpoint, and the checks add: no commit of
// a deposed coordinator after its term ended (ferry_state.terms).
//
// With --online-writes N the migration is online (DESIGN.md "Online
// mode"): a ferry-test-writer process inserts, updates (primary-key changes
// included) and deletes rows of a `live` table of the legacy store N times a
// second from before the coordinator starts until the run ends, the
// coordinator runs with --online --auto-cutover, and the chaos also lands in
// catch-up and cut-over (a hit on the coordinator or the applier when the
// run enters catching_up, and on the coordinator while it is cutting over).
// The checks add: every write the writer saw commit is in the new store and
// nothing else (its log replayed; differences count as lost, extra or
// mismatched), and the capture is gone from the legacy store (no
// __ferry_changes, no capture trigger) while the write-refusal guard is on.
//
// With --spec FILE the migration goes through a migration spec (DESIGN.md
// "Migration spec"): the legacy store is made by --legacy-sql (default: the
// make-v1-store.sql beside the spec, with @users = --rows / 3), and the
// expected rows are computed here, independently of ferry's code path: each
// entry's select and where run by plain SQLite on the legacy file, then,
// for an entry with a Lua function, a C++ re-implementation of that function
// written here (SpecLuaFunctions: the example spec's `orders`), matched with
// the new store's rows on the target's primary key; only the columns the
// spec writes are compared. The new store must hold no rejected rows.
//
// One line per run, then exactly:
//   chaos: N runs, L lost, D duplicated-or-extra, M mismatched, F failed
// Exit 0 only if L = D = M = F = 0.
#include <fmt/format.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/value.h"
#include "coordinator/state_store.h"
#include "spec/migration_spec.h"
#include "tests/cluster.h"
#include "tests/netns.h"
#include "tests/process_util.h"
#include "tests/test_util.h"

namespace ferry::testing {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  int64_t rows = 200000;
  int workers = 4;
  int runs = 20;
  int kill_interval_ms = 700;
  uint64_t seed = 0;
  bool seed_given = false;
  double lease_ttl = 2;
  int64_t range_rows = 10000;
  int64_t batch_rows = 500;
  bool keep = false;
  int max_seconds = 300;
  int64_t throttle = -1;  // rows/s over all workers; 0 = off; -1 = auto (rows / 15 s)
  bool verbose = false;
  std::string target_pg;   // admin URI of a PostgreSQL server; "" = SQLite target
  bool netem = false;      // workers in network namespaces behind delay and loss
  int coordinators = 1;    // > 1: standby coordinators on a PostgreSQL state
  std::string state_pg;    // admin URI: each run's state in a fresh database there
  std::string spec;        // --spec FILE; "" = every table copied as it is
  std::string legacy_sql;  // with --spec: the script that makes the legacy store
  std::optional<ferry::MigrationSpec> parsed_spec;
  bool verify = false;            // coordinator --verify: every range verified before the bump
  int64_t split_interval_ms = 0;  // coordinator --force-split-interval-ms (0 = off)
  int online_writes = 0;          // > 0: an online migration under a writer of this many writes/s
};

// --online-writes: the writer's table starts with ids 1..kLiveRows.
constexpr int64_t kLiveRows = 2000;

constexpr int kFromVersion = 1;
constexpr int kToVersion = 2;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
      .count();
}

std::string Quote(const std::string& name) {
  std::string out = "\"";
  for (char ch : name) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return out + "\"";
}

std::string QuoteLiteral(const std::string& s) {
  std::string out = "'";
  for (char ch : s) out += ch == '\'' ? std::string("''") : std::string(1, ch);
  return out + "'";
}

// ---------------------------------------------------------------------------
// Plain SQLite access for the checks (independent of ferry's store code).

class Sql {
 public:
  explicit Sql(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      error_ = fmt::format("cannot open {}: {}", path, db_ ? sqlite3_errmsg(db_) : "?");
    }
    if (db_) sqlite3_busy_timeout(db_, 10000);
  }
  ~Sql() { sqlite3_close_v2(db_); }
  Sql(const Sql&) = delete;
  Sql& operator=(const Sql&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  bool Exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      error_ = fmt::format("{}: {}", sql, err ? err : "?");
      sqlite3_free(err);
      return false;
    }
    return true;
  }

  // Rows of text cells (NULL -> "NULL").
  std::vector<std::vector<std::string>> Rows(const std::string& sql) {
    std::vector<std::vector<std::string>> out;
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
      error_ = fmt::format("{}: {}", sql, sqlite3_errmsg(db_));
      return out;
    }
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      std::vector<std::string> row;
      for (int i = 0; i < sqlite3_column_count(s); ++i) {
        const unsigned char* t = sqlite3_column_text(s, i);
        row.emplace_back(t ? reinterpret_cast<const char*>(t) : "NULL");
      }
      out.push_back(std::move(row));
    }
    if (rc != SQLITE_DONE) error_ = fmt::format("{}: {}", sql, sqlite3_errmsg(db_));
    sqlite3_finalize(s);
    return out;
  }

  int64_t Int(const std::string& sql, int64_t fallback = -1) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
      error_ = fmt::format("{}: {}", sql, sqlite3_errmsg(db_));
      return fallback;
    }
    int64_t v = fallback;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL)
      v = sqlite3_column_int64(s, 0);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
      error_ = fmt::format("{}: {}", sql, sqlite3_errmsg(db_));
    sqlite3_finalize(s);
    return v;
  }

 private:
  sqlite3* db_ = nullptr;
  std::string error_;
};

// Best-effort read of one integer from a file that may be busy (used while
// processes run: never fails the run).
bool IsPgUri(const std::string& s) {
  return s.rfind("postgresql://", 0) == 0 || s.rfind("postgres://", 0) == 0;
}

// A state query for both state stores: `sqlite_sql` on a state file,
// `pg_sql` on a PostgreSQL state (schema ferry_state, strings as bytea).
int64_t PeekInt(const std::string& path, const std::string& sqlite_sql, const std::string& pg_sql) {
  if (IsPgUri(path)) return PgQueryInt(path, pg_sql, -1);
  const std::string& sql = sqlite_sql;
  if (!std::filesystem::exists(path)) return -1;
  sqlite3* db = nullptr;
  int64_t v = -1;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 500);
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK) {
      if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) {
        v = sqlite3_column_int64(s, 0);
      }
      sqlite3_finalize(s);
    }
  }
  sqlite3_close_v2(db);
  return v;
}

// ---------------------------------------------------------------------------
// The legacy store: the demo store (users: INTEGER PRIMARY KEY with NULLs,
// reals and blobs; kv: BLOB PRIMARY KEY; events: composite key WITHOUT
// ROWID) plus `notes`, a table without a declared primary key (keyed by
// rowid) with sparse, negative and extreme rowids.

void MakeLegacy(const std::string& path, int64_t rows, uint64_t seed) {
  const int64_t notes = std::max<int64_t>(1, rows / 10);
  MakeDemoStore(path, std::max<int64_t>(4, rows - notes), seed);
  Sql db(path);
  db.Exec(fmt::format(R"sql(
    CREATE TABLE notes (author TEXT, body TEXT, weight REAL, attachment BLOB);
    BEGIN;
    INSERT INTO notes (rowid, author, body, weight, attachment) VALUES
      (-9223372036854775808, 'min', 'lowest rowid', -1.5, x''),
      (9223372036854775807, 'max', 'highest rowid', 1e300, NULL),
      (-7, NULL, '', 0.0, x'00');
    WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {0})
      INSERT INTO notes (rowid, author, body, weight, attachment)
        SELECT x * 37 - {1}, 'author ' || (x % 97),
               CASE WHEN x % 11 = 0 THEN NULL ELSE 'note ' || x || ' ' || hex(randomblob(8)) END,
               CASE WHEN x % 6 = 0 THEN NULL ELSE x / 3.0 END,
               CASE WHEN x % 4 = 0 THEN randomblob(x % 50) ELSE NULL END FROM c;
    DELETE FROM notes WHERE rowid % 5 = 2;
    COMMIT;)sql",
                      notes, (seed % 977) * 1000));
  if (!db.ok()) std::cerr << "chaos: generating the legacy store: " << db.error() << "\n";
}

// --online-writes: the table the writer process writes (ferry-test-writer).
void AddLiveTable(const std::string& path) {
  Sql db(path);
  db.Exec(fmt::format(
      "CREATE TABLE live (id INTEGER PRIMARY KEY, val TEXT NOT NULL, n INTEGER NOT NULL);"
      "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {0}) "
      "INSERT INTO live SELECT x, 'v' || x, x FROM c;",
      kLiveRows));
  if (!db.ok()) std::cerr << "chaos: generating the live table: " << db.error() << "\n";
}

// ---------------------------------------------------------------------------
// Independent check.

struct CheckResult {
  int64_t lost = 0, extra = 0, mismatched = 0;
  int64_t legacy_rows = 0, new_rows = 0;
  std::vector<std::string> problems;  // anything else that makes the run fail
  std::vector<std::string> details;   // sample keys of differences
};

std::vector<std::string> UserTables(Sql& db, const std::string& schema) {
  std::vector<std::string> out;
  for (auto& r : db.Rows(fmt::format("SELECT name FROM {}.sqlite_master WHERE type='table' AND "
                                     "name NOT LIKE 'sqlite_%' AND name <> '__ferry_meta' "
                                     "ORDER BY name",
                                     schema))) {
    out.push_back(r[0]);
  }
  return out;
}

void CompareStores(const std::string& legacy, const std::string& target, CheckResult* res) {
  Sql db(legacy);
  if (!db.ok() || !db.Exec(fmt::format("ATTACH DATABASE {} AS n", QuoteLiteral(target)))) {
    res->problems.push_back("cannot open stores: " + db.error());
    return;
  }
  auto lt = UserTables(db, "main");
  auto nt = UserTables(db, "n");
  for (const std::string& t : nt) {
    if (std::find(lt.begin(), lt.end(), t) == lt.end()) {
      int64_t n = db.Int(fmt::format("SELECT count(*) FROM n.{}", Quote(t)), 0);
      res->extra += n;
      res->problems.push_back(fmt::format("table {} exists only in the new store ({} rows)", t, n));
    }
  }
  for (const std::string& t : lt) {
    const std::string qt = Quote(t);
    const int64_t nl = db.Int(fmt::format("SELECT count(*) FROM main.{}", qt), 0);
    res->legacy_rows += nl;
    if (std::find(nt.begin(), nt.end(), t) == nt.end()) {
      res->lost += nl;
      res->problems.push_back(fmt::format("table {} is missing from the new store", t));
      continue;
    }
    res->new_rows += db.Int(fmt::format("SELECT count(*) FROM n.{}", qt), 0);
    // Key: the declared primary key in order, else rowid.
    std::vector<std::string> key, cols;
    for (auto& r : db.Rows(fmt::format("SELECT name, pk FROM pragma_table_info({}, 'main') "
                                       "ORDER BY pk, cid",
                                       QuoteLiteral(t)))) {
      cols.push_back(r[0]);
      if (r[1] != "0") key.push_back(r[0]);
    }
    // (pragma rows are ordered by pk, so `key` is in key order.)
    std::vector<std::string> ncols;
    for (auto& r : db.Rows(fmt::format(
             "SELECT name FROM pragma_table_info({}, 'n') ORDER BY pk, cid", QuoteLiteral(t)))) {
      ncols.push_back(r[0]);
    }
    {
      auto a = cols, b = ncols;
      std::sort(a.begin(), a.end());
      std::sort(b.begin(), b.end());
      if (a != b) {
        res->problems.push_back(fmt::format("table {}: columns differ", t));
        continue;
      }
    }
    if (key.empty()) key.push_back("rowid");
    std::string on, key_sel;
    for (const std::string& k : key) {
      on += fmt::format("{}r.{} IS l.{}", on.empty() ? "" : " AND ", Quote(k), Quote(k));
      key_sel += fmt::format("{}quote(x.{})", key_sel.empty() ? "" : " || ',' || ", Quote(k));
    }
    std::string same;
    for (const std::string& c : cols) {
      same += fmt::format("{1}(typeof(l.{0}) = typeof(r.{0}) AND l.{0} IS r.{0})", Quote(c),
                          same.empty() ? "" : " AND ");
    }
    const std::string lost_sql = fmt::format(
        "FROM main.{0} AS l WHERE NOT EXISTS (SELECT 1 FROM n.{0} AS r WHERE {1})", qt, on);
    const std::string extra_sql = fmt::format(
        "FROM n.{0} AS r WHERE NOT EXISTS (SELECT 1 FROM main.{0} AS l WHERE {1})", qt, on);
    const std::string mism_sql =
        fmt::format("FROM main.{0} AS l JOIN n.{0} AS r ON {1} WHERE NOT ({2})", qt, on, same);
    const int64_t lost = db.Int("SELECT count(*) " + lost_sql, -1);
    const int64_t extra = db.Int("SELECT count(*) " + extra_sql, -1);
    const int64_t mism = db.Int("SELECT count(*) " + mism_sql, -1);
    if (lost < 0 || extra < 0 || mism < 0) {
      res->problems.push_back(fmt::format("table {}: check query failed: {}", t, db.error()));
      continue;
    }
    res->lost += lost;
    res->extra += extra;
    res->mismatched += mism;
    auto sample = [&](const char* what, const std::string& from, const char* alias) {
      std::string k;
      for (const std::string& kc : key) {
        k += fmt::format("{}quote({}.{})", k.empty() ? "" : " || ',' || ", alias, Quote(kc));
      }
      auto rows = db.Rows(fmt::format("SELECT {} {} LIMIT 10", k, from));
      std::string keys;
      for (auto& r : rows) keys += (keys.empty() ? "" : " ") + r[0];
      res->details.push_back(fmt::format("table {}: {} keys (first 10): {}", t, what, keys));
    };
    if (lost) sample("lost", lost_sql, "l");
    if (extra) sample("duplicated-or-extra", extra_sql, "r");
    if (mism) sample("mismatched", mism_sql, "l");
  }
}

void CheckFinish(const std::string& state, const std::string& target, CheckResult* res) {
  const int64_t finalize = PeekInt(
      state, "SELECT count(*) FROM events WHERE kind='finalize'",
      "SELECT count(*) FROM ferry_state.events WHERE kind = convert_to('finalize', 'UTF8')");
  const int64_t state_boundary = PeekInt(state, "SELECT length(boundary) FROM job",
                                         "SELECT length(boundary) FROM ferry_state.job");
  const int64_t state_version = PeekInt(state, "SELECT current_version FROM job",
                                        "SELECT current_version FROM ferry_state.job");
  if (IsPgUri(state)) {
    // Standby coordinators: no term committed anything after the next began.
    const int64_t late = PgQueryInt(state,
                                    "SELECT count(*) FROM ferry_state.terms o JOIN "
                                    "ferry_state.terms n ON n.term > o.term WHERE "
                                    "o.last_commit_at >= n.started_at",
                                    -1);
    if (late != 0) {
      res->problems.push_back(
          fmt::format("{} commits of a deposed coordinator after its term ended", late));
    }
  }
  if (finalize != 1) {
    res->problems.push_back(
        fmt::format("version bumped {} times (finalize events), want 1", finalize));
  }
  if (state_boundary != 0) {
    res->problems.push_back(
        fmt::format("state job.boundary not cleared (length {})", state_boundary));
  }
  if (state_version != kToVersion) {
    res->problems.push_back(
        fmt::format("state job.current_version {} != {}", state_version, kToVersion));
  }
  // The new store: a postgresql:// URI or a SQLite file.
  const bool pg = target.rfind("postgresql://", 0) == 0 || target.rfind("postgres://", 0) == 0;
  int64_t version = -1, boundary = -1;
  if (pg) {
    version = PgQueryInt(target, "SELECT value FROM __ferry_meta WHERE key='version'", -1);
    boundary = PgQueryInt(target, "SELECT count(*) FROM __ferry_meta WHERE key='boundary'", -1);
  } else {
    Sql nt(target);
    version = nt.Int("SELECT value FROM __ferry_meta WHERE key='version'", -1);
    boundary = nt.Int("SELECT count(*) FROM __ferry_meta WHERE key='boundary'", -1);
  }
  if (version != kToVersion) {
    res->problems.push_back(fmt::format("new store version {} != {}", version, kToVersion));
  }
  if (boundary != 0) res->problems.push_back("new store __ferry_meta still has a boundary");
}

// ---------------------------------------------------------------------------
// The same checks against a PostgreSQL new store.

// Splits a canonical row (cells joined by '|', each N or tagged i:/r:/b:/t:)
// into `n` cells; a '|' inside a text cell is recognised because the next
// part does not start a cell. Empty if that does not give `n` cells.
std::vector<std::string> SplitCanonical(const std::string& line, size_t n) {
  std::vector<std::string> cells;
  size_t start = 0;
  while (true) {
    size_t bar = line.find('|', start);
    std::string part =
        line.substr(start, bar == std::string::npos ? std::string::npos : bar - start);
    const bool new_cell = cells.empty() || part == "N" ||
                          (part.size() >= 2 && part[1] == ':' &&
                           (part[0] == 'i' || part[0] == 'r' || part[0] == 'b' || part[0] == 't'));
    if (new_cell) {
      cells.push_back(part);
    } else {
      cells.back() += "|" + part;
    }
    if (bar == std::string::npos) break;
    start = bar + 1;
  }
  if (cells.size() != n) cells.clear();
  return cells;
}

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  if (s.empty()) return out;
  size_t start = 0;
  while (true) {
    size_t comma = s.find(',', start);
    out.push_back(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

void ComparePgStore(const std::string& legacy, const std::string& uri, CheckResult* res) {
  Sql db(legacy);
  if (!db.ok()) {
    res->problems.push_back("cannot open the legacy store: " + db.error());
    return;
  }
  const auto lt = UserTables(db, "main");
  const std::string pg_tables = PgQueryText(
      uri,
      "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = "
      "current_schema() AND tablename <> '__ferry_meta'");
  if (pg_tables.rfind("<error", 0) == 0) {
    res->problems.push_back("cannot list the tables of the new store: " + pg_tables);
    return;
  }
  const auto nt = SplitList(pg_tables);
  for (const std::string& t : nt) {
    if (std::find(lt.begin(), lt.end(), t) == lt.end()) {
      int64_t n = PgQueryInt(uri, fmt::format("SELECT count(*) FROM {}", Quote(t)), 0);
      res->extra += n;
      res->problems.push_back(fmt::format("table {} exists only in the new store ({} rows)", t, n));
    }
  }
  for (const std::string& t : lt) {
    // Columns in declaration order; key cells by position (pk order), or
    // the rowid as a leading cell for a table without a primary key.
    std::vector<std::string> cols;
    std::vector<std::pair<int, size_t>> pk;  // (pk ordinal, position)
    for (auto& r : db.Rows(fmt::format("SELECT name, pk FROM pragma_table_info({}, 'main') "
                                       "ORDER BY cid",
                                       QuoteLiteral(t)))) {
      if (r[1] != "0") pk.emplace_back(std::stoi(r[1]), cols.size());
      cols.push_back(r[0]);
    }
    const bool rowid = pk.empty();
    std::vector<size_t> key;
    if (rowid) {
      cols.insert(cols.begin(), "rowid");
      key.push_back(0);
    } else {
      std::sort(pk.begin(), pk.end());
      for (auto& [ord, pos] : pk) key.push_back(pos);
    }
    auto a = SqliteCanonicalRows(legacy, t, rowid);
    res->legacy_rows += static_cast<int64_t>(a.size());
    if (!a.empty() && a[0].rfind("<error", 0) == 0) {
      res->problems.push_back(fmt::format("table {}: cannot read the legacy store: {}", t, a[0]));
      continue;
    }
    if (std::find(nt.begin(), nt.end(), t) == nt.end()) {
      res->lost += static_cast<int64_t>(a.size());
      res->problems.push_back(fmt::format("table {} is missing from the new store", t));
      continue;
    }
    std::string want_cols;
    for (const std::string& c : cols) want_cols += (want_cols.empty() ? "" : ",") + c;
    const std::string have_cols = PgQueryText(
        uri, fmt::format("SELECT string_agg(a.attname, ',' ORDER BY a.attnum) FROM pg_attribute a "
                         "WHERE a.attrelid = {}::regclass AND a.attnum > 0 AND NOT a.attisdropped",
                         QuoteLiteral(Quote(t))));
    if (have_cols != want_cols) {
      res->problems.push_back(fmt::format("table {}: columns differ: new store ({}), legacy ({})",
                                          t, have_cols, want_cols));
      continue;
    }
    auto b = PgCanonicalRows(uri, t);
    if (!b.empty() && b[0].rfind("<error", 0) == 0) {
      res->problems.push_back(fmt::format("table {}: cannot read the new store: {}", t, b[0]));
      continue;
    }
    res->new_rows += static_cast<int64_t>(b.size());
    auto key_of = [&](const std::string& line) {
      auto cells = SplitCanonical(line, cols.size());
      if (cells.empty()) return line;  // unsplittable: the whole row is its key
      std::string k;
      for (size_t p : key) k += (k.empty() ? "" : ",") + cells[p];
      return k;
    };
    std::map<std::string, const std::string*> lmap;
    for (const std::string& line : a) lmap.emplace(key_of(line), &line);
    std::vector<std::string> lost_keys, extra_keys, mism_keys;
    std::map<std::string, bool> seen;  // keys of the new store seen so far
    for (const std::string& line : b) {
      const std::string k = key_of(line);
      auto it = lmap.find(k);
      if (it == lmap.end() || seen.count(k)) {
        extra_keys.push_back(k);
        continue;
      }
      seen[k] = true;
      if (*it->second != line) mism_keys.push_back(k);
    }
    for (auto& [k, line] : lmap) {
      if (!seen.count(k)) lost_keys.push_back(k);
    }
    res->lost += static_cast<int64_t>(lost_keys.size());
    res->extra += static_cast<int64_t>(extra_keys.size());
    res->mismatched += static_cast<int64_t>(mism_keys.size());
    auto sample = [&](const char* what, const std::vector<std::string>& keys) {
      if (keys.empty()) return;
      std::string s;
      for (size_t i = 0; i < keys.size() && i < 10; ++i) s += (i ? " " : "") + keys[i];
      res->details.push_back(fmt::format("table {}: {} keys (first 10): {}", t, what, s));
    };
    sample("lost", lost_keys);
    sample("duplicated-or-extra", extra_keys);
    sample("mismatched", mism_keys);
  }
}

// --online-writes: the writer's log (ferry-test-writer: I/U/M/D lines of
// committed writes) replayed over the initial rows must be exactly the new
// store's `live` table; and only the guard is left on the legacy store.
void CheckOnline(const std::string& log, const std::string& legacy, const std::string& target,
                 CheckResult* res) {
  std::map<int64_t, int64_t> want;  // id -> n (val is "v<n>")
  for (int64_t i = 1; i <= kLiveRows; ++i) want[i] = i;
  int64_t refused = 0;
  for (const std::string& line : NonEmptyLines(ReadFile(log))) {
    std::istringstream in(line.substr(std::min<size_t>(2, line.size())));
    int64_t a = 0, b = 0;
    switch (line[0]) {
      case 'I':
      case 'U':
        in >> a >> b;
        want[a] = b;
        break;
      case 'M':
        in >> a >> b;
        want[b] = want[a];
        want.erase(a);
        break;
      case 'D':
        in >> a;
        want.erase(a);
        break;
      case 'R':
        ++refused;
        break;
    }
  }
  std::map<int64_t, std::pair<std::string, int64_t>> have;
  if (IsPgUri(target)) {
    for (const std::string& row : PgCanonicalRows(target, "live")) {
      auto cells = SplitCanonical(row, 3);
      if (cells.size() != 3) {
        res->problems.push_back("live: unreadable row in the new store: " + row);
        continue;
      }
      have[std::stoll(cells[0].substr(2))] = {cells[1].substr(2), std::stoll(cells[2].substr(2))};
    }
  } else {
    Sql db(target);
    for (auto& r : db.Rows("SELECT id, val, n FROM live")) {
      have[std::stoll(r[0])] = {r[1], std::stoll(r[2])};
    }
    if (!db.ok()) res->problems.push_back("live: cannot read the new store: " + db.error());
  }
  std::vector<int64_t> lost, extra, mism;
  for (const auto& [id, n] : want) {
    auto it = have.find(id);
    if (it == have.end()) {
      lost.push_back(id);
    } else if (it->second.second != n || it->second.first != "v" + std::to_string(n)) {
      mism.push_back(id);
    }
  }
  for (const auto& [id, v] : have) {
    if (!want.count(id)) extra.push_back(id);
  }
  res->lost += static_cast<int64_t>(lost.size());
  res->extra += static_cast<int64_t>(extra.size());
  res->mismatched += static_cast<int64_t>(mism.size());
  auto sample = [&](const char* what, const std::vector<int64_t>& ids) {
    if (ids.empty()) return;
    std::string s;
    for (size_t i = 0; i < ids.size() && i < 10; ++i) s += (i ? " " : "") + std::to_string(ids[i]);
    res->details.push_back(
        fmt::format("live: {} committed writes' rows (first 10 ids): {}", what, s));
  };
  sample("lost", lost);
  sample("extra", extra);
  sample("mismatched", mism);
  if (refused == 0) res->problems.push_back("no write was refused after the cut-over");
  Sql db(legacy);
  const int64_t changes =
      db.Int("SELECT count(*) FROM sqlite_master WHERE name = '__ferry_changes'", -1);
  const int64_t capture = db.Int(
      "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE "
      "'\\_\\_ferry\\_capture\\_%' ESCAPE '\\'",
      -1);
  const int64_t guard = db.Int(
      "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE "
      "'\\_\\_ferry\\_guard\\_%' ESCAPE '\\'",
      -1);
  if (changes != 0 || capture != 0) {
    res->problems.push_back(
        fmt::format("the capture is still installed ({} change tables, {} capture triggers)",
                    changes, capture));
  }
  if (guard <= 0) res->problems.push_back("no write-refusal guard on the legacy store");
}

// ---------------------------------------------------------------------------
// With a migration spec.

// Runs `script` (several statements) on a new SQLite file, binding @users
// where a statement has it.
bool MakeSpecLegacy(const std::string& path, int64_t users, const std::string& script,
                    std::string* error) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) {
    *error = "cannot create " + path;
    sqlite3_close(db);
    return false;
  }
  const char* at = script.c_str();
  bool ok = true;
  while (ok && *at) {
    sqlite3_stmt* st = nullptr;
    const char* tail = nullptr;
    if (sqlite3_prepare_v2(db, at, -1, &st, &tail) != SQLITE_OK) {
      *error = sqlite3_errmsg(db);
      ok = false;
      break;
    }
    at = tail;
    if (!st) continue;  // white space or a comment
    const int p = sqlite3_bind_parameter_index(st, "@users");
    if (p) sqlite3_bind_int64(st, p, users);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    }
    if (rc != SQLITE_DONE) {
      *error = sqlite3_errmsg(db);
      ok = false;
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return ok;
}

using NamedRow = std::map<std::string, Value>;
// A Lua function of a spec, re-implemented in C++ for the check: the target
// row, or nullopt for a dropped row.
using LuaInCpp = std::optional<NamedRow> (*)(const NamedRow& in);

int64_t LittleEndian(const std::string& b, size_t at, size_t n) {
  uint64_t v = 0;
  for (size_t k = 0; k < n; ++k) v |= uint64_t{static_cast<unsigned char>(b[at + k])} << (8 * k);
  const uint64_t sign = uint64_t{1} << (8 * n - 1);
  return static_cast<int64_t>((v ^ sign) - sign);  // sign-extended
}

// deploy/examples/v1-to-v2.toml, target `orders`: string.unpack("<i4 i2 s1",
// row.packed); quantity 0 (a test order) is dropped.
std::optional<NamedRow> ExampleOrders(const NamedRow& in) {
  const Value& packed = in.at("packed");
  const std::string b = std::holds_alternative<Blob>(packed) ? std::get<Blob>(packed).bytes
                                                             : std::get<Text>(packed).bytes;
  const int64_t amount = LittleEndian(b, 0, 4);
  const int64_t quantity = LittleEndian(b, 4, 2);
  const size_t len = static_cast<unsigned char>(b[6]);
  if (quantity == 0) return std::nullopt;
  return NamedRow{{"order_id", in.at("id")},
                  {"account_id", in.at("user_id")},
                  {"amount_cents", amount},
                  {"quantity", quantity},
                  {"currency", Text{b.substr(7, len)}}};
}

const std::map<std::string, LuaInCpp>& SpecLuaFunctions() {
  static const std::map<std::string, LuaInCpp> kFunctions = {{"orders", &ExampleOrders}};
  return kFunctions;
}

// A cell in SqliteCanonicalRows' form.
std::string Canonical(const Value& v) {
  switch (v.index()) {
    case 1:
      return fmt::format("i:{}", std::get<int64_t>(v));
    case 2: {
      const double d = std::get<double>(v);
      if (std::isnan(d)) return "r:NaN";
      if (std::isinf(d)) return d > 0 ? "r:Infinity" : "r:-Infinity";
      return "r:" + fmt::format("{}", d);
    }
    case 3:
      return "t:" + std::get<Text>(v).bytes;
    case 4: {
      std::string out = "b:";
      for (unsigned char c : std::get<Blob>(v).bytes) out += fmt::format("{:02x}", c);
      return out;
    }
    default:
      return "N";
  }
}

Value SqliteCell(sqlite3_stmt* s, int c) {
  switch (sqlite3_column_type(s, c)) {
    case SQLITE_INTEGER:
      return static_cast<int64_t>(sqlite3_column_int64(s, c));
    case SQLITE_FLOAT:
      return sqlite3_column_double(s, c);
    case SQLITE_TEXT:
      return Text{std::string(reinterpret_cast<const char*>(sqlite3_column_text(s, c)),
                              static_cast<size_t>(sqlite3_column_bytes(s, c)))};
    case SQLITE_BLOB: {
      const char* p = static_cast<const char*>(sqlite3_column_blob(s, c));
      return Blob{std::string(p ? p : "", static_cast<size_t>(sqlite3_column_bytes(s, c)))};
    }
    default:
      return Null{};
  }
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

void CompareSpecStore(const std::string& legacy, const MigrationSpec& spec,
                      const std::string& target, CheckResult* res) {
  const bool pg = target.rfind("postgresql://", 0) == 0 || target.rfind("postgres://", 0) == 0;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(legacy.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    res->problems.push_back("cannot open the legacy store");
    sqlite3_close(db);
    return;
  }
  for (const TableSpec& e : spec.tables) {
    const std::string t = e.target;
    // The new table's columns, in order, with their primary-key positions.
    std::vector<std::pair<std::string, int>> cols;
    if (pg) {
      const std::string list = PgQueryText(
          target,
          fmt::format(
              // indkey is an int2vector: its subscripts start at 0.
              "SELECT string_agg(a.attname || ':' || coalesce(array_position(i.indkey::int2[], "
              "a.attnum) - array_lower(i.indkey::int2[], 1) + 1, 0), ',' ORDER BY a.attnum) "
              "FROM pg_attribute a LEFT JOIN "
              "pg_index i ON i.indrelid = a.attrelid AND i.indisprimary WHERE a.attrelid "
              "= {}::regclass AND a.attnum > 0 AND NOT a.attisdropped",
              QuoteLiteral(Quote(t))));
      for (const std::string& c : SplitList(list)) {
        const size_t colon = c.rfind(':');
        if (colon != std::string::npos)
          cols.emplace_back(c.substr(0, colon), std::stoi(c.substr(colon + 1)));
      }
    } else {
      Sql nt(target);
      for (auto& r : nt.Rows(fmt::format("SELECT name, pk FROM pragma_table_info({}) ORDER BY cid",
                                         QuoteLiteral(t)))) {
        cols.emplace_back(r[0], std::stoi(r[1]));
      }
    }
    if (cols.empty()) {
      res->problems.push_back(fmt::format("table {} is missing from the new store", t));
      continue;
    }
    std::vector<std::pair<int, size_t>> pk;
    for (size_t i = 0; i < cols.size(); ++i) {
      if (cols[i].second > 0) pk.emplace_back(cols[i].second, i);
    }
    std::sort(pk.begin(), pk.end());
    if (pk.empty()) {
      res->problems.push_back(fmt::format("table {} has no primary key in the new store", t));
      continue;
    }
    // The expected rows: the entry's SQL run here, then its Lua function.
    LuaInCpp lua = nullptr;
    if (!e.lua.empty()) {
      auto f = SpecLuaFunctions().find(t);
      if (f == SpecLuaFunctions().end()) {
        res->problems.push_back(
            fmt::format("target {} has a Lua function the check has no C++ re-implementation of "
                        "(SpecLuaFunctions in tests/chaos.cc)",
                        t));
        continue;
      }
      lua = f->second;
    }
    const std::string sql = fmt::format("SELECT {} FROM {}{}", e.select, Quote(e.source),
                                        e.where.empty() ? "" : " WHERE (\n" + e.where + "\n)");
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
      res->problems.push_back(fmt::format("{}: {}", sql, sqlite3_errmsg(db)));
      continue;
    }
    std::map<std::string, std::vector<std::string>> expected;  // key -> cells ("" = not written)
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      NamedRow row;
      for (int c = 0; c < sqlite3_column_count(s); ++c) {
        row[sqlite3_column_name(s, c)] = SqliteCell(s, c);
      }
      std::optional<NamedRow> out = lua ? lua(row) : std::optional<NamedRow>(row);
      if (!out) continue;
      NamedRow by_lower;
      for (auto& [k, v] : *out) by_lower[Lower(k)] = v;
      std::vector<std::string> cells;
      for (const auto& col : cols) {
        auto it = by_lower.find(Lower(col.first));
        cells.push_back(it == by_lower.end() ? (lua ? "N" : "") : Canonical(it->second));
      }
      std::string key;
      for (const auto& [ord, pos] : pk) key += (key.empty() ? "" : ",") + cells[pos];
      expected[key] = std::move(cells);
    }
    sqlite3_finalize(s);
    res->legacy_rows += static_cast<int64_t>(expected.size());
    const auto have = pg ? PgCanonicalRows(target, t) : SqliteCanonicalRows(target, t);
    res->new_rows += static_cast<int64_t>(have.size());
    std::vector<std::string> lost_keys, extra_keys, mism_keys;
    std::map<std::string, bool> seen;
    for (const std::string& line : have) {
      const auto cells = SplitCanonical(line, cols.size());
      if (cells.empty()) {
        extra_keys.push_back(line);
        continue;
      }
      std::string key;
      for (const auto& [ord, pos] : pk) key += (key.empty() ? "" : ",") + cells[pos];
      auto it = expected.find(key);
      if (it == expected.end() || seen.count(key)) {
        extra_keys.push_back(key);
        continue;
      }
      seen[key] = true;
      for (size_t c = 0; c < cells.size(); ++c) {
        if (!it->second[c].empty() && it->second[c] != cells[c]) {
          mism_keys.push_back(key);
          break;
        }
      }
    }
    for (const auto& [key, cells] : expected) {
      if (!seen.count(key)) lost_keys.push_back(key);
    }
    res->lost += static_cast<int64_t>(lost_keys.size());
    res->extra += static_cast<int64_t>(extra_keys.size());
    res->mismatched += static_cast<int64_t>(mism_keys.size());
    for (const auto& [what, keys] :
         {std::pair<const char*, const std::vector<std::string>*>{"lost", &lost_keys},
          {"duplicated-or-extra", &extra_keys},
          {"mismatched", &mism_keys}}) {
      if (keys->empty()) continue;
      std::string sample;
      for (size_t i = 0; i < keys->size() && i < 10; ++i) sample += (i ? " " : "") + (*keys)[i];
      res->details.push_back(fmt::format("table {}: {} keys (first 10): {}", t, what, sample));
    }
  }
  sqlite3_close(db);
  const int64_t rejected = pg ? PgQueryInt(target, "SELECT count(*) FROM __ferry_rejects", -1)
                              : Sql(target).Int("SELECT count(*) FROM __ferry_rejects", -1);
  if (rejected != 0) {
    res->problems.push_back(fmt::format("the new store's __ferry_rejects holds {} rows", rejected));
  }
}

// ---------------------------------------------------------------------------
// The chaos loop.

struct Proc {
  std::unique_ptr<Process> p;
  std::string name;
  bool stopped = false;  // SIGSTOPped, SIGCONT pending
  int64_t cont_at_ms = 0;
  bool signalled = false;  // we sent SIGKILL or SIGTERM
  int last_signal = 0;
  int64_t started_ms = 0;
  int64_t signalled_ms = 0;
};

struct RunStats {
  int actions = 0, kills = 0, pauses = 0, terms = 0, restarts = 0;
  int coord_actions = 0, coord_starts = 0, plan_hits = 0, end_hits = 0;
  int worker_starts = 0;
  std::vector<std::string> anomalies;  // unexpected exits (not failures by themselves)
};

class Run {
 public:
  // target_uri: the new store's URI when it is not sqlite:<dir>/new.db.
  // state_uri: the coordinators' --state when it is not <dir>/state.db.
  Run(const Options& o, int index, uint64_t seed, const std::string& dir, int64_t* plan_estimate_ms,
      const std::string& target_uri = "", const std::string& state_uri = "")
      : o_(o), index_(index), rng_(seed), c_(dir), dir_(dir), plan_estimate_ms_(plan_estimate_ms) {
    c_.target_uri = target_uri;
    if (!state_uri.empty()) c_.state = state_uri;
  }

  // Returns true if the migration reached `complete`.
  bool Chaos(std::string* why) {
    if (o_.netem && !SetUpNetem(why)) return false;
    if (o_.parsed_spec) {
      std::string error;
      if (!MakeSpecLegacy(c_.legacy, std::max<int64_t>(1, o_.rows / 3), ReadFile(o_.legacy_sql),
                          &error)) {
        *why = "cannot make the legacy store with " + o_.legacy_sql + ": " + error;
        return false;
      }
    } else {
      MakeLegacy(c_.legacy, o_.rows, rng_());
    }
    if (o_.online_writes > 0) {
      // The application writes from before the capture to the end of the run.
      AddLiveTable(c_.legacy);
      writer_ = std::make_unique<Process>(
          std::vector<std::string>{Bin("ferry-test-writer"), "--store", "sqlite:" + c_.legacy,
                                   "--table", "live", "--initial", std::to_string(kLiveRows),
                                   "--rate", std::to_string(o_.online_writes), "--log",
                                   dir_ + "/writes.log", "--seed", std::to_string(rng_() % 1000)},
          dir_ + "/writer.out", dir_ + "/writer.log");
      WaitFor([&] { return NonEmptyLines(ReadFile(dir_ + "/writes.log")).size() >= 50; }, 10000);
    }
    const int64_t t0 = t0_ = NowMs();
    const int64_t deadline = t0 + int64_t{o_.max_seconds} * 1000;
    coord_args_ = {"--lease-ttl",    fmt::format("{}", o_.lease_ttl),
                   "--range-rows",   std::to_string(o_.range_rows),
                   "--batch-rows",   std::to_string(o_.batch_rows),
                   "--from-version", std::to_string(kFromVersion),
                   "--to-version",   std::to_string(kToVersion)};
    if (o_.online_writes > 0) {
      coord_args_.push_back("--online");
      coord_args_.push_back("--auto-cutover");
    }
    if (o_.parsed_spec) {
      coord_args_.push_back("--spec");
      coord_args_.push_back(o_.spec);
    }
    if (o_.verify) coord_args_.push_back("--verify");
    if (o_.split_interval_ms > 0) {
      coord_args_.push_back("--force-split-interval-ms");
      coord_args_.push_back(std::to_string(o_.split_interval_ms));
    }
    coords_.resize(static_cast<size_t>(o_.coordinators));
    coord_restart_at_.assign(coords_.size(), 0);
    restart_now_.assign(coords_.size(), false);
    for (size_t i = 0; i < coords_.size(); ++i) StartCoordinator(i);
    // Hit planning: kill the first coordinator after a random moment within
    // the (measured) planning time, on most runs.
    if (Chance(0.75)) {
      const int64_t est = std::max<int64_t>(5, *plan_estimate_ms_);
      plan_kill_at_ = NowMs() + Uniform(est / 4, est);
    }
    // Workers start once the throttle is set (it reaches workers with their
    // grants), at once without a throttle.
    bool workers_started = false;
    next_action_ = NowMs() + NextInterval();
    bool complete = false;
    int64_t next_poll = 0;
    while (!complete) {
      const int64_t now = NowMs();
      if (now > deadline) {
        *why = fmt::format("timeout after {} s", o_.max_seconds);
        break;
      }
      // Resume paused processes whose time has come.
      for (Proc* p : All()) {
        if (p->stopped && now >= p->cont_at_ms) {
          p->p->Signal(SIGCONT);
          p->stopped = false;
        }
      }
      // Reap and replace.
      for (size_t i = 0; i < coords_.size(); ++i) {
        std::unique_ptr<Proc>& coord = coords_[i];
        if (coord && !coord->p->running()) {
          const int code = coord->p->exit_code();
          if (!coord->signalled) {
            std::string log = ReadFile(CoordinatorLog(i));
            if (code == 0 && log.find("already at version") != std::string::npos) {
              // Killed after it committed the version bump but before we saw
              // `complete`; the restart found the new store done. Done too.
              complete = true;
              done_via_restart_ = true;
              coord.reset();
              break;
            }
            stats_.anomalies.push_back(
                fmt::format("coordinator {} exited on its own with code {}", i, code));
          }
          if (coord->signalled && !ExpectedExit(*coord, code)) {
            stats_.anomalies.push_back(
                fmt::format("coordinator {} exited with code {} after a signal", i, code));
          }
          coord.reset();
          coord_restart_at_[i] = now + (restart_now_[i] ? 0 : Uniform(0, 1500));
          restart_now_[i] = false;
        }
        if (!coord && now >= coord_restart_at_[i]) StartCoordinator(i);
      }
      if (complete) break;
      for (auto it = workers_.begin(); it != workers_.end();) {
        Proc& w = **it;
        if (w.p->running()) {
          ++it;
          continue;
        }
        const int code = w.p->exit_code();
        // A worker exits 0 on its own once it hears the migration is done.
        if (code != 0 && !(w.signalled && ExpectedExit(w, code))) {
          stats_.anomalies.push_back(fmt::format("worker {} exited with code {}{}", w.name, code,
                                                 w.signalled ? " after a signal" : " on its own"));
        }
        it = workers_.erase(it);
        pending_workers_.push_back(now + (restart_now_worker_ ? 0 : Uniform(0, 500)));
        restart_now_worker_ = false;
      }
      for (auto it = pending_workers_.begin(); it != pending_workers_.end();) {
        if (now >= *it) {
          StartWorker();
          it = pending_workers_.erase(it);
        } else {
          ++it;
        }
      }
      if (!workers_started && (throttled_ || o_.throttle == 0)) {
        workers_started = true;
        for (int i = 0; i < o_.workers; ++i) StartWorker();
      }
      // Learn how long a fresh start takes to commit its plan.
      if (!plan_seen_ && coords_[lead_] && coords_[lead_]->started_ms == first_start_ms_ &&
          !coords_[lead_]->signalled) {
        if (PlanCommitted()) {
          plan_seen_ = true;
          const int64_t took = now - first_start_ms_;
          *plan_estimate_ms_ = std::max<int64_t>(5, took * 9 / 10);
          if (o_.verbose) std::cerr << fmt::format("  chaos: plan committed after {} ms\n", took);
        }
      }
      // Planned hits on the coordinator.
      if (plan_kill_at_ && now >= plan_kill_at_) {
        plan_kill_at_ = 0;
        if (coords_[lead_] && !coords_[lead_]->stopped) {
          const bool planned = PlanCommitted();
          Act(coords_[lead_].get(), SIGKILL);
          if (!planned) stats_.plan_hits++;
          // Aim at the planning window: earlier if we were late, later if early.
          // (Shrinking faster than growing settles where most kills hit.)
          *plan_estimate_ms_ = planned ? std::max<int64_t>(5, *plan_estimate_ms_ * 3 / 5)
                                       : *plan_estimate_ms_ * 11 / 10 + 1;
          if (o_.verbose) {
            std::cerr << fmt::format("  chaos: planning kill {} ms after start, plan {}\n",
                                     now - coords_[lead_]->started_ms,
                                     planned ? "committed" : "not committed");
          }
          restart_now_[lead_] = Chance(0.5);
        }
      }
      if (online_hit_at_ && now >= online_hit_at_) {
        online_hit_at_ = 0;
        Proc* target = nullptr;
        if (Chance(0.5) && coords_[lead_] && !coords_[lead_]->stopped) {
          target = coords_[lead_].get();
        } else {
          for (auto& w : workers_) {
            if (w->name == applier_ && !w->stopped && !w->signalled) target = w.get();
          }
        }
        if (target) {
          stats_.end_hits++;
          if (Chance(0.6)) {
            Act(target, SIGKILL);
          } else {
            Pause(target);
          }
        }
      }
      if (end_kill_at_ && now >= end_kill_at_) {
        end_kill_at_ = 0;
        if (coords_[lead_] && !coords_[lead_]->stopped) {
          stats_.end_hits++;
          if (Chance(0.8)) {
            Act(coords_[lead_].get(), SIGKILL);
          } else {
            Pause(coords_[lead_].get());
          }
        }
      }
      // Status.
      // (Not while a planning hit is due: a poll can block for its timeout.)
      if (coords_[lead_] && !coords_[lead_]->stopped && !plan_kill_at_ && now >= next_poll) {
        next_poll = now + 100;
        std::string reply;
        if (StatusCommand(StatusEndpoint(lead_), "status", &reply, 300)) {
          auto st = nlohmann::json::parse(reply, nullptr, false);
          if (st.is_object() && st.value("state", "") == "standby") {
            // Another coordinator leads: poll that one from now on.
            lead_ = (lead_ + 1) % coords_.size();
            next_poll = now;
          } else if (st.is_object()) {
            if (!throttled_ && o_.throttle > 0) {
              // Persisted in the state: survives coordinator restarts.
              std::string r;
              throttled_ = StatusCommand(StatusEndpoint(lead_),
                                         fmt::format("throttle {}", o_.throttle), &r, 1000) &&
                           r.find("\"ok\":true") != std::string::npos;
            }
            const std::string state = st.value("state", "");
            if (state == "complete") {
              complete = true;
              break;
            }
            if (o_.online_writes > 0) OnlineHits(state, st.value("applier", ""), now);
            if (state == "failed") {
              *why = "coordinator reports state failed: " + st.value("failure", st.dump());
              break;
            }
            const int64_t total = st.value("ranges_total", int64_t{0});
            const int64_t done = st.value("ranges_done", int64_t{0});
            // Hit the end: when at most one or two ranges remain.
            if (total > 0 && end_hits_armed_ > 0 &&
                total - done <= (end_hits_armed_ == 2 ? 2 : 1) && !end_kill_at_) {
              end_hits_armed_--;
              end_kill_at_ = now + Uniform(0, 250);
            }
          }
        } else if (coords_.size() > 1) {
          lead_ = (lead_ + 1) % coords_.size();  // no answer: try the next one
        }
      } else if (coords_.size() > 1 && !coords_[lead_] && !plan_kill_at_) {
        lead_ = (lead_ + 1) % coords_.size();
      }
      // Random chaos.
      if (now >= next_action_) {
        next_action_ = now + NextInterval();
        RandomAction();
      }
      int64_t nap = 10;
      if (plan_kill_at_) nap = std::clamp<int64_t>(plan_kill_at_ - NowMs(), 0, nap);
      std::this_thread::sleep_for(std::chrono::milliseconds(nap));
    }
    seconds_ = (NowMs() - t0) / 1000.0;
    Shutdown(complete);
    return complete;
  }

  // After the migration: a restart with the same arguments is a no-op.
  bool ReRunIsNoop(std::string* why) {
    std::vector<std::string> argv = {Bin("ferry-coordinator"),
                                     "--source",
                                     "sqlite:" + c_.legacy,
                                     "--target",
                                     c_.TargetArg(),
                                     "--state",
                                     c_.state,
                                     "--listen",
                                     c_.listen(),
                                     "--status-endpoint",
                                     c_.status_endpoint(),
                                     "--exit-when-done"};
    argv.insert(argv.end(), coord_args_.begin(), coord_args_.end());
    Process p(argv, dir_ + "/rerun.log");
    if (!p.Wait(60000)) {
      *why = "re-run after completion did not exit";
      return false;
    }
    if (p.exit_code() != 0 ||
        ReadFile(dir_ + "/rerun.log").find("already at version") == std::string::npos) {
      *why = fmt::format("re-run after completion exited {}: {}", p.exit_code(),
                         ReadFile(dir_ + "/rerun.log"));
      return false;
    }
    return true;
  }

  const Cluster& cluster() const { return c_; }
  const RunStats& stats() const { return stats_; }
  double seconds() const { return seconds_; }
  bool done_via_restart() const { return done_via_restart_; }

 private:
  std::vector<Proc*> All() {
    std::vector<Proc*> out;
    for (auto& c : coords_) {
      if (c) out.push_back(c.get());
    }
    for (auto& w : workers_) out.push_back(w.get());
    return out;
  }

  bool Chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  int64_t Uniform(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, std::max(lo, hi))(rng_);
  }
  int64_t NextInterval() {
    std::exponential_distribution<double> d(1.0 / std::max(1, o_.kill_interval_ms));
    return std::max<int64_t>(1, static_cast<int64_t>(d(rng_)));
  }

  // Exit codes we expect after our signal: 0 after SIGTERM (clean stop),
  // 137 after SIGKILL, and 143 after a SIGTERM that came before the process
  // could install its handler (within 500 ms of its start).
  static bool ExpectedExit(const Proc& p, int code) {
    if (code == 0 || code == 128 + SIGKILL) return true;
    return code == 128 + SIGTERM && p.last_signal == SIGTERM && p.signalled_ms - p.started_ms < 500;
  }

  // Coordinator slot i: slot 0 on the Cluster's ports and log, the
  // standbys (--coordinators) on their own.
  void StartCoordinator(size_t i) {
    auto p = std::make_unique<Proc>();
    if (i == 0) {
      p->p = c_.StartCoordinator(coord_args_);
    } else {
      while (extra_ports_.size() < i) extra_ports_.push_back({FreePort(), FreePort()});
      std::vector<std::string> argv = {Bin("ferry-coordinator"),
                                       "--source",
                                       "sqlite:" + c_.legacy,
                                       "--target",
                                       c_.TargetArg(),
                                       "--state",
                                       c_.state,
                                       "--listen",
                                       ListenEndpoint(i),
                                       "--status-endpoint",
                                       StatusEndpoint(i)};
      argv.insert(argv.end(), coord_args_.begin(), coord_args_.end());
      p->p = std::make_unique<Process>(argv, CoordinatorLog(i));
    }
    p->name = i == 0 ? "coordinator" : fmt::format("coordinator-{}", i);
    p->started_ms = NowMs();
    if (!first_start_ms_) first_start_ms_ = p->started_ms;
    coords_[i] = std::move(p);
    stats_.coord_starts++;
  }

  std::string ListenEndpoint(size_t i) const {
    return i == 0 ? c_.listen()
                  : fmt::format("tcp://{}:{}", c_.listen_host, extra_ports_[i - 1].first);
  }
  std::string StatusEndpoint(size_t i) const {
    return i == 0 ? c_.status_endpoint()
                  : fmt::format("tcp://127.0.0.1:{}", extra_ports_[i - 1].second);
  }
  std::string CoordinatorLog(size_t i) const {
    return i == 0 ? dir_ + "/coordinator.log" : fmt::format("{}/coordinator-{}.log", dir_, i);
  }
  // Every coordinator's worker endpoint: what workers get with several.
  std::string AllListenEndpoints() {
    while (extra_ports_.size() + 1 < coords_.size())
      extra_ports_.push_back({FreePort(), FreePort()});
    std::string out;
    for (size_t i = 0; i < coords_.size(); ++i) out += (i ? "," : "") + ListenEndpoint(i);
    return out;
  }
  bool PlanCommitted() {
    return PeekInt(c_.state, "SELECT count(*) FROM events WHERE kind='plan'",
                   "SELECT count(*) FROM ferry_state.events WHERE kind = convert_to('plan', "
                   "'UTF8')") > 0;
  }

  // --netem: one namespace per worker slot behind delay and loss; the
  // coordinator listens on the host end of the first link.
  bool SetUpNetem(std::string* why) {
    lab_ = NetLab::Create(o_.workers, why);
    if (!lab_) return false;
    c_.listen_host = lab_->coordinator_addr();
    for (int i = 0; i < lab_->size(); ++i) {
      if (!lab_->Impair(i, 20, 10, 1.0, c_.port, why)) return false;
    }
    return true;
  }

  void StartWorker() {
    auto p = std::make_unique<Proc>();
    p->name = fmt::format("w{}", next_worker_++);
    if (lab_) {
      const int slot = (next_worker_ - 1) % lab_->size();
      p->p =
          std::make_unique<Process>(lab_->InNamespace(slot, {Bin("ferry-worker"), "--coordinator",
                                                             lab_->Endpoint(slot, c_.port), "--id",
                                                             p->name, "--log-level", "debug"}),
                                    dir_ + "/worker-" + p->name + ".log");
    } else if (coords_.size() > 1) {
      p->p = std::make_unique<Process>(
          std::vector<std::string>{Bin("ferry-worker"), "--coordinator", AllListenEndpoints(),
                                   "--id", p->name, "--log-level", "debug"},
          dir_ + "/worker-" + p->name + ".log");
    } else {
      p->p = c_.StartWorker(p->name, {"--log-level", "debug"});
    }
    p->started_ms = NowMs();
    workers_.push_back(std::move(p));
    stats_.worker_starts++;
  }

  void Act(Proc* p, int sig) {
    if (sig == SIGKILL) stats_.kills++;
    if (sig == SIGTERM) stats_.terms++;
    p->signalled = true;
    p->last_signal = sig;
    p->signalled_ms = NowMs();
    p->p->Signal(sig);
    if (p->stopped && sig == SIGTERM) {  // a stopped process handles SIGTERM only once resumed
      p->p->Signal(SIGCONT);
      p->stopped = false;
    }
    if (o_.verbose) std::cerr << fmt::format("  chaos: signal {} -> {}\n", sig, p->name);
  }

  void Pause(Proc* p) {
    stats_.pauses++;
    p->p->Signal(SIGSTOP);
    p->stopped = true;
    // Sometimes shorter, sometimes longer than a lease.
    const int64_t ttl_ms = static_cast<int64_t>(o_.lease_ttl * 1000);
    p->cont_at_ms = NowMs() + Uniform(50, ttl_ms * 5 / 2);
    if (o_.verbose) std::cerr << fmt::format("  chaos: pause {}\n", p->name);
  }

  void RandomAction() {
    std::vector<Proc*> live;
    for (Proc* p : All()) {
      if (!p->stopped && !p->signalled) live.push_back(p);
    }
    if (live.empty()) return;
    Proc* target = nullptr;
    std::vector<Proc*> cs;  // live coordinators
    for (auto& c : coords_) {
      if (c && !c->stopped && !c->signalled) cs.push_back(c.get());
    }
    auto is_coord = [&](Proc* p) {
      for (auto& c : coords_) {
        if (c.get() == p) return true;
      }
      return false;
    };
    if (!cs.empty() && !plan_kill_at_ && Chance(0.25)) {
      target = cs[static_cast<size_t>(Uniform(0, static_cast<int64_t>(cs.size()) - 1))];
    } else {
      std::vector<Proc*> ws;
      for (Proc* p : live) {
        if (!is_coord(p)) ws.push_back(p);
      }
      if (ws.empty()) return;
      target = ws[static_cast<size_t>(Uniform(0, static_cast<int64_t>(ws.size()) - 1))];
    }
    stats_.actions++;
    if (is_coord(target)) stats_.coord_actions++;
    const double r = std::uniform_real_distribution<double>(0, 1)(rng_);
    if (r < 0.35) {
      Act(target, SIGKILL);
    } else if (r < 0.60) {
      Pause(target);
    } else if (r < 0.80) {
      Act(target, SIGTERM);
    } else {  // restart: kill and start the replacement at once
      stats_.restarts++;
      if (is_coord(target)) {
        for (size_t i = 0; i < coords_.size(); ++i) {
          if (coords_[i].get() == target) restart_now_[i] = true;
        }
      } else {
        restart_now_worker_ = true;
      }
      Act(target, Chance(0.5) ? SIGKILL : SIGTERM);
    }
  }

  // --online-writes: aim chaos at catch-up and cut-over: once on entering
  // catching_up (the coordinator or the applier, within 1.5 s), and on the
  // coordinator while it is cutting over (half the times it is seen).
  void OnlineHits(const std::string& state, const std::string& applier, int64_t now) {
    if (!applier.empty()) applier_ = applier;
    if (state == "catching_up" && !catching_up_seen_) {
      catching_up_seen_ = true;
      online_hit_at_ = now + Uniform(0, 1500);
    }
    if (state == "cutting_over" && cutover_hits_ < 2 && !online_hit_at_ && Chance(0.5)) {
      ++cutover_hits_;
      stats_.end_hits++;
      if (coords_[lead_] && !coords_[lead_]->stopped) {
        if (Chance(0.7)) {
          Act(coords_[lead_].get(), SIGKILL);
        } else {
          Pause(coords_[lead_].get());
        }
      }
    }
  }

  void Shutdown(bool complete) {
    if (writer_) {
      writer_->Signal(SIGTERM);
      if (!writer_->Wait(20000)) {
        stats_.anomalies.push_back("the writer did not stop within 20 s of SIGTERM");
        writer_->Kill();
      }
    }
    for (Proc* p : All()) {
      if (p->stopped) {
        p->p->Signal(SIGCONT);
        p->stopped = false;
      }
    }
    if (complete) {
      // Workers exit 0 by themselves once they hear the migration is done
      // (bounded: 30 s for all of them together).
      WaitFor(
          [&] {
            for (auto& w : workers_) {
              if (w->p->running()) return false;
            }
            return true;
          },
          30000);
      for (auto& w : workers_) {
        if (w->p->running()) {
          std::string last;
          for (const std::string& line :
               NonEmptyLines(ReadFile(dir_ + "/worker-" + w->name + ".log"))) {
            last = line;
          }
          // SIGTERM: a clean stop (exit 0) is still expected.
          w->p->Signal(SIGTERM);
          const bool stopped = w->p->Wait(10000);
          stats_.anomalies.push_back(fmt::format(
              "worker {} (started {:.1f} s into the run) still running 30 s after complete; "
              "SIGTERM -> {}; its last log line: {}",
              w->name, (w->started_ms - t0_) / 1000.0,
              stopped ? fmt::format("exit {}", w->p->exit_code()) : std::string("still running"),
              last));
        } else if (w->p->exit_code() != 0 && !w->signalled) {
          stats_.anomalies.push_back(
              fmt::format("worker {} exited with code {} at the end", w->name, w->p->exit_code()));
        }
      }
    }
    for (auto& w : workers_) w->p->Kill();
    workers_.clear();
    for (auto& coord : coords_) {
      if (!coord) continue;
      coord->p->Signal(SIGTERM);
      if (!coord->p->Wait(15000)) {
        stats_.anomalies.push_back(coord->name + " did not stop within 15 s of SIGTERM");
        coord->p->Kill();
      } else if (complete && coord->p->exit_code() != 0) {
        stats_.anomalies.push_back(fmt::format("{} exited with code {} on SIGTERM after complete",
                                               coord->name, coord->p->exit_code()));
      }
      coord.reset();
    }
  }

  const Options& o_;
  int index_;
  std::mt19937_64 rng_;
  Cluster c_;
  std::string dir_;
  int64_t* plan_estimate_ms_;
  std::vector<std::string> coord_args_;
  std::vector<std::unique_ptr<Proc>> coords_;     // [0] primary, then standbys
  size_t lead_ = 0;                               // the one whose status counts
  std::vector<std::pair<int, int>> extra_ports_;  // standbys' (listen, status) ports
  std::deque<std::unique_ptr<Proc>> workers_;
  std::vector<int64_t> pending_workers_;
  int next_worker_ = 0;
  std::unique_ptr<NetLab> lab_;  // --netem
  int64_t next_action_ = 0;
  std::vector<int64_t> coord_restart_at_;
  std::vector<bool> restart_now_;
  bool restart_now_worker_ = false;
  int64_t plan_kill_at_ = 0, end_kill_at_ = 0;
  int end_hits_armed_ = 2;
  int64_t first_start_ms_ = 0;
  int64_t t0_ = 0;
  bool plan_seen_ = false;
  bool throttled_ = false;
  bool done_via_restart_ = false;
  double seconds_ = 0;
  RunStats stats_;
  // --online-writes
  std::unique_ptr<Process> writer_;
  std::string applier_;  // the worker holding the change applier's lease
  int64_t online_hit_at_ = 0;
  bool catching_up_seen_ = false;
  int cutover_hits_ = 0;
};

// What --verify and --split-interval-ms add to a run's checks and line.
struct ScaleStats {
  int64_t ranges = 0, planned = 0, split_events = 0, verified = 0, repaired = 0;
  std::string Describe(const Options& o) const {
    std::string out;
    if (o.split_interval_ms > 0) {
      out += fmt::format("; {} splits ({} planned ranges -> {})", split_events, planned, ranges);
    }
    if (o.verify)
      out +=
          fmt::format("; {} of {} ranges verified, {} rows repaired", verified, ranges, repaired);
    return out;
  }
};

// With --verify every range must be verified; with forced splits the plan
// must still tile each table (every range's hi is the next one's lo, in key
// order) — the row comparison already proves nothing was lost or doubled.
// Read through the state's read-only API: a SQLite file or, with
// --coordinators / --state-pg, a PostgreSQL state.
void CheckScale(const Options& o, const std::string& state, CheckResult* res, ScaleStats* st) {
  auto reader = ferry::OpenStateReader(state);
  auto ranges = reader.ok() ? (*reader)->LoadRanges()
                            : ferry::Result<std::vector<ferry::RangeRecord>>(reader.status());
  if (!ranges.ok()) {
    res->problems.push_back(
        fmt::format("cannot read the state {}: {}", state, ranges.status().message()));
    return;
  }
  std::map<std::string, std::vector<const ferry::RangeRecord*>> by_table;
  for (const ferry::RangeRecord& r : *ranges) {
    st->ranges++;
    st->planned += r.parent == 0;
    st->verified += r.verified;
    st->repaired += static_cast<int64_t>(r.rows_repaired);
    by_table[r.table].push_back(&r);
  }
  st->split_events =
      ferry::IsPgStateLocation(state)
          ? PgQueryInt(state, "SELECT count(*) FROM ferry_state.events WHERE kind = 'split'::bytea")
          : Sql(state).Int("SELECT count(*) FROM events WHERE kind = 'split'", -1);
  if (o.verify && st->verified != st->ranges) {
    res->problems.push_back(
        fmt::format("--verify: {} of {} ranges verified at completion", st->verified, st->ranges));
  }
  if (st->ranges - st->planned != st->split_events) {
    res->problems.push_back(fmt::format("{} ranges split off but {} split events",
                                        st->ranges - st->planned, st->split_events));
  }
  // Each table: the ranges sorted by lo chain from '' to '' without a gap.
  int64_t gaps = 0, starts = 0;
  for (auto& [table, rs] : by_table) {
    std::sort(rs.begin(), rs.end(), [](const auto* a, const auto* b) { return a->lo < b->lo; });
    if (!rs.front()->lo.empty()) starts++;
    for (size_t k = 0; k < rs.size(); ++k) {
      const std::string want = k + 1 < rs.size() ? rs[k + 1]->lo : std::string();
      if (rs[k]->hi != want) gaps++;
    }
  }
  if (gaps != 0 || starts != 0) {
    res->problems.push_back(fmt::format(
        "the ranges do not tile the key space: {} gaps or overlaps, {} tables not starting at "
        "the start",
        gaps, starts));
  }
}

std::string MakeRunDir(int index) {
  std::string tmpl =
      (std::filesystem::temp_directory_path() / fmt::format("ferry-chaos-{}-XXXXXX", index))
          .string();
  char* p = mkdtemp(tmpl.data());
  if (!p) {
    std::perror("mkdtemp");
    std::exit(70);
  }
  return p;
}

}  // namespace
}  // namespace ferry::testing

int main(int argc, char** argv) {
  using namespace ferry::testing;
  Options o;
  CLI::App app{
      "ferry-chaos: migrations with real ferry processes under SIGKILL/SIGSTOP/SIGTERM "
      "chaos, checked row for row with SQL",
      "ferry-chaos"};
  app.add_option("--rows", o.rows, "rows in the generated legacy store")->default_val(200000);
  app.add_option("--workers", o.workers, "ferry-worker processes kept running")->default_val(4);
  app.add_option("--runs", o.runs, "migrations to run")->default_val(20);
  app.add_option("--kill-interval-ms", o.kill_interval_ms,
                 "mean interval between chaos actions (exponential)")
      ->default_val(700);
  auto* seed_opt = app.add_option("--seed", o.seed, "random seed (default: from the clock)");
  app.add_option("--lease-ttl", o.lease_ttl, "coordinator --lease-ttl (seconds)")->default_val(2);
  app.add_option("--range-rows", o.range_rows, "coordinator --range-rows")->default_val(10000);
  app.add_option("--batch-rows", o.batch_rows, "coordinator --batch-rows")->default_val(500);
  app.add_flag("--keep", o.keep,
               "keep every run's temp dir (the dirs of failed runs and runs with notes are "
               "always kept)");
  app.add_option("--max-seconds", o.max_seconds, "per run; a run exceeding it fails")
      ->default_val(300);
  app.add_option("--throttle", o.throttle,
                 "rows/s over all workers (the coordinator's `throttle`), so the chaos has time "
                 "to act; 0 = off; default: an undisturbed copy takes 3 s + 1 s per 25000 rows");
  app.add_flag("-v,--verbose", o.verbose, "log each chaos action");
  app.add_option("--coordinators", o.coordinators,
                 "coordinators per run (more than 1: standbys sharing a PostgreSQL state, "
                 "--state-pg/--state-pg-env; workers get every endpoint)")
      ->default_val(1)
      ->check(CLI::Range(1, 5));
  auto* state_pg_opt = app.add_option(
      "--state-pg", o.state_pg,
      "keep each run's coordinator state in a fresh database on this PostgreSQL server "
      "(admin URI) instead of a state file");
  std::string state_pg_env;
  app.add_option("--state-pg-env", state_pg_env,
                 "like --state-pg, with the URI read from this environment variable; if it is "
                 "unset or empty, print `chaos: skipped (NAME not set)` and exit 0")
      ->excludes(state_pg_opt);
  app.add_flag("--netem", o.netem,
               "workers in network namespaces behind 20 ms +- 10 ms delay and 1% loss (root)");
  auto* pg_opt = app.add_option(
      "--target-pg", o.target_pg,
      "migrate into PostgreSQL: admin URI (postgresql://...) of a server on which each run "
      "creates (and afterwards drops) a fresh database; with --check: the kept run's database");
  std::string pg_env;
  app.add_option("--target-pg-env", pg_env,
                 "like --target-pg, with the URI read from this environment variable; if it is "
                 "unset or empty, print `chaos: skipped (NAME not set)` and exit 0")
      ->excludes(pg_opt);
  app.add_option("--online-writes", o.online_writes,
                 "an online migration (--online --auto-cutover) while a writer process writes the "
                 "legacy store this many times a second; checks that every committed write "
                 "reached the new store")
      ->default_val(0);
  app.add_option("--spec", o.spec,
                 "migrate through this migration spec (the coordinator's --spec); the expected "
                 "rows are computed by the check (see the file comment)");
  app.add_option("--legacy-sql", o.legacy_sql,
                 "with --spec: the SQLite script that makes the legacy store, @users = --rows / 3 "
                 "(default: make-v1-store.sql beside the spec)");
  app.add_flag("--verify", o.verify,
               "run the coordinator with --verify: every range verified (and repaired) by a "
               "worker under the chaos before the version bump; checks that all are verified");
  app.add_option("--split-interval-ms", o.split_interval_ms,
                 "force splits: the coordinator asks every copy lease's owner to split this "
                 "often (--force-split-interval-ms); counts the splits");
  std::string check_dir;
  app.add_option("--check", check_dir,
                 "only check a kept run directory (legacy.db, new.db or --target-pg, state.db) "
                 "and exit");
  CLI11_PARSE(app, argc, argv);
  if (o.online_writes > 0 && !o.spec.empty()) {
    std::cerr << "ferry-chaos: error: --online-writes and --spec do not go together (the writer's "
                 "table is not one of the spec's); use one of them\n";
    return 2;
  }
  if (o.online_writes > 0 && o.verify) {
    std::cerr << "ferry-chaos: error: --online-writes and --verify do not go together (the "
                 "coordinator refuses --verify with --online); use one of them\n";
    return 2;
  }
  if (!state_pg_env.empty()) {
    const char* v = std::getenv(state_pg_env.c_str());
    if (!v || !*v) {
      std::cout << "chaos: skipped (" << state_pg_env << " not set)" << std::endl;
      return 0;
    }
    o.state_pg = v;
  }
  if (o.coordinators > 1 && o.state_pg.empty()) {
    std::cerr << "ferry-chaos: error: --coordinators " << o.coordinators
              << " needs a shared state: add --state-pg URI or --state-pg-env NAME\n";
    return 2;
  }
  if (!pg_env.empty()) {
    const char* v = std::getenv(pg_env.c_str());
    if (!v || !*v) {
      std::cout << "chaos: skipped (" << pg_env << " not set)" << std::endl;
      return 0;
    }
    o.target_pg = v;
  }
  if (o.rows < 10 || o.workers < 1 || o.runs < 1 || o.kill_interval_ms < 1 || o.lease_ttl <= 0 ||
      o.range_rows < 1 || o.batch_rows < 1 || o.max_seconds < 1 || o.split_interval_ms < 0) {
    std::cerr << "ferry-chaos: error: --rows >= 10, and --workers, --runs, --kill-interval-ms, "
                 "--lease-ttl, --range-rows, --batch-rows, --max-seconds must be positive\n";
    return 2;
  }
  for (const char* exe : {"ferry-coordinator", "ferry-worker"}) {
    if (check_dir.empty() && access(Bin(exe).c_str(), X_OK) != 0) {
      std::cerr << "ferry-chaos: error: " << exe << " is neither beside ferry-chaos nor in "
                << FERRY_BIN_DIR << ": copy it next to ferry-chaos (or build first)\n";
      return 2;
    }
  }
  if (!o.spec.empty()) {
    auto spec = ferry::LoadSpecFile(o.spec);
    if (!spec.ok()) {
      std::cerr << "ferry-chaos: error: " << spec.status().message() << "\n";
      return 2;
    }
    o.parsed_spec = std::move(spec).value();
    if (o.legacy_sql.empty()) {
      o.legacy_sql = (std::filesystem::path(o.spec).parent_path() / "make-v1-store.sql").string();
    }
    if (!std::filesystem::exists(o.legacy_sql)) {
      std::cerr << "ferry-chaos: error: " << o.legacy_sql
                << " does not exist (give the legacy store's script with --legacy-sql)\n";
      return 2;
    }
  }
  if (!check_dir.empty()) {
    CheckResult check;
    if (o.parsed_spec) {
      const std::string target = o.target_pg.empty() ? check_dir + "/new.db" : o.target_pg;
      CompareSpecStore(check_dir + "/legacy.db", *o.parsed_spec, target, &check);
      CheckFinish(check_dir + "/state.db", target, &check);
    } else if (o.target_pg.empty()) {
      CompareStores(check_dir + "/legacy.db", check_dir + "/new.db", &check);
      CheckFinish(check_dir + "/state.db", check_dir + "/new.db", &check);
    } else {
      ComparePgStore(check_dir + "/legacy.db", o.target_pg, &check);
      CheckFinish(check_dir + "/state.db", o.target_pg, &check);
    }
    for (const auto& p : check.problems) std::cout << "  problem: " << p << "\n";
    for (const auto& d : check.details) std::cout << "  " << d << "\n";
    const bool ok = !check.lost && !check.extra && !check.mismatched && check.problems.empty();
    std::cout << fmt::format(
        "check {}: {}: {} rows, {} lost, {} duplicated-or-extra, {} mismatched\n", check_dir,
        ok ? "ok" : "FAILED", check.legacy_rows, check.lost, check.extra, check.mismatched);
    return ok ? 0 : 1;
  }
  o.seed_given = seed_opt->count() > 0;
  if (o.throttle < 0) {
    // An undisturbed copy would take 3 s + 1 s per 25 000 rows: long enough
    // for the chaos to land inside ranges, short enough for many runs.
    o.throttle = std::max<int64_t>(100, o.rows * 25000 / (3 * 25000 + o.rows));
  }
  if (!o.seed_given) o.seed = std::random_device{}() ^ static_cast<uint64_t>(NowMs());
  if (o.netem) {
    std::string why;
    if (!NetLab::Create(1, &why)) {
      std::cout << "chaos: skipped (netem: " << why << ")" << std::endl;
      return 0;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  std::cout << fmt::format(
                   "chaos: seed {}, {} runs of {} rows, {} workers, action every ~{} ms, "
                   "lease-ttl {} s, range-rows {}, batch-rows {}, throttle {}, target {}{}{}{}{}, "
                   "executables from {}\n",
                   o.seed, o.runs, o.rows, o.workers, o.kill_interval_ms, o.lease_ttl, o.range_rows,
                   o.batch_rows, o.throttle ? std::to_string(o.throttle) + " rows/s" : "off",
                   o.target_pg.empty() ? "sqlite" : "postgresql",
                   o.spec.empty() ? "" : ", spec " + o.spec, o.verify ? ", verify" : "",
                   o.split_interval_ms
                       ? fmt::format(", forced splits every {} ms", o.split_interval_ms)
                       : "",
                   o.online_writes > 0 ? fmt::format(", online under {} writes/s", o.online_writes)
                                       : std::string(),
                   BinDir())
            << std::flush;

  int64_t lost = 0, extra = 0, mismatched = 0, failed = 0;
  int64_t plan_estimate_ms = 150;
  std::mt19937_64 master(o.seed);
  const int64_t all0 = NowMs();
  for (int i = 1; i <= o.runs; ++i) {
    const uint64_t run_seed = master();
    const std::string dir = MakeRunDir(i);
    bool ok = true;
    std::string why;
    CheckResult check;
    RunStats stats;
    ScaleStats scale;
    double secs = 0;
    bool via_restart = false;
    std::unique_ptr<PgTestDb> pgdb;  // the PostgreSQL new store (--target-pg)
    std::string kept_db;
    if (!o.target_pg.empty()) {
      pgdb = std::make_unique<PgTestDb>(o.target_pg, "ferry_chaos_");
      if (!pgdb->ok()) {
        std::cout << fmt::format("run {}: FAILED: cannot create a database on {}\n", i, o.target_pg)
                  << std::flush;
        failed++;
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
        continue;
      }
    }
    std::unique_ptr<PgTestDb> statedb;  // the coordinators' state (--state-pg)
    if (!o.state_pg.empty()) {
      statedb = std::make_unique<PgTestDb>(o.state_pg, "ferry_chaos_state_");
      if (!statedb->ok()) {
        std::cout << fmt::format("run {}: FAILED: cannot create a database on {}\n", i, o.state_pg)
                  << std::flush;
        failed++;
        continue;
      }
    }
    {
      Run run(o, i, run_seed, dir, &plan_estimate_ms, pgdb ? pgdb->uri() : "",
              statedb ? statedb->uri() : "");
      // The new store as the checks see it: a SQLite file or the PostgreSQL URI.
      const std::string target = pgdb ? pgdb->uri() : run.cluster().target;
      const bool complete = run.Chaos(&why);
      secs = run.seconds();
      stats = run.stats();
      via_restart = run.done_via_restart();
      if (!complete) ok = false;
      if (o.parsed_spec) {
        CompareSpecStore(run.cluster().legacy, *o.parsed_spec, target, &check);
      } else if (pgdb) {
        ComparePgStore(run.cluster().legacy, target, &check);
      } else {
        CompareStores(run.cluster().legacy, target, &check);
      }
      if (o.online_writes > 0 && complete) {
        CheckOnline(dir + "/writes.log", run.cluster().legacy, target, &check);
      }
      if (complete) {
        CheckFinish(run.cluster().state, target, &check);
        CheckScale(o, run.cluster().state, &check, &scale);
        std::string rerun_why;
        if (check.problems.empty() && !run.ReRunIsNoop(&rerun_why))
          check.problems.push_back(rerun_why);
        // The re-run must not have bumped anything again.
        if (check.problems.empty()) CheckFinish(run.cluster().state, target, &check);
      }
    }
    if (check.lost || check.extra || check.mismatched || !check.problems.empty()) ok = false;
    if (pgdb && (o.keep || !ok || !stats.anomalies.empty())) {
      pgdb->Keep();
      kept_db = pgdb->uri();
    }
    pgdb.reset();
    if (statedb && (o.keep || !ok || !stats.anomalies.empty())) {
      statedb->Keep();
      kept_db += (kept_db.empty() ? "" : ", state ") + statedb->uri();
    }
    statedb.reset();
    lost += check.lost;
    extra += check.extra;
    mismatched += check.mismatched;
    if (!ok) failed++;
    std::cout << fmt::format(
                     "run {}: {} in {:.1f} s: {} rows, {} lost, {} duplicated-or-extra, {} "
                     "mismatched; {} chaos actions ({} on the coordinator: {} planning hits, {} "
                     "end hits), {} kills, {} pauses, {} terms, {} restarts, {} coordinator "
                     "starts, {} worker starts{}{}{}",
                     i, ok ? "ok" : "FAILED", secs, check.legacy_rows, check.lost, check.extra,
                     check.mismatched, stats.actions, stats.coord_actions, stats.plan_hits,
                     stats.end_hits, stats.kills, stats.pauses, stats.terms, stats.restarts,
                     stats.coord_starts, stats.worker_starts, scale.Describe(o),
                     via_restart ? "; completion seen by a restarted coordinator" : "",
                     why.empty() ? "" : "; " + why)
              << "\n";
    for (const auto& p : check.problems) std::cout << "  problem: " << p << "\n";
    for (const auto& d : check.details) std::cout << "  " << d << "\n";
    for (const auto& a : stats.anomalies) std::cout << "  note: " << a << "\n";
    std::cout << std::flush;
    if (o.keep || !ok || !stats.anomalies.empty()) {
      std::cout << "  kept " << dir
                << (kept_db.empty() ? " (state.db, legacy.db, new.db, *.log)"
                                    : " (state.db, legacy.db, *.log) and the new store " + kept_db +
                                          " (check: --check DIR --target-pg URI)")
                << "\n"
                << std::flush;
    } else {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  }
  std::cout << fmt::format("chaos: total {:.1f} s\n", (NowMs() - all0) / 1000.0);
  std::cout << fmt::format(
                   "chaos: {} runs, {} lost, {} duplicated-or-extra, {} mismatched, {} failed",
                   o.runs, lost, extra, mismatched, failed)
            << std::endl;
  return (lost == 0 && extra == 0 && mismatched == 0 && failed == 0) ? 0 : 1;
}
