// Worker: registers with the coordinator, then loops lease -> copy -> complete.
// A completion asks for the next range too (Report.next), so a worker
// spends one round trip per range, not two.
//
// Copying a range: batches are read from the legacy store after the cursor
// and written to the new store in ONE transaction each, fenced by the
// range's epoch (Store::WriteBatch); when the new store can copy from the
// legacy store itself (Store::CanCopyFrom: SQLite to SQLite) each batch is
// one fenced Store::CopyBatch instead, with the same cursor and digest. A
// range names a target table (spec/target_plan.h: with the coordinator's
// migration spec, sent at registration, a select/where/Lua function over
// one legacy table; without, the legacy table itself); one TargetCopier per
// target (worker/target_copier.h) runs each batch, and reports the rows it
// rejected with the progress (Progress.rejected). A
// direct copy failing with anything but lease-lost or a transient error
// turns direct copy off for the rest of the lease (logged `direct_copy_off`)
// and the batch is redone by the read/write path, whose error, if any, is
// the one reported. Heartbeats carrying the cursor of the
// last committed batch go out asynchronously (never a round trip per batch),
// each after Store::SyncWrites made that batch durable (so is the cursor of
// a completion or a release; a failed sync reports an error instead);
// their acks extend the worker's own view of its lease deadline
// (worker/lease_keeper.h), measured from when the heartbeat was SENT, so the
// worker stops writing before the coordinator could expire the lease even
// if the coordinator is gone. Every timing rule comes from the lease policy
// the coordinator sent at registration (common/lease_policy.h); every
// deadline is on the injected clock.
//
// A completion that goes unanswered is retried for the policy's give-up
// time, unless the new store's version marker already says the migration is
// complete (the coordinator finished and may be gone): then the worker
// returns Ok at once. A worker that hears from no coordinator for
// --give-up-after (registering, or asking for work) returns kUnavailable:
// the coordinator is down or the migration ended before it came.
//
// Batch sizes: with --batch-time-ms (sent at registration) each batch is
// sized from the worker's measured rate to take about that long, capped by
// batch_rows (worker/batch_sizer.h); the throttle still bounds it.
//
// Verify leases (Grant.verify, --verify on the coordinator): the range is
// compared in both stores chunk by chunk and repaired through the same
// fenced write path (worker/verifier.h, Worker::Verify in
// worker/worker_verify.cc); heartbeats carry the verification's cursor, the
// rows repaired so far and the keys repaired since the last report.
//
// Splits: when an Ack asks (Ack.split), the worker picks a key about
// Ack.splitKeep rows after its cursor in its legacy store (Store::KeyAfter)
// and proposes it in a heartbeat; until an Ack answers that heartbeat it
// copies nothing at or past the key. Ack.hi equal to the key: the split is
// committed and the lease ends there; anything else: refused. A lease that
// is a split's tail (Grant.parent) records in every write that its parent
// now ends at its lo (Fence::parent_id), so the parent's owner, had it
// missed the answer, is fenced in the new store.
//
// On `lease lost` the worker stops writing at once. On a stop request
// (SIGTERM/SIGINT) it finishes the current batch, reports the cursor,
// releases the lease and returns Ok. It returns Ok when the migration is
// complete or it was drained; kPermanent if the migration failed;
// kFailedPrecondition on a protocol version mismatch; kInvalidArgument, before
// writing anything, when its new store holds no record of the coordinator's
// plan (Store::HasPlan: --target names another store than the coordinator's).
//
// Thread safety: Run() owns everything; one thread per Worker.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/clock.h"
#include "common/lease_policy.h"
#include "common/status.h"
#include "spec/migration_spec.h"
#include "spec/target_plan.h"
#include "stores/change_capture.h"
#include "stores/store.h"
#include "worker/batch_sizer.h"
#include "worker/change_applier.h"
#include "worker/coordinator_client.h"
#include "worker/job_thread.h"
#include "worker/lease_keeper.h"
#include "worker/target_copier.h"

