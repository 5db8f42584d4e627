// ferry-test-writer: the application of the online-migration tests and
// ferry-chaos --online-writes. A separate process that writes one table of
// the legacy store at a steady rate, each write its own autocommit
// statement, the way an application would while ferry migrates:
//
//   40% INSERT of a new id, 25% UPDATE of an existing row's val and n,
//   10% UPDATE of a row's primary key to a new id, 15% DELETE, 10% UPDATE
//   of a table that is not migrated (--side, optional; never refused).
//
// It keeps its own model of the table (the ids that exist) and appends one
// line per write it saw COMMIT to --log, flushed at once:
//   I <id> <n>        inserted (val is "v<n>")
//   U <id> <n>        val/n of <id> set to "v<n>" / n
//   M <old> <new>     the row's id changed
//   D <id>            deleted
//   S <n>             the side table written (not part of the model)
// A refused write (the cut-over's guard: the error names the new store) is
// logged "R <message>"; any other failure "E <message>" (e.g. the busy
// timeout during a freeze). So the log's I/U/M/D lines replayed over the
// initial rows are exactly what the table must hold.
//
// Ends on SIGTERM/SIGINT, after --seconds, or after --stop-after-refused
// refusals in a row; prints one JSON line with its counts and exits 0.
//
//   ferry-test-writer --store sqlite:legacy.db --table live --initial 1000
//       --rate 1000 --log writes.log [--side side] [--seed 1]
#include <libpq-fe.h>
#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

// One SQL statement at a time, SQLite or PostgreSQL.
class Conn {
 public:
  virtual ~Conn() = default;
  // Ok: "" ; else the error message.
  virtual std::string Exec(const std::string& sql) = 0;
};

class SqliteConn : public Conn {
 public:
  explicit SqliteConn(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      std::fprintf(stderr, "ferry-test-writer: cannot open %s\n", path.c_str());
      std::exit(2);
    }
    sqlite3_busy_timeout(db_, 10000);  // a cut-over's freeze pauses us, then we go on
  }
  ~SqliteConn() override { sqlite3_close(db_); }
  std::string Exec(const std::string& sql) override {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) == SQLITE_OK) return "";
    std::string m = err ? err : "error";
    sqlite3_free(err);
    return m.empty() ? "error" : m;
  }

 private:
  sqlite3* db_ = nullptr;
};

class PgConn : public Conn {
 public:
  explicit PgConn(const std::string& uri) : uri_(uri) { Connect(); }
  ~PgConn() override {
    if (c_) PQfinish(c_);
  }
  std::string Exec(const std::string& sql) override {
    if (!c_ || PQstatus(c_) != CONNECTION_OK) Connect();
    PGresult* r = PQexec(c_, sql.c_str());
    const ExecStatusType st = PQresultStatus(r);
    std::string m;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
      const char* p = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
      m = p ? p : PQerrorMessage(c_);
      if (m.empty()) m = "error";
    }
    PQclear(r);
    return m;
  }

 private:
  void Connect() {
    if (c_) PQfinish(c_);
    c_ = PQconnectdb(uri_.c_str());
    if (PQstatus(c_) != CONNECTION_OK) {
      std::fprintf(stderr, "ferry-test-writer: cannot connect: %s\n", PQerrorMessage(c_));
      std::exit(2);
    }
  }
  std::string uri_;
  PGconn* c_ = nullptr;
};

