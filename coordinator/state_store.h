// StateStore: where the coordinator keeps every decision — the job (sources,
// versions, plan id, last epoch, phase, boundary, version, operator
// settings), the plan (every range with its state, owner, epoch, deadline and
// cursor), the worker registry and an event log.
//
// Contract of every implementation:
//   - Commit() writes one group of changes (dirty ranges, the job row,
//     events, workers) in ONE durable transaction: all of it or none. The
//     coordinator sends no reply that depends on a change before its commit
//     returned Ok, and on a failed commit reloads what is committed.
//   - CreateJob() writes the job and its whole plan in one transaction and
//     fails if a job exists.
//   - Only one coordinator commits to a state at a time. For the SQLite
//     file: an flock held from Open to destruction (a second coordinator gets
//     kLocked naming the holder). For PostgreSQL: a leadership lease (a row
//     with a term and an expiry) that TryLead takes and every Commit renews
//     inside its own transaction, guarded by the term — a deposed
//     coordinator's Commit fails with kLeaseLost and changes nothing.
//
// Implementations: SqliteStateStore (coordinator/sqlite_state_store.h, the
// embedded default, `--state PATH`) and PgStateStore
// (coordinator/pg_state_store.h, `--state postgresql://…`).
//
// Thread safety: a StateStore belongs to the coordinator's event-loop thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "coordinator/range_record.h"

namespace ferry {

struct Event {
  int64_t ts_ms = 0;
  std::string kind;
  uint64_t range = 0;
  uint64_t epoch = 0;
  std::string worker;
  std::string detail;
};

struct WorkerRow {
  std::string id;
  std::string host;
  int64_t pid = 0;
  std::string version;
  int64_t registered_ms = 0;
  int64_t last_seen_ms = 0;
  std::string state;  // active | draining | gone
};

// Who leads a state: one coordinator process.
struct LeaderInfo {
  std::string id;      // host:pid:random, unique per process
  std::string listen;  // its worker endpoint
  std::string status;  // its status endpoint
  int64_t term = 0;    // increases with every new leader
};

struct StateCommit {
  const JobMeta* job = nullptr;              // written when set
  std::vector<const RangeRecord*> ranges;    // changed ranges (updated)
  std::vector<const RangeRecord*> inserted;  // new ranges (split tails), inserted first
  std::vector<Event> events;
  std::vector<WorkerRow> workers;

  bool empty() const {
    return !job && ranges.empty() && inserted.empty() && events.empty() && workers.empty();
  }
};

// What a reader of a state (ferryctl verify) may see: the job and its plan.
class StateReader {
 public:
  virtual ~StateReader() = default;
  virtual Result<std::optional<JobMeta>> LoadJob() = 0;
  virtual Result<std::vector<RangeRecord>> LoadRanges() = 0;
  // Where the state lives, for messages ("state file PATH").
  virtual std::string Describe() const = 0;
};

class StateStore : public StateReader {
 public:
  virtual Result<std::vector<WorkerRow>> LoadWorkers() = 0;
  // The newest `limit` events, newest first.
  virtual Result<std::vector<Event>> LoadEvents(size_t limit) = 0;

  virtual Status CreateJob(const JobMeta& job, const std::vector<RangeRecord>& plan) = 0;
  virtual Status Commit(const StateCommit& commit) = 0;

  // ---- leadership ----
  // Takes the lead for `me` for `ttl_ms` if nobody holds it (or the holder's
  // lease expired): true if this process now leads (a new term), false if
  // another live coordinator does.
  virtual Result<bool> TryLead(const LeaderInfo& me, int64_t ttl_ms) = 0;
  // Extends the lead by its TTL. kLeaseLost if this process was deposed;
  // kUnavailable if the state cannot be reached (the lead may still hold).
  virtual Status RenewLead() = 0;
  // Gives the lead up at once (a clean stop), so a standby takes over now.
  virtual void ResignLead() = 0;
  // The live leader, if any (for standbys' status answers).
  virtual Result<std::optional<LeaderInfo>> Leader() = 0;
  // True when several coordinators may share this state (one leads, the
  // others stand by); false for a state only one process can open.
  virtual bool shared() const = 0;

  // Test hook: the n-th statement (0-based) of the next commits fails, as if
  // the disk did. -1 disables.
  virtual void FailStatementForTest(int n) = 0;
};

// Opens the coordinator's state at `location` (--state): a SQLite file path,
// or a postgresql:// URI. Creates or upgrades the schema; for a file, takes
// the one-coordinator lock. `ttl_ms` bounds how long a call to a state
// server may hang (the lease TTL). Errors: kInvalidArgument (cannot
// create/open; names --state and what to do), kLocked (another coordinator
// holds the file; names the holder), kFailedPrecondition (written by a newer
// ferry; names both versions), kUnavailable (busy, or the server cannot be
// reached; names the redacted URI).
Result<std::unique_ptr<StateStore>> OpenStateStore(const std::string& location, const Clock* clock,
                                                   int64_t ttl_ms);

// True when `location` names a PostgreSQL state (postgresql:// or postgres://).
bool IsPgStateLocation(const std::string& location);

// Opens an existing state read-only (no lock, nothing created or upgraded),
// for tools that run beside a live coordinator. kInvalidArgument if it does
// not exist or is not a ferry state.
Result<std::unique_ptr<StateReader>> OpenStateReader(const std::string& location);

}  // namespace ferry
