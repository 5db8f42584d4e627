// ferry-bench: measures ferry side by side with baselines in ONE run and
// prints a table of medians, ratios against the baseline measured in the same
// run, the bars from issues #6 and #19 (met / not met) and the machine it ran on.
//
//   build-release/bin/ferry-bench --quick            # ~minutes
//   build-release/bin/ferry-bench                    # full (10M-row memory case: long)
//   build-release/bin/ferry-bench --pg-uri postgresql://user@127.0.0.1:5432/postgres
//
// (deploy/bench.sh builds Release into build-release and runs this.)
//
// Cases
//   1. SQLite -> SQLite: sqlite3 CLI (ATTACH + INSERT ... SELECT per table,
//      target schema and indexes created first) and its keyed copy (the same
//      with ` WHERE 1`: the bar's reference, DESIGN.md "Benchmarks") vs ferry
//      embedded with 1, 2, 4 workers, 2 workers with --verify, and ferry over
//      tcp with separate ferry-worker processes.
//   2. SQLite -> PostgreSQL: pgloader vs ferry with 1, 2, 4 workers and 2
//      workers with --verify (only with --pg-uri / FERRY_BENCH_PG_URI and
//      pgloader installed).
//   3. Control plane: a simulated fleet of DEALER sockets speaking
//      schemas/ferry.capnp directly (Register, then LeaseRequest -> Complete
//      with rows 0) against a real ferry-coordinator planning N one-row ranges.
//      With --ctl-dashboard http|browser the closed loop runs again while the
//      web dashboard is watched (GET / and /api/* every second, or a headless
//      Chromium showing the page), its rows printed beside the others.
//   4. Recovery: coordinator SIGKILL + restart to the first Grant with 100k
//      ranges in its state; rows copied twice after a worker SIGKILL.
//   5. Memory: ferry-worker peak RSS by store size; coordinator peak RSS.
//   6. Takeover: two coordinators on one PostgreSQL state, the leader
//      SIGKILLed while workers copy; time until the standby serves the job.
//   7. Migration spec (DESIGN.md "Migration spec"): --rows rows of one table
//      through a projection (table and columns renamed, one computed column)
//      vs SQLite's own INSERT INTO new.t SELECT <the same projection> FROM
//      legacy.t (WAL on both); the same with an identity Lua function; and,
//      with --pg-uri and pgloader, into PostgreSQL with the projection vs
//      pgloader moving the same table without one.
//   8. Skew (PostgreSQL): one table, 90% of its rows in one planned range,
//      against the same rows in 16 even ranges, 4 workers; splits in flight.
//   9. Adaptive batches (PostgreSQL): --batch-time-ms against fixed batches
//      while 2 sessions run heavy queries on the same server; the batch-time
//      distribution the workers measured.
//  10. Online mode: SQLite -> SQLite while ferry-test-writer writes the
//      legacy store: the cut-over's freeze at 1,000 writes/s; at 5,000
//      writes/s on 1M rows, the lag and the time from the copy's end to the
//      completed cut-over (--auto-cutover).
//
// Every timed case runs --repeat times (default 3); the table shows medians.
// Not a ctest test: it takes minutes and needs an otherwise idle machine to
// mean much (the load average is printed with the results).
#include <capnp/message.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "common/curve.h"
#include "common/version.h"
#include "common/wire.h"
#include "tests/dashboard_poller.h"
#include "tests/process_util.h"
#include "tests/test_util.h"

// Rows and bars are aggregates filled field by field; trailing fields default.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace fs = std::filesystem;
using ferry::AsData;
using ferry::AsView;
using ferry::DecodeEnvelope;

using ferry::NewEnvelope;
using ferry::ToFrame;

namespace {

// ---------------------------------------------------------------- options --

struct Options {
  bool quick = false;
  int repeat = 3;
  std::string dir = "/tmp/ferry-bench";
  std::string bin_dir = FERRY_BIN_DIR;
  std::string cases = "1,2,3,4,5,6,7,8,9,10";
  int64_t rows = 1000000;
  int value_bytes = 100;
  int tables = 4;
  std::vector<int> workers = {1, 2, 4};
  int tcp_workers = 2;
  std::string pg_uri;
  int fleet = 1000;
  int fleet_threads = 4;
  std::vector<int64_t> ctl_ranges = {10000, 100000};
  int64_t ctl_copy_ms = 35;
  std::string ctl_coordinator_args;   // extra ferry-coordinator flags in case 3
  bool ctl_curve = false;             // case 3 over CURVE (coordinator and simulated fleet)
  std::string ctl_latency_dump;       // directory for per-grant (time, latency) files
  std::string ctl_dashboard = "off";  // case 3: also run with the dashboard polled (http|browser)
  bool ctl_state_pg = false;          // case 3: also on a PostgreSQL state (--pg-uri)
  int takeover_runs = 5;              // case 6: runs (median)
  int64_t online_rows = 100000;       // case 10 a): rows at 1,000 writes/s
  int64_t online_big_rows = 1000000;  // case 10 b): rows at 5,000 writes/s
  int64_t restart_ranges = 100000;
  std::vector<int64_t> mem_rows;  // default: quick 100k,1M; full 1M,10M
  int64_t dup_rows = 500000;
  int64_t diag_batch_rows = 2000;
  bool keep = false;
};

Options g_opt;

// ---------------------------------------------------------------- helpers --

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
double NowS() { return NowNs() / 1e9; }

std::string Bin(const std::string& name) { return g_opt.bin_dir + "/" + name; }

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void Log(const std::string& line) { std::cerr << fmt::format("[bench {:.1f}] {}\n", NowS(), line); }

void RemoveDb(const std::string& path) {
  for (const char* suf : {"", "-wal", "-shm", "-journal", ".lock"}) {
    std::error_code ec;
    fs::remove(path + suf, ec);
  }
}

double Median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double Percentile(std::vector<uint32_t>& v, double p) {
  if (v.empty()) return NAN;
  size_t k =
      static_cast<size_t>(std::min<double>(v.size() - 1, std::floor(p * (v.size() - 1) + 0.5)));
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return v[k];
}

long ProcStatusKbOf(pid_t pid, const std::string& key) {
  std::ifstream f(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::atol(line.c_str() + key.size() + 1);
  }
  return -1;
}

// A child process with its rusage (peak RSS, CPU) collected on exit.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::string& log,
        const std::string& stdin_path = "") {
    start_ns_ = NowNs();
    pid_ = fork();
    if (pid_ == 0) {
      int fd = open(log.empty() ? "/dev/null" : log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      int in = open(stdin_path.empty() ? "/dev/null" : stdin_path.c_str(), O_RDONLY);
      dup2(in, 0);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execvp(args[0], args.data());
      _exit(127);
    }
  }
  ~Child() {
    if (!exited_ && pid_ > 0) {
      kill(pid_, SIGKILL);
      Wait(10000);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  void Signal(int sig) {
    if (!exited_) kill(pid_, sig);
  }
  // Polls every 1 ms; true once exited.
  bool Wait(int64_t timeout_ms) {
    const int64_t deadline = NowNs() + timeout_ms * 1000000;
    while (!exited_) {
      int status = 0;
      struct rusage ru {};
      pid_t r = wait4(pid_, &status, WNOHANG, &ru);
      if (r == pid_) {
        exited_ = true;
        end_ns_ = NowNs();
        code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        maxrss_kb_ = ru.ru_maxrss;
        cpu_s_ = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
        break;
      }
      if (NowNs() > deadline) return false;
      if (++polls_ % 20 == 0) SampleHwm();
      usleep(1000);
    }
    return true;
  }
  // Peak RSS of the executed program: VmHWM of its own mm, read from /proc
  // while it runs (ru_maxrss is useless here: it includes the forked copy of
  // this process before exec). Sampled every ~20 ms while waited on.
  void SampleHwm() {
    if (exited_) return;
    hwm_kb_ = std::max(hwm_kb_, ProcStatusKbOf(pid_, "VmHWM"));
  }
  long hwm_kb() const { return hwm_kb_; }
  bool running() {
    Wait(0);
    return !exited_;
  }
  int code() const { return code_; }
  double wall_s() const { return (end_ns_ - start_ns_) / 1e9; }
  int64_t start_ns() const { return start_ns_; }
  long maxrss_kb() const { return maxrss_kb_; }  // ru_maxrss: includes the pre-exec fork
  double cpu_s() const { return cpu_s_; }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  int code_ = -1;
  int64_t start_ns_ = 0, end_ns_ = 0;
  long maxrss_kb_ = 0;
  long hwm_kb_ = 0;
  int64_t polls_ = 0;
  double cpu_s_ = 0;
};

// utime+stime in seconds from the text of a /proc/PID/stat or
// /proc/PID/task/TID/stat file (fields 14, 15); NaN if malformed. *comm, if
// given, is set to the process or thread name (field 2).
double StatCpuS(const std::string& stat, std::string* comm = nullptr) {
  const size_t lp = stat.find('('), rp = stat.rfind(')');
  if (lp == std::string::npos || rp == std::string::npos || rp < lp) return NAN;
  if (comm) *comm = stat.substr(lp + 1, rp - lp - 1);
  std::istringstream in(stat.substr(rp + 2));
  std::vector<std::string> fields;
  for (std::string f; in >> f;) fields.push_back(f);
  // fields[0] is field 3 (state); utime is field 14 -> index 11.
  if (fields.size() < 13) return NAN;
  return (std::stod(fields[11]) + std::stod(fields[12])) / sysconf(_SC_CLK_TCK);
}

// utime+stime of a live process, seconds.
double ProcCpuS(pid_t pid) { return StatCpuS(Slurp(fmt::format("/proc/{}/stat", pid))); }

// utime+stime of each thread of a live process whose name (comm) starts
// with `prefix`, seconds, by thread id (/proc/PID/task/TID/stat).
std::map<pid_t, double> ThreadCpuS(pid_t pid, const std::string& prefix) {
  std::map<pid_t, double> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fmt::format("/proc/{}/task", pid), ec)) {
    std::string comm;
    const double cpu = StatCpuS(Slurp(e.path().string() + "/stat"), &comm);
    if (std::isnan(cpu) || comm.rfind(prefix, 0) != 0) continue;
    out[static_cast<pid_t>(std::atol(e.path().filename().c_str()))] = cpu;
  }
  return out;
}

// CPU the threads in `after` used since `before` (a thread absent from
// `before` started after it).
double CpuSince(const std::map<pid_t, double>& before, const std::map<pid_t, double>& after) {
  double s = 0;
  for (const auto& [tid, cpu] : after) {
    auto it = before.find(tid);
    s += cpu - (it == before.end() ? 0.0 : it->second);
  }
  return s;
}

// A field of /proc/PID/status in kB (VmHWM, VmRSS), -1 if unknown.
long ProcStatusKb(pid_t pid, const std::string& key) {
  std::ifstream f(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::atol(line.c_str() + key.size() + 1);
  }
  return -1;
}

std::string LoadAvg() {
  std::string s = Slurp("/proc/loadavg");
  std::istringstream in(s);
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

// ------------------------------------------------------------- sqlite C API --

class Sql {
 public:
  explicit Sql(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) {
      throw std::runtime_error("cannot open " + path);
    }
    sqlite3_busy_timeout(db_, 10000);
  }
  ~Sql() { sqlite3_close(db_); }
  void Exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string m = err ? err : "?";
      sqlite3_free(err);
      throw std::runtime_error("sql: " + m + " in: " + sql.substr(0, 200));
    }
  }
  std::vector<std::vector<std::string>> Rows(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      throw std::runtime_error(std::string("sql: ") + sqlite3_errmsg(db_));
    }
    std::vector<std::vector<std::string>> out;
    while (sqlite3_step(st) == SQLITE_ROW) {
      std::vector<std::string> row;
      for (int i = 0; i < sqlite3_column_count(st); ++i) {
        const unsigned char* t = sqlite3_column_text(st, i);
        row.push_back(t ? reinterpret_cast<const char*>(t) : "");
      }
      out.push_back(std::move(row));
    }
    sqlite3_finalize(st);
    return out;
  }
  int64_t Int(const std::string& sql, int64_t fallback = -1) {
    auto r = Rows(sql);
    if (r.empty() || r[0].empty() || r[0][0].empty()) return fallback;
    return std::stoll(r[0][0]);
  }

 private:
  sqlite3* db_ = nullptr;
};

std::string Quote(const std::string& s) {
  std::string o = "'";
  for (char c : s) {
    o += c;
    if (c == '\'') o += '\'';
  }
  return o + "'";
}
std::string Ident(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    o += c;
    if (c == '"') o += '"';
  }
  return o + "\"";
}

std::vector<std::string> UserTables(const std::string& path) {
  Sql db(path);
  std::vector<std::string> out;
  for (auto& r : db.Rows("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE "
                         "'sqlite\\_%' ESCAPE '\\' AND name <> '__ferry_meta' ORDER BY name")) {
    out.push_back(r[0]);
  }
  return out;
}

std::map<std::string, int64_t> CountRows(const std::string& path,
                                         const std::vector<std::string>& tables) {
  std::map<std::string, int64_t> out;
  Sql db(path);
  for (const auto& t : tables) out[t] = db.Int("SELECT count(*) FROM " + Ident(t), -1);
  return out;
}

// ------------------------------------------------------------ data stores --

// The case-1 store: `tables` tables splitting `rows` rows. Even tables:
// integer key (rowid alias), text with NULLs, REAL, a BLOB payload of
// `value_bytes`, an index on email. Odd tables: composite (text, integer)
// key, WITHOUT ROWID. Cached by its parameters.
std::string DataStore(int64_t rows, int value_bytes, int tables) {
  std::string path = fmt::format("{}/legacy-{}r-{}b-{}t.db", g_opt.dir, rows, value_bytes, tables);
  if (fs::exists(path)) return path;
  Log(fmt::format("generating {} ...", path));
  double t0 = NowS();
  std::string tmp = path + ".tmp";
  RemoveDb(tmp);
  {
    Sql db(tmp);
    db.Exec("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-262144;");
    for (int i = 0; i < tables; ++i) {
      int64_t n = rows / tables + (i < rows % tables ? 1 : 0);
      std::string t = fmt::format("t{}", i);
      db.Exec("BEGIN");
      if (i % 2 == 0) {
        db.Exec(fmt::format(
            "CREATE TABLE {0} (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT, score "
            "REAL, payload BLOB);"
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < {1}) "
            "INSERT INTO {0} SELECT i, 'user ' || i, CASE WHEN i % 10 = 0 THEN NULL ELSE 'user' "
            "|| i || '@example.com' END, (i * 7919 % 1000000) / 100.0, randomblob({2}) FROM s;"
            "CREATE INDEX {0}_email ON {0} (email);",
            t, n, value_bytes));
      } else {
        db.Exec(fmt::format(
            "CREATE TABLE {0} (customer TEXT NOT NULL, seq INTEGER NOT NULL, amount REAL, "
            "status TEXT, payload BLOB, PRIMARY KEY (customer, seq)) WITHOUT ROWID;"
            "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM s WHERE i < {1} - 1) "
            "INSERT INTO {0} SELECT printf('cust-%08d', i / 100), i % 100, (i % 100000) / 100.0, "
            "CASE i % 4 WHEN 0 THEN 'new' WHEN 1 THEN 'paid' WHEN 2 THEN 'shipped' ELSE "
            "'returned' END, randomblob({2}) FROM s;",
            t, n, value_bytes));
      }
      db.Exec("COMMIT");
    }
  }
  fs::rename(tmp, path);
  Log(fmt::format("generated in {:.1f} s, {:.1f} MiB", NowS() - t0,
                  fs::file_size(path) / 1048576.0));
  return path;
}

// One table of `rows` integer keys and nothing else: planned with
// --range-rows 1 into `rows` ranges for the control-plane cases.
std::string KeysStore(int64_t rows) {
  std::string path = fmt::format("{}/keys-{}.db", g_opt.dir, rows);
  if (fs::exists(path)) return path;
  std::string tmp = path + ".tmp";
  RemoveDb(tmp);
  {
    Sql db(tmp);
    db.Exec("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;");
    db.Exec(
        fmt::format("BEGIN; CREATE TABLE t (id INTEGER PRIMARY KEY);"
                    "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < {}) "
                    "INSERT INTO t SELECT i FROM s; COMMIT;",
                    rows));
  }
  fs::rename(tmp, path);
  return path;
}

