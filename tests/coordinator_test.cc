// Coordinator in-process, driven message by message over inproc with an
// injected clock: leases, expiry, fencing, atomic finalize, restart.
#include <capnp/message.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "common/key_codec.h"
#include "common/version.h"
#include "common/wire.h"
#include "coordinator/coordinator_server.h"
#include "ctl/ctl_client.h"
#include "tests/process_util.h"
#include "tests/test_util.h"
#include "tests/worker_thread.h"
#include "worker/worker.h"

namespace ferry {
namespace {

using testing::TempDir;

// A hand-driven worker: each call sends one message and pumps the
// coordinator (when `pump` is set) until the reply arrives.
class FakeWorker {
 public:
  FakeWorker(zmq::context_t* ctx, CoordinatorServer* pump, const std::string& endpoint,
             std::string id)
      : sock_(*ctx, zmq::socket_type::dealer), pump_(pump), id_(std::move(id)) {
    sock_.set(zmq::sockopt::linger, 0);
    sock_.connect(endpoint);
  }

  // Sends `b` (request id rid_) and waits for the answer to it; answers to
  // earlier requests are dropped, as the real worker does.
  std::unique_ptr<DecodedEnvelope> Call(capnp::MallocMessageBuilder& b, bool expect_reply = true,
                                        int pumps = 500) {
    zmq::message_t frame = ToFrame(b);
    sock_.send(frame, zmq::send_flags::none);
    return Await(rid_, expect_reply, pumps);
  }

  // The answer to request `rid`, pumping the coordinator up to `pumps` times.
  std::unique_ptr<DecodedEnvelope> Await(uint64_t rid, bool expect_reply = true, int pumps = 500) {
    for (int i = 0; i < pumps; ++i) {
      if (pump_) pump_->Step(1);
      zmq::message_t reply;
      while (sock_.recv(reply, zmq::recv_flags::dontwait)) {
        auto d = DecodeEnvelope(reply.data(), reply.size());
        EXPECT_TRUE(d.ok());
        if (d.ok() && (*d)->root().getRequestId() == rid) return std::move(d).value();
      }
      if (!pump_) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (expect_reply) ADD_FAILURE() << "no reply";
    return nullptr;
  }

  uint64_t last_rid() const { return rid_; }

  // What answered request `rid`: "grant", "nowork", "nowork complete" or "none".
  std::string AwaitKind(uint64_t rid, int pumps = 500) {
    auto r = Await(rid, /*expect_reply=*/false, pumps);
    if (!r) return "none";
    auto rb = r->root().getBody();
    if (rb.isGrant()) return "grant";
    if (rb.isNoWork()) return rb.getNoWork().getComplete() ? "nowork complete" : "nowork";
    return "other";
  }

  // Sends a lease request without waiting; returns its request id.
  uint64_t SendLease() {
    capnp::MallocMessageBuilder b;
    NewEnvelope(b, ++rid_).getBody().initLeaseRequest().setWorkerId(id_);
    zmq::message_t frame = ToFrame(b);
    sock_.send(frame, zmq::send_flags::none);
    return rid_;
  }

  void Register() {
    capnp::MallocMessageBuilder b;
    auto r = NewEnvelope(b, ++rid_).getBody().initRegister();
    r.setWorkerId(id_);
    r.setHost("test");
    r.setPid(1);
    r.setVersion("test");
    auto reply = Call(b);
    ASSERT_TRUE(reply && reply->root().getBody().isRegistered());
  }

  // (range, epoch, cursor) of a grant; range 0 if none.
  struct GrantInfo {
    uint64_t range = 0, epoch = 0;
    std::string cursor;
    uint64_t rows = 0;
  };
  GrantInfo Lease() { return AwaitGrant(SendLease()); }

  // The grant answering request `rid`; range 0 if the answer is something
  // else (or none comes within `pumps` passes and !expect_reply).
  GrantInfo AwaitGrant(uint64_t rid, bool expect_reply = true, int pumps = 500) {
    auto reply = Await(rid, expect_reply, pumps);
    GrantInfo g;
    if (reply && reply->root().getBody().isGrant()) {
      auto gr = reply->root().getBody().getGrant();
      g = GrantInfo{gr.getRangeId(), gr.getEpoch(), std::string(AsView(gr.getCursor())),
                    gr.getRowsDone()};
    }
    return g;
  }

  // A completion that asks for the next range (Report.next). `reply` gets
  // "grant", "nowork", "nowork complete", "ack", "lease lost" or "none".
  GrantInfo CompleteNext(uint64_t range, uint64_t epoch, uint64_t rows, std::string* reply) {
    capnp::MallocMessageBuilder b;
    auto m = NewEnvelope(b, ++rid_).getBody().initReport();
    m.setKind(::Report::Kind::COMPLETE);
    SetLeaseRef(m.initLease(), range, epoch, id_);
    SetProgress(m.initProgress(), "", rows, 0, 0);
    m.setNext(true);
    auto r = Call(b, /*expect_reply=*/false);
    GrantInfo g;
    *reply = "none";
    if (!r) return g;
    auto rb = r->root().getBody();
    if (rb.isGrant()) {
      *reply = "grant";
      auto gr = rb.getGrant();
      g = GrantInfo{gr.getRangeId(), gr.getEpoch(), std::string(AsView(gr.getCursor())),
                    gr.getRowsDone()};
    } else if (rb.isNoWork()) {
      *reply = rb.getNoWork().getComplete() ? "nowork complete" : "nowork";
    } else if (rb.isAck()) {
      *reply = "ack";
    } else if (rb.isError() && rb.getError().getCode() == Error::Code::LEASE_LOST) {
      *reply = "lease lost";
    }
    return g;
  }

  // Returns "ack", "lease lost" or "none".
  std::string Send(const char* kind, uint64_t range, uint64_t epoch, const std::string& cursor,
                   uint64_t rows) {
    capnp::MallocMessageBuilder b;
    auto m = NewEnvelope(b, ++rid_).getBody().initReport();
    const std::string k(kind);
    m.setKind(k == "heartbeat"  ? ::Report::Kind::HEARTBEAT
              : k == "complete" ? ::Report::Kind::COMPLETE
                                : ::Report::Kind::RELEASE);
    SetLeaseRef(m.initLease(), range, epoch, id_);
    SetProgress(m.initProgress(), cursor, rows, 0, 0);
    return CallForAck(b);
  }

  // A ReportError; returns "ack", "lease lost", "other" or "none".
  std::string SendError(uint64_t range, uint64_t epoch, bool permanent, const std::string& msg) {
    capnp::MallocMessageBuilder b;
    auto m = NewEnvelope(b, ++rid_).getBody().initReportError();
    SetLeaseRef(m.initLease(), range, epoch, id_);
    m.setPermanent(permanent);
    m.setMessage(msg);
    return CallForAck(b);
  }

 private:
  // Sends `b`; "ack", "lease lost", "other" or "none" (no answer).
  std::string CallForAck(capnp::MallocMessageBuilder& b) {
    auto reply = Call(b, /*expect_reply=*/false);
    if (!reply) return "none";
    auto rb = reply->root().getBody();
    if (rb.isAck()) return "ack";
    if (rb.isError() && rb.getError().getCode() == Error::Code::LEASE_LOST) return "lease lost";
    return "other";
  }

  zmq::socket_t sock_;
  CoordinatorServer* pump_;
  std::string id_;
  uint64_t rid_ = 0;
};

struct Fixture {
  TempDir dir;
  std::string legacy = dir.File("legacy.db");
  std::string target = dir.File("new.db");
  std::string state = dir.File("state.db");
  zmq::context_t ctx;
  FakeClock clock;

