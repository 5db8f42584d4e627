#include "worker/worker.h"

#include <capnp/message.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <random>
#include <thread>

#include "common/backoff.h"
#include "common/clock.h"
#include "common/digest.h"
#include "common/key_codec.h"
#include "common/logging.h"
#include "common/version.h"
#include "worker/spec_replayer.h"

namespace ferry {
namespace {

uint64_t Seed() {
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd() ^ static_cast<uint64_t>(getpid());
}

}  // namespace

std::string DefaultWorkerId() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  std::mt19937 rng(static_cast<uint32_t>(Seed()));
  return fmt::format("{}-{}-{:04x}", host, getpid(), rng() & 0xffff);
}

Worker::Worker(WorkerOptions options, zmq::context_t* ctx, const std::atomic<bool>* stop,
               const Clock* clock)
    : opt_(std::move(options)),
      ctx_(ctx),
      clock_(clock),
      stop_(stop),
      client_(ctx, opt_.coordinator, opt_.curve) {
  if (opt_.id.empty()) opt_.id = DefaultWorkerId();
}

bool Worker::Sleep(int64_t ms) {
  const int64_t until = clock_->NowMs() + ms;
  while (clock_->NowMs() < until) {
    if (Stopping()) return false;
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::clamp<int64_t>(until - clock_->NowMs(), 1, 50)));
  }
  return !Stopping();
}

void Worker::NextCoordinator(int attempt) {
  if (client_.endpoint_count() > 1 || standby_seen_) {
    standby_seen_ = false;
    client_.Rotate();  // another coordinator of the list may lead
  } else if (attempt > 0 && attempt % 5 == 0) {
    client_.Reconnect();
  }
}

Status Worker::Register() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  capnp::MallocMessageBuilder b;
  uint64_t rid = client_.NextRequestId();
  auto reg = NewEnvelope(b, rid).getBody().initRegister();
  reg.setWorkerId(opt_.id);
  reg.setHost(host);
  reg.setPid(static_cast<uint32_t>(getpid()));
  reg.setVersion(kFerryVersion);
  reg.setSupportsSpec(true);
  reg.setFeatures(features());
  auto reply = client_.Call(b, rid, opt_.request_timeout_ms);
  if (!reply) return Unavailable(fmt::format("no answer from coordinator {}", client_.endpoint()));
  auto body = reply->root().getBody();
  if (body.isError()) {
    auto e = body.getError();
    std::string msg(AsView(e.getMessage()));
    if (e.getCode() == Error::Code::VERSION_MISMATCH) return FailedPrecondition(msg);
    if (e.getCode() == Error::Code::UNAVAILABLE) standby_seen_ = true;
    return Unavailable(msg);
  }
  if (!body.isRegistered()) return Unavailable("unexpected answer to register");
  auto r = body.getRegistered();
  plan_id_ = AsView(r.getPlanId());
  source_uri_ = opt_.source_uri.empty() ? std::string(AsView(r.getSourceUri())) : opt_.source_uri;
  target_uri_ = opt_.target_uri.empty() ? std::string(AsView(r.getTargetUri())) : opt_.target_uri;
  batch_rows_ = opt_.batch_rows ? opt_.batch_rows : std::max<uint32_t>(1, r.getBatchRows());
  // The coordinator's lease policy, whole: no margin is derived here.
  auto policy = LeasePolicy::ForTtl(std::max<uint32_t>(100, r.getLeaseTtlMs()));
  policy_ = policy.ok() ? *policy : LeasePolicy();
  if (r.getHeartbeatMs()) policy_.heartbeat_ms = r.getHeartbeatMs();
  if (r.getSafetyMarginMs()) policy_.safety_ms = r.getSafetyMarginMs();
  if (r.getLivenessMs()) policy_.liveness_ms = r.getLivenessMs();
  if (r.getGiveUpMs()) policy_.give_up_ms = r.getGiveUpMs();
  to_version_ = r.getToVersion();
  sizer_.set_cap(batch_rows_);
  sizer_.set_target_ms(r.getBatchTimeMs());
  if (std::string(AsView(r.getSpec())) != spec_text_) {
    spec_text_ = AsView(r.getSpec());
    plans_.clear();  // resolved again from the new spec
    copiers_.clear();
  }
  LogEvent(spdlog::level::info, "registered",
           {{"worker", opt_.id},
            {"coordinator", opt_.coordinator},
            {"plan", plan_id_},
            {"batch_rows", batch_rows_},
            {"batch_time_ms", r.getBatchTimeMs()},
            {"lease_ttl_ms", policy_.ttl_ms},
            {"heartbeat_ms", policy_.heartbeat_ms},
            {"safety_ms", policy_.safety_ms}});
  return Status::Ok();
}

