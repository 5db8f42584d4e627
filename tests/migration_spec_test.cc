// The migration spec (spec/migration_spec.h): parsing, every refusal as one
// line naming the file, the entry and the problem, the canonical text and
// digest, the difference between two specs, the version check, a fuzz of
// the parser, and the worked example in deploy/examples/ run against a v1
// store built by its own SQL script.
#include "spec/migration_spec.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include "spec/lua_transform.h"
#include "spec/sql_text.h"

namespace ferry {
namespace {

const char* const kFile = "spec.toml";

// The refusal of `toml` (named spec.toml): checks it is one line,
// kInvalidArgument, starting with the file name.
std::string Refusal(const std::string& toml) {
  MigrationSpec spec;
  const Status st = ParseSpecText(toml, kFile, &spec);
  EXPECT_FALSE(st.ok()) << "accepted:\n" << toml;
  if (st.ok()) return "";
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_EQ(st.message().find('\n'), std::string::npos) << st.message();
  EXPECT_EQ(st.message().rfind(kFile, 0), 0u) << st.message();
  return st.message();
}

MigrationSpec Parsed(const std::string& toml) {
  MigrationSpec spec;
  const Status st = ParseSpecText(toml, kFile, &spec);
  EXPECT_TRUE(st.ok()) << st.message();
  return spec;
}

#define EXPECT_HAS(haystack, needle)                               \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) \
      << haystack << "\n  lacks: " << needle

TEST(MigrationSpecTest, TheDesignExampleParsesWithEveryKey) {
  const MigrationSpec spec = Parsed(R"T(
from_version = 1            # optional
to_version = 2

[[table]]
target = "accounts"
source = "users"
select = "id, lower(email) AS email"
where  = "deleted_at IS NULL"
create = "CREATE TABLE accounts (id INTEGER PRIMARY KEY, email TEXT)"
lua    = '''return function(row) row.email = row.email:upper() return row end'''
)T");
  EXPECT_EQ(spec.file, kFile);
  EXPECT_EQ(spec.from_version, std::optional<int64_t>(1));
  EXPECT_EQ(spec.to_version, std::optional<int64_t>(2));
  ASSERT_EQ(spec.tables.size(), 1u);
  const TableSpec& t = spec.tables[0];
  EXPECT_EQ(t.target, "accounts");
  EXPECT_EQ(t.source, "users");
  EXPECT_EQ(t.select, "id, lower(email) AS email");
  EXPECT_EQ(t.where, "deleted_at IS NULL");
  EXPECT_EQ(t.create, "CREATE TABLE accounts (id INTEGER PRIMARY KEY, email TEXT)");
  EXPECT_EQ(t.lua, "return function(row) row.email = row.email:upper() return row end");
  EXPECT_EQ(t.index, 1);
  EXPECT_EQ(t.line, 5);
  EXPECT_EQ(t.Label(), "[[table]] #1 (target \"accounts\")");
}

TEST(MigrationSpecTest, DefaultsAndTrimming) {
  const MigrationSpec spec = Parsed(R"T(
[[table]]
target = "a"
[[table]]
target = "b"
select = """
   x, y
"""
)T");
  EXPECT_FALSE(spec.from_version);
  EXPECT_FALSE(spec.to_version);
  ASSERT_EQ(spec.tables.size(), 2u);
  EXPECT_EQ(spec.tables[0].source, "a");
  EXPECT_EQ(spec.tables[0].select, "*");
  EXPECT_EQ(spec.tables[0].where, "");
  EXPECT_EQ(spec.tables[0].create, "");
  EXPECT_EQ(spec.tables[0].lua, "");
  EXPECT_EQ(spec.tables[1].select, "x, y");
  EXPECT_EQ(spec.tables[1].index, 2);
  EXPECT_EQ(spec.Find("b"), &spec.tables[1]);
  EXPECT_EQ(spec.Find("c"), nullptr);
}

// ---- refusals: one line, the file, the entry, the problem ----

TEST(MigrationSpecTest, UnknownKeys) {
  EXPECT_EQ(Refusal("to_version = 2\ntables = 1\n"),
            "spec.toml:2: unknown key 'tables' (did you mean 'table'?); a spec has "
            "from_version, to_version, table");
  EXPECT_EQ(Refusal(R"T([[table]]
target = "users"

[[table]]
target = "accounts"
selct = "id"
)T"),
            "spec.toml:6: [[table]] #2 (target \"accounts\"): unknown key 'selct' (did you mean "
            "'select'?); an entry takes target, source, select, where, create, lua");
  EXPECT_EQ(Refusal("[[table]]\ntarget = \"t\"\ncolor = \"red\"\n"),
            "spec.toml:3: [[table]] #1 (target \"t\"): unknown key 'color'; an entry takes "
            "target, source, select, where, create, lua");
  // The first unknown key in the file, not in key order.
  EXPECT_HAS(Refusal("[[table]]\ntarget = \"t\"\nzz = 1\naa = 2\n"), "unknown key 'zz'");
}

TEST(MigrationSpecTest, WrongValueTypes) {
  EXPECT_EQ(Refusal("[[table]]\ntarget = \"t\"\nselect = 5\n"),
            "spec.toml:3: [[table]] #1 (target \"t\"): 'select' must be a string, not an integer");
  EXPECT_EQ(Refusal("[[table]]\ntarget = \"t\"\nlua = ['x']\n"),
            "spec.toml:3: [[table]] #1 (target \"t\"): 'lua' must be a string, not an array");
  EXPECT_EQ(Refusal("[[table]]\ntarget = 7\n"),
            "spec.toml:2: [[table]] #1: 'target' must be a string, not an integer");
  EXPECT_EQ(Refusal("from_version = \"1\"\n[[table]]\ntarget = \"t\"\n"),
            "spec.toml:1: from_version must be an integer, not a string");
  EXPECT_EQ(Refusal("to_version = 2.0\n[[table]]\ntarget = \"t\"\n"),
            "spec.toml:1: to_version must be an integer, not a float");
  EXPECT_EQ(Refusal("table = \"users\"\n"),
            "spec.toml:1: 'table' must be [[table]] entries (an array of tables), not a string");
  EXPECT_EQ(Refusal("[table]\ntarget = \"t\"\n"),
            "spec.toml:1: 'table' must be [[table]] entries (an array of tables), not one "
            "[table]");
  EXPECT_EQ(Refusal("table = [{target = \"a\"}, 5]\n"),
            "spec.toml:1: [[table]] #2: must be a table, not an integer");
}

TEST(MigrationSpecTest, MissingOrEmptyTarget) {
  EXPECT_EQ(Refusal("[[table]]\ntarget = \"a\"\n\n[[table]]\nsource = \"users\"\n"),
            "spec.toml:4: [[table]] #2: missing 'target' (the name of the table in the new "
            "store this entry fills)");
  EXPECT_EQ(Refusal("[[table]]\ntarget = \"\"\n"), "spec.toml:2: [[table]] #1: empty target");
  EXPECT_EQ(Refusal("[[table]]\ntarget = \"t\"\nsource = \"\"\n"),
            "spec.toml:3: [[table]] #1 (target \"t\"): 'source' is empty; leave the key out for "
            "the default");
  EXPECT_EQ(Refusal("[[table]]\ntarget = \"t\"\nselect = \"  \"\n"),
            "spec.toml:3: [[table]] #1 (target \"t\"): 'select' is empty; leave the key out for "
            "the default");
  EXPECT_EQ(Refusal("[[table]]\ntarget = \" t\"\n"),
            "spec.toml:2: [[table]] #1 (target \" t\"): target ' t' has leading or trailing "
            "spaces");
  EXPECT_EQ(Refusal("[[table]]\ntarget = \"__ferry_meta\"\n"),
            "spec.toml:2: [[table]] #1 (target \"__ferry_meta\"): target '__ferry_meta' is "
            "reserved for ferry's own tables");
  EXPECT_HAS(Refusal("[[table]]\ntarget = \"t\"\nsource = \"__FERRY_rejects\"\n"),
             "source '__FERRY_rejects' is reserved");
}

TEST(MigrationSpecTest, TwoSourcesForOneTarget) {
  EXPECT_EQ(Refusal(R"T([[table]]
target = "accounts"
source = "users"

[[table]]
target = "orders"

[[table]]
target = "Accounts"
source = "old_users"
)T"),
            "spec.toml:9: [[table]] #3 (target \"Accounts\"): two sources for one target: "
            "[[table]] #1 (target \"accounts\") also fills \"accounts\"");
  // One source feeding two targets is fine.
  EXPECT_EQ(Parsed("[[table]]\ntarget = \"a\"\nsource = \"u\"\n[[table]]\ntarget = \"b\"\n"
                   "source = \"u\"\n")
                .tables.size(),
            2u);
}

TEST(MigrationSpecTest, Versions) {
  EXPECT_EQ(Refusal("from_version = 2\nto_version = 2\n[[table]]\ntarget = \"t\"\n"),
            "spec.toml:1: from_version (2) must be below to_version (2)");
  EXPECT_EQ(Refusal("from_version = 3\nto_version = 2\n[[table]]\ntarget = \"t\"\n"),
            "spec.toml:1: from_version (3) must be below to_version (2)");
  EXPECT_EQ(Refusal("from_version = -1\n[[table]]\ntarget = \"t\"\n"),
            "spec.toml:1: from_version must not be negative");
  const MigrationSpec only_to = Parsed("to_version = 5\n[[table]]\ntarget = \"t\"\n");
  EXPECT_FALSE(only_to.from_version);
  EXPECT_EQ(only_to.to_version, std::optional<int64_t>(5));
}

TEST(MigrationSpecTest, NoEntriesAndBadToml) {
  EXPECT_EQ(Refusal("from_version = 1\n"),
            "spec.toml: no [[table]] entries: list each table of the new store as a [[table]] "
            "entry with target = \"name\"");
  EXPECT_HAS(Refusal("table = []\n"), "no [[table]] entries");
  EXPECT_HAS(Refusal(""), "no [[table]] entries");
  const std::string bad = Refusal("[[table]]\ntarget = \"t\nselect = 1\n");
  EXPECT_HAS(bad, "spec.toml:2:");
  EXPECT_HAS(bad, "not valid TOML");
  EXPECT_HAS(Refusal("[[table]]\ntarget = \"a\"\ntarget = \"b\"\n"), "not valid TOML");
  EXPECT_HAS(Refusal("\xff\xfe[[table]]\n"), "not valid TOML");
}

TEST(MigrationSpecTest, SqlFragmentsThatWouldChangeTheStatement) {
  EXPECT_EQ(Refusal("[[table]]\ntarget = \"t\"\nwhere = \"x = 1; DROP TABLE t\"\n"),
            "spec.toml:3: [[table]] #1 (target \"t\"): where holds a ';': it must be one "
            "expression, not statements");
  EXPECT_EQ(Refusal("[[table]]\ntarget = \"t\"\nselect = \"id, (a + b AS c\"\n"),
            "spec.toml:3: [[table]] #1 (target \"t\"): select has an unclosed '('");
  EXPECT_EQ(Refusal("[[table]]\ntarget = \"t\"\nwhere = \"name = 'O''Brien\"\n"),
            "spec.toml:3: [[table]] #1 (target \"t\"): where has an unterminated ' quote");
  EXPECT_EQ(Refusal("[[table]]\ntarget = \"t\"\nwhere = \"a = 1) OR (1 = 1\"\n"),
            "spec.toml:3: [[table]] #1 (target \"t\"): where has a ')' without its '('");
  // Quotes, comments and dollar quotes are understood.
  Parsed(R"T([[table]]
target = "t"
select = "id, 'a;b' AS s, \"odd)name\", $$x;($$ AS d"
where = '''
kind <> 'x)' -- a comment; with ( in it
AND /* ; */ id > 0'''
)T");
}

TEST(MigrationSpecTest, CreateMustBeACreateTableForTheTarget) {
  auto create_refusal = [](const std::string& create) {
    return Refusal("[[table]]\ntarget = \"accounts\"\ncreate = '''" + create + "'''\n");
  };
  const std::string entry = "spec.toml:3: [[table]] #1 (target \"accounts\"): create ";
  EXPECT_EQ(create_refusal("CREATE INDEX i ON accounts(id)"),
            entry + "is not a CREATE TABLE statement (it starts with 'CREATE INDEX')");
  EXPECT_EQ(create_refusal("INSERT INTO accounts VALUES (1)"),
            entry + "is not a CREATE TABLE statement (it starts with 'INSERT')");
  EXPECT_EQ(create_refusal("CREATE TABLE users (id INTEGER PRIMARY KEY)"),
            entry + "makes table 'users', not the target 'accounts'");
  EXPECT_EQ(create_refusal("CREATE TABLE public.accounts (id INTEGER PRIMARY KEY)"),
            entry +
                "names the table with a schema ('public.accounts'); leave the schema out: the "
                "table goes into the new store's default schema");
  EXPECT_EQ(create_refusal("CREATE TEMP TABLE accounts (id INTEGER)"),
            entry + "makes a temporary table, which vanishes with its connection; leave out TEMP");
  EXPECT_EQ(create_refusal("CREATE TABLE accounts AS SELECT * FROM users"),
            entry +
                "is CREATE TABLE ... AS SELECT; declare the columns: CREATE TABLE accounts "
                "(...)");
  EXPECT_EQ(create_refusal("CREATE TABLE accounts (id INTEGER); DROP TABLE users"),
            entry + "holds more than one statement");
  EXPECT_EQ(create_refusal("CREATE TABLE accounts (id INTEGER"), entry + "has an unclosed '('");
  EXPECT_EQ(create_refusal("CREATE TABLE accounts ()"), entry + "has an empty column list");
  EXPECT_EQ(create_refusal("CREATE TABLE accounts"),
            entry + "has no column list: write CREATE TABLE accounts (column definitions)");
  EXPECT_EQ(create_refusal("CREATE TABLE \"Accounts\" (id INTEGER)"),
            entry + "makes table 'Accounts', not the target 'accounts'");
  // Found by fuzz_spec: a quoted token holding line breaks, quoted in the
  // error, still makes a one-line error.
  EXPECT_EQ(create_refusal("CREATE TABLE accounts 'a\nb\tc'"),
            entry +
                "has no column list after the table name (found 'a b c'): write CREATE TABLE "
                "accounts (...)");
  // Accepted forms: any case, IF NOT EXISTS, a quoted name, table options,
  // comments, a trailing ';'.
  for (const std::string ok : {
           "create table ACCOUNTS (id integer primary key, email text)",
           "CREATE TABLE IF NOT EXISTS accounts (id INTEGER PRIMARY KEY) WITHOUT ROWID;",
           "-- v2 accounts\nCREATE TABLE \"accounts\" (\n  id bigint PRIMARY KEY, -- key\n  "
           "note text DEFAULT ')' CHECK (length(note) < 10)\n) STRICT ;  ",
           "CREATE TABLE [accounts] (id INTEGER, PRIMARY KEY (id)) WITH (fillfactor = 70)",
       }) {
    SCOPED_TRACE(ok);
    EXPECT_TRUE(CheckCreateTable(ok, "accounts").ok())
        << CheckCreateTable(ok, "accounts").message();
  }
}

TEST(MigrationSpecTest, LuaProblems) {
  const std::string entry = "spec.toml:4: [[table]] #1 (target \"t\"): ";
  auto lua_refusal = [](const std::string& lua) {
    return Refusal("[[table]]\ntarget = \"t\"\nselect = \"id\"\nlua = '''" + lua + "'''\n");
  };
  EXPECT_EQ(lua_refusal("return function(row) return row"),
            entry + "lua does not compile: lua:1: 'end' expected near <eof>");
  EXPECT_EQ(lua_refusal("return {}"),
            entry +
                "lua does not return a function (it returns a table): end the chunk with "
                "`return function(row) ... end`");
  EXPECT_EQ(lua_refusal("return function(row) io.write(row.id) return row end"),
            entry +
                "lua reaches for 'io' (lua:1), which the sandbox does not provide (no io, "
                "os, require, load, dofile, loadfile, debug, package, coroutine, "
                "collectgarbage, print: a transform computes a row from a row)");
  EXPECT_HAS(lua_refusal("return function(row) return { t = os.time() } end"),
             entry + "lua reaches for 'os' (lua:1)");
  EXPECT_HAS(lua_refusal("local f = require('socket')\nreturn function(row) return row end"),
             entry + "lua reaches for 'require' (lua:1)");
  EXPECT_HAS(lua_refusal("return function(row) return load('return 1')() end"),
             entry + "lua reaches for 'load'");
  EXPECT_HAS(lua_refusal("return function(row) return { r = math.random() } end"),
             entry + "lua reaches for math.random (lua:1)");
  EXPECT_EQ(lua_refusal("error('no')"), entry + "lua failed while its chunk ran: lua:1: no");
  // The line is the line of the `lua` key even when the chunk spans lines.
  EXPECT_HAS(Refusal("[[table]]\ntarget = \"t\"\nlua = '''\nreturn function(row)\n"
                     "  return { x = dofile('x') }\nend\n'''\n"),
             "spec.toml:3: [[table]] #1 (target \"t\"): lua reaches for 'dofile' (lua:2)");
}

TEST(MigrationSpecTest, SpecErrorNamesTheEntry) {
  const MigrationSpec spec = Parsed("\n[[table]]\ntarget = \"accounts\"\nselect = \"id, nope\"\n");
  const Status st = SpecError(spec, spec.tables[0],
                              "select names a column 'nope' that users "
                              "does not have");
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_EQ(st.message(),
            "spec.toml:2: [[table]] #1 (target \"accounts\"): select names a column 'nope' that "
            "users does not have");
}

// ---- canonical text, digest, difference ----

const char* const kSpecA = R"T(
from_version = 1
to_version = 2

[[table]]
target = "accounts"
source = "users"
select = "id, email"

[[table]]
target = "orders"
lua = '''
return function(row)
  return row
end
'''
)T";

// The same spec, laid out differently: entry and key order, defaults
// spelt out, comments, quoting.
const char* const kSpecALayout = R"T(# the same
[[table]]
lua = """
return function(row)
  return row
end
"""
target = 'orders'
select = "*"
source = "orders"   # the default, spelt out

[[table]]
select = '  id, email  '
source = "users"
target = "accounts"

[[table]]
target = "zz_placeholder"
)T";

