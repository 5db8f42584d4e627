#include "tests/test_util.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <utility>

namespace ferry::testing {

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "ferry-test-XXXXXX").string();
  char* p = mkdtemp(tmpl.data());
  if (!p) std::abort();
  path_ = p;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::permissions(path_, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::add, ec);
  std::filesystem::remove_all(path_, ec);
}

namespace {

struct Conn {
  sqlite3* db = nullptr;
  explicit Conn(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
        SQLITE_OK) {
      ADD_FAILURE() << "cannot open " << path;
    }
    sqlite3_busy_timeout(db, 10000);
  }
  ~Conn() { sqlite3_close_v2(db); }
};

}  // namespace

bool ExecSql(const std::string& path, const std::string& sql) {
  Conn c(path);
  char* err = nullptr;
  if (sqlite3_exec(c.db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    ADD_FAILURE() << "SQL failed on " << path << ": " << (err ? err : "?") << "\n" << sql;
    sqlite3_free(err);
    return false;
  }
  return true;
}

int64_t QueryInt(const std::string& path, const std::string& sql, int64_t fallback) {
  Conn c(path);
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(c.db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << "prepare failed: " << sqlite3_errmsg(c.db) << ": " << sql;
    return fallback;
  }
  int64_t v = fallback;
  if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) {
    v = sqlite3_column_int64(s, 0);
  }
  sqlite3_finalize(s);
  return v;
}

std::string QueryText(const std::string& path, const std::string& sql) {
  Conn c(path);
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(c.db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) return "";
  std::string v;
  if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) {
    v = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
  }
  sqlite3_finalize(s);
  return v;
}

namespace {

std::vector<std::string> UserTables(sqlite3* db, const char* schema) {
  std::vector<std::string> out;
  std::string sql = fmt::format(
      "SELECT name FROM {}.sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' AND "
      "name <> '__ferry_meta' ORDER BY name",
      schema);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr);
  while (sqlite3_step(s) == SQLITE_ROW) {
    out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
  }
  sqlite3_finalize(s);
  return out;
}

int64_t Scalar(sqlite3* db, const std::string& sql, std::string* err) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
    *err = fmt::format("{}: {}", sql, sqlite3_errmsg(db));
    return -1;
  }
  int64_t v = -1;
  if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  return v;
}

std::string QuoteName(const std::string& name) {
  std::string out = "\"";
  for (char ch : name) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return out + "\"";
}

// True if the table is keyed by rowid: it has a rowid and no declared
// primary key. (A rowid table with a declared non-integer primary key, like
// `k BLOB PRIMARY KEY`, is keyed by that key; its rowid is internal.)
bool HasRowid(sqlite3* db, const char* schema, const std::string& table) {
  std::string sql = fmt::format("SELECT rowid FROM {}.{} LIMIT 0", schema, QuoteName(table));
  sqlite3_stmt* s = nullptr;
  bool ok = sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK;
  sqlite3_finalize(s);
  if (!ok) return false;
  std::string err;
  sql = fmt::format(
      "SELECT count(*) FROM pragma_table_info('{}', '{}') WHERE pk > 0",
      [&] {
        std::string q;
        for (char ch : table) q += ch == '\'' ? std::string("''") : std::string(1, ch);
        return q;
      }(),
      schema);
  return Scalar(db, sql, &err) == 0 && err.empty();
}

}  // namespace

