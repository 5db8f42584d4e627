// ferry-worker: wires flags, logging and signals to a Worker.
#include <iostream>

#include "common/cli.h"
#include "common/curve.h"
#include "common/signals.h"
#include "worker/worker.h"

using namespace ferry;

int main(int argc, char** argv) {
  InstallStopSignals();  // first: a SIGTERM during start-up is a clean stop too
  CLI::App app{
      "ferry-worker: leases key ranges from a ferry coordinator and copies them from the "
      "legacy store to the new store.",
      "ferry-worker"};
  WorkerOptions o;
  LogFlags log;
  AddCommonFlags(app, &log);
  app.add_option("--coordinator", o.coordinator,
                 "coordinator worker endpoint, tcp://HOST:PORT; several (one leads, the others "
                 "stand by) separated by commas")
      ->required();
  app.add_option("--id", o.id, "worker id (default: host-pid-random)");
  app.add_option("--source", o.source_uri, "override the legacy store URI the coordinator gives");
  app.add_option("--target", o.target_uri, "override the new store URI the coordinator gives");
  app.add_option("--batch-rows", o.batch_rows, "override rows per batch");
  double give_up_s = 600;
  app.add_option("--give-up-after", give_up_s,
                 "exit 5 after this many seconds without an answer from any coordinator (not yet "
                 "registered, or asking for work); 0 = retry forever")
      ->default_val(600)
      ->check(CLI::NonNegativeNumber);
  bool no_direct = false;
  app.add_flag("--no-direct-copy", no_direct,
               "always read rows into the worker and write them (default: a SQLite new store "
               "copies from a SQLite legacy store itself)");
  bool no_read_ahead = false;
  app.add_flag("--no-read-ahead", no_read_ahead,
               "read each batch only once the previous one is written (default: the next "
               "batch is read, and transformed, while the previous one is written)");
  std::string curve_server_file, curve_secret_file;
  app.add_option("--curve-server-key-file", curve_server_file,
                 "the coordinator's CURVE public key (the FILE.pub of its `ferryctl keygen FILE`)");
  app.add_option("--curve-secret-key-file", curve_secret_file,
                 "with --curve-server-key-file: this worker's CURVE secret key (`ferryctl "
                 "keygen`); its public key must be in the coordinator's --curve-allow-file");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return HandleParseError(app, e);
  }
  o.direct_copy = !no_direct;
  o.read_ahead = !no_read_ahead;
  o.give_up_after_ms = static_cast<int64_t>(give_up_s * 1000);
  auto curve = LoadCurveClientKeys(curve_server_file, curve_secret_file, "--curve-server-key-file",
                                   "--curve-secret-key-file");
  if (!curve.ok()) return Fail("ferry-worker", curve.status());
  o.curve = *curve;
  StartLogging(log);
  zmq::context_t ctx;
  SteadyClock clock;
  Worker w(o, &ctx, StopFlag(), &clock);
  Status s = w.Run();
  if (!s.ok()) return Fail("ferry-worker", s);
  return kExitOk;
}