Status Worker::OpenStores() {
  if (!source_) {
    FERRY_ASSIGN_OR_RETURN(source_, OpenStore(source_uri_, StoreRole::kSource));
  }
  if (!target_) {
    FERRY_ASSIGN_OR_RETURN(target_, OpenStore(target_uri_, StoreRole::kTarget));
  }
  if (copiers_.empty()) {
    // The targets as the coordinator resolved them: the same spec, the
    // same stores (spec/target_plan.h).
    FERRY_ASSIGN_OR_RETURN(std::vector<TableSchema> tables, source_->ListTables());
    std::optional<MigrationSpec> spec;
    if (!spec_text_.empty()) {
      spec.emplace();
      FERRY_RETURN_IF_ERROR(ParseSpecText(spec_text_, "the coordinator's --spec", &*spec));
    }
    std::vector<TableSchema> copyable;
    for (const TableSchema& t : tables) {
      if (t.unsupported.empty()) copyable.push_back(t);
    }
    FERRY_ASSIGN_OR_RETURN(
        plans_, ResolveTargets(spec ? &*spec : nullptr, *source_, tables, copyable, target_uri_));
    for (const TargetPlan& p : plans_) {
      FERRY_ASSIGN_OR_RETURN(copiers_[p.entry.target],
                             TargetCopier::Create(&p, source_.get(), target_.get(),
                                                  /*isolate_rejects=*/spec.has_value()));
      if (opt_.read_ahead) copiers_[p.entry.target]->set_read_ahead(&read_ahead_);
    }
  }
  return Status::Ok();
}

Status Worker::CheckTargetPlan() {
  FERRY_ASSIGN_OR_RETURN(bool ours, target_->HasPlan(plan_id_));
  if (ours) return Status::Ok();
  return InvalidArgument(fmt::format(
      "the new store {} is not the one coordinator {} migrates into: it holds no record of plan "
      "{}; nothing was written to it (check this worker's --target, or that the coordinator's "
      "--target names the same store from this host)",
      target_->Describe(), opt_.coordinator, plan_id_));
}

Status Worker::Run() {
  Status s = RunLoop();
  LogBatchStats();
  return s;
}

void Worker::LogBatchStats() const {
  const BatchSizer::Stats st = sizer_.stats();
  if (st.batches == 0) return;
  LogEvent(spdlog::level::info, "batch_times",
           {{"worker", opt_.id},
            {"batches", st.batches},
            {"mean_rows", static_cast<int64_t>(st.mean_rows)},
            {"target_ms", sizer_.target_ms()},
            {"p50_ms", fmt::format("{:.1f}", st.p50_ms)},
            {"p90_ms", fmt::format("{:.1f}", st.p90_ms)},
            {"p99_ms", fmt::format("{:.1f}", st.p99_ms)},
            {"max_ms", fmt::format("{:.1f}", st.max_ms)}});
}