// ------------------------------------------------------------ result table --

struct Row {
  std::string section;
  std::string name;
  std::vector<double> samples;  // seconds (or the metric) per run
  std::string unit = "s";
  int64_t rows = 0;       // rows moved per run (for rows/s)
  double baseline = NAN;  // median of the baseline in the same section
  std::string note;
};

std::vector<Row> g_rows;
struct Bar {
  std::string what;
  std::string target;
  std::string measured;
  std::optional<bool> met;  // nullopt: not measured
  std::string why;
};
std::vector<Bar> g_bars;
std::vector<std::string> g_notes;

void PrintTable(std::ostream& out) {
  std::string section;
  for (const Row& r : g_rows) {
    if (r.section != section) {
      section = r.section;
      out << "\n" << section << "\n";
      out << fmt::format("  {:<52} {:>5} {:>12} {:>12} {:>12} {:>9}  {}\n", "case", "runs",
                         "median", "min..max", "rows/s", "ratio", "note");
    }
    if (r.samples.empty()) {
      out << fmt::format("  {:<52} {:>5} {:>12}  {}\n", r.name, 0, "-", r.note);
      continue;
    }
    double med = Median(r.samples);
    auto [mn, mx] = std::minmax_element(r.samples.begin(), r.samples.end());
    std::string val = r.unit == "s"     ? fmt::format("{:.2f} s", med)
                      : r.unit == "MiB" ? fmt::format("{:.1f} MiB", med)
                      : r.unit == "ms"  ? fmt::format("{:.1f} ms", med)
                                        : fmt::format("{:.0f} {}", med, r.unit);
    std::string range = r.samples.size() > 1 ? (r.unit == "s" || r.unit == "ms" || r.unit == "MiB"
                                                    ? fmt::format("{:.2f}..{:.2f}", *mn, *mx)
                                                    : fmt::format("{:.0f}..{:.0f}", *mn, *mx))
                                             : "";
    std::string rate = (r.unit == "s" && r.rows > 0) ? fmt::format("{:.0f}", r.rows / med) : "";
    std::string ratio = std::isnan(r.baseline) ? "" : fmt::format("{:.2f}x", med / r.baseline);
    out << fmt::format("  {:<52} {:>5} {:>12} {:>12} {:>12} {:>9}  {}\n", r.name, r.samples.size(),
                       val, range, rate, ratio, r.note);
  }
}

void PrintBars(std::ostream& out) {
  out << "\nBars (issues #6 and #19)\n";
  for (const Bar& b : g_bars) {
    std::string verdict = !b.met ? "not measured" : *b.met ? "MET" : "NOT MET";
    out << fmt::format("  [{:<12}] {:<58} target {:<16} measured {}{}\n", verdict, b.what, b.target,
                       b.measured, b.why.empty() ? "" : "  (" + b.why + ")");
  }
}

std::string MachineInfo() {
  std::string model;
  std::istringstream cpu(Slurp("/proc/cpuinfo"));
  std::string line;
  while (std::getline(cpu, line)) {
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  long mem_kb = 0;
  std::istringstream mi(Slurp("/proc/meminfo"));
  while (std::getline(mi, line)) {
    if (line.rfind("MemTotal:", 0) == 0) mem_kb = std::atol(line.c_str() + 9);
  }
  struct utsname u {};
  uname(&u);
  return fmt::format("nproc {} | {} | {:.1f} GiB RAM | Linux {} | sqlite {}",
                     std::thread::hardware_concurrency(), model, mem_kb / 1048576.0, u.release,
                     sqlite3_libversion());
}

// ------------------------------------------------------------- case 1 & 2 --

bool RunOk(Child& c, int64_t timeout_ms, const std::string& what, const std::string& log) {
  if (!c.Wait(timeout_ms)) {
    c.Signal(SIGKILL);
    c.Wait(10000);
    Log(what + ": timed out; log " + log);
    return false;
  }
  if (c.code() != 0) {
    Log(fmt::format("{}: exit {}; log {}", what, c.code(), log));
    return false;
  }
  return true;
}

// Waits for the endpoints file of a coordinator started with --endpoints-file.
bool WaitListening(const std::string& endpoints_file, Child& c, int64_t timeout_ms) {
  int64_t deadline = NowNs() + timeout_ms * 1000000;
  while (NowNs() < deadline) {
    if (fs::exists(endpoints_file)) return true;
    if (!c.running()) return false;
    usleep(1000);
  }
  return false;
}

// ferry SQLite/PG -> target with N in-process workers. Wall seconds, NaN on failure.
double FerryEmbedded(const std::string& source_uri, const std::string& target_uri,
                     const std::string& state, int workers, const std::string& log,
                     const std::vector<std::string>& extra = {},
                     const std::string& log_level = "warn") {
  RemoveDb(state);
  std::vector<std::string> argv = {Bin("ferry-coordinator"),
                                   "--source",
                                   source_uri,
                                   "--target",
                                   target_uri,
                                   "--state",
                                   state,
                                   "--local-workers",
                                   std::to_string(workers),
                                   "--listen",
                                   "tcp://127.0.0.1:0",
                                   "--status-endpoint",
                                   "tcp://127.0.0.1:0",
                                   "--log-level",
                                   log_level};
  argv.insert(argv.end(), extra.begin(), extra.end());
  Child c(argv, log);
  if (!RunOk(c, 3600000, "ferry-coordinator --local-workers", log)) return NAN;
  return c.wall_s();
}

// ferry with a coordinator process and `workers` ferry-worker processes over
// tcp. Wall seconds from coordinator start to the last process exit.
double FerryTcp(const std::string& source_uri, const std::string& target_uri,
                const std::string& state, int workers, const std::string& log,
                long* worker_maxrss_kb = nullptr, long* coord_maxrss_kb = nullptr) {
  RemoveDb(state);
  int port = ferry::testing::FreePort();
  std::string ep = fmt::format("tcp://127.0.0.1:{}", port);
  std::string ef = state + ".endpoints";
  fs::remove(ef);
  Child c({Bin("ferry-coordinator"), "--source", source_uri, "--target", target_uri, "--state",
           state, "--listen", ep, "--status-endpoint", "tcp://127.0.0.1:0", "--exit-when-done",
           "--endpoints-file", ef, "--log-level", "warn"},
          log);
  if (!WaitListening(ef, c, 600000)) {
    Log("coordinator did not start; log " + log);
    return NAN;
  }
  std::vector<std::unique_ptr<Child>> ws;
  for (int i = 0; i < workers; ++i) {
    ws.push_back(std::make_unique<Child>(
        std::vector<std::string>{Bin("ferry-worker"), "--coordinator", ep, "--id",
                                 fmt::format("bench-w{}", i), "--log-level", "warn"},
        log));
  }
  const int64_t deadline = NowNs() + 3600'000'000'000;
  while (!c.Wait(20) && NowNs() < deadline) {
    c.SampleHwm();
    for (auto& w : ws) {
      if (w->running()) w->SampleHwm();
    }
  }
  bool ok = RunOk(c, 1000, "ferry-coordinator (tcp)", log);
  int64_t end = NowNs();
  long wmax = 0;
  for (auto& w : ws) {
    ok = RunOk(*w, 60000, "ferry-worker", log) && ok;
    end = std::max(end, NowNs());
    wmax = std::max(wmax, w->hwm_kb());
  }
  if (worker_maxrss_kb) *worker_maxrss_kb = wmax;
  if (coord_maxrss_kb) *coord_maxrss_kb = c.hwm_kb();
  if (!ok) return NAN;
  return (end - c.start_ns()) / 1e9;
}

std::string CheckCounts(const std::map<std::string, int64_t>& want,
                        const std::map<std::string, int64_t>& got) {
  for (const auto& [t, n] : want) {
    auto it = got.find(t);
    int64_t g = it == got.end() ? -1 : it->second;
    if (g != n) return fmt::format("{}: {} rows, expected {}", t, g, n);
  }
  return "";
}

// One timed row of cases 1 and 2: `run` returns the wall time of one run
// (NaN if it failed).
struct TimedCase {
  std::string name;
  std::function<double()> run;
};

// Runs every case `--repeat` times, interleaved (all cases once, then all
// again...), so a slow phase of the machine or of the server (a checkpoint
// after the previous case, a colder cache) lands on every case alike rather
// than on whichever ran at that moment. `prepare` runs before each run (false:
// skip it); `check` after each successful one returns "" or what is wrong.
// cases[0] is the baseline: every other row's ratio is against its median.
// Each run moves `rows` rows. Returns the medians by case, in order; the
// rows go to g_rows under `section`.
std::vector<double> RunInterleaved(const std::string& section, int64_t rows,
                                   const std::vector<TimedCase>& cases,
                                   const std::function<bool()>& prepare,
                                   const std::function<std::string()>& check) {
  std::vector<Row> out;
  for (const TimedCase& c : cases) {
    out.push_back(Row{section, c.name});
    out.back().rows = rows;
  }
  for (int i = 0; i < g_opt.repeat; ++i) {
    for (size_t k = 0; k < cases.size(); ++k) {
      Row& r = out[k];
      if (!prepare()) {
        r.note = "FAILED: could not prepare the target";
        continue;
      }
      const double s = cases[k].run();
      const std::string bad = std::isnan(s) ? "run failed" : check();
      if (bad.empty()) {
        r.samples.push_back(s);
      } else {
        r.note = "FAILED: " + bad;
        Log(r.name + ": " + bad);
      }
      Log(fmt::format("{} run {}: {:.2f} s", r.name, i + 1, s));
    }
  }
  std::vector<double> medians;
  for (size_t k = 0; k < out.size(); ++k) {
    medians.push_back(Median(out[k].samples));
    if (k > 0) out[k].baseline = medians[0];
    if (out[k].note.empty()) out[k].note = "row counts verified";
    g_rows.push_back(std::move(out[k]));
  }
  return medians;
}

void CaseSqlite() {
  const std::string legacy = DataStore(g_opt.rows, g_opt.value_bytes, g_opt.tables);
  const std::string target = g_opt.dir + "/c1-new.db";
  const std::string state = g_opt.dir + "/c1-state.db";
  const std::string log = g_opt.dir + "/c1.log";
  const auto tables = UserTables(legacy);
  const auto want = CountRows(legacy, tables);
  int64_t total = 0;
  for (auto& [t, n] : want) total += n;
  const std::string section =
      fmt::format("1. SQLite -> SQLite: {} rows, {} tables, {}-byte values, legacy file {:.0f} MiB",
                  total, tables.size(), g_opt.value_bytes, fs::file_size(legacy) / 1048576.0);

  // Baseline script: target schema (tables, then indexes) first, like ferry;
  // then one INSERT ... SELECT per table, each its own transaction.
  // The reference script is the same with ` WHERE 1` on each SELECT, which
  // turns off SQLite's transfer optimisation (a raw copy of records and index
  // entries, no decoding): SQLite's own row-by-row copy, the floor for any
  // copy that selects rows by key range and looks at each row.
  // Both run in WAL mode, as ferry's new store does. The rollback-journal
  // script is the baseline in the CLI's default journal mode: each new page
  // is written once (WAL writes it twice, log then checkpoint), so it is
  // faster; printed so the reader sees both, the bar stays like for like.
  const std::string script = g_opt.dir + "/c1-baseline.sql";
  const std::string row_script = g_opt.dir + "/c1-reference-where1.sql";
  const std::string rollback_script = g_opt.dir + "/c1-baseline-rollback-journal.sql";
  {
    Sql db(legacy);
    std::string schema;
    for (auto& r : db.Rows("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE "
                           "'sqlite\\_%' ESCAPE '\\' AND name <> '__ferry_meta' ORDER BY "
                           "type='index', name")) {
      schema += r[0] + ";\n";
    }
    schema += "ATTACH " + Quote(legacy) + " AS src;\n";
    std::string copies, row_copies;
    for (const auto& t : tables) {
      const std::string copy =
          "BEGIN; INSERT INTO main." + Ident(t) + " SELECT * FROM src." + Ident(t);
      copies += copy + "; COMMIT;\n";
      row_copies += copy + " WHERE 1; COMMIT;\n";
    }
    const std::string wal = "PRAGMA journal_mode=WAL;\n";
    std::ofstream(script) << wal << schema << copies;
    std::ofstream(row_script) << wal << schema << row_copies;
    std::ofstream(rollback_script) << schema << copies;
  }
  std::vector<TimedCase> cases;
  auto add = [&](const std::string& name, std::function<double()> run) {
    cases.push_back(TimedCase{name, std::move(run)});
  };
  // The sqlite3 CLI running `sql_script` into the target.
  auto add_cli = [&](const std::string& name, const std::string& sql_script,
                     const std::string& what) {
    add(name, [&, sql_script, what] {
      Child c({"sqlite3", "-batch", "-bail", target}, log, sql_script);
      return RunOk(c, 3600000, what, log) ? c.wall_s() : NAN;
    });
  };
  add_cli("baseline: sqlite3 CLI ATTACH + INSERT..SELECT", script, "sqlite3 baseline");
  add_cli("reference: sqlite3 CLI, SELECT .. WHERE 1", row_script, "sqlite3 reference");
  add_cli("baseline variant: CLI default (rollback) journal", rollback_script,
          "sqlite3 rollback-journal baseline");
  size_t two_at = 0;
  for (int w : g_opt.workers) {
    if (w == 2) two_at = cases.size();
    add(fmt::format("ferry embedded, {} worker{}", w, w == 1 ? "" : "s"),
        [&, w] { return FerryEmbedded("sqlite:" + legacy, "sqlite:" + target, state, w, log); });
  }
  // --verify: every range compared in both stores after its copy (chunk
  // digests), before the version bump.
  const size_t verify_at = cases.size();
  add("ferry embedded, 2 workers, --verify", [&] {
    return FerryEmbedded("sqlite:" + legacy, "sqlite:" + target, state, 2, log, {"--verify"});
  });
  add(fmt::format("ferry tcp, {} ferry-worker processes", g_opt.tcp_workers), [&] {
    return FerryTcp("sqlite:" + legacy, "sqlite:" + target, state, g_opt.tcp_workers, log);
  });
  // Diagnostic (not a bar): the rows cross into the worker and back (the
  // read + write path every other store pair uses) instead of the direct copy.
  add("diagnostic: embedded, 2 workers, --no-direct-copy", [&] {
    return FerryEmbedded("sqlite:" + legacy, "sqlite:" + target, state, 2, log,
                         {"--no-direct-copy"});
  });
  if (g_opt.diag_batch_rows > 0) {
    // Diagnostic (not a bar): the same run with another batch size, i.e.
    // more or fewer fenced target transactions.
    const std::string br = std::to_string(g_opt.diag_batch_rows);
    add("diagnostic: embedded, 2 workers, --batch-rows " + br, [&, br] {
      return FerryEmbedded("sqlite:" + legacy, "sqlite:" + target, state, 2, log,
                           {"--batch-rows", br});
    });
  }
  const std::vector<double> med = RunInterleaved(
      section, total, cases,
      [&] {
        RemoveDb(target);
        return true;
      },
      [&] { return CheckCounts(want, CountRows(target, tables)); });
  const double b = med[0];
  const double reference = med[1];
  const double two = two_at ? med[two_at] : NAN;
  const double verify = med[verify_at];
  // DESIGN.md "Benchmarks": the bar is SQLite's own keyed copy (` WHERE 1`),
  // not the whole-table transfer; the CLI ratio stays printed as context.
  g_bars.push_back(
      Bar{"SQLite->SQLite: ferry 2 workers vs keyed-copy reference", "<= 1.05x",
          std::isnan(two) || std::isnan(reference)
              ? "-"
              : fmt::format("{:.2f}x ({:.2f}x the CLI baseline)", two / reference, two / b),
          std::isnan(two) || std::isnan(reference) ? std::nullopt
                                                   : std::optional<bool>(two / reference <= 1.05)});
  g_bars.push_back(Bar{
      "SQLite->SQLite: --verify on top of the copy, 2 workers", "<= +60%",
      std::isnan(two) || std::isnan(verify)
          ? "-"
          : fmt::format("{:+.0f}% ({:.2f} s vs {:.2f} s)", (verify / two - 1) * 100, verify, two),
      std::isnan(two) || std::isnan(verify) ? std::nullopt
                                            : std::optional<bool>(verify / two <= 1.60)});
  if (!g_opt.keep) RemoveDb(target);
}

// ----- PostgreSQL: psql for set-up and counts, pgloader for the baseline --

bool HaveExe(const std::string& name) {
  return std::system(("command -v " + name + " >/dev/null 2>&1").c_str()) == 0;
}

// `uri` with its database replaced by `db`.
std::string UriWithDb(const std::string& uri, const std::string& db) {
  size_t scheme = uri.find("://");
  size_t start = scheme == std::string::npos ? 0 : scheme + 3;
  size_t q = uri.find('?', start);
  size_t slash = uri.find('/', start);
  if (slash == std::string::npos || (q != std::string::npos && slash > q)) {
    size_t ins = q == std::string::npos ? uri.size() : q;
    return uri.substr(0, ins) + "/" + db + uri.substr(ins);
  }
  size_t end = q == std::string::npos ? uri.size() : q;
  return uri.substr(0, slash + 1) + db + uri.substr(end);
}

int Psql(const std::string& uri, const std::string& sql, std::string* out = nullptr) {
  std::string o, e;
  int rc = ferry::testing::RunCommandSplit(
      {"/usr/bin/env", "psql", uri, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql}, &o,
      &e, 600000);
  if (rc != 0) Log("psql: " + e);
  if (out) *out = o;
  return rc;
}

bool FreshPgDb(const std::string& admin_uri, const std::string& db) {
  return Psql(admin_uri, "DROP DATABASE IF EXISTS " + db + " WITH (FORCE)") == 0 &&
         Psql(admin_uri, "CREATE DATABASE " + db) == 0;
}

std::map<std::string, int64_t> PgCounts(const std::string& uri,
                                        const std::vector<std::string>& tables) {
  std::map<std::string, int64_t> out;
  for (const auto& t : tables) {
    std::string o;
    out[t] = Psql(uri, "SELECT count(*) FROM " + Ident(t), &o) == 0 ? std::atoll(o.c_str()) : -1;
  }
  return out;
}

void CasePostgres() {
  const std::string section = "2. SQLite -> PostgreSQL";
  if (g_opt.pg_uri.empty()) {
    g_rows.push_back(Row{section, "all", {}, "s", 0, NAN, "skipped (no PostgreSQL URI)"});
    g_bars.push_back(Bar{"SQLite->PostgreSQL: ferry 2 workers vs pgloader (speed ratio)", ">= 1.0",
                         "skipped (no PostgreSQL URI)", std::nullopt});
    return;
  }
  if (!HaveExe("pgloader") || !HaveExe("psql")) {
    g_rows.push_back(Row{section,
                         "all",
                         {},
                         "s",
                         0,
                         NAN,
                         "skipped (pgloader or psql not installed: apt-get install pgloader "
                         "postgresql-client)"});
    g_bars.push_back(Bar{"SQLite->PostgreSQL: ferry 2 workers vs pgloader (speed ratio)", ">= 1.0",
                         "skipped (no pgloader)", std::nullopt});
    return;
  }
  const std::string legacy = DataStore(g_opt.rows, g_opt.value_bytes, g_opt.tables);
  const auto tables = UserTables(legacy);
  const auto want = CountRows(legacy, tables);
  int64_t total = 0;
  for (auto& [t, n] : want) total += n;
  const std::string db = "ferry_bench";
  const std::string target = UriWithDb(g_opt.pg_uri, db);
  const std::string state = g_opt.dir + "/c2-state.db";
  const std::string log = g_opt.dir + "/c2.log";
  const std::string sec = fmt::format("{}: {} rows, {} tables, database {} on the given server",
                                      section, total, tables.size(), db);

  std::vector<TimedCase> cases;
  auto add = [&](const std::string& name, std::function<double()> run) {
    cases.push_back(TimedCase{name, std::move(run)});
  };
  add("baseline: pgloader sqlite:// -> postgresql://", [&] {
    Child c({"pgloader", "sqlite://" + legacy, target}, log);
    return RunOk(c, 3600000, "pgloader", log) ? c.wall_s() : NAN;
  });
  size_t two_at = 0;
  for (int w : g_opt.workers) {
    if (w == 2) two_at = cases.size();
    add(fmt::format("ferry embedded, {} worker{}", w, w == 1 ? "" : "s"),
        [&, w] { return FerryEmbedded("sqlite:" + legacy, target, state, w, log); });
  }
  const size_t verify_at = cases.size();
  add("ferry embedded, 2 workers, --verify",
      [&] { return FerryEmbedded("sqlite:" + legacy, target, state, 2, log, {"--verify"}); });
  const std::vector<double> med = RunInterleaved(
      sec, total, cases, [&] { return FreshPgDb(g_opt.pg_uri, db); },
      [&] { return CheckCounts(want, PgCounts(target, tables)); });
  const double b = med[0];
  const double two = two_at ? med[two_at] : NAN;
  const double verify = med[verify_at];
  g_bars.push_back(Bar{
      "SQLite->PostgreSQL: --verify on top of the copy, 2 workers", "<= +40%",
      std::isnan(two) || std::isnan(verify)
          ? "-"
          : fmt::format("{:+.0f}% ({:.2f} s vs {:.2f} s)", (verify / two - 1) * 100, verify, two),
      std::isnan(two) || std::isnan(verify) ? std::nullopt
                                            : std::optional<bool>(verify / two <= 1.40)});
  Psql(g_opt.pg_uri, "DROP DATABASE IF EXISTS " + db + " WITH (FORCE)");
  bool have = !std::isnan(two) && !std::isnan(b);
  g_bars.push_back(
      Bar{"SQLite->PostgreSQL: ferry 2 workers vs pgloader (speed ratio)", ">= 1.0",
          have ? fmt::format("{:.2f} (pgloader {:.2f} s / ferry {:.2f} s)", b / two, b, two) : "-",
          have ? std::optional<bool>(b / two >= 1.0) : std::nullopt});
}

// ------------------------------------------------------------- case 8 & 9 --

// One table of `rows` rows shaped like case 1's even tables, for the skew
// case (cached).
std::string OneTableStore(int64_t rows, int value_bytes) {
  std::string path = fmt::format("{}/one-{}r-{}b.db", g_opt.dir, rows, value_bytes);
  if (fs::exists(path)) return path;
  std::string tmp = path + ".tmp";
  RemoveDb(tmp);
  {
    Sql db(tmp);
    db.Exec("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-262144;");
    db.Exec(fmt::format(
        "BEGIN; CREATE TABLE t0 (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT, score "
        "REAL, payload BLOB);"
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < {0}) "
        "INSERT INTO t0 SELECT i, 'user ' || i, 'user' || i || '@example.com', "
        "(i * 7919 % 1000000) / 100.0, randomblob({1}) FROM s; COMMIT;",
        rows, value_bytes));
  }
  fs::rename(tmp, path);
  return path;
}

