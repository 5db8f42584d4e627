// The state stores (SQLite file, PostgreSQL when FERRY_TEST_PG_URI is set)
// keep what splits and verification add: ranges inserted after the plan (a
// split's tail, with its parent), a head's new end and estimate, the verify
// fields, the job's --verify; and a state file written by the previous
// schema (version 1) is upgraded in place, or read as it is by a read-only
// open. Older SQLite files are made by the store's own schema code
// (SqliteStateStore::WriteSchemaForTest), not by a copy of it.
#include <gtest/gtest.h>

#include <memory>

#include "common/key_codec.h"
#include "common/version.h"
#include "coordinator/sqlite_state_store.h"
#include "coordinator/state_store.h"
#include "tests/test_util.h"

namespace ferry {
namespace {

using testing::TempDir;

std::string Key(int64_t k) {
  Value v{k};
  return EncodeKey(&v, 1);
}

std::vector<RangeRecord> Plan() {
  std::vector<RangeRecord> out;
  for (uint64_t i = 1; i <= 3; ++i) {
    RangeRecord r;
    r.id = i;
    r.table = "t";
    r.lo = i == 1 ? "" : Key(static_cast<int64_t>(i) * 100);
    r.hi = i == 3 ? "" : Key(static_cast<int64_t>(i + 1) * 100);
    r.est_rows = 100;
    out.push_back(r);
  }
  return out;
}

class StateStoreSplitTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgresql") {
      if (testing::PgAdminUri().empty()) GTEST_SKIP() << "FERRY_TEST_PG_URI is not set";
      pg_ = std::make_unique<testing::PgTestDb>();
      ASSERT_TRUE(pg_->ok());
      location_ = pg_->uri();
    } else {
      location_ = dir_.File("state.db");
    }
  }
  std::unique_ptr<StateStore> Open() {
    auto s = OpenStateStore(location_, &clock_, 10000);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    if (!s.ok()) return nullptr;
    LeaderInfo me{"test:1:abcd", "", "", 0};
    auto led = (*s)->TryLead(me, 10000);
    EXPECT_TRUE(led.ok() && *led);
    return std::move(s).value();
  }

  TempDir dir_;
  std::unique_ptr<testing::PgTestDb> pg_;
  std::string location_;
  FakeClock clock_;
};

TEST_P(StateStoreSplitTest, InsertedRangesAndVerifyFieldsRoundTrip) {
  JobMeta job;
  job.source_uri = "sqlite:a";
  job.target_uri = "sqlite:b";
  job.plan_id = "p1";
  job.verify = true;
  std::vector<RangeRecord> plan = Plan();
  {
    auto state = Open();
    ASSERT_TRUE(state);
    ASSERT_TRUE(state->CreateJob(job, plan).ok());
    // Range 2 is split at 250: its tail is range 4; range 1 is verified.
    RangeRecord head = plan[1];
    head.hi = Key(250);
    head.est_rows = 50;
    head.state = RangeState::kLeased;
    head.owner = "w1";
    head.epoch = 7;
    RangeRecord tail;
    tail.id = 4;
    tail.table = "t";
    tail.lo = Key(250);
    tail.hi = Key(300);
    tail.est_rows = 50;
    tail.parent = 2;
    RangeRecord verified = plan[0];
    verified.state = RangeState::kDone;
    verified.verified = true;
    verified.verify_cursor = Key(199);
    verified.rows_repaired = 3;
    StateCommit c;
    c.job = &job;
    c.ranges = {&head, &verified};
    c.inserted = {&tail};
    ASSERT_TRUE(state->Commit(c).ok());
    // A verify lease in flight is kept as such.
    RangeRecord leased = verified;
    leased.state = RangeState::kLeased;
    leased.verified = false;
    leased.verify_lease = true;
    leased.epoch = 8;
    StateCommit c2;
    c2.ranges = {&leased};
    ASSERT_TRUE(state->Commit(c2).ok());
    state->ResignLead();  // the next coordinator takes over at once
  }
  auto state = Open();
  ASSERT_TRUE(state);
  auto loaded_job = state->LoadJob();
  ASSERT_TRUE(loaded_job.ok() && loaded_job->has_value());
  EXPECT_TRUE((*loaded_job)->verify);
  auto ranges = state->LoadRanges();
  ASSERT_TRUE(ranges.ok()) << ranges.status().ToString();
  ASSERT_EQ(ranges->size(), 4u);
  const RangeRecord& r1 = (*ranges)[0];
  EXPECT_TRUE(r1.verify_lease);
  EXPECT_FALSE(r1.verified);
  EXPECT_EQ(r1.verify_cursor, Key(199));
  EXPECT_EQ(r1.rows_repaired, 3u);
  EXPECT_EQ(r1.epoch, 8u);
  const RangeRecord& r2 = (*ranges)[1];
  EXPECT_EQ(r2.hi, Key(250));
  EXPECT_EQ(r2.est_rows, 50u);
  EXPECT_EQ(r2.parent, 0u);
  const RangeRecord& r4 = (*ranges)[3];
  EXPECT_EQ(r4.id, 4u);
  EXPECT_EQ(r4.parent, 2u);
  EXPECT_EQ(r4.lo, Key(250));
  EXPECT_EQ(r4.hi, Key(300));
  EXPECT_EQ(r4.state, RangeState::kPending);
  // Read-only readers (ferryctl verify) see the same.
  auto reader = OpenStateReader(location_);
  ASSERT_TRUE(reader.ok());
  auto read = (*reader)->LoadRanges();
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->size(), 4u);
  EXPECT_EQ((*read)[3].parent, 2u);
}