namespace ferry {

struct WorkerOptions {
  std::string coordinator;  // endpoint: tcp://host:port or inproc://...
  std::string id;           // default: host-pid-random
  std::string source_uri;   // override what the coordinator says
  std::string target_uri;
  uint32_t batch_rows = 0;  // 0: the coordinator's setting
  size_t batch_bytes = 8 << 20;
  int request_timeout_ms = 2000;
  int64_t backoff_base_ms = 100;
  int64_t backoff_cap_ms = 5000;
  uint32_t transient_retries = 5;  // per batch, before the range is given back with an error
  bool direct_copy = true;         // use Store::CopyBatch where the target supports it
  bool read_ahead = true;          // read batch n + 1 while writing batch n (TargetCopier)
  CurveClientKeys curve;           // CURVE to the coordinator; empty = off
  // Hearing from no coordinator for this long (not registered yet, or
  // asking for work) ends Run() with kUnavailable; 0 = never.
  int64_t give_up_after_ms = 600000;
  // What this worker tells the coordinator it can do (schemas/ferry.capnp
  // FEATURE_VERIFY | FEATURE_SPLIT; tests turn them off to act as an older
  // worker).
  uint32_t features = 3;
  // Rows per verification chunk (digested as one; 0 = the batch size).
  size_t verify_chunk_rows = 0;
};

class Worker {
 public:
  // `clock` (a SteadyClock in production) times leases, heartbeats,
  // throttling, retries and give-ups; it must outlive the worker.
  Worker(WorkerOptions options, zmq::context_t* ctx, const std::atomic<bool>* stop,
         const Clock* clock);
  Status Run();

  const std::string& id() const { return opt_.id; }
  uint64_t rows_written() const { return rows_written_; }

 private:
  enum class Outcome { kDone, kLost, kStopped, kGaveBack };
  struct Lease {
    explicit Lease(LeaseKeeper k) : keeper(k) {}
    uint64_t range = 0;
    uint64_t epoch = 0;
    std::string table;
    KeyRange bounds;
    std::string cursor;
    uint64_t rows = 0;
    uint64_t bytes = 0;
    uint64_t digest = 0;
    uint64_t rejected = 0;  // rows a migration spec could not move (in __ferry_rejects)
    LeaseKeeper keeper;     // our conservative view of the lease deadline
    uint64_t parent = 0;    // split off this range (Grant.parent)
    // Verify leases: cursor is the verification's.
    bool verify = false;
    uint64_t repaired = 0;
    std::vector<std::string> repaired_keys;  // since the last report (at most 20)
    uint64_t repaired_more = 0;
    // Splits (copy leases): the coordinator asked (keep rows after the
    // cursor); our pending proposal and the heartbeats that carried it.
    uint64_t split_keep = 0;
    std::string split_key;
    uint64_t split_rows = 0;
    std::set<uint64_t> split_rids;
    int64_t next_split_try_ms = 0;  // tries no sooner (2 heartbeats; 0 after a commit)
  };

