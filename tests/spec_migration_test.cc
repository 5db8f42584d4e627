// Migrations between formats with a migration spec (DESIGN.md "Migration
// spec"), end to end with real ferry processes and real stores: SQLite →
// SQLite, SQLite → PostgreSQL and PostgreSQL → SQLite (the PostgreSQL cases
// skip without FERRY_TEST_PG_URI). One spec renames a table and its
// columns, computes columns, filters rows, feeds two targets from one legacy
// table, creates a target with an explicit `create`, and unpacks a
// little-endian binary v1 record with a Lua function that drops test rows.
//
// Every expected row is computed here, in C++, from the formulas that made
// the legacy rows (never through ferry's code), and compared with the new
// store's rows read with plain sqlite3 / libpq (tests/test_util.h).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "common/version.h"
#include "coordinator/pg_state_store.h"
#include "coordinator/sqlite_state_store.h"
#include "tests/cluster.h"
#include "tests/process_util.h"
#include "tests/test_util.h"

namespace ferry::testing {
namespace {

namespace fs = std::filesystem;

constexpr int kUsers = 3000;
constexpr int kOrders = 2 * kUsers;
const char* const kCurrencies[] = {"EUR", "USD", "GBP", "JPY"};

// ---- the legacy rows, by formula ----

std::string Email(int i) {
  switch (i % 3) {
    case 0:
      return "User" + std::to_string(i) + "@Example.org";
    case 1:
      return " user" + std::to_string(i) + "@example.org ";
    default:
      return "USER" + std::to_string(i) + "@EXAMPLE.ORG";
  }
}
bool HasName(int i) { return i % 7 != 0; }
std::string Name(int i) { return "User Number " + std::to_string(i); }
int64_t Created(int i) { return 1500000000 + int64_t{i} * 60; }
bool Deleted(int i) { return i % 10 == 0; }

int UserOf(int order) { return 1 + (order * 7919) % kUsers; }
int32_t Amount(int order) { return (order * 37) % 100000 - 500; }
int16_t Quantity(int order) { return static_cast<int16_t>(order % 9); }  // 0: a test order
std::string Currency(int order) { return kCurrencies[order % 4]; }

// The v1 record: int32 amount, int16 quantity, currency with a 1-byte
// length, all little-endian.
std::string Packed(int order) {
  std::string b;
  const uint32_t a = static_cast<uint32_t>(Amount(order));
  for (int k = 0; k < 4; ++k) b += static_cast<char>((a >> (8 * k)) & 0xff);
  const uint16_t q = static_cast<uint16_t>(Quantity(order));
  for (int k = 0; k < 2; ++k) b += static_cast<char>((q >> (8 * k)) & 0xff);
  b += static_cast<char>(Currency(order).size());
  b += Currency(order);
  return b;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string Trim(const std::string& s) {
  const size_t b = s.find_first_not_of(' ');
  const size_t e = s.find_last_not_of(' ');
  return s.substr(b, e - b + 1);
}
std::string Hex(const std::string& b) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : b) {
    out += d[c >> 4];
    out += d[c & 15];
  }
  return out;
}

void MakeSqliteLegacy(const std::string& path) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, "
                         "full_name TEXT, created INTEGER NOT NULL, deleted_at INTEGER);"
                         "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, "
                         "packed BLOB NOT NULL); BEGIN",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_stmt* u = nullptr;
  sqlite3_stmt* o = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO users VALUES (?, ?, ?, ?, ?)", -1, &u, nullptr);
  sqlite3_prepare_v2(db, "INSERT INTO orders VALUES (?, ?, ?)", -1, &o, nullptr);
  for (int i = 1; i <= kUsers; ++i) {
    const std::string email = Email(i), name = Name(i);
    sqlite3_bind_int64(u, 1, i);
    sqlite3_bind_text(u, 2, email.c_str(), -1, SQLITE_TRANSIENT);
    if (HasName(i)) {
      sqlite3_bind_text(u, 3, name.c_str(), -1, SQLITE_TRANSIENT);
    } else {
      sqlite3_bind_null(u, 3);
    }
    sqlite3_bind_int64(u, 4, Created(i));
    if (Deleted(i)) {
      sqlite3_bind_int64(u, 5, 1600000000 + i);
    } else {
      sqlite3_bind_null(u, 5);
    }
    ASSERT_EQ(sqlite3_step(u), SQLITE_DONE);
    sqlite3_reset(u);
  }
  for (int i = 1; i <= kOrders; ++i) {
    const std::string packed = Packed(i);
    sqlite3_bind_int64(o, 1, i);
    sqlite3_bind_int64(o, 2, UserOf(i));
    sqlite3_bind_blob(o, 3, packed.data(), static_cast<int>(packed.size()), SQLITE_TRANSIENT);
    ASSERT_EQ(sqlite3_step(o), SQLITE_DONE);
    sqlite3_reset(o);
  }
  sqlite3_finalize(u);
  sqlite3_finalize(o);
  ASSERT_EQ(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
}

std::string PgLiteral(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

void MakePgLegacy(const std::string& uri) {
  std::string sql =
      "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, full_name text, "
      "created bigint NOT NULL, deleted_at bigint); CREATE TABLE orders (id bigint PRIMARY KEY, "
      "user_id bigint NOT NULL, packed bytea NOT NULL); INSERT INTO users VALUES ";
  for (int i = 1; i <= kUsers; ++i) {
    sql += fmt::format("{}({}, {}, {}, {}, {})", i > 1 ? "," : "", i, PgLiteral(Email(i)),
                       HasName(i) ? PgLiteral(Name(i)) : "NULL", Created(i),
                       Deleted(i) ? std::to_string(1600000000 + i) : "NULL");
  }
  sql += "; INSERT INTO orders VALUES ";
  for (int i = 1; i <= kOrders; ++i) {
    sql += fmt::format("{}({}, {}, '\\x{}')", i > 1 ? "," : "", i, UserOf(i), Hex(Packed(i)));
  }
  ASSERT_TRUE(PgExec(uri, sql));
}

// ---- the spec, and what it should make ----

const char* kLua = R"lua(
-- v1 record: int32 amount in cents, int16 quantity, currency with a 1-byte
-- length, little-endian
return function(row)
  local amount, quantity, currency = string.unpack("<i4 i2 s1", row.packed)
  if quantity == 0 then
    return nil -- a test order: not migrated
  end
  return {
    order_id = row.id,
    account_id = row.user_id,
    amount_cents = amount,
    quantity = quantity,
    currency = currency,
  }
end
)lua";

// The same spec for either legacy dialect: the SQL in it is both SQLite's and
// PostgreSQL's. `lua` replaces the order_lines function when given.
std::string Spec(const std::string& lua = kLua) {
  return std::string(R"toml(
from_version = 1
to_version = 2

# users -> accounts: renamed table and columns, computed columns, a filter;
# no create: derived, keyed by the legacy key carried as account_id.
[[table]]
target = "accounts"
source = "users"
select = "id AS account_id, CAST(lower(trim(email)) AS TEXT) AS email, CAST(created * 1000 AS BIGINT) AS created_ms"
where = "deleted_at IS NULL"

# The same legacy table feeds a second target, with an explicit create;
# `tier` is not written: it takes its default.
[[table]]
target = "profiles"
source = "users"
select = "id AS account_id, full_name AS display_name"
where = "full_name IS NOT NULL AND id % 2 = 1"
create = "CREATE TABLE profiles (account_id INTEGER PRIMARY KEY, display_name TEXT NOT NULL, tier TEXT DEFAULT 'basic')"

[[table]]
target = "order_lines"
source = "orders"
create = """
CREATE TABLE order_lines (
  order_id INTEGER PRIMARY KEY,
  account_id INTEGER NOT NULL,
  amount_cents INTEGER NOT NULL,
  quantity INTEGER NOT NULL,
  currency TEXT NOT NULL
)"""
lua = ''')toml") +
         lua + "'''\n";
}

std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// The expected rows, in tests/test_util.h's canonical form.
std::vector<std::string> ExpectedAccounts() {
  std::vector<std::string> out;
  for (int i = 1; i <= kUsers; ++i) {
    if (Deleted(i)) continue;
    out.push_back(fmt::format("i:{}|t:{}|i:{}", i, Lower(Trim(Email(i))), Created(i) * 1000));
  }
  return Sorted(out);
}
std::vector<std::string> ExpectedProfiles() {
  std::vector<std::string> out;
  for (int i = 1; i <= kUsers; ++i) {
    if (!HasName(i) || i % 2 == 0) continue;
    out.push_back(fmt::format("i:{}|t:{}|t:basic", i, Name(i)));
  }
  return Sorted(out);
}
// `skip`: orders expected absent (rejected).
std::vector<std::string> ExpectedOrderLines(const std::set<int>& skip = {}) {
  std::vector<std::string> out;
  for (int i = 1; i <= kOrders; ++i) {
    if (Quantity(i) == 0 || skip.count(i)) continue;
    out.push_back(
        fmt::format("i:{}|i:{}|i:{}|i:{}|t:{}", i, UserOf(i), Amount(i), Quantity(i), Currency(i)));
  }
  return Sorted(out);
}

void WriteText(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::string First(const std::vector<std::string>& v) { return v.empty() ? "" : v[0]; }

class SpecMigrationTest : public ::testing::Test {
 protected:
  // One embedded migration; returns its exit code, output in *out.
  int Migrate(const std::string& source, const std::string& target, const std::string& state,
              const std::string& spec_text, std::string* out,
              const std::vector<std::string>& extra = {}) {
    const std::string spec = dir_.File("spec-" + std::to_string(++runs_) + ".toml");
    WriteText(spec, spec_text);
    std::vector<std::string> argv = {Bin("ferry-coordinator"),
                                     "--source",
                                     source,
                                     "--target",
                                     target,
                                     "--state",
                                     state,
                                     "--spec",
                                     spec,
                                     "--listen",
                                     "tcp://127.0.0.1:0",
                                     "--status-endpoint",
                                     "tcp://127.0.0.1:0",
                                     "--local-workers",
                                     "2",
                                     "--range-rows",
                                     "700",
                                     "--batch-rows",
                                     "150"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    std::string err;
    const int code = RunCommandSplit(argv, out, &err, 120000);
    *out += err;
    return code;
  }

  int Verify(const std::string& state, std::string* out) {
    std::string err;
    const int code =
        RunCommandSplit({Bin("ferryctl"), "verify", "--state", state}, out, &err, 120000);
    *out += err;
    return code;
  }

  void ExpectSqliteTarget(const std::string& path) {
    const auto acc = SqliteCanonicalRows(path, "accounts");
    EXPECT_EQ(acc.size(), ExpectedAccounts().size());
    EXPECT_TRUE(acc == ExpectedAccounts()) << First(acc) << " vs " << First(ExpectedAccounts());
    const auto prof = SqliteCanonicalRows(path, "profiles");
    EXPECT_TRUE(prof == ExpectedProfiles()) << First(prof) << " vs " << First(ExpectedProfiles());
    const auto lines = SqliteCanonicalRows(path, "order_lines");
    EXPECT_EQ(lines.size(), static_cast<size_t>(kOrders - kOrders / 9));
    EXPECT_TRUE(lines == ExpectedOrderLines())
        << First(lines) << " vs " << First(ExpectedOrderLines());
    // The derived key: the legacy key carried under its new name.
    EXPECT_EQ(QueryInt(path,
                       "SELECT pk FROM pragma_table_info('accounts') WHERE name = "
                       "'account_id'"),
              1);
    EXPECT_EQ(QueryInt(path, "SELECT count(*) FROM __ferry_rejects"), 0);
    EXPECT_EQ(StoreVersion(path), 2);
  }

  void ExpectPgTarget(const std::string& uri) {
    const auto acc = Sorted(PgCanonicalRows(uri, "accounts"));
    EXPECT_TRUE(acc == ExpectedAccounts()) << First(acc) << " vs " << First(ExpectedAccounts());
    const auto prof = Sorted(PgCanonicalRows(uri, "profiles"));
    EXPECT_TRUE(prof == ExpectedProfiles()) << First(prof) << " vs " << First(ExpectedProfiles());
    const auto lines = Sorted(PgCanonicalRows(uri, "order_lines"));
    EXPECT_TRUE(lines == ExpectedOrderLines())
        << First(lines) << " vs " << First(ExpectedOrderLines());
    EXPECT_EQ(PgQueryText(uri,
                          "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON "
                          "a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) WHERE "
                          "i.indisprimary AND i.indrelid = 'accounts'::regclass"),
              "account_id");
    EXPECT_EQ(PgQueryInt(uri, "SELECT count(*) FROM __ferry_rejects"), 0);
    EXPECT_EQ(PgQueryInt(uri, "SELECT value FROM __ferry_meta WHERE key = 'version'"), 2);
  }

  TempDir dir_;
  int runs_ = 0;
};

TEST_F(SpecMigrationTest, SqliteToSqliteMovesTheSpecsRowsRowForRow) {
  const std::string legacy = dir_.File("v1.db");
  MakeSqliteLegacy(legacy);
  // Direct copy (SQLite copies the SQL-only targets itself), then read and
  // write through ferry: the same rows either way.
  for (const bool direct : {true, false}) {
    SCOPED_TRACE(direct ? "direct copy" : "read + write");
    const std::string target = dir_.File(direct ? "v2.db" : "v2-rw.db");
    const std::string state = dir_.File(direct ? "state.db" : "state-rw.db");
    std::string out;
    ASSERT_EQ(
        Migrate("sqlite:" + legacy, "sqlite:" + target, state, Spec(), &out,
                direct ? std::vector<std::string>{} : std::vector<std::string>{"--no-direct-copy"}),
        0)
        << out;
    ExpectSqliteTarget(target);
    std::string verify;
    EXPECT_EQ(Verify(state, &verify), 0) << verify;
    EXPECT_NE(verify.find("ferry verify: equal"), std::string::npos) << verify;
  }
  // The legacy store's own tables are not in the new store.
  EXPECT_EQ(QueryInt(dir_.File("v2.db"),
                     "SELECT count(*) FROM sqlite_master WHERE name IN ('users', 'orders')"),
            0);
}

TEST_F(SpecMigrationTest, VerifyFindsARowTheSpecWouldNotWrite) {
  const std::string legacy = dir_.File("v1.db");
  MakeSqliteLegacy(legacy);
  std::string out;
  ASSERT_EQ(Migrate("sqlite:" + legacy, "sqlite:" + dir_.File("v2.db"), dir_.File("state.db"),
                    Spec(), &out),
            0)
      << out;
  ASSERT_TRUE(ExecSql(dir_.File("v2.db"),
                      "UPDATE accounts SET email = 'wrong' WHERE account_id = 3;"
                      "DELETE FROM order_lines WHERE order_id = 5;"
                      "INSERT INTO profiles (account_id, display_name) VALUES (4, 'even')"));
  std::string verify;
  EXPECT_EQ(Verify(dir_.File("state.db"), &verify), 7) << verify;
  EXPECT_NE(verify.find("legacy key (3): column email is 'user3@example.org' by the spec, "
                        "'wrong' in the new store"),
            std::string::npos)
      << verify;
  EXPECT_NE(verify.find("legacy key (5): its row (key (5)) is missing"), std::string::npos)
      << verify;
  EXPECT_NE(verify.find("key (4) is in the new store but no legacy row of the range gives it"),
            std::string::npos)
      << verify;
}

TEST_F(SpecMigrationTest, SqliteToPostgresql) {
  if (PgAdminUri().empty()) GTEST_SKIP() << "FERRY_TEST_PG_URI is not set";
  PgTestDb db;
  ASSERT_TRUE(db.ok());
  const std::string legacy = dir_.File("v1.db");
  MakeSqliteLegacy(legacy);
  std::string out;
  ASSERT_EQ(Migrate("sqlite:" + legacy, db.uri(), dir_.File("state.db"), Spec(), &out), 0) << out;
  ExpectPgTarget(db.uri());
  // The explicit create is the operator's own statement: its default is there.
  EXPECT_EQ(PgQueryText(db.uri(),
                        "SELECT column_default FROM information_schema.columns WHERE "
                        "table_name = 'profiles' AND column_name = 'tier'"),
            "'basic'::text");
  std::string verify;
  EXPECT_EQ(Verify(dir_.File("state.db"), &verify), 0) << verify;
}

TEST_F(SpecMigrationTest, PostgresqlToSqlite) {
  if (PgAdminUri().empty()) GTEST_SKIP() << "FERRY_TEST_PG_URI is not set";
  PgTestDb db;
  ASSERT_TRUE(db.ok());
  MakePgLegacy(db.uri());
  const std::string target = dir_.File("v2.db");
  std::string out;
  ASSERT_EQ(Migrate(db.uri(), "sqlite:" + target, dir_.File("state.db"), Spec(), &out), 0) << out;
  ExpectSqliteTarget(target);
  std::string verify;
  EXPECT_EQ(Verify(dir_.File("state.db"), &verify), 0) << verify;
}

// A Lua function that fails on exactly 3 rows.
const char* kLuaFailsOn3 = R"lua(
local bad = { [11] = true, [222] = true, [2999] = true }
return function(row)
  if bad[row.id] then
    error("bad v1 record in order " .. row.id)
  end
  local amount, quantity, currency = string.unpack("<i4 i2 s1", row.packed)
  if quantity == 0 then return nil end
  return { order_id = row.id, account_id = row.user_id, amount_cents = amount,
           quantity = quantity, currency = currency }
end
)lua";

TEST_F(SpecMigrationTest, ThreeRowsTheLuaFunctionFailsOnAreRejectedWithinMaxRejects) {
  // 11, 222 and 2999 are not test orders (their quantity is not 0).
  ASSERT_NE(Quantity(11), 0);
  ASSERT_NE(Quantity(222), 0);
  ASSERT_NE(Quantity(2999), 0);
  const std::string legacy = dir_.File("v1.db");
  MakeSqliteLegacy(legacy);

  // The default (--max-rejects 0): the migration fails naming a row, and
  // the version is not bumped.
  {
    const std::string target = dir_.File("v2-strict.db");
    std::string out;
    EXPECT_EQ(Migrate("sqlite:" + legacy, "sqlite:" + target, dir_.File("state-strict.db"),
                      Spec(kLuaFailsOn3), &out),
              1)
        << out;
    EXPECT_NE(out.find("more than --max-rejects 0"), std::string::npos) << out;
    EXPECT_NE(out.find("order_lines (11): lua:"), std::string::npos) << out;
    EXPECT_NE(out.find("bad v1 record in order 11"), std::string::npos) << out;
    EXPECT_NE(StoreVersion(target), 2);
  }

  // --max-rejects 5, with remote ferry-worker processes: complete, the
  // three rows in __ferry_rejects with their reasons, counted in status.
  Cluster c(dir_.path());
  MakeSqliteLegacy(c.legacy);
  WriteText(dir_.File("rejects.toml"), Spec(kLuaFailsOn3));
  auto coord = c.StartCoordinator({"--spec", dir_.File("rejects.toml"), "--max-rejects", "5",
                                   "--range-rows", "700", "--batch-rows", "150"});
  auto w1 = c.StartWorker("w1");
  auto w2 = c.StartWorker("w2");
  ASSERT_TRUE(c.WaitState("complete", 60000)) << c.Logs();
  const nlohmann::json st = c.Status();
  EXPECT_EQ(st.value("rows_rejected", -1), 3) << st.dump();
  EXPECT_NE(c.Command("metrics").find("ferry_rows_rejected_total 3"), std::string::npos);
  EXPECT_EQ(StoreVersion(c.target), 2);
  EXPECT_EQ(DumpTable(c.target, "__ferry_rejects"),
            "'order_lines'|'(11)'|'lua:4: bad v1 record in order 11'\n"
            "'order_lines'|'(222)'|'lua:4: bad v1 record in order 222'\n"
            "'order_lines'|'(2999)'|'lua:4: bad v1 record in order 2999'\n");
  const auto lines = SqliteCanonicalRows(c.target, "order_lines");
  EXPECT_TRUE(lines == ExpectedOrderLines({11, 222, 2999}))
      << lines.size() << " vs " << ExpectedOrderLines({11, 222, 2999}).size();
  coord->Signal(SIGTERM);
  EXPECT_TRUE(coord->Wait(15000));
  std::string verify;
  EXPECT_EQ(Verify(c.state, &verify), 0) << verify;
}

// Values the new store refuses: a batch that fails on them is split until
// only those rows are left out; the rest of the batch lands.
std::string RefusedSpec() {
  return R"toml(
[[table]]
target = "accounts"
source = "users"
select = "id, CASE WHEN id IN (17, 1500, 2998) THEN NULL ELSE email END AS email"
create = "CREATE TABLE accounts (id INTEGER PRIMARY KEY, email TEXT NOT NULL)"
)toml";
}

TEST_F(SpecMigrationTest, RowsTheNewStoreRefusesAreIsolatedAndRejected) {
  const std::string legacy = dir_.File("v1.db");
  MakeSqliteLegacy(legacy);
  const std::string target = dir_.File("v2.db");
  std::string out;
  ASSERT_EQ(Migrate("sqlite:" + legacy, "sqlite:" + target, dir_.File("state.db"), RefusedSpec(),
                    &out, {"--max-rejects", "3"}),
            0)
      << out;
  EXPECT_EQ(QueryText(target,
                      "SELECT group_concat(source_key || ' ' || reason, '; ') FROM "
                      "(SELECT * FROM __ferry_rejects ORDER BY source_key)"),
            "(1500) write row (1500) of table accounts: NOT NULL constraint failed: "
            "accounts.email; (17) write row (17) of table accounts: NOT NULL constraint failed: "
            "accounts.email; (2998) write row (2998) of table accounts: NOT NULL constraint "
            "failed: accounts.email");
  std::vector<std::string> want;
  for (int i = 1; i <= kUsers; ++i) {
    if (i != 17 && i != 1500 && i != 2998) want.push_back(fmt::format("i:{}|t:{}", i, Email(i)));
  }
  EXPECT_TRUE(SqliteCanonicalRows(target, "accounts") == Sorted(want));
  std::string verify;
  EXPECT_EQ(Verify(dir_.File("state.db"), &verify), 0) << verify;

  if (PgAdminUri().empty()) return;
  PgTestDb db;
  ASSERT_TRUE(db.ok());
  ASSERT_EQ(Migrate("sqlite:" + legacy, db.uri(), dir_.File("state-pg.db"), RefusedSpec(), &out,
                    {"--max-rejects", "3"}),
            0)
      << out;
  EXPECT_EQ(PgQueryText(db.uri(),
                        "SELECT string_agg(source_key, ' ' ORDER BY source_key) FROM "
                        "__ferry_rejects WHERE reason LIKE '%not-null constraint%'"),
            "(1500) (17) (2998)");
  EXPECT_TRUE(Sorted(PgCanonicalRows(db.uri(), "accounts")) == Sorted(want));
}

TEST_F(SpecMigrationTest, ARowWhoseTargetKeyWouldBeNullIsRejected) {
  // A NULL key would not be idempotent (SQLite gives an INTEGER PRIMARY KEY a
  // new rowid on every copy): the row is rejected instead.
  const std::string legacy = dir_.File("v1.db");
  MakeSqliteLegacy(legacy);
  const std::string target = dir_.File("v2.db");
  std::string out;
  ASSERT_EQ(Migrate("sqlite:" + legacy, "sqlite:" + target, dir_.File("state.db"), R"toml(
[[table]]
target = "ids"
source = "users"
select = "id, email"
create = "CREATE TABLE ids (user_id INTEGER PRIMARY KEY, email TEXT)"
lua = """return function(r)
  return { user_id = (r.id ~= 42) and r.id or nil, email = r.email }
end"""
)toml",
                    &out, {"--max-rejects", "1"}),
            0)
      << out;
  EXPECT_EQ(DumpTable(target, "__ferry_rejects"),
            "'ids'|'(42)'|'the target''s key column user_id is NULL (a key must come from the "
            "legacy row)'\n");
  EXPECT_EQ(QueryInt(target, "SELECT count(*) FROM ids"), kUsers - 1);
  EXPECT_EQ(QueryInt(target, "SELECT count(*) FROM ids WHERE user_id = 42"), 0);
}

// ---- refused specs ----

struct BadSpec {
  const char* name;
  const char* toml;
  const char* problem;  // a part of the one-line error
  bool pg_target = false;
};

const BadSpec kBadSpecs[] = {
    {"unknown key", "[[table]]\ntarget = \"accounts\"\nsoruce = \"users\"\n",
     "[[table]] #1 (target \"accounts\"): unknown key 'soruce' (did you mean 'source'?)"},
    {"missing target", "[[table]]\nsource = \"users\"\n", "[[table]] #1: missing 'target'"},
    {"two sources for one target",
     "[[table]]\ntarget = \"accounts\"\nsource = \"users\"\nselect = \"id\"\n"
     "[[table]]\ntarget = \"accounts\"\nsource = \"orders\"\n",
     "[[table]] #2 (target \"accounts\"): two sources for one target"},
    {"lua syntax error",
     "[[table]]\ntarget = \"orders\"\nlua = \"return function(row) return row end end\"\n",
     "[[table]] #1 (target \"orders\"): lua does not compile"},
    {"lua reaching for io",
     "[[table]]\ntarget = \"orders\"\nlua = \"return function(row) io.write('x') return row "
     "end\"\n",
     "[[table]] #1 (target \"orders\"): lua reaches for 'io'"},
    {"lua reaching for os",
     "[[table]]\ntarget = \"orders\"\nlua = \"return function(row) row.t = os.time() return row "
     "end\"\n",
     "[[table]] #1 (target \"orders\"): lua reaches for 'os'"},
    {"a select naming a column that does not exist",
     "[[table]]\ntarget = \"accounts\"\nsource = \"users\"\nselect = \"id, emial\"\n",
     "[[table]] #1 (target \"accounts\"): select: the legacy store refuses it as a query of table "
     "users: no such column: emial"},
    {"a create the new store does not parse",
     "[[table]]\ntarget = \"accounts\"\nsource = \"users\"\nselect = \"id, email\"\n"
     "create = \"CREATE TABLE accounts (id INTEGER PRIMARY KEY, email TEXT) WITHOUT ROWIDS\"\n",
     "[[table]] #1 (target \"accounts\"): create: the new store (SQLite) refuses it"},
    {"a create PostgreSQL does not parse",
     "[[table]]\ntarget = \"accounts\"\nsource = \"users\"\nselect = \"id, email\"\n"
     "create = \"CREATE TABLE accounts (id bigint PRIMARY KEY, email txt)\"\n",
     "[[table]] #1 (target \"accounts\"): create: the new store (PostgreSQL) refuses it: type "
     "\"txt\" does not exist",
     true},
};

TEST_F(SpecMigrationTest, BadSpecsAreOneLineExit2AndCreateNothing) {
  const std::string legacy = dir_.File("v1.db");
  MakeSqliteLegacy(legacy);
  struct stat before;
  ASSERT_EQ(::stat(legacy.c_str(), &before), 0);
  for (const BadSpec& b : kBadSpecs) {
    SCOPED_TRACE(b.name);
    std::unique_ptr<PgTestDb> db;
    if (b.pg_target) {
      if (PgAdminUri().empty()) continue;
      db = std::make_unique<PgTestDb>();
      ASSERT_TRUE(db->ok());
    }
    TempDir run;
    const std::string spec = run.File("bad.toml");
    WriteText(spec, b.toml);
    std::string out, err;
    const int code =
        RunCommandSplit({Bin("ferry-coordinator"), "--source", "sqlite:" + legacy, "--target",
                         db ? db->uri() : "sqlite:" + run.File("new.db"), "--state",
                         run.File("state.db"), "--spec", spec, "--local-workers", "1", "--listen",
                         "tcp://127.0.0.1:0", "--status-endpoint", "tcp://127.0.0.1:0"},
                        &out, &err, 60000);
    EXPECT_EQ(code, 2) << out << err;
    const std::vector<std::string> lines = NonEmptyLines(err);
    ASSERT_EQ(lines.size(), 1u) << err;
    EXPECT_EQ(lines[0].rfind("ferry-coordinator: error: " + spec + ":", 0), 0u) << lines[0];
    EXPECT_NE(lines[0].find(b.problem), std::string::npos) << lines[0];
    // Nothing created: no state file, no lock file, no new store.
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(run.path())) {
      files.push_back(e.path().filename().string());
    }
    EXPECT_EQ(files, std::vector<std::string>{"bad.toml"});
    if (db) {
      EXPECT_EQ(PgQueryInt(db->uri(),
                           "SELECT count(*) FROM pg_tables WHERE schemaname = "
                           "'public'"),
                0);
    }
  }
  struct stat after;
  ASSERT_EQ(::stat(legacy.c_str(), &after), 0);
  EXPECT_EQ(before.st_mtime, after.st_mtime);
  EXPECT_EQ(before.st_size, after.st_size);
}