  CoordinatorOptions Options(uint64_t range_rows) {
    CoordinatorOptions o;
    o.source_uri = "sqlite:" + legacy;
    o.target_uri = "sqlite:" + target;
    o.state_path = state;
    o.listen = "";
    o.status_endpoint = "inproc://status-" + std::to_string(reinterpret_cast<uintptr_t>(this)) +
                        std::to_string(counter++);
    o.range_rows = range_rows;
    o.batch_rows = 7;
    o.lease_ttl_ms = ttl_ms;
    o.stall_ms = stall_ms;
    return o;
  }
  std::unique_ptr<CoordinatorServer> Start(uint64_t range_rows) {
    auto c = std::make_unique<CoordinatorServer>(Options(range_rows), &clock, &ctx);
    Status s = c->Start();
    EXPECT_TRUE(s.ok()) << s.ToString();
    return c;
  }
  int counter = 0;
  int64_t ttl_ms = 10000;
  int64_t stall_ms = 30000;
};

// The options of a worker `id` of `c` (over inproc).
WorkerOptions InprocWorker(CoordinatorServer* c, const std::string& id, int request_timeout_ms) {
  WorkerOptions o;
  o.coordinator = c->inproc_endpoint();
  o.id = id;
  o.request_timeout_ms = request_timeout_ms;
  return o;
}

// A real Worker with id `id` on its own thread against `c`; Stop() (or the
// destructor) stops and joins it, after which result() is its Run() status.
class WorkerThread : public testing::WorkerThread {
 public:
  WorkerThread(Fixture& f, CoordinatorServer* c, const std::string& id,
               int request_timeout_ms = 2000)
      : testing::WorkerThread(&f.ctx, InprocWorker(c, id, request_timeout_ms)) {}
};

void MakeSimpleTable(const std::string& path, int rows) {
  testing::ExecSql(path,
                   "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"
                   "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<" +
                       std::to_string(rows) + ") INSERT INTO t SELECT x, 'v'||x FROM c;");
}

TEST(CoordinatorTest, GrantEpochIsDurableBeforeTheGrantIsSent) {
  Fixture f;
  MakeSimpleTable(f.legacy, 100);
  auto c = f.Start(50);
  FakeWorker w(&f.ctx, c.get(), c->inproc_endpoint(), "w1");
  w.Register();
  auto g = w.Lease();
  ASSERT_EQ(g.range, 1u);
  // Read the state file independently of the coordinator.
  EXPECT_EQ(testing::QueryInt(f.state, "SELECT epoch FROM ranges WHERE id=1"),
            static_cast<int64_t>(g.epoch));
  EXPECT_EQ(testing::QueryInt(f.state, "SELECT state FROM ranges WHERE id=1"), 1);
  EXPECT_EQ(testing::QueryText(f.state, "SELECT owner FROM ranges WHERE id=1"), "w1");
  EXPECT_GE(testing::QueryInt(f.state, "SELECT last_epoch FROM job"),
            static_cast<int64_t>(g.epoch));
}

TEST(CoordinatorTest, StaleEpochGetsLeaseLostAndLeavesNewOwnerUntouched) {
  Fixture f;
  MakeSimpleTable(f.legacy, 10);
  auto c = f.Start(100);
  FakeWorker w1(&f.ctx, c.get(), c->inproc_endpoint(), "w1");
  FakeWorker w2(&f.ctx, c.get(), c->inproc_endpoint(), "w2");
  w1.Register();
  w2.Register();
  auto g1 = w1.Lease();
  ASSERT_EQ(g1.range, 1u);
  // While the lease is live, w2's request waits (no answer, no second grant)...
  const uint64_t waiting = w2.SendLease();
  EXPECT_EQ(w2.AwaitGrant(waiting, /*expect_reply=*/false, 20).range, 0u);
  EXPECT_EQ(c->service().metrics().grants, 1u) << "a second grant while the lease is live";
  // ... and the lease's expiry answers it with the range under a new epoch.
  f.clock.Advance(10001);
  auto g2 = w2.AwaitGrant(waiting);
  ASSERT_EQ(g2.range, 1u);
  ASSERT_GT(g2.epoch, g1.epoch);
  std::string c2 = EncodeKey({Value{int64_t{4}}});
  ASSERT_EQ(w2.Send("heartbeat", 1, g2.epoch, c2, 4), "ack");

  std::string c1 = EncodeKey({Value{int64_t{9}}});
  EXPECT_EQ(w1.Send("heartbeat", 1, g1.epoch, c1, 9), "lease lost");
  EXPECT_EQ(w1.Send("release", 1, g1.epoch, c1, 9), "lease lost");
  EXPECT_EQ(w1.Send("complete", 1, g1.epoch, c1, 9), "lease lost");
  const RangeRecord* r = c->service().table().Find(1);
  EXPECT_EQ(r->state, RangeState::kLeased);
  EXPECT_EQ(r->owner, "w2");
  EXPECT_EQ(r->epoch, g2.epoch);
  EXPECT_EQ(r->cursor, c2);
  EXPECT_EQ(r->rows, 4u);
  EXPECT_EQ(testing::QueryInt(f.state, "SELECT rows FROM ranges WHERE id=1"), 4);
  EXPECT_EQ(testing::QueryText(f.state, "SELECT owner FROM ranges WHERE id=1"), "w2");
  EXPECT_EQ(c->service().metrics().lease_lost, 3u);
}

// A completion that asks for the next range gets that range's grant in the
// same answer, durable before it leaves; a retried completion (the answer
// was lost) gets the same grant again, not a second one; the completion of
// the last range is answered "complete" at once, the version already bumped.
TEST(CoordinatorTest, CompletionAskingForTheNextRangeIsAnsweredWithItsGrant) {
  Fixture f;
  MakeSimpleTable(f.legacy, 30);
  auto c = f.Start(10);
  ASSERT_EQ(c->service().table().ranges().size(), 3u);
  FakeWorker w(&f.ctx, c.get(), c->inproc_endpoint(), "w1");
  FakeWorker other(&f.ctx, c.get(), c->inproc_endpoint(), "w2");
  w.Register();
  other.Register();
  auto g1 = w.Lease();
  ASSERT_EQ(g1.range, 1u);

  std::string reply;
  auto g2 = w.CompleteNext(1, g1.epoch, 10, &reply);
  ASSERT_EQ(reply, "grant");
  EXPECT_EQ(g2.range, 2u);
  EXPECT_GT(g2.epoch, g1.epoch);
  EXPECT_EQ(testing::QueryInt(f.state, "SELECT state FROM ranges WHERE id=1"), 2);
  EXPECT_EQ(testing::QueryInt(f.state, "SELECT rows FROM ranges WHERE id=1"), 10);
  EXPECT_EQ(testing::QueryInt(f.state, "SELECT state FROM ranges WHERE id=2"), 1);
  EXPECT_EQ(testing::QueryText(f.state, "SELECT owner FROM ranges WHERE id=2"), "w1");
  EXPECT_EQ(testing::QueryInt(f.state, "SELECT epoch FROM ranges WHERE id=2"),
            static_cast<int64_t>(g2.epoch));

  // The same completion again: the same lease, no new epoch, no new grant.
  const uint64_t grants = c->service().metrics().grants;
  const uint64_t completions = c->service().metrics().completions;
  auto again = w.CompleteNext(1, g1.epoch, 10, &reply);
  ASSERT_EQ(reply, "grant");
  EXPECT_EQ(again.range, g2.range);
  EXPECT_EQ(again.epoch, g2.epoch);
  EXPECT_EQ(c->service().metrics().grants, grants);
  EXPECT_EQ(c->service().metrics().completions, completions)
      << "a retry is not a second completion";
  EXPECT_EQ(c->service().table().count(RangeState::kLeased), 1u);

  // Another worker's stale completion of range 1 is refused and grants nothing.
  other.CompleteNext(1, g1.epoch, 10, &reply);
  EXPECT_EQ(reply, "lease lost");
  EXPECT_EQ(c->service().metrics().grants, grants);

  auto g3 = w.CompleteNext(2, g2.epoch, 10, &reply);
  ASSERT_EQ(reply, "grant");
  EXPECT_EQ(g3.range, 3u);
  w.CompleteNext(3, g3.epoch, 10, &reply);
  EXPECT_EQ(reply, "nowork complete");
  EXPECT_TRUE(c->complete());
  EXPECT_EQ(testing::QueryInt(f.state, "SELECT phase FROM job"), 1);
  EXPECT_EQ(testing::QueryInt(f.state, "SELECT current_version FROM job"), 2);
  EXPECT_EQ(testing::QueryInt(f.state, "SELECT count(*) FROM ranges WHERE state=2"), 3);
}

// A real worker spends one round trip per range: after its first lease
// request, each completion brings the next grant, and the last one the news
// that the migration is complete, on which the worker exits by itself.
TEST(CoordinatorTest, WorkerGetsEachNextRangeWithItsCompletion) {
  Fixture f;
  MakeSimpleTable(f.legacy, 60);
  auto c = f.Start(10);
  ASSERT_EQ(c->service().table().ranges().size(), 6u);
  WorkerThread worker(f, c.get(), "w1");
  bool exited = testing::WaitFor(
      [&] {
        c->Step(5);
        return worker.finished();
      },
      30000);
  worker.Stop();
  ASSERT_TRUE(exited) << "the worker did not exit on its own after the last completion";
  EXPECT_TRUE(worker.result().ok()) << worker.result().ToString();
  EXPECT_TRUE(c->complete());
  EXPECT_EQ(c->service().metrics().lease_requests, 1u);
  EXPECT_EQ(c->service().metrics().grants, 6u);
  EXPECT_EQ(c->service().metrics().completions, 6u);
  EXPECT_EQ(testing::QueryInt(f.target, "SELECT count(*) FROM t"), 60);
  EXPECT_EQ(testing::QueryInt(f.target, "SELECT count(*) FROM t WHERE v = 'v' || id"), 60);
}

// A lease request that finds nothing pending while ranges are leased waits
// (the worker does not poll): it is answered "no work, ask again" after a
// second, or at once when the job completes, as is a completion that asks
// for more.
TEST(CoordinatorTest, WaitingLeaseRequestsAreAnsweredOnTimeoutAndOnCompletion) {
  Fixture f;
  MakeSimpleTable(f.legacy, 20);
  auto c = f.Start(10);
  FakeWorker w1(&f.ctx, c.get(), c->inproc_endpoint(), "w1");
  FakeWorker w2(&f.ctx, c.get(), c->inproc_endpoint(), "w2");
  FakeWorker w3(&f.ctx, c.get(), c->inproc_endpoint(), "w3");
  w1.Register();
  w2.Register();
  w3.Register();
  auto g1 = w1.Lease();
  auto g2 = w2.Lease();
  ASSERT_EQ(g1.range, 1u);
  ASSERT_EQ(g2.range, 2u);

  uint64_t rid = w3.SendLease();
  EXPECT_EQ(w3.AwaitKind(rid, 20), "none");
  f.clock.Advance(999);
  EXPECT_EQ(w3.AwaitKind(rid, 20), "none");
  f.clock.Advance(2);
  EXPECT_EQ(w3.AwaitKind(rid), "nowork") << "a waiting request is answered after a second";

  rid = w3.SendLease();
  std::string reply;
  w1.CompleteNext(1, g1.epoch, 10, &reply);
  EXPECT_EQ(reply, "none") << "w1's completion waits for range 2 to finish or come free";
  const uint64_t w1_rid = w1.last_rid();
  EXPECT_EQ(testing::QueryInt(f.state, "SELECT state FROM ranges WHERE id=1"), 2)
      << "the completion is committed while its answer waits";
  w2.CompleteNext(2, g2.epoch, 10, &reply);
  EXPECT_EQ(reply, "nowork complete");
  EXPECT_EQ(w1.AwaitKind(w1_rid), "nowork complete");
  EXPECT_EQ(w3.AwaitKind(rid), "nowork complete");
  EXPECT_TRUE(c->AllWorkersToldDone());
  EXPECT_EQ(c->service().metrics().grants, 2u);
}

// A heartbeat moves the lease deadline: the lease expires at the renewed
// deadline, not the granted one, and exactly once. Routine grants and
// completions are logged but not written to the state file's event log;
// operator-visible events (register, expire, finalize) are.
TEST(CoordinatorTest, RenewedLeaseExpiresAtItsNewDeadlineAndEventLogKeepsOperatorEvents) {
  Fixture f;
  MakeSimpleTable(f.legacy, 20);
  auto c = f.Start(10);
  ASSERT_EQ(c->service().table().ranges().size(), 2u);
  FakeWorker w1(&f.ctx, c.get(), c->inproc_endpoint(), "w1");
  FakeWorker w2(&f.ctx, c.get(), c->inproc_endpoint(), "w2");
  w1.Register();
  w2.Register();
  auto g1 = w1.Lease();
  ASSERT_EQ(g1.range, 1u);
  auto g2 = w2.Lease();
  ASSERT_EQ(g2.range, 2u);
  f.clock.Advance(f.ttl_ms - 1);
  ASSERT_EQ(w1.Send("heartbeat", 1, g1.epoch, "", 0), "ack");  // range 1 renewed
  f.clock.Advance(1);                                          // range 2's deadline
  c->Step(0);
  EXPECT_EQ(c->service().table().Find(1)->state, RangeState::kLeased);
  EXPECT_EQ(c->service().table().Find(2)->state, RangeState::kPending);
  EXPECT_EQ(c->service().metrics().expiries, 1u);
  f.clock.Advance(f.ttl_ms - 2);  // one ms before range 1's renewed deadline
  c->Step(0);
  EXPECT_EQ(c->service().table().Find(1)->state, RangeState::kLeased);
  EXPECT_EQ(c->service().metrics().expiries, 1u);
  f.clock.Advance(1);
  c->Step(0);
  EXPECT_EQ(c->service().table().Find(1)->state, RangeState::kPending);
  EXPECT_EQ(c->service().metrics().expiries, 2u);
  EXPECT_EQ(testing::QueryInt(f.state, "SELECT count(*) FROM events WHERE kind='expire'"), 2);
  EXPECT_EQ(testing::QueryInt(f.state, "SELECT count(*) FROM ranges WHERE state=0"), 2);

  // Drain both ranges: grants and completions go to the log only.
  for (int i = 0; i < 2; ++i) {
    auto g = w1.Lease();
    ASSERT_NE(g.range, 0u);
    ASSERT_EQ(w1.Send("complete", g.range, g.epoch, "", 10), "ack");
  }
  EXPECT_TRUE(c->complete());
  EXPECT_EQ(c->RowsCopied(), 20u);
  EXPECT_EQ(c->service().metrics().grants, 4u);
  EXPECT_EQ(c->service().metrics().completions, 2u);
  EXPECT_EQ(testing::QueryInt(f.state, "SELECT count(*) FROM events WHERE kind='register'"), 2);
  EXPECT_EQ(testing::QueryInt(f.state, "SELECT count(*) FROM events WHERE kind='finalize'"), 1);
  EXPECT_EQ(testing::QueryInt(f.state, "SELECT count(*) FROM events WHERE kind='plan'"), 1);
  EXPECT_EQ(
      testing::QueryInt(f.state, "SELECT count(*) FROM events WHERE kind IN ('grant', 'complete')"),
      0);
  // The range rows themselves hold the last owner, epoch and counters.
  EXPECT_EQ(testing::QueryInt(f.state, "SELECT sum(rows) FROM ranges WHERE state=2"), 20);
  EXPECT_EQ(testing::QueryText(f.state, "SELECT owner FROM ranges WHERE id=2"), "w1");
}

TEST(CoordinatorTest, FinalizeIsAtomicUnderCommitFailureAtEveryStep) {
  int failing_steps = 0;
  for (int k = 0; k < 50; ++k) {
    Fixture f;
    MakeSimpleTable(f.legacy, 20);
    auto c = f.Start(10);
    ASSERT_EQ(c->service().table().ranges().size(), 2u);
    FakeWorker w(&f.ctx, c.get(), c->inproc_endpoint(), "w1");
    w.Register();
    auto g1 = w.Lease();
    ASSERT_EQ(w.Send("complete", g1.range, g1.epoch, "", 10), "ack");
    auto g2 = w.Lease();
    ASSERT_EQ(g2.range, 2u);
    const std::string boundary_before = c->service().job().boundary;
    ASSERT_FALSE(boundary_before.empty());

    c->state()->FailStatementForTest(k);
    std::string reply = w.Send("complete", g2.range, g2.epoch, "", 10);
    c->state()->FailStatementForTest(-1);

    // What is durable, read independently from the state file.
    int64_t state2 = testing::QueryInt(f.state, "SELECT state FROM ranges WHERE id=2");
    int64_t phase = testing::QueryInt(f.state, "SELECT phase FROM job");
    int64_t version = testing::QueryInt(f.state, "SELECT current_version FROM job", -1);
    int64_t boundary_len = testing::QueryInt(f.state, "SELECT length(boundary) FROM job");
    int64_t finalize_events =
        testing::QueryInt(f.state, "SELECT count(*) FROM events WHERE kind='finalize'");
    if (reply == "ack") {
      // All: done + version bump + boundary clear + event, together.
      EXPECT_EQ(state2, 2);
      EXPECT_EQ(phase, 1);
      EXPECT_EQ(version, 2);
      EXPECT_EQ(boundary_len, 0);
      EXPECT_EQ(finalize_events, 1);
      EXPECT_TRUE(c->complete());
      break;
    }
    ++failing_steps;
    // None: still leased, still copying, no version, boundary unchanged.
    EXPECT_EQ(reply, "none") << "a failed commit must not be acknowledged";
    EXPECT_EQ(state2, 1) << "k=" << k;
    EXPECT_EQ(phase, 0) << "k=" << k;
    EXPECT_EQ(version, -1) << "k=" << k;
    EXPECT_EQ(boundary_len, static_cast<int64_t>(boundary_before.size())) << "k=" << k;
    EXPECT_EQ(finalize_events, 0);
    // In memory too (reloaded from the state file).
    EXPECT_FALSE(c->complete());
    EXPECT_EQ(c->service().table().Find(2)->state, RangeState::kLeased);
    // The retry succeeds.
    EXPECT_EQ(w.Send("complete", g2.range, g2.epoch, "", 10), "ack");
    EXPECT_TRUE(c->complete());
    EXPECT_EQ(testing::QueryInt(f.state, "SELECT current_version FROM job"), 2);
  }
  EXPECT_GE(failing_steps, 3);
}

TEST(CoordinatorTest, RestartKeepsLiveLeasesAndCommittedCompletions) {
  Fixture f;
  MakeSimpleTable(f.legacy, 30);
  uint64_t epoch1 = 0;
  std::string cursor = EncodeKey({Value{int64_t{15}}});
  {
    auto c = f.Start(10);
    FakeWorker w(&f.ctx, c.get(), c->inproc_endpoint(), "w1");
    w.Register();
    auto g = w.Lease();
    ASSERT_EQ(w.Send("complete", g.range, g.epoch, "", 10), "ack");
    auto g2 = w.Lease();
    ASSERT_EQ(w.Send("heartbeat", g2.range, g2.epoch, cursor, 5), "ack");
    epoch1 = g2.epoch;
  }  // coordinator gone without releasing anything (as after SIGKILL)
  auto c = f.Start(10);
  EXPECT_EQ(c->service().table().Find(1)->state, RangeState::kDone);
  EXPECT_EQ(c->service().table().Find(2)->state, RangeState::kLeased);
  EXPECT_EQ(c->service().table().Find(2)->cursor, cursor);
  FakeWorker w(&f.ctx, c.get(), c->inproc_endpoint(), "w1");
  EXPECT_EQ(w.Send("heartbeat", 2, epoch1, cursor, 5), "ack") << "live lease survives restart";
  FakeWorker other(&f.ctx, c.get(), c->inproc_endpoint(), "w2");
  other.Register();
  auto g3 = other.Lease();
  EXPECT_EQ(g3.range, 3u);
  EXPECT_GT(g3.epoch, epoch1);
}

// Operator settings are part of the state: pause, throttle and a drain
// survive a restart of the coordinator (SIGKILL: nothing released).
TEST(CoordinatorTest, PauseThrottleAndDrainSurviveARestart) {
  Fixture f;
  MakeSimpleTable(f.legacy, 30);
  {
    auto c = f.Start(10);
    FakeWorker w(&f.ctx, c.get(), c->inproc_endpoint(), "w1");
    w.Register();
    FakeWorker v(&f.ctx, c.get(), c->inproc_endpoint(), "w2");
    v.Register();
    ASSERT_NE(c->HandleCommand("throttle 1234").find("\"ok\":true"), std::string::npos);
    ASSERT_NE(c->HandleCommand("drain w2").find("\"ok\":true"), std::string::npos);
    ASSERT_NE(c->HandleCommand("pause").find("\"ok\":true"), std::string::npos);
    c->Step(0);  // committed with the pass
  }
  auto c = f.Start(10);
  auto st = nlohmann::json::parse(c->HandleCommand("status"));
  EXPECT_EQ(st["state"], "paused");
  EXPECT_EQ(st["paused"], true);
  EXPECT_EQ(st["throttle_rows_per_second"], 1234);
  auto workers = nlohmann::json::parse(c->HandleCommand("workers"))["workers"];
  ASSERT_EQ(workers.size(), 2u);
  EXPECT_EQ(workers[1]["id"], "w2");
  EXPECT_EQ(workers[1]["state"], "draining");
  FakeWorker w(&f.ctx, c.get(), c->inproc_endpoint(), "w1");
  EXPECT_EQ(w.AwaitKind(w.SendLease()), "nowork") << "still paused after the restart";
  ASSERT_NE(c->HandleCommand("resume").find("\"ok\":true"), std::string::npos);
  EXPECT_EQ(w.AwaitKind(w.SendLease()), "grant");
}

// At the deadline the range is re-granted with a higher epoch, and the new
// (real) worker resumes strictly after the last reported cursor: rows at or
// before the cursor are never read again, so they never reach the target.
TEST(CoordinatorTest, NewOwnerResumesStrictlyAfterTheReportedCursor) {
  Fixture f;
  MakeSimpleTable(f.legacy, 500);
  auto c = f.Start(1000);
  FakeWorker w1(&f.ctx, c.get(), c->inproc_endpoint(), "w1");
  w1.Register();
  auto g1 = w1.Lease();
  ASSERT_EQ(g1.range, 1u);
  // w1 claims it committed rows up to id 123 (it wrote nothing: if the next
  // owner re-read them they would show up in the target).
  std::string cursor = EncodeKey({Value{int64_t{123}}});
  ASSERT_EQ(w1.Send("heartbeat", 1, g1.epoch, cursor, 123), "ack");
  f.clock.Advance(10001);
  c->Step(0);
  ASSERT_EQ(c->service().table().Find(1)->state, RangeState::kPending);

  WorkerThread worker(f, c.get(), "w2");
  bool done = testing::WaitFor(
      [&] {
        c->Step(5);
        return c->complete();
      },
      30000);
  for (int i = 0; i < 100; ++i) c->Step(5);  // let the worker hear "complete"
  worker.Stop();
  EXPECT_TRUE(worker.result().ok()) << worker.result().ToString();
  ASSERT_TRUE(done);
  EXPECT_GT(c->service().table().Find(1)->epoch, g1.epoch);
  EXPECT_EQ(testing::QueryInt(f.target, "SELECT count(*) FROM t"), 500 - 123);
  EXPECT_EQ(testing::QueryInt(f.target, "SELECT min(id) FROM t"), 124);
  EXPECT_EQ(testing::QueryInt(f.target, "SELECT max(id) FROM t"), 500);
  EXPECT_EQ(c->service().table().Find(1)->rows, 500u);
}

// The coordinator finished (last range done, version bumped and mirrored to
// the new store) and exited, but its answer to this worker's completion was
// lost (libzmq can drop a reply sent just before its socket closes; seen in
// ferry-bench's tcp runs as a worker retrying for 30 s). The worker must not
// retry for three lease TTLs: the new store's marker says the migration is
// complete, so it returns Ok at once.
TEST(CoordinatorTest, WorkerWhoseCompletionIsUnansweredStopsOnTheTargetsVersionMarker) {
  Fixture f;
  MakeSimpleTable(f.legacy, 20);
  auto c = f.Start(100);  // one range
  WorkerThread worker(f, c.get(), "w1", /*request_timeout_ms=*/200);
  // Serve until the range is leased, then never again: nothing answers the
  // worker's completion.
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        c->Step(5);
        return c->service().table().count(RangeState::kLeased) == 1;
      },
      10000));
  ASSERT_TRUE(testing::WaitFor(
      [&] { return testing::QueryInt(f.target, "SELECT count(*) FROM t") == 20; }, 10000));
  EXPECT_FALSE(worker.finished());  // still waiting for an answer
  {
    auto target = OpenStore("sqlite:" + f.target, StoreRole::kTarget);
    ASSERT_TRUE(target.ok()) << target.status().ToString();
    Marker done;
    done.version = 2;  // what the finished coordinator mirrored
    ASSERT_TRUE((*target)->WriteMarker(done).ok());
  }
  // Well under the 30 s (three lease TTLs) the worker would otherwise retry.
  ASSERT_TRUE(testing::WaitFor([&] { return worker.finished(); }, 5000))
      << "the worker kept retrying its completion after the migration was marked complete";
  worker.Stop();
  EXPECT_TRUE(worker.result().ok()) << worker.result().ToString();
  EXPECT_EQ(testing::QueryInt(f.target, "SELECT count(*) FROM t"), 20);
}