// Case 8: a skewed store — 90% of the rows in one planned range — against
// the same rows planned evenly, 4 workers into PostgreSQL. Splitting in
// flight should make the skewed plan cost about what the even one does.
void CaseSkew() {
  const std::string section = "8. Skew: 4 workers into PostgreSQL";
  if (g_opt.pg_uri.empty() || !HaveExe("psql")) {
    g_rows.push_back(Row{section, "all", {}, "s", 0, NAN, "skipped (no PostgreSQL URI or psql)"});
    g_bars.push_back(Bar{"skew: 90% of the rows in one range vs even, 4 workers into PostgreSQL",
                         "<= 1.2x", "skipped", std::nullopt});
    return;
  }
  const int64_t rows = g_opt.rows;
  const std::string legacy = OneTableStore(rows, g_opt.value_bytes);
  const std::string db = "ferry_bench_skew";
  const std::string target = UriWithDb(g_opt.pg_uri, db);
  const std::string state = g_opt.dir + "/c6-state.db";
  const std::string log = g_opt.dir + "/c6.log";
  const std::map<std::string, int64_t> want = {{"t0", rows}};
  const int64_t skew_range = rows * 9 / 10;
  const int64_t even_range = std::max<int64_t>(1, rows / 16);
  std::vector<int64_t> splits;
  std::vector<TimedCase> cases;
  cases.push_back(TimedCase{fmt::format("even: 16 planned ranges (--range-rows {})", even_range),
                            [&, even_range] {
                              return FerryEmbedded("sqlite:" + legacy, target, state, 4, log,
                                                   {"--range-rows", std::to_string(even_range)});
                            }});
  cases.push_back(
      TimedCase{fmt::format("skewed: 90% in one planned range (--range-rows {})", skew_range),
                [&, skew_range] {
                  const double s = FerryEmbedded("sqlite:" + legacy, target, state, 4, log,
                                                 {"--range-rows", std::to_string(skew_range)});
                  Sql st(state);
                  splits.push_back(st.Int("SELECT count(*) FROM events WHERE kind = 'split'", -1));
                  return s;
                }});
  const std::vector<double> med = RunInterleaved(
      fmt::format("{}: {} rows in one table", section, rows), rows, cases,
      [&] { return FreshPgDb(g_opt.pg_uri, db); },
      [&] { return CheckCounts(want, PgCounts(target, {"t0"})); });
  std::string sp;
  for (int64_t n : splits) sp += (sp.empty() ? "" : ", ") + std::to_string(n);
  g_rows.back().note = "splits per run: " + sp;
  Psql(g_opt.pg_uri, "DROP DATABASE IF EXISTS " + db + " WITH (FORCE)");
  const bool have = !std::isnan(med[0]) && !std::isnan(med[1]);
  g_bars.push_back(Bar{"skew: 90% of the rows in one range vs even, 4 workers into PostgreSQL",
                       "<= 1.2x", have ? fmt::format("{:.2f}x", med[1] / med[0]) : "-",
                       have ? std::optional<bool>(med[1] / med[0] <= 1.2) : std::nullopt});
}

// The batch_times lines of a run's log (one per worker): key=value fields.
std::vector<std::map<std::string, double>> BatchTimes(const std::string& log) {
  std::vector<std::map<std::string, double>> out;
  std::istringstream in(Slurp(log));
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(" batch_times ") == std::string::npos) continue;
    std::map<std::string, double> f;
    std::istringstream words(line);
    std::string w;
    while (words >> w) {
      const size_t eq = w.find('=');
      if (eq == std::string::npos) continue;
      f[w.substr(0, eq)] = std::atof(w.substr(eq + 1).c_str());
    }
    if (f.count("batches") && f["batches"] > 0) out.push_back(std::move(f));
  }
  return out;
}

// Case 9: --batch-time-ms against a PostgreSQL target slowed by a
// concurrent load (sessions running CPU-heavy queries on the same server),
// beside fixed batches under the same load: the distribution of batch times
// (read + write + commit) the workers measured.
void CaseAdaptiveBatches() {
  const std::string section = "9. Adaptive batches: PostgreSQL target under a concurrent load";
  if (g_opt.pg_uri.empty() || !HaveExe("psql")) {
    g_rows.push_back(Row{section, "all", {}, "s", 0, NAN, "skipped (no PostgreSQL URI or psql)"});
    g_bars.push_back(Bar{"--batch-time-ms 200 under load: batch time p90 within 2x the target",
                         "<= 400 ms", "skipped", std::nullopt});
    return;
  }
  const std::string legacy = DataStore(g_opt.rows, g_opt.value_bytes, g_opt.tables);
  const auto tables = UserTables(legacy);
  const auto want = CountRows(legacy, tables);
  int64_t total = 0;
  for (auto& [t, n] : want) total += n;
  const std::string db = "ferry_bench_load";
  const std::string target = UriWithDb(g_opt.pg_uri, db);
  const std::string state = g_opt.dir + "/c7-state.db";
  struct Config {
    std::string name;
    std::vector<std::string> flags;
    std::vector<std::map<std::string, double>> workers;  // over all runs
  };
  std::vector<Config> configs = {
      {"--batch-time-ms 200 (cap --batch-rows 200000)",
       {"--batch-time-ms", "200", "--batch-rows", "200000"},
       {}},
      {"--batch-time-ms 50 (cap --batch-rows 200000)",
       {"--batch-time-ms", "50", "--batch-rows", "200000"},
       {}},
      {"fixed --batch-rows 10000 (the default)", {}, {}},
  };
  std::vector<TimedCase> cases;
  for (size_t i = 0; i < configs.size(); ++i) {
    cases.push_back(TimedCase{
        configs[i].name, [&, i] {
          const std::string log = fmt::format("{}/c7-{}.log", g_opt.dir, i);
          fs::remove(log);
          // The load: 2 sessions looping over heavy queries.
          std::vector<std::unique_ptr<Child>> load;
          for (int k = 0; k < 2; ++k) {
            load.push_back(std::make_unique<Child>(
                std::vector<std::string>{"psql", target, "-X", "-q", "-c",
                                         "DO $$ BEGIN LOOP PERFORM count(*) FROM "
                                         "generate_series(1, 3000000) g WHERE g % 7 = 3; "
                                         "END LOOP; END $$"},
                g_opt.dir + "/c7-load.log"));
          }
          usleep(300000);
          const double s =
              FerryEmbedded("sqlite:" + legacy, target, state, 2, log, configs[i].flags, "info");
          for (auto& l : load) l->Signal(SIGKILL);
          Psql(target,
               "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
               "WHERE datname = current_database() AND pid <> "
               "pg_backend_pid()");
          for (auto& w : BatchTimes(log)) configs[i].workers.push_back(w);
          return s;
        }});
  }
  RunInterleaved(
      fmt::format("{}: {} rows, 2 workers, 2 sessions of heavy queries", section, total), total,
      cases, [&] { return FreshPgDb(g_opt.pg_uri, db); },
      [&] { return CheckCounts(want, PgCounts(target, tables)); });
  Psql(g_opt.pg_uri, "DROP DATABASE IF EXISTS " + db + " WITH (FORCE)");
  const std::string sub = section + ": batch times per worker (median over workers and runs)";
  double adaptive_p90 = NAN;
  for (size_t i = 0; i < configs.size(); ++i) {
    auto med = [&](const char* key) {
      std::vector<double> v;
      for (auto& w : configs[i].workers) v.push_back(w[key]);
      return Median(v);
    };
    auto mx = [&](const char* key) {
      double m = 0;
      for (auto& w : configs[i].workers) m = std::max(m, w[key]);
      return m;
    };
    Row r{sub, configs[i].name};
    r.unit = "ms";
    r.samples = {med("p50_ms")};
    r.note = fmt::format(
        "p50 {:.0f} / p90 {:.0f} / p99 {:.0f} / max {:.0f} ms, {:.0f} rows per "
        "batch, {:.0f} batches per worker",
        med("p50_ms"), med("p90_ms"), med("p99_ms"), mx("max_ms"), med("mean_rows"),
        med("batches"));
    if (i == 0) adaptive_p90 = med("p90_ms");
    g_rows.push_back(std::move(r));
  }
  g_bars.push_back(
      Bar{"--batch-time-ms 200 under load: batch time p90 within 2x the target", "<= 400 ms",
          std::isnan(adaptive_p90) ? "-" : fmt::format("{:.0f} ms", adaptive_p90),
          std::isnan(adaptive_p90) ? std::nullopt : std::optional<bool>(adaptive_p90 <= 400)});
}

// ---------------------------------------------------------- fleet simulator --

struct FleetStats {
  uint64_t registered = 0, grants = 0, completions = 0, nowork = 0, errors = 0, lease_lost = 0,
           unknown = 0, timeouts = 0, done = 0;
  int64_t first_grant_ns = INT64_MAX, last_ack_ns = 0;
  std::vector<uint32_t> grant_lat_us;
  std::vector<int64_t> grant_t_ns;
  std::string first_error;
};

struct FleetConfig {
  std::string endpoint;
  int workers = 1000;
  int threads = 4;
  int io_threads = 2;  // ZeroMQ I/O threads of the simulator's one context
  std::string id_prefix = "sim";
  // Stops when this many completions were acked fleet-wide (0: run until
  // every simulated worker was told the migration is complete).
  uint64_t stop_after = 0;
  int64_t timeout_ms = 600000;
  // Simulated copy time per range, between Grant and Complete (uniform in
  // [copy_ms/2, 3*copy_ms/2]). 0: a closed loop, every worker always has a
  // request outstanding, so latency is queueing (Little's law) rather than
  // service time.
  int64_t copy_ms = 0;
  // CURVE keys (Z85) for every simulated worker; empty server key = plaintext.
  std::string curve_server, curve_public, curve_secret;
};