Status Worker::RunLoop() {
  Backoff backoff(opt_.backoff_base_ms, opt_.backoff_cap_ms, Seed());
  bool registered = false;
  // Restarted by every answer from a coordinator.
  GiveUpTimer unheard(clock_, opt_.give_up_after_ms);
  auto give_up = [&] {
    return Unavailable(fmt::format(
        "no coordinator answered at {} for {} s; the migration may have ended before this worker "
        "came (check with `ferryctl wait --target <new store>`), or the coordinator is down",
        opt_.coordinator, unheard.elapsed_ms() / 1000));
  };
  while (!Stopping()) {
    if (!registered) {
      Status s = Register();
      if (s.code() == Code::kFailedPrecondition) return s;
      if (!s.ok() && unheard.Expired()) return give_up();
      if (!s.ok()) {
        LogEvent(
            RetryLevel(backoff.attempt()), "register_retry",
            {{"worker", opt_.id},
             {"attempt", backoff.attempt() + 1},
             {"error", s.message()},
             {"check", opt_.curve.server_key.empty()
                           ? "is the coordinator running and --coordinator right?"
                           : "is the coordinator running, --coordinator right, "
                             "--curve-server-key-file its public key, and this worker's public "
                             "key " +
                                 opt_.curve.public_key + " in its --curve-allow-file?"}});
        NextCoordinator(backoff.attempt());
        Sleep(backoff.NextDelayMs());
        continue;
      }
      registered = true;
      backoff.Reset();
      unheard.Restart();
      Status o = OpenStores();
      if (o.ok()) o = CheckTargetPlan();
      if (!o.ok()) {
        if (o.code() == Code::kInvalidArgument || o.code() == Code::kPermanent) {
          ReportRefusal(o);
          return o;
        }
        LogEvent(RetryLevel(backoff.attempt()), "open_stores_retry",
                 {{"worker", opt_.id}, {"error", o.message()}});
        registered = false;
        Sleep(backoff.NextDelayMs());
        continue;
      }
    }
    // The answer to the last completion may already be the next lease.
    int64_t sent = next_lease_sent_;
    std::unique_ptr<DecodedEnvelope> reply = std::move(next_lease_);
    if (!reply) {
      capnp::MallocMessageBuilder b;
      uint64_t rid = client_.NextRequestId();
      auto req = NewEnvelope(b, rid).getBody().initLeaseRequest();
      req.setWorkerId(opt_.id);
      req.setFeatures(features());
      sent = clock_->NowMs();
      reply = client_.Call(b, rid, opt_.request_timeout_ms,
                           [this](DecodedEnvelope& e) { ReleaseStale(e); });
    }
    if (!reply) {
      auto level = backoff.attempt() >= 10 ? spdlog::level::err : RetryLevel(backoff.attempt());
      LogEvent(level, "coordinator_unreachable",
               {{"worker", opt_.id},
                {"coordinator", client_.endpoint()},
                {"attempt", backoff.attempt() + 1},
                {"check", "is the coordinator running and reachable from this host?"}});
      // The coordinator may have finished and gone (or be down): the new
      // store's own version marker says whether the migration is complete.
      if (TargetMarkedDone()) return CompleteByMarker();
      if (unheard.Expired()) return give_up();
      NextCoordinator(backoff.attempt());
      Sleep(backoff.NextDelayMs());
      continue;
    }
    auto body = reply->root().getBody();
    if (body.isError() && body.getError().getCode() == Error::Code::UNAVAILABLE) {
      // A standby: the coordinator that leads is another one of the list.
      LogEvent(RetryLevel(backoff.attempt()), "coordinator_standby",
               {{"worker", opt_.id},
                {"coordinator", client_.endpoint()},
                {"detail", std::string(AsView(body.getError().getMessage()))}});
      if (unheard.Expired()) return give_up();
      client_.Rotate();
      Sleep(client_.endpoint_count() > 1 ? 50 : backoff.NextDelayMs());
      continue;
    }
    backoff.Reset();
    unheard.Restart();
    switch (body.which()) {
      case Envelope::Body::GRANT: {
        Lease lease = LeaseFromGrant(*reply, sent);
        paused_ = false;
        rate_limit_ = body.getGrant().getRowsPerSecond();
        LogEvent(spdlog::level::debug, "lease",
                 {{"worker", opt_.id},
                  {"range", lease.range},
                  {"epoch", lease.epoch},
                  {"table", lease.table},
                  {"verify", lease.verify},
                  {"cursor", KeyToString(lease.cursor)}});
        working_on_ = {lease.range, lease.epoch};
        Outcome out = lease.verify ? Verify(lease) : Copy(lease);
        working_on_ = {0, 0};
        if (out == Outcome::kStopped) return Status::Ok();
        if (marked_done_) return CompleteByMarker();
        if (out == Outcome::kGaveBack) Sleep(backoff.NextDelayMs());
        break;
      }
      case Envelope::Body::APPLY_GRANT: {
        ChangeApplier::Outcome out = Apply(*reply, sent);
        if (out == ChangeApplier::Outcome::kStopped) return Status::Ok();
        if (marked_done_) return CompleteByMarker();
        break;
      }
      case Envelope::Body::NO_WORK: {
        auto n = body.getNoWork();
        if (n.getComplete()) {
          LogEvent(spdlog::level::info, "migration_complete",
                   {{"worker", opt_.id}, {"rows_written", rows_written_}});
          return Status::Ok();
        }
        if (n.getFailed()) {
          return Permanent("the migration failed; see 'ferryctl status' on the coordinator");
        }
        if (n.getDraining()) {
          LogEvent(spdlog::level::info, "drained", {{"worker", opt_.id}});
          return Status::Ok();
        }
        Sleep(std::clamp<int64_t>(n.getRetryAfterMs(), 10, 5000));
        break;
      }
      case Envelope::Body::ERROR: {
        auto e = body.getError();
        std::string msg(AsView(e.getMessage()));
        if (e.getCode() == Error::Code::VERSION_MISMATCH) return FailedPrecondition(msg);
        if (e.getCode() == Error::Code::UNKNOWN_WORKER) {
          registered = false;
          break;
        }
        LogEvent(spdlog::level::warn, "coordinator_error", {{"worker", opt_.id}, {"error", msg}});
        Sleep(backoff.NextDelayMs());
        break;
      }
      default:
        Sleep(backoff.NextDelayMs());
        break;
    }
  }
  // Stopped with a lease granted in answer to our last completion: give it back.
  if (next_lease_ && next_lease_->root().getBody().isGrant()) {
    Lease lease = LeaseFromGrant(*next_lease_, next_lease_sent_);
    FinishRange(lease, /*complete=*/false);
  }
  if (next_lease_ && next_lease_->root().getBody().isApplyGrant()) {
    // The change applier's lease (online mode): released the same way.
    capnp::MallocMessageBuilder b;
    auto r = NewEnvelope(b, client_.NextRequestId()).getBody().initApplyReport();
    SetLeaseRef(r.initLease(), 0, next_lease_->root().getBody().getApplyGrant().getEpoch(),
                opt_.id);
    r.setRelease(true);
    r.setLeaving(true);
    client_.SendAsync(b);
  }
  return Status::Ok();
}