TEST(MigrationSpecTest, CanonicalTextIgnoresLayoutAndRoundTrips) {
  const MigrationSpec a = Parsed(kSpecA);
  std::string layout = kSpecALayout;
  layout = layout.substr(0, layout.find("\n[[table]]\ntarget = \"zz_placeholder\""));
  layout = "to_version = 2\nfrom_version = 1\n" + layout;
  const MigrationSpec b = Parsed(layout);
  EXPECT_EQ(a.CanonicalText(), b.CanonicalText());
  EXPECT_EQ(a.Digest(), b.Digest());
  EXPECT_EQ(a.Digest().size(), 32u);
  EXPECT_EQ(SpecDifference(a, b), "");
  EXPECT_EQ(a.CanonicalText(), R"T(from_version = 1
to_version = 2

[[table]]
target = "accounts"
source = "users"
select = "id, email"

[[table]]
target = "orders"
source = "orders"
select = "*"
lua = '''
return function(row)
  return row
end'''
)T");
  // Parsing the canonical text gives the same spec again.
  const MigrationSpec again = Parsed(a.CanonicalText());
  EXPECT_EQ(again.CanonicalText(), a.CanonicalText());
  EXPECT_EQ(again.tables.size(), 2u);
  EXPECT_EQ(again.tables[1], a.tables[1]);
}