TEST_F(SpecMigrationTest, ARestartWithAnotherSpecIsRefusedNamingTheDifference) {
  const std::string legacy = dir_.File("v1.db");
  MakeSqliteLegacy(legacy);
  const std::string target = "sqlite:" + dir_.File("v2.db");
  const std::string state = dir_.File("state.db");
  std::string out;
  ASSERT_EQ(Migrate("sqlite:" + legacy, target, state, Spec(), &out), 0) << out;

  std::string changed = Spec();
  const std::string from = "where = \"deleted_at IS NULL\"";
  changed.replace(changed.find(from), from.size(), "where = \"deleted_at IS NOT NULL\"");
  EXPECT_EQ(Migrate("sqlite:" + legacy, target, state, changed, &out), 2) << out;
  EXPECT_NE(out.find("is not the spec the state file was started with: table 'accounts': where "
                     "differs ('deleted_at IS NULL' vs 'deleted_at IS NOT NULL')"),
            std::string::npos)
      << out;

  // The same spec, laid out differently: the same canonical text, accepted
  // (and already done).
  std::string relaid = "# comments and another order\n" + Spec();
  EXPECT_EQ(Migrate("sqlite:" + legacy, target, state, relaid, &out), 0) << out;
  EXPECT_NE(out.find("already at version 2"), std::string::npos) << out;

  // Without the spec: refused too.
  std::string err;
  EXPECT_EQ(RunCommandSplit({Bin("ferry-coordinator"), "--source", "sqlite:" + legacy, "--target",
                             target, "--state", state, "--local-workers", "1"},
                            &out, &err, 60000),
            2)
      << out << err;
  EXPECT_NE(err.find("the state file was started with a migration spec"), std::string::npos) << err;
}