ChangeApplier::Outcome Worker::Apply(DecodedEnvelope& reply, int64_t sent) {
  auto g = reply.root().getBody().getApplyGrant();
  ApplyLease lease;
  lease.epoch = g.getEpoch();
  lease.ttl_ms = g.getLeaseTtlMs() ? g.getLeaseTtlMs() : policy_.ttl_ms;
  lease.ranges_total = g.getRangesTotal();
  lease.drain_to = g.getDrainTo();
  lease.sent_ms = sent;
  if (!capture_) {
    auto c = OpenChangeCapture(source_uri_);
    if (!c.ok()) {
      LogEvent(spdlog::level::err, "capture_open_failed",
               {{"worker", opt_.id}, {"error", c.status().message()}});
      Sleep(1000);
      return ChangeApplier::Outcome::kLost;  // the lease runs out; another worker may try
    }
    capture_ = std::move(c).value();
  }
  // The targets as the coordinator resolved them (OpenStores ran at
  // registration); replayed changes go through the same transform.
  std::map<std::string, const TableSchema*> sources;
  for (const TargetPlan& p : plans_) sources[p.source.name] = &p.source;
  std::vector<TableSchema> tables;
  for (const auto& name : g.getTables()) {
    auto it = sources.find(std::string(AsView(name)));
    if (it == sources.end()) {
      LogEvent(spdlog::level::err, "apply_lease_refused",
               {{"worker", opt_.id},
                {"error", fmt::format("migrated table {} is not the source of any target",
                                      std::string(AsView(name)))}});
      Sleep(1000);
      return ChangeApplier::Outcome::kLost;
    }
    tables.push_back(*it->second);
  }
  auto replayer = SpecReplayer::Create(&plans_, source_.get());
  if (!replayer.ok()) {
    LogEvent(spdlog::level::err, "apply_lease_refused",
             {{"worker", opt_.id}, {"error", replayer.status().message()}});
    Sleep(1000);
    return ChangeApplier::Outcome::kLost;
  }
  replayer_ = std::move(replayer).value();
  capture_->SetTables(tables);
  ApplierContext ctx;
  ctx.worker_id = opt_.id;
  ctx.plan_id = plan_id_;
  ctx.policy = policy_;
  ctx.clock = clock_;
  ctx.stop = stop_;
  ctx.client = &client_;
  ctx.target = target_.get();
  ctx.capture = capture_.get();
  ctx.replayer = replayer_.get();
  ctx.request_timeout_ms = opt_.request_timeout_ms;
  ctx.on_other = [this](DecodedEnvelope& e) { ReleaseStale(e); };
  LogEvent(spdlog::level::debug, "apply_lease",
           {{"worker", opt_.id}, {"epoch", lease.epoch}, {"ranges", lease.ranges_total}});
  ChangeApplier applier(std::move(ctx));
  return applier.Run(lease);
}

Worker::Lease Worker::LeaseFromGrant(DecodedEnvelope& reply, int64_t sent) {
  auto g = reply.root().getBody().getGrant();
  Lease lease(LeaseKeeper(policy_, clock_));
  lease.range = g.getRangeId();
  lease.epoch = g.getEpoch();
  lease.table = AsView(g.getTable());
  lease.bounds =
      KeyRange{lease.table, std::string(AsView(g.getLo())), std::string(AsView(g.getHi()))};
  lease.cursor = AsView(g.getCursor());
  lease.rows = g.getRowsDone();
  lease.bytes = g.getBytesDone();
  lease.digest = g.getDigest();
  lease.rejected = g.getRejectedDone();
  lease.verify = g.getVerify();
  lease.repaired = g.getRowsRepaired();
  lease.parent = g.getParent();
  lease.keeper.Start(sent, g.getLeaseTtlMs());
  last_ack_ms_ = clock_->NowMs();
  return lease;
}

bool Worker::TargetMarkedDone() {
  if (!target_ || to_version_ <= 0) return false;
  auto v = target_->ReadVersion();
  return v.ok() && v->has_value() && **v == to_version_;
}

Status Worker::CompleteByMarker() {
  LogEvent(spdlog::level::info, "migration_complete",
           {{"worker", opt_.id},
            {"rows_written", rows_written_},
            {"source", "the new store's version marker"}});
  return Status::Ok();
}

void Worker::SendHeartbeat(Lease& lease) {
  // Only a durable cursor is reported. Without one, no heartbeat: the lease
  // runs out and the range resumes from the last cursor that was reported.
  Status synced = target_->SyncWrites();
  if (!synced.ok()) {
    LogEvent(spdlog::level::warn, "sync_failed",
             {{"worker", opt_.id}, {"range", lease.range}, {"error", synced.message()}});
    return;
  }
  capnp::MallocMessageBuilder b;
  const uint64_t rid = SendReport(b, ::Report::Kind::HEARTBEAT, lease, false, false);
  // The keys went out with this report (a lost heartbeat loses their
  // event, not their count: `repaired` is cumulative).
  lease.repaired_keys.clear();
  lease.repaired_more = 0;
  if (!lease.split_key.empty()) lease.split_rids.insert(rid);
  heartbeat_sent_[rid] = clock_->NowMs();
  if (heartbeat_sent_.size() > 1024) heartbeat_sent_.erase(heartbeat_sent_.begin());
  client_.SendAsync(b);
}