TEST(MigrationSpecTest, CanonicalTextQuotesAnythingSafely) {
  MigrationSpec spec;
  spec.file = kFile;
  TableSpec t;
  t.target = "we\"ird\\name";
  t.source = "tab\there";
  t.select = "'''quotes''', x";
  t.where = "a = 'x'\nAND b = '\x01'";  // a control character: no literal string
  t.create = "CREATE TABLE \"we\"\"ird\\name\" (\n  id INTEGER\n)";
  t.lua = "return function(row)\n  return row -- ends with a quote'\nend'";
  spec.tables.push_back(t);
  MigrationSpec back;
  // Validation would refuse the Lua above (it does not compile): compare
  // the TOML round trip of the text itself.
  const std::string text = spec.CanonicalText();
  const Status st = ParseSpecText(text, kFile, &back);
  EXPECT_HAS(st.message(), "lua does not compile");
  spec.tables[0].lua = "return function(row) return row end -- '";
  spec.tables[0].create = "CREATE TABLE \"we\"\"ird\\name\" (\n  id INTEGER\n)";
  spec.tables[0].target = "we\"ird\\name";
  ASSERT_TRUE(ParseSpecText(spec.CanonicalText(), kFile, &back).ok())
      << ParseSpecText(spec.CanonicalText(), kFile, &back).message() << "\n"
      << spec.CanonicalText();
  ASSERT_EQ(back.tables.size(), 1u);
  EXPECT_EQ(back.tables[0], spec.tables[0]);
}

