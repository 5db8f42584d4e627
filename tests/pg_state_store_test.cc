// PgStateStore against a real PostgreSQL (FERRY_TEST_PG_URI; skips without
// it): the state round-trips, leadership is exclusive, a deposed leader can
// commit nothing, and bad input is one clear error.
#include "coordinator/pg_state_store.h"

#include <gtest/gtest.h>

#include "common/exit_codes.h"
#include "common/version.h"
#include "tests/process_util.h"
#include "tests/test_util.h"

namespace ferry {
namespace {

using testing::PgAdminUri;
using testing::PgQueryInt;
using testing::PgQueryText;
using testing::PgTestDb;

#define REQUIRE_PG()                                                     \
  if (PgAdminUri().empty()) GTEST_SKIP() << "FERRY_TEST_PG_URI not set"; \
  PgTestDb db;                                                           \
  ASSERT_TRUE(db.ok())

constexpr int64_t kTtl = 5000;

std::unique_ptr<PgStateStore> Open(const std::string& uri, const Clock* clock) {
  auto s = PgStateStore::Open(uri, clock, kTtl);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(s).value() : nullptr;
}

LeaderInfo Me(const std::string& id) { return LeaderInfo{id, "tcp://" + id, "tcp://s-" + id, 0}; }

std::vector<RangeRecord> Plan(size_t n) {
  std::vector<RangeRecord> out;
  for (size_t i = 0; i < n; ++i) {
    RangeRecord r;
    r.id = i + 1;
    r.table = "t\xff";  // not UTF-8: stored as bytes
    r.lo = i ? std::string("\x15\x00", 2) + char('a' + i) : "";
    r.hi = i + 1 < n ? std::string("\x15\x00", 2) + char('b' + i) : "";
    r.est_rows = 100 + i;
    out.push_back(r);
  }
  return out;
}

JobMeta Job() {
  JobMeta j;
  j.source_uri = "sqlite:/data/legacy.db";
  j.target_uri = "postgresql://u:***@h/db";
  j.plan_id = "p1";
  j.from_version = 1;
  j.to_version = 2;
  j.tables = "t";
  return j;
}

TEST(PgStateStoreTest, JobPlanWorkersAndEventsRoundTripByteForByte) {
  REQUIRE_PG();
  FakeClock clock;
  auto s = Open(db.uri(), &clock);
  ASSERT_TRUE(s);
  ASSERT_TRUE(*s->TryLead(Me("a"), kTtl));
  ASSERT_TRUE(s->CreateJob(Job(), Plan(3)).ok());
  EXPECT_FALSE(s->CreateJob(Job(), Plan(3)).ok());  // one job per state

  std::vector<RangeRecord> ranges = *s->LoadRanges();
  ASSERT_EQ(ranges.size(), 3u);
  RangeRecord& r = ranges[1];
  r.state = RangeState::kLeased;
  r.owner = std::string("w\x00\xfe", 3);  // worker ids come from the network
  r.epoch = 7;
  r.deadline_ms = 1234567;
  r.cursor = std::string("\x15\x00\x01\x02", 4);
  r.rows = 41;
  r.bytes = 4100;
  r.digest = 0xfedcba9876543210ull;  // above INT64_MAX: stored bit for bit
  r.last_error = "disk 'full'";
  JobMeta job = Job();
  job.last_epoch = 7;
  job.boundary = std::string("t\0", 2);
  job.paused = true;
  job.throttle_rows_per_s = 5000;
  job.current_version = 1;
  StateCommit c;
  c.job = &job;
  c.ranges = {&r};
  c.events = {Event{42, "register", 0, 0, std::string("w\x00\xfe", 3), "host=h"}};
  c.workers = {WorkerRow{"w1", "h", 9, "0.1.0", 1, 2, "active"},
               WorkerRow{"w1", "h", 9, "0.1.0", 1, 3, "draining"}};  // same worker twice
  ASSERT_TRUE(s->Commit(c).ok());

  auto again = Open(db.uri(), &clock);  // a second process reads it back
  ASSERT_TRUE(again);
  auto loaded_job = *again->LoadJob();
  ASSERT_TRUE(loaded_job.has_value());
  EXPECT_EQ(loaded_job->boundary, job.boundary);
  EXPECT_TRUE(loaded_job->paused);
  EXPECT_EQ(loaded_job->throttle_rows_per_s, 5000u);
  EXPECT_EQ(loaded_job->current_version, 1);
  EXPECT_EQ(loaded_job->last_epoch, 7u);
  auto loaded = *again->LoadRanges();
  ASSERT_EQ(loaded.size(), 3u);
  EXPECT_EQ(loaded[0].table, "t\xff");
  EXPECT_EQ(loaded[1].owner, r.owner);
  EXPECT_EQ(loaded[1].cursor, r.cursor);
  EXPECT_EQ(loaded[1].digest, r.digest);
  EXPECT_EQ(loaded[1].state, RangeState::kLeased);
  EXPECT_EQ(loaded[1].deadline_ms, 1234567);
  EXPECT_EQ(loaded[1].last_error, "disk 'full'");
  EXPECT_EQ(loaded[2].est_rows, 102u);
  auto workers = *again->LoadWorkers();
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0].state, "draining");  // the last row of the commit wins
  auto events = *again->LoadEvents(10);
  ASSERT_EQ(events.size(), 2u);  // plan, register (newest first)
  EXPECT_EQ(events[0].kind, "register");
  EXPECT_EQ(events[0].worker, std::string("w\x00\xfe", 3));
  EXPECT_EQ(events[1].kind, "plan");
}

