// ferryctl: the operator's client for the coordinator's status socket.
#include <fmt/format.h>
#include <unistd.h>

#include <iostream>
#include <thread>

#include "common/cli.h"
#include "common/clock.h"
#include "common/curve.h"
#include "common/file_checks.h"
#include "common/signals.h"
#include "ctl/ctl_client.h"
#include "ctl/online_commands.h"
#include "ctl/verify.h"
#include "stores/store.h"

using namespace ferry;

namespace {

int WaitOnTarget(const std::string& uri, int64_t to_version, double timeout_s) {
  const int64_t deadline = MonotonicMs() + static_cast<int64_t>(timeout_s * 1000);
  const std::optional<std::string> sqlite_path = SqlitePathOf(uri);
  Status last;
  for (;;) {
    // A SQLite new store that does not exist yet may still be created; one
    // that is not a SQLite database never becomes one: say so now.
    const bool missing = sqlite_path && ::access(sqlite_path->c_str(), F_OK) != 0;
    if (sqlite_path && !missing) {
      Status usable = CheckSqliteFile("--target", *sqlite_path, FileUse::kRead);
      if (!usable.ok()) return Fail("ferryctl", usable);
    }
    auto store = missing ? Result<std::unique_ptr<Store>>(Unavailable(
                               fmt::format("the new store {} does not exist yet", RedactUri(uri))))
                         : OpenStore(uri, StoreRole::kSource);
    if (store.ok()) {
      auto v = (*store)->ReadVersion();
      if (v.ok() && v->has_value() && **v >= to_version) {
        std::cout << fmt::format("ferry: {} is at version {}\n", RedactUri(uri), **v);
        return kExitOk;
      }
      last =
          v.ok()
              ? Unavailable(fmt::format("{} is not at version {} yet", RedactUri(uri), to_version))
              : v.status();
    } else {
      last = store.status();
    }
    if (MonotonicMs() >= deadline || StopRequested()) {
      std::cerr << "ferryctl: error: timed out after " << timeout_s << " s: " << last.message()
                << "\n";
      return kExitTimeout;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

int Wait(zmq::context_t& ctx, const std::string& endpoint, double timeout_s, int request_ms,
         const CurveClientKeys& curve) {
  const int64_t deadline = MonotonicMs() + static_cast<int64_t>(timeout_s * 1000);
  Status last;
  for (;;) {
    int left = static_cast<int>(
        std::max<int64_t>(100, std::min<int64_t>(request_ms, deadline - MonotonicMs())));
    auto st = StatusRequestJson(ctx, endpoint, "status", left, curve);
    if (st.ok()) {
      std::string state = (*st).value("state", "");
      if (state == "complete") {
        std::cout << "ferry: migration complete\n";
        return kExitOk;
      }
      if (state == "failed") {
        std::cerr << "ferryctl: error: migration failed: " << (*st).value("failure", "") << "\n";
        return kExitFailed;
      }
      last = Unavailable("migration is " + state);
    } else {
      last = st.status();
    }
    if (MonotonicMs() >= deadline || StopRequested()) {
      std::cerr << "ferryctl: error: timed out after " << timeout_s << " s: " << last.message()
                << "\n";
      return kExitTimeout;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(
        std::min<int64_t>(500, std::max<int64_t>(0, deadline - MonotonicMs()))));
  }
}

int Watch(zmq::context_t& ctx, const std::string& endpoint, int request_ms, double interval_s,
          const CurveClientKeys& curve) {
  const bool tty = isatty(STDOUT_FILENO);
  for (;;) {
    auto st = StatusRequestJson(ctx, endpoint, "status", request_ms, curve);
    if (!st.ok()) {
      if (tty) std::cout << "\n";
      return Fail("ferryctl", st.status());
    }
    std::string line = RenderProgressLine(*st, tty, 30);
    if (tty) {
      std::cout << "\r\033[2K" << line << std::flush;
    } else {
      std::cout << line << std::endl;
    }
    std::string state = (*st).value("state", "");
    if (state == "complete" || state == "failed") {
      if (tty) std::cout << "\n";
      return state == "complete" ? kExitOk : kExitFailed;
    }
    if (StopRequested()) {
      if (tty) std::cout << "\n";
      return kExitOk;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int64_t>(interval_s * 1000)));
  }
}

int Verify(const VerifyOptions& opt, bool json) {
  const bool tty = isatty(STDERR_FILENO);
  auto report = VerifyMigration(opt, [&](uint64_t seen, uint64_t total) {
    if (tty) std::cerr << fmt::format("\rverifying: range {} of {}", seen, total) << std::flush;
  });
  if (tty) std::cerr << "\r\033[2K" << std::flush;
  if (!report.ok()) return Fail("ferryctl", report.status());
  if (json) {
    std::cout << VerifyReportJson(*report).dump(2, ' ', false,
                                                nlohmann::json::error_handler_t::replace)
              << "\n";
  } else {
    std::cout << RenderVerifyReport(*report);
  }
  return report->equal() ? kExitOk : kExitDiffer;
}

}  // namespace

int main(int argc, char** argv) {
  InstallStopSignals();  // first: a SIGTERM during start-up is a clean stop too
  CLI::App app{
      "ferryctl: watch and steer a ferry migration through the coordinator's status "
      "socket; verify its result; make CURVE keys.",
      "ferryctl"};
  LogFlags log;
  std::string endpoint = "tcp://127.0.0.1:7401";
  double request_timeout_s = 5;
  bool json = false;
  AddCommonFlags(app, &log);
  app.add_option(
         "--endpoint", endpoint,
         "coordinator status socket; several (one leads, the others stand by) separated by commas")
      ->default_val(endpoint);
  app.add_option("--request-timeout", request_timeout_s, "seconds to wait for each answer")
      ->default_val(5);
  app.add_flag("--json", json, "print the raw JSON answer");
  std::string curve_server_file, curve_secret_file;
  app.add_option("--curve-server-key-file", curve_server_file,
                 "the status socket's CURVE public key (the FILE.pub of the coordinator's "
                 "--status-curve-secret-key-file), when it has CURVE on");
  app.add_option(
      "--curve-secret-key-file", curve_secret_file,
      "with --curve-server-key-file: this operator's secret key (`ferryctl keygen`); its "
      "public key must be in the coordinator's --status-curve-allow-file");
  app.require_subcommand(1);
  // Parent flags may follow the subcommand: `ferryctl status --json`.
  app.fallthrough();
  app.add_subcommand("status", "migration state, progress, ETA");
  double watch_interval = 1;
  app.add_subcommand("watch", "live progress until complete")
      ->add_option("--interval", watch_interval, "seconds between refreshes")
      ->default_val(1);
  std::string ranges_filter;
  app.add_subcommand("ranges", "ranges and their leases")
      ->add_option("filter", ranges_filter, "pending|leased|done|failed|stalled");
  app.add_subcommand("workers", "registered workers");
  app.add_subcommand("metrics", "Prometheus text metrics");
  app.add_subcommand("pause", "no new grants; workers hold after their batch");
  app.add_subcommand("resume", "undo pause");
  std::string throttle;
  app.add_subcommand("throttle", "fleet-wide rows/s budget")
      ->add_option("rate", throttle, "rows per second, or off")
      ->required();
  std::string drain_id;
  app.add_subcommand("drain", "a worker finishes its batch, releases its range, gets no new work")
      ->add_option("worker", drain_id, "worker id")
      ->required();
  std::string revoke_id;
  app.add_subcommand("revoke", "take a lease back now (its epoch is fenced)")
      ->add_option("range", revoke_id, "range id")
      ->required();
  std::string events_n;
  app.add_subcommand("events", "recent events from the coordinator's event log")
      ->add_option("count", events_n, "how many");
  double wait_timeout = 0;
  std::string wait_target;
  int64_t wait_version = 2;
  std::string keygen_file;
  app.add_subcommand("keygen",
                     "write a new CURVE secret key to FILE (mode 0600) and its public key to "
                     "FILE.pub, and print the public key")
      ->add_option("FILE", keygen_file, "where to write the secret key (never overwritten)")
      ->required();
  auto* wait = app.add_subcommand("wait", "exit 0 once the migration is complete");
  wait->add_option("--timeout", wait_timeout, "give up after this many seconds (0: never)")
      ->default_val(0);
  wait->add_option("--target", wait_target,
                   "read the new store's own version marker instead of asking the coordinator");
  wait->add_option("--to-version", wait_version, "with --target: the version that means done")
      ->default_val(2);
  double cutover_timeout = 0;
  app.add_subcommand(
         "cutover",
         "online migration: freeze legacy writes, apply the remaining changes, bump the "
         "version, guard the legacy tables; waits for the outcome")
      ->add_option("--timeout", cutover_timeout,
                   "give up (back to catching_up, writes flow again) after this many seconds "
                   "(0: never)")
      ->default_val(0);
  std::string unguard_source, unguard_tables;
  auto* unguard = app.add_subcommand(
      "unguard",
      "remove the write-refusal guard of a finished online migration (and an abandoned one's "
      "change capture) from the legacy store; no coordinator needed");
  unguard
      ->add_option("--source", unguard_source, "the legacy store: sqlite:PATH or postgresql://...")
      ->required();
  unguard->add_option("--tables", unguard_tables,
                      "comma-separated tables to unguard (default: every guarded table)");
  VerifyOptions verify_opt;
  auto* verify = app.add_subcommand(
      "verify",
      "compare the legacy and new store row for row, range by range, from the coordinator's "
      "state file (read-only; no coordinator needed)");
  verify->add_option("--state", verify_opt.state_path, "the coordinator's --state file")
      ->required();
  verify->add_option("--source", verify_opt.source_uri,
                     "read the legacy store here instead of the job's own URI");
  verify->add_option("--target", verify_opt.target_uri,
                     "read the new store here instead of the job's own URI");
  verify->add_option("--batch-rows", verify_opt.batch_rows, "rows read per query and store")
      ->default_val(verify_opt.batch_rows);
  verify
      ->add_option("--max-differences", verify_opt.max_differences,
                   "differences described line by line (the rest are counted)")
      ->default_val(verify_opt.max_differences);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return HandleParseError(app, e);
  }
  StartLogging(log);
  spdlog::set_level(spdlog::level::warn);
  auto curve_keys = LoadCurveClientKeys(curve_server_file, curve_secret_file,
                                        "--curve-server-key-file", "--curve-secret-key-file");
  if (!curve_keys.ok()) return Fail("ferryctl", curve_keys.status());
  const CurveClientKeys& curve = *curve_keys;
  zmq::context_t ctx;
  const int request_ms = static_cast<int>(request_timeout_s * 1000);
  const std::string cmd = app.get_subcommands().front()->get_name();

  if (cmd == "wait") {
    double t = wait_timeout > 0 ? wait_timeout : 1e9;
    if (!wait_target.empty()) return WaitOnTarget(wait_target, wait_version, t);
    return Wait(ctx, endpoint, t, request_ms, curve);
  }
  if (cmd == "verify") return Verify(verify_opt, json);
  if (cmd == "cutover") return CutoverCommand(ctx, endpoint, cutover_timeout, request_ms, curve);
  if (cmd == "unguard") return UnguardCommand(unguard_source, unguard_tables);
  if (cmd == "watch") return Watch(ctx, endpoint, request_ms, watch_interval, curve);
  if (cmd == "keygen") {
    auto pair = WriteNewCurveSecretKey(keygen_file);
    if (!pair.ok()) return Fail("ferryctl", pair.status());
    std::cout << pair->public_z85 << "\n";
    return kExitOk;
  }

  std::string line = cmd;
  if (cmd == "ranges" && !ranges_filter.empty()) line += " " + ranges_filter;
  if (cmd == "throttle") line += " " + throttle;
  if (cmd == "drain") line += " " + drain_id;
  if (cmd == "revoke") line += " " + revoke_id;
  if (cmd == "events" && !events_n.empty()) line += " " + events_n;

  if (cmd == "metrics") {
    auto text = StatusRequest(ctx, endpoint, line, request_ms, curve);
    if (!text.ok()) return Fail("ferryctl", text.status());
    std::cout << *text;
    return kExitOk;
  }
  auto reply = StatusRequestJson(ctx, endpoint, line, request_ms, curve);
  if (!reply.ok()) {
    std::cerr << "ferryctl: error: " << reply.status().message() << "\n";
    return reply.status().code() == Code::kUnavailable ? kExitUnavailable : kExitFailed;
  }
  const nlohmann::json& j = *reply;
  if (json) {
    std::cout << j.dump(2) << "\n";
  } else if (cmd == "status") {
    std::cout << RenderStatus(j);
  } else if (cmd == "ranges") {
    std::cout << RenderTable(
        j["ranges"], {"id", "table", "lo", "hi", "state", "owner", "epoch", "cursor", "rows",
                      "attempts", "parent", "verified", "last_error"});
  } else if (cmd == "workers") {
    std::cout << RenderTable(j["workers"], {"id", "host", "pid", "version", "range",
                                            "rows_per_second", "last_heartbeat_ms", "state"});
  } else if (cmd == "events") {
    std::cout << RenderTable(j["events"], {"ts_ms", "kind", "range", "epoch", "worker", "detail"});
  } else {
    std::cout << j.dump() << "\n";
  }
  return kExitOk;
}