TEST(MigrationSpecTest, DigestChangesWithAnyValue) {
  const MigrationSpec a = Parsed(kSpecA);
  std::set<std::string> digests = {a.Digest()};
  for (const std::string& changed :
       {std::string(kSpecA).replace(std::string(kSpecA).find("id, email"), 9, "id,email"),
        std::string(kSpecA).replace(std::string(kSpecA).find("to_version = 2"), 14,
                                    "to_version = 3"),
        std::string(kSpecA) + "\n[[table]]\ntarget = \"more\"\n",
        std::string(kSpecA).replace(std::string(kSpecA).find("return row"), 10, "return nil")}) {
    digests.insert(Parsed(changed).Digest());
  }
  EXPECT_EQ(digests.size(), 5u);
}

TEST(MigrationSpecTest, SpecDifferenceNamesTheFirstDifference) {
  const MigrationSpec recorded = Parsed(R"T([[table]]
target = "accounts"
source = "users"
select = "id, email"
)T");
  const MigrationSpec given = Parsed(R"T([[table]]
target = "accounts"
source = "users"
select = "id, lower(email) AS email"
)T");
  EXPECT_EQ(SpecDifference(recorded, given),
            "table 'accounts': select differs ('id, email' vs 'id, lower(email) AS email')");
  const MigrationSpec more = Parsed(R"T(to_version = 3
[[table]]
target = "accounts"
source = "old_users"
select = "id, lower(email) AS email"
where = "x > 0"
[[table]]
target = "extra"
)T");
  EXPECT_EQ(SpecDifference(recorded, more),
            "to_version differs (none vs 3) (and 4 more differences)");
  EXPECT_EQ(SpecDifference(more, recorded),
            "to_version differs (3 vs none) (and 4 more differences)");
  const MigrationSpec fewer = Parsed("[[table]]\ntarget = \"other\"\n");
  EXPECT_EQ(SpecDifference(recorded, fewer),
            "table 'accounts' is in the recorded spec but not in this one (and 1 more "
            "difference)");
  // Multi-line values: the first line that differs.
  const MigrationSpec lua1 = Parsed(
      "[[table]]\ntarget = \"t\"\nlua = '''\nreturn function(row)\n  row.a = 1\n  return "
      "row\nend'''\n");
  const MigrationSpec lua2 = Parsed(
      "[[table]]\ntarget = \"t\"\nlua = '''\nreturn function(row)\n  row.a = 2\n  return "
      "row\nend'''\n");
  EXPECT_EQ(SpecDifference(lua1, lua2),
            "table 't': lua differs (line 2: '  row.a = 1' vs '  row.a = 2')");
  const std::string diff = SpecDifference(lua1, Parsed("[[table]]\ntarget = \"t\"\n"));
  EXPECT_EQ(diff, "table 't': lua differs (line 1: 'return function(row)' vs '')");
  EXPECT_EQ(diff.find('\n'), std::string::npos);
}