TEST_F(SpecMigrationTest, DryRunPrintsThePlanAndWritesNothing) {
  const std::string legacy = dir_.File("v1.db");
  MakeSqliteLegacy(legacy);
  struct stat before;
  ASSERT_EQ(::stat(legacy.c_str(), &before), 0);
  TempDir run;
  WriteText(run.File("spec.toml"), Spec());
  std::string out, err;
  ASSERT_EQ(RunCommandSplit({Bin("ferry-coordinator"), "--source", "sqlite:" + legacy, "--target",
                             "sqlite:" + run.File("v2.db"), "--state", run.File("state.db"),
                             "--spec", run.File("spec.toml"), "--range-rows", "1000", "--dry-run"},
                            &out, &err, 60000),
            0)
      << out << err;
  // Each target: its DDL, its range count, its first 3 rows in key order.
  EXPECT_NE(out.find("table accounts (from users"), std::string::npos) << out;
  EXPECT_NE(out.find("CREATE TABLE \"accounts\" (\"account_id\" INTEGER, \"email\" TEXT, "
                     "\"created_ms\" BIGINT, PRIMARY KEY (\"account_id\"));"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("  ranges: 3 "), std::string::npos) << out;
  EXPECT_NE(out.find("(1) -> account_id = 1, email = 'user1@example.org', created_ms = "
                     "1500000060000\n    (2) -> account_id = 2, email = 'user2@example.org', "
                     "created_ms = 1500000120000\n    (3) -> account_id = 3"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("CREATE TABLE profiles (account_id INTEGER PRIMARY KEY"), std::string::npos)
      << out;
  EXPECT_NE(out.find("(1) -> account_id = 1, display_name = 'User Number 1'\n    (3) -> "
                     "account_id = 3, display_name = 'User Number 3'\n    (5) ->"),
            std::string::npos)
      << out;
  // order 9 is a test order (quantity 0): the first 3 kept are 1, 2, 3.
  EXPECT_NE(out.find(fmt::format("(1) -> order_id = 1, account_id = {}, amount_cents = {}, "
                                 "quantity = 1, currency = 'USD'",
                                 UserOf(1), Amount(1))),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("  ranges: 6 "), std::string::npos) << out;  // 6000 orders
  // Nothing written anywhere.
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(run.path())) {
    files.push_back(e.path().filename().string());
  }
  EXPECT_EQ(files, std::vector<std::string>{"spec.toml"});
  struct stat after;
  ASSERT_EQ(::stat(legacy.c_str(), &after), 0);
  EXPECT_EQ(before.st_mtime, after.st_mtime);
  EXPECT_EQ(before.st_size, after.st_size);
  EXPECT_FALSE(fs::exists(legacy + "-wal"));
}

// ---- the state schema: version 1 files are upgraded in place ----

TEST(SpecStateSchemaTest, AVersion1StateFileGainsTheSpecColumns) {
  TempDir dir;
  const std::string path = dir.File("state.db");
  SystemClock clock;
  {
    auto s = SqliteStateStore::Open(path, &clock);
    ASSERT_TRUE(s.ok()) << s.status().message();
    JobMeta job;
    job.plan_id = "p1";
    RangeRecord r;
    r.id = 1;
    r.table = "t";
    ASSERT_TRUE((*s)->CreateJob(job, {r}).ok());
  }
  // Back to a version-1 file: without the columns version 2 added.
  ASSERT_TRUE(ExecSql(path,
                      "ALTER TABLE job DROP COLUMN spec_text; ALTER TABLE job DROP COLUMN "
                      "spec_digest; ALTER TABLE ranges DROP COLUMN rejected; PRAGMA "
                      "user_version = 1"));
  {
    auto reader = SqliteStateStore::OpenReadOnly(path);  // ferryctl verify on an old file
    ASSERT_TRUE(reader.ok());
    auto job = (*reader)->LoadJob();
    ASSERT_TRUE(job.ok()) << job.status().message();
    EXPECT_EQ((*job)->spec_text, "");
    auto ranges = (*reader)->LoadRanges();
    ASSERT_TRUE(ranges.ok()) << ranges.status().message();
    EXPECT_EQ((*ranges)[0].rejected, 0u);
  }
  auto s = SqliteStateStore::Open(path, &clock);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(QueryInt(path, "PRAGMA user_version"), kStateSchemaVersion);
  auto job = (*s)->LoadJob();
  ASSERT_TRUE(job.ok() && job->has_value());
  EXPECT_EQ((*job)->plan_id, "p1");
  JobMeta j = **job;
  j.spec_text = "[[table]]\ntarget = \"t\"\n";
  j.spec_digest = "abc";
  auto ranges = (*s)->LoadRanges();
  ASSERT_TRUE(ranges.ok());
  (*ranges)[0].rejected = 7;
  StateCommit c;
  c.job = &j;
  c.ranges.push_back(&(*ranges)[0]);
  ASSERT_TRUE((*s)->Commit(c).ok());
  s->reset();
  auto again = SqliteStateStore::Open(path, &clock);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*(*again)->LoadJob())->spec_digest, "abc");
  EXPECT_EQ((*(*again)->LoadRanges())[0].rejected, 7u);
}

