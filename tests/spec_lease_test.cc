// The coordinator's side of migration specs, on typed messages and a fake
// clock (LeaseService, LeaseTable, the codec): workers get the spec at
// registration and one that predates specs is refused; rejected rows are
// counted per range with the progress (and resume with a re-grant); more
// than --max-rejects fails the job before the version bump, naming rows.
#include <capnp/message.h>
#include <gtest/gtest.h>

#include "common/key_codec.h"
#include "common/version.h"
#include "common/wire.h"
#include "coordinator/lease_service.h"
#include "coordinator/worker_codec.h"

namespace ferry {
namespace {

constexpr int64_t kTtl = 10000;
constexpr const char* kSpec = "[[table]]\ntarget = \"t\"\nsource = \"t\"\nselect = \"*\"\n";

std::vector<RangeRecord> Plan(size_t n) {
  std::vector<RangeRecord> out;
  for (size_t i = 0; i < n; ++i) {
    RangeRecord r;
    r.id = i + 1;
    r.table = "t";
    r.lo = i == 0 ? "" : EncodeKey({Value{static_cast<int64_t>(i * 100)}});
    r.hi = i + 1 == n ? "" : EncodeKey({Value{static_cast<int64_t>((i + 1) * 100)}});
    r.est_rows = 100;
    out.push_back(r);
  }
  return out;
}

struct Service {
  Service(size_t ranges, uint64_t max_rejects) : svc(Settings(max_rejects), &clock) {
    JobMeta job;
    job.plan_id = "plan1";
    job.to_version = 2;
    job.spec_text = kSpec;
    svc.Load(job, Plan(ranges), {});
  }
  static ServiceSettings Settings(uint64_t max_rejects) {
    ServiceSettings s;
    s.policy = *LeasePolicy::ForTtl(kTtl);
    s.spec_text = kSpec;
    s.max_rejects = max_rejects;
    s.sample_rejects = [](size_t n) {
      std::vector<std::string> out = {"t (7): lua:1: bad", "t (9): lua:1: bad"};
      out.resize(std::min(n, out.size()));
      return out;
    };
    return s;
  }
  GrantReply Lease(const std::string& w) {
    svc.Register(RegisterRequest{w, "host", 1, "test", true});
    auto r = svc.RequestLease(++rid, LeaseRequest{w}, false);
    EXPECT_TRUE(r && std::holds_alternative<GrantReply>(*r));
    return r && std::holds_alternative<GrantReply>(*r) ? std::get<GrantReply>(*r) : GrantReply{};
  }
  std::optional<Reply> Report(ReportKind kind, const GrantReply& g, const std::string& w,
                              uint64_t rows, uint64_t rejected) {
    ProgressReport p;
    p.kind = kind;
    p.lease = LeaseRef{g.range, g.epoch, w};
    const std::string cursor = Key(rows);  // Progress::cursor is a view: keep it alive
    p.progress = Progress{cursor, rows, rows * 10, rows, rejected};
    return svc.Report(++rid, p, false);
  }
  static std::string Key(uint64_t k) { return EncodeKey({Value{static_cast<int64_t>(k)}}); }

  FakeClock clock;
  LeaseService svc;
  uint64_t rid = 0;
};

TEST(SpecLeaseTest, WorkersGetTheSpecAndOnesThatPredateSpecsAreRefused) {
  Service s(1, 0);
  RegisterRequest old_worker{"old", "host", 1, "0.0.9"};
  auto refused = s.svc.RefuseWorker(old_worker);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->code, ErrorCode::kVersionMismatch);
  EXPECT_NE(refused->message.find("predates migration specs"), std::string::npos);
  RegisterRequest worker{"w", "host", 1, kFerryVersion, true};
  EXPECT_FALSE(s.svc.RefuseWorker(worker).has_value());
  EXPECT_EQ(s.svc.Register(worker).spec, kSpec);