TEST(MigrationSpecTest, CheckSpecVersions) {
  const MigrationSpec both =
      Parsed("from_version = 4\nto_version = 5\n[[table]]\ntarget = \"t\"\n");
  const MigrationSpec none = Parsed("[[table]]\ntarget = \"t\"\n");
  auto pair = [](Result<VersionPair> r) {
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? std::make_pair(r->from, r->to) : std::make_pair(int64_t{-1}, int64_t{-1});
  };
  EXPECT_EQ(pair(CheckSpecVersions(both, std::nullopt, std::nullopt)), std::make_pair(4L, 5L));
  EXPECT_EQ(pair(CheckSpecVersions(both, 4, 5)), std::make_pair(4L, 5L));
  EXPECT_EQ(pair(CheckSpecVersions(both, std::nullopt, 5)), std::make_pair(4L, 5L));
  EXPECT_EQ(pair(CheckSpecVersions(none, std::nullopt, std::nullopt)), std::make_pair(1L, 2L));
  EXPECT_EQ(pair(CheckSpecVersions(none, 7, 9)), std::make_pair(7L, 9L));
  const Result<VersionPair> conflict = CheckSpecVersions(both, 3, 5);
  ASSERT_FALSE(conflict.ok());
  EXPECT_EQ(conflict.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(conflict.status().message(),
            "--from-version 3 disagrees with from_version = 4 in the spec spec.toml; make them "
            "agree or leave the flag out");
  EXPECT_HAS(CheckSpecVersions(both, 4, 6).status().message(),
             "--to-version 6 disagrees with to_version = 5");
  // A flag and the spec's other version that do not fit together.
  const MigrationSpec to_only = Parsed("to_version = 2\n[[table]]\ntarget = \"t\"\n");
  EXPECT_HAS(CheckSpecVersions(to_only, 3, std::nullopt).status().message(),
             "the migration would go from version 3 to version 2");
}

TEST(MigrationSpecTest, LoadSpecFileNamesTheFile) {
  const Result<MigrationSpec> missing = LoadSpecFile("/nonexistent/dir/v1-to-v2.toml");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(missing.status().message(),
            "/nonexistent/dir/v1-to-v2.toml: cannot read the spec file: No such file or "
            "directory");
}

// ---- fuzz: the parser never crashes ----

TEST(MigrationSpecTest, FuzzedInputsNeverCrashAndValidSpecsRoundTrip) {
  const std::vector<std::string> seeds = {
      kSpecA,
      kSpecALayout,
      "from_version = 1\nto_version = 2\n[[table]]\ntarget = \"a\"\nwhere = \"(x)\"\n"
      "create = \"CREATE TABLE a (id INTEGER)\"\n",
      "[[table]]\ntarget = \"t\"\nlua = 'return function(r) while true do end end'\n",
      "table = [{target = \"x\", select = \"'a'\"}]\n",
  };
  std::mt19937_64 rng(20240615);
  const std::string alphabet = "[]{}=\"'\\\n #.,0123456789abcdeftargetsourcewherelua()-;$\x00\xff";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int parsed = 0, refused = 0;
  for (int i = 0; i < 30000 && std::chrono::steady_clock::now() < deadline; ++i) {
    std::string s = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = s.empty() ? 0 : rng() % s.size();
      switch (rng() % 5) {
        case 0:  // flip a byte
          if (!s.empty()) s[pos] = static_cast<char>(rng());
          break;
        case 1:  // insert a character that matters to TOML, SQL or Lua
          s.insert(pos, 1, alphabet[rng() % alphabet.size()]);
          break;
        case 2:  // delete a span
          s.erase(pos, rng() % 8);
          break;
        case 3:  // duplicate a span
          s.insert(pos, s.substr(rng() % (s.size() + 1), rng() % 40));
          break;
        default:  // truncate
          s.resize(pos);
      }
    }
    if (i % 500 == 0) {  // pure noise now and then
      s.clear();
      for (int k = 0; k < 200; ++k) s += static_cast<char>(rng());
    }
    MigrationSpec spec;
    const Status st = ParseSpecText(s, kFile, &spec);
    if (st.ok()) {
      ++parsed;
      MigrationSpec again;
      ASSERT_TRUE(ParseSpecText(spec.CanonicalText(), kFile, &again).ok()) << "input:\n"
                                                                           << s << "\ncanonical:\n"
                                                                           << spec.CanonicalText();
      ASSERT_EQ(again.CanonicalText(), spec.CanonicalText());
      ASSERT_EQ(SpecDifference(spec, again), "");
    } else {
      ++refused;
      ASSERT_EQ(st.code(), Code::kInvalidArgument);
      ASSERT_EQ(st.message().find('\n'), std::string::npos) << st.message();
      ASSERT_EQ(st.message().rfind(kFile, 0), 0u) << st.message();
    }
  }
  std::printf("fuzz: %d inputs parsed, %d refused\n", parsed, refused);
  EXPECT_GT(parsed, 100);
  EXPECT_GT(refused, 100);
}