// Each thread owns its share of the simulated workers (one DEALER socket and
// one small state machine each) and waits on them with epoll (see Thread).
class Fleet {
 public:
  explicit Fleet(FleetConfig cfg) : cfg_(std::move(cfg)) {}

  FleetStats Run() {
    // One ZeroMQ context (and its I/O threads) for the whole fleet: fewer
    // threads competing with the coordinator for the cores.
    ctx_ = std::make_unique<zmq::context_t>(cfg_.io_threads);
    ctx_->set(zmq::ctxopt::max_sockets, cfg_.workers + 64);
    std::vector<std::thread> ts;
    std::vector<FleetStats> per(cfg_.threads);
    int64_t deadline = NowNs() + cfg_.timeout_ms * 1000000;
    for (int t = 0; t < cfg_.threads; ++t) {
      int n = cfg_.workers / cfg_.threads + (t < cfg_.workers % cfg_.threads ? 1 : 0);
      ts.emplace_back([this, t, n, deadline, &per] { Thread(t, n, deadline, &per[t]); });
    }
    for (auto& th : ts) th.join();
    FleetStats all;
    for (auto& s : per) {
      all.registered += s.registered;
      all.grants += s.grants;
      all.completions += s.completions;
      all.nowork += s.nowork;
      all.errors += s.errors;
      all.lease_lost += s.lease_lost;
      all.unknown += s.unknown;
      all.timeouts += s.timeouts;
      all.done += s.done;
      all.first_grant_ns = std::min(all.first_grant_ns, s.first_grant_ns);
      all.last_ack_ns = std::max(all.last_ack_ns, s.last_ack_ns);
      all.grant_lat_us.insert(all.grant_lat_us.end(), s.grant_lat_us.begin(), s.grant_lat_us.end());
      all.grant_t_ns.insert(all.grant_t_ns.end(), s.grant_t_ns.begin(), s.grant_t_ns.end());
      if (all.first_error.empty()) all.first_error = s.first_error;
    }
    return all;
  }

 private:
  // kReady: registered, waiting for the whole fleet to be registered.
  enum class St { kRegister, kReady, kLease, kComplete, kWait, kCopy, kDone };
  struct W {
    std::string id;
    int thread = 0;
    St st = St::kRegister;
    uint64_t rid = 0;
    int64_t sent_ns = 0;
    int64_t wake_ns = 0;  // kWait: when to ask again; kCopy: when to complete
    uint64_t range = 0, epoch = 0;
  };

  static constexpr int64_t kRequestTimeoutNs = 10'000'000'000;  // resend after 10 s

  void Send(zmq::socket_t& s, W& w, St st, FleetStats* stats) {
    capnp::MallocMessageBuilder b(128);  // 1 KiB first segment, not 8 KiB zeroed
    auto env = NewEnvelope(b, ++w.rid);
    auto body = env.getBody();
    switch (st) {
      case St::kRegister: {
        auto r = body.initRegister();
        r.setWorkerId(w.id);
        r.setHost("bench-sim");
        r.setPid(static_cast<uint32_t>(getpid()));
        r.setVersion(ferry::kFerryVersion);
        break;
      }
      case St::kLease:
        body.initLeaseRequest().setWorkerId(w.id);
        break;
      case St::kComplete: {
        auto c = body.initReport();
        c.setKind(::Report::Kind::COMPLETE);
        ferry::SetLeaseRef(c.initLease(), w.range, w.epoch, w.id);
        ferry::SetProgress(c.initProgress(), "", 0, 0, 0);
        c.setNext(true);  // as ferry-worker does: the reply is the next lease
        break;
      }
      default:
        return;
    }
    w.st = st;
    w.sent_ns = NowNs();
    zmq::message_t f = ToFrame(b);
    try {
      if (!s.send(f, zmq::send_flags::dontwait)) {
        // High-water mark: treat as lost, the timeout resends.
        stats->timeouts++;
      }
    } catch (const zmq::error_t&) {
      stats->timeouts++;
    }
  }

  // Waits with epoll on each socket's ZMQ_FD, so a pass costs O(sockets that
  // have replies), not O(all sockets) as zmq::poll would (it asks every
  // socket for ZMQ_EVENTS, a syscall each, on every call). ZMQ_FD only
  // signals when a socket's pipe goes from empty to non-empty after a read
  // found it empty, and a send may consume that signal: so every sequence of
  // operations on a socket ends with a recv that returned EAGAIN (Drain).
  void Thread(int t, int n, int64_t deadline, FleetStats* stats) {
    zmq::context_t& ctx = *ctx_;
    std::vector<zmq::socket_t> socks;
    std::vector<W> ws(n);
    socks.reserve(n);
    const int ep = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < n; ++i) {
      socks.emplace_back(ctx, zmq::socket_type::dealer);
      socks[i].set(zmq::sockopt::linger, 0);
      socks[i].set(zmq::sockopt::sndhwm, 1000);
      socks[i].set(zmq::sockopt::rcvhwm, 1000);
      if (!cfg_.curve_server.empty()) {
        socks[i].set(zmq::sockopt::curve_serverkey, cfg_.curve_server);
        socks[i].set(zmq::sockopt::curve_publickey, cfg_.curve_public);
        socks[i].set(zmq::sockopt::curve_secretkey, cfg_.curve_secret);
      }
      socks[i].connect(cfg_.endpoint);
      ws[i].id = fmt::format("{}-{}-{}", cfg_.id_prefix, t, i);
      ws[i].thread = t;
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u32 = static_cast<uint32_t>(i);
      epoll_ctl(ep, EPOLL_CTL_ADD, socks[i].get(zmq::sockopt::fd), &ev);
    }
    int live = n;
    auto drain = [&](int i) {
      W& w = ws[i];
      zmq::message_t m;
      while (w.st != St::kDone && socks[i].recv(m, zmq::recv_flags::dontwait)) {
        if (Handle(socks[i], w, m, stats) && w.st == St::kDone) {
          --live;
          epoll_ctl(ep, EPOLL_CTL_DEL, socks[i].get(zmq::sockopt::fd), nullptr);
        }
      }
    };
    for (int i = 0; i < n; ++i) {
      Send(socks[i], ws[i], St::kRegister, stats);
      drain(i);
    }
    // The fleet starts asking for leases only once every simulated worker
    // (in every thread) is registered: grant latency is then measured on a
    // fleet at work, not while this process is still creating sockets and
    // the coordinator is still answering the registration burst.
    bool counted_ready = false;
    std::vector<epoll_event> events(256);
    int64_t next_sweep = 0;
    while (live > 0 && !stop_.load(std::memory_order_relaxed)) {
      int64_t now = NowNs();
      if (now > deadline) {
        if (stats->first_error.empty()) stats->first_error = "fleet timed out";
        break;
      }
      if (!started_[t]) {
        if (!counted_ready && stats->registered >= static_cast<uint64_t>(n)) {
          counted_ready = true;
          ready_.fetch_add(1);
        }
        if (ready_.load() == cfg_.threads) {
          started_[t] = true;
          for (int i = 0; i < n; ++i) {
            if (ws[i].st != St::kReady) continue;
            Start(socks[i], ws[i], now, stats);
            drain(i);
          }
        }
      }
      if (now >= next_sweep) {
        // Retries after "no work", simulated copies that are done, and
        // resends after a lost request.
        next_sweep = now + (cfg_.copy_ms > 0 ? 1'000'000 : 5'000'000);
        for (int i = 0; i < n; ++i) {
          W& w = ws[i];
          if (w.st == St::kWait && w.wake_ns <= now) {
            Send(socks[i], w, St::kLease, stats);
            drain(i);
          } else if (w.st == St::kCopy && w.wake_ns <= now) {
            Send(socks[i], w, St::kComplete, stats);
            drain(i);
          } else if ((w.st == St::kRegister || w.st == St::kLease || w.st == St::kComplete) &&
                     now - w.sent_ns > kRequestTimeoutNs) {
            stats->timeouts++;
            Send(socks[i], w, w.st, stats);
            drain(i);
          }
        }
      }
      const int64_t wait_ns = std::max<int64_t>(0, next_sweep - now);
      const int wait_ms = static_cast<int>((wait_ns + 999'999) / 1'000'000);
      int k = epoll_wait(ep, events.data(), static_cast<int>(events.size()), wait_ms);
      for (int e = 0; e < k; ++e) drain(static_cast<int>(events[e].data.u32));
    }
    close(ep);
  }

  // Applies one reply; false if it was stale or unreadable.
  bool Handle(zmq::socket_t& s, W& w, zmq::message_t& m, FleetStats* stats) {
    auto d = DecodeEnvelope(m.data(), m.size());
    if (!d.ok()) {
      stats->errors++;
      return false;
    }
    Envelope::Reader env = (*d)->root();
    if (env.getRequestId() != w.rid) return false;  // answer to a request we resent
    const int64_t now = NowNs();
    auto body = env.getBody();
    if (w.st == St::kComplete && (body.isGrant() || body.isNoWork())) {
      CountCompletion(now, stats);  // the completion's answer is the next lease
    }
    switch (body.which()) {
      case Envelope::Body::REGISTERED:
        stats->registered++;
        w.st = St::kReady;
        if (started_[w.thread]) Start(s, w, now, stats);  // registered again later
        return true;
      case Envelope::Body::GRANT: {
        auto g = body.getGrant();
        stats->grants++;
        stats->grant_lat_us.push_back(static_cast<uint32_t>((now - w.sent_ns) / 1000));
        stats->grant_t_ns.push_back(now);
        stats->first_grant_ns = std::min(stats->first_grant_ns, now);
        w.range = g.getRangeId();
        w.epoch = g.getEpoch();
        if (cfg_.copy_ms > 0) {
          w.st = St::kCopy;
          thread_local std::mt19937_64 rng(std::random_device{}());
          const int64_t half = cfg_.copy_ms * 500'000;
          w.wake_ns =
              now + half + static_cast<int64_t>(rng() % static_cast<uint64_t>(2 * half + 1));
          return true;
        }
        Send(s, w, St::kComplete, stats);
        return true;
      }
      case Envelope::Body::ACK: {
        CountCompletion(now, stats);
        Send(s, w, St::kLease, stats);
        return true;
      }
      case Envelope::Body::NO_WORK: {
        auto nw = body.getNoWork();
        stats->nowork++;
        if (nw.getComplete() || nw.getFailed() || nw.getDraining()) {
          if (nw.getFailed() && stats->first_error.empty())
            stats->first_error = "coordinator says the migration failed";
          stats->done++;
          w.st = St::kDone;
          return true;
        }
        w.st = St::kWait;
        w.wake_ns = now + std::max<int64_t>(1, nw.getRetryAfterMs()) * 1'000'000;
        return true;
      }
      case Envelope::Body::ERROR: {
        auto e = body.getError();
        if (e.getCode() == ::Error::Code::UNKNOWN_WORKER) {
          stats->unknown++;
          Send(s, w, St::kRegister, stats);
        } else if (e.getCode() == ::Error::Code::LEASE_LOST) {
          stats->lease_lost++;
          Send(s, w, St::kLease, stats);
        } else {
          stats->errors++;
          if (stats->first_error.empty()) stats->first_error = std::string(AsView(e.getMessage()));
          w.st = St::kWait;
          w.wake_ns = now + 100'000'000;
        }
        return true;
      }
      default:
        stats->errors++;
        return false;
    }
  }

  // A registered worker's first lease request: at once in a closed loop;
  // paced, at a random phase of a copy, as in a steady state, rather than
  // all 1,000 at once.
  void Start(zmq::socket_t& s, W& w, int64_t now, FleetStats* stats) {
    if (cfg_.copy_ms <= 0) {
      Send(s, w, St::kLease, stats);
      return;
    }
    thread_local std::mt19937_64 rng(std::random_device{}());
    w.st = St::kWait;
    w.wake_ns =
        now + static_cast<int64_t>(rng() % static_cast<uint64_t>(2 * cfg_.copy_ms * 1'000'000 + 1));
  }

  void CountCompletion(int64_t now, FleetStats* stats) {
    stats->completions++;
    stats->last_ack_ns = now;
    uint64_t total = completions_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (cfg_.stop_after && total >= cfg_.stop_after) stop_ = true;
  }

  FleetConfig cfg_;
  std::unique_ptr<zmq::context_t> ctx_;
  std::atomic<int> ready_{0};  // threads whose workers are all registered
  std::vector<char> started_ = std::vector<char>(cfg_.threads, 0);  // per thread
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> completions_{0};
};

// -------------------------------------------------------------- case 3 & 5 --

struct CtlRun {
  double plan_s = NAN;   // spawn -> listening (planning + schema + state insert)
  double drain_s = NAN;  // first grant -> last ack
  double grants_per_s = NAN, completions_per_s = NAN;
  double p50_ms = NAN, p99_ms = NAN, max_ms = NAN;
  double cpu_s = NAN, cpu_pct = NAN;
  double hwm_mib = NAN;
  double sim_cpu_s = NAN;  // the simulator's own CPU over the fleet run
  // Of cpu_s and sim_cpu_s: the ZeroMQ I/O threads' share (socket reads and
  // writes, i.e. mostly the kernel's TCP work for 1,000 connections).
  double cpu_zmq_s = NAN, sim_cpu_zmq_s = NAN;
  double commits = NAN, commit_s = NAN;     // state group commits and their total time
  double ranges_ms = NAN, ranges_mb = NAN;  // one `ranges` of the whole plan (--ctl-dashboard)
  uint64_t grants = 0, completions = 0;
  std::string error;
};

// A real ferry-coordinator with `ranges` one-row ranges and a simulated fleet
// that drains them all; with `watched`, while the dashboard is polled
// (--ctl-dashboard).
CtlRun ControlPlaneRun(int64_t ranges, const std::string& tag, int64_t copy_ms = 0,
                       bool watched = false, bool pg_state = false) {
  CtlRun out;
  const std::string src = KeysStore(ranges);
  const std::string target = fmt::format("{}/{}-new.db", g_opt.dir, tag);
  std::string state = fmt::format("{}/{}-state.db", g_opt.dir, tag);
  if (pg_state) {
    // --state postgresql://: a fresh database on the --pg-uri server.
    const std::string db = "ferry_bench_" + std::to_string(getpid()) + "_state";
    if (!FreshPgDb(g_opt.pg_uri, db)) {
      out.error = "cannot create the state database";
      return out;
    }
    state = UriWithDb(g_opt.pg_uri, db);
  }
  const std::string log = fmt::format("{}/{}.log", g_opt.dir, tag);
  const std::string ef = fmt::format("{}/{}.endpoints", g_opt.dir, tag);
  RemoveDb(target);
  if (!pg_state) RemoveDb(state);
  fs::remove(ef);
  // The coordinator fsyncs its state file on every group commit: start from
  // a disk with nothing left to write back from earlier cases (gigabytes of
  // copied stores), so their writeback does not stall this run's fsyncs.
  sync();
  int port = ferry::testing::FreePort();
  std::string ep = fmt::format("tcp://127.0.0.1:{}", port);
  std::vector<std::string> argv;
  for (std::string a :
       {Bin("ferry-coordinator"), std::string("--source"), "sqlite:" + src, std::string("--target"),
        "sqlite:" + target, std::string("--state"), state, std::string("--range-rows"),
        std::string("1"), std::string("--listen"), ep, std::string("--status-endpoint"),
        std::string("tcp://127.0.0.1:0"), std::string("--lease-ttl"), std::string("60"),
        std::string("--endpoints-file"), ef, std::string("--log-level"), std::string("warn")}) {
    argv.push_back(a);
  }
  {
    std::istringstream in(g_opt.ctl_coordinator_args);
    std::string a;
    while (in >> a) argv.push_back(a);
  }
  // --ctl-dashboard: every run has the HTTP listener; the watched ones are polled.
  if (g_opt.ctl_dashboard != "off") {
    argv.push_back("--http-listen");
    argv.push_back("127.0.0.1:0");
  }
  // --ctl-curve: the coordinator's key pair and one key pair for the whole
  // simulated fleet, made afresh for each run.
  ferry::CurveKeyPair server_keys, fleet_keys;
  if (g_opt.ctl_curve) {
    const std::string key = fmt::format("{}/{}-coordinator.key", g_opt.dir, tag);
    const std::string allow = fmt::format("{}/{}-fleet.allow", g_opt.dir, tag);
    for (const std::string& f : {key, key + ".pub", allow}) fs::remove(f);
    auto s = ferry::WriteNewCurveSecretKey(key);
    auto f = ferry::NewCurveKeyPair();
    if (!s.ok() || !f.ok()) {
      out.error = "cannot make CURVE keys";
      return out;
    }
    server_keys = *s;
    fleet_keys = *f;
    std::ofstream(allow) << fleet_keys.public_z85 << "\n";
    for (std::string a :
         {std::string("--curve-secret-key-file"), key, std::string("--curve-allow-file"), allow}) {
      argv.push_back(a);
    }
  }
  Child c(argv, log);
  if (!WaitListening(ef, c, 600000)) {
    out.error = "coordinator did not start; see " + log;
    return out;
  }
  out.plan_s = (NowNs() - c.start_ns()) / 1e9;
  const pid_t pid = c.pid();
  std::unique_ptr<ferry::testing::DashboardPoller> poller;
  if (watched) {
    // What one `ranges` of the whole plan costs (the page's heaviest ask).
    auto j = nlohmann::json::parse(Slurp(ef), nullptr, false);
    std::string reply;
    const int64_t r0 = NowNs();
    if (j.is_object() &&
        ferry::testing::StatusCommand(j.value("status", ""), "ranges", &reply, 60000)) {
      out.ranges_ms = (NowNs() - r0) / 1e6;
      out.ranges_mb = reply.size() / 1e6;
    }
    const auto mode = g_opt.ctl_dashboard == "browser"
                          ? ferry::testing::DashboardPoller::Mode::kBrowser
                          : ferry::testing::DashboardPoller::Mode::kHttp;
    fs::create_directories(g_opt.dir + "/" + tag + "-browser");
    auto p = ferry::testing::DashboardPoller::Start(
        mode, j.is_object() ? j.value("http_port", 0) : 0, g_opt.dir + "/" + tag + "-browser");
    if (!p.ok()) {
      out.error = "dashboard poller: " + p.status().message();
      return out;
    }
    poller = std::move(p).value();
  }
  // FERRY_BENCH_PERF=DIR: record the coordinator with perf during the drain.
  std::unique_ptr<Child> perf;
  if (const char* pd = std::getenv("FERRY_BENCH_PERF")) {
    perf =
        std::make_unique<Child>(std::vector<std::string>{"perf", "record", "-F", "499", "-g", "-o",
                                                         fmt::format("{}/{}.perf.data", pd, tag),
                                                         "-p", std::to_string(pid)},
                                log + ".perf");
    usleep(300000);
  }
  struct rusage ru0 {};
  getrusage(RUSAGE_SELF, &ru0);
  double cpu0 = ProcCpuS(pid);
  const auto zmq0 = ThreadCpuS(pid, "ZMQbg/IO"), sim_zmq0 = ThreadCpuS(getpid(), "ZMQbg/IO");
  int64_t t0 = NowNs();
  FleetConfig fc;
  fc.endpoint = ep;
  fc.workers = g_opt.fleet;
  fc.threads = g_opt.fleet_threads;
  fc.copy_ms = copy_ms;
  fc.curve_server = server_keys.public_z85;
  fc.curve_public = fleet_keys.public_z85;
  fc.curve_secret = fleet_keys.secret_z85;
  Fleet fleet(fc);  // alive until its I/O threads' CPU is read
  FleetStats st = fleet.Run();
  int64_t t1 = NowNs();
  if (poller) {
    auto ps = poller->Stop();
    Log(fmt::format("dashboard poller ({}): {} requests, {:.1f} MB, {} errors {}",
                    g_opt.ctl_dashboard, ps.requests, ps.bytes / 1e6, ps.errors, ps.note));
    poller.reset();
  }
  double cpu1 = ProcCpuS(pid);
  out.cpu_zmq_s = CpuSince(zmq0, ThreadCpuS(pid, "ZMQbg/IO"));
  out.sim_cpu_zmq_s = CpuSince(sim_zmq0, ThreadCpuS(getpid(), "ZMQbg/IO"));
  if (!g_opt.ctl_latency_dump.empty()) {
    static std::map<std::string, int> runs_of_tag;  // one file per run: <tag>-<n>.lat
    fs::create_directories(g_opt.ctl_latency_dump);
    std::ofstream f(fmt::format("{}/{}-{}.lat", g_opt.ctl_latency_dump, tag, ++runs_of_tag[tag]));
    for (size_t i = 0; i < st.grant_t_ns.size(); ++i)
      f << (st.grant_t_ns[i] - t0) / 1000 << " " << st.grant_lat_us[i] << "\n";
  }
  struct rusage ru1 {};
  getrusage(RUSAGE_SELF, &ru1);
  auto secs = [](const timeval& a) { return a.tv_sec + a.tv_usec / 1e6; };
  out.sim_cpu_s = secs(ru1.ru_utime) + secs(ru1.ru_stime) - secs(ru0.ru_utime) - secs(ru0.ru_stime);
  if (perf) {
    perf->Signal(SIGINT);
    perf->Wait(60000);
  }
  out.hwm_mib = ProcStatusKb(pid, "VmHWM") / 1024.0;
  {
    // Group-commit evidence from the coordinator's own metrics.
    std::string metrics;
    auto j = nlohmann::json::parse(Slurp(ef), nullptr, false);
    if (j.is_object() &&
        ferry::testing::StatusCommand(j.value("status", ""), "metrics", &metrics, 5000)) {
      auto metric = [&](const std::string& name) {
        size_t p = metrics.find("\n" + name + " ");
        return p == std::string::npos ? NAN : std::atof(metrics.c_str() + p + name.size() + 2);
      };
      out.commits = metric("ferry_state_commits_total");
      out.commit_s = metric("ferry_state_commit_seconds_sum");
      // The commit-latency histogram, for the log: slow commits hold every
      // reply of their pass.
      std::string hist;
      std::istringstream lines(metrics);
      for (std::string l; std::getline(lines, l);) {
        if (l.rfind("ferry_state_commit_seconds_bucket", 0) == 0) hist += " " + l.substr(34);
      }
      Log("state commit latency histogram (cumulative):" + hist);
    }
  }
  out.cpu_s = cpu1 - cpu0;
  out.cpu_pct = 100.0 * out.cpu_s / ((t1 - t0) / 1e9);
  out.grants = st.grants;
  out.completions = st.completions;
  if (st.first_grant_ns != INT64_MAX && st.last_ack_ns > st.first_grant_ns) {
    out.drain_s = (st.last_ack_ns - st.first_grant_ns) / 1e9;
    out.grants_per_s = st.grants / out.drain_s;
    out.completions_per_s = st.completions / out.drain_s;
  }
  out.p50_ms = Percentile(st.grant_lat_us, 0.50) / 1000.0;
  out.p99_ms = Percentile(st.grant_lat_us, 0.99) / 1000.0;
  out.max_ms = Percentile(st.grant_lat_us, 1.0) / 1000.0;
  if (st.completions != static_cast<uint64_t>(ranges) ||
      st.done != static_cast<uint64_t>(g_opt.fleet)) {
    out.error = fmt::format("{} completions for {} ranges, {}/{} workers told complete; {}",
                            st.completions, ranges, st.done, g_opt.fleet, st.first_error);
  }
  Log(fmt::format(
      "control plane {} ranges: plan {:.2f} s, drain {:.2f} s, {:.0f} grants/s, {:.0f} "
      "completions/s, p50 {:.2f} ms, p99 {:.2f} ms, max {:.1f} ms, coordinator CPU {:.1f} s "
      "({:.0f}%), {:.0f} state commits ({:.1f} s in commits, {:.1f} grants+completions per "
      "commit), simulator CPU {:.1f} s, VmHWM {:.1f} MiB; lease_lost {} unknown {} timeouts {} "
      "errors {} {}",
      ranges, out.plan_s, out.drain_s, out.grants_per_s, out.completions_per_s, out.p50_ms,
      out.p99_ms, out.max_ms, out.cpu_s, out.cpu_pct, out.commits, out.commit_s,
      2.0 * out.grants / out.commits, out.sim_cpu_s, out.hwm_mib, st.lease_lost, st.unknown,
      st.timeouts, st.errors, out.error));
  c.Signal(SIGTERM);
  if (!c.Wait(30000)) {
    c.Signal(SIGKILL);
    c.Wait(5000);
  }
  if (!g_opt.keep) {
    RemoveDb(target);
    RemoveDb(state);
  }
  return out;
}

double g_coord_hwm_100k = NAN;

// The runs of one control-plane setting, as rows of its section.
struct CtlSeries {
  std::string section;
  std::vector<CtlRun> runs;