TEST(SpecStateSchemaTest, AVersion1PostgresqlStateGainsTheSpecColumns) {
  if (PgAdminUri().empty()) GTEST_SKIP() << "FERRY_TEST_PG_URI is not set";
  PgTestDb db;
  ASSERT_TRUE(db.ok());
  SystemClock clock;
  {
    auto s = PgStateStore::Open(db.uri(), &clock, 10000);
    ASSERT_TRUE(s.ok()) << s.status().message();
    ASSERT_TRUE((*s)->TryLead(LeaderInfo{"me", "", "", 0}, 10000).ok());
    JobMeta job;
    job.plan_id = "p1";
    RangeRecord r;
    r.id = 1;
    r.table = "t";
    ASSERT_TRUE((*s)->CreateJob(job, {r}).ok());
    (*s)->ResignLead();
  }
  ASSERT_TRUE(PgExec(db.uri(),
                     "ALTER TABLE ferry_state.job DROP COLUMN spec_text, DROP COLUMN spec_digest;"
                     "ALTER TABLE ferry_state.ranges DROP COLUMN rejected;"
                     "UPDATE ferry_state.meta SET value = 1 WHERE key = 'schema_version'"));
  {
    auto reader = PgStateStore::OpenReadOnly(db.uri());
    ASSERT_TRUE(reader.ok());
    auto job = (*reader)->LoadJob();
    ASSERT_TRUE(job.ok()) << job.status().message();
    auto ranges = (*reader)->LoadRanges();
    ASSERT_TRUE(ranges.ok()) << ranges.status().message();
  }
  auto s = PgStateStore::Open(db.uri(), &clock, 10000);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(PgQueryInt(db.uri(),
                       "SELECT value FROM ferry_state.meta WHERE key = "
                       "'schema_version'"),
            kStateSchemaVersion);
  ASSERT_TRUE((*s)->TryLead(LeaderInfo{"me2", "", "", 0}, 10000).ok());
  auto job = (*s)->LoadJob();
  ASSERT_TRUE(job.ok() && job->has_value()) << job.status().message();
  JobMeta j = **job;
  j.spec_digest = "abc";
  auto ranges = (*s)->LoadRanges();
  ASSERT_TRUE(ranges.ok());
  (*ranges)[0].rejected = 7;
  StateCommit c;
  c.job = &j;
  c.ranges.push_back(&(*ranges)[0]);
  ASSERT_TRUE((*s)->Commit(c).ok());
  EXPECT_EQ((*(*s)->LoadJob())->spec_digest, "abc");
  EXPECT_EQ((*(*s)->LoadRanges())[0].rejected, 7u);
}

}  // namespace
}  // namespace ferry::testing