uint64_t Worker::SendReport(capnp::MallocMessageBuilder& b, ::Report::Kind kind, const Lease& lease,
                            bool next, bool leaving) {
  const uint64_t rid = client_.NextRequestId();
  auto r = NewEnvelope(b, rid).getBody().initReport();
  r.setKind(kind);
  SetLeaseRef(r.initLease(), lease.range, lease.epoch, opt_.id);
  auto p = r.initProgress();
  SetProgress(p, lease.cursor, lease.rows, lease.bytes, lease.digest, lease.rejected);
  p.setRepaired(lease.repaired);
  r.setNext(next);
  r.setLeaving(leaving);
  r.setFeatures(features());
  if (!lease.split_key.empty() && kind == ::Report::Kind::HEARTBEAT) {
    r.setSplitKey(AsData(lease.split_key));
    r.setSplitRows(lease.split_rows);
  }
  if (!lease.repaired_keys.empty() || lease.repaired_more > 0) {
    auto keys = r.initRepairedKeys(static_cast<unsigned>(lease.repaired_keys.size()));
    for (size_t i = 0; i < lease.repaired_keys.size(); ++i) {
      keys.set(static_cast<unsigned>(i), AsData(lease.repaired_keys[i]));
    }
    r.setRepairedMore(lease.repaired_more);
  }
  return rid;
}

bool Worker::DrainReplies(Lease& lease, int timeout_ms) {
  int wait = timeout_ms;
  while (auto env = client_.Poll(wait)) {
    wait = 0;
    try {
      auto root = env->root();
      auto body = root.getBody();
      if (body.isAck()) {
        auto a = body.getAck();
        if (a.getRangeId() != lease.range || a.getEpoch() != lease.epoch) continue;
        auto it = heartbeat_sent_.find(root.getRequestId());
        if (it != heartbeat_sent_.end()) {
          lease.keeper.Renewed(it->second, a.getLeaseTtlMs());
          heartbeat_sent_.erase(heartbeat_sent_.begin(), std::next(it));
        }
        last_ack_ms_ = clock_->NowMs();
        paused_ = a.getPaused();
        drain_ = a.getDrain();
        rate_limit_ = a.getRowsPerSecond();
        if (!lease.verify && a.getHiValid()) {
          const std::string hi(AsView(a.getHi()));
          const bool answers = lease.split_rids.count(root.getRequestId()) > 0;
          if (!lease.split_key.empty() && hi == lease.split_key) {
            LogEvent(spdlog::level::info, "split",
                     {{"worker", opt_.id},
                      {"range", lease.range},
                      {"epoch", lease.epoch},
                      {"at", KeyToString(hi)},
                      {"keep_rows", lease.split_rows}});
            lease.bounds.hi = hi;
            lease.split_key.clear();
            lease.split_rids.clear();
            lease.next_split_try_ms = 0;  // committed: the next ask may be tried at once
          } else if (!lease.split_key.empty() && answers) {
            LogEvent(spdlog::level::debug, "split_refused",
                     {{"worker", opt_.id}, {"range", lease.range}});
            lease.split_key.clear();
            lease.split_rids.clear();
          } else if (lease.split_key.empty() && !hi.empty() &&
                     (lease.bounds.hi.empty() || hi < lease.bounds.hi)) {
            // Narrower than we knew without a proposal of ours pending: a
            // split we proposed whose answer we lost.
            if (!lease.cursor.empty() && lease.cursor >= hi) return false;
            lease.bounds.hi = hi;
          }
        }
        if (!lease.verify) lease.keeper.Quick(a.getWaiting() > 0);
        if (!lease.verify && a.getSplit() && lease.split_key.empty()) {
          lease.split_keep = a.getSplitKeep();
        }
      } else if (body.isError()) {
        auto e = body.getError();
        if (e.getCode() == Error::Code::UNAVAILABLE) {
          // Our heartbeats reach a standby: the lead moved. Heartbeat the
          // next coordinator of the list (the new leader knows our lease).
          client_.Rotate();
          heartbeat_sent_.clear();
          continue;
        }
        if (e.getCode() == Error::Code::LEASE_LOST && e.getRangeId() == lease.range &&
            e.getEpoch() == lease.epoch) {
          LogEvent(spdlog::level::warn, "lease_lost",
                   {{"worker", opt_.id},
                    {"range", lease.range},
                    {"epoch", lease.epoch},
                    {"why", std::string(AsView(e.getMessage()))}});
          return false;
        }
      } else if (body.isGrant()) {
        ReleaseStale(*env);
      }
    } catch (const kj::Exception&) {
      // a malformed reply is ignored
    }
  }
  return true;
}