  // f(run) over the runs without an error.
  template <typename F>
  std::vector<double> Col(F f) const {
    std::vector<double> v;
    for (const CtlRun& r : runs)
      if (r.error.empty() && !std::isnan(f(r))) v.push_back(f(r));
    return v;
  }
  template <typename F>
  double MedianOf(F f) const {
    return Median(Col(f));
  }
  // A row; its note is the last run's error instead, if one failed.
  template <typename F>
  void Add(const std::string& name, F f, const std::string& unit,
           const std::string& note = "") const {
    std::string err;
    for (const CtlRun& r : runs)
      if (!r.error.empty()) err = r.error;
    Row row{section, name, Col(f), unit};
    row.note = err.empty() ? note : "ERROR: " + err;
    g_rows.push_back(row);
  }
};

void CaseControlPlane() {
  for (int64_t n : g_opt.ctl_ranges) {
    const std::string sec = fmt::format(
        "3. Control plane: {} simulated workers ({} threads) vs ferry-coordinator, {} ranges",
        g_opt.fleet, g_opt.fleet_threads, n);
    CtlSeries closed{sec, {}};
    for (int i = 0; i < g_opt.repeat; ++i) {
      closed.runs.push_back(ControlPlaneRun(n, fmt::format("c3-{}", n)));
    }
    closed.Add(
        "planning (spawn -> listening)", [](auto& r) { return r.plan_s; }, "s",
        "plan + schema + state insert, --range-rows 1");
    closed.Add(
        "drain (first grant -> last ack)", [](auto& r) { return r.drain_s; }, "s");
    closed.Add(
        "grants/s", [](auto& r) { return r.grants_per_s; }, "/s");
    closed.Add(
        "completions/s", [](auto& r) { return r.completions_per_s; }, "/s");
    closed.Add(
        "grant latency p50", [](auto& r) { return r.p50_ms; }, "ms",
        "request (LeaseRequest, or Complete asking for the next) -> Grant");
    closed.Add(
        "grant latency p99", [](auto& r) { return r.p99_ms; }, "ms");
    closed.Add(
        "mean latency forced by the closed loop",
        [](auto& r) { return 1000.0 * g_opt.fleet / r.completions_per_s; }, "ms",
        "Little's law: workers always waiting / completions/s");
    closed.Add(
        "grant latency max", [](auto& r) { return r.max_ms; }, "ms");
    closed.Add(
        "coordinator CPU over the fleet run", [](auto& r) { return r.cpu_s; }, "s",
        "/proc/PID/stat utime+stime, registration to last answer");
    closed.Add(
        "  of which ZeroMQ I/O threads", [](auto& r) { return r.cpu_zmq_s; }, "s",
        "socket reads/writes: mostly kernel TCP, one message per syscall per connection");
    closed.Add(
        "coordinator CPU utilisation", [](auto& r) { return r.cpu_pct; }, "%");
    closed.Add(
        "state group commits (whole run)", [](auto& r) { return r.commits; }, "",
        "ferry_state_commits_total");
    closed.Add(
        "time in state commits (whole run)", [](auto& r) { return r.commit_s; }, "s",
        "ferry_state_commit_seconds_sum (synchronous=FULL)");
    closed.Add(
        "simulator CPU over the fleet run (same host)", [](auto& r) { return r.sim_cpu_s; }, "s",
        "competes with the coordinator for the cores");
    closed.Add(
        "  of which ZeroMQ I/O threads", [](auto& r) { return r.sim_cpu_zmq_s; }, "s");
    closed.Add(
        "coordinator peak RSS (VmHWM)", [](auto& r) { return r.hwm_mib; }, "MiB");
    const double comp = closed.MedianOf([](auto& r) { return r.completions_per_s; });
    const double p99 = closed.MedianOf([](auto& r) { return r.p99_ms; });
    g_bars.push_back(
        Bar{fmt::format("control plane {} ranges: completions/s, {} workers", n, g_opt.fleet),
            ">= 20000", fmt::format("{:.0f}", comp),
            std::isnan(comp) ? std::nullopt : std::optional<bool>(comp >= 20000)});
    g_bars.push_back(Bar{fmt::format("control plane {} ranges: p99 grant latency, closed loop", n),
                         "<= 10 ms", fmt::format("{:.2f} ms", p99),
                         std::isnan(p99) ? std::nullopt : std::optional<bool>(p99 <= 10)});
    if (g_opt.ctl_copy_ms > 0) {
      // The same fleet with a copy time per range, as real workers have: the
      // latency of a grant at (at least) the throughput bar's load, instead
      // of the queueing of 1,000 requests that are always outstanding.
      CtlSeries paced{sec, {}};
      for (int i = 0; i < g_opt.repeat; ++i) {
        paced.runs.push_back(ControlPlaneRun(n, fmt::format("c3p-{}", n), g_opt.ctl_copy_ms));
      }
      paced.Add(
          "paced: completions/s", [](auto& r) { return r.completions_per_s; }, "/s",
          fmt::format("each worker copies {} ms (+-50%) per range", g_opt.ctl_copy_ms));
      paced.Add(
          "paced: grant latency p50", [](auto& r) { return r.p50_ms; }, "ms");
      paced.Add(
          "paced: grant latency p99", [](auto& r) { return r.p99_ms; }, "ms");
      paced.Add(
          "paced: grant latency max", [](auto& r) { return r.max_ms; }, "ms");
      paced.Add(
          "paced: coordinator CPU utilisation", [](auto& r) { return r.cpu_pct; }, "%");
      const double pc = paced.MedianOf([](auto& r) { return r.completions_per_s; });
      const double pp = paced.MedianOf([](auto& r) { return r.p99_ms; });
      g_bars.push_back(Bar{
          fmt::format("control plane {} ranges: p99 grant latency at >= 20000 completions/s", n),
          "<= 10 ms", fmt::format("{:.2f} ms at {:.0f}/s", pp, pc),
          std::isnan(pp) || std::isnan(pc) ? std::nullopt
                                           : std::optional<bool>(pp <= 10 && pc >= 20000)});
    }
    if (g_opt.ctl_dashboard != "off") {
      // The same closed loop while someone watches the dashboard: side by
      // side with the rows above.
      CtlSeries watched{sec, {}};
      for (int i = 0; i < g_opt.repeat; ++i) {
        watched.runs.push_back(ControlPlaneRun(n, fmt::format("c3d-{}", n), 0, true));
      }
      const std::string who = g_opt.ctl_dashboard == "browser"
                                  ? "headless Chromium showing the page"
                                  : "GET / and /api/* (full ranges) every 1 s";
      watched.Add(
          "dashboard watched: completions/s", [](auto& r) { return r.completions_per_s; }, "/s",
          who);
      watched.Add(
          "dashboard watched: grant latency p50", [](auto& r) { return r.p50_ms; }, "ms");
      watched.Add(
          "dashboard watched: grant latency p99", [](auto& r) { return r.p99_ms; }, "ms");
      watched.Add(
          "dashboard watched: grant latency max", [](auto& r) { return r.max_ms; }, "ms");
      watched.Add(
          "dashboard watched: coordinator CPU utilisation", [](auto& r) { return r.cpu_pct; }, "%");
      watched.Add(
          "one `ranges` of the whole plan (status socket)", [](auto& r) { return r.ranges_ms; },
          "ms", "the dashboard's heaviest ask, answered on the event loop");
      watched.Add(
          "  its size", [](auto& r) { return r.ranges_mb; }, "MB");
    }
    if (g_opt.ctl_state_pg && !g_opt.pg_uri.empty()) {
      // The same fleet with the coordinator's state in PostgreSQL (one
      // pipelined transaction per pass, guarded by the leader's term): side
      // by side with the SQLite state file above.
      CtlSeries pg{sec, {}};
      for (int i = 0; i < g_opt.repeat; ++i) {
        pg.runs.push_back(ControlPlaneRun(n, fmt::format("c3pg-{}", n), 0, false, true));
      }
      pg.Add(
          "PostgreSQL state: completions/s", [](auto& r) { return r.completions_per_s; }, "/s",
          "--state postgresql://, same fleet, closed loop");
      pg.Add(
          "PostgreSQL state: grant latency p99", [](auto& r) { return r.p99_ms; }, "ms");
      pg.Add(
          "PostgreSQL state: state group commits", [](auto& r) { return r.commits; }, "");
      pg.Add(
          "PostgreSQL state: time in state commits", [](auto& r) { return r.commit_s; }, "s");
      const double pgc = pg.MedianOf([](auto& r) { return r.completions_per_s; });
      g_bars.push_back(
          Bar{fmt::format("control plane {} ranges on PostgreSQL state: completions/s", n),
              ">= 20000", fmt::format("{:.0f}", pgc),
              std::isnan(pgc) ? std::nullopt : std::optional<bool>(pgc >= 20000)});
      if (g_opt.ctl_copy_ms > 0) {
        CtlSeries pgp{sec, {}};
        for (int i = 0; i < g_opt.repeat; ++i) {
          pgp.runs.push_back(
              ControlPlaneRun(n, fmt::format("c3pgp-{}", n), g_opt.ctl_copy_ms, false, true));
        }
        pgp.Add(
            "PostgreSQL state, paced: completions/s", [](auto& r) { return r.completions_per_s; },
            "/s");
        pgp.Add(
            "PostgreSQL state, paced: grant latency p99", [](auto& r) { return r.p99_ms; }, "ms");
        const double pc = pgp.MedianOf([](auto& r) { return r.completions_per_s; });
        const double pp = pgp.MedianOf([](auto& r) { return r.p99_ms; });
        g_bars.push_back(Bar{
            fmt::format("control plane {} ranges on PostgreSQL state: paced p99 grant latency", n),
            "<= 10 ms", fmt::format("{:.2f} ms at {:.0f}/s", pp, pc),
            std::isnan(pp) ? std::nullopt : std::optional<bool>(pp <= 10)});
      }
    }
    if (n == 100000) {
      double hwm = 0;
      for (auto& r : closed.runs) hwm = std::max(hwm, r.hwm_mib);
      g_coord_hwm_100k = hwm;
    }
  }
}

// ------------------------------------------------------------------ case 6 --

// Two coordinators on one PostgreSQL state: the leader is SIGKILLed while
// workers copy; how long until the standby serves the job (answers its
// status socket as leader)? Median of --takeover-runs runs.
void CaseTakeover() {
  const std::string sec = "6. Takeover: 2 coordinators on a PostgreSQL state, leader SIGKILLed";
  if (g_opt.pg_uri.empty()) {
    g_rows.push_back(Row{sec, "all", {}, "s", 0, NAN, "skipped (no PostgreSQL URI)"});
    return;
  }
  const int ttl_s = 2;
  std::vector<double> took;
  const std::string legacy = g_opt.dir + "/c6-legacy.db";
  RemoveDb(legacy);
  ferry::testing::MakeDemoStore(legacy, 20000);
  for (int run = 0; run < g_opt.takeover_runs; ++run) {
    const std::string db = "ferry_bench_" + std::to_string(getpid()) + "_ha";
    if (!FreshPgDb(g_opt.pg_uri, db)) break;
    const std::string state = UriWithDb(g_opt.pg_uri, db);
    const std::string target = fmt::format("{}/c6-new-{}.db", g_opt.dir, run);
    RemoveDb(target);
    std::vector<std::unique_ptr<Child>> coords;
    std::vector<std::string> status;
    std::string workers;
    for (int i = 0; i < 2; ++i) {
      const int port = ferry::testing::FreePort(), sport = ferry::testing::FreePort();
      status.push_back(fmt::format("tcp://127.0.0.1:{}", sport));
      workers += fmt::format("{}tcp://127.0.0.1:{}", i ? "," : "", port);
      coords.push_back(std::make_unique<Child>(
          std::vector<std::string>{Bin("ferry-coordinator"), "--source", "sqlite:" + legacy,
                                   "--target", "sqlite:" + target, "--state", state, "--listen",
                                   fmt::format("tcp://127.0.0.1:{}", port), "--status-endpoint",
                                   status.back(), "--lease-ttl", std::to_string(ttl_s),
                                   "--range-rows", "1000", "--batch-rows", "200", "--log-level",
                                   "warn"},
          fmt::format("{}/c6-coordinator-{}-{}.log", g_opt.dir, run, i)));
      if (i == 0) usleep(1500000);  // the first one leads
    }
    auto state_of = [&](int i) {
      std::string reply;
      if (!ferry::testing::StatusCommand(status[i], "status", &reply, 500)) return std::string();
      auto j = nlohmann::json::parse(reply, nullptr, false);
      return j.is_object() ? j.value("state", "") : std::string();
    };
    std::string ignored;
    ferry::testing::StatusCommand(status[0], "throttle 2000", &ignored, 2000);
    Child worker({Bin("ferry-worker"), "--coordinator", workers},
                 fmt::format("{}/c6-worker-{}.log", g_opt.dir, run));
    const bool ready = ferry::testing::WaitFor(
        [&] { return state_of(0) == "copying" && state_of(1) == "standby"; }, 30000);
    if (ready) {
      usleep(1000000);  // rows are moving
      const int64_t t0 = NowNs();
      coords[0]->Signal(SIGKILL);
      if (ferry::testing::WaitFor(
              [&] {
                const std::string st = state_of(1);
                return !st.empty() && st != "standby";
              },
              60000)) {
        took.push_back((NowNs() - t0) / 1e9);
        Log(fmt::format("takeover run {}: {:.2f} s", run + 1, took.back()));
      }
    }
    worker.Signal(SIGKILL);
    for (auto& c : coords) c->Signal(SIGKILL);
    Psql(g_opt.pg_uri, "DROP DATABASE IF EXISTS " + db + " WITH (FORCE)");
    RemoveDb(target);
  }
  g_rows.push_back(Row{sec, "standby serving after the leader's SIGKILL", took, "s", 0, NAN,
                       fmt::format("--lease-ttl {}; the bar is TTL + 2 s", ttl_s)});
  std::vector<double> sorted = took;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted.empty() ? NAN : sorted[sorted.size() / 2];
  g_bars.push_back(
      Bar{fmt::format("takeover after SIGKILL of the leader (median of {})", took.size()),
          fmt::format("<= {} s", ttl_s + 2), fmt::format("{:.2f} s", median),
          std::isnan(median) ? std::nullopt : std::optional<bool>(median <= ttl_s + 2)});
}

void CaseMemory() {
  const std::string sec =
      "5. Memory: one ferry-worker process over tcp (peak RSS = VmHWM from /proc, sampled every 20 "
      "ms)";
  std::vector<std::pair<int64_t, double>> peaks;
  for (int64_t rows : g_opt.mem_rows) {
    const std::string legacy = DataStore(rows, g_opt.value_bytes, g_opt.tables);
    const std::string target = g_opt.dir + "/c5-new.db";
    const std::string state = g_opt.dir + "/c5-state.db";
    const std::string log = g_opt.dir + "/c5.log";
    const auto tables = UserTables(legacy);
    const auto want = CountRows(legacy, tables);
    RemoveDb(target);
    long wkb = 0, ckb = 0;
    double s = FerryTcp("sqlite:" + legacy, "sqlite:" + target, state, 1, log, &wkb, &ckb);
    std::string bad = std::isnan(s) ? "run failed" : CheckCounts(want, CountRows(target, tables));
    Row r{sec,
          fmt::format("ferry-worker peak RSS, {} rows ({:.0f} MiB file)", rows,
                      fs::file_size(legacy) / 1048576.0),
          {wkb / 1024.0},
          "MiB"};
    r.note = bad.empty() ? fmt::format(
                               "1 run; copy took {:.1f} s ({:.0f} rows/s); coordinator "
                               "peak {:.1f} MiB",
                               s, rows / s, ckb / 1024.0)
                         : "FAILED: " + bad;
    g_rows.push_back(r);
    if (bad.empty()) peaks.emplace_back(rows, wkb / 1024.0);
    Log(fmt::format("memory {} rows: worker {:.1f} MiB, coordinator {:.1f} MiB, {:.1f} s", rows,
                    wkb / 1024.0, ckb / 1024.0, s));
    if (!g_opt.keep) RemoveDb(target);
  }
  if (!peaks.empty()) {
    double mx = 0;
    std::string m;
    for (auto& [rows, mib] : peaks) {
      mx = std::max(mx, mib);
      m += fmt::format("{}{:.1f} MiB @ {} rows", m.empty() ? "" : ", ", mib, rows);
    }
    g_bars.push_back(
        Bar{"worker peak RSS, any store size", "<= 64 MiB", m, std::optional<bool>(mx <= 64)});
  }
  if (!std::isnan(g_coord_hwm_100k)) {
    g_rows.push_back(Row{sec,
                         "coordinator peak RSS, 100000 ranges (case 3)",
                         {g_coord_hwm_100k},
                         "MiB",
                         0,
                         NAN,
                         "max over the case-3 runs"});
    g_bars.push_back(Bar{"coordinator peak RSS at 100,000 ranges", "<= 256 MiB",
                         fmt::format("{:.1f} MiB", g_coord_hwm_100k),
                         std::optional<bool>(g_coord_hwm_100k <= 256)});
  }
}

// ------------------------------------------------------------------ case 4 --

// One registered simulated worker that asks for a lease every `every_ms`
// until a Grant arrives; returns the receive time (ns), 0 on timeout.
int64_t WaitFirstGrant(const std::string& endpoint, const std::string& id, int64_t timeout_ms) {
  zmq::context_t ctx(1);
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::reconnect_ivl, 5);
  s.set(zmq::sockopt::reconnect_ivl_max, 5);
  s.connect(endpoint);
  uint64_t rid = 0;
  int64_t deadline = NowNs() + timeout_ms * 1000000;
  int64_t next_send = 0;
  auto send = [&](bool reg) {
    capnp::MallocMessageBuilder b;
    auto body = NewEnvelope(b, ++rid).getBody();
    if (reg) {
      auto r = body.initRegister();
      r.setWorkerId(id);
      r.setHost("bench-sim");
      r.setPid(static_cast<uint32_t>(getpid()));
      r.setVersion(ferry::kFerryVersion);
    } else {
      body.initLeaseRequest().setWorkerId(id);
    }
    zmq::message_t f = ToFrame(b);
    (void)s.send(f, zmq::send_flags::dontwait);
  };
  while (NowNs() < deadline) {
    if (NowNs() >= next_send) {
      send(false);
      next_send = NowNs() + 20'000'000;
    }
    std::vector<zmq::pollitem_t> items = {{static_cast<void*>(s), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, std::chrono::milliseconds(5));
    zmq::message_t m;
    while (s.recv(m, zmq::recv_flags::dontwait)) {
      int64_t now = NowNs();
      auto d = DecodeEnvelope(m.data(), m.size());
      if (!d.ok()) continue;
      auto body = (*d)->root().getBody();
      if (body.isGrant()) return now;
      if (body.isError() && body.getError().getCode() == ::Error::Code::UNKNOWN_WORKER) {
        send(true);
      } else if (body.isRegistered()) {
        send(false);
      }
    }
  }
  return 0;
}

void CaseRecovery() {
  const std::string sec = "4. Recovery";
  // (a) coordinator SIGKILL + restart -> first grant, 100k ranges in state.
  {
    const int64_t n = g_opt.restart_ranges;
    const std::string src = KeysStore(n);
    const std::string target = g_opt.dir + "/c4-new.db";
    const std::string state = g_opt.dir + "/c4-state.db";
    const std::string log = g_opt.dir + "/c4.log";
    const std::string ef = state + ".endpoints";
    RemoveDb(target);
    RemoveDb(state);
    fs::remove(ef);
    int port = ferry::testing::FreePort();
    std::string ep = fmt::format("tcp://127.0.0.1:{}", port);
    std::vector<std::string> argv = {Bin("ferry-coordinator"),
                                     "--source",
                                     "sqlite:" + src,
                                     "--target",
                                     "sqlite:" + target,
                                     "--state",
                                     state,
                                     "--range-rows",
                                     "1",
                                     "--listen",
                                     ep,
                                     "--status-endpoint",
                                     "tcp://127.0.0.1:0",
                                     "--lease-ttl",
                                     "60",
                                     "--endpoints-file",
                                     ef,
                                     "--log-level",
                                     "warn"};
    auto c = std::make_unique<Child>(argv, log);
    std::vector<double> samples;
    std::string note;
    if (!WaitListening(ef, *c, 600000)) {
      note = "coordinator did not start";
    } else {
      // Mid-run: the fleet drains part of the plan, then the coordinator dies.
      FleetConfig fc;
      fc.endpoint = ep;
      fc.workers = g_opt.fleet;
      fc.threads = g_opt.fleet_threads;
      fc.stop_after = static_cast<uint64_t>(n / 5);
      FleetStats st = Fleet(fc).Run();
      c->Signal(SIGKILL);
      c->Wait(10000);
      Sql sdb(state);
      note = fmt::format("killed after {} completions; state: {} done, {} leased of {}",
                         st.completions, sdb.Int("SELECT count(*) FROM ranges WHERE state=2"),
                         sdb.Int("SELECT count(*) FROM ranges WHERE state=1"), n);
      for (int i = 0; i < g_opt.repeat; ++i) {
        fs::remove(ef);
        c = std::make_unique<Child>(argv, log);
        int64_t t0 = c->start_ns();
        int64_t got = WaitFirstGrant(ep, "sim-0-0", 60000);
        if (got) samples.push_back((got - t0) / 1e9);
        Log(fmt::format("restart {}: first grant after {:.3f} s", i + 1,
                        got ? (got - t0) / 1e9 : -1.0));
        c->Signal(SIGKILL);
        c->Wait(10000);
      }
    }
    g_rows.push_back(Row{sec, fmt::format("coordinator restart -> first grant, {} ranges", n),
                         samples, "s", 0, NAN, note + "; resend every 20 ms, reconnect 5 ms"});
    double m = Median(samples);
    g_bars.push_back(Bar{fmt::format("coordinator restart to first grant, {} ranges", n), "<= 1 s",
                         samples.empty() ? "-" : fmt::format("{:.3f} s", m),
                         samples.empty() ? std::nullopt : std::optional<bool>(m <= 1.0)});
    c.reset();
    if (!g_opt.keep) {
      RemoveDb(target);
      RemoveDb(state);
    }
  }
  // (b) worker SIGKILL mid-range: rows written twice vs rows since its last
  // heartbeat (audit trigger on the pre-created target table, as in
  // tests/fault_test.cc).
  {
    const int64_t rows = g_opt.dup_rows;
    const std::string legacy = fmt::format("{}/dup-{}.db", g_opt.dir, rows);
    if (!fs::exists(legacy)) {
      RemoveDb(legacy + ".tmp");
      {
        Sql db(legacy + ".tmp");
        db.Exec(fmt::format(
            "PRAGMA journal_mode=OFF; BEGIN; CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB, "
            "note TEXT); WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE "
            "x<{}) INSERT INTO t SELECT x, randomblob(40), 'row ' || x FROM c; COMMIT;",
            rows));
      }
      fs::rename(legacy + ".tmp", legacy);
    }
    const std::string target = g_opt.dir + "/c4b-new.db";
    const std::string state = g_opt.dir + "/c4b-state.db";
    const std::string log = g_opt.dir + "/c4b.log";
    std::vector<double> dup, since_hb;
    std::string note;
    for (int i = 0; i < g_opt.repeat; ++i) {
      RemoveDb(target);
      RemoveDb(state);
      {
        Sql t(target);
        t.Exec(R"sql(
          CREATE TABLE __ferry_meta (key TEXT PRIMARY KEY, value);
          CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB, note TEXT);
          CREATE TABLE audit (seq INTEGER PRIMARY KEY, id INTEGER);
          CREATE TRIGGER t_audit AFTER INSERT ON t BEGIN
            INSERT INTO audit (id) VALUES (NEW.id);
          END;)sql");
      }
      int port = ferry::testing::FreePort();
      std::string ep = fmt::format("tcp://127.0.0.1:{}", port);
      std::string ef = state + ".endpoints";
      fs::remove(ef);
      Child c({Bin("ferry-coordinator"),
               "--source",
               "sqlite:" + legacy,
               "--target",
               "sqlite:" + target,
               "--state",
               state,
               "--listen",
               ep,
               "--status-endpoint",
               "tcp://127.0.0.1:0",
               "--exit-when-done",
               "--lease-ttl",
               "2",
               "--batch-rows",
               "2000",
               "--range-rows",
               "10000000",
               "--endpoints-file",
               ef,
               "--log-level",
               "warn"},
              log);
      if (!WaitListening(ef, c, 60000)) break;
      {
        // 100,000 rows/s: the range takes ~5 s, so the kill lands mid-copy
        // (unthrottled, the whole range copies in about half a second).
        auto j = nlohmann::json::parse(Slurp(ef), nullptr, false);
        std::string reply;
        if (!j.is_object() || !ferry::testing::StatusCommand(j.value("status", ""),
                                                             "throttle 100000", &reply, 5000)) {
          Log("worker kill: could not set the throttle");
          break;
        }
      }
      auto a =
          std::make_unique<Child>(std::vector<std::string>{Bin("ferry-worker"), "--coordinator", ep,
                                                           "--id", "dup-a", "--log-level", "warn"},
                                  log);
      {
        // Until 30% of the rows are committed in the new store (not in a
        // heartbeat: the first one of a lease comes early), then a little
        // more, at a point unrelated to the heartbeat cadence: mid-copy even
        // at bench_smoke's size (60,000 rows, 0.6 s).
        Sql t(target);
        int64_t dl = NowNs() + 120'000'000'000;
        while (NowNs() < dl) {
          if (t.Int("SELECT count(*) FROM t", 0) >= rows * 3 / 10) break;
          usleep(2000);
        }
      }
      usleep(static_cast<useconds_t>((37 + 29 * i) % 100) * 1000);
      a->Signal(SIGKILL);
      a->Wait(5000);
      const int64_t at_kill_hb = Sql(state).Int("SELECT rows FROM ranges WHERE id=1", 0);
      const int64_t committed = Sql(target).Int("SELECT count(*) FROM t", 0);
      auto b =
          std::make_unique<Child>(std::vector<std::string>{Bin("ferry-worker"), "--coordinator", ep,
                                                           "--id", "dup-b", "--log-level", "warn"},
                                  log);
      bool ok = RunOk(c, 600000, "coordinator (dup)", log);
      ok = RunOk(*b, 30000, "worker b (dup)", log) && ok;
      if (!ok) break;
      const int64_t writes = Sql(target).Int("SELECT count(*) FROM audit", 0);
      dup.push_back(static_cast<double>(writes - rows));
      since_hb.push_back(static_cast<double>(committed - at_kill_hb));
      Log(fmt::format("worker kill {}: committed {} at kill, heartbeated {}, written twice {}",
                      i + 1, committed, at_kill_hb, writes - rows));
      note = fmt::format(
          "{} rows, batch 2000, throttle 100000 rows/s, lease-ttl 2 s (heartbeat 400 ms)", rows);
    }
    Row r1{sec, "rows copied twice after worker SIGKILL", dup, "rows", 0, NAN, note};
    Row r2{sec, "rows committed since last heartbeat at kill", since_hb, "rows", 0,
           NAN, "target count(*) - state ranges.rows at kill"};
    g_rows.push_back(r1);
    g_rows.push_back(r2);
    bool within = !dup.empty();
    for (size_t i = 0; i < dup.size(); ++i) within = within && dup[i] <= since_hb[i];
    g_bars.push_back(Bar{
        "worker SIGKILL: rows copied twice <= rows since last heartbeat", "each run",
        dup.empty() ? "-" : fmt::format("{:.0f} vs {:.0f} (median)", Median(dup), Median(since_hb)),
        dup.empty() ? std::nullopt : std::optional<bool>(within)});
    if (!g_opt.keep) {
      RemoveDb(target);
      RemoveDb(state);
    }
  }
}

