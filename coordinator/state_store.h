// StateStore: the coordinator's SQLite state file (--state PATH, WAL,
// synchronous=FULL). Holds the job (sources, versions, plan id, last epoch,
// phase, boundary, version), the plan (every range with its state, owner,
// epoch, deadline and cursor), the worker registry and an event log.
//
// The schema is versioned (PRAGMA user_version) and created or upgraded on
// open inside BEGIN IMMEDIATE, retried with jittered backoff under a total
// time cap, so many processes may open the same file at once.
//
// Commit() writes one group of changes (dirty ranges, the job row, events,
// workers) in ONE transaction: either all of it is durable or none.
//
// Checkpoints of the state file's WAL run on a private thread with its own
// connection (common/wal_checkpointer.h), not inside Commit().
//
// Thread safety: owned by the coordinator's event-loop thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/sqlite_util.h"
#include "common/status.h"
#include "common/wal_checkpointer.h"
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

struct StateCommit {
  const JobMeta* job = nullptr;  // written when set
  std::vector<const RangeRecord*> ranges;
  std::vector<Event> events;
  std::vector<WorkerRow> workers;
};

class StateStore {
 public:
  // Opens or creates the state file and brings its schema up to date.
  // kInvalidArgument if the path cannot be created or opened (names the
  // path and the cause); kFailedPrecondition if a newer ferry wrote it;
  // kUnavailable if the schema lock could not be had within the time cap.
  static Result<std::unique_ptr<StateStore>> Open(const std::string& path, const Clock* clock);

  Result<std::optional<JobMeta>> LoadJob();
  Result<std::vector<RangeRecord>> LoadRanges();
  Result<std::vector<WorkerRow>> LoadWorkers();
  Result<std::vector<Event>> LoadEvents(size_t limit);

  // Writes the job and its whole plan in one transaction. Fails if a job exists.
  Status CreateJob(const JobMeta& job, const std::vector<RangeRecord>& plan);
  Status Commit(const StateCommit& commit);

  const std::string& path() const { return path_; }

  // Test hook: the n-th statement (0-based) of the next commits fails, as if
  // the disk did. -1 disables.
  void FailStatementForTest(int n) { fail_at_ = n; }

 private:
  StateStore(std::string path, Db db, const Clock* clock)
      : path_(std::move(path)), db_(std::move(db)), clock_(clock) {}
  Status Prepare();
  Status Step(Stmt& s, const char* what);
  Status WriteJob(const JobMeta& job);
  Status WriteRange(const RangeRecord& r, bool insert);
  Status WriteEvent(const Event& e);
  Status Rollback(Status cause);

  std::string path_;
  std::unique_ptr<WalCheckpointer> checkpointer_;  // outlives db_
  Db db_;
  const Clock* clock_;
  Stmt job_upsert_, range_insert_, range_update_, event_insert_, worker_upsert_;
  int fail_at_ = -1;
  int step_count_ = 0;
};

}  // namespace ferry