INSTANTIATE_TEST_SUITE_P(Engines, StateStoreSplitTest, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

// A version-1 state file: the schema of the previous ferry, with a job.
void MakeV1State(const std::string& path) {
  Status schema = SqliteStateStore::WriteSchemaForTest(path, 1);
  ASSERT_TRUE(schema.ok()) << schema.ToString();
  ASSERT_TRUE(testing::ExecSql(path, R"sql(
INSERT INTO job VALUES (1, 'sqlite:a', 'sqlite:b', 1, 2, '', 'p0', 3, 0, x'', NULL, 0, 0, '', 0);
INSERT INTO ranges VALUES (1, 't', x'', x'', 10, 2, 'w', 3, 0, x'', 10, 100, 42, 1, 0, '');
)sql"));
}

TEST(StateStoreUpgradeTest, VersionOneFileIsReadAsItIsAndUpgradedInPlace) {
  TempDir dir;
  const std::string path = dir.File("state.db");
  MakeV1State(path);
  {
    auto reader = OpenStateReader(path);  // read-only: not upgraded
    ASSERT_TRUE(reader.ok()) << reader.status().ToString();
    auto ranges = (*reader)->LoadRanges();
    ASSERT_TRUE(ranges.ok()) << ranges.status().ToString();
    ASSERT_EQ(ranges->size(), 1u);
    EXPECT_FALSE((*ranges)[0].verified);
    EXPECT_EQ((*ranges)[0].digest, 42u);
    auto job = (*reader)->LoadJob();
    ASSERT_TRUE(job.ok() && job->has_value());
    EXPECT_FALSE((*job)->verify);
  }
  EXPECT_EQ(testing::QueryInt(path, "PRAGMA user_version"), 1);
  FakeClock clock;
  auto state = OpenStateStore(path, &clock, 10000);
  ASSERT_TRUE(state.ok()) << state.status().ToString();
  EXPECT_EQ(testing::QueryInt(path, "PRAGMA user_version"), kStateSchemaVersion);
  auto ranges = (*state)->LoadRanges();
  ASSERT_TRUE(ranges.ok());
  EXPECT_EQ((*ranges)[0].rows, 10u);
  EXPECT_EQ((*ranges)[0].parent, 0u);
  auto job = (*state)->LoadJob();
  ASSERT_TRUE(job.ok() && job->has_value());
  EXPECT_EQ((*job)->plan_id, "p0");
}

// A version-2 state file (migration specs, before --verify and splits):
// read as it is by a read-only open, upgraded in place to the current
// schema by a read-write one, keeping the spec and the rejected counts.
TEST(StateStoreUpgradeTest, VersionTwoFileKeepsTheSpecAndGainsTheVerifyColumns) {
  TempDir dir;
  const std::string path = dir.File("state.db");
  MakeV1State(path);
  Status schema = SqliteStateStore::WriteSchemaForTest(path, 2);
  ASSERT_TRUE(schema.ok()) << schema.ToString();
  ASSERT_TRUE(testing::ExecSql(path, R"sql(
UPDATE job SET spec_text = 'the spec', spec_digest = 'd1';
UPDATE ranges SET rejected = 5;
)sql"));
  {
    auto reader = OpenStateReader(path);
    ASSERT_TRUE(reader.ok()) << reader.status().ToString();
    auto ranges = (*reader)->LoadRanges();
    ASSERT_TRUE(ranges.ok()) << ranges.status().ToString();
    ASSERT_EQ(ranges->size(), 1u);
    EXPECT_EQ((*ranges)[0].rejected, 5u);
    EXPECT_FALSE((*ranges)[0].verified);
    auto job = (*reader)->LoadJob();
    ASSERT_TRUE(job.ok() && job->has_value()) << job.status().ToString();
    EXPECT_EQ((*job)->spec_text, "the spec");
    EXPECT_FALSE((*job)->verify);
  }
  EXPECT_EQ(testing::QueryInt(path, "PRAGMA user_version"), 2);
  FakeClock clock;
  auto state = OpenStateStore(path, &clock, 10000);
  ASSERT_TRUE(state.ok()) << state.status().ToString();
  EXPECT_EQ(testing::QueryInt(path, "PRAGMA user_version"), kStateSchemaVersion);
  auto ranges = (*state)->LoadRanges();
  ASSERT_TRUE(ranges.ok()) << ranges.status().ToString();
  EXPECT_EQ((*ranges)[0].rejected, 5u);
  EXPECT_EQ((*ranges)[0].rows_repaired, 0u);
  auto job = (*state)->LoadJob();
  ASSERT_TRUE(job.ok() && job->has_value());
  EXPECT_EQ((*job)->spec_digest, "d1");
}

// The same for a PostgreSQL state of schema version 2.
TEST(StateStoreUpgradeTest, VersionTwoPostgresqlStateGainsTheVerifyColumns) {
  if (testing::PgAdminUri().empty()) GTEST_SKIP() << "FERRY_TEST_PG_URI is not set";
  testing::PgTestDb db;
  ASSERT_TRUE(db.ok());
  FakeClock clock;
  {
    auto s = OpenStateStore(db.uri(), &clock, 10000);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    ASSERT_TRUE((*s)->TryLead(LeaderInfo{"me", "", "", 0}, 10000).ok());
    JobMeta job;
    job.plan_id = "p1";
    job.spec_text = "the spec";
    std::vector<RangeRecord> plan = Plan();
    plan[0].rejected = 5;
    ASSERT_TRUE((*s)->CreateJob(job, plan).ok());
    (*s)->ResignLead();
  }
  ASSERT_TRUE(testing::PgExec(
      db.uri(),
      "ALTER TABLE ferry_state.job DROP COLUMN verify;"
      "ALTER TABLE ferry_state.ranges DROP COLUMN parent, DROP COLUMN verified, DROP COLUMN "
      "verify_lease, DROP COLUMN verify_cursor, DROP COLUMN rows_repaired;"
      "UPDATE ferry_state.meta SET value = 2 WHERE key = 'schema_version'"));
  {
    auto reader = OpenStateReader(db.uri());
    ASSERT_TRUE(reader.ok()) << reader.status().ToString();
    auto ranges = (*reader)->LoadRanges();
    ASSERT_TRUE(ranges.ok()) << ranges.status().ToString();
    ASSERT_EQ(ranges->size(), 3u);
    EXPECT_EQ((*ranges)[0].rejected, 5u);
    EXPECT_EQ((*ranges)[0].parent, 0u);
    auto job = (*reader)->LoadJob();
    ASSERT_TRUE(job.ok() && job->has_value()) << job.status().ToString();
    EXPECT_EQ((*job)->spec_text, "the spec");
    EXPECT_FALSE((*job)->verify);
  }
  auto s = OpenStateStore(db.uri(), &clock, 10000);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(testing::PgQueryInt(db.uri(),
                                "SELECT value FROM ferry_state.meta WHERE key = 'schema_version'"),
            kStateSchemaVersion);
  ASSERT_TRUE((*s)->TryLead(LeaderInfo{"me2", "", "", 0}, 10000).ok());
  auto ranges = (*s)->LoadRanges();
  ASSERT_TRUE(ranges.ok()) << ranges.status().ToString();
  EXPECT_EQ((*ranges)[0].rejected, 5u);
  // The upgraded state takes a split and a verification.
  RangeRecord tail;
  tail.id = 4;
  tail.table = "t";
  tail.parent = 3;
  RangeRecord verified = (*ranges)[0];
  verified.verified = true;
  verified.rows_repaired = 2;
  StateCommit c;
  c.ranges = {&verified};
  c.inserted = {&tail};
  ASSERT_TRUE((*s)->Commit(c).ok());
  ranges = (*s)->LoadRanges();
  ASSERT_TRUE(ranges.ok());
  ASSERT_EQ(ranges->size(), 4u);
  EXPECT_TRUE((*ranges)[0].verified);
  EXPECT_EQ((*ranges)[0].rows_repaired, 2u);
  EXPECT_EQ((*ranges)[3].parent, 3u);
}

}  // namespace
}  // namespace ferry