// ---- the worked example: deploy/examples/ ----

struct Db {
  sqlite3* db = nullptr;
  Db() { sqlite3_open(":memory:", &db); }
  ~Db() { sqlite3_close(db); }
  std::string Exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) == SQLITE_OK) return "";
    std::string msg = err ? err : "?";
    sqlite3_free(err);
    return msg;
  }
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The rows of `sql` as Values (SQLite's storage classes).
std::vector<Row> Query(Db& db, const std::string& sql) {
  sqlite3_stmt* st = nullptr;
  std::vector<Row> rows;
  if (sqlite3_prepare_v2(db.db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << sqlite3_errmsg(db.db) << "\n" << sql;
    return rows;
  }
  while (sqlite3_step(st) == SQLITE_ROW) {
    Row r;
    for (int c = 0; c < sqlite3_column_count(st); ++c) {
      switch (sqlite3_column_type(st, c)) {
        case SQLITE_INTEGER:
          r.emplace_back(static_cast<int64_t>(sqlite3_column_int64(st, c)));
          break;
        case SQLITE_FLOAT:
          r.emplace_back(sqlite3_column_double(st, c));
          break;
        case SQLITE_TEXT:
          r.emplace_back(Text{std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, c)),
                                          sqlite3_column_bytes(st, c))});
          break;
        case SQLITE_BLOB:
          r.emplace_back(Blob{std::string(static_cast<const char*>(sqlite3_column_blob(st, c)),
                                          sqlite3_column_bytes(st, c))});
          break;
        default:
          r.emplace_back(Null{});
      }
    }
    rows.push_back(std::move(r));
  }
  sqlite3_finalize(st);
  return rows;
}