TEST(PgStateStoreTest, OnlyOneCoordinatorLeadsAndTermsGrow) {
  REQUIRE_PG();
  FakeClock clock;
  auto a = Open(db.uri(), &clock);
  auto b = Open(db.uri(), &clock);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(*a->TryLead(Me("a"), kTtl));
  EXPECT_FALSE(*b->TryLead(Me("b"), kTtl));
  auto leader = *b->Leader();
  ASSERT_TRUE(leader.has_value());
  EXPECT_EQ(leader->id, "a");
  EXPECT_EQ(leader->listen, "tcp://a");
  EXPECT_EQ(leader->term, 1);
  EXPECT_TRUE(a->RenewLead().ok());
  a->ResignLead();  // a clean stop: b takes over at once
  ASSERT_TRUE(*b->TryLead(Me("b"), kTtl));
  EXPECT_EQ((*b->Leader())->term, 2);
  EXPECT_EQ(a->RenewLead().code(), Code::kLeaseLost);
}

// The leader's lease runs out (as when it is paused or partitioned) and
// another coordinator takes over: every later commit of the old one fails
// with kLeaseLost and leaves the state as the new leader wrote it; the terms
// table shows the old term's last commit before the new term began.
TEST(PgStateStoreTest, DeposedLeaderCanCommitNothing) {
  REQUIRE_PG();
  FakeClock clock;
  auto old_leader = Open(db.uri(), &clock);
  auto new_leader = Open(db.uri(), &clock);
  ASSERT_TRUE(old_leader && new_leader);
  ASSERT_TRUE(*old_leader->TryLead(Me("old"), kTtl));
  ASSERT_TRUE(old_leader->CreateJob(Job(), Plan(2)).ok());
  std::vector<RangeRecord> ranges = *old_leader->LoadRanges();
  JobMeta job = Job();
  StateCommit c;
  c.job = &job;
  c.ranges = {&ranges[0]};
  ASSERT_TRUE(old_leader->Commit(c).ok());

  // Time passes for the database, not for the old leader: its lease expires.
  ASSERT_TRUE(testing::PgExec(db.uri(),
                              "UPDATE ferry_state.leader SET expires_at = "
                              "clock_timestamp() - interval '1 second'"));
  ASSERT_TRUE(*new_leader->TryLead(Me("new"), kTtl));

  ranges[0].state = RangeState::kLeased;
  ranges[0].owner = "stale";
  ranges[0].epoch = 99;
  job.last_epoch = 99;
  Status s = old_leader->Commit(c);
  EXPECT_EQ(s.code(), Code::kLeaseLost) << s.ToString();
  EXPECT_NE(s.message().find("deposed"), std::string::npos) << s.message();
  EXPECT_EQ(old_leader->RenewLead().code(), Code::kLeaseLost);

  auto seen = *new_leader->LoadRanges();
  EXPECT_EQ(seen[0].state, RangeState::kPending);
  EXPECT_EQ(seen[0].epoch, 0u);
  EXPECT_EQ((*new_leader->LoadJob())->last_epoch, 0u);
  EXPECT_EQ(PgQueryInt(db.uri(),
                       "SELECT count(*) FROM ferry_state.terms o JOIN ferry_state.terms n ON "
                       "n.term = o.term + 1 WHERE o.last_commit_at >= n.started_at"),
            0);
  EXPECT_EQ(PgQueryInt(db.uri(), "SELECT commits FROM ferry_state.terms WHERE term = 1"), 1);
}