// ---------------------------------------------------------------- case 7 --

// The projection of case 7 (a rename of the table and two columns, one
// computed column), as a migration spec and as the baseline's own SQL.
constexpr const char* kSpecSelect =
    "id AS user_id, name AS full_name, email, score * 100 AS score_cents, payload";
constexpr const char* kSpecBaselineSelect = "id, name, email, score * 100, payload";
// What ferry derives for the target (the columns' declared types; the
// computed column untyped), created by the baseline too.
constexpr const char* kSpecTargetDdl =
    "CREATE TABLE \"users_v2\" (\"user_id\" INTEGER, \"full_name\" TEXT NOT NULL, \"email\" "
    "TEXT, \"score_cents\", \"payload\" BLOB, PRIMARY KEY (\"user_id\"))";

void CaseSpec() {
  const std::string legacy = DataStore(g_opt.rows, g_opt.value_bytes, 1);  // one table, t0
  const std::string target = g_opt.dir + "/c7-new.db";
  const std::string state = g_opt.dir + "/c7-state.db";
  const std::string log = g_opt.dir + "/c7.log";
  const int64_t total = CountRows(legacy, {"t0"}).at("t0");
  const std::string projection = g_opt.dir + "/c7-projection.toml";
  const std::string lua = g_opt.dir + "/c7-identity-lua.toml";
  const std::string entry = fmt::format(
      "[[table]]\ntarget = \"users_v2\"\nsource = \"t0\"\nselect = \"{}\"\n", kSpecSelect);
  std::ofstream(projection) << entry;
  std::ofstream(lua) << entry << "lua = \"return function(row) return row end\"\n";
  const std::string script = g_opt.dir + "/c7-baseline.sql";
  std::ofstream(script) << "PRAGMA journal_mode=WAL;\n"
                        << kSpecTargetDdl << ";\nATTACH " << Quote(legacy)
                        << " AS src;\nBEGIN; INSERT INTO main.users_v2 SELECT "
                        << kSpecBaselineSelect << " FROM src.t0; COMMIT;\n";
  const std::string section = fmt::format(
      "7. Migration spec, SQLite -> SQLite: {} rows, 1 table, select \"{}\"", total, kSpecSelect);
  std::vector<TimedCase> cases;
  auto add = [&](const std::string& name, std::function<double()> run) {
    cases.push_back(TimedCase{name, std::move(run)});
  };
  add("baseline: sqlite3 CLI INSERT..SELECT <projection>", [&] {
    Child c({"sqlite3", "-batch", "-bail", target}, log, script);
    return RunOk(c, 3600000, "sqlite3 projection baseline", log) ? c.wall_s() : NAN;
  });
  size_t proj1 = cases.size();
  add("ferry embedded, 1 worker, --spec (projection)", [&] {
    return FerryEmbedded("sqlite:" + legacy, "sqlite:" + target, state, 1, log,
                         {"--spec", projection});
  });
  size_t proj2 = cases.size();
  add("ferry embedded, 2 workers, --spec (projection)", [&] {
    return FerryEmbedded("sqlite:" + legacy, "sqlite:" + target, state, 2, log,
                         {"--spec", projection});
  });
  size_t lua1 = cases.size();
  add("ferry embedded, 1 worker, --spec + identity Lua", [&] {
    return FerryEmbedded("sqlite:" + legacy, "sqlite:" + target, state, 1, log, {"--spec", lua});
  });
  size_t lua2 = cases.size();
  add("ferry embedded, 2 workers, --spec + identity Lua", [&] {
    return FerryEmbedded("sqlite:" + legacy, "sqlite:" + target, state, 2, log, {"--spec", lua});
  });
  // Diagnostic (not a bar): the projection through the read + write path
  // the Lua function needs, without the function.
  add("diagnostic: 2 workers, projection, --no-direct-copy", [&] {
    return FerryEmbedded("sqlite:" + legacy, "sqlite:" + target, state, 2, log,
                         {"--spec", projection, "--no-direct-copy"});
  });
  const std::vector<double> med = RunInterleaved(
      section, total, cases,
      [&] {
        RemoveDb(target);
        return true;
      },
      [&] {
        return CheckCounts({{"users_v2", total}}, CountRows(target, {"users_v2"}));
      });
  const double b = med[0];
  auto ratio_bar = [&](const std::string& what, const std::string& want, double x, double base,
                       double limit) {
    const bool have = !std::isnan(x) && !std::isnan(base);
    g_bars.push_back(Bar{what, want, have ? fmt::format("{:.2f}x", x / base) : "-",
                         have ? std::optional<bool>(x / base <= limit) : std::nullopt});
  };
  ratio_bar("spec: projection, ferry 1 worker vs sqlite3 INSERT..SELECT", "<= 1.10x", med[proj1], b,
            1.10);
  ratio_bar("spec: projection, ferry 2 workers vs sqlite3 INSERT..SELECT", "<= 1.10x", med[proj2],
            b, 1.10);
  ratio_bar("spec: identity Lua vs the same copy without it, 1 worker", "<= 1.5x", med[lua1],
            med[proj1], 1.5);
  ratio_bar("spec: identity Lua vs the same copy without it, 2 workers", "<= 1.5x", med[lua2],
            med[proj2], 1.5);
  if (!g_opt.keep) RemoveDb(target);

  // Into PostgreSQL: ferry with the projection vs pgloader without one.
  const std::string pg_what =
      "spec: into PostgreSQL with the projection, ferry 2 workers vs "
      "pgloader without one (speed ratio)";
  if (g_opt.pg_uri.empty() || !HaveExe("pgloader") || !HaveExe("psql")) {
    g_rows.push_back(Row{"7b. Migration spec, SQLite -> PostgreSQL",
                         "all",
                         {},
                         "s",
                         0,
                         NAN,
                         g_opt.pg_uri.empty() ? "skipped (no PostgreSQL URI)"
                                              : "skipped (pgloader or psql not installed)"});
    g_bars.push_back(Bar{pg_what, ">= 1.5", "skipped", std::nullopt});
    return;
  }
  const std::string db = "ferry_bench";
  const std::string pg_target = UriWithDb(g_opt.pg_uri, db);
  const std::string pg_state = g_opt.dir + "/c7-pg-state.db";
  std::vector<TimedCase> pg_cases;
  pg_cases.push_back(
      TimedCase{"baseline: pgloader sqlite:// -> postgresql:// (no projection)", [&] {
                  Child c({"pgloader", "sqlite://" + legacy, pg_target}, log);
                  return RunOk(c, 3600000, "pgloader", log) ? c.wall_s() : NAN;
                }});
  for (int w : {1, 2}) {
    pg_cases.push_back(TimedCase{
        fmt::format("ferry embedded, {} worker{}, --spec (projection)", w, w == 1 ? "" : "s"),
        [&, w] {
          return FerryEmbedded("sqlite:" + legacy, pg_target, pg_state, w, log,
                               {"--spec", projection});
        }});
  }
  const std::vector<double> pg_med = RunInterleaved(
      fmt::format("7b. Migration spec, SQLite -> PostgreSQL: {} rows, database {}", total, db),
      total, pg_cases, [&] { return FreshPgDb(g_opt.pg_uri, db); },
      [&] {
        std::string o;
        Psql(pg_target, "SELECT (SELECT count(*) FROM pg_tables WHERE tablename = 'users_v2')", &o);
        const std::string t = std::atoi(o.c_str()) > 0 ? "users_v2" : "t0";
        return CheckCounts({{t, total}}, PgCounts(pg_target, {t}));
      });
  Psql(g_opt.pg_uri, "DROP DATABASE IF EXISTS " + db + " WITH (FORCE)");
  const bool have = !std::isnan(pg_med[0]) && !std::isnan(pg_med[2]);
  g_bars.push_back(Bar{pg_what, ">= 1.5",
                       have ? fmt::format("{:.2f} (pgloader {:.2f} s / ferry {:.2f} s)",
                                          pg_med[0] / pg_med[2], pg_med[0], pg_med[2])
                            : "-",
                       have ? std::optional<bool>(pg_med[0] / pg_med[2] >= 1.5) : std::nullopt});
}