std::string OneLine(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ferry-test-writer: writes a table at a steady rate and logs what committed"};
  std::string store, table = "live", side, log_path;
  int64_t initial = 0;
  double rate = 1000, seconds = 0;
  uint64_t seed = 1;
  int64_t stop_after_refused = 0;
  std::string synchronous;
  app.add_option("--store", store, "sqlite:PATH or postgresql://...")->required();
  app.add_option("--table", table, "the table (id integer key, val text, n integer)");
  app.add_option("--initial", initial, "the table holds ids 1..N at start");
  app.add_option("--rate", rate, "writes per second");
  app.add_option("--seconds", seconds, "stop after this long (0: until SIGTERM)");
  app.add_option("--log", log_path, "append committed writes here")->required();
  app.add_option("--side", side, "also update this (unmigrated) table, column n, row id 1");
  app.add_option("--seed", seed, "random seed");
  app.add_option("--stop-after-refused", stop_after_refused,
                 "exit after this many refused writes in a row (0: never)");
  app.add_option("--synchronous", synchronous,
                 "SQLite: PRAGMA synchronous for the writer's connection (e.g. normal: in WAL "
                 "mode, commits without an fsync each, as busy applications run)");
  CLI11_PARSE(app, argc, argv);
  signal(SIGTERM, OnSignal);
  signal(SIGINT, OnSignal);

  std::unique_ptr<Conn> conn;
  if (store.rfind("sqlite:", 0) == 0) {
    conn = std::make_unique<SqliteConn>(store.substr(7));
    if (!synchronous.empty()) {
      const std::string err = conn->Exec("PRAGMA synchronous = " + synchronous);
      if (!err.empty()) {
        std::fprintf(stderr, "ferry-test-writer: --synchronous %s: %s\n", synchronous.c_str(),
                     err.c_str());
        return 2;
      }
    }
  } else {
    conn = std::make_unique<PgConn>(store);
  }
  FILE* log = std::fopen(log_path.c_str(), "a");
  if (!log) {
    std::fprintf(stderr, "ferry-test-writer: cannot open %s\n", log_path.c_str());
    return 2;
  }
  // The model: which ids exist (a vector for random picks, an index by id).
  std::vector<int64_t> ids;
  std::unordered_map<int64_t, size_t> where;
  for (int64_t i = 1; i <= initial; ++i) {
    where[i] = ids.size();
    ids.push_back(i);
  }
  auto remove = [&](int64_t id) {
    const size_t at = where[id];
    ids[at] = ids.back();
    where[ids[at]] = at;
    ids.pop_back();
    where.erase(id);
  };
  auto add = [&](int64_t id) {
    where[id] = ids.size();
    ids.push_back(id);
  };
  std::mt19937_64 rng(seed);
  int64_t next_id = initial + 1 + static_cast<int64_t>(seed % 1000) * 100000000;
  uint64_t committed = 0, refused = 0, errors = 0, seq = 0;
  int64_t refused_run = 0;
  const auto start = std::chrono::steady_clock::now();
  const auto interval = std::chrono::duration<double>(1.0 / std::max(1.0, rate));
  auto due = start;
  while (!g_stop) {
    const auto now = std::chrono::steady_clock::now();
    if (seconds > 0 && now - start >= std::chrono::duration<double>(seconds)) break;
    if (due > now) std::this_thread::sleep_until(due);
    due += std::chrono::duration_cast<std::chrono::steady_clock::duration>(interval);
    if (std::chrono::steady_clock::now() - due > std::chrono::seconds(1)) {
      due = std::chrono::steady_clock::now();  // fell behind (a freeze): no burst after it
    }
    ++seq;
    const double p = std::uniform_real_distribution<double>(0, 1)(rng);
    std::string sql, line;
    int64_t a = 0, b = 0;
    char kind;
    if (p < 0.40 || ids.empty()) {
      kind = 'I';
      a = next_id++;
      sql = "INSERT INTO " + table + " (id, val, n) VALUES (" + std::to_string(a) + ", 'v" +
            std::to_string(seq) + "', " + std::to_string(seq) + ")";
    } else if (p < 0.90 || side.empty()) {
      a = ids[rng() % ids.size()];
      if (p < 0.65) {
        kind = 'U';
        sql = "UPDATE " + table + " SET val = 'v" + std::to_string(seq) +
              "', n = " + std::to_string(seq) + " WHERE id = " + std::to_string(a);
      } else if (p < 0.75) {
        kind = 'M';
        b = next_id++;
        sql = "UPDATE " + table + " SET id = " + std::to_string(b) +
              " WHERE id = " + std::to_string(a);
      } else {
        kind = 'D';
        sql = "DELETE FROM " + table + " WHERE id = " + std::to_string(a);
      }
    } else {
      kind = 'S';
      sql = "UPDATE " + side + " SET n = " + std::to_string(seq) + " WHERE id = 1";
    }
    const std::string err = conn->Exec(sql);
    if (err.empty()) {
      ++committed;
      refused_run = 0;
      switch (kind) {
        case 'I':
          add(a);
          std::fprintf(log, "I %lld %llu\n", static_cast<long long>(a),
                       static_cast<unsigned long long>(seq));
          break;
        case 'U':
          std::fprintf(log, "U %lld %llu\n", static_cast<long long>(a),
                       static_cast<unsigned long long>(seq));
          break;
        case 'M':
          remove(a);
          add(b);
          std::fprintf(log, "M %lld %lld\n", static_cast<long long>(a), static_cast<long long>(b));
          break;
        case 'D':
          remove(a);
          std::fprintf(log, "D %lld\n", static_cast<long long>(a));
          break;
        default:
          std::fprintf(log, "S %llu\n", static_cast<unsigned long long>(seq));
          break;
      }
    } else if (err.find("has moved to") != std::string::npos) {
      ++refused;
      ++refused_run;
      std::fprintf(log, "R %c %s\n", kind, OneLine(err).c_str());
    } else {
      ++errors;
      std::fprintf(log, "E %c %s\n", kind, OneLine(err).c_str());
    }
    std::fflush(log);
    if (stop_after_refused > 0 && refused_run >= stop_after_refused) break;
  }
  std::fclose(log);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("{\"committed\": %llu, \"refused\": %llu, \"errors\": %llu, \"seconds\": %.2f}\n",
              static_cast<unsigned long long>(committed), static_cast<unsigned long long>(refused),
              static_cast<unsigned long long>(errors), secs);
  return 0;
}