std::string CompareSqliteStores(const std::string& a, const std::string& b) {
  Conn c(a);
  std::string attach = fmt::format("ATTACH DATABASE '{}' AS other", b);
  if (sqlite3_exec(c.db, attach.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
    return "cannot attach " + b;
  }
  auto ta = UserTables(c.db, "main");
  auto tb = UserTables(c.db, "other");
  if (ta != tb) {
    return fmt::format("tables differ: [{}] vs [{}]", fmt::join(ta, ","), fmt::join(tb, ","));
  }
  for (const std::string& t : ta) {
    std::string err;
    // Tables without a declared primary key are keyed by rowid: compare it too.
    std::string cols = HasRowid(c.db, "main", t) ? "rowid AS __rid, *" : "*";
    int64_t na = Scalar(c.db, fmt::format("SELECT count(*) FROM main.{}", QuoteName(t)), &err);
    int64_t nb = Scalar(c.db, fmt::format("SELECT count(*) FROM other.{}", QuoteName(t)), &err);
    if (!err.empty()) return err;
    if (na != nb) return fmt::format("table {}: {} rows vs {} rows", t, na, nb);
    for (auto [x, y] : {std::pair<const char*, const char*>{"main", "other"}, {"other", "main"}}) {
      int64_t missing = Scalar(
          c.db,
          fmt::format("SELECT count(*) FROM (SELECT {} FROM {}.{} EXCEPT SELECT {} FROM {}.{})",
                      cols, x, QuoteName(t), cols, y, QuoteName(t)),
          &err);
      if (!err.empty()) return err;
      if (missing != 0)
        return fmt::format("table {}: {} rows of {} missing from {}", t, missing, x, y);
    }
  }
  return "";
}

void MakeDemoStore(const std::string& path, int64_t rows, uint64_t seed) {
  int64_t users = rows / 2, kv = rows / 4, events = rows - users - kv;
  ExecSql(path, fmt::format(R"sql(
    PRAGMA journal_mode=WAL;
    CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT, score REAL, avatar BLOB);
    CREATE INDEX users_email ON users(email);
    CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB);
    CREATE TABLE events (tenant TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT, payload BLOB,
                         PRIMARY KEY (tenant, seq)) WITHOUT ROWID;
    BEGIN;
    WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {0})
      INSERT INTO users SELECT x * 3 + {3}, 'user ' || x,
        CASE WHEN x % 7 = 0 THEN NULL ELSE 'u' || x || '@example.com' END,
        CASE WHEN x % 5 = 0 THEN NULL ELSE x * 0.25 END,
        CASE WHEN x % 3 = 0 THEN randomblob(16) ELSE NULL END FROM c;
    WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {1})
      INSERT INTO kv SELECT randomblob(12), randomblob(64) FROM c;
    WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {2})
      INSERT INTO events SELECT 'tenant-' || (x % 13), x, 'kind' || (x % 4), randomblob(32) FROM c;
    COMMIT;
  )sql",
                            users, kv, events, seed % 1000));
}

std::string DumpTable(const std::string& path, const std::string& table) {
  Conn c(path);
  std::string quoted = "\"";
  for (char ch : table) quoted += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  quoted += "\"";
  sqlite3_stmt* s = nullptr;
  std::string sql = fmt::format("SELECT * FROM {}", quoted);
  if (sqlite3_prepare_v2(c.db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
    return std::string("<error: ") + sqlite3_errmsg(c.db) + ">";
  }
  int n = sqlite3_column_count(s);
  sqlite3_finalize(s);
  std::string cols, order;
  for (int i = 1; i <= n; ++i) {
    cols += fmt::format("{}quote(\"_c{}\")", i > 1 ? " || '|' || " : "", i);
    order += fmt::format("{}\"_c{}\"", i > 1 ? "," : "", i);
  }
  // Rename columns positionally so any column name works.
  std::string inner = fmt::format("SELECT * FROM {}", quoted);
  std::string names;
  for (int i = 1; i <= n; ++i) names += fmt::format("{}\"_c{}\"", i > 1 ? "," : "", i);
  sql = fmt::format("WITH t({}) AS ({}) SELECT {} FROM t ORDER BY {}", names, inner, cols, order);
  if (sqlite3_prepare_v2(c.db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
    return std::string("<error: ") + sqlite3_errmsg(c.db) + ">";
  }
  std::string out;
  while (sqlite3_step(s) == SQLITE_ROW) {
    const unsigned char* t = sqlite3_column_text(s, 0);
    out += t ? reinterpret_cast<const char*>(t) : "NULL";
    out += "\n";
  }
  sqlite3_finalize(s);
  return out;
}

int64_t StoreVersion(const std::string& path) {
  return QueryInt(path, "SELECT value FROM __ferry_meta WHERE key='version'", -1);
}

}  // namespace ferry::testing

// ---- PostgreSQL ----

namespace ferry::testing {
namespace {

struct PgConn {
  PGconn* c = nullptr;
  explicit PgConn(const std::string& uri) {
    c = PQconnectdb(uri.c_str());
    if (PQstatus(c) != CONNECTION_OK) ADD_FAILURE() << "cannot connect: " << PQerrorMessage(c);
    PQsetNoticeProcessor(
        c, [](void*, const char*) {}, nullptr);
    PQclear(PQexec(c, "SET extra_float_digits = 3"));
  }
  ~PgConn() { PQfinish(c); }
};

std::string Hex(const unsigned char* p, size_t n) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out += kDigits[p[i] >> 4];
    out += kDigits[p[i] & 15];
  }
  return out;
}

std::string RealRepr(double d) {
  if (std::isnan(d)) return "r:NaN";
  if (std::isinf(d)) return d > 0 ? "r:Infinity" : "r:-Infinity";
  return "r:" + fmt::format("{}", d);
}

}  // namespace

std::string PgAdminUri() {
  const char* u = std::getenv("FERRY_TEST_PG_URI");
  return u ? u : "";
}

