// Coordinator: plans the legacy key space into ranges, leases them to workers
// over ZeroMQ (ROUTER, Cap'n Proto envelopes), keeps every decision in the
// state file, and answers operators on the status socket (REP, text command
// in, JSON out).
//
// Start() takes the state lock, checks versions, opens the stores and, for a
// new job, plans it and creates the target schema (so bad input fails before
// anything is served or logged); Run() serves until `should_exit()`.
//
// One event-loop thread owns everything here: sockets, state, lease table.
// Each loop pass reads a burst of worker messages, applies them in memory,
// commits all resulting changes in ONE state transaction, and only then
// sends the replies (so an epoch is durable before its grant leaves). A
// failed commit reloads the state file and drops the replies (workers retry).
// A lease request that finds nothing pending while ranges are leased is
// held (waiting_, at most kLeaseWaitMs) and answered in the pass where a
// range comes free or the job ends.
//
// Every network message is hostile: malformed, truncated, oversized,
// unknown or wrong-version messages get an error reply (or are dropped) and
// are counted; nothing a peer sends can crash or block the loop.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>
#include <zmq.hpp>

#include "common/clock.h"
#include "common/status.h"
#include "coordinator/lease_table.h"
#include "coordinator/metrics.h"
#include "coordinator/state_lock.h"
#include "coordinator/state_store.h"
#include "stores/store.h"

namespace ferry {

struct CoordinatorOptions {
  std::string source_uri;
  std::string target_uri;
  std::string state_path;
  std::string tables;  // comma-separated; "" = all user tables
  int64_t from_version = 1;
  int64_t to_version = 2;
  std::string listen = "tcp://127.0.0.1:7400";
  std::string status_endpoint = "tcp://127.0.0.1:7401";
  int64_t lease_ttl_ms = 10000;
  uint64_t range_rows = 100000;
  uint32_t batch_rows = 10000;  // rows per copy batch (one target transaction)
  uint32_t max_attempts = 3;    // permanent errors before a range fails
  bool exit_when_done = false;
  bool retry_failed = false;
  int64_t stall_ms = 30000;  // a leased range whose cursor has not moved this long is stalled
  // CURVE on the worker endpoint (common/curve.h): both or neither. With
  // them, only workers whose public key is in the allow file get through
  // the handshake (a ZAP handler on this coordinator's context, served by
  // its event loop); in-process workers (inproc) are not affected.
  std::string curve_secret_key_file;
  std::string curve_allow_file;
};

struct WorkerInfo {
  WorkerRow row;
  uint64_t current_range = 0;
  uint64_t rows = 0;  // rows reported by this worker since it registered
  double rows_per_second = 0;
  int64_t rate_mark_ms = 0;
  uint64_t rate_mark_rows = 0;
  bool draining = false;
  bool told_done = false;  // answered "complete" or "failed" to a lease request
};

class Coordinator {
 public:
  Coordinator(CoordinatorOptions options, const Clock* clock, zmq::context_t* ctx);
  ~Coordinator();

  // Takes the lock, loads or checks the job, opens the stores and binds the
  // sockets. On success either already_done() (the new store is at the
  // target version: nothing to do) or Run() may be called.
  Status Start();
  bool already_done() const { return already_done_; }

  // Serves until `should_exit()` (checked every pass,
  // at most ~100 ms apart). Ok if the migration completed; kPermanent if it
  // failed; kFailedPrecondition if stopped before completion; a planning
  // error as it came.
  Status Run(const std::function<bool()>& should_exit);

  // Finishes planning now (Run() otherwise plans one table per pass while
  // serving). For tests and tools.
  Status PlanAll();

  // One loop pass (exposed for tests): waits up to `timeout_ms` for input.
  void Step(int timeout_ms);

  std::string inproc_endpoint() const { return inproc_; }
  std::string listen_endpoint() const { return listen_bound_; }
  std::string status_endpoint() const { return status_bound_; }
  const LeaseTable& leases() const { return table_; }
  const JobMeta& job() const { return job_; }
  bool complete() const { return job_.phase == JobPhase::kComplete; }
  bool failed() const { return job_.phase == JobPhase::kFailed; }
  bool planning() const { return planning_; }
  // True once every live worker (heard from within three lease TTLs, not
  // draining) has been told the migration is complete or failed: a batch
  // job (--exit-when-done) waits for this so remote workers can exit 0.
  bool AllWorkersToldDone() const;
  StateStore* state() { return state_.get(); }
  const CoordinatorMetrics& metrics() const { return metrics_; }

  uint64_t RowsCopied() const;
  uint64_t BytesCopied() const;

  // Status socket commands (coordinator/status_commands.cc).
  std::string HandleCommand(const std::string& line);