TEST(PgStateStoreTest, SchemaOfANewerFerryIsRefusedNamingBothVersions) {
  REQUIRE_PG();
  FakeClock clock;
  ASSERT_TRUE(Open(db.uri(), &clock));
  ASSERT_TRUE(testing::PgExec(
      db.uri(), "UPDATE ferry_state.meta SET value = 99 WHERE key = 'schema_version'"));
  auto s = PgStateStore::Open(db.uri(), &clock, kTtl);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("99"), std::string::npos) << s.status().message();
  EXPECT_NE(s.status().message().find(std::to_string(kStateSchemaVersion)), std::string::npos)
      << s.status().message();
}

// The coordinator's exit codes for a state database it cannot use.
TEST(PgStateStoreTest, UnreachableStateDatabaseIsExit5NamingTheRedactedUri) {
  testing::TempDir dir;
  testing::ExecSql(dir.File("legacy.db"), "CREATE TABLE t (id INTEGER PRIMARY KEY)");
  const int port = testing::FreePort();  // nothing listens there
  const std::string uri = "postgresql://ferry:s3cret@127.0.0.1:" + std::to_string(port) + "/x";
  std::string out, err;
  const int code = testing::RunCommandSplit(
      {testing::Bin("ferry-coordinator"), "--source", "sqlite:" + dir.File("legacy.db"), "--target",
       "sqlite:" + dir.File("new.db"), "--state", uri, "--listen", "tcp://127.0.0.1:0",
       "--status-endpoint", "tcp://127.0.0.1:0"},
      &out, &err, 60000);
  EXPECT_EQ(code, kExitUnavailable) << err;
  EXPECT_EQ(testing::NonEmptyLines(err).size(), 1u) << err;
  EXPECT_NE(err.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << err;
  EXPECT_EQ(err.find("s3cret"), std::string::npos) << err;
  EXPECT_NE(err.find("--state"), std::string::npos) << err;
  EXPECT_FALSE(testing::Exists(dir.File("new.db")));
}

TEST(PgStateStoreTest, SecondCoordinatorWithOtherArgumentsIsRefusedNamingTheDifference) {
  REQUIRE_PG();
  testing::TempDir dir;
  testing::MakeDemoStore(dir.File("legacy.db"), 2000);
  auto args = [&](const std::string& target) {
    return std::vector<std::string>{testing::Bin("ferry-coordinator"),
                                    "--source",
                                    "sqlite:" + dir.File("legacy.db"),
                                    "--target",
                                    target,
                                    "--state",
                                    db.uri(),
                                    "--listen",
                                    "tcp://127.0.0.1:0",
                                    "--status-endpoint",
                                    "tcp://127.0.0.1:0",
                                    "--exit-when-done",
                                    "--local-workers",
                                    "1"};
  };
  std::string out, err;
  ASSERT_EQ(testing::RunCommandSplit(args("sqlite:" + dir.File("new.db")), &out, &err, 120000), 0)
      << err;
  const int code =
      testing::RunCommandSplit(args("sqlite:" + dir.File("other.db")), &out, &err, 60000);
  EXPECT_EQ(code, kExitUsage) << err;
  EXPECT_NE(err.find("--target"), std::string::npos) << err;
  EXPECT_NE(err.find("other.db"), std::string::npos) << err;
  EXPECT_FALSE(testing::Exists(dir.File("other.db")));
}

}  // namespace
}  // namespace ferry