  // Without a spec, any worker is welcome.
  ServiceSettings plain = Service::Settings(0);
  plain.spec_text.clear();
  FakeClock clock;
  LeaseService no_spec(plain, &clock);
  EXPECT_FALSE(no_spec.RefuseWorker(old_worker).has_value());

  // On the wire: the flag, the spec, the rejected counts.
  capnp::MallocMessageBuilder b;
  auto reg = NewEnvelope(b, 1).getBody().initRegister();
  reg.setWorkerId("w");
  reg.setSupportsSpec(true);
  zmq::message_t frame = ToFrame(b);
  auto decoded = DecodeRequest(frame.data(), frame.size());
  ASSERT_TRUE(std::holds_alternative<DecodedRequest>(decoded));
  EXPECT_TRUE(std::get<RegisterRequest>(std::get<DecodedRequest>(decoded).request).supports_spec);
  RegisteredReply r;
  r.spec = kSpec;
  zmq::message_t reply = EncodeReply(7, r);
  auto env = DecodeEnvelope(reply.data(), reply.size());
  ASSERT_TRUE(env.ok());
  EXPECT_EQ(std::string((*env)->root().getBody().getRegistered().getSpec().cStr()), kSpec);
}

TEST(SpecLeaseTest, RejectedRowsAreCountedWithTheProgressAndResumeWithTheRange) {
  Service s(2, 10);
  GrantReply g = s.Lease("w1");
  auto ack = s.Report(ReportKind::kHeartbeat, g, "w1", 50, 2);
  ASSERT_TRUE(ack && std::holds_alternative<AckReply>(*ack));
  EXPECT_EQ(s.svc.table().rejected_total(), 2u);
  // Released at the cursor: the next owner resumes with the count.
  s.Report(ReportKind::kRelease, g, "w1", 60, 3);
  GrantReply again = s.Lease("w2");
  EXPECT_EQ(again.range, g.range);
  EXPECT_EQ(again.rejected, 3u);
  EXPECT_EQ(again.rows, 60u);
  // The coordinator's total survives a restart: it is in the ranges.
  StateCommit c = s.svc.TakeCommit();
  std::vector<RangeRecord> saved;
  for (const RangeRecord* r : c.ranges) saved.push_back(*r);
  ASSERT_FALSE(saved.empty());
  EXPECT_EQ(saved[0].rejected, 3u);
  LeaseTable reloaded(&s.clock, kTtl);
  reloaded.Load(s.svc.table().ranges(), 5);
  EXPECT_EQ(reloaded.rejected_total(), 3u);
}

TEST(SpecLeaseTest, MoreRejectsThanAllowedFailTheJobBeforeTheVersionBump) {
  Service s(1, 1);
  GrantReply g = s.Lease("w1");
  // The last range completes with 2 rejected rows: over --max-rejects 1.
  s.Report(ReportKind::kComplete, g, "w1", 100, 2);
  s.svc.Tick();
  EXPECT_TRUE(s.svc.failed());
  EXPECT_FALSE(s.svc.complete());
  EXPECT_FALSE(s.svc.job().current_version.has_value());  // not bumped
  EXPECT_NE(s.svc.job().failure.find("2 row(s) rejected, more than --max-rejects 1: t (7): lua:1: "
                                     "bad; t (9): lua:1: bad"),
            std::string::npos)
      << s.svc.job().failure;

  // Accepted on a retry with a higher limit: the job completes.
  Service again(1, 1);
  GrantReply g2 = again.Lease("w1");
  again.Report(ReportKind::kComplete, g2, "w1", 100, 2);
  again.svc.Tick();
  ASSERT_TRUE(again.svc.failed());
  ServiceSettings more = Service::Settings(5);
  LeaseService retried(more, &again.clock);
  std::vector<RangeRecord> ranges = again.svc.table().ranges();
  retried.Load(again.svc.job(), ranges, {});
  retried.RetryFailed();
  retried.Tick();
  EXPECT_TRUE(retried.complete());
  EXPECT_EQ(retried.job().current_version, std::optional<int64_t>(2));
}

}  // namespace
}  // namespace ferry