void Worker::ReleaseStale(DecodedEnvelope& env) {
  auto body = env.root().getBody();
  if (body.isApplyGrant()) {
    // The change applier's lease, for a request we gave up on: give it back.
    capnp::MallocMessageBuilder b;
    auto r = NewEnvelope(b, client_.NextRequestId()).getBody().initApplyReport();
    SetLeaseRef(r.initLease(), 0, body.getApplyGrant().getEpoch(), opt_.id);
    r.setRelease(true);
    client_.SendAsync(b);
    return;
  }
  if (!body.isGrant()) return;
  auto g = body.getGrant();
  // A late duplicate of the grant we are working on (the coordinator gave
  // the same lease again to our retried request): keep it.
  if (g.getRangeId() == working_on_.first && g.getEpoch() == working_on_.second) return;
  // A grant for a request we gave up on: hand it straight back.
  capnp::MallocMessageBuilder b;
  auto rel = NewEnvelope(b, client_.NextRequestId()).getBody().initReport();
  rel.setKind(::Report::Kind::RELEASE);
  SetLeaseRef(rel.initLease(), g.getRangeId(), g.getEpoch(), opt_.id);
  SetProgress(rel.initProgress(), AsView(g.getCursor()), g.getRowsDone(), g.getBytesDone(),
              g.getDigest(), g.getRejectedDone());
  client_.SendAsync(b);
}

bool Worker::FinishRange(Lease& lease, bool complete) {
  Status synced = target_->SyncWrites();  // the cursor reported must be durable
  if (!synced.ok()) {
    ReportError(lease, synced);
    return false;
  }
  Backoff backoff(opt_.backoff_base_ms, opt_.backoff_cap_ms, Seed());
  // A completion is retried for the policy's give-up time (its lease is long
  // gone after that); a release on the way out for at most 2 s.
  const GiveUpTimer give_up(clock_, complete ? policy_.give_up_ms : 2000);
  while (!give_up.Expired()) {
    capnp::MallocMessageBuilder b;
    const uint64_t rid =
        complete ? SendReport(b, ::Report::Kind::COMPLETE, lease, !Stopping() && !drain_, false)
                 : SendReport(b, ::Report::Kind::RELEASE, lease, false, true);
    const int64_t sent = clock_->NowMs();
    auto reply = client_.Call(b, rid, opt_.request_timeout_ms,
                              [this](DecodedEnvelope& e) { ReleaseStale(e); });
    if (reply) {
      auto rb = reply->root().getBody();
      const bool next = complete && (rb.isGrant() || rb.isNoWork() || rb.isApplyGrant());
      if (rb.isAck() || next) {
        LogEvent(spdlog::level::info, complete ? "range_done" : "range_released",
                 {{"worker", opt_.id},
                  {"range", lease.range},
                  {"epoch", lease.epoch},
                  {"rows", lease.rows},
                  {"bytes", lease.bytes},
                  {"cursor", KeyToString(lease.cursor)}});
        if (next) {
          next_lease_ = std::move(reply);
          next_lease_sent_ = sent;
        }
        return true;
      }
      if (rb.isError() && rb.getError().getCode() == Error::Code::UNAVAILABLE) {
        client_.Rotate();  // a standby: report to the coordinator that leads
        continue;
      }
      if (rb.isError()) {
        LogEvent(spdlog::level::warn, "lease_lost",
                 {{"worker", opt_.id},
                  {"range", lease.range},
                  {"epoch", lease.epoch},
                  {"why", std::string(AsView(rb.getError().getMessage()))}});
        return false;
      }
    } else if (complete && TargetMarkedDone()) {
      // No answer, but the new store is at the target version: every range,
      // this one too, is done and the coordinator has finished (and may have
      // exited; libzmq can drop a reply sent just before its socket closes).
      // Nothing is left to report.
      marked_done_ = true;
      return true;
    }
    if (!reply && client_.endpoint_count() > 1) client_.Rotate();
    LogEvent(RetryLevel(backoff.attempt()), complete ? "complete_retry" : "release_retry",
             {{"worker", opt_.id}, {"range", lease.range}, {"attempt", backoff.attempt() + 1}});
    Sleep(backoff.NextDelayMs());
  }
  return false;
}

void Worker::ReportError(const Lease& lease, const Status& s) {
  bool permanent = s.code() == Code::kPermanent || s.code() == Code::kInvalidArgument ||
                   s.code() == Code::kInternal;
  LogEvent(spdlog::level::err, "range_error",
           {{"worker", opt_.id},
            {"range", lease.range},
            {"epoch", lease.epoch},
            {"permanent", permanent},
            {"error", s.message()}});
  SendReportError(lease.range, lease.epoch, permanent, s.message());
}