TEST(CoordinatorTest, PauseStopsGrantsAndResumeRestartsThem) {
  Fixture f;
  MakeSimpleTable(f.legacy, 30);
  auto c = f.Start(10);
  FakeWorker w(&f.ctx, c.get(), c->inproc_endpoint(), "w1");
  w.Register();
  EXPECT_NE(c->HandleCommand("pause").find("\"paused\":true"), std::string::npos);
  EXPECT_EQ(w.Lease().range, 0u);
  EXPECT_NE(c->HandleCommand("status").find("\"state\":\"paused\""), std::string::npos);
  c->HandleCommand("resume");
  EXPECT_EQ(w.Lease().range, 1u);
  EXPECT_NE(c->HandleCommand("bogus").find("error"), std::string::npos);
  EXPECT_NE(c->HandleCommand("throttle -5").find("error"), std::string::npos);
  EXPECT_NE(c->HandleCommand("throttle 1000").find("\"ok\":true"), std::string::npos);
}

// Three ranges of 10 rows, a 5 s stall time, leases that never expire on
// their own, and a registered FakeWorker "w1".
struct StallSetup {
  StallSetup() {
    f.ttl_ms = 600000;
    f.stall_ms = 5000;
    MakeSimpleTable(f.legacy, 30);
    c = f.Start(10);
    w = std::make_unique<FakeWorker>(&f.ctx, c.get(), c->inproc_endpoint(), "w1");
    w->Register();
  }
  nlohmann::json Stalled() {
    return nlohmann::json::parse(c->HandleCommand("ranges stalled"))["ranges"];
  }
  Fixture f;
  std::unique_ptr<CoordinatorServer> c;
  std::unique_ptr<FakeWorker> w;
};