 private:
  struct Reply {
    zmq::message_t identity;
    zmq::message_t payload;
  };

  Status CheckJobMatches(const JobMeta& stored);
  Status PlanNextTable();
  // Opens the new store, creates the schema and records the plan id in it
  // (new job and resume alike), before any range is leased.
  Status PrepareTarget();
  Status ReloadFromState();
  // Recomputes each worker's current range from the lease table.
  void RebuildWorkerLeases();
  // Worker messages (coordinator/worker_messages.cc).
  void HandleWorkerFrames(std::vector<zmq::message_t>& frames);
  // The reply to one worker message from `identity` (empty: none now).
  zmq::message_t Dispatch(zmq::message_t& identity, const void* data, size_t size);
  // The answer to a lease request (or to a completion asking for the next
  // range) `rid` from worker `id`: its lease again if our grant was lost, a
  // new grant, or NoWork. With `wait_from` (the sender's identity), a
  // request that finds nothing pending while ranges are leased waits instead
  // (returns an empty frame; ServeWaiting answers it).
  zmq::message_t LeaseReply(uint64_t rid, const std::string& id, WorkerInfo* w,
                            zmq::message_t* wait_from);
  // Answers the waiting lease requests that now have an answer: a range came
  // free, the job completed or failed, the worker is draining, the job is
  // paused, or the request waited long enough (then: NoWork, ask again).
  void ServeWaiting();
  void Expire();
  void MaybeFinish();
  void CommitAndReply();
  void Mirror();
  void SampleRate();
  // Logs `e` and queues it for the state file's event log (committed with
  // the pass). Operator-visible events only: plan, register, release,
  // expire, range_error/range_failed, finalize, failed and operator actions.
  void Record(Event e);
  // Routine per-range events (grant, complete) are logged (info) but not
  // written to the state file: the range row already holds the latest
  // owner, epoch and counters, and a row per message would double the
  // state writes on the hot path. Callers skip building `detail` when info
  // is not logged.
  void LogRoutine(const char* kind, uint64_t range, uint64_t epoch, const std::string& worker,
                  const std::string& detail);
  WorkerInfo* TouchWorker(const std::string& id);
  // A worker's share of the fleet-wide throttle (rows/s; 0 = none): the
  // budget split over the leases held.
  uint64_t ThrottleShare() const;
  void LogProgress();

  // status_commands.cc
  nlohmann::json StatusFields();  // the `status` command's answer
  std::string RangesJson(const std::string& filter);
  std::string WorkersJson();
  std::string MetricsText();
  std::string StateName() const;
  // Answers the ZAP requests (CURVE handshakes) waiting on zap_.
  void ServeZap();

  CoordinatorOptions opt_;
  const Clock* clock_;
  zmq::context_t* ctx_;
  std::unique_ptr<StateLock> lock_;
  std::unique_ptr<StateStore> state_;
  std::unique_ptr<Store> source_;
  std::unique_ptr<Store> target_;
  std::vector<TableSchema> tables_;
  std::optional<zmq::socket_t> router_;
  std::optional<zmq::socket_t> status_;
  std::optional<zmq::socket_t> zap_;  // ZAP handler (REP), with CURVE only
  std::string curve_secret_, curve_public_;
  std::set<std::string> curve_allowed_;  // worker public keys (Z85)
  int64_t auth_log_ms_ = 0;              // last auth_rejected log line (rate-limited)
  uint64_t auth_unlogged_ = 0;           // rejections since then
  std::string inproc_, listen_bound_, status_bound_;

  LeaseTable table_;
  JobMeta job_;
  bool already_done_ = false;
  bool planning_ = false;
  size_t plan_next_table_ = 0;
  std::vector<RangeRecord> plan_;
  int64_t started_ms_ = 0;
  int64_t plan_started_ms_ = 0;

  std::map<std::string, WorkerInfo> workers_;
  std::vector<WorkerRow> dirty_workers_;
  std::vector<Event> events_;
  bool job_dirty_ = false;
  std::vector<Reply> replies_;
  // Lease requests waiting for a range, one per worker (a resent request
  // replaces the one its worker gave up on).
  struct Waiting {
    zmq::message_t identity;
    uint64_t rid = 0;
    int64_t deadline_ms = 0;
  };
  std::map<std::string, Waiting> waiting_;
  std::optional<zmq::message_t> status_reply_;
  std::string mirrored_boundary_;
  bool mirror_needed_ = true;
  int64_t next_mirror_ms_ = 0;
  int64_t next_progress_ms_ = 0;
  std::string last_range_error_;  // "range N (table): cause", for status
  std::deque<std::pair<int64_t, uint64_t>> rate_samples_;
  CoordinatorMetrics metrics_;
};

}  // namespace ferry
