// ChangeApplier: one lease of an online migration's change applier
// (DESIGN.md "Online mode"). The coordinator grants it (ApplyGrant) once
// every range is copied; one applier runs at a time.
//
// Each pass reads the next changes from the legacy store's capture
// (stores/change_capture.h) after the position the new store records,
// dedupes their keys, re-reads those keys from the legacy store NOW through
// the ChangeReplayer (the step a migration spec's transform slots into: a
// key with a row is upserted, a key without one deleted) and writes the
// result in ONE fenced transaction (Store::ApplyChanges) that also
// compare-and-sets the change position and, in the lease's first
// transaction, records the lease's epoch on the fence of every planned range
// (so a zombie copy worker of any range can no longer write). Only then are
// the changes acknowledged to the capture (dropped from the change table /
// the slot advanced) and reported to the coordinator (ApplyReport, sent
// asynchronously after each batch and at least every heartbeat interval;
// its Ack renews the lease and carries the cut-over's drain target).
//
// Why replay is correct whatever is killed: every change since the capture
// was installed is in the capture until its position is durable in the new
// store; each key's value is read after its change committed, so a stale
// write (an older copy, a slower applier) is always followed by a later
// change record for that key or fenced out; and positions move only by
// compare-and-set under the applier fence, so two appliers never interleave
// batches. Re-applying a batch is harmless.
//
// A batch that the new store refuses for good (a constraint a later change
// would resolve, e.g. a unique value that moved between rows) is retried
// with a larger batch, up to everything pending; the error is reported.
//
// Thread safety: runs on its worker's thread, with that worker's client and
// stores.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/lease_policy.h"
#include "common/status.h"
#include "common/wire.h"
#include "stores/change_capture.h"
#include "stores/store.h"
#include "worker/coordinator_client.h"

namespace ferry {

// Re-reads changed keys of one legacy table and says what the new store
// must hold for them now. Identity (no migration spec): the same table, the
// same rows. The spec's transform plugs in here.
class ChangeReplayer {
 public:
  virtual ~ChangeReplayer() = default;
  // `keys`: distinct encoded keys of legacy table `table`. Appends the new
  // store's changes for them to *out (one entry per target table touched).
  virtual Status Replay(const std::string& table, const std::vector<std::string>& keys,
                        std::vector<TableChanges>* out) = 0;
  // Rows Replay could not move (a migration spec's rejects), collected
  // since the last batch; the applier records and clears them. nullptr:
  // this replayer rejects nothing.
  virtual std::vector<Reject>* rejects() { return nullptr; }
};

// The replayer without a migration spec: each legacy table is its own
// target; keys are re-read with Store::ReadKeys.
class IdentityReplayer : public ChangeReplayer {
 public:
  // `schemas` (legacy tables by name) must outlive the replayer.
  IdentityReplayer(Store* source, const std::map<std::string, TableSchema>* schemas)
      : source_(source), schemas_(schemas) {}
  Status Replay(const std::string& table, const std::vector<std::string>& keys,
                std::vector<TableChanges>* out) override;

 private:
  Store* source_;
  const std::map<std::string, TableSchema>* schemas_;
};

// What the applier needs of its worker; everything must outlive Run().
struct ApplierContext {
  std::string worker_id;
  std::string plan_id;
  LeasePolicy policy;
  const Clock* clock = nullptr;
  const std::atomic<bool>* stop = nullptr;
  CoordinatorClient* client = nullptr;
  Store* target = nullptr;
  ChangeCapture* capture = nullptr;
  ChangeReplayer* replayer = nullptr;
  size_t max_changes = 5000;  // changes per batch (before retries enlarge it)
  int request_timeout_ms = 2000;
  // Called with a reply that is not for the applier (a stale Grant).
  std::function<void(DecodedEnvelope&)> on_other;
};

struct ApplyLease {
  uint64_t epoch = 0;
  int64_t ttl_ms = 0;
  uint64_t ranges_total = 0;
  int64_t drain_to = 0;
  int64_t sent_ms = 0;  // when the request that earned the grant was sent
};

class ChangeApplier {
 public:
  enum class Outcome {
    kLost,     // lease lost or expired (or the migration finished): ask again
    kStopped,  // stop requested: lease released
    kDrained,  // the operator drained this worker: lease released
  };

  explicit ChangeApplier(ApplierContext ctx) : ctx_(std::move(ctx)) {}
  Outcome Run(const ApplyLease& lease);

  uint64_t batches() const { return batches_; }

 private:
  Outcome RunLease(const ApplyLease& lease);
  // Reads replies: false when the lease was lost.
  bool Poll(int timeout_ms);
  // An ApplyReport in `b` with the lease, position, caught-up and applied
  // counters and the release/leaving flags; SendReport adds the backlog.
  ApplyReport::Builder StartReport(capnp::MallocMessageBuilder* b, uint64_t rid, bool release,
                                   bool leaving) const;
  void SendReport(bool release, bool leaving);
  bool Release();
  void Sleep(int64_t ms);
  bool Stopping() const { return ctx_.stop && ctx_.stop->load(); }

  ApplierContext ctx_;
  uint64_t epoch_ = 0;
  int64_t deadline_ms_ = 0;  // our view of the lease deadline (from send times)
  int64_t position_ = 0;     // recorded in the new store (the compare-and-set's)
  int64_t read_pos_ = 0;     // read up to here (>= position_: transactions of other tables)
  int64_t caught_up_ = 0;
  uint64_t applied_ = 0;
  uint64_t pending_ = 0;
  int64_t oldest_pending_ms_ = 0;
  int64_t drain_to_ = 0;
  int64_t reported_drain_ = 0;  // the drain target our last report reached
  bool paused_ = false;
  bool drain_ = false;
  bool lost_ = false;
  std::string error_;
  bool permanent_ = false;
  int64_t last_report_ms_ = 0;
  int64_t last_ack_ms_ = 0;
  std::map<uint64_t, int64_t> sent_;  // request id -> send time
  uint64_t batches_ = 0;
};

}  // namespace ferry
