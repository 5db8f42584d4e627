// PgStateStore: the StateStore (coordinator/state_store.h) in a PostgreSQL
// database (`--state postgresql://…`), so the coordinator's state survives
// the loss of the coordinator's machine and several coordinators can share
// it: one leads, the others stand by.
//
// Layout: schema `ferry_state` (never a user table: stores list only their
// connection's current schema) with tables meta (schema version), job,
// ranges, workers, events, leader (one row: term, holder, endpoints,
// expiry) and terms (one row per term: holder, when it started, its last
// commit and commit count). Strings are stored as bytea: worker ids and
// messages come from the network and need not be UTF-8. One job per
// database.
//
// Leadership: TryLead takes the leader row when its expiry (the database's
// clock, not ours) has passed, with term + 1. Commit runs in ONE
// transaction, pipelined in one round trip: BEGIN; ferry_state.guard(term,
// holder, ttl) — which renews the lease and raises SQLSTATE FY001 unless
// this process still holds that term — then the job, ranges, events,
// workers, the term's commit count; COMMIT. A deposed coordinator's commit
// therefore changes nothing and fails with kLeaseLost; a takeover waits on
// the leader row's lock, so it can never interleave with a commit.
// Commits are as durable as the server makes them (synchronous_commit).
//
// Connection: TCP keepalives and a TCP user timeout of the lease TTL, so a
// partitioned server fails calls within a TTL instead of hanging the event
// loop; a lost connection fails the call with kUnavailable and the next call
// reconnects.
//
// Thread safety: owned by the coordinator's event-loop thread.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/pg_util.h"
#include "coordinator/state_store.h"

namespace ferry {

class PgStateStore final : public StateStore {
 public:
  // Connects, creates or upgrades the schema (serialized by an advisory
  // lock). kUnavailable naming the redacted URI when the server cannot be
  // reached; kInvalidArgument for a bad URI or missing privilege;
  // kFailedPrecondition when a newer ferry wrote the schema (names both
  // versions). `io_timeout_ms`: the TCP user timeout (the lease TTL).
  static Result<std::unique_ptr<PgStateStore>> Open(const std::string& uri, const Clock* clock,
                                                    int64_t io_timeout_ms);
  // An existing state, read-only (no schema changes, no leadership).
  static Result<std::unique_ptr<PgStateStore>> OpenReadOnly(const std::string& uri);

  Result<std::optional<JobMeta>> LoadJob() override;
  Result<std::vector<RangeRecord>> LoadRanges() override;
  std::string Describe() const override;
  Result<std::vector<WorkerRow>> LoadWorkers() override;
  Result<std::vector<Event>> LoadEvents(size_t limit) override;
  Status CreateJob(const JobMeta& job, const std::vector<RangeRecord>& plan) override;
  Status Commit(const StateCommit& commit) override;
  void FailStatementForTest(int n) override { fail_next_ = n >= 0; }

  Result<bool> TryLead(const LeaderInfo& me, int64_t ttl_ms) override;
  Status RenewLead() override;
  void ResignLead() override;
  Result<std::optional<LeaderInfo>> Leader() override;
  bool shared() const override { return true; }

 private:
  PgStateStore(std::string uri, const Clock* clock, int64_t io_timeout_ms)
      : uri_(std::move(uri)), clock_(clock), io_timeout_ms_(io_timeout_ms) {}

  // A statement of a pipelined transaction: SQL and text parameters
  // (nullopt = NULL).
  struct Statement {
    std::string sql;
    std::vector<std::optional<std::string>> params;
  };

  Status Connect();
  Status EnsureConnected();
  Status CreateSchema();
  // Runs one statement; kUnavailable (and drops the connection) if it is lost.
  Result<PgResult> Run(const Statement& s, const char* what);
  // BEGIN; statements...; COMMIT in one round trip (libpq pipeline mode).
  // The first error aborts the transaction; FY001 from the guard is
  // kLeaseLost.
  Status RunTransaction(const std::vector<Statement>& statements, const char* what);
  Statement Guard() const;
  Status Fail(const PGresult* res, const std::string& what);

  std::string uri_;
  const Clock* clock_;
  int64_t io_timeout_ms_;
  PgConnPtr conn_;
  bool read_only_ = false;
  // Opened read-only on a schema of version 1 (no spec or rejected columns
  // yet): loads read them as empty / 0.
  bool v1_schema_ = false;
  // The lead this process holds (term 0: none).
  LeaderInfo me_;
  int64_t ttl_ms_ = 10000;
  bool fail_next_ = false;
};

}  // namespace ferry
