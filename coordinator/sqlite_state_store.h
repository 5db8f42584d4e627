// SqliteStateStore: the StateStore (coordinator/state_store.h) in one SQLite
// file (--state PATH; WAL, synchronous=FULL), the embedded default.
//
// Open() takes the one-coordinator lock first (StateLock: an flock on
// PATH.lock naming its holder), then creates or upgrades the schema, which is
// versioned (PRAGMA user_version) and changed inside BEGIN IMMEDIATE, retried
// with jittered backoff under a total time cap, so many processes may open
// the same file at once.
//
// Checkpoints of the state file's WAL run on a private thread with its own
// connection (common/wal_checkpointer.h), not inside Commit().
//
// Thread safety: owned by the coordinator's event-loop thread.
#pragma once

#include <memory>
#include <string>

#include "common/sqlite_util.h"
#include "common/version.h"
#include "common/wal_checkpointer.h"
#include "coordinator/state_lock.h"
#include "coordinator/state_store.h"

namespace ferry {

class SqliteStateStore final : public StateStore {
 public:
  // See OpenStateStore().
  static Result<std::unique_ptr<SqliteStateStore>> Open(const std::string& path,
                                                        const Clock* clock);
  // An existing state file, read-only, without the lock.
  static Result<std::unique_ptr<SqliteStateStore>> OpenReadOnly(const std::string& path);
  // Test support (upgrades from older files): brings the file at `path`
  // (created if absent; empty, or of an older schema) to the state schema
  // of `version` (1..kStateSchemaVersion) as that version of ferry made it,
  // job and ranges left as they are. Without the lock.
  static Status WriteSchemaForTest(const std::string& path, int version);

  Result<std::optional<JobMeta>> LoadJob() override;
  Result<std::vector<RangeRecord>> LoadRanges() override;
  std::string Describe() const override { return "state file " + path_; }
  Result<std::vector<WorkerRow>> LoadWorkers() override;
  Result<std::vector<Event>> LoadEvents(size_t limit) override;
  Status CreateJob(const JobMeta& job, const std::vector<RangeRecord>& plan) override;
  Status Commit(const StateCommit& commit) override;
  void FailStatementForTest(int n) override { fail_at_ = n; }
  // The flock taken at Open is the lead: held for the store's life.
  Result<bool> TryLead(const LeaderInfo& me, int64_t) override {
    leader_ = me;
    leader_.term = 1;
    return true;
  }
  Status RenewLead() override { return Status::Ok(); }
  void ResignLead() override {}
  Result<std::optional<LeaderInfo>> Leader() override { return std::optional<LeaderInfo>(leader_); }
  bool shared() const override { return false; }

 private:
  SqliteStateStore(std::string path, Db db, const Clock* clock)
      : path_(std::move(path)), db_(std::move(db)), clock_(clock) {}
  Status Prepare();
  Status Step(Stmt& s, const char* what);
  Status WriteJob(const JobMeta& job);
  Status WriteRange(const RangeRecord& r, bool insert);
  Status WriteEvent(const Event& e);
  Status Rollback(Status cause);

  std::string path_;
  std::unique_ptr<StateLock> lock_;                // held for the store's life
  std::unique_ptr<WalCheckpointer> checkpointer_;  // outlives db_
  Db db_;
  const Clock* clock_;
  Stmt job_upsert_, range_insert_, range_update_, event_insert_, worker_upsert_;
  int fail_at_ = -1;
  // Read-only opens: the file's schema version (not upgraded: loads read the
  // columns added later as their defaults).
  int schema_version_ = kStateSchemaVersion;
  int step_count_ = 0;
  LeaderInfo leader_;
};

}  // namespace ferry
