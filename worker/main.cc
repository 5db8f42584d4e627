// ferry-worker: wires flags, logging and signals to a Worker.
#include <iostream>

#include "common/cli.h"
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
  app.add_option("--coordinator", o.coordinator, "coordinator worker endpoint, tcp://HOST:PORT")
      ->required();
  app.add_option("--id", o.id, "worker id (default: host-pid-random)");
  app.add_option("--source", o.source_uri, "override the legacy store URI the coordinator gives");
  app.add_option("--target", o.target_uri, "override the new store URI the coordinator gives");
  app.add_option("--batch-rows", o.batch_rows, "override rows per batch");
  bool no_direct = false;
  app.add_flag("--no-direct-copy", no_direct,
               "always read rows into the worker and write them (default: a SQLite new store "
               "copies from a SQLite legacy store itself)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return HandleParseError(app, e);
  }
  o.direct_copy = !no_direct;
  StartLogging(log);
  zmq::context_t ctx;
  Worker w(o, &ctx, StopFlag());
  Status s = w.Run();
  if (!s.ok()) return Fail("ferry-worker", s);
  return kExitOk;
}
