# ferry worker <-> coordinator protocol.
#
# One Envelope per ZeroMQ frame, DEALER (worker) <-> ROUTER (coordinator).
# Rules for evolving it: add fields only with higher ordinals; never renumber;
# every reader must handle union members and enum values it does not know
# (they arrive from newer peers) with a safe default.
# Bump kProtocolVersion (common/version.h) only for incompatible changes.

@0xc4f1a7d2b3e59a01;

struct Envelope {
  protocolVersion @0 :UInt32;
  # Echoed in the reply so a worker can drop answers to requests it gave up on.
  requestId @1 :UInt64;
  body :union {
    register @2 :Register;
    registered @3 :Registered;
    leaseRequest @4 :LeaseRequest;
    grant @5 :Grant;
    noWork @6 :NoWork;
    heartbeat @7 :Heartbeat;
    ack @8 :Ack;
    complete @9 :Complete;
    release @10 :Release;
    reportError @11 :ReportError;
    error @12 :Error;
    # Protocol 2: heartbeat, completion and release are one Report. The
    # members heartbeat, complete and release above are protocol 1 only: a
    # protocol-1 peer is answered versionMismatch before its body is read.
    report @13 :Report;
    # Online mode (DESIGN.md "Online mode"): the change applier's lease.
    applyGrant @14 :ApplyGrant;
    applyReport @15 :ApplyReport;
  }
}

# Which lease a message is about. Any mismatch is answered leaseLost.
struct LeaseRef {
  rangeId @0 :UInt64;
  epoch @1 :UInt64;   # the fencing token of the grant
  workerId @2 :Text;
}

# A range's progress as of the last committed batch.
struct Progress {
  cursor @0 :Data;    # encoded key of the last row copied; empty = none yet
  rows @1 :UInt64;
  bytes @2 :UInt64;
  digest @3 :UInt64;  # chained digest of the rows up to the cursor
  # Rows up to the cursor a migration spec could not move (recorded in the
  # new store's __ferry_rejects); 0 from a peer that predates it.
  rejected @4 :UInt64;
  # Verify leases: rows of the range re-copied or deleted by verification so
  # far (cumulative over the range's verify leases). For a verify lease the
  # cursor is the verification's cursor; rows, bytes and digest are unused.
  repaired @5 :UInt64;
}

# What a worker can do beyond copying (bits of `features` in Register,
# LeaseRequest and Report). A coordinator grants verify leases and asks for
# splits only from workers that say they can.
const featureVerify :UInt32 = 1;  # verifies and repairs ranges (Grant.verify)
const featureSplit :UInt32 = 2;   # splits its copy lease when asked (Ack.split)

# worker -> coordinator: heartbeat (renews the lease, records progress),
# completion (the range is done; `next` asks for the next range in the same
# round trip: the answer is then a Grant or NoWork), or release (give the
# range back; `leaving`: the worker is shutting down). Answered by Ack (or
# for a completion with next: Grant / NoWork), or Error leaseLost.
struct Report {
  enum Kind {
    heartbeat @0;
    complete @1;
    release @2;
  }
  kind @0 :Kind;
  lease @1 :LeaseRef;
  progress @2 :Progress;
  next @3 :Bool;
  leaving @4 :Bool;
  # Splitting (copy leases, after an Ack asked for it): the owner proposes to
  # keep [lo, splitKey) and give up [splitKey, hi); `splitRows` is how many
  # rows after the cursor it keeps. The owner writes nothing at or past
  # splitKey until an Ack answers this report: Ack.hi == splitKey means the
  # split is committed (a new range owns the tail), anything else that it
  # was refused. Empty: no proposal.
  splitKey @5 :Data;
  splitRows @6 :UInt64;
  # Verify leases: the keys repaired since the previous report (at most 20)
  # and how many more were repaired but not listed.
  repairedKeys @7 :List(Data);
  repairedMore @8 :UInt64;
  features @9 :UInt32;  # featureVerify | featureSplit
}