// ----------------------------------------------------------------- case 10 --

// Online mode (DESIGN.md "Online mode"): SQLite -> SQLite while a
// ferry-test-writer process writes the legacy store's `live` table (40%
// inserts, 35% updates, 10% primary-key changes, 15% deletes, each its own
// autocommit transaction; WAL, synchronous=normal).
//   a) --online-rows rows (default 100k) at 1,000 writes/s, `cutover` once
//      catching up: the freeze (cutover_freeze_ms), --repeat runs.
//   b) --online-big-rows rows (default 1M) at 5,000 writes/s with
//      --auto-cutover, the copy throttled to rows / 25 rows/s (~25 s: the
//      changes of the whole copy pile up, ~125,000, before replay starts):
//      the copy's time, the lag (lag_seconds sampled every 200 ms) during
//      the copy and the catch-up, and the time from the copy's end
//      (catching_up) to complete.
// Each run checks that the new store's live table equals the legacy one
// (which refuses writes after the cut-over): count and sum of n.
struct OnlineRun {
  bool ok = false;
  std::string why;
  double copy_s = NAN;         // start -> catching_up
  double catchup_s = NAN;      // catching_up -> complete
  double freeze_ms = NAN;      // cutover_freeze_ms
  double max_lag_copy = 0;     // lag_seconds seen while copying
  double max_lag_catchup = 0;  // ... while catching up
  double writer_rate = NAN;    // writes attempted per second
  int64_t applied = 0;
};

std::string OnlineLegacy(int64_t rows) {
  const std::string path = fmt::format("{}/c10-legacy-{}.db", g_opt.dir, rows);
  RemoveDb(path);
  Sql db(path);
  db.Exec(fmt::format(
      "PRAGMA journal_mode=WAL; CREATE TABLE live (id INTEGER PRIMARY KEY, val TEXT NOT NULL, n "
      "INTEGER NOT NULL); CREATE TABLE side (id INTEGER PRIMARY KEY, n INTEGER); INSERT INTO side "
      "VALUES (1, 0); WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < "
      "{0}) "
      "INSERT INTO live SELECT i, 'v' || i || '-' || hex(randomblob(20)), i FROM g;",
      rows));
  return path;
}