std::string PgUriWithDb(const std::string& uri, const std::string& db) {
  size_t q = uri.find('?');
  std::string base = uri.substr(0, q);
  std::string query = q == std::string::npos ? "" : uri.substr(q);
  size_t slash = base.find('/', base.find("://") + 3);
  return (slash == std::string::npos ? base : base.substr(0, slash)) + "/" + db + query;
}

PgTestDb::PgTestDb(std::string admin_uri, const std::string& prefix)
    : admin_(std::move(admin_uri)) {
  std::random_device rd;
  name_ = fmt::format("{}{:08x}{:04x}", prefix, rd(), rd() & 0xffff);
  uri_ = PgUriWithDb(admin_, name_);
  ok_ = PgExec(admin_, "CREATE DATABASE " + name_);
}

PgTestDb::~PgTestDb() {
  if (!ok_ || keep_) return;
  PgConn c(admin_);
  PQclear(PQexec(c.c, ("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)").c_str()));
}

bool PgExec(const std::string& uri, const std::string& sql) {
  PgConn c(uri);
  PGresult* r = PQexec(c.c, sql.c_str());
  bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
  if (!ok) ADD_FAILURE() << "SQL failed: " << PQresultErrorMessage(r) << "\n" << sql;
  PQclear(r);
  return ok;
}

std::string PgQueryText(const std::string& uri, const std::string& sql) {
  PgConn c(uri);
  PGresult* r = PQexec(c.c, sql.c_str());
  std::string out;
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    out = std::string("<error: ") + PQresultErrorMessage(r) + ">";
  } else if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)) {
    out = PQgetvalue(r, 0, 0);
  }
  PQclear(r);
  return out;
}

int64_t PgQueryInt(const std::string& uri, const std::string& sql, int64_t fallback) {
  std::string s = PgQueryText(uri, sql);
  if (s.empty() || s[0] == '<') return fallback;
  return std::strtoll(s.c_str(), nullptr, 10);
}

std::vector<std::string> PgCanonicalRows(const std::string& uri, const std::string& table) {
  PgConn c(uri);
  std::string q = "\"";
  for (char ch : table) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  q += "\"";
  PGresult* r = PQexec(c.c, ("SELECT * FROM " + q).c_str());
  std::vector<std::string> out;
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    out.push_back(std::string("<error: ") + PQresultErrorMessage(r) + ">");
    PQclear(r);
    return out;
  }
  for (int i = 0; i < PQntuples(r); ++i) {
    std::string line;
    for (int j = 0; j < PQnfields(r); ++j) {
      if (j) line += '|';
      if (PQgetisnull(r, i, j)) {
        line += "N";
        continue;
      }
      const char* v = PQgetvalue(r, i, j);
      switch (PQftype(r, j)) {
        case 20:
        case 21:
        case 23:
          line += std::string("i:") + v;
          break;  // int8/2/4
        case 700:
        case 701:
          line += RealRepr(std::strtod(v, nullptr));
          break;
        case 17:
          line += std::string("b:") + (v + 2);
          break;  // bytea, hex output "\x.."
        default:
          line += std::string("t:") + v;
          break;
      }
    }
    out.push_back(std::move(line));
  }
  PQclear(r);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> SqliteCanonicalRows(const std::string& path, const std::string& table,
                                             bool with_rowid) {
  Conn c(path);
  std::string q = "\"";
  for (char ch : table) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  q += "\"";
  sqlite3_stmt* s = nullptr;
  std::vector<std::string> out;
  const std::string sql = (with_rowid ? "SELECT rowid, * FROM " : "SELECT * FROM ") + q;
  if (sqlite3_prepare_v2(c.db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
    out.push_back(std::string("<error: ") + sqlite3_errmsg(c.db) + ">");
    return out;
  }
  while (sqlite3_step(s) == SQLITE_ROW) {
    std::string line;
    for (int j = 0; j < sqlite3_column_count(s); ++j) {
      if (j) line += '|';
      switch (sqlite3_column_type(s, j)) {
        case SQLITE_NULL:
          line += "N";
          break;
        case SQLITE_INTEGER:
          line += fmt::format("i:{}", sqlite3_column_int64(s, j));
          break;
        case SQLITE_FLOAT:
          line += RealRepr(sqlite3_column_double(s, j));
          break;
        case SQLITE_BLOB:
          line += "b:" + Hex(static_cast<const unsigned char*>(sqlite3_column_blob(s, j)),
                             static_cast<size_t>(sqlite3_column_bytes(s, j)));
          break;
        default:
          line += "t:" + std::string(reinterpret_cast<const char*>(sqlite3_column_text(s, j)),
                                     static_cast<size_t>(sqlite3_column_bytes(s, j)));
      }
    }
    out.push_back(std::move(line));
  }
  sqlite3_finalize(s);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace ferry::testing