  // The lease in a Grant answering a request sent at `sent` (clock ms).
  Lease LeaseFromGrant(DecodedEnvelope& reply, int64_t sent);
  Status RunLoop();
  Status Register();
  Status OpenStores();
  // kInvalidArgument unless the new store holds the plan's record.
  Status CheckTargetPlan();
  Outcome Copy(Lease& lease);
  // A verify lease (worker_verify.cc).
  Outcome Verify(Lease& lease);
  // The throttle of one lease's loop (Copy, Verify): `rows` done since
  // `start_ms` under the rate limit `limit` (rows/s, 0 = none) then in force.
  struct Throttle {
    int64_t start_ms = 0;
    uint64_t rows = 0;
    uint64_t limit = 0;
  };
  // What the head of a turn of Copy's or Verify's loop says.
  enum class Turn {
    kGo,       // do one batch (chunk) now
    kWait,     // waited for replies (up to 50 ms): start the turn again
    kLost,     // the lease is lost (lease lost, or expired: logged `lease_expired`)
    kStopped,  // a stop or drain: the range was released (FinishRange)
  };
  // The head of each turn of a lease's loop, in this order: applies the
  // replies that came (kLost if one lost the lease); on a stop or drain
  // releases the range (kStopped); sends a heartbeat if one is due; with
  // several coordinators and no ack for half a lease TTL, rotates to the
  // next one; while the lease keeper forbids writes, waits up to 50 ms for
  // replies (kWait), and logs `lease_expired` (kLost) once the lease
  // expired; while paused, waits up to 50 ms (kWait); restarts `throttle`
  // (from now, no rows) when the rate limit changed, and while its rows are
  // ahead of the limit waits until they are due, at most 50 ms (kWait).
  // The caller adds the rows of each batch to throttle->rows.
  Turn AwaitTurn(Lease& lease, Throttle* throttle);
  // Waits `ms` (or until a stop) keeping `lease`: applies the replies and
  // sends the heartbeats that fall due. False if the lease was lost.
  bool KeepLeaseFor(Lease& lease, int64_t ms);
  // The fence of `lease`'s writes.
  Fence FenceOf(const Lease& lease) const;
  // Picks a split key (a key of the legacy table `source`) for an asked
  // split and sends the proposal.
  void ProposeSplit(Lease& lease, const TableSchema& source);
  // The new store's schema of `table` (listed once), for verification reads.
  Result<const TableSchema*> TargetSchema(const std::string& table);
  // The batch sizer's summary (logged when Run ends).
  void LogBatchStats() const;
  // Online mode: runs the change applier lease of an ApplyGrant answering a
  // request sent at `sent` (worker/change_applier.h); opens the legacy
  // store's capture on first use.
  ChangeApplier::Outcome Apply(DecodedEnvelope& reply, int64_t sent);
  void SendHeartbeat(Lease& lease);
  // Applies acks / lease-lost for `lease`; false if the lease is lost.
  bool DrainReplies(Lease& lease, int timeout_ms);
  // Reports the range complete (or releases it), retrying; true once the
  // coordinator acknowledged it, or for a completion once the new store's
  // marker says the migration is complete (sets marked_done_).
  bool FinishRange(Lease& lease, bool complete);
  void ReportError(const Lease& lease, const Status& s);
  // One ReportError round trip (answer or timeout).
  void SendReportError(uint64_t range, uint64_t epoch, bool permanent, const std::string& message);
  // Tells the coordinator, before exiting on `s` (a store this worker cannot
  // use), that it leaves: a ReportError for range 0, which the coordinator
  // shows as last_error and takes as the worker's goodbye. Best effort.
  void ReportRefusal(const Status& s);
  // Hands back a grant that answers a request we gave up on, unless it is
  // the lease we are working on (working_on_).
  void ReleaseStale(DecodedEnvelope& env);
  // Sends a Report (heartbeat, completion or release) for `lease`; returns
  // its request id.
  uint64_t SendReport(::capnp::MallocMessageBuilder& b, ::Report::Kind kind, const Lease& lease,
                      bool next, bool leaving);
  // LeaseRequest / Register with this worker's features.
  uint32_t features() const { return opt_.features; }
  bool Sleep(int64_t ms);  // false if a stop came first
  // After a failed request: the next coordinator of the list (or, with one,
  // a fresh connection every 5th attempt).
  void NextCoordinator(int attempt);
  // True if the new store's own marker says the migration is complete.
  bool TargetMarkedDone();
  // Run()'s Ok when the marker, not the coordinator, said the migration is
  // complete (logged as such).
  Status CompleteByMarker();
  bool Stopping() const { return stop_ && stop_->load(); }

  WorkerOptions opt_;
  zmq::context_t* ctx_;
  const Clock* clock_;
  const std::atomic<bool>* stop_;
  CoordinatorClient client_;
  std::string plan_id_;
  std::string source_uri_, target_uri_;
  uint32_t batch_rows_ = 10000;
  LeasePolicy policy_;  // from the coordinator at registration
  int64_t to_version_ = 0;
  std::unique_ptr<Store> source_, target_;
  std::unique_ptr<ChangeCapture> capture_;    // online mode: the applier's
  std::unique_ptr<ChangeReplayer> replayer_;  // online mode: re-reads changed keys
  // The migration spec from the coordinator (empty text: none), and what
  // copies each target (range.table names the target): spec/target_plan.h.
  std::string spec_text_;
  std::vector<TargetPlan> plans_;
  // The copiers' read-ahead thread (one for all: one lease at a time).
  // Declared before copiers_, so that it outlives them.
  JobThread read_ahead_;
  std::map<std::string, std::unique_ptr<TargetCopier>> copiers_;
  std::map<std::string, TableSchema> target_schemas_;  // listed on the first verify lease
  BatchSizer sizer_{10000, 0};
  std::map<uint64_t, int64_t> heartbeat_sent_;  // request id -> send time
  // The coordinator's answer (Grant or NoWork) to a completion that asked
  // for the next range, and when that completion was sent.
  std::unique_ptr<DecodedEnvelope> next_lease_;
  int64_t next_lease_sent_ = 0;
  // A completion went unanswered but the new store's marker says the
  // migration is complete: Run() returns Ok.
  bool marked_done_ = false;
  std::pair<uint64_t, uint64_t> working_on_{0, 0};  // (range, epoch) of the lease Copy runs
  bool paused_ = false;
  bool drain_ = false;
  bool standby_seen_ = false;  // the last registration reached a standby
  int64_t last_ack_ms_ = 0;    // the last ack of a heartbeat (clock ms)
  uint64_t rate_limit_ = 0;
  uint64_t rows_written_ = 0;
};

// host-pid-xxxx
std::string DefaultWorkerId();

}  // namespace ferry