OnlineRun RunOnline(int64_t rows, int rate, bool auto_cutover, int64_t throttle,
                    const std::string& tag) {
  OnlineRun r;
  const std::string legacy = OnlineLegacy(rows);
  const std::string target = g_opt.dir + "/c10-new.db";
  const std::string state = g_opt.dir + "/c10-state.db";
  RemoveDb(target);
  RemoveDb(state);
  const std::string wlog = fmt::format("{}/c10-writes-{}.log", g_opt.dir, tag);
  fs::remove(wlog);
  Child writer({Bin("ferry-test-writer"), "--store", "sqlite:" + legacy, "--table", "live",
                "--initial", std::to_string(rows), "--rate", std::to_string(rate), "--log", wlog,
                "--side", "side", "--synchronous", "normal"},
               fmt::format("{}/c10-writer-{}.out", g_opt.dir, tag));
  usleep(500000);
  const std::string status = fmt::format("tcp://127.0.0.1:{}", ferry::testing::FreePort());
  const std::string listen = fmt::format("tcp://127.0.0.1:{}", ferry::testing::FreePort());
  std::vector<std::string> args = {Bin("ferry-coordinator"),
                                   "--source",
                                   "sqlite:" + legacy,
                                   "--target",
                                   "sqlite:" + target,
                                   "--state",
                                   state,
                                   "--listen",
                                   listen,
                                   "--status-endpoint",
                                   status,
                                   "--online",
                                   "--log-level",
                                   "warn"};
  if (auto_cutover) args.push_back("--auto-cutover");
  Child coord(args, fmt::format("{}/c10-coordinator-{}.log", g_opt.dir, tag));
  std::vector<std::unique_ptr<Child>> workers;
  for (int i = 0; i < 2; ++i) {
    workers.push_back(
        std::make_unique<Child>(std::vector<std::string>{Bin("ferry-worker"), "--coordinator",
                                                         listen, "--log-level", "warn"},
                                fmt::format("{}/c10-worker-{}-{}.log", g_opt.dir, tag, i)));
  }
  auto status_of = [&]() {
    std::string reply;
    if (!ferry::testing::StatusCommand(status, "status", &reply, 1000)) return nlohmann::json();
    auto j = nlohmann::json::parse(reply, nullptr, false);
    return j.is_object() ? j : nlohmann::json();
  };
  const int64_t t0 = NowNs();
  int64_t t_catchup = 0;
  bool asked = false, throttled = throttle == 0;
  std::string state_now;
  while (NowNs() - t0 < int64_t{900} * 1000000000) {
    nlohmann::json st = status_of();
    if (!coord.running()) {
      r.why = "the coordinator exited";
      break;
    }
    state_now = st.value("state", "");
    if (!throttled && !state_now.empty()) {
      std::string reply;
      throttled =
          ferry::testing::StatusCommand(status, fmt::format("throttle {}", throttle), &reply, 2000);
    }
    const double lag = st.contains("lag_seconds") && st["lag_seconds"].is_number()
                           ? st["lag_seconds"].get<double>()
                           : 0;
    if (state_now == "copying") r.max_lag_copy = std::max(r.max_lag_copy, lag);
    if (state_now == "catching_up" || state_now == "cutting_over") {
      if (!t_catchup) t_catchup = NowNs();
      r.max_lag_catchup = std::max(r.max_lag_catchup, lag);
      if (!auto_cutover && !asked && st.value("changes_applied", 0) > 0) {
        std::string reply;
        ferry::testing::StatusCommand(status, "cutover", &reply, 2000);
        asked = true;
      }
    }
    if (state_now == "complete") {
      if (!t_catchup) t_catchup = NowNs();
      r.copy_s = (t_catchup - t0) / 1e9;
      r.catchup_s = (NowNs() - t_catchup) / 1e9;
      if (st.contains("cutover_freeze_ms") && st["cutover_freeze_ms"].is_number()) {
        r.freeze_ms = st["cutover_freeze_ms"].get<double>();
      }
      r.applied = st.value("changes_applied", int64_t{0});
      r.ok = true;
      break;
    }
    if (state_now == "failed") {
      r.why = "failed: " + st.value("failure", std::string());
      break;
    }
    usleep(200000);
  }
  if (!r.ok && r.why.empty()) r.why = "not complete within 900 s (state " + state_now + ")";
  writer.Signal(SIGTERM);
  writer.Wait(20000);
  for (auto& w : workers) {
    w->Signal(SIGTERM);
    w->Wait(30000);
  }
  coord.Signal(SIGTERM);
  coord.Wait(30000);
  // The writer's own count of committed writes over its run.
  auto j = nlohmann::json::parse(Slurp(fmt::format("{}/c10-writer-{}.out", g_opt.dir, tag)),
                                 nullptr, false);
  if (j.is_object() && j.value("seconds", 0.0) > 0) {
    // Attempted writes: after the cut-over they are refused, not committed.
    r.writer_rate = (j.value("committed", 0.0) + j.value("refused", 0.0) + j.value("errors", 0.0)) /
                    j.value("seconds", 1.0);
  }
  if (r.ok) {
    Sql a(legacy), b(target);
    const std::string q = "SELECT count(*) || ' ' || total(n) FROM live";
    const std::string la = a.Rows(q)[0][0], nb = b.Rows(q)[0][0];
    if (la != nb) {
      r.ok = false;
      r.why = "live differs: legacy " + la + ", new " + nb;
    }
  }
  if (!g_opt.keep) {
    RemoveDb(target);
    RemoveDb(state);
    RemoveDb(legacy);
  }
  return r;
}

void CaseOnline() {
  const std::string sec =
      "10. Online: SQLite -> SQLite while a writer process writes the legacy store";
  if (access(Bin("ferry-test-writer").c_str(), X_OK) != 0) {
    g_rows.push_back(Row{sec, "all", {}, "s", 0, NAN, "skipped (no ferry-test-writer)"});
    return;
  }
  std::vector<double> freezes;
  std::string bad;
  for (int run = 0; run < g_opt.repeat; ++run) {
    OnlineRun r = RunOnline(g_opt.online_rows, 1000, false, 0, "a" + std::to_string(run));
    Log(fmt::format(
        "online 1,000 writes/s run {}: {} freeze {:.0f} ms, copy {:.1f} s, catch-up "
        "+ cut-over {:.1f} s, writer {:.0f}/s {}",
        run + 1, r.ok ? "ok" : "FAILED", r.freeze_ms, r.copy_s, r.catchup_s, r.writer_rate, r.why));
    if (r.ok) {
      freezes.push_back(r.freeze_ms);
    } else {
      bad = r.why;
    }
  }
  g_rows.push_back(
      Row{sec, fmt::format("cut-over freeze, {} rows, 1,000 writes/s", g_opt.online_rows), freezes,
          "ms", 0, NAN, bad.empty() ? "`cutover` once catching up" : "FAILED: " + bad});
  const double worst = freezes.empty() ? NAN : *std::max_element(freezes.begin(), freezes.end());
  g_bars.push_back(Bar{"cut-over freeze at 1,000 writes/s (worst run)", "<= 1000 ms",
                       fmt::format("{:.0f} ms", worst),
                       std::isnan(worst) ? std::nullopt : std::optional<bool>(worst <= 1000)});

  const int64_t throttle = std::max<int64_t>(1000, g_opt.online_big_rows / 25);
  OnlineRun big = RunOnline(g_opt.online_big_rows, 5000, true, throttle, "b");
  Log(
      fmt::format("online 5,000 writes/s: {} copy {:.1f} s, copy end -> complete {:.1f} s, max "
                  "lag copying {:.1f} s / catching up {:.1f} s, freeze {:.0f} ms, writer {:.0f}/s, "
                  "applied {} {}",
                  big.ok ? "ok" : "FAILED", big.copy_s, big.catchup_s, big.max_lag_copy,
                  big.max_lag_catchup, big.freeze_ms, big.writer_rate, big.applied, big.why));
  const std::string what =
      fmt::format("{} rows, 5,000 writes/s, copy throttled to {} rows/s, --auto-cutover",
                  g_opt.online_big_rows, throttle);
  g_rows.push_back(Row{sec,
                       what + ": copy",
                       {big.copy_s},
                       "s",
                       g_opt.online_big_rows,
                       NAN,
                       fmt::format("max lag while copying {:.1f} s; writer {:.0f} writes/s",
                                   big.max_lag_copy, big.writer_rate)});
  g_rows.push_back(Row{sec,
                       what + ": copy end -> complete",
                       {big.catchup_s},
                       "s",
                       0,
                       NAN,
                       big.ok ? fmt::format("max lag while catching up {:.1f} s; freeze {:.0f} "
                                            "ms; {} changes applied",
                                            big.max_lag_catchup, big.freeze_ms, big.applied)
                              : "FAILED: " + big.why});
  g_bars.push_back(Bar{"5,000 writes/s on 1M rows: cut-over after the copy's end", "<= 60 s",
                       fmt::format("{:.1f} s (lag at most {:.1f} s while catching up)",
                                   big.catchup_s, big.max_lag_catchup),
                       big.ok ? std::optional<bool>(big.catchup_s <= 60) : std::nullopt});
}

bool Wants(int c) {
  std::istringstream in(g_opt.cases);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item == std::to_string(c)) return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ferry-bench: ferry vs baselines, side by side, in one run (issue #6)"};
  std::string mem_rows;
  std::string ctl_ranges;
  std::string workers;
  app.add_flag("--quick", g_opt.quick,
               "smaller sizes: memory case 100k and 1M rows, control plane 10k and 100k ranges");
  app.add_option("--repeat", g_opt.repeat, "runs per timed case (median reported)")->default_val(3);
  app.add_option("--dir", g_opt.dir, "work directory (stores are cached here)")
      ->default_val("/tmp/ferry-bench");
  app.add_option("--bin-dir", g_opt.bin_dir,
                 "where ferry-coordinator / ferry-worker are (default: beside ferry-bench, else "
                 "the build's bin directory)")
      ->default_val(ferry::testing::BinDir());
  app.add_option("--cases", g_opt.cases,
                 "which cases, e.g. 1,3,5 (6: takeover, 7: migration spec, 8: skew into "
                 "PostgreSQL, 9: adaptive batches under load, 10: online mode)")
      ->default_val("1,2,3,4,5,6,7,8,9,10");
  app.add_option("--rows", g_opt.rows, "case 1/2 rows")->default_val(1000000);
  app.add_option("--value-bytes", g_opt.value_bytes, "case 1/2/5 BLOB payload per row")
      ->default_val(100);
  app.add_option("--tables", g_opt.tables, "case 1/2/5 tables")->default_val(4);
  app.add_option("--workers", workers, "case 1/2 embedded worker counts")->default_val("1,2,4");
  app.add_option("--tcp-workers", g_opt.tcp_workers, "case 1 ferry-worker processes")
      ->default_val(2);
  app.add_option("--pg-uri", g_opt.pg_uri,
                 "PostgreSQL server for case 2 (a database ferry_bench is created and dropped "
                 "on it); default $FERRY_BENCH_PG_URI");
  app.add_option("--fleet", g_opt.fleet, "simulated workers")->default_val(1000);
  app.add_option("--fleet-threads", g_opt.fleet_threads, "simulator threads")->default_val(4);
  app.add_option("--ctl-ranges", ctl_ranges, "case 3 range counts")->default_val("10000,100000");
  app.add_option("--ctl-copy-ms", g_opt.ctl_copy_ms,
                 "case 3 paced runs: simulated copy time per range (0: skip them)")
      ->default_val(35);
  app.add_option("--ctl-coordinator-args", g_opt.ctl_coordinator_args,
                 "case 3: extra ferry-coordinator flags, e.g. \"--io-threads 1\"");
  app.add_flag("--ctl-curve", g_opt.ctl_curve,
               "case 3: CURVE between the coordinator and the simulated fleet (one fleet key)");
  app.add_option("--ctl-latency-dump", g_opt.ctl_latency_dump,
                 "case 3: write each grant's (microseconds since start, latency us) to "
                 "DIR/<case>-<run>.lat (created if missing), to see when the slow grants happen");
  app.add_option("--ctl-dashboard", g_opt.ctl_dashboard,
                 "case 3: also run the closed loop while the web dashboard is watched: http (GET "
                 "/ and /api/* every second) or browser (headless Chromium showing the page)")
      ->check(CLI::IsMember({"off", "http", "browser"}))
      ->default_val("off");
  app.add_flag("--ctl-state-pg", g_opt.ctl_state_pg,
               "case 3: also run with the coordinator's state in PostgreSQL (a fresh database "
               "on --pg-uri), side by side with the SQLite state file");
  app.add_option("--takeover-runs", g_opt.takeover_runs,
                 "case 6 (two coordinators on a PostgreSQL state): runs, the median is the bar")
      ->default_val(5);
  app.add_option("--online-rows", g_opt.online_rows,
                 "case 10: rows of the run at 1,000 writes/s (the freeze)")
      ->default_val(100000);
  app.add_option("--online-big-rows", g_opt.online_big_rows,
                 "case 10: rows of the run at 5,000 writes/s (lag, cut-over after the copy)")
      ->default_val(1000000);
  app.add_option("--restart-ranges", g_opt.restart_ranges, "case 4 ranges in state")
      ->default_val(100000);
  app.add_option("--dup-rows", g_opt.dup_rows, "case 4 rows for the worker-kill run")
      ->default_val(500000);
  app.add_option("--mem-rows", mem_rows,
                 "case 5 store sizes (default 1000000,10000000; --quick 100000,1000000)");
  app.add_option("--diag-batch-rows", g_opt.diag_batch_rows,
                 "case 1 diagnostic row: 2 workers with this --batch-rows (0: skip)")
      ->default_val(2000);
  app.add_flag("--keep", g_opt.keep, "keep targets and state files");
  CLI11_PARSE(app, argc, argv);
  auto parse_list = [](const std::string& s) {
    std::vector<int64_t> v;
    std::stringstream ss(s);
    std::string x;
    while (std::getline(ss, x, ','))
      if (!x.empty()) v.push_back(std::stoll(x));
    return v;
  };
  g_opt.workers.clear();
  for (int64_t w : parse_list(workers)) g_opt.workers.push_back(static_cast<int>(w));
  g_opt.ctl_ranges = parse_list(ctl_ranges);
  g_opt.mem_rows = parse_list(mem_rows);
  if (g_opt.mem_rows.empty()) {
    g_opt.mem_rows = g_opt.quick ? std::vector<int64_t>{100000, 1000000}
                                 : std::vector<int64_t>{1000000, 10000000};
  }
  if (g_opt.pg_uri.empty() && std::getenv("FERRY_BENCH_PG_URI"))
    g_opt.pg_uri = std::getenv("FERRY_BENCH_PG_URI");
  if (g_opt.repeat < 1) g_opt.repeat = 1;
  fs::create_directories(g_opt.dir);
  for (const char* exe : {"ferry-coordinator", "ferry-worker"}) {
    if (access(Bin(exe).c_str(), X_OK) != 0) {
      std::cerr << "ferry-bench: error: " << Bin(exe)
                << " not found: build first (bash deploy/bench.sh does)\n";
      return 2;
    }
  }
  // 1,000 simulated workers and the coordinator's 1,000 connections need fds.
  struct rlimit rl {};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  signal(SIGPIPE, SIG_IGN);

  const std::string machine = MachineInfo();
  const std::string load0 = LoadAvg();
  const double t0 = NowS();
  Log("machine: " + machine + "; load " + load0);
  std::vector<std::pair<int, Row>> rows;  // (case, row), as the cases finish
  std::vector<std::pair<int, Bar>> bars;
  try {
    // The control plane runs first, on a quiet machine: the data cases
    // leave gigabytes to write back and a PostgreSQL server checkpointing
    // and vacuuming after its bulk load, which would stall the state file's
    // fsyncs and skew grant latency. The table is printed in case order.
    for (int c : {3, 6, 1, 2, 8, 9, 4, 5, 7, 10}) {
      if (!Wants(c)) continue;
      switch (c) {
        case 1:
          CaseSqlite();
          break;
        case 2:
          CasePostgres();
          break;
        case 3:
          CaseControlPlane();
          break;
        case 4:
          CaseRecovery();
          break;
        case 5:
          CaseMemory();
          break;
        case 6:
          CaseTakeover();
          break;
        case 7:
          CaseSpec();
          break;
        case 8:
          CaseSkew();
          break;
        case 9:
          CaseAdaptiveBatches();
          break;
        case 10:
          CaseOnline();
          break;
      }
      for (Row& r : g_rows) rows.emplace_back(c, std::move(r));
      for (Bar& b : g_bars) bars.emplace_back(c, std::move(b));
      g_rows.clear();
      g_bars.clear();
    }
    auto by_case = [](const auto& a, const auto& b) { return a.first < b.first; };
    std::stable_sort(rows.begin(), rows.end(), by_case);
    std::stable_sort(bars.begin(), bars.end(), by_case);
    for (auto& [c, r] : rows) g_rows.push_back(std::move(r));
    for (auto& [c, b] : bars) g_bars.push_back(std::move(b));
  } catch (const std::exception& e) {
    std::cerr << "ferry-bench: error: " << e.what() << "\n";
    std::vector<Row> done;  // the finished cases first, then the one that failed
    for (auto& [c, r] : rows) done.push_back(std::move(r));
    g_rows.insert(g_rows.begin(), std::make_move_iterator(done.begin()),
                  std::make_move_iterator(done.end()));
    PrintTable(std::cerr);
    return 1;
  }
  std::ostringstream out;
  out << "ferry-bench (" << ferry::kFerryVersion << ", " << (g_opt.quick ? "quick" : "full")
      << " mode, " << g_opt.repeat << " runs per timed case, medians)\n";
  out << "machine: " << machine << "\n";
  out << fmt::format("load average (1/5/15 min): at start {}, at end {}; wall {:.0f} s\n", load0,
                     LoadAvg(), NowS() - t0);
  PrintTable(out);
  PrintBars(out);
  std::cout << out.str();
  std::ofstream(g_opt.dir + "/results.txt") << out.str();
  return 0;
}
