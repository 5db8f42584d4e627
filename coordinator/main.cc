// ferry-coordinator: wires flags, logging, signals, the CoordinatorServer, the
// HTTP endpoint and (with --local-workers) in-process workers together.
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <thread>

#include "common/cli.h"
#include "common/clock.h"
#include "common/file_checks.h"
#include "common/logging.h"
#include "common/signals.h"
#include "coordinator/coordinator_server.h"
#include "coordinator/dry_run.h"
#include "coordinator/http_endpoint.h"
#include "spec/migration_spec.h"
#include "stores/store.h"
#include "worker/worker.h"

using namespace ferry;

int main(int argc, char** argv) {
  InstallStopSignals();  // first: a SIGTERM during start-up is a clean stop too
  CLI::App app{
      "ferry-coordinator: plans the legacy store into key ranges, leases them to "
      "workers, and commits the migration.",
      "ferry-coordinator"};
  CoordinatorOptions o;
  LogFlags log;
  int local_workers = -1;
  double ttl_s = 10;
  std::string endpoints_file;
  std::string http_listen;
  AddCommonFlags(app, &log);
  app.add_option("--source", o.source_uri, "legacy store: sqlite:PATH or postgresql://...")
      ->required();
  app.add_option("--target", o.target_uri, "new store: sqlite:PATH or postgresql://...")
      ->required();
  app.add_option("--state", o.state_path,
                 "coordinator state: a SQLite file, or postgresql://... (required unless "
                 "--dry-run)");
  app.add_option("--tables", o.tables, "comma-separated tables to move (default: all user tables)");
  // Defaults shown by --help are the CoordinatorOptions values (one source).
  auto* from_flag =
      app.add_option("--from-version", o.from_version, "version the migration starts from")
          ->capture_default_str();
  auto* to_flag =
      app.add_option("--to-version", o.to_version, "version the new store is at when done")
          ->capture_default_str();
  std::string spec_path;
  app.add_option("--spec", spec_path,
                 "migration spec (TOML): which tables of the new store to fill from which legacy "
                 "tables, and how (select, where, create, lua); README, \"Migrating between "
                 "formats\"");
  app.add_option("--max-rejects", o.max_rejects,
                 "rows a spec may fail to move (recorded in __ferry_rejects) before the migration "
                 "fails")
      ->capture_default_str();
  bool dry_run = false;
  app.add_flag("--dry-run", dry_run,
               "plan only: print each table's DDL, range count and first 3 rows as they would be "
               "written; writes nothing anywhere");
  app.add_option("--listen", o.listen, "worker endpoint (widen for a fleet)")
      ->capture_default_str();
  app.add_option("--status-endpoint", o.status_endpoint, "operator status socket (ZeroMQ REP)")
      ->capture_default_str();
  app.add_option("--local-workers", local_workers, "run N workers in-process; exit when done");
  bool no_direct = false;
  app.add_flag("--no-direct-copy", no_direct,
               "local workers always read rows and write them (default: a SQLite new store "
               "copies from a SQLite legacy store itself)");
  bool no_read_ahead = false;
  app.add_flag("--no-read-ahead", no_read_ahead,
               "local workers read each batch only once the previous one is written (default: "
               "the next batch is read, and transformed, while the previous one is written)");
  int io_threads = 2;
  app.add_option("--io-threads", io_threads, "ZeroMQ I/O threads serving worker connections")
      ->default_val(2)
      ->check(CLI::Range(1, 64));
  app.add_option("--lease-ttl", ttl_s, "lease time-to-live in seconds")->default_val(10);
  app.add_option("--range-rows", o.range_rows, "rows per planned range")->capture_default_str();
  app.add_option("--batch-rows", o.batch_rows, "rows per copy batch (one transaction)")
      ->capture_default_str();
  app.add_option("--max-attempts", o.max_attempts,
                 "permanent errors on a range before it is marked failed")
      ->capture_default_str();
  double stall_s = 30;
  app.add_option("--stall-after", stall_s,
                 "a range whose cursor has not moved for this much leased time (across re-grants) "
                 "is listed as stalled")
      ->default_val(30);
  app.add_flag("--exit-when-done", o.exit_when_done,
               "exit once the migration is complete (default: keep serving status)");
  app.add_flag("--retry-failed", o.retry_failed, "put failed ranges back to pending on start");
  app.add_flag("--verify", o.verify,
               "after copying, verify every range in both stores, repair what differs, and bump "
               "the version only once every range is verified");
  int64_t batch_time_ms = 0;
  app.add_option("--batch-time-ms", batch_time_ms,
                 "workers size each batch from their measured rate to take about this many ms "
                 "(--batch-rows becomes the cap)");
  app.add_option("--force-split-interval-ms", o.force_split_interval_ms,
                 "tests: ask every copy lease's owner to split this often")
      ->group("");
  app.add_option("--http-listen", http_listen,
                 "serve the web dashboard (GET /), its JSON (/api/status, /api/ranges, "
                 "/api/workers, /api/events), /metrics, /healthz and /readyz over HTTP on "
                 "HOST:PORT (e.g. 127.0.0.1:7402); read-only");
  app.add_option("--endpoints-file", endpoints_file,
                 "write the bound worker and status endpoints here (JSON)");
  app.add_option("--curve-secret-key-file", o.curve_secret_key_file,
                 "encrypt and authenticate the worker endpoint with CURVE: this coordinator's "
                 "secret key (make one with `ferryctl keygen`)");
  app.add_option("--curve-allow-file", o.curve_allow_file,
                 "with --curve-secret-key-file: the workers' public keys, one per line");
  app.add_option(
      "--status-curve-secret-key-file", o.status_curve_secret_key_file,
      "authenticate and encrypt the status socket with CURVE: its secret key (make one "
      "with `ferryctl keygen`); only operators in --status-curve-allow-file get answers");
  app.add_option(
      "--status-curve-allow-file", o.status_curve_allow_file,
      "with --status-curve-secret-key-file: the operators' (ferryctl's) public keys, one "
      "per line");
  double max_lag_s = 1, max_freeze_s = 5;
  app.add_flag("--online", o.online,
               "the legacy store keeps taking writes: capture its changes (triggers on SQLite, a "
               "logical replication slot on PostgreSQL), replay them once every range is copied, "
               "and cut over on `ferryctl cutover` (README, Online migrations)");
  app.add_flag("--auto-cutover", o.auto_cutover,
               "with --online: cut over by itself as soon as the change backlog is small");
  app.add_option("--cutover-max-lag", max_lag_s,
                 "with --online: freeze legacy writes only when the oldest unapplied change is at "
                 "most this many seconds old")
      ->default_val(1);
  app.add_option("--cutover-max-freeze", max_freeze_s,
                 "with --online: roll a cut-over back (writes flow again) if the changes are not "
                 "drained within this many seconds of freezing")
      ->default_val(5);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return HandleParseError(app, e);
  }
  if (local_workers == 0 || local_workers < -1) {
    std::cerr << "ferry-coordinator: error: --local-workers must be at least 1 (omit it to serve "
                 "remote ferry-worker processes)\n";
    return kExitUsage;
  }
  if (app.count("--batch-time-ms") && (batch_time_ms <= 0 || batch_time_ms > 3600000)) {
    std::cerr << "ferry-coordinator: error: --batch-time-ms must be a positive number of "
                 "milliseconds (e.g. 500), at most 3600000; omit it for batches of --batch-rows\n";
    return kExitUsage;
  }
  if (batch_time_ms > 0) o.batch_time_ms = static_cast<uint32_t>(batch_time_ms);
  o.lease_ttl_ms = static_cast<int64_t>(ttl_s * 1000);
  o.stall_ms = static_cast<int64_t>(stall_s * 1000);
  o.cutover_max_lag_ms = static_cast<int64_t>(max_lag_s * 1000);
  o.cutover_max_freeze_ms = static_cast<int64_t>(max_freeze_s * 1000);
  if (!spec_path.empty()) {
    // Loaded and validated (its Lua chunks run) before any store is opened.
    Result<MigrationSpec> spec = LoadSpecFile(spec_path);
    if (!spec.ok()) return Fail("ferry-coordinator", spec.status());
    Result<VersionPair> versions = CheckSpecVersions(
        *spec, from_flag->count() ? std::optional<int64_t>(o.from_version) : std::nullopt,
        to_flag->count() ? std::optional<int64_t>(o.to_version) : std::nullopt,
        VersionPair{o.from_version, o.to_version});
    if (!versions.ok()) return Fail("ferry-coordinator", versions.status());
    o.from_version = versions->from;
    o.to_version = versions->to;
    o.spec = std::move(spec).value();
  }
  StartLogging(log);
  if (dry_run) {
    Status d = DryRun(o, std::cout);
    return d.ok() ? kExitOk : Fail("ferry-coordinator", d);
  }
  // Before anything (the state file, its lock) is created: a mistake is one
  // line naming the flag.
  if (!endpoints_file.empty()) {
    Status usable = CheckOutputFile("--endpoints-file", endpoints_file);
    if (!usable.ok()) return Fail("ferry-coordinator", usable);
  }

  // The I/O threads do the per-connection TCP and framing work; with a large
  // fleet a single one is the coordinator's bottleneck (ferry-bench case 3).
  zmq::context_t ctx(io_threads);
  SystemClock clock;   // lease deadlines: wall clock, persisted
  SteadyClock steady;  // in-process workers' own deadlines
  CoordinatorServer coord(o, &clock, &ctx);
  Status s = coord.Start();
  if (!s.ok()) return Fail("ferry-coordinator", s);
  if (coord.already_done()) {
    std::cout << fmt::format("ferry: the new store {} is already at version {}; nothing to do\n",
                             RedactUri(o.target_uri), o.to_version);
    return kExitOk;
  }
  std::unique_ptr<HttpEndpoint> http;
  if (!http_listen.empty()) {
    StatusQueries* queries = coord.queries();
    auto h = HttpEndpoint::Start(
        http_listen, [queries](const std::string& command) { return queries->Ask(command, 3000); });
    if (!h.ok()) return Fail("ferry-coordinator", h.status());
    http = std::move(h).value();
  }
  if (!endpoints_file.empty()) {
    std::ofstream f(endpoints_file + ".tmp");
    f << nlohmann::json{{"listen", coord.listen_endpoint()},
                        {"status", coord.status_endpoint()},
                        {"http_port", http ? http->port() : 0},
                        {"pid", static_cast<int64_t>(getpid())}}
             .dump()
      << "\n";
    f.close();
    if (!f || std::rename((endpoints_file + ".tmp").c_str(), endpoints_file.c_str()) != 0) {
      return Fail("ferry-coordinator",
                  InvalidArgument(fmt::format("--endpoints-file {}: cannot be written ({}); check "
                                              "the directory and the free space",
                                              endpoints_file, std::strerror(errno))));
    }
  }

  if (local_workers > 1 && o.target_uri.rfind("sqlite:", 0) == 0) {
    LogEvent(spdlog::level::info, "sqlite_one_writer",
             {{"local_workers", local_workers},
              {"note",
               "a SQLite new store takes one writer at a time: workers beyond the first "
               "add no speed (README, Performance)"}});
  }
  const int64_t t0 = MonotonicMs();
  const uint64_t rows0 = coord.RowsCopied();
  std::atomic<bool> workers_stop{false};
  std::atomic<int> workers_exited{0};
  std::vector<Status> worker_status(local_workers > 0 ? local_workers : 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < local_workers; ++i) {
    threads.emplace_back([&, i] {
      WorkerOptions wo;
      wo.coordinator = coord.inproc_endpoint();
      wo.id = fmt::format("{}-local{}", DefaultWorkerId(), i);
      wo.direct_copy = !no_direct;
      wo.read_ahead = !no_read_ahead;
      Worker w(wo, &ctx, &workers_stop, &steady);
      worker_status[i] = w.Run();
      workers_exited++;
    });
  }
  int64_t stop_at = 0;
  int64_t done_at = 0;
  auto should_exit = [&] {
    bool done = coord.complete() || coord.failed();
    if (local_workers > 0) {
      if (StopRequested() && !workers_stop) {
        workers_stop = true;  // they release their leases while we still serve
        stop_at = MonotonicMs();
      }
      if (workers_exited == local_workers) return true;
      return stop_at && MonotonicMs() - stop_at > 15000;  // bounded
    }
    if (StopRequested()) return true;
    if (!o.exit_when_done || !done) return false;
    // Linger until every live remote worker has heard that the migration is
    // over (so it exits instead of retrying a vanished coordinator), bounded.
    if (!done_at) done_at = MonotonicMs();
    return coord.AllWorkersToldDone() || MonotonicMs() - done_at > 10000;
  };
  Status r = coord.Run(should_exit);
  workers_stop = true;
  for (auto& t : threads) t.join();

  const double secs = std::max<int64_t>(1, MonotonicMs() - t0) / 1000.0;
  const uint64_t rows = coord.RowsCopied() - std::min(rows0, coord.RowsCopied());
  if (r.ok() && coord.already_done()) {
    std::cout << fmt::format("ferry: the new store {} is already at version {}; nothing to do\n",
                             RedactUri(o.target_uri), o.to_version);
    return kExitOk;
  }
  if (r.ok()) {
    std::cout << fmt::format(
        "ferry: complete: {} rows, {} bytes copied in {:.2f} s ({:.0f} rows/s); new store at "
        "version {}\n",
        rows, coord.BytesCopied(), secs, rows / secs, o.to_version);
    return kExitOk;
  }
  for (const Status& ws : worker_status) {
    if (!ws.ok() && ws.code() != Code::kPermanent) return Fail("ferry-coordinator", ws);
  }
  if (r.code() == Code::kFailedPrecondition && StopRequested()) {
    std::cerr << "ferry-coordinator: stopped before the migration completed; start it again with "
                 "the same arguments to resume\n";
    return local_workers > 0 ? kExitInterrupted : kExitOk;
  }
  if (r.code() == Code::kPermanent) {
    std::cerr << "ferry-coordinator: error: migration failed: " << r.message()
              << " (fix the cause, then restart with --retry-failed)\n";
    return kExitFailed;
  }
  return Fail("ferry-coordinator", r);
}