TEST(MigrationSpecExampleTest, TheExampleSpecMovesTheExampleStoreAsDocumented) {
  const std::string dir = std::string(FERRY_SOURCE_DIR) + "/deploy/examples/";
  const Result<MigrationSpec> loaded = LoadSpecFile(dir + "v1-to-v2.toml");
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  const MigrationSpec& spec = *loaded;
  EXPECT_EQ(spec.from_version, std::optional<int64_t>(1));
  EXPECT_EQ(spec.to_version, std::optional<int64_t>(2));
  ASSERT_EQ(spec.tables.size(), 3u);
  const TableSpec* accounts = spec.Find("accounts");
  const TableSpec* profiles = spec.Find("profiles");
  const TableSpec* orders = spec.Find("orders");
  ASSERT_TRUE(accounts && profiles && orders);
  EXPECT_EQ(accounts->source, "users");
  EXPECT_EQ(profiles->source, "users");
  EXPECT_EQ(orders->source, "orders");

  // The v1 store, made by the example's own script (10000 users).
  Db db;
  ASSERT_EQ(db.Exec(ReadFile(dir + "make-v1-store.sql")), "");
  const int64_t kUsers = 10000;

  // The SQL parts, run by SQLite itself as a legacy store would, against
  // the expected rows computed from the generator's formulas.
  auto projected = [&](const TableSpec& t) {
    return Query(
        db, "SELECT " + t.select + " FROM " + t.source + " WHERE (\n" + t.where + "\n) ORDER BY 1");
  };
  const std::vector<Row> acc = projected(*accounts);
  std::vector<Row> want_acc, want_prof;
  const char* const kCountry[] = {"ZZ", "DE", "FR", "US", "JP"};
  for (int64_t i = 1; i <= kUsers; ++i) {
    if (i % 10 == 0) continue;  // soft-deleted
    want_acc.push_back(
        {i, Text{"user" + std::to_string(i) + "@example.org"}, int64_t{1500000000 + i * 60}});
    if (i % 7 == 0) continue;  // no name
    want_prof.push_back({i, Text{"User Number " + std::to_string(i)}, Text{kCountry[i % 5]}});
  }
  EXPECT_EQ(acc.size(), 9000u);
  EXPECT_TRUE(acc == want_acc);
  EXPECT_TRUE(projected(*profiles) == want_prof);

  // The explicit create statements are SQL SQLite accepts as they are.
  Db target;
  EXPECT_EQ(target.Exec(profiles->create), "");
  EXPECT_EQ(target.Exec(orders->create), "");

  // The Lua function unpacks every v1 record and drops the test orders.
  auto lua = LuaTransform::Create(orders->lua, "lua");
  ASSERT_TRUE(lua.ok()) << lua.status().message();
  ASSERT_TRUE((*lua)
                  ->Bind({"id", "user_id", "packed"}, {{"order_id", StringAsForType("INTEGER")},
                                                       {"account_id", StringAsForType("INTEGER")},
                                                       {"amount_cents", StringAsForType("INTEGER")},
                                                       {"quantity", StringAsForType("INTEGER")},
                                                       {"currency", StringAsForType("TEXT")}})
                  .ok());
  struct Record {
    int64_t amount, quantity;
    const char* currency;
  };
  const Record kRecords[] = {{1000, 1, "EUR"}, {2599, 2, "EUR"},       {19900, 1, "USD"},
                             {450, 12, "GBP"}, {1500, 0, "EUR"},       {123456, 3, "JPY"},
                             {-500, 1, "EUR"}, {100000000, 300, "CHF"}};
  const std::vector<Row> v1 = Query(db, "SELECT * FROM " + orders->source + " ORDER BY id");
  ASSERT_EQ(v1.size(), 20000u);
  size_t kept = 0;
  for (const Row& in : v1) {
    const int64_t id = std::get<int64_t>(in[0]);
    const Record& r = kRecords[id % 8];
    auto out = (*lua)->Apply(in);
    ASSERT_TRUE(out.ok()) << out.status().message();
    if (r.quantity == 0) {
      ASSERT_FALSE(out->has_value()) << "order " << id;
      continue;
    }
    ++kept;
    ASSERT_TRUE(out->has_value()) << "order " << id;
    const Row want = {id, int64_t{1 + (id * 7919) % kUsers}, r.amount, r.quantity,
                      Text{r.currency}};
    ASSERT_EQ(**out, want) << "order " << id;
  }
  EXPECT_EQ(kept, 17500u);
}

}  // namespace
}  // namespace ferry