// `ranges stalled` lists leased ranges whose cursor has not moved for the
// stall time, with the reason ferry knows.
TEST(CoordinatorTest, StalledRangesAreListedWithTheirReason) {
  StallSetup s;
  auto& [f, c, w] = s;
  auto g = w->Lease();
  ASSERT_EQ(g.range, 1u);
  auto stalled = [&] { return s.Stalled(); };
  EXPECT_TRUE(stalled().empty());
  f.clock.Advance(6000);
  auto r = stalled();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0]["id"], 1);
  EXPECT_EQ(r[0]["reason"], "no heartbeat");
  ASSERT_EQ(w->Send("heartbeat", 1, g.epoch, "", 0), "ack");  // alive, no progress
  r = stalled();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0]["reason"], "heartbeats without progress");
  ASSERT_EQ(w->Send("heartbeat", 1, g.epoch, EncodeKey({Value{int64_t{3}}}), 3), "ack");
  EXPECT_TRUE(stalled().empty());
  EXPECT_NE(c->HandleCommand("ranges bogus").find("error"), std::string::npos);
}

// A range whose every lease ends in a transient error (a full disk) is
// re-granted again and again without its cursor moving: it is still listed
// as stalled, counted in `status`, and the text status shows the error.
TEST(CoordinatorTest, RangeFailingOnEveryLeaseIsStalledAcrossRegrants) {
  StallSetup s;
  auto& [f, c, w] = s;
  auto status = [&] { return nlohmann::json::parse(c->HandleCommand("status")); };
  for (int i = 0; i < 4; ++i) {
    auto g = w->Lease();
    ASSERT_EQ(g.range, 1u);
    f.clock.Advance(2000);
    ASSERT_EQ(w->SendError(1, g.epoch, /*permanent=*/false, "COMMIT: database or disk is full"),
              "ack");
  }
  auto g = w->Lease();
  ASSERT_EQ(g.range, 1u);
  auto r = s.Stalled();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0]["id"], 1);
  EXPECT_EQ(r[0]["reason"], "repeated write errors");
  EXPECT_EQ(r[0]["last_error"], "COMMIT: database or disk is full");
  EXPECT_EQ(status()["ranges_stalled"], 1);
  EXPECT_NE(c->HandleCommand("metrics").find("\nferry_ranges_stalled 1\n"), std::string::npos);
  const std::string text = RenderStatus(status());
  EXPECT_NE(text.find("ranges_stalled            1"), std::string::npos) << text;
  EXPECT_NE(text.find("database or disk is full"), std::string::npos) << text;

  // The disk has room again: the cursor moves and the range is no longer stalled.
  ASSERT_EQ(w->Send("heartbeat", 1, g.epoch, EncodeKey({Value{int64_t{3}}}), 3), "ack");
  EXPECT_TRUE(s.Stalled().empty());
  EXPECT_EQ(status()["ranges_stalled"], 0);
}

}  // namespace
}  // namespace ferry