# worker -> coordinator: first message of a worker (and again after the
# coordinator answers `unknownWorker`).
struct Register {
  workerId @0 :Text;
  host @1 :Text;
  pid @2 :UInt32;
  version @3 :Text;
  # The worker applies Registered.spec (a migration spec). One that predates
  # specs (false) would copy tables as they are: a coordinator with a spec
  # refuses it (versionMismatch).
  supportsSpec @4 :Bool;
  features @5 :UInt32;  # featureVerify | featureSplit
}

# coordinator -> worker: the job's settings.
struct Registered {
  sourceUri @0 :Text;
  targetUri @1 :Text;
  batchRows @2 :UInt32;
  leaseTtlMs @3 :UInt32;
  heartbeatMs @4 :UInt32;
  planId @5 :Text;
  # The version the new store's marker holds once the migration is complete:
  # a worker that cannot reach the coordinator checks it to know it is done.
  toVersion @6 :Int64;
  # The rest of the lease policy (coordinator/lease_policy.h): a worker
  # writes no batch within safetyMarginMs of its view of the deadline, and
  # stops retrying an unanswered completion or release after giveUpMs.
  safetyMarginMs @7 :UInt32;
  livenessMs @8 :UInt32;
  giveUpMs @9 :UInt32;
  # The migration spec (spec/migration_spec.h), canonical TOML text; empty:
  # none (every table copied as it is). A worker resolves its targets from
  # it and the stores (spec/target_plan.h).
  spec @10 :Text;
  # --batch-time-ms: size each batch from the measured rate to take about
  # this long (batchRows is then the cap); 0 = batches of batchRows.
  batchTimeMs @11 :UInt32;
}

struct LeaseRequest {
  workerId @0 :Text;
  features @1 :UInt32;  # featureVerify | featureSplit
}

# coordinator -> worker: a lease on range `rangeId` under fencing token `epoch`.
# `cursor` is the encoded key of the last row already copied (empty: start at lo).
struct Grant {
  rangeId @0 :UInt64;
  epoch @1 :UInt64;
  table @2 :Text;
  lo @3 :Data;
  hi @4 :Data;
  cursor @5 :Data;
  leaseTtlMs @6 :UInt32;
  rowsDone @7 :UInt64;
  bytesDone @8 :UInt64;
  digest @9 :UInt64;
  rowsPerSecond @10 :UInt64;  # this worker's share of the throttle; 0 = none
  rejectedDone @11 :UInt64;   # rows rejected up to the cursor (Progress.rejected)
  # A verify lease (only to workers with featureVerify): compare the range
  # in both stores, repair what differs under this epoch's fence, report
  # complete once the range is equal. `cursor` is then the verification's
  # cursor and `rowsRepaired` the rows repaired so far.
  verify @12 :Bool;
  rowsRepaired @13 :UInt64;
  # The range this one was split off (0: planned). Every write under this
  # lease also records in the new store that the parent now ends at `lo`, so
  # a late batch of the parent's owner past `lo` is fenced there.
  parent @14 :UInt64;
}

# coordinator -> worker: nothing to lease now.
struct NoWork {
  retryAfterMs @0 :UInt32;
  complete @1 :Bool;      # migration complete: the worker exits 0
  paused @2 :Bool;
  failed @3 :Bool;        # migration failed: the worker exits non-zero
  draining @4 :Bool;      # this worker was drained: it exits 0
}

# Protocol 1 only (replaced by Report).
struct Heartbeat {
  workerId @0 :Text;
  rangeId @1 :UInt64;
  epoch @2 :UInt64;
  cursor @3 :Data;
  rowsDone @4 :UInt64;
  bytesDone @5 :UInt64;
  digest @6 :UInt64;
}