void Worker::SendReportError(uint64_t range, uint64_t epoch, bool permanent,
                             const std::string& message) {
  capnp::MallocMessageBuilder b;
  uint64_t rid = client_.NextRequestId();
  auto r = NewEnvelope(b, rid).getBody().initReportError();
  SetLeaseRef(r.initLease(), range, epoch, opt_.id);
  r.setPermanent(permanent);
  r.setMessage(message.substr(0, 1000));
  client_.Call(b, rid, opt_.request_timeout_ms, [this](DecodedEnvelope& e) { ReleaseStale(e); });
}

void Worker::ReportRefusal(const Status& s) {
  // Best effort: the worker exits either way.
  SendReportError(/*range=*/0, /*epoch=*/0, /*permanent=*/true, s.message());
}

Worker::Turn Worker::AwaitTurn(Lease& lease, Throttle* throttle) {
  if (!DrainReplies(lease, 0)) return Turn::kLost;
  if (Stopping() || drain_) {
    FinishRange(lease, /*complete=*/false);
    return Turn::kStopped;
  }
  const int64_t now = clock_->NowMs();
  if (lease.keeper.HeartbeatDue()) {
    SendHeartbeat(lease);
    lease.keeper.HeartbeatSent();
  }
  if (client_.endpoint_count() > 1 && now - last_ack_ms_ > policy_.ttl_ms / 2) {
    // No ack for half a lease: the coordinator may be gone and another
    // one of the list lead now. Heartbeat that one.
    client_.Rotate();
    heartbeat_sent_.clear();
    last_ack_ms_ = now;
  }
  if (!lease.keeper.MayWrite()) {
    // Our lease may be about to expire: no write until the coordinator confirms it.
    if (!DrainReplies(lease, 50)) return Turn::kLost;
    if (lease.keeper.Expired()) {
      LogEvent(spdlog::level::warn, "lease_expired",
               {{"worker", opt_.id},
                {"range", lease.range},
                {"epoch", lease.epoch},
                {"check", "no answer from the coordinator within the lease TTL"}});
      return Turn::kLost;
    }
    return Turn::kWait;
  }
  if (paused_) {
    if (!DrainReplies(lease, 50)) return Turn::kLost;
    return Turn::kWait;
  }
  if (rate_limit_ != throttle->limit) {
    throttle->limit = rate_limit_;
    throttle->start_ms = now;
    throttle->rows = 0;
  }
  if (throttle->limit > 0) {
    const int64_t due =
        throttle->start_ms + static_cast<int64_t>(throttle->rows * 1000 / throttle->limit);
    if (due > now) {
      if (!DrainReplies(lease, static_cast<int>(std::min<int64_t>(due - now, 50)))) {
        return Turn::kLost;
      }
      return Turn::kWait;
    }
  }
  return Turn::kGo;
}

bool Worker::KeepLeaseFor(Lease& lease, int64_t ms) {
  const int64_t until = clock_->NowMs() + ms;
  while (clock_->NowMs() < until && !Stopping()) {
    if (!DrainReplies(lease, 50)) return false;
    if (lease.keeper.HeartbeatDue()) {
      SendHeartbeat(lease);
      lease.keeper.HeartbeatSent();
    }
  }
  return true;
}