# coordinator -> worker: answer to heartbeat / complete / release / reportError.
struct Ack {
  rangeId @0 :UInt64;
  epoch @1 :UInt64;
  leaseTtlMs @2 :UInt32;      # lease renewed for this long from the request
  paused @3 :Bool;            # hold after the current batch
  rowsPerSecond @4 :UInt64;   # this worker's share of the throttle; 0 = none
  drain @5 :Bool;             # finish the batch, release, exit
  # To the change applier during a cut-over: the freeze point (a change
  # position) it must reach; 0 = none. It reports as soon as it has.
  drainTo @6 :Int64;
  # Copy leases: please propose a split (Report.splitKey), keeping about
  # `splitKeep` rows after the cursor.
  split @7 :Bool;
  splitKeep @8 :UInt64;
  # The range's end as the coordinator knows it (hiValid: set; hi empty =
  # table end). Narrower than the grant's hi once a split is committed.
  hi @9 :Data;
  hiValid @10 :Bool;
  # Copy leases the policy could split: workers waiting for work right now.
  # While it is not 0 the owner heartbeats 8 times as often, so that a split
  # ask reaches it soon.
  waiting @11 :UInt32;
}

# coordinator -> worker (online mode, in catching_up / cutting_over): the
# change applier's lease. One applier at a time; its epoch comes from the
# same counter as range grants, later than every copy grant. The applier
# first records its epoch on the fences of ranges 1..rangesTotal (so a
# zombie copy of any range is fenced out), then replays changes in fenced
# transactions that also move the change position in the new store.
struct ApplyGrant {
  epoch @0 :UInt64;
  leaseTtlMs @1 :UInt32;
  rangesTotal @2 :UInt64;
  drainTo @3 :Int64;          # as Ack.drainTo
  tables @4 :List(Text);      # the migrated legacy tables (whose changes are replayed)
}

# worker -> coordinator: the applier's heartbeat and progress, after each
# applied batch and at least every heartbeat interval. Answered by Ack
# (rangeId 0 and the lease's epoch) or Error leaseLost. Positions are
# change positions (stores/change_capture.h), durable in the new store.
struct ApplyReport {
  lease @0 :LeaseRef;         # rangeId 0
  position @1 :Int64;         # last applied position
  caughtUp @2 :Int64;         # every change committed before it is applied (0 = unknown)
  applied @3 :UInt64;         # changes applied so far (the new store's counter)
  pending @4 :UInt64;         # changes known not applied yet (a lower bound)
  oldestPendingMs @5 :Int64;  # commit time of the oldest of them, Unix ms (0 = none)
  release @6 :Bool;           # gives the lease back
  leaving @7 :Bool;           # with release: the worker is shutting down
  error @8 :Text;             # the last batch failed with this (empty = none)
  permanent @9 :Bool;         # error will fail the same way again
}

# Protocol 1 only (replaced by Report).
struct Complete {
  workerId @0 :Text;
  rangeId @1 :UInt64;
  epoch @2 :UInt64;
  rows @3 :UInt64;
  bytes @4 :UInt64;
  digest @5 :UInt64;
  cursor @6 :Data;
  # Also lease me the next range: the reply is then what a LeaseRequest
  # would get (Grant or NoWork) instead of an Ack, saving a round trip per
  # range. A coordinator that predates this field answers Ack; the worker
  # then sends a LeaseRequest as before.
  next @7 :Bool;
}

# Protocol 1 only (replaced by Report).
struct Release {
  workerId @0 :Text;
  rangeId @1 :UInt64;
  epoch @2 :UInt64;
  cursor @3 :Data;
  rowsDone @4 :UInt64;
  bytesDone @5 :UInt64;
  digest @6 :UInt64;
  leaving @7 :Bool;  # the worker is shutting down (SIGTERM / drain)
}

# lease.rangeId 0: the worker cannot use its stores (e.g. its new store
# holds no record of this plan) and leaves; the coordinator shows the
# message as last_error and lists the worker gone.
struct ReportError {
  workerId @0 :Text;  # protocol 1 only: lease.workerId
  rangeId @1 :UInt64; # protocol 1 only: lease.rangeId
  epoch @2 :UInt64;   # protocol 1 only: lease.epoch
  permanent @3 :Bool;
  message @4 :Text;
  lease @5 :LeaseRef;
}

struct Error {
  enum Code {
    badMessage @0;
    versionMismatch @1;
    leaseLost @2;
    unknownWorker @3;
    internal @4;
    unavailable @5;
  }
  code @0 :Code;
  message @1 :Text;
  rangeId @2 :UInt64;
  epoch @3 :UInt64;
}