Worker::Outcome Worker::Copy(Lease& lease) {
  auto copier_it = copiers_.find(lease.table);
  if (copier_it == copiers_.end()) {
    ReportError(lease, Permanent(fmt::format("table {} is not in the legacy store, nor a target "
                                             "of the migration spec",
                                             lease.table)));
    return Outcome::kGaveBack;
  }
  TargetCopier& copier = *copier_it->second;
  // However the lease ends, no read runs ahead past it (the source store is
  // the worker's again: verify leases, splits, the next lease), and the
  // copier gives back its batch buffers.
  struct IdleOnExit {
    TargetCopier& copier;
    ~IdleOnExit() { copier.Idle(); }
  } idle_on_exit{copier};
  const Fence fence = FenceOf(lease);
  Backoff backoff(opt_.backoff_base_ms, opt_.backoff_cap_ms, Seed());
  bool direct = opt_.direct_copy && copier.CanCopyDirect();
  Throttle throttle;
  throttle.start_ms = clock_->NowMs();

  for (;;) {
    const Turn turn = AwaitTurn(lease, &throttle);
    if (turn == Turn::kLost) return Outcome::kLost;
    if (turn == Turn::kStopped) return Outcome::kStopped;
    if (turn == Turn::kWait) continue;
    if (lease.split_keep > 0 && lease.split_key.empty() &&
        clock_->NowMs() >= lease.next_split_try_ms) {
      copier.Settle();  // ProposeSplit reads the source store
      ProposeSplit(lease, copier.plan().source);
    }
    size_t want = sizer_.Next();
    if (throttle.limit > 0) want = std::clamp<size_t>(throttle.limit / 10, 1, want);
    TargetBatch batch;
    CopiedBatch& copied = batch.copied;
    copied.digest = lease.digest;
    // With a split proposed and not answered yet, nothing at or past its key.
    KeyRange bounds = lease.bounds;
    if (!lease.split_key.empty()) bounds.hi = lease.split_key;
    const int64_t t0 = MonotonicUs();
    Status s =
        direct ? copier.CopyDirect(bounds, lease.cursor, want, opt_.batch_bytes, fence, &batch)
               : copier.ReadAndWrite(bounds, lease.cursor, want, opt_.batch_bytes, fence, &batch);
    const uint64_t batch_read = copied.rows + batch.rejected + batch.dropped;
    if (s.ok() && batch_read > 0) sizer_.Record(batch_read, MonotonicUs() - t0);
    if (direct && !s.ok() && s.code() != Code::kLeaseLost && s.code() != Code::kUnavailable) {
      LogEvent(spdlog::level::warn, "direct_copy_off",
               {{"worker", opt_.id},
                {"range", lease.range},
                {"error", s.message()},
                {"next", "copying through read + write"}});
      direct = false;
      continue;
    }
    if (s.ok() && copied.last_key.empty() && !lease.split_key.empty()) {
      // Caught up with our own proposal: wait for its answer (heartbeats
      // repeat it) before completing or copying on.
      if (lease.keeper.HeartbeatDue()) {
        SendHeartbeat(lease);
        lease.keeper.HeartbeatSent();
      }
      if (!DrainReplies(lease, 20)) return Outcome::kLost;
      continue;
    }
    if (s.ok() && copied.last_key.empty()) {  // nothing left to read in the range
      return FinishRange(lease, /*complete=*/true) ? Outcome::kDone : Outcome::kLost;
    }
    if (s.code() == Code::kLeaseLost) {
      LogEvent(spdlog::level::warn, "fenced",
               {{"worker", opt_.id},
                {"range", lease.range},
                {"epoch", lease.epoch},
                {"why", s.message()}});
      return Outcome::kLost;
    }
    if (!s.ok()) {
      bool transient = s.code() == Code::kUnavailable;
      if (transient && static_cast<uint32_t>(backoff.attempt()) < opt_.transient_retries) {
        LogEvent(RetryLevel(backoff.attempt() + 2), "batch_retry",
                 {{"worker", opt_.id},
                  {"range", lease.range},
                  {"epoch", lease.epoch},
                  {"attempt", backoff.attempt() + 1},
                  {"error", s.message()}});
        if (!KeepLeaseFor(lease, backoff.NextDelayMs())) return Outcome::kLost;
        continue;
      }
      ReportError(lease, s);
      return Outcome::kGaveBack;
    }
    backoff.Reset();
    lease.digest = copied.digest;
    lease.cursor = std::move(copied.last_key);
    lease.rows += copied.rows;
    lease.bytes += copied.bytes;
    lease.rejected += batch.rejected;
    rows_written_ += copied.rows;
    throttle.rows += copied.rows;
  }
}

Fence Worker::FenceOf(const Lease& lease) const {
  Fence f;
  f.plan_id = plan_id_;
  f.range_id = lease.range;
  f.epoch = lease.epoch;
  if (lease.parent != 0) {
    f.parent_id = lease.parent;
    f.parent_end = lease.bounds.lo;  // a tail starts where its parent ends
  }
  return f;
}

void Worker::ProposeSplit(Lease& lease, const TableSchema& schema) {
  const uint64_t asked = lease.split_keep;
  lease.split_keep = 0;
  // One try per ask, and not more often than every 2 heartbeats.
  lease.next_split_try_ms = clock_->NowMs() + 2 * policy_.heartbeat_ms;
  // At least a batch stays with us: the key lies beyond what we may be
  // writing right now.
  uint64_t keep = std::max<uint64_t>(asked, batch_rows_);
  for (int attempt = 0; attempt < 2; ++attempt, keep /= 2) {
    if (keep < batch_rows_) break;
    const KeyRange source_bounds{schema.name, lease.bounds.lo, lease.bounds.hi};
    auto key = source_->KeyAfter(schema, source_bounds, lease.cursor, keep);
    if (!key.ok()) {
      LogEvent(spdlog::level::info, "split_key_failed",
               {{"worker", opt_.id}, {"range", lease.range}, {"error", key.status().message()}});
      return;
    }
    if (!key->has_value()) continue;  // fewer rows left than estimated: try half
    lease.split_key = std::move(**key);
    lease.split_rows = keep;
    lease.split_rids.clear();
    LogEvent(spdlog::level::debug, "split_proposed",
             {{"worker", opt_.id},
              {"range", lease.range},
              {"at", KeyToString(lease.split_key)},
              {"keep_rows", keep}});
    SendHeartbeat(lease);  // carries the proposal
    lease.keeper.HeartbeatSent();
    return;
  }
}

}  // namespace ferry
